//! Outbound delivery: an SQS-triggered sink that POSTs each bus event to the endpoints subscribed
//! to its type (`SUBSCRIPTIONS`: `{"<event type>": [{"name": "...", "url": "https://...",
//! "secret": "<Secrets Manager id>"}]}`).
//!
//! - **Signing and deduplication: Standard Webhooks, a secret per endpoint.** The body is the
//!   envelope (CloudEvents JSON). Each request carries `webhook-id` (the event id, the same on
//!   every retry), `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
//!   "<id>.<timestamp>.<body>">`, keyed with that endpoint's own `whsec_` secret (the specification
//!   asks for one per endpoint, so one subscriber's secret cannot sign for another), and
//!   `Idempotency-Key: <source>:<id>`, so receivers can drop copies. Any Standard Webhooks
//!   library verifies it, and so does busline's own ingest.
//! - **Delivery per endpoint** ([`requeue`]). Each (event, endpoint) pair is its own message: an
//!   event for several subscribers is fanned out into one message each, so one endpoint's refusal
//!   dead-letters only its own copy and a slow one delays only its own.
//! - **Retries by requeue, not by sleeping, for a time, not a count.** A `5xx`, a `429`, a timeout
//!   or a transport error sends the message again with SQS's delay set to the backoff for its
//!   attempt (exponential, full jitter, capped at 15 min; at least the `Retry-After` a `429` asks
//!   for), carrying the attempt and the first attempt's time. Past the retry horizon
//!   (`RETRY_HORIZON_SECONDS`, 24 h) the event goes to the dead-letter queue with the last failure.
//!   Any other `4xx` is permanent: dead-lettered at once with the status and an excerpt of the answer.
//! - **Circuit breaker per destination**, in DynamoDB so every concurrent environment shares it
//!   ([`circuit`]): after consecutive failures it opens, and while open, messages for it wait out
//!   the open time (requeued with that delay) instead of hammering it.
//! - **Timeouts.** Each request's timeout is the configured one, cut to the invocation's remaining
//!   time.
//! - **Redirects are answers, not hops.** The client never follows one ([`http_client`]): a `3xx`
//!   is permanent, dead-lettered with its `Location`, so a signed event is neither lost to a body-less
//!   GET that answers 200 nor sent to a host nobody subscribed.
//! - **`410 Gone` disables the endpoint** ([`circuit`]): its events go to the dead-letter queue with
//!   the reason, unsent, until an operator enables it again.
//! - **Each (event, endpoint) is POSTed once** ([`DeliveryOf`]): a 2xx is recorded in the
//!   idempotency table (`IDEMPOTENCY_TABLE`, kept past the retry horizon), so a message delivered
//!   again, because the invocation died after its POST, the bus delivered the event twice or an
//!   operator redrove it, is acknowledged without a second request. Only an invocation that dies
//!   between the endpoint's answer and the record write sends twice; receivers deduplicate on
//!   `webhook-id`.
//! - **Partial batches.** One bad destination fails only its own messages.

pub mod circuit;
mod config;
pub mod endpoints;
mod error;
pub mod requeue;

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use busline::batch::{BatchError, BatchProcessor, DeadLetterQueue};
use busline::idempotency::{Idempotency, IdempotencyError, IdempotencyStore, Selector};
use busline::retry::{Deadline, now_millis};
use busline::signature::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, SigningKey,
    standard_webhooks_sign,
};
use busline::telemetry::Hop;
use busline::{Classify, Envelope, ErrorClass};
use serde::Serialize;
use serde_json::Value;

use crate::circuit::CircuitStore;
pub use crate::config::{Config, Subscription, fetch_keys, http_client};
pub use crate::error::DeliveryError;
pub use crate::requeue::{
    ATTEMPT_ATTRIBUTE, ENDPOINT_ATTRIBUTE, FIRST_ATTEMPT_ATTRIBUTE, MAX_DELAY, Redelivery, Requeue,
    SqsRequeue,
};

/// The deduplication header.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Time kept back from a request's timeout for answering Lambda.
const RESERVE: Duration = Duration::from_millis(500);

/// What a delivery is recorded under: one event for one endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryOf {
    /// The subscriber's name.
    pub endpoint: String,
    /// The event's `Idempotency-Key`, `<source>:<id>`.
    pub key: String,
}

