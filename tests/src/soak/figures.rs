//! The soak's figures: every count it reports, its report section and its verdict.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde_json::json;

use crate::percentile;
use crate::report::{Column, Section, Table};

/// The `p` quantile of `values`, 0 when there are none.
fn quantile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        percentile(values, p)
    }
}

/// Every figure a soak reports.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// The run's tag (in every id it made).
    pub tag: String,
    /// The plan it ran.
    pub plan_text: String,
    /// Distinct deliveries sent.
    pub deliveries: usize,
    /// Requests made, every retry and re-send included.
    pub requests: usize,
    /// Deliveries sent again on purpose after their acceptance.
    pub resent: usize,
    /// Deliveries answered 2xx.
    pub accepted: usize,
    /// 2xx answers that said "duplicate": nothing new was published.
    pub duplicates_absorbed: usize,
    /// Deliveries refused with a 4xx, by status and the poison they were.
    pub refused: BTreeMap<String, usize>,
    /// Good deliveries refused, or poison accepted (must be 0).
    pub misanswered: Vec<String>,
    /// Refusals without a reason in the body (must be 0).
    pub refused_without_reason: usize,
    /// Deliveries the senders gave up on, still 5xx after every retry (must be 0).
    pub gave_up: usize,
    /// Letters of this run in the dead-letter queues, by queue and reason.
    pub dead_lettered: BTreeMap<String, usize>,
    /// Letters without a reason: moved by SQS at its receive limit, so busline never said why, and
    /// under load most were good messages never processed (must be 0).
    pub letters_without_reason: usize,
    /// What was lost: accepted and neither where it belongs nor dead-lettered (must be empty).
    pub lost: Vec<String>,
    /// Effects that happened twice or are wrong (must be empty).
    pub double_effects: Vec<String>,
    /// What was still in flight when the checks ran (must be empty).
    pub in_flight: Vec<String>,
    /// Orders, by how they ended.
    pub orders: BTreeMap<String, usize>,
    /// Faults the executor injected, by kind.
    pub faults: BTreeMap<String, usize>,
    /// `PutEvents` calls the bus refused during the outage.
    pub bus_refusals: usize,
    /// CDC writes seen on the bus, of those made.
    pub cdc_seen: (usize, usize),
    /// Synced records seen on the bus, of those served.
    pub sync_seen: (usize, usize),
    /// Batch-sync invocations until a run completed.
    pub sync_invocations: usize,
    /// Warehouse requests: accepted once, refused with a 503 first.
    pub warehouse: (usize, usize),
    /// Emails sent (distinct keys).
    pub emails: usize,
    /// Requests the email API dropped by their `Idempotency-Key` (copies notify-customer sent).
    pub email_copies: usize,
    /// Accepted deliveries per second, from the first request to the last answer.
    pub throughput: f64,
    /// Seconds from the first request to the last answer.
    pub load_seconds: f64,
    /// Seconds from the last answer until the stack was quiet.
    pub quiet_seconds: f64,
    /// First request → recorded in the audit trail, ms.
    pub to_audit_ms: Vec<f64>,
    /// The saga's executions, start → stop, ms.
    pub saga_ms: Vec<f64>,
    /// Request → answer at the Function URL, ms (every request).
    pub answer_ms: Vec<f64>,
}

impl Figures {
    /// Whether the run kept every promise.
    pub fn conserved(&self) -> bool {
        self.lost.is_empty()
            && self.double_effects.is_empty()
            && self.in_flight.is_empty()
            && self.misanswered.is_empty()
            && self.refused_without_reason == 0
            && self.gave_up == 0
            && self.letters_without_reason == 0
    }

