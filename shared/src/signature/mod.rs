//! Webhook signatures: how a sender proves that a request is theirs, in the schemes real senders use.
//!
//! A signature must bind everything that makes the request a different request. Each [`Scheme`]
//! says what its sender signs, and so which id a delivery can safely be deduplicated on
//! ([`Verified::delivery_id`]):
//!
//! | Scheme | Header | Signed | Deduplicated on |
//! |---|---|---|---|
//! | [`Scheme::StandardWebhooks`] | `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` | `<id>.<timestamp>.<body>` | `webhook-id` (signed) |
//! | [`Scheme::Stripe`] | `Stripe-Signature: t=<unix>,v1=<hex>` | `<t>.<body>` | the event's `id` inside the signed body |
//! | [`Scheme::GitHub`] | `X-Hub-Signature-256: sha256=<hex>` | the body | a digest of the body (`X-GitHub-Delivery` is not signed) |
//! | [`Scheme::Shopify`] | `X-Shopify-Hmac-Sha256: <base64>` | the body | a digest of the body (`X-Shopify-Webhook-Id` is not signed) |
//! | [`Scheme::BuslineV1`] | `X-Busline-Signature: t=<unix>,v1=<hex>`, `X-Delivery-Id` | `<t>.<body>` | `X-Delivery-Id`, with the signature [single use](SingleUse) |
//!
//! Every comparison is constant-time. Several signatures may be sent while a secret is rotated
//! (space-separated `v1,…` entries; several `v1=` entries). Timestamps are checked against a
//! tolerance either side of now; GitHub and Shopify sign no time, so a replay of their requests is
//! caught only by deduplication, for as long as the receiver remembers the delivery.

mod body_hmac;
mod standard;
mod timestamped;

use sha2::{Digest, Sha256};

pub use body_hmac::{github_signature, shopify_signature};
pub use standard::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, standard_webhooks_sign,
};
pub use timestamped::sign as timestamped_sign;

/// The default window, in seconds, either side of now in which a signature's timestamp is accepted.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The longest delivery id a sender may use.
pub const MAX_DELIVERY_ID_LEN: usize = 200;

/// A signing scheme: which headers a sender sets, what it signs, and how its secret is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Standard Webhooks (standard-webhooks.com), busline's scheme in and out.
    StandardWebhooks,
    /// Stripe's `Stripe-Signature`.
    Stripe,
    /// GitHub's `X-Hub-Signature-256`.
    GitHub,
    /// Shopify's `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// busline's first scheme, `X-Busline-Signature`, kept for sources configured for it.
    BuslineV1,
}

impl Scheme {
    /// Every scheme, each once: [`Scheme::parse`] finds names among them.
    pub const ALL: [Self; 5] = [
        Self::StandardWebhooks,
        Self::Stripe,
        Self::GitHub,
        Self::Shopify,
        Self::BuslineV1,
    ];

    /// The name configuration uses: `standard-webhooks`, `stripe`, `github`, `shopify`, `busline-v1`.
    pub fn name(self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard-webhooks",
            Self::Stripe => "stripe",
            Self::GitHub => "github",
            Self::Shopify => "shopify",
            Self::BuslineV1 => "busline-v1",
        }
    }

    /// The scheme called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The header that carries the signature (lower case, as HTTP/2 and `http::HeaderMap` give it).
    pub fn signature_header(self) -> &'static str {
        match self {
            Self::StandardWebhooks => HEADER_WEBHOOK_SIGNATURE,
            Self::Stripe => "stripe-signature",
            Self::GitHub => "x-hub-signature-256",
            Self::Shopify => "x-shopify-hmac-sha256",
            Self::BuslineV1 => "x-busline-signature",
        }
    }

    /// The header with the sender's own id for a delivery, when the scheme does not sign it.
    pub fn unsigned_id_header(self) -> Option<&'static str> {
        match self {
            Self::GitHub => Some("x-github-delivery"),
            Self::Shopify => Some("x-shopify-webhook-id"),
            Self::BuslineV1 => Some(BUSLINE_DELIVERY_ID_HEADER),
            Self::StandardWebhooks | Self::Stripe => None,
        }
    }

    /// The key a secret stands for. Standard Webhooks secrets are base64, optionally behind
    /// `whsec_`, and their key is the decoded bytes; every other scheme keys its HMAC with the
    /// secret's text as it is (Stripe's `whsec_…` included).
    pub fn key(self, secret: &str) -> Result<SigningKey, KeyError> {
        let key = match self {
            Self::StandardWebhooks => standard::decode_secret(secret)?,
            _ => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(SigningKey(key))
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The header busline-v1 senders put their delivery id in.
pub const BUSLINE_DELIVERY_ID_HEADER: &str = "x-delivery-id";

/// A signing key: the bytes an HMAC is keyed with. Its `Debug` shows no byte of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A key of these bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The bytes the HMAC is keyed with.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({} bytes)", self.0.len())
    }
}

/// Why a secret is not a key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret is empty.
    #[error("the secret is empty")]
    Empty,
    /// A Standard Webhooks secret that is not base64.
    #[error("a Standard Webhooks secret is base64, optionally prefixed with whsec_")]
    NotBase64,
    /// A Standard Webhooks secret outside the spec's 24 to 64 bytes.
    #[error("a Standard Webhooks secret decodes to 24 to 64 bytes; this one has {0}")]
    Length(usize),
}

