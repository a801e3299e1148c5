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
//! - **Retries by visibility, not by sleeping.** A `5xx`, a `429`, a timeout or a transport error
//!   leaves the message on the queue with its visibility timeout set to the backoff for its attempt
//!   (`ApproximateReceiveCount`; exponential, full jitter, capped; at least the `Retry-After` a
//!   `429` asks for), and the batch response names it. Any other `4xx` (or `3xx`) is permanent: the
//!   event goes to the dead-letter queue with the status and an excerpt of the answer.
//! - **Circuit breaker per destination**, in DynamoDB so every concurrent environment shares it
//!   ([`circuit`]): after consecutive failures it opens, and while open, messages for it wait out
//!   the open time (visibility) instead of hammering it.
//! - **Timeouts.** Each request's timeout is the configured one, cut to the invocation's remaining
//!   time.
//! - **Redirects are answers, not hops.** The client never follows one ([`http_client`]): a `3xx`
//!   is permanent, dead-lettered with its `Location`, so a signed event is neither lost to a body-less
//!   GET that answers 200 nor sent to a host nobody subscribed.
//! - **`410 Gone` disables the endpoint** ([`circuit`]): its events go to the dead-letter queue with
//!   the reason, unsent, until an operator enables it again.
//! - **Partial batches.** One bad destination fails only its own messages.

pub mod circuit;

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use busline::batch::{BatchError, BatchProcessor, DeadLetterQueue};
use busline::config::{ConfigError, Env};
use busline::retry::{Backoff, Deadline, now_millis};
use busline::signature::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, SigningKey,
    standard_webhooks_sign,
};
use busline::telemetry::Hop;
use busline::{Classify, Envelope, ErrorClass};
use serde::Deserialize;
use serde_json::Value;

use crate::circuit::{CircuitStore, Policy};

/// The deduplication header.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// Time kept back from a request's timeout for answering Lambda.
const RESERVE: Duration = Duration::from_millis(500);

/// One subscriber endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    /// A name for logs and the circuit (defaults to the URL's host).
    #[serde(default)]
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// The Secrets Manager id of the endpoint's own Standard Webhooks secret (`whsec_...`).
    pub secret: String,
}

/// What the sink is told.
#[derive(Clone, Debug)]
pub struct Config {
    /// Subscribers per event type.
    pub subscriptions: HashMap<String, Vec<Subscription>>,
    /// Each request's timeout, at most.
    pub request_timeout: Duration,
    /// The backoff between attempts of one message.
    pub backoff: Backoff,
    /// When a destination's circuit opens.
    pub circuit: Policy,
}

impl Config {
    /// Each endpoint's name and the Secrets Manager id of its signing secret, once each.
    pub fn endpoint_secrets(&self) -> Vec<(String, String)> {
        let mut secrets: Vec<(String, String)> = self
            .subscriptions
            .values()
            .flatten()
            .map(|s| (s.name.clone(), s.secret.clone()))
            .collect();
        secrets.sort();
        secrets.dedup();
        secrets
    }

