//! Webhook ingest: the API-led way in to the bus.
//!
//! A source system POSTs to `/webhooks/{source}` through a Lambda Function URL (or an API Gateway
//! HTTP API). For each request the handler, in this order:
//!
//! 1. finds the source (404 if it is not configured);
//! 2. refuses bodies that cannot fit in one EventBridge entry (413);
//! 3. verifies the `X-Busline-Signature` header, `t=<unix seconds>,v1=<hex>` (401);
//! 4. requires an `X-Delivery-Id` header (400), the sender's id for this delivery;
//! 5. parses the body as JSON (400) and validates it against the source's schema (422);
//! 6. runs the publish under busline's [idempotency](busline::idempotency) layer, keyed by the
//!    envelope's source and id (both derived from the source and delivery id): a delivery already
//!    handled answers 202 with the event id it produced and publishes nothing; one being handled
//!    right now answers 409; the same delivery id with a different body answers 422;
//! 7. publishes the envelope, retrying rejected entries; if the bus still refuses, the idempotency
//!    record is deleted and it answers 503, so the sender's retry runs again.
//!
//! The envelope id is derived from the source and delivery id, so even a publish whose completion
//! was never recorded republishes under the same id, and consumers deduplicate on it.

use std::collections::HashMap;
use std::time::Instant;

use busline::api::{header_str, json_response, path};
use busline::bus::{EventPublisher, PublishError};
use busline::config::{ConfigError, Env};
use busline::envelope::{EnvelopeError, MAX_ENTRY_BYTES};
use busline::idempotency::{Idempotency, IdempotencyError, IdempotencyStore, StoreError};
use busline::retry::Deadline;
use busline::schema::{Schema, SchemaError, Violation};
use busline::signature::{self, SignatureError};
use busline::telemetry::{Metrics, TRACEPARENT_HEADER, TraceContext, Unit, in_context};
use busline::{Envelope, EventType};
use chrono::{DateTime, Utc};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{Instrument, field};

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-busline-signature";
/// Header carrying the sender's delivery id.
pub const DELIVERY_ID_HEADER: &str = "x-delivery-id";
/// Optional header carrying the sender's correlation id.
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";

/// Namespace for envelope ids derived from `(source, delivery id)`.
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b1f_4d0e_2a7c_4c1b_9f3e_b05e_11ae_0001);

/// A source system busline knows how to ingest: its schema and the event type its webhooks become.
#[derive(Debug)]
pub struct SourceSpec {
    /// The name in the path, `/webhooks/{name}`.
    pub name: &'static str,
    /// The versioned event type published for it.
    pub event_type: &'static str,
    /// The JSON Schema of the body, from `infra/schemas/webhooks/`.
    pub schema: &'static str,
    /// JSON pointer to the field used as the envelope's `subject` (the ordering key).
    pub subject: &'static str,
}

/// Every source the binary can ingest. Which of them are live, and with which secret, is
/// configuration (`WEBHOOK_SOURCES`).
pub const SOURCES: &[SourceSpec] = &[
    SourceSpec {
        name: "shop",
        event_type: "io.busline.shop.order.placed.v1",
        schema: include_str!("../../../infra/schemas/webhooks/shop-order.v1.json"),
        subject: "/order_id",
    },
    SourceSpec {
        name: "crm",
        event_type: "io.busline.crm.customer.updated.v1",
        schema: include_str!("../../../infra/schemas/webhooks/crm-customer.v1.json"),
        subject: "/customer_id",
    },
    SourceSpec {
        name: "marketplace",
        event_type: "io.busline.marketplace.order.placed.v1",
        schema: include_str!("../../../infra/schemas/webhooks/marketplace-order.v1.json"),
        subject: "/payload/orderNumber",
    },
    SourceSpec {
        name: "helpdesk",
        event_type: "io.busline.helpdesk.user.updated.v1",
        schema: include_str!("../../../infra/schemas/webhooks/helpdesk-user.v1.json"),
        subject: "/detail/external_id",
    },
];

/// The function's configuration, read once at cold start (see the README for each variable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `BUS_NAME`: the event bus to publish to.
    pub bus_name: String,
    /// `IDEMPOTENCY_TABLE`: the idempotency records' table.
    pub idempotency_table: String,
    /// `WEBHOOK_SOURCES`: `source=secret-id` pairs, comma separated.
    pub sources: Vec<(String, String)>,
    /// `SIGNATURE_TOLERANCE_SECONDS`, default 300.
    pub tolerance_secs: u64,
    /// `IDEMPOTENCY_TTL_SECONDS`: how long a handled delivery is remembered, default 72 h (senders
    /// such as Stripe retry for up to three days).
    pub idempotency_ttl_secs: u64,
}

