//! Webhook ingest: the API-led way in to the bus.
//!
//! A source system POSTs to `/webhooks/{source}` through a Lambda Function URL (or an API Gateway
//! HTTP API). Each source is signed in the [scheme](busline::signature::Scheme) its sender uses
//! (Standard Webhooks by default; Stripe, GitHub, Shopify or busline-v1 by configuration). For each
//! request the handler, in this order:
//!
//! 1. finds the source (404 if it is not configured) and requires POST (405);
//! 2. refuses bodies that cannot fit in one EventBridge entry (413);
//! 3. verifies the signature under the source's scheme (401), and takes the delivery id the scheme
//!    lets it trust: one the sender signed, or one derived from what it signed (400 if unusable);
//! 4. only then reads the sender's `traceparent` and `X-Correlation-Id` (400 if the correlation id
//!    is not a short token);
//! 5. parses the body as JSON (400) and validates it against the source's schema (422, with at most
//!    [`MAX_VIOLATIONS`] violations listed and no value echoed);
//! 6. for busline-v1, whose signature does not cover the delivery id, admits the signature once
//!    ([`replay`]): the same signature under another delivery id is a replay (401);
//! 7. runs the publish under busline's [idempotency](busline::idempotency) layer, keyed by the
//!    envelope's source and id (both derived from the source and delivery id): a delivery already
//!    handled answers 202 with the event id it produced and publishes nothing; one being handled
//!    right now answers 409; the same delivery id with a different body answers 422;
//! 8. publishes the envelope, retrying rejected entries; if the bus still refuses, the idempotency
//!    record is deleted and it answers 503, so the sender's retry runs again.
//!
//! The envelope id is derived from the source and delivery id, so even a publish whose completion
//! was never recorded republishes under the same id, and consumers deduplicate on it.

pub mod replay;

use std::collections::HashMap;
use std::time::Instant;

use busline::api::{Problem, header_str, json_response, path};
use busline::bus::{EventPublisher, PublishError};
use busline::config::{ConfigError, Env};
use busline::envelope::{EnvelopeError, MAX_ENTRY_BYTES};
use busline::idempotency::{Idempotency, IdempotencyError, IdempotencyStore, StoreError};
use busline::retry::Deadline;
use busline::schema::{Schema, SchemaError};
use busline::signature::{self, Scheme, SignatureError, SigningKey, Verified};
use busline::telemetry::{Metrics, TRACEPARENT_HEADER, TraceContext, Unit, in_context};
use busline::{Envelope, EventType};
use chrono::{DateTime, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{Instrument, field};

use crate::replay::{ReplayError, ReplayGuard};

/// Optional header carrying the sender's correlation id.
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";
/// The longest correlation id accepted; it becomes the audit trail's partition key.
pub const MAX_CORRELATION_ID_LEN: usize = 128;
/// How many schema violations a 422 lists (the answer also gives the count).
pub const MAX_VIOLATIONS: usize = 20;

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
    SourceSpec {
        name: "payments",
        event_type: "io.busline.payments.event.v1",
        schema: include_str!("../../../infra/schemas/webhooks/payments-event.v1.json"),
        subject: "/data/object/id",
    },
];

/// A configured source: its name, the Secrets Manager id of its signing secret, and its scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceConfig {
    /// The source's name, one of [`SOURCES`].
    pub name: String,
    /// The Secrets Manager id of its signing secret.
    pub secret_id: String,
    /// How its sender signs.
    pub scheme: Scheme,
}