    /// Reads `SUBSCRIPTIONS`, `REQUEST_TIMEOUT_MS` (5000), `RETRY_BASE_SECONDS` (2),
    /// `RETRY_MAX_SECONDS` (900), `CIRCUIT_THRESHOLD` (5) and `CIRCUIT_OPEN_SECONDS` (30).
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let raw = env.require("SUBSCRIPTIONS", "subscribers per event type, as JSON")?;
        let invalid = || ConfigError::Invalid {
            name: "SUBSCRIPTIONS",
            value: raw.clone(),
            expected: r#"{"<event type>": [{"name": "...", "url": "http(s)://...", "secret": "<Secrets Manager id>"}]}, one secret per endpoint name"#,
        };
        let mut subscriptions: HashMap<String, Vec<Subscription>> =
            serde_json::from_str(&raw).map_err(|_| invalid())?;
        for subscription in subscriptions.values_mut().flatten() {
            let host = subscription
                .url
                .strip_prefix("https://")
                .or_else(|| subscription.url.strip_prefix("http://"))
                .and_then(|rest| rest.split('/').next())
                .filter(|host| !host.is_empty())
                .ok_or_else(invalid)?;
            if subscription.name.is_empty() {
                subscription.name = host.to_owned();
            }
            if subscription.secret.trim().is_empty() {
                return Err(invalid());
            }
        }
        // An endpoint name is one endpoint: its URL and secret are the same wherever it appears.
        let all: Vec<&Subscription> = subscriptions.values().flatten().collect();
        for (i, a) in all.iter().enumerate() {
            if all[..i]
                .iter()
                .any(|b| b.name == a.name && (b.url != a.url || b.secret != a.secret))
            {
                return Err(invalid());
            }
        }
        let seconds = |name, default, expected| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(env.parse_or(name, default, expected)?))
        };
        Ok(Self {
            subscriptions,
            request_timeout: Duration::from_millis(env.parse_or(
                "REQUEST_TIMEOUT_MS",
                5000,
                "milliseconds a request may take",
            )?),
            backoff: Backoff {
                max_attempts: u32::MAX,
                base: seconds("RETRY_BASE_SECONDS", 2, "seconds before the first retry")?,
                max_delay: seconds(
                    "RETRY_MAX_SECONDS",
                    900,
                    "the longest wait between attempts",
                )?,
            },
            circuit: Policy {
                threshold: env.parse_or(
                    "CIRCUIT_THRESHOLD",
                    5,
                    "failures in a row that open a circuit",
                )?,
                open_for: seconds("CIRCUIT_OPEN_SECONDS", 30, "seconds a circuit stays open")?,
            },
        })
    }
}

/// The HTTP client deliveries go out on: it never follows a redirect (a `3xx` is an answer; see the
/// module's notes) and sends no `Referer`.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .build()
        .expect("a client with static settings builds")
}

/// Reads every endpoint's Standard Webhooks secret from Secrets Manager, concurrently (each read
/// is a round trip on the cold-start path), failing with the endpoint and secret that are wrong.
pub async fn fetch_keys(
    client: &aws_sdk_secretsmanager::Client,
    config: &Config,
) -> Result<HashMap<String, SigningKey>, Box<dyn std::error::Error + Send + Sync>> {
    let reads = config.endpoint_secrets().into_iter().map(|(name, secret_id)| async move {
        let secret = busline::aws::secret_string(client, &secret_id)
            .await
            .map_err(|e| format!("could not read the signing secret {secret_id} of endpoint {name}; check that it exists and that the function may read it: {e}"))?;
        let key = busline::signature::Scheme::StandardWebhooks
            .key(&secret)
            .map_err(|e| format!("the signing secret {secret_id} of endpoint {name} is not a Standard Webhooks secret: {e}"))?;
        Ok::<_, String>((name, key))
    });
    Ok(futures_util::future::try_join_all(reads)
        .await?
        .into_iter()
        .collect())
}

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Not an envelope. Permanent.
    #[error("not an event: {0}")]
    NotAnEvent(String),
    /// No endpoint subscribes to the type. Permanent (the rule and the configuration disagree).
    #[error("no subscriber for {0}")]
    NoSubscriber(String),
    /// The endpoint has no signing key: the function started without its secret. Permanent.
    #[error("no signing secret for {0}")]
    NoSecret(String),
    /// The destination answered with a redirect, which is never followed. Permanent.
    #[error(
        "{destination} answered {status}, a redirect to {location:?}; redirects are not followed: update the subscription's URL"
    )]
    Redirected {
        /// The subscriber.
        destination: String,
        /// The HTTP status.
        status: u16,
        /// Where it pointed.
        location: String,
    },
    /// The destination is disabled (it answered `410 Gone`). Permanent.
    #[error("{destination} is disabled ({reason}); enable it by deleting its circuit item")]
    Disabled {
        /// The subscriber.
        destination: String,
        /// Why.
        reason: String,
    },
    /// The destination refused it. Permanent.
    #[error("{destination} refused the event with {status}: {excerpt}")]
    Refused {
        /// The subscriber.
        destination: String,
        /// The HTTP status.
        status: u16,
        /// The start of its answer.
        excerpt: String,
    },
    /// The destination failed; the message waits `retry_in` (its visibility).
    #[error("{destination} failed ({why}); retrying in {} s", retry_in.as_secs())]
    Failed {
        /// The subscriber.
        destination: String,
        /// What happened.
        why: String,
        /// When the message comes back.
        retry_in: Duration,
    },
    /// The destination's circuit is open; the message waits until it may close.
    #[error("the circuit to {destination} is open; retrying in {} s", retry_in.as_secs())]
    CircuitOpen {
        /// The subscriber.
        destination: String,
        /// When the message comes back.
        retry_in: Duration,
    },
}

