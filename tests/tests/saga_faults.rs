//! The order saga's fault-injection matrix, on the deployed stack: for every step, a permanent
//! error, a transient error that succeeds on retry, and a crash after the side effect before the
//! response; after each, the same invariant check as every saga test (`Scenario::check_consistent`).
//!
//! Faults come from the process executor's fault file, one per invocation of a named function, so
//! the cases run one after another in this single test (its own test binary: no other saga test
//! consumes the faults).

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

/// How many faults are still queued for `step`.
fn pending_faults(step: &str) -> usize {
    std::fs::read_to_string(busline_tests::faults_file())
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|all| all[format!("busline-{step}")].as_array().map(Vec::len))
        .unwrap_or(0)
}

fn clear_faults() {
    for (step, _, _) in STEPS {
        queue_faults(&format!("busline-{step}"), json!([])).unwrap();
    }
}

#[tokio::test]
async fn every_step_under_every_fault_leaves_every_system_consistent() {
    let aws = localstack().await.unwrap();
    let mut failures = Vec::new();
    for &(step, business, transient) in STEPS {
        for fault in [
            Fault::Permanent,
            Fault::Transient,
            Fault::CrashAfterSideEffect,
        ] {
            clear_faults();
            let scenario = Scenario::new(&aws, 1_000_000, false, 0).await.unwrap();
            let injected: Vec<Value> = match fault {
                // Post invoice has no business failure and retries everything 6 times: a permanent
                // error is one that outlasts them.
                Fault::Permanent if step == "post-invoice" => {
                    vec![json!({"fault": "error", "errorType": business}); 7]
                }
                Fault::Permanent => vec![json!({"fault": "error", "errorType": business})],
                Fault::Transient => vec![json!({"fault": "error", "errorType": transient})],
                Fault::CrashAfterSideEffect => vec![json!({"fault": "crash"})],
            };
            queue_faults(&format!("busline-{step}"), json!(injected)).unwrap();
            scenario.place().await.unwrap();

            let case = format!("{step} / {fault:?}");
            let outcome = async {
                let finished = scenario.finished(Duration::from_secs(180)).await?;
                anyhow::ensure!(
                    finished.status == "SUCCEEDED",
                    "execution {}",
                    finished.status
                );
                // The fault was really injected: consumed, and seen by the state machine.
                let left = pending_faults(step);
                anyhow::ensure!(left == 0, "{left} injected faults were never reached");
                let expected = injected.len();
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
            .await;
            match outcome {
                Ok(()) => println!("consistent: {case}"),
                Err(e) => failures.push(format!("{case}: {e:#}")),
            }
        }
    }
    clear_faults();
    assert!(
        failures.is_empty(),
        "inconsistent cases:\n{}",
        failures.join("\n")
    );
}
