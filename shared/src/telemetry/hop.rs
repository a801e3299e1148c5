//! One handler's work on one event ([`Hop`]): its span, its log fields, and the latencies it reports.

use std::future::Future;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tracing::Instrument;

use super::function_name;
use super::metrics::{Metrics, NAMESPACE, Unit};
use super::trace_context::{CURRENT, TraceContext};

/// One handler's work on one event: a child span of the event's trace, with the event's ids on
/// every log line, and its latencies reported when it ends.
#[derive(Debug)]
pub struct Hop {
    trace: TraceContext,
    correlation_id: String,
    event_id: String,
    event_type: String,
    event_time: Option<DateTime<Utc>>,
    queued_at: Option<DateTime<Utc>>,
}

impl Hop {
    /// The hop of a handler consuming `envelope`.
    pub fn of<T>(envelope: &crate::Envelope<T>) -> Self {
        Self::new(
            envelope.traceparent.as_deref(),
            envelope.correlation_id(),
            &envelope.id,
            envelope.event_type.as_str(),
        )
        .event_time(envelope.time)
    }

    /// The hop of a handler consuming the envelope whose JSON is `detail`, read leniently: the ids
    /// and trace come from what is there even when the envelope is malformed, so a rejected event
    /// is still traced.
    pub fn of_detail(detail: &serde_json::Value) -> Self {
        let text = |key: &str| detail.get(key).and_then(Value::as_str);
        let id = text("id").unwrap_or("unknown");
        Self::new(
            text("traceparent"),
            text("correlationid").unwrap_or(id),
            id,
            text("type").unwrap_or("unknown"),
        )
        .event_time(
            text("time")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
        )
    }

    /// A hop continuing `traceparent` (a new trace when `None`), for work that is not one envelope
    /// (a saga step, a stream record, a scheduled run).
    pub fn new(
        traceparent: Option<&str>,
        correlation_id: &str,
        event_id: &str,
        event_type: &str,
    ) -> Self {
        Self {
            trace: TraceContext::continue_from(traceparent),
            correlation_id: correlation_id.to_owned(),
            event_id: event_id.to_owned(),
            event_type: event_type.to_owned(),
            event_time: None,
            queued_at: None,
        }
    }

    /// When the event happened, for `TransportLatency`.
    pub fn event_time(mut self, time: Option<DateTime<Utc>>) -> Self {
        self.event_time = time;
        self
    }

    /// When a queue received the message (SQS's `SentTimestamp`), for `MessageAge`.
    pub fn queued_at(mut self, time: Option<DateTime<Utc>>) -> Self {
        self.queued_at = time;
        self
    }

    /// This hop's span.
    pub fn trace(&self) -> &TraceContext {
        &self.trace
    }

    /// Runs `work` inside the hop's span and context, then logs its outcome and emits its metrics.
    pub async fn run<T, E, F>(self, work: F) -> Result<T, E>
    where
        E: std::fmt::Debug,
        F: Future<Output = Result<T, E>>,
    {
        let span = hop_span(
            &self.trace,
            &self.correlation_id,
            &self.event_id,
            &self.event_type,
        );
        let started_at = Utc::now();
        let started = Instant::now();
        let result = CURRENT
            .scope(self.trace.clone(), work.instrument(span.clone()))
            .await;
        let processing_ms = started.elapsed().as_secs_f64() * 1000.0;
        let transport_ms = self.event_time.map(|t| millis_between(t, started_at));
        let message_age_ms = self.queued_at.map(|t| millis_between(t, started_at));
        span.in_scope(|| match &result {
            Ok(_) => tracing::info!(outcome = "ok", processing_ms, transport_ms, message_age_ms, "handled"),
            Err(e) => tracing::warn!(outcome = "error", error = ?e, processing_ms, transport_ms, message_age_ms, "handled"),
        });
        let mut metrics = Metrics::new(NAMESPACE)
            .dimension("Function", function_name())
            .dimension("EventType", self.event_type)
            .property("TraceId", self.trace.trace_id)
            .property("SpanId", self.trace.span_id)
            .metric("ProcessingTime", Unit::Milliseconds, processing_ms)
            .metric("Handled", Unit::Count, 1.0)
            .metric(
                "Failed",
                Unit::Count,
                if result.is_ok() { 0.0 } else { 1.0 },
            );
        if let Some(ms) = transport_ms {
            metrics = metrics.metric("TransportLatency", Unit::Milliseconds, ms);
        }
        if let Some(ms) = message_age_ms {
            metrics = metrics.metric("MessageAge", Unit::Milliseconds, ms);
        }
        metrics.emit();
        result
    }
}

/// The span of one hop, named `hop`: its fields are on every line logged inside it.
pub fn hop_span(
    trace: &TraceContext,
    correlation_id: &str,
    event_id: &str,
    event_type: &str,
) -> tracing::Span {
    tracing::info_span!(
        "hop",
        trace_id = %trace.trace_id,
        span_id = %trace.span_id,
        parent_id = trace.parent_id.as_deref(),
        correlation_id,
        event_id,
        event_type,
    )
}

/// When SQS received `message`: its `SentTimestamp` attribute.
pub fn sqs_sent_at(message: &aws_lambda_events::event::sqs::SqsMessage) -> Option<DateTime<Utc>> {
    message
        .attributes
        .get("SentTimestamp")?
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
}

/// Reports `SourceLatency` for events the bus has just accepted: one record per event type, each
/// event's time to now. Events without a time are left out.
pub fn emit_source_latency<'e>(events: impl IntoIterator<Item = (&'e str, Option<DateTime<Utc>>)>) {
    let now = Utc::now();
    let mut by_type: Vec<(&str, Vec<f64>)> = Vec::new();
    for (event_type, time) in events {
        let Some(time) = time else { continue };
        let ms = millis_between(time, now);
        match by_type.iter_mut().find(|(t, _)| *t == event_type) {
            Some((_, values)) => values.push(ms),
            None => by_type.push((event_type, vec![ms])),
        }
    }
    for (event_type, values) in by_type {
        // EMF takes at most 100 values of a metric in one record.
        for values in values.chunks(100) {
            Metrics::new(NAMESPACE)
                .dimension("Function", function_name())
                .dimension("EventType", event_type)
                .metrics("SourceLatency", Unit::Milliseconds, values.to_vec())
                .emit();
        }
    }
}

/// Milliseconds from `from` to `to`, to the microsecond; 0 if `to` is earlier (clocks disagree).
fn millis_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0).max(0.0)
}
