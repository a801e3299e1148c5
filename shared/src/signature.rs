//! Webhook signatures: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
//!
//! The scheme is Stripe's: the timestamp is signed with the body, so a captured request cannot be
//! replayed after the tolerance window, and several `v1=` entries may appear while a secret is
//! rotated. Comparison is constant-time (`hmac`'s `verify_slice`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The default window, in seconds, either side of now in which a signature's timestamp is accepted.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Why a signature was refused. Every variant means 401 to the sender.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header.
    #[error("the request carries no signature header")]
    Missing,
    /// The header is not `t=<unix seconds>,v1=<hex>`.
    #[error("the signature header is malformed; expected t=<unix seconds>,v1=<hex>")]
    Malformed,
    /// The timestamp is outside the tolerance window.
    #[error(
        "the signature timestamp is {age_secs} s away from now, outside the {tolerance_secs} s tolerance"
    )]
    Expired {
        /// Distance between the timestamp and now, in seconds.
        age_secs: u64,
        /// The window.
        tolerance_secs: u64,
    },
    /// No `v1` entry matches the body.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// The header value that signs `body` at `timestamp` with `secret`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks `header` against `body`, `secret` and the current time `now` (unix seconds).
pub fn verify(
    header: Option<&str>,
    secret: &[u8],
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some(t.parse::<u64>().map_err(|_| SignatureError::Malformed)?)
            }
            Some(("v1", sig)) => {
                candidates.push(hex::decode(sig).map_err(|_| SignatureError::Malformed)?)
            }
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let age_secs = now.abs_diff(timestamp);
    if age_secs > tolerance_secs {
        return Err(SignatureError::Expired {
            age_secs,
            tolerance_secs,
        });
    }
    let expected = mac(secret, timestamp, body);
    candidates
        .iter()
        .any(|candidate| expected.clone().verify_slice(candidate).is_ok())
        .then_some(())
        .ok_or(SignatureError::Mismatch)
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"order_id":"SO-1"}"#;
    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_fresh_signature_over_the_exact_body_verifies() {
        let header = sign(SECRET, NOW - 10, BODY);
        assert_eq!(verify(Some(&header), SECRET, BODY, NOW, 300), Ok(()));
    }

    #[test]
    fn matches_a_known_vector() {
        // printf '1800000000.{"order_id":"SO-1"}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign(SECRET, NOW, BODY),
            "t=1800000000,v1=316d1a330558d3671198e08ea56eaf519a0c5a097111fc2f7299cb3dd9ebd22b"
        );
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let header = sign(SECRET, NOW, BODY);
        assert_eq!(
            verify(Some(&header), SECRET, br#"{"order_id":"SO-2"}"#, NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_signature_with_another_secret_is_refused() {
        let header = sign(b"someone-else", NOW, BODY);
        assert_eq!(
            verify(Some(&header), SECRET, BODY, NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_old_or_future_timestamp_is_refused() {
        let old = sign(SECRET, NOW - 301, BODY);
        assert_eq!(
            verify(Some(&old), SECRET, BODY, NOW, 300),
            Err(SignatureError::Expired {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        let future = sign(SECRET, NOW + 301, BODY);
        assert!(matches!(
            verify(Some(&future), SECRET, BODY, NOW, 300),
            Err(SignatureError::Expired { .. })
        ));
    }

    #[test]
    fn a_replayed_timestamp_cannot_be_moved_forward() {
        let header = sign(SECRET, NOW - 1000, BODY)
            .replace(&format!("t={}", NOW - 1000), &format!("t={NOW}"));
        assert_eq!(
            verify(Some(&header), SECRET, BODY, NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_missing_or_malformed_header_is_refused() {
        assert_eq!(
            verify(None, SECRET, BODY, NOW, 300),
            Err(SignatureError::Missing)
        );
        for bad in [
            "",
            "v1=abcd",
            "t=now,v1=abcd",
            &format!("t={NOW}"),
            &format!("t={NOW},v1=zz"),
            "garbage",
        ] {
            assert_eq!(
                verify(Some(bad), SECRET, BODY, NOW, 300),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn any_matching_v1_entry_is_enough_during_secret_rotation() {
        let good = sign(SECRET, NOW, BODY);
        let old = sign(b"old-secret", NOW, BODY);
        let header = format!("{old},{}", good.split_once(',').unwrap().1);
        assert_eq!(verify(Some(&header), SECRET, BODY, NOW, 300), Ok(()));
    }
}
