//! The order saga's fault-injection matrix, on the deployed stack: for every step, a permanent
//! error, a transient error that succeeds on retry, and a crash after the side effect before the
//! response; after each, the same invariant check as every saga test (`Scenario::check_consistent`).
//!
//! Faults come from the process executor's fault file, one per invocation of a named function, each
//! with its case's order id as `when`, so only that order's invocations take it and the eighteen
//! cases run at once (in one test, in its own test binary: no other saga test touches the file
//! meanwhile).

use std::time::Duration;

use busline_tests::saga::Scenario;
use busline_tests::{localstack, queue_faults};
use serde_json::{Value, json};

const STEPS: &[(&str, &str, &str)] = &[
    // (function, its business errorType, a transient errorType its retry policy covers)
    ("validate-order", "InvalidOrder", "Lambda.ServiceException"),
    (
        "check-credit",
        "CreditLimitExceeded",
        "CustomerAccountsUnavailable",
    ),
    ("reserve-inventory", "OutOfStock", "InventoryUnavailable"),
    ("take-payment", "PaymentDeclined", "PaymentsUnavailable"),
    ("create-shipment", "ShipmentRejected", "ShippingUnavailable"),
    ("post-invoice", "InvoicingRejected", "InvoicingUnavailable"),
];

#[derive(Clone, Copy, Debug)]
enum Fault {
    Permanent,
    Transient,
    CrashAfterSideEffect,
}

/// How many faults are still queued for `step` that only `order_id`'s invocations take.
fn pending_faults(step: &str, order_id: &str) -> usize {
    std::fs::read_to_string(busline_tests::faults_file())
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|all| {
            all[format!("busline-{step}")]
                .as_array()
                .map(|queued| queued.iter().filter(|f| f["when"] == order_id).count())
        })
        .unwrap_or(0)
}

fn clear_faults() {
    for (step, _, _) in STEPS {
        queue_faults(&format!("busline-{step}"), json!([])).unwrap();
    }
}

/// One case of the matrix: its order, and the faults only that order's invocations of `step` take.
struct Case {
    step: &'static str,
    business: &'static str,
    fault: Fault,
    scenario: Scenario,
    injected: Vec<Value>,
}

impl Case {
    fn name(&self) -> String {
        format!("{} / {:?}", self.step, self.fault)
    }

    async fn check(&self) -> anyhow::Result<()> {
        let (step, business, fault, scenario) =
            (self.step, self.business, self.fault, &self.scenario);
        let finished = scenario.finished(Duration::from_secs(300)).await?;
        anyhow::ensure!(
            finished.status == "SUCCEEDED",
            "execution {}",
            finished.status
        );
        // The fault was really injected: consumed, and seen by the state machine.
        let left = pending_faults(step, &scenario.order.order_id);
        // Said with what the execution saw, so a failure tells a fault never taken (no failed
        // invocation) from one taken and then written back by a stale copy of the file.
        anyhow::ensure!(
            left == 0,
            "{left} injected faults were never reached; the execution saw {} failed invocations \
             and passed {:?}",
            finished.failed_invocations,
            finished.states
        );
        let expected = self.injected.len();
        anyhow::ensure!(
            finished.failed_invocations == expected,
            "{} failed invocations, {expected} injected",
            finished.failed_invocations
        );
        let fulfilled = !matches!(fault, Fault::Permanent) || step == "post-invoice";
        let events = scenario.events(Duration::from_secs(3)).await?;
        let terminal = scenario.check_consistent(fulfilled, &events).await?;
        if !fulfilled {
            anyhow::ensure!(
                terminal["data"]["reason"] == business,
                "reason {}",
                terminal["data"]["reason"]
            );
        }
        if step == "post-invoice" && matches!(fault, Fault::Permanent) {
            anyhow::ensure!(
                finished.states.contains(&"FlagForFinance".to_owned()),
                "{:?}",
                finished.states
            );
            anyhow::ensure!(
                events
                    .iter()
                    .any(|e| e["type"] == "io.busline.order.invoice-failed.v1"),
                "no invoice-failed event"
            );
            let flagged = scenario.finance_flags().await?;
            anyhow::ensure!(flagged == 1, "{flagged} finance flags");
        }
        Ok(())
    }
}

#[tokio::test]
async fn every_step_under_every_fault_leaves_every_system_consistent() {
    let aws = localstack().await.unwrap();
    clear_faults();
    // Every case's order and faults first, the fault file written once per step before any order
    // is placed: the executor pops from the same file while orders run, and only it writes then.
    let mut cases = Vec::new();
    for &(step, business, transient) in STEPS {
        for fault in [
            Fault::Permanent,
            Fault::Transient,
            Fault::CrashAfterSideEffect,
        ] {
            let scenario = Scenario::new(&aws, 1_000_000, false, 0).await.unwrap();
            let when = scenario.order.order_id.clone();
            let one = match fault {
                Fault::Permanent => json!({"fault": "error", "errorType": business, "when": when}),
                Fault::Transient => json!({"fault": "error", "errorType": transient, "when": when}),
                Fault::CrashAfterSideEffect => json!({"fault": "crash", "when": when}),
            };
            // Post invoice has no business failure and retries everything 6 times: a permanent
            // error is one that outlasts them.
            let times = if matches!(fault, Fault::Permanent) && step == "post-invoice" {
                7
            } else {
                1
            };
            cases.push(Case {
                step,
                business,
                fault,
                scenario,
                injected: vec![one; times],
            });
        }
    }
    for &(step, _, _) in STEPS {
        let queued: Vec<&Value> = cases
            .iter()
            .filter(|case| case.step == step)
            .flat_map(|case| &case.injected)
            .collect();
        queue_faults(&format!("busline-{step}"), json!(queued)).unwrap();
    }
    for case in &cases {
        case.scenario.place().await.unwrap();
    }
    let outcomes = futures_util::future::join_all(cases.iter().map(|case| async move {
        match case.check().await {
            Ok(()) => {
                println!("consistent: {}", case.name());
                None
            }
            Err(e) => Some(format!("{}: {e:#}", case.name())),
        }
    }))
    .await;
    clear_faults();
    let failures: Vec<String> = outcomes.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "inconsistent cases:\n{}",
        failures.join("\n")
    );
}
