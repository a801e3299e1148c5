//! Saga step: request approval. The state machine invokes it with `.waitForTaskToken` for an order
//! above the approval threshold. It records that the order waits for a person (with the task token,
//! which `approve-order` uses to resume the execution) and publishes
//! `io.busline.order.approval-requested.v1`, carrying the token for approval tools that answer Step
//! Functions themselves. The execution then waits for `SendTaskSuccess` (approved),
//! `SendTaskFailure` with `OrderRejected` (rejected), or the timeout (rejected).
//!
//! A retry of this step gets a new task token: the record is overwritten with it, and the event id is
//! derived from the order and the token, so each token is announced under its own id.

use busline::bus::EventPublisher;
use busline::telemetry::Hop;
use busline::{Envelope, EventType};
use busline_fulfillment::status::{OrderTracker, Status, Transition};
use busline_fulfillment::{FulfillmentError, Order};
use chrono::{TimeDelta, Utc};
use serde::Deserialize;
use serde_json::json;

/// The event type the request is published as.
pub const APPROVAL_REQUESTED: &str = "io.busline.order.approval-requested.v1";

/// The history entry and step the wait is recorded under.
pub const APPROVAL_REQUESTED_ENTRY: &str = "approval-requested";

/// Namespace for request ids derived from `(order, token)`.
const REQUEST_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b1f_4d0e_2a7c_4c1b_9f3e_b05e_11ae_0004);

/// What the state machine passes.
#[derive(Debug, Deserialize)]
pub struct ApprovalRequest {
    /// The order that waits, as the saga's state carries it (`$.order`).
    pub order: Order,
    /// The transaction the order belongs to.
    pub correlation_id: String,
    /// The task token of this `.waitForTaskToken` call, new on each retry: `approve-order` resumes
    /// the execution with it.
    pub task_token: String,
    /// How long the person has, in seconds (the credit decision's `approval_timeout_seconds`).
    pub timeout_seconds: u64,
    /// The trace the saga continues.
    #[serde(default)]
    pub traceparent: Option<String>,
}

/// The Lambda handler: a hop of the saga's trace.
pub async fn handle<T: OrderTracker, P: EventPublisher>(
    request: ApprovalRequest,
    tracker: &T,
    publisher: &P,
) -> Result<(), FulfillmentError> {
    Hop::new(
        request.traceparent.as_deref(),
        &request.correlation_id,
        &request.order.order_id,
        "saga/approval",
    )
    .run(request_approval(&request, tracker, publisher))
    .await
}

async fn request_approval<T: OrderTracker, P: EventPublisher>(
    request: &ApprovalRequest,
    tracker: &T,
    publisher: &P,
) -> Result<(), FulfillmentError> {
    let order = &request.order;
    let now = Utc::now();
    // Whatever the timeout, never a panic: an absurd one just has no date to show.
    let decide_by = i64::try_from(request.timeout_seconds)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|timeout| now.checked_add_signed(timeout));
    let waiting = Transition::new(
        &order.order_id,
        "approval",
        APPROVAL_REQUESTED_ENTRY,
        "waiting for approval",
        Status::AwaitingApproval,
    )
    .with_approval_token(&request.task_token)
    .at(now);
    // Recorded first: whoever sees the event can approve through approve-order at once.
    tracker
        .record(&waiting)
        .await
        .map_err(|e| FulfillmentError::Unavailable {
            system: busline_fulfillment::status::ORDER_STATUS_UNAVAILABLE,
            source: Box::new(e),
        })?;
    let id = uuid::Uuid::new_v5(
        &REQUEST_ID_NAMESPACE,
        format!("{}/{}", order.order_id, request.task_token).as_bytes(),
    );
    #[expect(
        clippy::expect_used,
        reason = "a constant, published by this crate's tests"
    )]
    let event_type = EventType::parse(APPROVAL_REQUESTED).expect("a versioned type");
    let event = Envelope::new(
        id.to_string(),
        "busline.saga.order-fulfillment",
        event_type,
        json!({
            "order_id": order.order_id,
            "customer_id": order.customer.id,
            "total_cents": order.total_cents,
            "currency": order.currency,
            "decide_by": decide_by.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "task_token": request.task_token,
        }),
    )
    .with_subject(order.order_id.clone())
    .with_correlation_id(&request.correlation_id);
    publisher
        .publish(std::slice::from_ref(&event))
        .await
        .map_err(|e| FulfillmentError::Unavailable {
            system: "BusUnavailable",
            source: Box::new(e),
        })?;
    tracing::info!(order_id = %order.order_id, total_cents = order.total_cents, ?decide_by, "approval requested");
    Ok(())
}

