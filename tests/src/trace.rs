//! One business event's journey, read back from what the deployed stack logged on LocalStack: the
//! hops of its trace (every function's log lines inside a `hop` span, see `busline::telemetry`) and
//! the order saga's execution. `make trace ID=<id>` prints it; the observability test asserts on
//! it.

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::runtime_api::function_names;
use crate::saga::{execution_arn, execution_history};
use crate::{DeployedStack, function_log_events};

/// A field of the `hop` span a log line was written in.
pub fn hop_field<'l>(line: &'l Value, key: &str) -> Option<&'l str> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|span| span["name"] == "hop")?
        .get(key)?
        .as_str()
}

/// One log line written inside a hop.
#[derive(Clone, Debug)]
pub struct HopLine {
    /// When it was written (Unix ms).
    pub at_ms: i64,
    /// The function (its package name, such as `enrich`).
    pub function: String,
    /// The line, parsed.
    pub line: Value,
}

impl HopLine {
    /// A field of the line's hop span (`trace_id`, `span_id`, `parent_id`, `correlation_id`,
    /// `event_id`, `event_type`).
    pub fn hop(&self, key: &str) -> Option<&str> {
        hop_field(&self.line, key)
    }

    /// The line's message.
    pub fn message(&self) -> &str {
        self.line["message"].as_str().unwrap_or_default()
    }

    /// Whether this is a hop's last line ("handled", with its outcome and timings).
    pub fn is_end(&self) -> bool {
        self.message() == "handled"
    }

    /// A number the line carries.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.line[key].as_f64()
    }
}