/// A request whose signature checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// What the delivery is deduplicated on: an id the sender signed, or one derived from what it
    /// signed. busline-v1 is the exception: its `X-Delivery-Id` is not signed, and its signature is
    /// [single use](Self::single_use) instead.
    pub delivery_id: String,
    /// The sender's own id for the delivery when the scheme does not sign it (GitHub's
    /// `X-GitHub-Delivery`, Shopify's `X-Shopify-Webhook-Id`): for logs, never a key.
    pub sender_id: Option<String>,
    /// busline-v1 only: the signature, which must be admitted once for this delivery id.
    pub single_use: Option<SingleUse>,
}

/// A signature that does not bind the delivery id: the receiver admits it for one delivery id only,
/// until it expires, so a captured request cannot be replayed under a fresh id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SingleUse {
    /// A digest of the matching MAC (hex), never the MAC itself.
    pub token: String,
    /// When the signature stops being accepted anyway (unix seconds).
    pub expires_at: u64,
}

/// Why a signature was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header the scheme needs is absent.
    #[error("the request carries no {0} header")]
    Missing(&'static str),
    /// A header is not in the scheme's form.
    #[error("the {header} header is malformed; expected {expected}")]
    Malformed {
        /// The header's name, lower case, such as `x-hub-signature-256`.
        header: &'static str,
        /// The form the scheme wants, in words, such as `sha256=<hex>`.
        expected: &'static str,
    },
    /// The timestamp is outside the tolerance window.
    #[error(
        "the signature timestamp is {age_secs} s away from now, outside the {tolerance_secs} s tolerance"
    )]
    Expired {
        /// Distance between the timestamp and now, in seconds.
        age_secs: u64,
        /// The tolerance, in seconds either side of now (by default [`DEFAULT_TOLERANCE_SECS`]).
        tolerance_secs: u64,
    },
    /// No signature matches.
    #[error("the signature does not match the request")]
    Mismatch,
    /// The body is not UTF-8, which Standard Webhooks signs as text.
    #[error("the body is not UTF-8 text")]
    NotText,
    /// The delivery id is missing or unusable (the signature itself checked out, or is not needed
    /// to tell). Means 400, not 401.
    #[error(
        "{0}: send one of at most {MAX_DELIVERY_ID_LEN} characters (letters, digits and - _ . : ~ + / = @), the same when resending"
    )]
    DeliveryId(&'static str),
}

impl SignatureError {
    /// True when the sender's credentials were fine but its delivery id is not (400, not 401).
    pub fn is_bad_delivery_id(&self) -> bool {
        matches!(self, Self::DeliveryId(_))
    }
}

/// Checks a request's signature under `scheme`. `header` looks a header up by its lower-case name;
/// `now` is unix seconds.
pub fn verify<'h>(
    scheme: Scheme,
    key: &SigningKey,
    header: impl Fn(&str) -> Option<&'h str>,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<Verified, SignatureError> {
    let sender_id = scheme
        .unsigned_id_header()
        .and_then(&header)
        .map(str::to_owned);
    let signature = header(scheme.signature_header())
        .ok_or(SignatureError::Missing(scheme.signature_header()))?;
    match scheme {
        Scheme::StandardWebhooks => {
            let id = header(HEADER_WEBHOOK_ID).ok_or(SignatureError::DeliveryId("webhook-id"))?;
            let timestamp = header(HEADER_WEBHOOK_TIMESTAMP)
                .ok_or(SignatureError::Missing(HEADER_WEBHOOK_TIMESTAMP))?;
            standard::verify(key, id, timestamp, signature, body, now, tolerance_secs)?;
            Ok(Verified {
                delivery_id: delivery_id(Some(id), "webhook-id")?,
                sender_id: None,
                single_use: None,
            })
        }
        Scheme::Stripe | Scheme::BuslineV1 => {
            let (timestamp, mac) = timestamped::verify(
                scheme.signature_header(),
                signature,
                key,
                body,
                now,
                tolerance_secs,
            )?;
            if scheme == Scheme::BuslineV1 {
                return Ok(Verified {
                    delivery_id: delivery_id(sender_id.as_deref(), "X-Delivery-Id")?,
                    sender_id: None,
                    single_use: Some(SingleUse {
                        token: hex::encode(Sha256::digest(mac)),
                        expires_at: timestamp.saturating_add(tolerance_secs),
                    }),
                });
            }
            #[derive(serde::Deserialize)]
            struct Event<'a> {
                #[serde(borrow)]
                id: std::borrow::Cow<'a, str>,
            }
            let id = serde_json::from_slice::<Event>(body).ok().map(|e| e.id);
            Ok(Verified {
                delivery_id: delivery_id(id.as_deref(), "the event's id in the body")?,
                sender_id: None,
                single_use: None,
            })
        }
        Scheme::GitHub | Scheme::Shopify => {
            body_hmac::verify(scheme, signature, key, body)?;
            Ok(Verified {
                delivery_id: format!("sha256-{}", hex::encode(Sha256::digest(body))),
                sender_id,
                single_use: None,
            })
        }
    }
}

/// `id` when it is a usable delivery id: 1 to [`MAX_DELIVERY_ID_LEN`] characters of letters,
/// digits and `- _ . : ~ + / = @`.
fn delivery_id(id: Option<&str>, what: &'static str) -> Result<String, SignatureError> {
    id.filter(|id| is_token(id, MAX_DELIVERY_ID_LEN, "-_.:~+/=@"))
        .map(str::to_owned)
        .ok_or(SignatureError::DeliveryId(what))
}

/// True when `value` is 1 to `max` ASCII letters, digits and characters of `extra`.
pub fn is_token(value: &str, max: usize, extra: &str) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.as_bytes().contains(&b))
}

/// Compares two byte strings in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