impl Config {
    /// Reads and checks every variable.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        const SOURCES_EXPECTED: &str = "comma-separated source=secret-id pairs naming known sources, such as shop=busline/webhooks/shop";
        let raw = env.require("WEBHOOK_SOURCES", SOURCES_EXPECTED)?;
        let invalid = || ConfigError::Invalid {
            name: "WEBHOOK_SOURCES",
            value: raw.clone(),
            expected: SOURCES_EXPECTED,
        };
        let sources = raw
            .split(',')
            .map(|pair| {
                let (source, secret) = pair.trim().split_once('=').ok_or_else(invalid)?;
                let known = SOURCES.iter().any(|s| s.name == source.trim());
                (known && !secret.trim().is_empty())
                    .then(|| (source.trim().to_owned(), secret.trim().to_owned()))
                    .ok_or_else(invalid)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            bus_name: env.require("BUS_NAME", "the name or ARN of the event bus to publish to")?,
            idempotency_table: env.require(
                "IDEMPOTENCY_TABLE",
                "the name of the DynamoDB idempotency table",
            )?,
            sources,
            tolerance_secs: env.parse_or(
                "SIGNATURE_TOLERANCE_SECONDS",
                signature::DEFAULT_TOLERANCE_SECS,
                "seconds, a whole number",
            )?,
            idempotency_ttl_secs: env.parse_or(
                "IDEMPOTENCY_TTL_SECONDS",
                72 * 3600,
                "seconds, a whole number",
            )?,
        })
    }
}

/// A live source: its spec, compiled schema and signing secret.
#[derive(Debug)]
pub struct Source {
    spec: &'static SourceSpec,
    event_type: EventType,
    schema: Schema,
    secret: Vec<u8>,
}

impl Source {
    /// Compiles the source `name` with its signing `secret`.
    pub fn new(name: &str, secret: impl Into<Vec<u8>>) -> Result<Self, StartupError> {
        let spec = SOURCES
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| StartupError::UnknownSource(name.to_owned()))?;
        Ok(Self {
            spec,
            event_type: EventType::parse(spec.event_type).map_err(StartupError::EventType)?,
            schema: Schema::compile(spec.name, spec.schema).map_err(StartupError::Schema)?,
            secret: secret.into(),
        })
    }
}

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A configured source has no spec in [`SOURCES`].
    #[error("source {0:?} is not one this binary can ingest")]
    UnknownSource(String),
    /// A built-in event type is not versioned.
    #[error("a built-in event type is invalid")]
    EventType(#[source] EnvelopeError),
    /// A built-in schema does not compile.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A signing secret could not be read.
    #[error(
        "could not read signing secret {secret_id} for source {source_name}; check that it exists and that the function may read it"
    )]
    Secret {
        /// The source.
        source_name: String,
        /// The secret's name or ARN.
        secret_id: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Everything the handler needs, built once per cold start.
#[derive(Debug)]
pub struct Deps<P, S> {
    /// Where events go.
    pub publisher: P,
    /// Which deliveries were handled, keyed by envelope source and id.
    pub idempotency: Idempotency<S, Envelope<Value>>,
    /// Live sources by name.
    pub sources: HashMap<String, Source>,
    /// Signature tolerance, seconds.
    pub tolerance_secs: u64,
}

/// How many handled deliveries a warm environment remembers without asking the store.
const LOCAL_CACHE_ENTRIES: usize = 1024;

impl<P: EventPublisher, S: IdempotencyStore> Deps<P, S> {
    /// Assembles the handler's dependencies from config and already-fetched secrets.
    pub fn new(
        publisher: P,
        store: S,
        config: &Config,
        secrets: Vec<(String, Vec<u8>)>,
    ) -> Result<Self, StartupError> {
        let sources = secrets
            .into_iter()
            .map(|(name, secret)| Source::new(&name, secret).map(|s| (name, s)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            publisher,
            idempotency: Idempotency::for_envelopes(store, "ingest-webhook")
                .ttl(std::time::Duration::from_secs(config.idempotency_ttl_secs))
                .local_cache(LOCAL_CACHE_ENTRIES),
            sources,
            tolerance_secs: config.tolerance_secs,
        })
    }
}

/// Reads every configured source's signing secret from Secrets Manager.
pub async fn fetch_secrets(
    client: &aws_sdk_secretsmanager::Client,
    config: &Config,
) -> Result<Vec<(String, Vec<u8>)>, StartupError> {
    // Concurrently: each read is a round trip, and they all sit on the cold-start path.
    let mut reads = tokio::task::JoinSet::<Result<(String, Vec<u8>), StartupError>>::new();
    for (source, secret_id) in config.sources.clone() {
        let client = client.clone();
        reads.spawn(async move {
            let secret = busline::aws::secret_string(&client, &secret_id)
                .await
                .map_err(|e| StartupError::Secret {
                    source_name: source.clone(),
                    secret_id: secret_id.clone(),
                    source: Box::new(e),
                })?;
            Ok((source, secret.into_bytes()))
        });
    }
    let mut secrets = Vec::with_capacity(config.sources.len());
    while let Some(read) = reads.join_next().await {
        secrets.push(read.expect("a secret read does not panic")?);
    }
    Ok(secrets)
}

/// A request the handler refused, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub reason: String,
    /// Schema violations, for 422.
    pub violations: Vec<Violation>,
}