/// The delivery records, in `store`, under the `deliver-webhook` namespace: kept a day past the
/// retry horizon, so a copy of a message redelivered as late as its last retry is still known.
pub fn delivery_records<S: IdempotencyStore>(
    store: S,
    retry_horizon: Duration,
) -> Idempotency<S, DeliveryOf> {
    Idempotency::new(
        store,
        "deliver-webhook",
        Selector::pair(|d: &DeliveryOf| (&d.endpoint, &d.key)),
    )
    .ttl(retry_horizon + Duration::from_secs(86_400))
}

/// The sink: its configuration, signing secret, HTTP client and ports.
pub struct Deliverer<C, V, S> {
    /// What it is told.
    pub config: Config,
    /// Each endpoint's signing key, by endpoint name.
    pub keys: HashMap<String, SigningKey>,
    /// The HTTP client.
    pub http: reqwest::Client,
    /// Circuits per destination.
    pub circuits: C,
    /// Where retries and fanned-out messages go.
    pub requeue: V,
    /// What was delivered already ([`delivery_records`]).
    pub deliveries: Idempotency<S, DeliveryOf>,
}

/// The start of a subscriber's answer, for reasons and the delivery's record.
fn excerpt(text: &str) -> String {
    busline::text::truncated(text, 300).to_owned()
}

impl<C: CircuitStore, V: Requeue, S: IdempotencyStore> Deliverer<C, V, S> {
    /// Delivers one message to every subscriber of its event's type.
    pub async fn deliver(
        &self,
        message: &SqsMessage,
        deadline: Deadline,
    ) -> Result<(), DeliveryError> {
        // When the handler took the message, and when the bus put it on the queue: the queue's hop
        // in the logs (and the delivery benchmark's).
        let started_at_ms = chrono::Utc::now().timestamp_millis();
        let sent_at_ms: Option<i64> = message
            .attributes
            .get("SentTimestamp")
            .and_then(|t| t.parse().ok());
        let body = message.body.as_deref().unwrap_or_default();
        let event: EventBridgeEvent<Value> = serde_json::from_str(body).map_err(|e| {
            DeliveryError::NotAnEvent(format!("the body is not an EventBridge event: {e}"))
        })?;
        Hop::of_detail(&event.detail)
            .queued_at(sent_at_ms.and_then(chrono::DateTime::from_timestamp_millis))
            .run(self.deliver_event(event, message, deadline, sent_at_ms, started_at_ms))
            .await
    }

