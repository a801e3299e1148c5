//! The outside systems' stubs: the warehouse's receiver and the email API, on the ports the
//! LocalStack deployment points the stack at.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The request's `Idempotency-Key` header, empty when it has none or it is not text.
fn idempotency_key(request: &Request) -> String {
    request
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The warehouse's receiver: every request with its key, answered 503 the first time for one key
/// in twenty (a bad moment at the warehouse), 200 otherwise.
#[derive(Clone, Default)]
pub(super) struct Warehouse {
    pub(super) seen: Arc<Mutex<Vec<(String, u16, Value)>>>,
}

impl Respond for Warehouse {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = idempotency_key(request);
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let mut seen = self.seen.lock().unwrap();
        let first = !seen.iter().any(|(k, _, _)| *k == key);
        let flaky = key
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
            % 20
            == 0;
        let status = if first && flaky { 503 } else { 200 };
        seen.push((key, status, body));
        ResponseTemplate::new(status)
    }
}

/// The email API: every request's key. As email APIs that take an `Idempotency-Key` do, a key seen
/// before is answered as the first time and sends nothing: such copies are counted, not sent.
#[derive(Clone, Default)]
pub(super) struct Email {
    pub(super) seen: Arc<Mutex<Vec<String>>>,
}

impl Respond for Email {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = idempotency_key(request);
        self.seen.lock().unwrap().push(key);
        ResponseTemplate::new(202).set_body_json(json!({"id": uuid::Uuid::new_v4().to_string()}))
    }
}

/// A stub server on `addr` (which must be free: a soak runs alone) answering every request with
/// `responder`, if given.
pub(super) async fn stub_at<R: Respond + 'static>(
    addr: &str,
    responder: Option<R>,
) -> Result<MockServer> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("{addr} is free for a stub (a soak runs alone)"))?;
    let server = MockServer::builder().listener(listener).start().await;
    if let Some(responder) = responder {
        Mock::given(wiremock::matchers::any())
            .respond_with(responder)
            .mount(&server)
            .await;
    }
    Ok(server)
}