impl Rejection {
    fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            code,
            reason: reason.into(),
            violations: Vec::new(),
        }
    }

    fn into_response(self) -> Response<Body> {
        let mut body = json!({"error": self.code, "reason": self.reason});
        if !self.violations.is_empty() {
            body["violations"] = json!(self.violations);
        }
        let mut response = json_response(self.status, &body);
        let headers = response.headers_mut();
        match self.status {
            StatusCode::METHOD_NOT_ALLOWED => {
                headers.insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            }
            StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

/// What a 202 says.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The envelope id on the bus.
    pub event_id: String,
    /// True when the delivery had been handled before and nothing new was published.
    pub duplicate: bool,
}

/// The Lambda handler: every outcome is an HTTP response, never a function error.
pub async fn handle<P: EventPublisher, S: IdempotencyStore>(
    request: Request,
    deps: &Deps<P, S>,
) -> Response<Body> {
    // The request is the first hop of the event's trace: a child of the sender's span when it
    // sends a `traceparent` header (a malformed one starts a new trace, and says so).
    let trace = TraceContext::continue_from(header_str(&request, TRACEPARENT_HEADER));
    let span = tracing::info_span!(
        "hop",
        trace_id = %trace.trace_id,
        span_id = %trace.span_id,
        parent_id = trace.parent_id.as_deref(),
        source = field::Empty,
        delivery_id = field::Empty,
        event_id = field::Empty,
        event_type = field::Empty,
        correlation_id = field::Empty,
    );
    let work = async {
        let started = Instant::now();
        let outcome = ingest(&request, deps, Utc::now()).await;
        let source_name = request_source(&request)
            .filter(|s| deps.sources.contains_key(*s))
            .unwrap_or("unknown")
            .to_owned();
        let metrics = Metrics::new("busline")
            .dimension("Function", "ingest-webhook")
            .dimension("Source", source_name);
        match outcome {
            Ok(accepted) => {
                let outcome = if accepted.duplicate {
                    "duplicate"
                } else {
                    "accepted"
                };
                tracing::info!(event_id = %accepted.event_id, outcome, "webhook accepted");
                metrics
                    .dimension("Outcome", outcome)
                    .metric("Webhooks", Unit::Count, 1.0)
                    .metric(
                        "IngestTime",
                        Unit::Milliseconds,
                        started.elapsed().as_secs_f64() * 1000.0,
                    )
                    .emit();
                json_response(StatusCode::ACCEPTED, &accepted)
            }
            Err(rejection) => {
                tracing::warn!(status = rejection.status.as_u16(), code = rejection.code, reason = %rejection.reason, violations = rejection.violations.len(), "webhook rejected");
                metrics
                    .dimension("Outcome", rejection.code)
                    .metric("Webhooks", Unit::Count, 1.0)
                    .emit();
                rejection.into_response()
            }
        }
    };
    in_context(trace, work.instrument(span)).await
}

fn request_source(request: &Request) -> Option<&str> {
    path(request)
        .strip_prefix("/webhooks/")
        .map(|s| s.trim_end_matches('/'))
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

/// The envelope id for a delivery: the same delivery always gets the same id.
pub fn event_id(source: &str, delivery_id: &str) -> String {
    uuid::Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!("{source}/{delivery_id}").as_bytes(),
    )
    .to_string()
}

async fn ingest<P: EventPublisher, S: IdempotencyStore>(
    request: &Request,
    deps: &Deps<P, S>,
    now: DateTime<Utc>,
) -> Result<Accepted, Rejection> {
    let span = tracing::Span::current();
    let name = request_source(request).ok_or_else(|| {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "unknown_route",
            "webhooks are posted to /webhooks/{source}",
        )
    })?;
    let source = deps.sources.get(name).ok_or_else(|| {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no webhook source named {name:?} is configured"),
        )
    })?;
    span.record("source", name);
    if request.method() != Method::POST {
        return Err(Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "webhooks must be POSTed",
        ));
    }

    let body = request.body().as_ref();
    if body.len() > MAX_ENTRY_BYTES {
        return Err(too_large(format!(
            "the body is {} bytes; with its envelope an event must fit in {MAX_ENTRY_BYTES} bytes",
            body.len()
        )));
    }
    signature::verify(
        header_str(request, SIGNATURE_HEADER),
        &source.secret,
        body,
        now.timestamp().max(0) as u64,
        deps.tolerance_secs,
    )
    .map_err(|e: SignatureError| {
        Rejection::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string())
    })?;

    let delivery_id = header_str(request, DELIVERY_ID_HEADER)
        .filter(|id| id.len() <= 200)
        .ok_or_else(|| Rejection::new(StatusCode::BAD_REQUEST, "bad_delivery_id", "send a unique X-Delivery-Id header (at most 200 characters) with every delivery, and the same one when resending"))?;
    span.record("delivery_id", delivery_id);

    let payload: Value = serde_json::from_slice(body).map_err(|e| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let violations = source.schema.violations(&payload);
    if !violations.is_empty() {
        return Err(Rejection {
            violations,
            ..Rejection::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "schema_violation",
                format!("the body does not match the {name} schema"),
            )
        });
    }

    let envelope = build_envelope(request, source, delivery_id, payload);
    span.record("event_id", envelope.id.as_str());
    span.record("correlation_id", envelope.correlation_id());
    span.record("event_type", envelope.event_type.as_str());

    let deadline = request
        .lambda_context_ref()
        .map(|ctx| Deadline::from_epoch_millis(ctx.deadline as i64));
    let handled = deps
        .idempotency
        .run_detailed(&envelope, deadline, || async {
            deps.publisher
                .publish(std::slice::from_ref(&envelope))
                .await
                .map(|()| envelope.id.clone())
        })
        .await;
    match handled {
        Ok(handled) => Ok(Accepted {
            event_id: handled.response,
            duplicate: handled.replayed,
        }),
        Err(IdempotencyError::AlreadyCompleted { .. }) => Ok(Accepted {
            event_id: envelope.id,
            duplicate: true,
        }),
        Err(IdempotencyError::AlreadyInProgress { .. }) => Err(Rejection::new(
            StatusCode::CONFLICT,
            "in_progress",
            "this delivery is being handled right now; retry later",
        )),
        Err(IdempotencyError::PayloadMismatch { .. }) => Err(Rejection::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "delivery_id_reused",
            "this X-Delivery-Id was delivered before with a different body; resend the same body, or send new content under a new delivery id",
        )),
        Err(IdempotencyError::Store(e @ StoreError::Unavailable(_))) => Err(Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "idempotency_unavailable",
            format!("{e}; nothing was published, retry later"),
        )),
        Err(e @ (IdempotencyError::Store(_) | IdempotencyError::MissingKey { .. })) => {
            tracing::error!(error = %e, "the idempotency layer failed");
            Err(Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("{e}; nothing was published"),
            ))
        }
        Err(IdempotencyError::Handler(PublishError::Unpublishable {
            source: EnvelopeError::TooLarge { size, limit },
            ..
        })) => Err(too_large(format!(
            "with its envelope the event is {size} bytes, over EventBridge's {limit}-byte limit"
        ))),
        Err(IdempotencyError::Handler(e)) => Err(Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "bus_unavailable",
            format!("{e}; nothing was published, retry later"),
        )),
    }
}

fn too_large(reason: String) -> Rejection {
    Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", reason)
}

fn build_envelope(
    request: &Request,
    source: &Source,
    delivery_id: &str,
    payload: Value,
) -> Envelope<Value> {
    let subject = payload.pointer(source.spec.subject).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    // The trace is the request's span (see `handle`), which continues the sender's `traceparent`.
    let mut envelope = Envelope::new(
        event_id(source.spec.name, delivery_id),
        format!("busline.webhook.{}", source.spec.name),
        source.event_type.clone(),
        payload,
    )
    .with_causation_id(delivery_id);
    envelope.subject = subject;
    envelope.dataschema = source.schema.id().map(str::to_owned);
    envelope.correlationid = Some(
        header_str(request, CORRELATION_ID_HEADER)
            .map_or_else(|| envelope.id.clone(), str::to_owned),
    );
    envelope
}

#[cfg(test)]
mod tests;
