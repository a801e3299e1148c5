//! Traces, logs and metrics.
//!
//! **Traces.** Every business event carries a W3C `traceparent` in its envelope, set at ingest (or
//! taken from the caller's `traceparent` header). Each handler runs the event as a [`Hop`]: a child
//! span of the span that published the event, never a fresh trace. Events published inside the
//! hop carry the hop's own span as their parent ([`current_traceparent`], read by
//! [`Envelope::derive`](crate::Envelope::derive) and [`Envelope::new`](crate::Envelope::new)), so
//! the hops of one order form one tree. The context travels in the envelope (through EventBridge
//! and in SQS bodies), as `PutEvents`' X-Ray `TraceHeader`, into the saga's state, as a `traceparent`
//! header on calls to outside systems, and as a `traceparent` message attribute on what the saga
//! sends to SQS itself.
//!
//! **Logs** are JSON lines from `tracing`. `lambda_runtime` opens a span per invocation carrying
//! the `requestId`; the hop's span carries `trace_id`, `span_id`, `parent_id`, `correlation_id`,
//! `event_id` and `event_type`. Every line lists its spans with their fields, so each line of a hop
//! carries the trace and correlation ids.
//!
//! **Metrics** are CloudWatch Embedded Metric Format lines on stdout: CloudWatch turns them into
//! metrics with no SDK call and no extra latency. Each hop reports, in namespace `busline` with
//! dimensions `Function` and `EventType`:
//!
//! - `SourceLatency`: from the event's `time` to the bus accepting it, by the publisher;
//! - `TransportLatency`: from the event's `time` to the handler starting, by the consumer. The
//!   publisher sets `time` just before `PutEvents`, so this is the publisher's call plus the bus,
//!   queue and event source mapping;
//! - `MessageAge`: for consumers of SQS, from the queue receiving the message (`SentTimestamp`) to
//!   the handler starting;
//! - `ProcessingTime`: the handler's own time;
//! - `Handled` and `Failed`: counts of the hops and of those that ended in an error.

use std::future::Future;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. The level comes from `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`,
/// then `info`.
pub fn init_tracing() {
    init_tracing_with_writer(std::io::stdout);
}

/// [`init_tracing`] with another writer, for tests that read the log lines.
pub fn init_tracing_with_writer<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::util::SubscriberInitExt as _;
    let _ = json_subscriber(writer).try_init();
}

/// busline's log format: JSON lines, each listing its spans with their fields.
pub fn json_subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_new(level.to_lowercase()).unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_span_list(true)
        .with_target(false)
        .flatten_event(true)
        .with_writer(writer)
        .finish()
}

/// The W3C trace context of one span: `00-<trace id>-<span id>-<flags>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, shared by every span of the trace.
    pub trace_id: String,
    /// 16 lowercase hex digits, this span's own.
    pub span_id: String,
    /// The span this one continues, if any.
    pub parent_id: Option<String>,
    /// Whether the trace is sampled (the flags' low bit).
    pub sampled: bool,
}