    /// The figures as text.
    pub fn text(&self) -> String {
        let list = |m: &BTreeMap<String, usize>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let some = |v: &[String]| {
            if v.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}{}",
                    v.iter().take(10).cloned().collect::<Vec<_>>().join("; "),
                    if v.len() > 10 { "; ..." } else { "" }
                )
            }
        };
        let p = |v: &[f64]| {
            format!(
                "p50 {:.0} ms, p99 {:.0} ms ({} samples)",
                quantile(v, 0.5),
                quantile(v, 0.99),
                v.len()
            )
        };
        let refused: usize = self.refused.values().sum();
        let dead: usize = self.dead_lettered.values().sum();
        let faults: usize = self.faults.values().sum();
        [
            format!("soak {}: {}", self.tag, self.plan_text),
            format!(
                "  sent                 {} requests: {} deliveries, {} re-sent on purpose, the rest retries",
                self.requests, self.deliveries, self.resent
            ),
            format!("  accepted             {}", self.accepted),
            format!(
                "  refused (4xx)        {refused}: {}; misanswered (good refused, poison let in) {}{}; without a reason {}",
                list(&self.refused),
                self.misanswered.len(),
                some(&self.misanswered),
                self.refused_without_reason
            ),
            format!("  senders gave up      {}", self.gave_up),
            format!("  duplicates absorbed  {}", self.duplicates_absorbed),
            format!(
                "  dead-lettered        {dead}: {}; without a reason {}",
                list(&self.dead_lettered),
                self.letters_without_reason
            ),
            format!("  lost                 {}{}", self.lost.len(), some(&self.lost)),
            format!(
                "  double effects       {}{}",
                self.double_effects.len(),
                some(&self.double_effects)
            ),
            format!(
                "  in flight            {}{}",
                self.in_flight.len(),
                some(&self.in_flight)
            ),
            format!("  orders               {}", list(&self.orders)),
            format!(
                "  faults injected      {faults}: {}; PutEvents refused {} times",
                list(&self.faults),
                self.bus_refusals
            ),
            format!(
                "  CDC                  {} of {} writes on the bus; batch sync {} of {} records ({} invocations)",
                self.cdc_seen.0,
                self.cdc_seen.1,
                self.sync_seen.0,
                self.sync_seen.1,
                self.sync_invocations
            ),
            format!(
                "  warehouse            {} deliveries accepted once, {} answered 503 first; emails {} (copies dropped by their key {})",
                self.warehouse.0, self.warehouse.1, self.emails, self.email_copies
            ),
            format!(
                "  throughput           {:.1} accepted deliveries/s over {:.0} s; quiet {:.0} s after the last answer",
                self.throughput, self.load_seconds, self.quiet_seconds
            ),
            format!("  POST → ingest answer {}", p(&self.answer_ms)),
            format!("  POST → audit trail   {}", p(&self.to_audit_ms)),
            format!("  saga execution       {}", p(&self.saga_ms)),
        ]
        .join("\n")
    }

    /// The figures as a section of `make bench`'s report.
    pub fn section(&self) -> Section {
        let mut section = Section::new(
            85,
            "Soak: conservation under load and faults",
            &format!(
                "`make soak` (`tests/src/soak.rs`) on the deployed stack: {}. When the stack is \
                 quiet, every accepted delivery must be in the audit trail exactly once or in a \
                 dead-letter queue with a reason, every order must have one outcome whose effects \
                 agree, and each Idempotency-Key must have been accepted once downstream.",
                self.plan_text
            ),
        );
        let mut counts = Table::new(
            "",
            vec![Column::text("figure"), Column::number("count", "", 0)],
        );
        let refused: usize = self.refused.values().sum();
        let dead: usize = self.dead_lettered.values().sum();
        for (what, n) in [
            ("deliveries sent", self.deliveries),
            ("requests (retries and re-sends included)", self.requests),
            ("accepted", self.accepted),
            ("refused with a reason (poison)", refused),
            ("duplicates absorbed", self.duplicates_absorbed),
            ("dead-lettered", dead),
            (
                "dead-lettered without a reason",
                self.letters_without_reason,
            ),
            ("faults injected", self.faults.values().sum()),
            ("PutEvents refused during the outage", self.bus_refusals),
        ] {
            counts.row(vec![json!(what), json!(n)]);
        }
        let mut goals = Table::new(
            "",
            vec![
                Column::text("must be zero"),
                Column::number("count", "", 0).at_most(0.0),
            ],
        );
        for (what, n) in [
            ("lost", self.lost.len()),
            ("double effects", self.double_effects.len()),
            ("in flight at the end", self.in_flight.len()),
            (
                "good deliveries refused or poison let in",
                self.misanswered.len(),
            ),
            ("senders gave up", self.gave_up),
        ] {
            goals.row(vec![json!(what), json!(n)]);
        }
        let mut times = Table::new(
            "",
            vec![
                Column::text("path"),
                Column::number("p50", "ms", 0),
                Column::number("p99", "ms", 0),
            ],
        );
        for (what, v) in [
            ("POST → ingest's answer", &self.answer_ms),
            (
                "first POST → recorded in the audit trail",
                &self.to_audit_ms,
            ),
            ("saga execution, start → stop", &self.saga_ms),
        ] {
            times.row(vec![
                json!(what),
                json!(quantile(v, 0.5)),
                json!(quantile(v, 0.99)),
            ]);
        }
        let mut rate = Table::new(
            "",
            vec![
                Column::text("throughput"),
                Column::number("accepted / s", "", 1),
            ],
        );
        rate.row(vec![
            json!("accepted deliveries per second under faults"),
            json!(self.throughput),
        ]);
        section.tables.extend([goals, counts, times, rate]);
        section
    }
}

/// Fails with the figures when a soak broke a promise, or when its faults never happened (then it
/// proved nothing).
pub fn check(figures: &Figures) -> Result<()> {
    let faults: usize = figures.faults.values().sum();
    if !figures.conserved() {
        bail!("the soak broke a promise:\n{}", figures.text());
    }
    if faults == 0 || figures.bus_refusals == 0 {
        bail!(
            "the soak's faults never happened, so it proved nothing:\n{}",
            figures.text()
        );
    }
    if figures.refused.is_empty() || figures.duplicates_absorbed == 0 || figures.orders.is_empty() {
        bail!(
            "the soak sent no poison, no duplicate or no order:\n{}",
            figures.text()
        );
    }
    Ok(())
}
