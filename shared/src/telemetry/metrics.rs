//! CloudWatch Embedded Metric Format records on stdout (or a writer of the tests' choosing).

use std::io::Write as _;
use std::sync::OnceLock;

use chrono::Utc;
use serde_json::{Value, json};

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
    #[expect(
        clippy::expect_used,
        reason = "an EMF record is strings, numbers and maps with string keys"
    )]
    pub fn to_emf(&self, timestamp_ms: i64) -> Value {
        serde_json::to_value(Emf {
            metrics: self,
            timestamp_ms,
        })
        .expect("an EMF record serialises")
    }

    /// Writes the record as one line on stdout, where the Lambda log agent picks it up (or to the
    /// writer [`set_metrics_writer`] installed).
    #[expect(
        clippy::expect_used,
        reason = "an EMF record is strings, numbers and maps with string keys"
    )]
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
