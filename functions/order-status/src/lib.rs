//! `GET /orders/{id}`: where an order stands. Its status, the step that last moved it, its tracking
//! number or failure reason, and its history with timestamps, read in one strongly consistent
//! `GetItem` from the projection the saga keeps up to date
//! ([`busline_fulfillment::status`]); Step Functions is never polled.
//!
//! | Answer | When |
//! |---|---|
//! | 200 | the order's [`OrderView`](busline_fulfillment::status::OrderView) |
//! | 404 `order_not_found` | nothing is recorded for the id (an order appears once its first step is done) |
//! | 404 `unknown_route`, 405 | another path or method |
//! | 503 `status_unavailable` | the table could not be read; retry |
//! | 500 `status_unreadable` | the stored record is damaged |

use busline::Classify;
use busline::api::{Problem, json_response, order_id_in, path};
use busline_fulfillment::status::{OrderTracker, StatusError};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

/// The Lambda handler: every outcome is an HTTP response.
pub async fn handle<T: OrderTracker>(request: Request, tracker: &T) -> Response<Body> {
    match status(&request, tracker).await {
        Ok(response) => response,
        Err(problem) => {
            tracing::info!(status = problem.status.as_u16(), code = problem.code, reason = %problem.reason, "refused");
            problem.into_response()
        }
    }
}

async fn status<T: OrderTracker>(
    request: &Request,
    tracker: &T,
) -> Result<Response<Body>, Problem> {
    let order_id = order_id_in(path(request), "").ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "unknown_route",
            "ask for GET /orders/{id}",
        )
    })?;
    if request.method() != Method::GET {
        return Err(Problem::method_not_allowed("GET"));
    }
    let view = tracker.get(order_id).await.map_err(|e| {
        tracing::error!(order_id, error = %e, error_type = e.error_type(), "cannot read the status");
        match e {
            StatusError::Unavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "status_unavailable",
                "the order status cannot be read right now; retry",
            ),
            StatusError::Unreadable { .. } => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "status_unreadable",
                e.to_string(),
            ),
        }
    })?;
    let view = view.ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            format!(
                "no order {order_id:?} is known; an order appears here once its first step is done"
            ),
        )
    })?;
    Ok(json_response(StatusCode::OK, &view))
}

#[cfg(test)]
mod tests {
    use busline_fulfillment::status::{InMemoryOrderTracker, Step, Transition};
    use serde_json::Value;

    use super::*;

    fn get(path: &str) -> Request {
        lambda_http::http::Request::builder()
            .method("GET")
            .uri(format!("https://status.example{path}"))
            .body(Body::Empty)
            .unwrap()
    }

    async fn answer(request: Request, tracker: &InMemoryOrderTracker) -> (u16, Value) {
        let response = handle(request, tracker).await;
        let Body::Text(body) = response.body() else {
            panic!("a JSON body")
        };
        (
            response.status().as_u16(),
            serde_json::from_str(body).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_known_order_answers_with_its_status_and_history() {
        let tracker = InMemoryOrderTracker::new();
        tracker
            .record(&Transition::done(Step::ValidateOrder, "SO-7"))
            .await
            .unwrap();
        tracker
            .record(
                &Transition::done(Step::CreateShipment, "SO-7").with_tracking_number(Some("TRK-1")),
            )
            .await
            .unwrap();
        let (status, body) = answer(get("/orders/SO-7"), &tracker).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["order_id"], "SO-7");
        assert_eq!(body["status"], "IN_PROGRESS");
        assert_eq!(body["current_step"], "create-shipment");
        assert_eq!(body["tracking_number"], "TRK-1");
        assert_eq!(body["history"].as_array().unwrap().len(), 2);
        assert_eq!(body["history"][0]["description"], "order validated");
    }

    #[tokio::test]
    async fn unknown_orders_routes_and_methods_say_why() {
        let tracker = InMemoryOrderTracker::new();
        let (status, body) = answer(get("/orders/SO-404"), &tracker).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("order_not_found"))
        );
        let (status, body) = answer(get("/customers/C-1"), &tracker).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("unknown_route"))
        );
        let mut post = get("/orders/SO-1");
        *post.method_mut() = Method::POST;
        let (status, _) = answer(post, &tracker).await;
        assert_eq!(status, 405);
    }

    #[tokio::test]
    async fn an_unreachable_table_is_a_503() {
        let tracker = InMemoryOrderTracker::new();
        tracker.set_unavailable(true);
        let (status, body) = answer(get("/orders/SO-1"), &tracker).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("status_unavailable"))
        );
    }
}