impl Classify for DeliveryError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Failed { .. } | Self::CircuitOpen { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::NotAnEvent(_) => "NotAnEvent",
            Self::NoSubscriber(_) => "NoSubscriber",
            Self::NoSecret(_) => "NoSigningSecret",
            Self::Refused { .. } => "DeliveryRefused",
            Self::Redirected { .. } => "DeliveryRedirected",
            Self::Disabled { .. } => "EndpointDisabled",
            Self::Failed { .. } => "DeliveryFailed",
            Self::CircuitOpen { .. } => "CircuitOpen",
        }
    }
}

/// Sets how long a received message stays hidden: the backoff, applied by SQS.
pub trait Visibility: Send + Sync {
    /// Hides the message with `receipt_handle` for `delay` from now.
    fn delay(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Send;
}

/// `ChangeMessageVisibility` on the queue the function consumes.
#[derive(Clone, Debug)]
pub struct SqsVisibility {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsVisibility {
    /// For the queue at `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl Visibility for SqsVisibility {
    async fn delay(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay.min(MAX_VISIBILITY).as_secs().max(1) as i32)
            .send()
            .await?;
        Ok(())
    }
}

/// The sink: its configuration, signing secret, HTTP client and ports.
pub struct Deliverer<C, V> {
    /// What it is told.
    pub config: Config,
    /// Each endpoint's signing key, by endpoint name.
    pub keys: HashMap<String, SigningKey>,
    /// The HTTP client.
    pub http: reqwest::Client,
    /// Circuits per destination.
    pub circuits: C,
    /// The queue's visibility, for backoff.
    pub visibility: V,
}

fn excerpt(text: &str) -> String {
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl<C: CircuitStore, V: Visibility> Deliverer<C, V> {
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

    /// [`Deliverer::deliver`] once the body is read: to every subscriber, in the event's hop.
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
        let subscribers = self
            .config
            .subscriptions
            .get(envelope.event_type.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| DeliveryError::NoSubscriber(envelope.event_type.as_str().to_owned()))?;
        let payload = serde_json::to_vec(&envelope).expect("an envelope serialises");
        let key = format!("{}:{}", envelope.source, envelope.id);
        let attempt: u32 = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        for subscriber in subscribers {
            if let Err(error) = self
                .post(
                    subscriber,
                    &payload,
                    (&envelope.id, &key),
                    attempt,
                    deadline,
                )
                .await
            {
                if let DeliveryError::Failed { retry_in, .. }
                | DeliveryError::CircuitOpen { retry_in, .. } = &error
                    && let Some(handle) = &message.receipt_handle
                    && let Err(e) = self.visibility.delay(handle, *retry_in).await
                {
                    tracing::warn!(error = %e, "could not set the backoff; the queue's own visibility applies");
                }
                tracing::warn!(event_id = %envelope.id, destination = %subscriber.name, attempt, error = %error, "not delivered");
                return Err(error);
            }
            tracing::info!(
                event_id = %envelope.id,
                destination = %subscriber.name,
                attempt,
                sent_at_ms,
                started_at_ms,
                queue_age_ms = sent_at_ms.map(|sent| started_at_ms - sent),
                "delivered"
            );
        }
        Ok(())
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
            .expect("an envelope serialises as UTF-8 JSON");
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
                .map(|l| excerpt(l))
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
pub async fn handle<C: CircuitStore, V: Visibility, Q: DeadLetterQueue>(
    event: SqsEvent,
    deliverer: &Deliverer<C, V>,
    processor: &BatchProcessor<Q>,
    deadline: Deadline,
) -> Result<SqsBatchResponse, BatchError> {
    processor
        .sqs(&event, async |message| {
            deliverer.deliver(message, deadline).await
        })
        .await
        .into_result()
}

#[cfg(test)]
mod tests;