/// Every line the stack's functions logged inside a hop, oldest first. A function that has never
/// run has no log group yet and adds nothing.
pub async fn hop_lines(aws: &SdkConfig) -> Result<Vec<HopLine>> {
    let mut lines = Vec::new();
    for function in function_names()? {
        let deployed = format!("{}-{function}", DeployedStack::NAME);
        let events = function_log_events(aws, &deployed).await?;
        lines.extend(events.into_iter().filter_map(|(at_ms, text)| {
            let line: Value = serde_json::from_str(&text).ok()?;
            hop_field(&line, "trace_id")?;
            // The line's own time, to the microsecond; CloudWatch's is when the batch arrived.
            let written = line["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis());
            Some(HopLine {
                at_ms: written.unwrap_or(at_ms),
                function: function.clone(),
                line,
            })
        }));
    }
    lines.sort_by_key(|l| l.at_ms);
    Ok(lines)
}

/// One state of the saga's execution.
#[derive(Clone, Debug)]
pub struct StateVisit {
    /// When it was entered, by the execution history's clock, to the millisecond.
    pub entered: DateTime<Utc>,
    /// How long it took, when it has ended.
    pub took_ms: Option<i64>,
    /// The state's name in the state machine's definition, such as `ValidateOrder`.
    pub name: String,
    /// Its error, when it failed.
    pub error: Option<String>,
}

/// A business event's journey.
#[derive(Debug, Default)]
pub struct Journey {
    /// The traces it is part of (one, unless it was sent more than once).
    pub traces: BTreeSet<String>,
    /// Every hop line of those traces, oldest first.
    pub lines: Vec<HopLine>,
    /// The saga's states, when the id is an order the saga ran.
    pub states: Vec<StateVisit>,
}

impl Journey {
    /// The hops: each span's lines, in the order the spans started.
    pub fn hops(&self) -> Vec<Vec<&HopLine>> {
        let mut order: Vec<&str> = Vec::new();
        let mut by_span: HashMap<&str, Vec<&HopLine>> = HashMap::new();
        for line in &self.lines {
            let span = line.hop("span_id").unwrap_or_default();
            if !by_span.contains_key(span) {
                order.push(span);
            }
            by_span.entry(span).or_default().push(line);
        }
        order
            .into_iter()
            .filter_map(|span| by_span.remove(span))
            .collect()
    }
}

/// The journey of `id`: an order id, event id, correlation id or trace id. The traces are those of
/// every hop whose ids match, or whose lines name `id`; the journey is every hop of those traces.
pub async fn journey(aws: &SdkConfig, id: &str) -> Result<Journey> {
    let lines = hop_lines(aws).await?;
    let quoted = format!("\"{id}\"");
    let traces: BTreeSet<String> = lines
        .iter()
        .filter(|l| {
            ["trace_id", "correlation_id", "event_id"]
                .iter()
                .any(|k| l.hop(k) == Some(id))
                || l.line.to_string().contains(&quoted)
        })
        .filter_map(|l| l.hop("trace_id").map(str::to_owned))
        .collect();
    let lines = lines
        .into_iter()
        .filter(|l| l.hop("trace_id").is_some_and(|t| traces.contains(t)))
        .collect();
    let states = execution(aws, id).await.unwrap_or_default();
    Ok(Journey {
        traces,
        lines,
        states,
    })
}

/// The order saga's execution for order `id` (executions are named after the order), if any.
async fn execution(aws: &SdkConfig, id: &str) -> Result<Vec<StateVisit>> {
    let arn = execution_arn(&DeployedStack::read(aws).await?, id)?;
    let history = execution_history(&aws_sdk_sfn::Client::new(aws), &arn).await?;
    let mut states: Vec<StateVisit> = Vec::new();
    for event in &history {
        let at =
            DateTime::from_timestamp_millis(event.timestamp().to_millis()?).unwrap_or_default();
        if let Some(entered) = event.state_entered_event_details() {
            states.push(StateVisit {
                entered: at,
                took_ms: None,
                name: entered.name().to_owned(),
                error: None,
            });
        } else if let Some(exited) = event.state_exited_event_details()
            && let Some(visit) = states
                .iter_mut()
                .rev()
                .find(|s| s.name == exited.name() && s.took_ms.is_none())
        {
            visit.took_ms = Some((at - visit.entered).num_milliseconds());
        } else if let Some(visit) = states.last_mut() {
            // A task's failure, or its Lambda function's, belongs to the state it ran in.
            let failure = event
                .task_failed_event_details()
                .map(|f| (f.error(), f.cause()))
                .or_else(|| {
                    event
                        .lambda_function_failed_event_details()
                        .map(|f| (f.error(), f.cause()))
                });
            if let Some((error, cause)) = failure {
                visit.error = Some(format!(
                    "{}: {}",
                    error.unwrap_or_default(),
                    cause.unwrap_or_default()
                ));
            }
        }
    }
    Ok(states)
}

/// Prints the journey: each hop with when it started (since the first), the function, the event
/// type, its outcome, its timings and its error; then the saga's states.
pub fn print(id: &str, journey: &Journey) {
    if journey.traces.is_empty() {
        println!("no hop logged for {id} (is it an order, event, correlation or trace id?)");
        if journey.states.is_empty() {
            return;
        }
    }
    let start = journey.lines.first().map_or(0, |l| l.at_ms);
    for trace in &journey.traces {
        println!("trace {trace}");
    }
    println!(
        "\n  {:>8}  {:<18} {:<42} {:<8} {:>10} {:>10} {:>9}",
        "+ms", "function", "event", "outcome", "transport", "processing", "queued"
    );
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    for hop in journey.hops() {
        let first = hop[0];
        let end = hop.iter().find(|l| l.is_end());
        // A hop's "handled" line says how it ended; ingest's last line does ("accepted", ...).
        let outcome = end
            .or(hop.last())
            .and_then(|l| l.line["outcome"].as_str())
            .unwrap_or("?");
        println!(
            "  {:>8}  {:<18} {:<42} {:<8} {:>10} {:>10} {:>9}",
            first.at_ms - start,
            first.function,
            first.hop("event_type").unwrap_or("-"),
            outcome,
            ms(end.and_then(|l| l.number("transport_ms"))),
            ms(end.and_then(|l| l.number("processing_ms"))),
            ms(end.and_then(|l| l.number("message_age_ms"))),
        );
        println!(
            "  {:>8}  span {} parent {}  event {}",
            "",
            first.hop("span_id").unwrap_or("-"),
            first.hop("parent_id").unwrap_or("-"),
            first.hop("event_id").unwrap_or("-")
        );
        for line in hop.iter().filter(|l| l.line["level"] != "INFO") {
            println!(
                "  {:>8}  {} {}: {}",
                "",
                line.line["level"].as_str().unwrap_or("?"),
                line.message(),
                line.line["error"]
                    .as_str()
                    .or(line.line["reason"].as_str())
                    .unwrap_or("")
            );
        }
    }
    if !journey.states.is_empty() {
        let first = journey.states[0].entered;
        println!("\n  saga execution {id}:");
        for state in &journey.states {
            println!(
                "  {:>8}  {:<28} {:>8} {}",
                (state.entered - first).num_milliseconds(),
                state.name,
                state
                    .took_ms
                    .map_or("-".to_owned(), |ms| format!("{ms} ms")),
                state.error.as_deref().unwrap_or("")
            );
        }
    }
}
