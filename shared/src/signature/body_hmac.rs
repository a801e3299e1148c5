//! Schemes that sign the body alone with HMAC-SHA256: GitHub (`X-Hub-Signature-256:
//! sha256=<hex>`) and Shopify (`X-Shopify-Hmac-Sha256: <base64>`).
//!
//! Neither signs a time or its delivery id, so a captured request stays valid for ever: the
//! receiver deduplicates on a digest of the body, which a replay cannot change.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{Scheme, SignatureError, SigningKey};

type HmacSha256 = Hmac<Sha256>;

/// GitHub's `X-Hub-Signature-256` value for `body`.
pub fn github_signature(key: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(key, body).finalize().into_bytes())
    )
}

/// Shopify's `X-Shopify-Hmac-Sha256` value for `body`.
pub fn shopify_signature(key: &[u8], body: &[u8]) -> String {
    STANDARD.encode(mac(key, body).finalize().into_bytes())
}

pub(super) fn verify(
    scheme: Scheme,
    value: &str,
    key: &SigningKey,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = scheme.signature_header();
    let candidate = match scheme {
        Scheme::GitHub => value
            .trim()
            .strip_prefix("sha256=")
            .and_then(|hex| hex::decode(hex).ok())
            .ok_or(SignatureError::Malformed {
                header,
                expected: "sha256=<hex>",
            })?,
        _ => STANDARD
            .decode(value.trim())
            .map_err(|_| SignatureError::Malformed {
                header,
                expected: "the base64 HMAC-SHA256 of the body",
            })?,
    };
    mac(key.as_bytes(), body)
        .verify_slice(&candidate)
        .map_err(|_| SignatureError::Mismatch)
}

fn mac(key: &[u8], body: &[u8]) -> HmacSha256 {
    #[expect(clippy::expect_used, reason = "HMAC takes a key of any length")]
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac
}