/// The function's configuration, read once at cold start (see the README for each variable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `BUS_NAME`: the event bus to publish to.
    pub bus_name: String,
    /// `IDEMPOTENCY_TABLE`: the idempotency records' table.
    pub idempotency_table: String,
    /// `WEBHOOK_SOURCES` (`source=secret-id` pairs, comma separated) with `WEBHOOK_SCHEMES`
    /// (`source=scheme` pairs; a source not named there is on Standard Webhooks).
    pub sources: Vec<SourceConfig>,
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
        let pairs = |raw: &str| -> Option<Vec<(String, String)>> {
            if raw.trim().is_empty() {
                return Some(Vec::new());
            }
            raw.split(',')
                .map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    let (name, value) = (name.trim(), value.trim());
                    (SOURCES.iter().any(|s| s.name == name) && !value.is_empty())
                        .then(|| (name.to_owned(), value.to_owned()))
                })
                .collect()
        };
        const SCHEMES_EXPECTED: &str = "comma-separated source=scheme pairs for configured sources, the schemes being standard-webhooks, stripe, github, shopify or busline-v1";
        let raw_schemes = env.get("WEBHOOK_SCHEMES").unwrap_or_default();
        let invalid_schemes = || ConfigError::Invalid {
            name: "WEBHOOK_SCHEMES",
            value: raw_schemes.clone(),
            expected: SCHEMES_EXPECTED,
        };
        let schemes = pairs(&raw_schemes)
            .ok_or_else(invalid_schemes)?
            .into_iter()
            .map(|(name, scheme)| Scheme::parse(&scheme).map(|s| (name, s)))
            .collect::<Option<HashMap<_, _>>>()
            .ok_or_else(invalid_schemes)?;
        let sources: Vec<SourceConfig> = pairs(&raw)
            .filter(|p| !p.is_empty())
            .ok_or_else(invalid)?
            .into_iter()
            .map(|(name, secret_id)| SourceConfig {
                scheme: schemes
                    .get(&name)
                    .copied()
                    .unwrap_or(Scheme::StandardWebhooks),
                name,
                secret_id,
            })
            .collect();
        if schemes
            .keys()
            .any(|name| !sources.iter().any(|s| &s.name == name))
        {
            return Err(invalid_schemes());
        }
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

/// A live source: its spec, compiled schema, scheme and signing key.
#[derive(Debug)]
pub struct Source {
    spec: &'static SourceSpec,
    event_type: EventType,
    schema: Schema,
    scheme: Scheme,
    key: SigningKey,
}

