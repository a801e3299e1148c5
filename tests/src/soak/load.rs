//! The load and the wait after it: the senders, the CDC writer and the batch sync at once with
//! the faults armed, then the watches drained until the stack is quiet.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

use super::deliveries::Delivery;
use super::faults::{FaultsArmed, arm_faults, disarm_faults};
use super::figures::Figures;
use super::observe::{Executions, busy_queues, drain, drain_subjects, list_executions};
use super::senders::{Sent, now_ms};
use super::world::World;
use super::{Plan, Progress, checks};
use crate::DeployedStack;

/// What the load left: how each delivery's sending ended, and the CDC writes it made.
pub(super) struct Load {
    /// By delivery number: the first sending's end.
    pub(super) results: HashMap<usize, Sent>,
    /// The ERP table's keys the CDC writer wrote.
    pub(super) cdc_keys: Vec<String>,
}

impl Load {
    /// The deliveries answered 2xx.
    pub(super) fn accepted<'a>(&self, planned: &'a [Delivery]) -> Vec<&'a Delivery> {
        planned
            .iter()
            .filter(|d| {
                self.results
                    .get(&d.n)
                    .is_some_and(|s| (200..300).contains(&s.status))
            })
            .collect()
    }
}

/// The load: the senders, the CDC writer and the batch sync at once, with the faults armed; then
/// the faults taken out and what the senders were told counted.
pub(super) async fn load(
    aws: &SdkConfig,
    stack: &DeployedStack,
    plan: &Plan,
    tag: &str,
    world: &World,
    progress: &Progress,
    figures: &mut Figures,
) -> Result<Load> {
    let started = Instant::now();
    let load_started_ms = now_ms();
    // The outage starts about a quarter into the load (a rough guess of its length: 12
    // deliveries a second).
    let outage_from =
        chrono::Utc::now().timestamp_millis() + (plan.webhooks as i64 * 1000 / 12 / 4).max(2000);
    arm_faults(plan, outage_from)?;
    let _armed = FaultsArmed;
    progress.enter(&format!(
        "sending {} webhooks from {} senders, with CDC writes and a batch sync",
        plan.webhooks, plan.senders
    ));
    let work = Arc::new(Mutex::new(
        world.planned.iter().cloned().collect::<VecDeque<_>>(),
    ));
    let resends = Arc::new(Mutex::new(Vec::<Delivery>::new()));
    let results = Arc::new(Mutex::new(HashMap::<usize, Sent>::new()));
    let resent_results = Arc::new(Mutex::new(Vec::<(usize, Sent)>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    // In a set of its own, so it is aborted with the run if the run fails or overruns its deadline.
    let mut reporter = tokio::task::JoinSet::new();
    {
        let (progress, results, total) = (progress.clone(), results.clone(), plan.webhooks);
        reporter.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let answered = results.lock().unwrap().len();
                progress.say(&format!("{answered} of {total} deliveries answered"));
            }
        });
    }
    for _ in 0..plan.senders {
        let (senders, work, resends, results, resent_results) = (
            world.senders.clone(),
            work.clone(),
            resends.clone(),
            results.clone(),
            resent_results.clone(),
        );
        tasks.spawn(async move {
            loop {
                let next = work.lock().unwrap().pop_front();
                let Some(delivery) = next else { break };
                let sent = senders.send(&delivery).await;
                if delivery.resend && (200..300).contains(&sent.status) {
                    resends.lock().unwrap().push(delivery.clone());
                }
                results.lock().unwrap().insert(delivery.n, sent);
                // Re-sends go out a while after their first acceptance, mixed into the load.
                let due = {
                    let mut r = resends.lock().unwrap();
                    if r.len() >= 8 || (work.lock().unwrap().is_empty() && !r.is_empty()) {
                        r.pop()
                    } else {
                        None
                    }
                };
                if let Some(again) = due {
                    let sent = senders.send(&again).await;
                    resent_results.lock().unwrap().push((again.n, sent));
                }
            }
            // What is left to re-send once the work is done.
            loop {
                let next = resends.lock().unwrap().pop();
                let Some(again) = next else { break };
                let sent = senders.send(&again).await;
                resent_results.lock().unwrap().push((again.n, sent));
            }
        });
    }
    let cdc_keys: Vec<String> = (0..plan.cdc_writes)
        .map(|i| format!("E-{tag}-{i}"))
        .collect();
    {
        let (aws, table, keys) = (
            aws.clone(),
            stack.output("ErpCustomersTableName")?.to_owned(),
            cdc_keys.clone(),
        );
        let pause = Duration::from_millis(
            (plan.webhooks as u64 * 1000 / 12) / plan.cdc_writes.max(1) as u64,
        );
        tasks.spawn(async move {
            let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
            for key in keys {
                let mut tries = 0;
                // A write DynamoDB refuses is written again: what the ERP would do.
                while dynamodb
                    .put_item()
                    .table_name(&table)
                    .item("customer_id", AttributeValue::S(key.clone()))
                    .item("email", AttributeValue::S(format!("{key}@example.com")))
                    .item("credit_limit", AttributeValue::N("5000".into()))
                    .send()
                    .await
                    .is_err()
                    && tries < 5
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                tokio::time::sleep(pause).await;
            }
        });
    }
    let sync_invocations = Arc::new(Mutex::new(0usize));
    {
        let (aws, invocations) = (aws.clone(), sync_invocations.clone());
        tasks.spawn(async move {
            let scheduled =
                json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
            let function = format!("{}-batch-sync", DeployedStack::NAME);
            for _ in 0..60 {
                *invocations.lock().unwrap() += 1;
                match crate::invoke(&aws, &function, &scheduled).await {
                    Ok((None, answer)) if answer["complete"] == true => return,
                    _ => tokio::time::sleep(Duration::from_secs(2)).await,
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a load task panicked")?;
    }
    reporter.abort_all();
    figures.load_seconds = started.elapsed().as_secs_f64();
    let load_ended_ms = now_ms();
    figures.sync_invocations = *sync_invocations.lock().unwrap();

    let results = std::mem::take(&mut *results.lock().unwrap());
    let resent_results = std::mem::take(&mut *resent_results.lock().unwrap());
    checks::account_answers(figures, &world.planned, &results, &resent_results);
    figures.throughput = figures.accepted as f64 / ((load_ended_ms - load_started_ms) / 1000.0);

    let (injected, refusals) = disarm_faults()?;
    figures.faults = injected;
    figures.bus_refusals = refusals;
    Ok(Load { results, cdc_keys })
}

/// What the watches saw by the time the stack was quiet.
pub(super) struct Seen {
    /// CDC keys and synced record ids that reached the bus.
    pub(super) cdc: HashSet<String>,
    pub(super) sync: HashSet<String>,
    /// Per order: its terminal events, as (event id, type).
    pub(super) outcomes: HashMap<String, HashSet<(String, String)>>,
    /// The saga's executions of this run.
    pub(super) executions: Executions,
    /// From the last answer until quiet (or until the plan's limit).
    pub(super) quiet_seconds: f64,
}

/// Waits until the stack is quiet: no execution running, no work queue holding a message, every
/// CDC write and synced record seen on the bus and every accepted order ended, three looks in a
/// row; or until the plan's `quiet_within`, and then the checks say what was still moving.
#[allow(clippy::too_many_arguments)] // one phase's inputs, each used once
pub(super) async fn quiet_after(
    aws: &SdkConfig,
    stack: &DeployedStack,
    plan: &Plan,
    tag: &str,
    world: &World,
    load: &Load,
    work_queues: &[(String, String)],
    progress: &Progress,
) -> Result<Seen> {
    let accepted = load.accepted(&world.planned);
    let orders: Vec<_> = accepted.iter().filter_map(|d| d.order.as_ref()).collect();
    let quiet_started = Instant::now();
    let mut cdc_seen = HashSet::new();
    let mut sync_seen = HashSet::new();
    let mut outcomes: HashMap<String, HashSet<(String, String)>> = HashMap::new();
    let sfn = aws_sdk_sfn::Client::new(aws);
    let machine = stack.output("OrderFulfillmentStateMachineArn")?.to_owned();
    let mut executions;
    let mut calm = 0;
    progress.enter("waiting for the stack to be quiet after the load");
    let mut reported = Instant::now();
    loop {
        drain_subjects(aws, &world.cdc_queue, &mut cdc_seen, |d| {
            d["subject"]
                .as_str()
                .map(|s| s.trim_start_matches("customer_id=").to_owned())
        })
        .await?;
        drain_subjects(aws, &world.sync_queue, &mut sync_seen, |d| {
            d["subject"].as_str().map(str::to_owned)
        })
        .await?;
        for event in drain(aws, &world.outcomes_queue).await? {
            let detail = &event["detail"];
            if let Some(order) = detail["data"]["order_id"].as_str() {
                outcomes.entry(order.to_owned()).or_default().insert((
                    detail["id"].as_str().unwrap_or_default().to_owned(),
                    detail["type"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        executions = list_executions(&sfn, &machine, tag).await?;
        let running = executions
            .values()
            .flatten()
            .filter(|e| e.0 == "RUNNING")
            .count();
        let busy = busy_queues(aws, work_queues).await?;
        let done = running == 0
            && busy.is_empty()
            && cdc_seen.len() >= load.cdc_keys.len()
            && sync_seen.len() >= plan.sync_records
            && orders.iter().all(|o| outcomes.contains_key(&o.id));
        calm = if done { calm + 1 } else { 0 };
        if reported.elapsed() > Duration::from_secs(30) {
            reported = Instant::now();
            let open = orders
                .iter()
                .filter(|o| !outcomes.contains_key(&o.id))
                .count();
            progress.say(&format!(
                "{running} execution(s) running, {open} order(s) without an outcome, CDC {}/{}, \
                 sync {}/{}, busy queues {busy:?}",
                cdc_seen.len(),
                load.cdc_keys.len(),
                sync_seen.len(),
                plan.sync_records
            ));
        }
        if calm >= 3 || quiet_started.elapsed() > plan.quiet_within {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Ok(Seen {
        cdc: cdc_seen,
        sync: sync_seen,
        outcomes,
        executions,
        quiet_seconds: quiet_started.elapsed().as_secs_f64(),
    })
}
