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

//!
//! The log subscriber is here; [`TraceContext`] and the header are in `trace_context`, [`Hop`] in
//! `hop`, and the EMF records in `metrics`.

mod hop;
mod metrics;
mod trace_context;

pub use hop::{Hop, emit_source_latency, hop_span, sqs_sent_at};
pub use metrics::{Metrics, NAMESPACE, Unit, set_metrics_writer};
pub use trace_context::{TRACEPARENT_HEADER, TraceContext, current_traceparent, in_context};

use std::sync::OnceLock;

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

/// The deployed function's name (`AWS_LAMBDA_FUNCTION_NAME`), the metrics' `Function` dimension.
pub fn function_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::{Value, json};
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
