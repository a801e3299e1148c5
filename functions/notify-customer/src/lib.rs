//! Tells the customer: an EventBridge rule delivers each `io.busline.order.fulfilled.v1` here, and
//! the handler sends one email through the email API ([`CustomerNotifications`], over HTTP with an
//! `Idempotency-Key` of `<order>:notify-fulfilled`, so a redelivered event sends nothing new).
//!
//! Nothing is lost:
//! - an email API that cannot be reached (after the toolkit's retries within the invocation) fails
//!   the invocation, so Lambda retries the event and, after its retries, sends it to the
//!   notifications dead-letter queue (the function's on-failure destination);
//! - an event that is not a fulfilled order's envelope, or a notice the API refuses (a bad address),
//!   goes straight to the same dead-letter queue with its reason, and the invocation succeeds: a
//!   retry could not help.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use busline::batch::{DeadLetter, DeadLetterQueue};
use busline::telemetry::Hop;
use busline::{Classify, Envelope, ErrorClass};
use busline_fulfillment::{Customer, CustomerNotifications, FulfilledNotice, FulfillmentError};
use serde::Deserialize;
use serde_json::Value;

/// The event this function handles.
pub const ORDER_FULFILLED: &str = "io.busline.order.fulfilled.v1";

/// What `order.fulfilled` carries that the notice needs.
#[derive(Debug, Deserialize)]
struct Fulfilled {
    order_id: String,
    customer: Customer,
    tracking_number: String,
}

/// Why the invocation failed (Lambda retries it).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The email API could not be reached.
    #[error(transparent)]
    Unavailable(FulfillmentError),
    /// A permanent failure could not be parked in the dead-letter queue.
    #[error(transparent)]
    DeadLetter(#[from] busline::batch::DeadLetterError),
}

impl Classify for NotifyError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Unavailable(e) => e.error_type(),
            Self::DeadLetter(_) => "DeadLetterUnavailable",
        }
    }
}

/// What happened to an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The customer was told.
    Notified,
    /// The event went to the dead-letter queue, with this error type.
    DeadLettered(String),
}

/// The Lambda handler.
pub async fn handle<N: CustomerNotifications, D: DeadLetterQueue>(
    event: EventBridgeEvent<Value>,
    notifications: &N,
    dead_letters: &D,
) -> Result<Outcome, NotifyError> {
    Hop::of_detail(&event.detail)
        .run(notify(event, notifications, dead_letters))
        .await
}

async fn notify<N: CustomerNotifications, D: DeadLetterQueue>(
    event: EventBridgeEvent<Value>,
    notifications: &N,
    dead_letters: &D,
) -> Result<Outcome, NotifyError> {
    #[expect(
        clippy::expect_used,
        reason = "an EventBridge event of JSON always serialises"
    )]
    let body = serde_json::to_string(&event).expect("an event serialises");
    let record_id = event.id.clone().unwrap_or_default();
    let park = |error_type: &str, reason: String| DeadLetter {
        body: body.clone(),
        record_id: record_id.clone(),
        source: Some(format!("{}/{}", event.source, event.detail_type)),
        group: None,
        error_type: error_type.to_owned(),
        reason,
    };
    let detail_type = event.detail_type.clone();
    let letter = match Envelope::<Fulfilled>::from_eventbridge(event.clone()) {
        Err(e) => park("MalformedEvent", e.to_string()),
        Ok(envelope) if envelope.event_type.as_str() != ORDER_FULFILLED => park(
            "UnexpectedEvent",
            format!("this function tells customers about {ORDER_FULFILLED}, not {detail_type}"),
        ),
        Ok(envelope) => {
            let notice = FulfilledNotice {
                order_id: envelope.data.order_id,
                customer: envelope.data.customer,
                tracking_number: envelope.data.tracking_number,
            };
            match notifications.order_fulfilled(&notice).await {
                Ok(()) => {
                    tracing::info!(order_id = %notice.order_id, "customer told");
                    return Ok(Outcome::Notified);
                }
                Err(e) if e.class() == ErrorClass::Retryable => {
                    tracing::warn!(order_id = %notice.order_id, error = %e, "the email API is unavailable; Lambda retries");
                    return Err(NotifyError::Unavailable(e));
                }
                Err(e) => park(e.error_type(), e.to_string()),
            }
        }
    };
    tracing::warn!(error_type = %letter.error_type, reason = %letter.reason, "dead-lettered");
    dead_letters.send(&letter).await?;
    Ok(Outcome::DeadLettered(letter.error_type))
}

#[cfg(test)]
mod tests;
