//! The runtime of busline's transformers: an EventBridge rule delivers one event, the transformer
//! turns it into the events it becomes (one for a translation or an enrichment, several for a
//! split), and they are published together.
//!
//! Nothing is lost and nothing half-made goes out:
//! - an event that cannot be transformed (not an envelope, malformed, invalid, a type the
//!   transformer does not take) is a permanent failure: it goes to the dead-letter queue whole,
//!   with `busline.error_type` and `busline.reason`, and the invocation succeeds, since a retry
//!   could not help;
//! - a dependency that is down (the customer master, the bus) fails the invocation, so Lambda
//!   retries the event and, after its retries, sends it to the function's on-failure destination;
//! - the transformer builds every output before anything is published, and derives each output's
//!   id from the input's ([`Envelope::derive`]), so a retried invocation republishes the same ids,
//!   which consumers deduplicate.

use std::future::Future;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::batch::{DeadLetter, DeadLetterQueue, SqsDeadLetterQueue};
use crate::bus::{EventBridgePublisher, EventPublisher};
use crate::config::{Env, ProcessEnv};
use crate::error::{diagnostic, with_causes};
use crate::telemetry::Hop;
use crate::{Classify, Envelope, ErrorClass};

/// A payload as EventBridge delivered it: JSON text, not yet read.
pub type Raw = Box<RawValue>;

/// The event a rule delivers to a transformer, its detail (the envelope) still JSON text: the Lambda
/// runtime reads only the event's own fields, and the transformer reads the payload straight into
/// its own types.
pub type DeliveredEvent = EventBridgeEvent<Raw>;

/// What became of one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This many events were published (none when the input means nothing to the transformer).
    Published(usize),
    /// The event went to the dead-letter queue with this error type.
    DeadLettered(String),
}

/// Transforms one delivered event with `transform` and publishes what it becomes; see the
/// [module documentation](self). The error is the invocation's failure, for Lambda to retry.
pub async fn transform<O, E, F, Fut, P, D>(
    event: DeliveredEvent,
    transform: F,
    bus: &P,
    dead_letters: &D,
) -> Result<Outcome, Diagnostic>
where
    O: Serialize + Sync,
    E: Classify,
    F: FnOnce(Envelope<Raw>) -> Fut,
    Fut: Future<Output = Result<Vec<Envelope<O>>, E>>,
    P: EventPublisher,
    D: DeadLetterQueue,
{
    match Envelope::from_eventbridge_raw(&event) {
        Err(e) => {
            let letter = park(
                &event,
                Diagnostic {
                    error_type: "MalformedEvent".to_owned(),
                    error_message: with_causes(&e),
                },
            );
            // Still a hop of whatever trace the detail names, so the refusal shows in it.
            let detail: Value = serde_json::from_str(event.detail.get()).unwrap_or_default();
            Hop::of_detail(&detail)
                .run(dead_letter(letter, dead_letters))
                .await
        }
        Ok(envelope) => {
            let hop = Hop::of(&envelope);
            hop.run(async {
                let letter = match transform(envelope).await {
                    Ok(events) if events.is_empty() => return Ok(Outcome::Published(0)),
                    Ok(events) => match bus.publish(&events).await {
                        Ok(()) => {
                            tracing::info!(published = events.len(), "transformed");
                            return Ok(Outcome::Published(events.len()));
                        }
                        Err(e) if e.class() == ErrorClass::Permanent => {
                            park(&event, diagnostic(&e))
                        }
                        Err(e) => return Err(retry(diagnostic(&e))),
                    },
                    Err(e) if e.class() == ErrorClass::Permanent => park(&event, diagnostic(&e)),
                    Err(e) if e.class() == ErrorClass::Duplicate => {
                        return Ok(Outcome::Published(0));
                    }
                    Err(e) => return Err(retry(diagnostic(&e))),
                };
                dead_letter(letter, dead_letters).await
            })
            .await
        }
    }
}

