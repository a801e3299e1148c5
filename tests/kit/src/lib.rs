//! What busline's unit tests share, with no AWS client and no dependency on any function, so a
//! function's `cargo test` builds only this and `busline`:
//!
//! - [`webhook_request`] and [`signed_headers`]: a Lambda Function URL request as AWS delivers it,
//!   built from the real event fixture and signed as a sender on each scheme signs;
//! - the sample events under `infra/events/`;
//! - [`source_stub`]: a source system's paginated HTTP API, for the batch-sync tests.
//!
//! The integration and end-to-end kit (`busline-tests`) re-exports all of it.

pub mod source_stub;

use busline::signature::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Scheme,
    github_signature, shopify_signature, standard_webhooks_sign, timestamped_sign,
};
use serde_json::{Value, json};

/// The Function URL event fixture every test request starts from.
pub const FUNCTION_URL_REQUEST: &str = include_str!("../../fixtures/function-url-request.json");

/// The sample order the demo and tests post.
pub const SAMPLE_SHOP_ORDER: &str = include_str!("../../../infra/events/shop-order.json");

/// The sample CRM change the tests post.
pub const SAMPLE_CRM_CUSTOMER: &str = include_str!("../../../infra/events/crm-customer.json");

/// The event type placed orders are routed on.
pub const SHOP_ORDER_PLACED: &str = "io.busline.shop.order.placed.v1";

/// HTTP headers as name/value pairs.
pub type Headers = Vec<(String, String)>;

/// Headers that sign `body` with `secret` now under Standard Webhooks (busline's scheme), as
/// delivery `delivery_id`.
pub fn signed_headers(secret: &str, body: &str, delivery_id: &str) -> Headers {
    signed_headers_as(
        Scheme::StandardWebhooks,
        secret,
        body,
        delivery_id,
        chrono::Utc::now().timestamp(),
    )
}

/// Headers that sign `body` with `secret` at `timestamp` as a sender on `scheme` would, for
/// delivery `delivery_id` (the id header of schemes that have one; Stripe's id is in its body).
pub fn signed_headers_as(
    scheme: Scheme,
    secret: &str,
    body: &str,
    delivery_id: &str,
    timestamp: i64,
) -> Headers {
    signed_bytes_as(scheme, secret, body.as_bytes(), delivery_id, timestamp)
}

/// [`signed_headers_as`] over bytes, which need not be text: every scheme but Standard Webhooks
/// (whose signed content is text) signs bytes as they are.
pub fn signed_bytes_as(
    scheme: Scheme,
    secret: &str,
    body_bytes: &[u8],
    delivery_id: &str,
    timestamp: i64,
) -> Headers {
    let key = scheme.key(secret).expect("a secret of the scheme");
    let mut headers: Headers = match scheme {
        Scheme::StandardWebhooks => vec![
            (HEADER_WEBHOOK_ID.into(), delivery_id.into()),
            (HEADER_WEBHOOK_TIMESTAMP.into(), timestamp.to_string()),
            (
                HEADER_WEBHOOK_SIGNATURE.into(),
                standard_webhooks_sign(&key, delivery_id, timestamp, body_bytes)
                    .expect("a text body"),
            ),
        ],
        Scheme::Stripe | Scheme::BuslineV1 => vec![(
            scheme.signature_header().into(),
            timestamped_sign(key.as_bytes(), timestamp as u64, body_bytes),
        )],
        Scheme::GitHub => vec![(
            scheme.signature_header().into(),
            github_signature(key.as_bytes(), body_bytes),
        )],
        Scheme::Shopify => vec![(
            scheme.signature_header().into(),
            shopify_signature(key.as_bytes(), body_bytes),
        )],
    };
    if let Some(id_header) = scheme.unsigned_id_header() {
        headers.push((id_header.into(), delivery_id.into()));
    }
    headers
}

/// A fresh Standard Webhooks secret, `whsec_` and the base64 of 32 random bytes.
pub fn new_standard_webhooks_secret() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| *u.as_bytes())
        .collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A Function URL request for `method path` with `body` and `headers`, as `lambda_http` hands it to
/// the handler.
pub fn webhook_request(
    method: &str,
    path: &str,
    body: &str,
    headers: &[(String, String)],
) -> lambda_http::Request {
    lambda_http::request::from_str(&webhook_event(method, path, body, headers).to_string())
        .expect("a valid Function URL event")
}

/// The Function URL event JSON that [`webhook_request`] parses.
pub fn webhook_event(method: &str, path: &str, body: &str, headers: &[(String, String)]) -> Value {
    let mut event: Value = serde_json::from_str(FUNCTION_URL_REQUEST).expect("fixture is JSON");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["requestContext"]["http"]["method"] = json!(method);
    event["body"] = json!(body);
    for (name, value) in headers {
        event["headers"][name.to_ascii_lowercase()] = json!(value);
    }
    event
}
