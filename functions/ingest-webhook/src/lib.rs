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

mod config;
pub mod replay;

use std::collections::HashMap;
use std::time::Instant;

use busline::Envelope;
use busline::api::{Problem, header_str, json_response, path};
use busline::bus::{EventPublisher, PublishError};
use busline::envelope::{EnvelopeError, MAX_ENTRY_BYTES};
use busline::idempotency::{Idempotency, IdempotencyError, IdempotencyStore, StoreError};
use busline::retry::Deadline;
use busline::signature::{self, Scheme, SignatureError, Verified};
use busline::telemetry::{Metrics, TRACEPARENT_HEADER, TraceContext, Unit, in_context};
use chrono::{DateTime, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{Instrument, field};

pub use crate::config::{
    Config, SOURCES, Source, SourceConfig, SourceSpec, StartupError, fetch_secrets,
};
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
            if let Some((other, _)) = secrets.iter().take(i).find(|(_, s)| s == secret) {
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
            let events = std::slice::from_ref(&envelope);
            // The publish may take the invocation's time but the reserve for releasing or
            // completing the claim and answering: a slow bus is a 503 the sender retries, not a
            // Lambda timeout (a 502) with the claim left in progress.
            let published = match deadline {
                Some(deadline) => {
                    deps.publisher
                        .publish_until(events, deadline.less(ANSWER_RESERVE))
                        .await
                }
                None => deps.publisher.publish(events).await,
            };
            published.map(|()| envelope.id.clone())
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

/// The part of the invocation a publish leaves for the idempotency record's release or completion
/// and the answer.
pub const ANSWER_RESERVE: std::time::Duration = std::time::Duration::from_millis(1_500);

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