impl TraceContext {
    /// The span a `traceparent` names, or `None` when it is malformed (version `00` only, ids of
    /// the right length in hex, not all zeros).
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes().all(|b| b.is_ascii_hexdigit())
                && s.bytes().any(|b| b != b'0')
        };
        if version != "00"
            || !hex(trace_id, 32)
            || !hex(span_id, 16)
            || flags.len() != 2
            || !flags.bytes().all(|b| b.is_ascii_hexdigit())
            || parts.next().is_some()
        {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: span_id.to_ascii_lowercase(),
            parent_id: None,
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace's first span. The trace id starts with the time in seconds, as X-Ray's do, so
    /// the same id works as an X-Ray trace id.
    pub fn root() -> Self {
        let seconds = u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX);
        Self {
            trace_id: format!(
                "{seconds:08x}{:08x}{:016x}",
                fastrand::u32(..),
                fastrand::u64(..)
            ),
            span_id: new_span_id(),
            parent_id: None,
            sampled: true,
        }
    }

    /// A new span continuing `parent`.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: new_span_id(),
            parent_id: Some(self.span_id.clone()),
            sampled: self.sampled,
        }
    }

    /// A child of the span `traceparent` names, or a new trace when there is none or it is
    /// malformed (logged: a broken trace should be visible, not silently restarted).
    pub fn continue_from(traceparent: Option<&str>) -> Self {
        match traceparent.map(|t| (t, Self::parse(t))) {
            Some((_, Some(parent))) => parent.child(),
            Some((malformed, None)) => {
                // A valid traceparent is 55 characters: more of the sender's text says nothing more.
                let shown: String = malformed.chars().take(64).collect();
                tracing::warn!(
                    traceparent = %shown.escape_debug(),
                    length = malformed.len(),
                    "malformed traceparent; starting a new trace"
                );
                Self::root()
            }
            None => Self::root(),
        }
    }

    /// This span as a `traceparent`, for what it publishes.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// This span as an X-Ray trace header (`Root=1-…-…;Parent=…;Sampled=…`).
    pub fn xray_header(&self) -> String {
        format!(
            "Root=1-{}-{};Parent={};Sampled={}",
            &self.trace_id[..8],
            &self.trace_id[8..],
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

fn new_span_id() -> String {
    format!("{:016x}", fastrand::u64(1..))
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// The `traceparent` for an event published now: the running hop's span, so the event's consumers
/// continue it. `None` outside a hop.
pub fn current_traceparent() -> Option<String> {
    CURRENT.try_with(TraceContext::traceparent).ok()
}

/// Runs `work` as the span `context`: what it publishes continues `context`.
pub async fn in_context<F: Future>(context: TraceContext, work: F) -> F::Output {
    CURRENT.scope(context, work).await
}

/// The deployed function's name (`AWS_LAMBDA_FUNCTION_NAME`), the metrics' `Function` dimension.
pub fn function_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned())
    })
}

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

/// The W3C trace context header, on HTTP requests in and out.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The metrics' namespace.
pub const NAMESPACE: &str = "busline";

/// Metric units CloudWatch understands.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    /// A count.
    Count,
    /// Milliseconds.
    Milliseconds,
    /// Bytes.
    Bytes,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
        }
    }
}

