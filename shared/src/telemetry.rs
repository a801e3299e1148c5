//! Logs and metrics.
//!
//! Logs are JSON lines from `tracing`. `lambda_runtime` opens a span per invocation carrying the
//! `requestId`; handlers open a span carrying the `correlation_id`. Every line lists its spans with
//! their fields, so each line of an invocation carries both ids.
//!
//! Metrics are CloudWatch Embedded Metric Format lines on stdout: CloudWatch turns them into metrics
//! with no SDK call and no extra latency.

use serde_json::{Map, Value, json};
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
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_new(level.to_lowercase()).unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_span_list(true)
        .with_target(false)
        .flatten_event(true)
        .with_writer(writer)
        .try_init();
}

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
    values: Vec<(&'static str, Unit, f64)>,
}

impl Metrics {
    /// A record in `namespace` (busline uses `busline`).
    pub fn new(namespace: &'static str) -> Self {
        Self {
            namespace,
            dimensions: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds a dimension.
    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    /// Adds a metric value.
    pub fn metric(mut self, name: &'static str, unit: Unit, value: f64) -> Self {
        self.values.push((name, unit, value));
        self
    }

    /// The EMF JSON document, stamped with `timestamp_ms`.
    pub fn to_emf(&self, timestamp_ms: i64) -> Value {
        let dimension_names: Vec<&str> = self.dimensions.iter().map(|(k, _)| *k).collect();
        let definitions: Vec<Value> = self
            .values
            .iter()
            .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimension_names],
                    "Metrics": definitions,
                }]
            }),
        );
        for (name, value) in &self.dimensions {
            root.insert((*name).into(), json!(value));
        }
        for (name, _, value) in &self.values {
            root.insert((*name).into(), json!(value));
        }
        Value::Object(root)
    }

    /// Writes the record as one line on stdout, where the Lambda log agent picks it up.
    pub fn emit(&self) {
        println!("{}", self.to_emf(chrono::Utc::now().timestamp_millis()));
    }
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

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
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

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            let spans = line["spans"].to_string();
            assert!(spans.contains("\"requestId\":\"req-123\""), "{line}");
            assert!(spans.contains("\"correlation_id\":\"corr-9\""), "{line}");
        }
        assert_eq!(lines[0]["status"], 202);
    }
}