    /// [`Deliverer::deliver`] once the body is read, in the event's hop: a message from the bus
    /// rule is fanned out into one message per endpoint (or delivered at once when there is one
    /// endpoint); a message for one endpoint is delivered to it, and a retryable failure is
    /// requeued with its backoff until the retry horizon has passed.
    async fn deliver_event(
        &self,
        event: EventBridgeEvent<Value>,
        message: &SqsMessage,
        deadline: Deadline,
        sent_at_ms: Option<i64>,
        started_at_ms: i64,
    ) -> Result<(), DeliveryError> {
        let envelope = Envelope::<Value>::from_eventbridge(event)
            .map_err(|e| DeliveryError::NotAnEvent(e.to_string()))?;
        let event_type = envelope.event_type.as_str();
        let subscribers = self
            .config
            .subscriptions
            .get(event_type)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| DeliveryError::NoSubscriber(event_type.to_owned()))?;
        let attribute = |name: &str| {
            message
                .message_attributes
                .get(name)
                .and_then(|a| a.string_value.as_deref())
        };
        let body = message.body.as_deref().unwrap_or_default();
        let first_attempt_ms = attribute(FIRST_ATTEMPT_ATTRIBUTE)
            .and_then(|t| t.parse().ok())
            .or(sent_at_ms)
            .unwrap_or(started_at_ms);
        let subscriber = match (attribute(ENDPOINT_ATTRIBUTE), subscribers.as_slice()) {
            (Some(name), _) => subscribers
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| DeliveryError::NoSubscriber(format!("{event_type} at {name}")))?,
            (None, [only]) => only,
            (None, _) => {
                let fanned: Vec<Redelivery> = subscribers
                    .iter()
                    .map(|s| Redelivery {
                        body: body.to_owned(),
                        endpoint: s.name.clone(),
                        attempt: 1,
                        first_attempt_ms,
                        delay: Duration::ZERO,
                    })
                    .collect();
                self.requeue
                    .send(&fanned)
                    .await
                    .map_err(|e| DeliveryError::Failed {
                        destination: "every endpoint".to_owned(),
                        why: format!("could not queue one message per endpoint: {e}"),
                        retry_in: Duration::from_secs(1),
                    })?;
                tracing::info!(event_id = %envelope.id, endpoints = fanned.len(), "one message per endpoint");
                return Ok(());
            }
        };
        let payload = serde_json::to_vec(&envelope)
            .map_err(|e| DeliveryError::NotAnEvent(format!("it does not serialise: {e}")))?;
        let key = format!("{}:{}", envelope.source, envelope.id);
        // A requeued message says its attempt; one SQS redelivered (after a crash) counts receives.
        let attempt: u32 = attribute(ATTEMPT_ATTRIBUTE)
            .or_else(|| {
                message
                    .attributes
                    .get("ApproximateReceiveCount")
                    .map(String::as_str)
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let of = DeliveryOf {
            endpoint: subscriber.name.clone(),
            key: key.clone(),
        };
        let posted = self
            .deliveries
            .run_detailed(&of, Some(deadline), || {
                self.post(
                    subscriber,
                    &payload,
                    (&envelope.id, &key),
                    attempt,
                    deadline,
                )
            })
            .await;
        let error = match posted {
            Ok(handled) => {
                tracing::info!(
                    event_id = %envelope.id,
                    destination = %subscriber.name,
                    attempt,
                    sent_at_ms,
                    started_at_ms,
                    queue_age_ms = sent_at_ms.map(|sent| started_at_ms - sent),
                    "{}",
                    if handled.replayed { "delivered before; not sent again" } else { "delivered" }
                );
                return Ok(());
            }
            Err(IdempotencyError::AlreadyCompleted { .. }) => return Ok(()),
            Err(IdempotencyError::Handler(error)) => error,
            // Another invocation holds the delivery (a copy of the message), or one died during its
            // request: it comes back when that claim lapses.
            Err(IdempotencyError::AlreadyInProgress { lease_until_ms, .. }) => {
                DeliveryError::Failed {
                    destination: subscriber.name.clone(),
                    why: "another invocation is delivering it".to_owned(),
                    retry_in: Duration::from_millis((lease_until_ms - now_millis()).max(0) as u64)
                        .max(Duration::from_secs(1)),
                }
            }
            Err(e) if e.class() == ErrorClass::Permanent => {
                return Err(DeliveryError::Unrecorded {
                    destination: subscriber.name.clone(),
                    why: e.to_string(),
                });
            }
            Err(e) => DeliveryError::Failed {
                destination: subscriber.name.clone(),
                why: format!("its delivery record cannot be kept: {e}"),
                retry_in: Duration::from_secs(5),
            },
        };
        let retry_in = match &error {
            DeliveryError::Failed { retry_in, .. }
            | DeliveryError::CircuitOpen { retry_in, .. } => *retry_in,
            _ => {
                tracing::warn!(event_id = %envelope.id, destination = %subscriber.name, attempt, error = %error, "not delivered");
                return Err(error);
            }
        };
        let trying_for = Duration::from_millis((now_millis() - first_attempt_ms).max(0) as u64);
        if trying_for + retry_in > self.config.retry_horizon {
            let gave_up = DeliveryError::GaveUp {
                destination: subscriber.name.clone(),
                attempts: attempt,
                hours: trying_for.as_secs_f64() / 3600.0,
                last: error.to_string(),
            };
            tracing::warn!(event_id = %envelope.id, destination = %subscriber.name, attempt, error = %gave_up, "not delivered");
            return Err(gave_up);
        }
        let again = Redelivery {
            body: body.to_owned(),
            endpoint: subscriber.name.clone(),
            attempt: attempt + 1,
            first_attempt_ms,
            delay: retry_in.min(MAX_DELAY),
        };
        match self.requeue.send(std::slice::from_ref(&again)).await {
            Ok(()) => {
                tracing::warn!(event_id = %envelope.id, destination = %subscriber.name, attempt, retry_in_s = again.delay.as_secs(), error = %error, "not delivered; requeued for the next attempt");
                Ok(())
            }
            Err(e) => {
                // The message itself comes back after its visibility timeout instead.
                tracing::warn!(event_id = %envelope.id, destination = %subscriber.name, attempt, error = %error, requeue_error = %e, "not delivered, and could not be requeued");
                Err(error)
            }
        }
    }

    async fn post(
        &self,
        subscriber: &Subscription,
        payload: &[u8],
        (message_id, key): (&str, &str),
        attempt: u32,
        deadline: Deadline,
    ) -> Result<(), DeliveryError> {
        let destination = &subscriber.name;
        let now = now_millis();
        let circuit = match self.circuits.get(destination).await {
            Ok(circuit) => circuit,
            Err(e) => {
                tracing::warn!(error = %e, "circuit unknown; delivering anyway");
                Default::default()
            }
        };
        if let Some(reason) = &circuit.disabled {
            return Err(DeliveryError::Disabled {
                destination: destination.clone(),
                reason: reason.clone(),
            });
        }
        if let Some(wait) = circuit.wait(now) {
            return Err(DeliveryError::CircuitOpen {
                destination: destination.clone(),
                retry_in: wait.max(Duration::from_secs(1)),
            });
        }
        let timeout = self
            .config
            .request_timeout
            .min(deadline.remaining().saturating_sub(RESERVE));
        let failed = |why: String, at_least: Duration| async move {
            let circuit = self
                .circuits
                .failed(destination, now_millis(), self.config.circuit)
                .await
                .unwrap_or_default();
            let retry_in = self
                .config
                .backoff
                .delay(attempt)
                .max(at_least)
                .max(circuit.wait(now_millis()).unwrap_or_default())
                .max(Duration::from_secs(1));
            DeliveryError::Failed {
                destination: destination.clone(),
                why,
                retry_in,
            }
        };
        if timeout < Duration::from_millis(100) {
            return Err(failed("no time left in the invocation".to_owned(), Duration::ZERO).await);
        }
        let Some(signing_key) = self.keys.get(destination) else {
            return Err(DeliveryError::NoSecret(destination.clone()));
        };
        let timestamp = (now / 1000) as i64;
        let signature = standard_webhooks_sign(signing_key, message_id, timestamp, payload)
            .ok_or_else(|| {
                DeliveryError::NotAnEvent("Standard Webhooks signs UTF-8 only".into())
            })?;
        let mut request = self
            .http
            .post(&subscriber.url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_WEBHOOK_ID, message_id)
            .header(HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(HEADER_WEBHOOK_SIGNATURE, signature)
            .header(IDEMPOTENCY_KEY_HEADER, key);
        // The subscriber continues the event's trace, if it traces.
        if let Some(traceparent) = busline::telemetry::current_traceparent() {
            request = request.header(busline::telemetry::TRACEPARENT_HEADER, traceparent);
        }
        let sent = request.body(payload.to_vec()).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Err(failed(
                    format!("no answer within {} ms", timeout.as_millis()),
                    Duration::ZERO,
                )
                .await);
            }
            Err(e) => {
                return Err(failed(format!("could not be reached: {e}"), Duration::ZERO).await);
            }
        };
        let status = response.status();
        if status.is_success() {
            if circuit.failures > 0
                && let Err(e) = self.circuits.succeeded(destination).await
            {
                tracing::warn!(error = %e, "could not close the circuit");
            }
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or_default();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(excerpt)
                .unwrap_or_default();
            return Err(DeliveryError::Redirected {
                destination: destination.clone(),
                status: status.as_u16(),
                location,
            });
        }
        let text = response.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::GONE {
            let reason = format!("answered 410 Gone: {}", excerpt(&text));
            if let Err(e) = self.circuits.disable(destination, &reason).await {
                tracing::warn!(error = %e, "could not disable the endpoint; it is refused this once");
            }
            return Err(DeliveryError::Disabled {
                destination: destination.clone(),
                reason,
            });
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(failed(
                format!("answered {status}: {}", excerpt(&text)),
                retry_after,
            )
            .await);
        }
        Err(DeliveryError::Refused {
            destination: destination.clone(),
            status: status.as_u16(),
            excerpt: excerpt(&text),
        })
    }
}

/// The Lambda handler: each message delivered on its own; the batch response names the ones to
/// retry, and permanent failures go to the dead-letter queue.
pub async fn handle<C: CircuitStore, V: Requeue, S: IdempotencyStore, Q: DeadLetterQueue>(
    event: SqsEvent,
    deliverer: &Deliverer<C, V, S>,
    processor: &BatchProcessor<Q>,
    deadline: Deadline,
) -> Result<SqsBatchResponse, BatchError> {
    processor
        .sqs_until(&event, deadline, async |message| {
            deliverer.deliver(message, deadline).await
        })
        .await
        .into_result()
}

#[cfg(test)]
mod tests;
