//! The soak's verdicts, once the stack is quiet: what the senders were told, what is still in
//! flight or dead-lettered, and, for every accepted delivery, order, key, CDC write and synced
//! record, whether it is where it belongs exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use busline::audit::{AuditTrail, DynamoDbAuditTrail};
use busline_fulfillment::status::{DynamoDbOrderTracker, OrderTracker, Status};
use serde_json::json;

use super::deliveries::{Delivery, PlacedOrder};
use super::figures::Figures;
use super::load::{Load, Seen};
use super::observe::{RECEIVE_LIMIT, RunLetter, busy_queues, dead_letters};
use super::senders::Sent;
use super::world::World;
use super::{Plan, Progress};
use crate::DeployedStack;

/// What the checks read: the run, what its load left and what its watches saw.
pub(super) struct Run<'a> {
    pub(super) aws: &'a SdkConfig,
    pub(super) stack: &'a DeployedStack,
    pub(super) plan: &'a Plan,
    pub(super) tag: &'a str,
    pub(super) load: &'a Load,
    pub(super) seen: &'a Seen,
    pub(super) progress: &'a Progress,
}

/// This run's dead letters: what holds a delivery, order or record is not lost.
struct Letters(Vec<RunLetter>);

impl Letters {
    /// Whether a letter's body names `needle` (an event id, correlation id, order id or key).
    fn hold(&self, needle: &str) -> bool {
        self.0.iter().any(|l| l.body.contains(needle))
    }
}

/// Every check, into `figures`.
pub(super) async fn judge(
    run: &Run<'_>,
    world: &World,
    work_queues: &[(String, String)],
    figures: &mut Figures,
) -> Result<()> {
    let letters = in_flight_and_letters(run, work_queues, figures).await?;
    let accepted = run.load.accepted(&world.planned);
    let orders: Vec<&PlacedOrder> = accepted.iter().filter_map(|d| d.order.as_ref()).collect();
    audit_trail(run, &accepted, &letters, figures).await?;
    let status_of = sagas(run, world, &orders, &letters, figures).await?;
    warehouse(world, &orders, &status_of, &letters, figures);
    emails(world, &status_of, &letters, figures);
    cdc_and_sync(run, &letters, figures);
    Ok(())
}

/// What is still moving, and this run's letters, counted by queue and reason (and written to
/// `target/bench/soak-letters.jsonl` with their SQS attributes, for diagnosis).
async fn in_flight_and_letters(
    run: &Run<'_>,
    work_queues: &[(String, String)],
    figures: &mut Figures,
) -> Result<Letters> {
    for (queue, depth) in busy_queues(run.aws, work_queues).await? {
        figures
            .in_flight
            .push(format!("{queue}: {depth} message(s)"));
    }
    for (name, runs) in &run.seen.executions {
        if runs.iter().any(|e| e.0 == "RUNNING") {
            figures
                .in_flight
                .push(format!("execution {name} still running"));
        }
    }
    let letters = dead_letters(run.aws, run.stack, run.tag).await?;
    let dump: String = letters
        .iter()
        .map(|l| {
            json!({"queue": l.queue, "reason": l.reason, "sqs": l.sqs,
                "event": l.event, "subject": l.subject})
            .to_string()
                + "\n"
        })
        .collect();
    let dump_path = crate::report::dir().join("soak-letters.jsonl");
    if let Err(e) = std::fs::create_dir_all(crate::report::dir())
        .and_then(|()| std::fs::write(&dump_path, dump))
    {
        run.progress
            .say(&format!("could not write {}: {e}", dump_path.display()));
    }
    for letter in &letters {
        *figures
            .dead_lettered
            .entry(format!("{}: {}", letter.queue, letter.reason))
            .or_default() += 1;
        if letter.reason == RECEIVE_LIMIT {
            figures.letters_without_reason += 1;
        }
    }
    Ok(Letters(letters))
}