#[cfg(test)]
mod tests {
    use busline::bus::InMemoryBus;
    use busline_fulfillment::status::InMemoryOrderTracker;

    use super::*;

    fn request(token: &str) -> ApprovalRequest {
        let order: Order =
            serde_json::from_str(include_str!("../../../infra/events/shop-order.json")).unwrap();
        ApprovalRequest {
            order,
            correlation_id: "corr-1".to_owned(),
            task_token: token.to_owned(),
            timeout_seconds: 60,
            traceparent: Some(SAGA_TRACE.to_owned()),
        }
    }

    const SAGA_TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[tokio::test]
    async fn the_wait_is_recorded_with_its_token_and_announced() {
        let (tracker, publisher) = (InMemoryOrderTracker::new(), InMemoryBus::new());
        let request = request("token-1");
        let order_id = request.order.order_id.clone();
        handle(request, &tracker, &publisher).await.unwrap();

        let view = tracker.get(&order_id).await.unwrap().unwrap();
        assert_eq!(view.status, Status::AwaitingApproval);
        assert_eq!(view.approval_token.as_deref(), Some("token-1"));
        assert!(view.has(APPROVAL_REQUESTED_ENTRY));
        let published = publisher.published();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0]["type"], APPROVAL_REQUESTED);
        assert_eq!(published[0]["data"]["task_token"], "token-1");
        assert_eq!(published[0]["correlationid"], "corr-1");
        // The event continues the saga's trace, from this step's own span.
        let trace = published[0]["traceparent"].as_str().unwrap();
        assert!(
            trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{trace}"
        );
        assert!(!trace.contains("00f067aa0ba902b7"), "{trace}");
    }

    #[tokio::test]
    async fn a_retry_with_a_new_token_replaces_the_token_under_a_new_event_id() {
        let (tracker, publisher) = (InMemoryOrderTracker::new(), InMemoryBus::new());
        let order_id = request("t").order.order_id;
        handle(request("token-1"), &tracker, &publisher)
            .await
            .unwrap();
        handle(request("token-2"), &tracker, &publisher)
            .await
            .unwrap();
        let view = tracker.get(&order_id).await.unwrap().unwrap();
        assert_eq!(view.approval_token.as_deref(), Some("token-2"));
        assert_eq!(view.history.len(), 1, "one wait in the history");
        let published = publisher.published();
        assert_ne!(published[0]["id"], published[1]["id"]);
    }

    #[tokio::test]
    async fn an_absurd_timeout_is_no_panic_just_no_date() {
        let (tracker, publisher) = (InMemoryOrderTracker::new(), InMemoryBus::new());
        let mut request = request("token-1");
        request.timeout_seconds = u64::MAX;
        handle(request, &tracker, &publisher).await.unwrap();
        assert_eq!(
            publisher.published()[0]["data"]["decide_by"],
            serde_json::Value::Null
        );
    }

    #[tokio::test]
    async fn nothing_is_announced_when_the_wait_cannot_be_recorded() {
        let (tracker, publisher) = (InMemoryOrderTracker::new(), InMemoryBus::new());
        tracker.set_unavailable(true);
        let error = handle(request("token-1"), &tracker, &publisher)
            .await
            .unwrap_err();
        assert_eq!(
            busline::Classify::error_type(&error),
            busline_fulfillment::status::ORDER_STATUS_UNAVAILABLE
        );
        assert!(publisher.published().is_empty());
    }
}