/// Sends `letter` to the dead-letter queue; if that fails, Lambda retries the event.
async fn dead_letter<D: DeadLetterQueue>(
    letter: DeadLetter,
    dead_letters: &D,
) -> Result<Outcome, Diagnostic> {
    tracing::warn!(error_type = %letter.error_type, reason = %letter.reason, "dead-lettered");
    dead_letters.send(&letter).await.map_err(|e| {
        retry(Diagnostic {
            error_type: "DeadLetterUnavailable".to_owned(),
            error_message: with_causes(&e),
        })
    })?;
    Ok(Outcome::DeadLettered(letter.error_type))
}

/// The dead letter for a delivered event: the event whole, as it came, with why.
fn park(event: &DeliveredEvent, error: Diagnostic) -> DeadLetter {
    DeadLetter {
        body: serde_json::to_string(event).unwrap_or_else(|e| format!("unserialisable: {e}")),
        record_id: event.id.clone().unwrap_or_default(),
        source: Some(format!("{}/{}", event.source, event.detail_type)),
        group: None,
        error_type: error.error_type,
        reason: error.error_message,
    }
}

/// The event EventBridge delivers to a rule's target for `envelope`: what a transformer receives.
/// For tests and local tools.
#[cfg(any(test, feature = "test-util"))]
pub fn delivered<T: Serialize>(envelope: &Envelope<T>) -> DeliveredEvent {
    let mut event = EventBridgeEvent::<Value>::default();
    event.version = Some("0".to_owned());
    event.id = Some(uuid::Uuid::new_v4().to_string());
    event.detail_type = envelope.event_type.as_str().to_owned();
    event.source = envelope.source.clone();
    event.account = Some("000000000000".to_owned());
    event.region = Some("us-east-1".to_owned());
    event.time = envelope.time;
    event.detail = serde_json::to_value(envelope).unwrap_or_default();
    raw(&event)
}

/// An event whose detail is a `Value`, as the runtime would have read it: detail as JSON text.
#[cfg(any(test, feature = "test-util"))]
#[expect(clippy::expect_used, reason = "a test helper, on events of JSON")]
pub fn raw(event: &EventBridgeEvent<Value>) -> DeliveredEvent {
    let text = serde_json::to_string(event).expect("an event serialises");
    serde_json::from_str(&text).expect("an event reads back")
}

/// `envelope` as a transformer receives it, its payload JSON text. For tests.
#[cfg(any(test, feature = "test-util"))]
#[expect(clippy::expect_used, reason = "a test helper, on envelopes it wrote")]
pub fn received<T: Serialize>(envelope: &Envelope<T>) -> Envelope<Raw> {
    Envelope::from_eventbridge_raw(&delivered(envelope)).expect("an envelope reads back")
}

fn retry(error: Diagnostic) -> Diagnostic {
    tracing::warn!(error_type = %error.error_type, reason = %error.error_message, "failed; Lambda retries the event");
    error
}

/// Runs a transformer as a Lambda function: the bus from `BUS_NAME`, the dead-letter queue from
/// `DEAD_LETTER_QUEUE_URL`, both built once per cold start from `aws`.
pub async fn serve<O, E, F, Fut>(
    aws: &aws_config::SdkConfig,
    transformer: F,
) -> Result<(), lambda_runtime::Error>
where
    O: Serialize + Sync,
    E: Classify,
    F: Fn(Envelope<Raw>) -> Fut,
    Fut: Future<Output = Result<Vec<Envelope<O>>, E>>,
{
    let bus = ProcessEnv.require("BUS_NAME", "the event bus the transformed events go to")?;
    let dlq = ProcessEnv.require(
        "DEAD_LETTER_QUEUE_URL",
        "the queue events that cannot be transformed go to",
    )?;
    let bus = EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(aws), bus);
    let dead_letters = SqsDeadLetterQueue::on_first_letter(aws, dlq);
    let (bus, dead_letters, transformer) = (&bus, &dead_letters, &transformer);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<DeliveredEvent>| {
            // Boxed: nesting the transformer's future in the runtime's makes a type too deep.
            Box::pin(async move {
                transform(event.payload, transformer, bus, dead_letters)
                    .await
                    .map(drop)
            })
        },
    ))
    .await
}

#[cfg(test)]
mod tests;