/// Every accepted delivery: in the audit trail exactly once, or dead-lettered.
async fn audit_trail(
    run: &Run<'_>,
    accepted: &[&Delivery],
    letters: &Letters,
    figures: &mut Figures,
) -> Result<()> {
    let audit = DynamoDbAuditTrail::new(
        aws_sdk_dynamodb::Client::new(run.aws),
        run.stack.output("AuditTrailTableName")?,
    );
    let audit = Arc::new(audit);
    let mut lookups = tokio::task::JoinSet::new();
    for chunk in accepted.chunks(accepted.len().div_ceil(8).max(1)) {
        let chunk: Vec<(String, String, f64)> = chunk
            .iter()
            .map(|d| {
                let sent = &run.load.results[&d.n];
                (
                    d.correlation_id.clone(),
                    sent.body["eventId"].as_str().unwrap_or_default().to_owned(),
                    sent.first_ms,
                )
            })
            .collect();
        let audit = audit.clone();
        lookups.spawn(async move {
            let mut found = Vec::new();
            for (correlation, event_id, first_ms) in chunk {
                let history = audit.history(&correlation).await;
                found.push((correlation, event_id, first_ms, history));
            }
            found
        });
    }
    while let Some(found) = lookups.join_next().await {
        for (correlation, event_id, first_ms, history) in found? {
            let history = history.with_context(|| format!("the audit trail of {correlation}"))?;
            let entries: Vec<_> = history
                .iter()
                .filter(|e| e.envelope.source.starts_with("busline.webhook."))
                .collect();
            match entries.as_slice() {
                [entry] if entry.envelope.id == event_id => {
                    figures
                        .to_audit_ms
                        .push(entry.recorded_at.timestamp_micros() as f64 / 1000.0 - first_ms);
                }
                [] if letters.hold(&event_id) || letters.hold(&correlation) => {}
                [] => figures.lost.push(format!(
                    "{correlation} (event {event_id}) is not in the audit trail"
                )),
                more => figures.double_effects.push(format!(
                    "{correlation} is in the audit trail {} times",
                    more.len()
                )),
            }
        }
    }
    Ok(())
}

