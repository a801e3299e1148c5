//! The order saga end to end on LocalStack: 50 orders, one after another, each from its
//! `order.placed` event to the end of its execution, on the stack `make deploy-local` deployed, with
//! every step a real function process.
//!
//! Each order's time is split into where it went:
//! - **start**: the web shop's `order.placed` put on the bus → the execution started (EventBridge,
//!   `translate` and `enrich` with their two publishes, the rule, the Express starter,
//!   `StartExecution`);
//! - **handlers**: busline's own code, the sum of the steps' durations as each logs it ("step
//!   finished", `duration_ms`), which includes their calls to DynamoDB and EventBridge;
//! - **invoke**: Step Functions' task time for the Lambda steps minus the handlers (LocalStack's
//!   Lambda service and the process executor dispatching each invocation);
//! - **state machine**: the rest of the execution (transitions, the Choice, the `events:putEvents`
//!   and `dynamodb:updateItem` integrations, waiting between states).
//!
//! Two warm-up orders run first and are not counted. Needs LocalStack and the deployed stack
//! (`make bench` does both). Writes `target/bench/saga.json` and prints a table.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use busline_tests::saga::Scenario;
use busline_tests::{DeployedStack, function_log_lines, localstack, percentile};
use chrono::Utc;
use serde_json::{Value, json};

const ORDERS: usize = 50;
const WARM_UP: usize = 2;
const STEPS: &[&str] = &[
    "validate-order",
    "check-credit",
    "reserve-inventory",
    "take-payment",
    "create-shipment",
    "post-invoice",
];

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

/// Each order's handler time per step, from the steps' "step finished" log lines.
async fn handler_times(aws: &aws_config::SdkConfig) -> Result<HashMap<(String, String), f64>> {
    let mut times = HashMap::new();
    for step in STEPS {
        let function = format!("{}-{step}", DeployedStack::NAME);
        for line in function_log_lines(aws, &function).await? {
            let Ok(log) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if log["message"] != "step finished" {
                continue;
            }
            if let (Some(order), Some(ms)) = (log["order_id"].as_str(), log["duration_ms"].as_f64())
            {
                *times
                    .entry((order.to_owned(), (*step).to_owned()))
                    .or_default() += ms;
            }
        }
    }
    Ok(times)
}

fn row(name: &str, values: &[f64], total: f64) -> Value {
    let sum: f64 = values.iter().sum();
    println!(
        "| {name:<54} | {:>8.1} | {:>8.1} | {:>8.1} | {:>6.1} % |",
        percentile(values, 0.5),
        percentile(values, 0.99),
        sum / values.len() as f64,
        100.0 * sum / total
    );
    json!({"name": name, "p50_ms": percentile(values, 0.5), "p99_ms": percentile(values, 0.99),
           "mean_ms": sum / values.len() as f64, "share": sum / total})
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
                .with_context(|| {
                    format!("no 'step finished' line of {step} for {}", timing.order_id)
                })?;
            timing.handlers += ms;
            per_step.entry(step).or_default().push(ms);
        }
    }

    let column = |f: fn(&Timing) -> f64| timings.iter().map(f).collect::<Vec<f64>>();
    let end_to_end = column(|t| t.end_to_end);
    let total: f64 = end_to_end.iter().sum();
    println!(
        "\nThe order saga on LocalStack: {ORDERS} orders, one at a time, order.placed to the end of the execution (ms)\n"
    );
    println!(
        "| {:<54} | {:>8} | {:>8} | {:>8} | {:>8} |",
        "", "p50", "p99", "mean", "share"
    );
    println!(
        "|{:-<56}|{:->10}|{:->10}|{:->10}|{:->10}|",
        "", "", "", "", ""
    );
    let mut report = vec![row("end to end", &end_to_end, total)];
    report.push(row(
        "  start: bus, translate, enrich, starter",
        &column(|t| t.start),
        total,
    ));
    report.push(row(
        "  busline's handlers (6 steps, incl. their AWS calls)",
        &column(|t| t.handlers),
        total,
    ));
    report.push(row(
        "  Lambda invoke (LocalStack + executor)",
        &column(|t| t.lambda_tasks - t.handlers),
        total,
    ));
    report.push(row(
        "  state machine (transitions, integrations, waits)",
        &column(|t| t.execution - t.lambda_tasks),
        total,
    ));
    println!("\nEach step's handler (ms):\n");
    for step in STEPS {
        let values = &per_step[step];
        println!(
            "  {step:<18} p50 {:>6.1}   p99 {:>6.1}",
            percentile(values, 0.5),
            percentile(values, 0.99)
        );
    }
    println!(
        "\nFor reference, on AWS (published, not measured here): Step Functions Standard schedules a task in about 142 ms p50, and EventBridge delivers in about 148 ms p50."
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("saga.json"),
        serde_json::to_string_pretty(&json!({"orders": ORDERS, "rows": report}))?,
    )?;
    Ok(())
}
