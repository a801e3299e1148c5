//! The soak: load and faults at once on the deployed stack, then a check that nothing was lost,
//! duplicated or left in flight (`make soak`, and a shorter run in `make test`).
//!
//! **What it does.** [`Plan::webhooks`] signed webhooks from [`Plan::senders`] concurrent senders
//! across the sources (the web shop on Standard Webhooks, the marketplace on Shopify, the CRM on
//! busline-v1, the help desk on GitHub's scheme and the payment provider on Stripe's), each with
//! its own `X-Correlation-Id`. Senders behave as real ones do: a 5xx, a 429 or no answer is sent
//! again, re-signed, with backoff. On top of that:
//!
//! - **duplicates**: a share of accepted deliveries is sent once more later, as senders do;
//! - **poison**: a share is bad on purpose. Some are refused at the door (a wrong signature, an
//!   order id with `#`, a body not in UTF-8, a body too big for the bus) and must get a 4xx with a
//!   reason; some pass the door and cannot be translated (a marketplace order in two currencies) and
//!   must reach the transformers' dead-letter queue with theirs;
//! - **faults**: LocalStack's executor fails invocations of every consumer, saga step and the
//!   ingest function at [`Plan::fault_rate`] (an error before the function runs, a crash after its
//!   side effects, a timeout);
//! - **an outage**: the bus refuses every `PutEvents` for [`Plan::bus_outage`], from the functions,
//!   Step Functions and the tooling alike (the executor's `aws` rule);
//! - **other load**: [`Plan::cdc_writes`] writes to the ERP table behind the CDC stream, and a
//!   batch-sync run of [`Plan::sync_records`] records from the stub source, invoked as the schedule
//!   would until it completes.
//!
//! **What it checks, once the stack is quiet.** Every accepted delivery is in the audit trail
//! exactly once, or in a dead-letter queue with a reason. Every order has exactly one execution, one
//! terminal event and one status, and its effects agree: paid the total and shipped if fulfilled,
//! nothing paid and nothing shipped if not; per SKU, the stock fell by exactly what fulfilled orders
//! took. The warehouse and the email API accepted each `Idempotency-Key` once, and every part of
//! every order reached the warehouse. Every CDC write and every synced record reached the bus.
//! Nothing is left in a work queue or a running execution. [`Figures`] holds the counts.
//!
//! The stub receivers listen where the LocalStack deployment points the stack (8025 email API, 8026
//! sync source, 8027 warehouse), so a soak runs alone.

mod checks;
mod deliveries;
mod faults;
mod figures;
mod load;
mod observe;
mod senders;
mod stubs;
mod world;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use aws_config::SdkConfig;

use crate::DeployedStack;
use faults::FAULTED;
pub use figures::{Figures, check};
use load::{load, quiet_after};
use observe::{busy_queues, stack_work_queues};
use world::World;

/// How hard a soak pushes.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Distinct webhook deliveries.
    pub webhooks: usize,
    /// Concurrent senders: tasks that each take the next delivery from one shared queue until it is
    /// empty.
    pub senders: usize,
    /// Share of accepted deliveries sent again later.
    pub duplicate_rate: f64,
    /// Share of deliveries that are bad on purpose.
    pub poison_rate: f64,
    /// Share of invocations the executor fails, per function.
    pub fault_rate: f64,
    /// How long the bus refuses `PutEvents`, starting a quarter into the load.
    pub bus_outage: Duration,
    /// Writes to the ERP table behind the CDC stream.
    pub cdc_writes: usize,
    /// Records the batch sync pulls.
    pub sync_records: usize,
    /// How long the stack may take to become quiet after the last answer.
    pub quiet_within: Duration,
    /// How long the whole soak may take, set-up and checks included: past it, the soak fails
    /// saying which phase it was in, rather than hang its caller.
    pub deadline: Duration,
    /// Seeds the generator, so a run's deliveries can be made again.
    pub seed: u64,
}

impl Plan {
    /// `make soak`: what the issue asks of a full run.
    pub fn full() -> Self {
        Self {
            webhooks: 2000,
            senders: 16,
            duplicate_rate: 0.10,
            poison_rate: 0.02,
            fault_rate: 0.03,
            bus_outage: Duration::from_secs(8),
            cdc_writes: 200,
            sync_records: 500,
            quiet_within: Duration::from_secs(1800),
            deadline: Duration::from_secs(3600),
            seed: 20_261_201,
        }
    }

    /// `make test`'s: the same mix at a rate LocalStack on two cores keeps up with. Sixteen
    /// senders overdrive it: its Lambda invoke path then costs seconds per call, ingest times out
    /// (502s the senders retry), and consumers outlive their visibility timeout, so the run takes
    /// longer than the rest of `make test`. Four senders keep it to a few minutes.
    pub fn short() -> Self {
        Self {
            webhooks: 150,
            senders: 4,
            cdc_writes: 20,
            sync_records: 50,
            bus_outage: Duration::from_secs(5),
            quiet_within: Duration::from_secs(600),
            deadline: Duration::from_secs(1200),
            ..Self::full()
        }
    }
}

