//! Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`,
//! keyed with the decoded bytes of a `whsec_<base64>` secret.
//!
//! The signed content is computed by the specification's own crate (`standardwebhooks`); busline
//! parses the headers and checks the time itself, so the tolerance is configurable and the clock
//! can be set in tests. A header may hold several space-separated signatures (secret rotation);
//! entries of other versions (`v1a,` asymmetric signatures) are skipped.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{KeyError, SignatureError, SigningKey, constant_time_eq};

/// The header with the message id, which is signed and the same on every retry.
pub const HEADER_WEBHOOK_ID: &str = standardwebhooks::HEADER_WEBHOOK_ID;
/// The header with the signing time, unix seconds.
pub const HEADER_WEBHOOK_TIMESTAMP: &str = standardwebhooks::HEADER_WEBHOOK_TIMESTAMP;
/// The header with the signatures.
pub const HEADER_WEBHOOK_SIGNATURE: &str = standardwebhooks::HEADER_WEBHOOK_SIGNATURE;

const SECRET_PREFIX: &str = "whsec_";

/// The `webhook-signature` value (`v1,<base64>`) for message `id` at `timestamp` with `key`, or
/// `None` for a body that is not UTF-8 (the scheme signs text).
pub fn standard_webhooks_sign(
    key: &SigningKey,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<String> {
    standardwebhooks::Webhook::from_bytes(key.as_bytes().to_vec())
        .ok()?
        .sign(id, timestamp, body)
        .ok()
}

pub(super) fn decode_secret(secret: &str) -> Result<Vec<u8>, KeyError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = STANDARD
        .decode(encoded.trim())
        .map_err(|_| KeyError::NotBase64)?;
    if !(24..=64).contains(&key.len()) {
        return Err(KeyError::Length(key.len()));
    }
    Ok(key)
}

pub(super) fn verify(
    key: &SigningKey,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let timestamp: i64 =
        timestamp
            .trim()
            .parse()
            .ok()
            .filter(|t| *t >= 0)
            .ok_or(SignatureError::Malformed {
                header: HEADER_WEBHOOK_TIMESTAMP,
                expected: "unix seconds",
            })?;
    let age_secs = now.abs_diff(timestamp as u64);
    if age_secs > tolerance_secs {
        return Err(SignatureError::Expired {
            age_secs,
            tolerance_secs,
        });
    }
    let expected =
        standard_webhooks_sign(key, id, timestamp, body).ok_or(SignatureError::NotText)?;
    // The crate signs with v1; anything else verifies nothing.
    let expected = expected
        .strip_prefix("v1,")
        .ok_or(SignatureError::Mismatch)?;
    let mut entries = signatures
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .peekable();
    if entries.peek().is_none() {
        return Err(SignatureError::Malformed {
            header: HEADER_WEBHOOK_SIGNATURE,
            expected: "space-separated v1,<base64> entries",
        });
    }
    entries
        .filter(|(version, _)| *version == "v1")
        .any(|(_, signature)| constant_time_eq(signature.as_bytes(), expected.as_bytes()))
        .then_some(())
        .ok_or(SignatureError::Mismatch)
}