impl Source {
    /// Compiles the source `name`, signed under `scheme` with `secret`.
    pub fn new(name: &str, scheme: Scheme, secret: &str) -> Result<Self, StartupError> {
        let spec = SOURCES
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| StartupError::UnknownSource(name.to_owned()))?;
        Ok(Self {
            spec,
            event_type: EventType::parse(spec.event_type).map_err(StartupError::EventType)?,
            schema: Schema::compile(spec.name, spec.schema).map_err(StartupError::Schema)?,
            scheme,
            key: scheme
                .key(secret)
                .map_err(|source| StartupError::BadSecret {
                    source_name: name.to_owned(),
                    scheme,
                    source,
                })?,
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
    /// A signing secret is not a key of its source's scheme.
    #[error("the signing secret of source {source_name} is not a {scheme} secret: {source}")]
    BadSecret {
        /// The source.
        source_name: String,
        /// Its scheme.
        scheme: Scheme,
        /// What is wrong with it.
        #[source]
        source: signature::KeyError,
    },
    /// Two sources share a signing secret, so a request signed for one would pass for the other.
    #[error(
        "sources {0} and {1} share a signing secret; give each source its own, or a request for one can be replayed to the other"
    )]
    SharedSecret(String, String),
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
pub struct Deps<P, S, R> {
    /// Where events go.
    pub publisher: P,
    /// Which deliveries were handled, keyed by envelope source and id.
    pub idempotency: Idempotency<S, Envelope<Value>>,
    /// Which single-use signatures were admitted (busline-v1 sources).
    pub replay: R,
    /// Live sources by name.
    pub sources: HashMap<String, Source>,
    /// Signature tolerance, seconds.
    pub tolerance_secs: u64,
}

/// How many handled deliveries a warm environment remembers without asking the store.
const LOCAL_CACHE_ENTRIES: usize = 1024;

impl<P: EventPublisher, S: IdempotencyStore, R: ReplayGuard> Deps<P, S, R> {
    /// Assembles the handler's dependencies from config and already-fetched secrets, `(source,
    /// secret)`; each source's scheme comes from `config`, Standard Webhooks when it has none.
    pub fn new(
        publisher: P,
        store: S,
        replay: R,
        config: &Config,
        secrets: Vec<(String, String)>,
    ) -> Result<Self, StartupError> {
        for (i, (name, secret)) in secrets.iter().enumerate() {
            if let Some((other, _)) = secrets[..i].iter().find(|(_, s)| s == secret) {
                return Err(StartupError::SharedSecret(other.clone(), name.clone()));
            }
        }
        let scheme_of = |name: &str| {
            config
                .sources
                .iter()
                .find(|s| s.name == name)
                .map_or(Scheme::StandardWebhooks, |s| s.scheme)
        };
        let sources = secrets
            .into_iter()
            .map(|(name, secret)| Source::new(&name, scheme_of(&name), &secret).map(|s| (name, s)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            publisher,
            replay,
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
) -> Result<Vec<(String, String)>, StartupError> {
    // Concurrently: each read is a round trip, and they all sit on the cold-start path.
    let mut reads = tokio::task::JoinSet::<Result<(String, String), StartupError>>::new();
    for SourceConfig {
        name: source,
        secret_id,
        ..
    } in config.sources.clone()
    {
        let client = client.clone();
        reads.spawn(async move {
            let secret = busline::aws::secret_string(&client, &secret_id)
                .await
                .map_err(|e| StartupError::Secret {
                    source_name: source.clone(),
                    secret_id: secret_id.clone(),
                    source: Box::new(e),
                })?;
            Ok((source, secret))
        });
    }
    let mut secrets = Vec::with_capacity(config.sources.len());
    while let Some(read) = reads.join_next().await {
        secrets.push(read.expect("a secret read does not panic")?);
    }
    Ok(secrets)
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
pub async fn handle<P: EventPublisher, S: IdempotencyStore, R: ReplayGuard>(
    request: Request,
    deps: &Deps<P, S, R>,
) -> Response<Body> {
    handle_at(request, deps, Utc::now()).await
}

/// [`handle`] with the clock set to `now`.
pub async fn handle_at<P: EventPublisher, S: IdempotencyStore, R: ReplayGuard>(
    request: Request,
    deps: &Deps<P, S, R>,
    now: DateTime<Utc>,
) -> Response<Body> {
    let started = Instant::now();
    let authenticated = authenticate(&request, deps, now);
    // Nothing the sender wrote is read, let alone logged, before its signature checks out: an
    // unauthenticated request is a trace of its own. An authenticated one is a child of the
    // sender's span when it sends a `traceparent` (a malformed one starts a new trace, and says so).
    let trace = match &authenticated {
        Ok(_) => TraceContext::continue_from(header_str(&request, TRACEPARENT_HEADER)),
        Err(_) => TraceContext::root(),
    };
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
        let source_name = match &authenticated {
            Ok((source, _)) => source.spec.name,
            Err(_) => "unknown",
        };
        let outcome = match authenticated {
            Ok((source, verified)) => ingest(&request, deps, source, verified).await,
            Err(rejection) => Err(rejection),
        };
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
                tracing::warn!(status = rejection.status.as_u16(), code = rejection.code, reason = %rejection.reason, violations = rejection.details.get("violation_count").and_then(serde_json::Value::as_u64).unwrap_or(0), "webhook rejected");
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

/// Route, method, size and signature: everything checked before the request's own words are read.
fn authenticate<'d, P, S, R>(
    request: &Request,
    deps: &'d Deps<P, S, R>,
    now: DateTime<Utc>,
) -> Result<(&'d Source, Verified), Problem> {
    let name = request_source(request).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "unknown_route",
            "webhooks are posted to /webhooks/{source}",
        )
    })?;
    // The name is echoed only when it is one of ours: the path is the sender's to write.
    let source = deps.sources.get(name).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "unknown_source",
            "no webhook source of that name is configured",
        )
    })?;
    if request.method() != Method::POST {
        return Err(Problem::method_not_allowed("POST"));
    }
    let body = request.body().as_ref();
    if body.len() > MAX_ENTRY_BYTES {
        return Err(too_large(format!(
            "the body is {} bytes; with its envelope an event must fit in {MAX_ENTRY_BYTES} bytes",
            body.len()
        )));
    }
    let verified = signature::verify(
        source.scheme,
        &source.key,
        |name| header_str(request, name),
        body,
        now.timestamp().max(0) as u64,
        deps.tolerance_secs,
    )
    .map_err(|e: SignatureError| {
        if e.is_bad_delivery_id() {
            Problem::new(StatusCode::BAD_REQUEST, "bad_delivery_id", e.to_string())
        } else {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                format!(
                    "{e} (source {} signs with {})",
                    source.spec.name, source.scheme
                ),
            )
        }
    })?;
    Ok((source, verified))
}

