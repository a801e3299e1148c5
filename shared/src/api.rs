//! HTTP plumbing for functions behind a Function URL or an API Gateway HTTP API (feature `api`):
//! JSON answers, and refusals that say why (`{"error": <stable code>, "reason": <for people>}`).

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// A request refused, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub reason: String,
    /// The `Allow` header, for 405.
    pub allow: Option<&'static str>,
    /// Further members of the body beside `error` and `reason`, such as a 422's `violations`.
    pub details: Map<String, Value>,
}

impl Problem {
    /// A refusal with `status`, `code` and `reason`: no `Allow` header, no further members.
    pub fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            code,
            reason: reason.into(),
            allow: None,
            details: Map::new(),
        }
    }

    /// The refusal with `name: value` in its body too.
    pub fn with_detail(mut self, name: &str, value: Value) -> Self {
        self.details.insert(name.to_owned(), value);
        self
    }

    /// 405, naming the method that is allowed.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("use {allow}"),
            )
        }
    }

    /// The response: the JSON body, `Allow` on 405, `Retry-After` on 409 and 503.
    pub fn into_response(self) -> Response<Body> {
        let mut body = self.details;
        body.insert("error".to_owned(), json!(self.code));
        body.insert("reason".to_owned(), json!(self.reason));
        let mut response = json_response(self.status, &body);
        let headers = response.headers_mut();
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if matches!(
            self.status,
            StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE
        ) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// A JSON response.
#[expect(
    clippy::expect_used,
    reason = "busline's response bodies are plain structs, and the status and header are valid"
)]
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(
            serde_json::to_string(body).expect("response bodies serialise"),
        ))
        .expect("static response parts are valid")
}

/// The request's path as the client sent it (Function URLs and HTTP APIs give the raw path).
pub fn path(request: &Request) -> &str {
    let raw = request.raw_http_path();
    if raw.is_empty() {
        request.uri().path()
    } else {
        raw
    }
}

/// A header's value, trimmed; `None` when missing, empty or not text.
pub fn header_str<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The order id in a path `/orders/{id}` followed by `rest` (`""` or `"/approval"`): at most 128
/// characters, none of them `/`.
pub fn order_id_in<'p>(path: &'p str, rest: &str) -> Option<&'p str> {
    path.strip_prefix("/orders/")?
        .strip_suffix(rest)
        .map(|id| id.trim_end_matches('/'))
        .filter(|id| !id.is_empty() && id.len() <= 128 && !id.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_found_only_where_the_route_puts_them() {
        assert_eq!(order_id_in("/orders/SO-1", ""), Some("SO-1"));
        assert_eq!(order_id_in("/orders/SO-1/", ""), Some("SO-1"));
        assert_eq!(
            order_id_in("/orders/SO-1/approval", "/approval"),
            Some("SO-1")
        );
        assert_eq!(order_id_in("/orders/SO-1/approval", ""), None);
        assert_eq!(order_id_in("/orders/", ""), None);
        assert_eq!(order_id_in("/order/SO-1", ""), None);
        assert_eq!(
            order_id_in(&format!("/orders/{}", "x".repeat(129)), ""),
            None
        );
    }

    #[test]
    fn a_problem_says_why_and_when_to_retry() {
        let response =
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "down", "try later").into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let Body::Text(body) = response.body() else {
            panic!("a text body")
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            json!({"error": "down", "reason": "try later"})
        );
        let response = Problem::method_not_allowed("GET").into_response();
        assert_eq!(response.headers()[header::ALLOW], "GET");
    }
}
