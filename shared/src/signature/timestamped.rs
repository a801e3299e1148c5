//! `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`: Stripe's `Stripe-Signature`, and
//! busline-v1's `X-Busline-Signature`, which copied it.
//!
//! The timestamp is signed with the body, so a captured request cannot be replayed after the
//! tolerance window, and several `v1=` entries may appear while a secret is rotated. Entries of other
//! versions (Stripe's test-mode `v0=`) are ignored. Comparison is constant-time (`hmac`'s
//! `verify_slice`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{SignatureError, SigningKey};

type HmacSha256 = Hmac<Sha256>;

const EXPECTED: &str = "t=<unix seconds>,v1=<hex>";

/// The header value that signs `body` at `timestamp` with `key`.
pub fn sign(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(key, timestamp, body).finalize().into_bytes())
    )
}

/// Checks `value` (the `header`'s) against `body`, `key` and the time `now` (unix seconds), and
/// answers the signed timestamp and the MAC that matched.
pub(super) fn verify(
    header: &'static str,
    value: &str,
    key: &SigningKey,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<(u64, [u8; 32]), SignatureError> {
    let malformed = SignatureError::Malformed {
        header,
        expected: EXPECTED,
    };
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<u64>().map_err(|_| malformed.clone())?),
            Some(("v1", sig)) => candidates.push(hex::decode(sig).map_err(|_| malformed.clone())?),
            Some(_) => {}
            None => return Err(malformed),
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed.clone())?;
    if candidates.is_empty() {
        return Err(malformed);
    }
    let age_secs = now.abs_diff(timestamp);
    if age_secs > tolerance_secs {
        return Err(SignatureError::Expired {
            age_secs,
            tolerance_secs,
        });
    }
    let expected = mac(key.as_bytes(), timestamp, body);
    if candidates
        .iter()
        .any(|candidate| expected.clone().verify_slice(candidate).is_ok())
    {
        Ok((timestamp, expected.finalize().into_bytes().into()))
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn mac(key: &[u8], timestamp: u64, body: &[u8]) -> HmacSha256 {
    #[expect(clippy::expect_used, reason = "HMAC takes a key of any length")]
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}