/// Every order: one execution, one terminal event, one status, and effects that agree (paid the
/// total and shipped if fulfilled, nothing if not); per SKU, the stock fell by exactly what
/// fulfilled orders took. Returns each order's status.
async fn sagas(
    run: &Run<'_>,
    world: &World,
    orders: &[&PlacedOrder],
    letters: &Letters,
    figures: &mut Figures,
) -> Result<HashMap<String, Status>> {
    let systems = &world.systems;
    let tracker = DynamoDbOrderTracker::new(
        aws_sdk_dynamodb::Client::new(run.aws),
        run.stack.output("OrderStatusTableName")?,
    );
    let mut taken: HashMap<String, i64> = HashMap::new();
    let mut status_of: HashMap<String, Status> = HashMap::new();
    for order in orders {
        let id = &order.id;
        let runs = run.seen.executions.get(id).cloned().unwrap_or_default();
        if runs.is_empty() {
            if !letters.hold(id) {
                figures.lost.push(format!(
                    "order {id} started no saga and is in no dead-letter queue"
                ));
            }
            *figures
                .orders
                .entry("dead-lettered before the saga".into())
                .or_default() += 1;
            continue;
        }
        if runs.len() > 1 {
            figures
                .double_effects
                .push(format!("order {id} has {} executions", runs.len()));
        }
        figures
            .saga_ms
            .extend(runs.iter().filter(|r| r.2 > 0.0).map(|r| r.2 - r.1));
        let view = tracker
            .get(id)
            .await
            .with_context(|| format!("the status of {id}"))?;
        let status = view.as_ref().map(|v| v.status);
        if let Some(status) = status {
            status_of.insert(id.clone(), status);
        }
        let terminal = run.seen.outcomes.get(id).cloned().unwrap_or_default();
        let ended = match status {
            Some(Status::Fulfilled) => "fulfilled".to_owned(),
            Some(Status::Failed) => format!(
                "failed: {}",
                view.as_ref()
                    .and_then(|v| v.failure_reason.as_deref())
                    .and_then(|r| r.split(':').next())
                    .unwrap_or("?")
            ),
            Some(Status::CompensationFailed) => "compensation failed".to_owned(),
            other => {
                figures.in_flight.push(format!("order {id} is {other:?}"));
                continue;
            }
        };
        *figures.orders.entry(ended.clone()).or_default() += 1;
        if terminal.len() != 1 && !letters.hold(id) {
            figures.double_effects.push(format!(
                "order {id} ({ended}) has {} terminal events: {terminal:?}",
                terminal.len()
            ));
        }
        if status == Some(Status::CompensationFailed) {
            continue; // a person's: its effects are what the alarm is for
        }
        let fulfilled = status == Some(Status::Fulfilled);
        if let Some((_, kind)) = terminal.iter().next() {
            let expected = if fulfilled {
                "io.busline.order.fulfilled.v1"
            } else {
                "io.busline.order.failed.v1"
            };
            if kind != expected {
                figures
                    .double_effects
                    .push(format!("order {id} is {ended} but published {kind}"));
            }
        }
        let net = systems.payment(id).await?.map_or(0, |p| p.net_cents());
        let expected = if fulfilled { order.total_cents } else { 0 };
        if net != expected {
            figures.double_effects.push(format!(
                "order {id} ({ended}) nets {net} cents, expected {expected}"
            ));
        }
        let shipment = systems.shipment(id).await?;
        let live = shipment.as_ref().is_some_and(|s| s.status == "CREATED");
        if live != fulfilled {
            figures
                .double_effects
                .push(format!("order {id} ({ended}) has shipment {shipment:?}"));
        }
        if fulfilled {
            for (sku, q) in &order.lines {
                *taken.entry(sku.clone()).or_default() += q;
            }
        }
    }
    let compensation_failed = figures.orders.contains_key("compensation failed");
    for (sku, stock) in &world.initial {
        let now = systems.stock(sku).await?.unwrap_or_default();
        let want = stock - taken.get(sku).copied().unwrap_or(0);
        if now != want && !compensation_failed {
            figures
                .double_effects
                .push(format!("{sku}: stock {now}, expected {want}"));
        }
    }
    Ok(status_of)
}

/// The warehouse: each key accepted once, and every part of every order there, with the
/// fulfilled orders' `order.fulfilled`.
fn warehouse(
    world: &World,
    orders: &[&PlacedOrder],
    status_of: &HashMap<String, Status>,
    letters: &Letters,
    figures: &mut Figures,
) {
    let seen = world.warehouse.seen.lock().unwrap().clone();
    let mut accepted_keys: HashMap<&str, usize> = HashMap::new();
    // Per order: the parts received (by sequence) and how many it said there are.
    let mut parts: HashMap<String, (HashSet<u64>, u64)> = HashMap::new();
    let mut fulfilled_there: HashSet<String> = HashSet::new();
    for (key, status, body) in &seen {
        if *status == 200 {
            *accepted_keys.entry(key).or_default() += 1;
            let data = &body["data"];
            if let Some(order) = data["order_id"].as_str() {
                match body["type"].as_str() {
                    Some("io.busline.fulfillment.requested.v1") => {
                        let entry = parts.entry(order.to_owned()).or_default();
                        entry.0.insert(data["sequence"].as_u64().unwrap_or(0));
                        entry.1 = data["total"].as_u64().unwrap_or(0);
                    }
                    Some("io.busline.order.fulfilled.v1") => {
                        fulfilled_there.insert(order.to_owned());
                    }
                    _ => {}
                }
            }
        }
    }
    figures.warehouse = (
        accepted_keys.len(),
        seen.iter().filter(|(_, s, _)| *s == 503).count(),
    );
    for (key, n) in &accepted_keys {
        if *n > 1 {
            figures
                .double_effects
                .push(format!("the warehouse accepted {key} {n} times"));
        }
    }
    for order in orders {
        let (got, of) = parts
            .get(&order.id)
            .map_or((0, 0), |(got, of)| (got.len() as u64, *of));
        if (got == 0 || got != of) && !letters.hold(&order.id) {
            figures.lost.push(format!(
                "order {}: {got} of its {of} fulfillment requests reached the warehouse",
                order.id
            ));
        }
        let fulfilled = status_of.get(&order.id) == Some(&Status::Fulfilled);
        if fulfilled && !fulfilled_there.contains(&order.id) && !letters.hold(&order.id) {
            figures.lost.push(format!(
                "order {}: order.fulfilled never reached the warehouse",
                order.id
            ));
        }
    }
}