/// Where a soak is, for its progress lines and for the error if it overruns its deadline.
#[derive(Clone)]
struct Progress {
    started: Instant,
    phase: Arc<Mutex<String>>,
}

impl Progress {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            phase: Arc::new(Mutex::new("starting".to_owned())),
        }
    }

    /// Enters `phase`, and says so on standard error (`--nocapture` shows it under `cargo test`).
    fn enter(&self, phase: &str) {
        *self.phase.lock().unwrap() = phase.to_owned();
        self.say(phase);
    }

    fn say(&self, text: &str) {
        eprintln!(
            "soak {:>6.1} s: {text}",
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Runs the soak of `plan` on the deployed stack and returns its figures. Fails only when the
/// soak itself could not run or overran `plan.deadline`; the figures say whether the stack kept
/// its promises.
pub async fn run(aws: &SdkConfig, plan: &Plan) -> Result<Figures> {
    let progress = Progress::new();
    match tokio::time::timeout(plan.deadline, run_within(aws, plan, &progress)).await {
        Ok(figures) => figures,
        Err(_) => bail!(
            "the soak overran its deadline of {} s while {}; a stack this slow cannot be judged \
             (see LocalStack's log under .state/localstack)",
            plan.deadline.as_secs(),
            progress.phase.lock().unwrap()
        ),
    }
}

/// The soak's phases in order: a quiet stack, the outside systems and the bus's watches, the load
/// with its faults, the wait for quiet, the checks, and the watches removed.
async fn run_within(aws: &SdkConfig, plan: &Plan, progress: &Progress) -> Result<Figures> {
    let stack = DeployedStack::read(aws).await?;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut figures = Figures {
        tag: tag.clone(),
        plan_text: format!(
            "{} webhooks from {} concurrent senders across five sources, {:.0} % re-sent, {:.0} % \
             poison, the executor's faults at {:.0} % on {} functions, the bus refusing PutEvents for \
             {} s, {} CDC writes and a batch sync of {} records at the same time",
            plan.webhooks,
            plan.senders,
            plan.duplicate_rate * 100.0,
            plan.poison_rate * 100.0,
            plan.fault_rate * 100.0,
            FAULTED.len(),
            plan.bus_outage.as_secs(),
            plan.cdc_writes,
            plan.sync_records
        ),
        ..Figures::default()
    };
    let work_queues = stack_work_queues(aws).await?;
    quiet_before(aws, &work_queues, progress).await?;
    let world = World::set_up(aws, &stack, plan, &tag, progress).await?;
    let load = load(aws, &stack, plan, &tag, &world, progress, &mut figures).await?;
    let seen = quiet_after(
        aws,
        &stack,
        plan,
        &tag,
        &world,
        &load,
        &work_queues,
        progress,
    )
    .await?;
    figures.quiet_seconds = seen.quiet_seconds;
    figures.cdc_seen = (
        load.cdc_keys
            .iter()
            .filter(|k| seen.cdc.contains(*k))
            .count(),
        load.cdc_keys.len(),
    );
    figures.sync_seen = (
        (0..plan.sync_records)
            .filter(|i| seen.sync.contains(&format!("R-{tag}-{i}")))
            .count(),
        plan.sync_records,
    );

    progress.enter("counting dead letters and checking every accepted delivery");
    let run = checks::Run {
        aws,
        stack: &stack,
        plan,
        tag: &tag,
        load: &load,
        seen: &seen,
        progress,
    };
    checks::judge(&run, &world, &work_queues, &mut figures).await?;
    world.tear_down(aws, &tag).await;
    progress.enter("done");
    Ok(figures)
}

/// Waits until the stack's work queues are empty. A soak counts what is in the stack's queues, so
/// they must start empty: a backlog from earlier runs would be counted as this run's in flight and
/// delay its quiet. Earlier tests leave deliveries for warehouses that were not listening, requeued
/// for up to a day: those are purged, and said so.
async fn quiet_before(
    aws: &SdkConfig,
    work_queues: &[(String, String)],
    progress: &Progress,
) -> Result<()> {
    progress.enter("waiting for the stack to be quiet before the load");
    let sqs = aws_sdk_sqs::Client::new(aws);
    let waited = Instant::now();
    let mut purged = false;
    loop {
        let busy = busy_queues(aws, work_queues).await?;
        if busy.is_empty() {
            return Ok(());
        }
        if !purged {
            for (name, depth) in &busy {
                progress.say(&format!(
                    "purging {depth} message(s) an earlier run left in {name}"
                ));
                if let Some((_, url)) = work_queues.iter().find(|(n, _)| n == name) {
                    sqs.purge_queue().queue_url(url).send().await?;
                }
            }
            purged = true;
        } else if waited.elapsed() > Duration::from_secs(120) {
            bail!(
                "the stack is not quiet before the soak, even after purging its queues: {busy:?}; \
                 wait for it, or restart LocalStack and deploy again"
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
