//! The order saga end to end on LocalStack: 50 orders, one after another, each from its
//! `order.placed` event to the end of its execution, on the stack `make deploy-local` deployed, with
//! every step a real function process.
//!
//! Each order's time is split into where it went:
//! - **start**: the web shop's `order.placed` put on the bus → the execution started (EventBridge,
//!   `translate` and `enrich` with their two publishes, the rule, the Express starter,
//!   `StartExecution`);
//! - **handlers**: busline's own code, the sum of the steps' durations as each logs it (the hop's
//!   "handled" line, `processing_ms`), which includes their calls to DynamoDB and EventBridge;
//! - **invoke**: Step Functions' task time for the Lambda steps minus the handlers (LocalStack's
//!   Lambda service and the process executor dispatching each invocation);
//! - **state machine**: the rest of the execution (transitions, the Choice, the `events:putEvents`
//!   and `dynamodb:updateItem` integrations, waiting between states).
//!
//! Two warm-up orders run first and are not counted. Needs LocalStack and the deployed stack
//! (`make bench` does both). Writes `target/bench/saga.json` (its section of the report) and prints
//! tables.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use busline_tests::report::{Column, Section, Table};
use busline_tests::saga::{FORWARD_STEPS, Scenario};
use busline_tests::trace::hop_field;
use busline_tests::{DeployedStack, function_log_lines, localstack, percentile};
use chrono::Utc;
use serde_json::{Value, json};

const ORDERS: usize = 50;
const WARM_UP: usize = 2;
const STEPS: &[&str] = FORWARD_STEPS;

/// One order's time, in milliseconds.
#[derive(Debug, Default)]
struct Timing {
    order_id: String,
    end_to_end: f64,
    start: f64,
    execution: f64,
    lambda_tasks: f64,
    handlers: f64,
}

/// Runs one order and times it from the outside: placed → started → stopped, and the Lambda tasks'
/// time as Step Functions saw it (scheduled → succeeded).
async fn run(scenario: &Scenario) -> Result<Timing> {
    let placed = Utc::now().timestamp_micros() as f64 / 1000.0;
    scenario.place().await?;
    let finished = scenario.finished(Duration::from_secs(60)).await?;
    ensure!(
        finished.output["status"] == "FULFILLED",
        "order {} did not fulfil: {finished:?}",
        scenario.order.order_id
    );
    Ok(Timing {
        order_id: scenario.order.order_id.clone(),
        end_to_end: finished.stopped_ms - placed,
        start: finished.started_ms - placed,
        execution: finished.stopped_ms - finished.started_ms,
        lambda_tasks: finished.lambda_task_ms,
        ..Timing::default()
    })
}

/// Each order's handler time per step, from the steps' "handled" log lines.
async fn handler_times(aws: &aws_config::SdkConfig) -> Result<HashMap<(String, String), f64>> {
    let mut times = HashMap::new();
    for step in STEPS {
        let function = format!("{}-{step}", DeployedStack::NAME);
        for line in function_log_lines(aws, &function).await? {
            let Ok(log) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if log["message"] != "handled" {
                continue;
            }
            if let (Some(order), Some(ms)) =
                (hop_field(&log, "event_id"), log["processing_ms"].as_f64())
            {
                *times
                    .entry((order.to_owned(), (*step).to_owned()))
                    .or_default() += ms;
            }
        }
    }
    Ok(times)
}

#[tokio::main]
async fn main() -> Result<()> {
    let aws = localstack().await?;
    println!("Seeding {} orders ...", ORDERS + WARM_UP);
    let mut scenarios = Vec::new();
    for _ in 0..ORDERS + WARM_UP {
        scenarios.push(Scenario::seeded(&aws, 1_000_000, false, 0).await?);
    }
    let mut timings = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        let timing = run(scenario).await?;
        if i >= WARM_UP {
            timings.push(timing);
        }
    }
    // The steps' logs reach CloudWatch with each invocation's answer; a moment for the last ones.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let handlers = handler_times(&aws).await?;
    let mut per_step: HashMap<&str, Vec<f64>> = HashMap::new();
    for timing in &mut timings {
        for step in STEPS {
            let ms = handlers
                .get(&(timing.order_id.clone(), (*step).to_owned()))
                .copied()
                .with_context(|| format!("no 'handled' line of {step} for {}", timing.order_id))?;
            timing.handlers += ms;
            per_step.entry(step).or_default().push(ms);
        }
    }

    let column = |f: fn(&Timing) -> f64| timings.iter().map(f).collect::<Vec<f64>>();
    let end_to_end = column(|t| t.end_to_end);
    let total: f64 = end_to_end.iter().sum();
    let mut section = Section::new(
        60,
        "End to end on LocalStack: order placed → saga finished",
        &format!(
            "{ORDERS} warm orders on the deployed stack, one at a time, each from the web shop's \
             `order.placed` on the bus to the end of its execution, every step a real function \
             process (`tests/benches/saga.rs`). The start includes `translate` and `enrich` and \
             their publishes. Handler time is each step's own `processing_ms` from its logs (the hop's \
             \"handled\" line), with its DynamoDB and EventBridge calls; Lambda invoke is Step \
             Functions' task time minus that; the state machine is the rest of the execution."
        ),
    );
    section.tables.push(Table::latency_goal(
        "order placed → saga finished",
        &end_to_end,
        1500.0,
    ));
    let mut table = Table::hops("");
    table
        .hop("end to end", &end_to_end, total)
        .hop(
            "start: bus, translate, enrich, starter",
            &column(|t| t.start),
            total,
        )
        .hop(
            "busline's handlers (6 steps, with their AWS calls)",
            &column(|t| t.handlers),
            total,
        )
        .hop(
            "Lambda invoke (LocalStack and the executor)",
            &column(|t| t.lambda_tasks - t.handlers),
            total,
        )
        .hop(
            "state machine (transitions, integrations, waits)",
            &column(|t| t.execution - t.lambda_tasks),
            total,
        );
    section.tables.push(table);
    let mut steps = Table::new(
        "Each step's handler:",
        vec![
            Column::text("step"),
            Column::number("p50", "ms", 1),
            Column::number("p99", "ms", 1),
        ],
    );
    for step in STEPS {
        let values = &per_step[step];
        steps.row(vec![
            json!(step),
            json!(percentile(values, 0.5)),
            json!(percentile(values, 0.99)),
        ]);
    }
    section.tables.push(steps);
    section.publish("saga")
}