/// One EMF record: a set of dimensions and the metrics measured under them.
#[derive(Debug)]
pub struct Metrics {
    namespace: &'static str,
    dimensions: Vec<(&'static str, String)>,
    values: Vec<(&'static str, Unit, Value)>,
    properties: Vec<(&'static str, String)>,
}

impl Metrics {
    /// A record in `namespace` (busline uses `busline`).
    pub fn new(namespace: &'static str) -> Self {
        Self {
            namespace,
            dimensions: Vec::new(),
            values: Vec::new(),
            properties: Vec::new(),
        }
    }

    /// Adds a dimension.
    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    /// Adds a property: kept with the record in the logs (Logs Insights finds it), not a metric or
    /// a dimension.
    pub fn property(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.properties.push((name, value.into()));
        self
    }

    /// Adds a metric value.
    pub fn metric(mut self, name: &'static str, unit: Unit, value: f64) -> Self {
        self.values.push((name, unit, json!(value)));
        self
    }

    /// Adds several values of one metric (EMF takes up to 100 in one record).
    pub fn metrics(mut self, name: &'static str, unit: Unit, values: Vec<f64>) -> Self {
        self.values.push((name, unit, json!(values)));
        self
    }

    /// The EMF JSON document, stamped with `timestamp_ms`.
    pub fn to_emf(&self, timestamp_ms: i64) -> Value {
        serde_json::to_value(Emf {
            metrics: self,
            timestamp_ms,
        })
        .expect("an EMF record serialises")
    }

    /// Writes the record as one line on stdout, where the Lambda log agent picks it up (or to the
    /// writer [`set_metrics_writer`] installed).
    pub fn emit(&self) {
        // Written straight to text: no JSON tree is built on the invocation's path.
        let line = serde_json::to_string(&Emf {
            metrics: self,
            timestamp_ms: Utc::now().timestamp_millis(),
        })
        .expect("an EMF record serialises");
        match METRICS_WRITER.get() {
            Some(writer) => {
                let mut writer = writer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = writeln!(writer, "{line}");
            }
            None => println!("{line}"),
        }
    }
}

/// A [`Metrics`] record as EMF: the `_aws` directive, then each dimension, property and metric as a
/// member.
struct Emf<'m> {
    metrics: &'m Metrics,
    timestamp_ms: i64,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'m> {
    timestamp: i64,
    cloud_watch_metrics: [MetricDirective<'m>; 1],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDirective<'m> {
    namespace: &'m str,
    dimensions: [Vec<&'m str>; 1],
    metrics: Vec<MetricDefinition<'m>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDefinition<'m> {
    name: &'m str,
    unit: &'static str,
}

impl serde::Serialize for Emf<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let m = self.metrics;
        let directive = Directive {
            timestamp: self.timestamp_ms,
            cloud_watch_metrics: [MetricDirective {
                namespace: m.namespace,
                dimensions: [m.dimensions.iter().map(|(name, _)| *name).collect()],
                metrics: m
                    .values
                    .iter()
                    .map(|(name, unit, _)| MetricDefinition {
                        name,
                        unit: unit.as_str(),
                    })
                    .collect(),
            }],
        };
        let members = 1 + m.dimensions.len() + m.values.len() + m.properties.len();
        let mut map = serializer.serialize_map(Some(members))?;
        map.serialize_entry("_aws", &directive)?;
        for (name, value) in m.dimensions.iter().chain(&m.properties) {
            map.serialize_entry(name, value)?;
        }
        for (name, _, value) in &m.values {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

static METRICS_WRITER: OnceLock<std::sync::Mutex<Box<dyn std::io::Write + Send>>> = OnceLock::new();

/// Sends metric records to `writer` instead of stdout, for tests and benchmarks. The first call
/// wins.
pub fn set_metrics_writer(writer: impl std::io::Write + Send + 'static) {
    let _ = METRICS_WRITER.set(std::sync::Mutex::new(Box::new(writer)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[test]
    fn emf_declares_every_dimension_and_metric_it_carries() {
        let doc = Metrics::new("busline")
            .dimension("function", "ingest-webhook")
            .dimension("source", "shop")
            .metric("WebhookAccepted", Unit::Count, 1.0)
            .metric("PublishLatency", Unit::Milliseconds, 12.5)
            .to_emf(1_800_000_000_000);
        assert_eq!(
            doc,
            json!({
                "_aws": {"Timestamp": 1_800_000_000_000i64, "CloudWatchMetrics": [{
                    "Namespace": "busline",
                    "Dimensions": [["function", "source"]],
                    "Metrics": [{"Name": "WebhookAccepted", "Unit": "Count"}, {"Name": "PublishLatency", "Unit": "Milliseconds"}]
                }]},
                "function": "ingest-webhook", "source": "shop", "WebhookAccepted": 1.0, "PublishLatency": 12.5
            })
        );
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// What was written, one JSON document per line.
        fn json_lines(&self) -> Vec<Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const SENDER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_is_parsed_strictly_and_written_back_as_it_came() {
        let parent = TraceContext::parse(SENDER).unwrap();
        assert_eq!(parent.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.span_id, "00f067aa0ba902b7");
        assert!(parent.sampled);
        assert_eq!(parent.traceparent(), SENDER);
        assert_eq!(
            parent.xray_header(),
            "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
        );
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_hop_continues_the_trace_it_is_given_and_starts_one_only_when_there_is_none() {
        let child = TraceContext::continue_from(Some(SENDER));
        assert_eq!(child.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(child.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(child.span_id, "00f067aa0ba902b7");
        assert_eq!(
            TraceContext::parse(&child.traceparent()).unwrap().span_id,
            child.span_id
        );

        for fresh in [
            TraceContext::continue_from(None),
            TraceContext::continue_from(Some("nope")),
        ] {
            assert_eq!(fresh.parent_id, None);
            // The trace id starts with the time, so X-Ray takes it as its own.
            let seconds = u32::from_str_radix(&fresh.trace_id[..8], 16).unwrap();
            assert!((i64::from(seconds) - Utc::now().timestamp()).abs() < 60);
            assert!(TraceContext::parse(&fresh.traceparent()).is_some());
        }
    }

    #[test]
    fn a_hop_logs_its_ids_on_every_line_publishes_under_its_own_span_and_reports_its_latencies() {
        let captured = Captured::default();
        let writer = captured.clone();
        let metrics = Captured::default();
        set_metrics_writer(metrics.clone());
        let envelope = crate::Envelope::new(
            "evt-hop-1",
            "busline.test",
            crate::EventType::parse("io.busline.test.thing.v1").unwrap(),
            json!({}),
        )
        .with_correlation_id("corr-hop")
        .with_traceparent(SENDER);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (hop_trace, published) =
            tracing::subscriber::with_default(json_subscriber(move || writer.clone()), || {
                let hop = Hop::of(&envelope);
                let trace = hop.trace().clone();
                let published = runtime.block_on(hop.run(async {
                    tracing::info!("working");
                    let out = envelope.derive("k", "busline.test", envelope.event_type.clone(), 1);
                    Ok::<_, String>(out)
                }));
                (trace, published.unwrap())
            });
        assert_eq!(published.traceparent, Some(hop_trace.traceparent()));
        assert_eq!(current_traceparent(), None, "the context ends with the hop");

        let lines = captured.json_lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            let hop = &line["spans"][0];
            assert_eq!(
                hop["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
                "{line}"
            );
            assert_eq!(hop["parent_id"], "00f067aa0ba902b7", "{line}");
            assert_eq!(hop["span_id"], hop_trace.span_id.as_str(), "{line}");
            assert_eq!(hop["correlation_id"], "corr-hop", "{line}");
            assert_eq!(hop["event_type"], "io.busline.test.thing.v1", "{line}");
        }
        assert_eq!(lines[1]["message"], "handled");
        assert_eq!(lines[1]["outcome"], "ok");
        assert!(lines[1]["transport_ms"].as_f64().is_some(), "{}", lines[1]);

        let record: Value = metrics
            .json_lines()
            .into_iter()
            .find(|r| r["EventType"] == "io.busline.test.thing.v1")
            .expect("the hop's metrics");
        let names: Vec<&str> = record["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["ProcessingTime", "Handled", "Failed", "TransportLatency"]
        );
        // The record names the hop it measured, for whoever reads it next to the trace.
        assert_eq!(record["TraceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(record["SpanId"], hop_trace.span_id.as_str());
        assert_eq!(
            record["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "EventType"]])
        );
    }

    #[test]
    fn every_line_inside_an_invocation_carries_the_request_and_correlation_ids() {
        let captured = Captured::default();
        let writer = captured.clone();
        init_tracing_with_writer(move || writer.clone());

        let invocation = tracing::info_span!("Lambda runtime invoke", requestId = "req-123");
        {
            let _i = invocation.enter();
            let handler = tracing::info_span!("webhook", correlation_id = tracing::field::Empty);
            handler.record("correlation_id", "corr-9");
            let _h = handler.enter();
            tracing::info!(status = 202, "accepted");
            tracing::warn!("second line");
        }

        let lines = captured.json_lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            let spans = line["spans"].to_string();
            assert!(spans.contains("\"requestId\":\"req-123\""), "{line}");
            assert!(spans.contains("\"correlation_id\":\"corr-9\""), "{line}");
        }
        assert_eq!(lines[0]["status"], 202);
    }
}