/// The email API: each key once, and every fulfilled order's customer emailed.
fn emails(
    world: &World,
    status_of: &HashMap<String, Status>,
    letters: &Letters,
    figures: &mut Figures,
) {
    let emails = world.email.seen.lock().unwrap().clone();
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for key in &emails {
        *per_key.entry(key).or_default() += 1;
    }
    figures.emails = per_key.len();
    figures.email_copies = emails.len() - per_key.len();
    for (id, status) in status_of {
        if *status == Status::Fulfilled
            && !per_key.contains_key(format!("{id}:notify-fulfilled").as_str())
            && !letters.hold(id)
        {
            figures.lost.push(format!(
                "order {id} is fulfilled and its customer was never emailed"
            ));
        }
    }
}

/// CDC and the batch sync: every change on the bus, or dead-lettered.
fn cdc_and_sync(run: &Run<'_>, letters: &Letters, figures: &mut Figures) {
    for key in &run.load.cdc_keys {
        if !run.seen.cdc.contains(key) && !letters.hold(key) {
            figures
                .lost
                .push(format!("CDC write {key} never reached the bus"));
        }
    }
    for i in 0..run.plan.sync_records {
        let id = format!("R-{}-{i}", run.tag);
        if !run.seen.sync.contains(&id) && !letters.hold(&id) {
            figures
                .lost
                .push(format!("synced record {id} never reached the bus"));
        }
    }
}

/// Adds one delivery's sending (its requests, their answer times, the duplicates it was told of).
fn count_requests(figures: &mut Figures, sent: &Sent) {
    figures.requests += sent.attempts;
    figures.answer_ms.extend(&sent.answers_ms);
    figures.duplicates_absorbed += sent.duplicates;
}

/// Counts what the senders were told.
pub(super) fn account_answers(
    figures: &mut Figures,
    planned: &[Delivery],
    results: &HashMap<usize, Sent>,
    resent: &[(usize, Sent)],
) {
    figures.deliveries = planned.len();
    figures.resent = resent.len();
    for delivery in planned {
        let Some(sent) = results.get(&delivery.n) else {
            figures
                .lost
                .push(format!("delivery {} was never sent", delivery.n));
            continue;
        };
        count_requests(figures, sent);
        let status = sent.status;
        match (status, delivery.kind.refused()) {
            (200..300, false) => figures.accepted += 1,
            (400..500, true) => {
                *figures
                    .refused
                    .entry(format!("{status} {}", delivery.kind.name()))
                    .or_default() += 1;
                let reason = sent.body["reason"].as_str();
                if reason.is_none_or(str::is_empty) {
                    figures.refused_without_reason += 1;
                }
            }
            (0 | 429 | 500.., _) => figures.gave_up += 1,
            _ => figures.misanswered.push(format!(
                "{} delivery {} ({}) answered {status}: {}",
                delivery.source,
                delivery.n,
                delivery.kind.name(),
                sent.body
            )),
        }
    }
    for (n, sent) in resent {
        count_requests(figures, sent);
        if !(200..300).contains(&sent.status) || sent.duplicates == 0 {
            figures.double_effects.push(format!(
                "delivery {n} sent again was answered {} {} instead of a duplicate",
                sent.status, sent.body
            ));
        }
    }
}