async fn ingest<P: EventPublisher, S: IdempotencyStore, R: ReplayGuard>(
    request: &Request,
    deps: &Deps<P, S, R>,
    source: &Source,
    verified: Verified,
) -> Result<Accepted, Problem> {
    let span = tracing::Span::current();
    span.record("source", source.spec.name);
    span.record("delivery_id", verified.delivery_id.as_str());
    if let Some(sender_id) = &verified.sender_id {
        tracing::debug!(sender_id = %sender_id.escape_debug(), "the sender's unsigned delivery id");
    }
    let correlation_id = match header_str(request, CORRELATION_ID_HEADER) {
        None => None,
        Some(id) if signature::is_token(id, MAX_CORRELATION_ID_LEN, "-_.:") => Some(id),
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_correlation_id",
                format!(
                    "X-Correlation-Id is at most {MAX_CORRELATION_ID_LEN} letters, digits and - _ . :; leave it out to use the event id"
                ),
            ));
        }
    };

    let body = request.body().as_ref();
    let payload: Value = serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let mut violations = source.schema.violations(&payload);
    if !violations.is_empty() {
        let count = violations.len();
        violations.truncate(MAX_VIOLATIONS);
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema_violation",
            format!(
                "the body does not match the {} schema ({count} violations)",
                source.spec.name
            ),
        )
        .with_detail("violations", json!(violations))
        .with_detail("violation_count", json!(count)));
    }

    if let Some(single_use) = &verified.single_use {
        match deps.replay.admit(single_use, &verified.delivery_id).await {
            Ok(()) => {}
            Err(ReplayError::Replayed) => {
                return Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "signature_replayed",
                    "this signature was already used for another delivery id; sign each delivery afresh, and resend it under its own id",
                ));
            }
            Err(e @ ReplayError::Unavailable(_)) => {
                tracing::error!(error = %e, "could not admit the signature");
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "idempotency_unavailable",
                    "the delivery records cannot be reached; nothing was published, retry later",
                ));
            }
        }
    }

    let envelope = build_envelope(source, &verified, correlation_id, payload);
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
        Err(IdempotencyError::AlreadyInProgress { .. }) => Err(Problem::new(
            StatusCode::CONFLICT,
            "in_progress",
            "this delivery is being handled right now; retry later",
        )),
        Err(IdempotencyError::PayloadMismatch { .. }) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "delivery_id_reused",
            "this delivery id was delivered before with a different body; resend the same body, or send new content under a new delivery id",
        )),
        Err(IdempotencyError::Store(e @ StoreError::Unavailable(_))) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "idempotency_unavailable",
            format!("{e}; nothing was published, retry later"),
        )),
        Err(e @ (IdempotencyError::Store(_) | IdempotencyError::MissingKey { .. })) => {
            tracing::error!(error = %e, "the idempotency layer failed");
            Err(Problem::new(
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
        Err(IdempotencyError::Handler(e)) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "bus_unavailable",
            format!("{e}; nothing was published, retry later"),
        )),
    }
}

fn too_large(reason: String) -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", reason)
}

fn build_envelope(
    source: &Source,
    verified: &Verified,
    correlation_id: Option<&str>,
    payload: Value,
) -> Envelope<Value> {
    let subject = payload.pointer(source.spec.subject).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    // The trace is the request's span (see `handle`), which continues the sender's `traceparent`.
    let mut envelope = Envelope::new(
        event_id(source.spec.name, &verified.delivery_id),
        format!("busline.webhook.{}", source.spec.name),
        source.event_type.clone(),
        payload,
    )
    .with_causation_id(&verified.delivery_id);
    envelope.subject = subject;
    envelope.dataschema = source.schema.id().map(str::to_owned);
    envelope.correlationid =
        Some(correlation_id.map_or_else(|| envelope.id.clone(), str::to_owned));
    envelope
}

#[cfg(test)]
mod tests;
