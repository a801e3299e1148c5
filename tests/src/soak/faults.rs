//! The soak's faults: the executor's fault file armed with a rate per function and the bus's
//! outage, and taken out again with what it counted.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use super::Plan;
use crate::{DeployedStack, faults_file, write_faults};

/// Functions the executor fails at the plan's rate: the edge, every consumer and every saga step.
pub(super) const FAULTED: &[&str] = &[
    "ingest-webhook",
    "audit-trail",
    "translate",
    "enrich",
    "split",
    "mdm-customer",
    "cdc-stream",
    "batch-sync",
    "deliver-webhook",
    "notify-customer",
    "validate-order",
    "check-credit",
    "reserve-inventory",
    "take-payment",
    "create-shipment",
    "post-invoice",
    "release-inventory",
    "refund-payment",
    "cancel-shipment",
];

/// Puts the plan's faults in the executor's file: a rate per function, and the bus's outage window.
pub(super) fn arm_faults(plan: &Plan, outage_from_ms: i64) -> Result<()> {
    let mut all = json!({});
    let error = json!({"fault": "error", "errorType": "Lambda.ServiceException", "errorMessage": "injected by the soak"});
    for f in FAULTED {
        let mut faults = vec![
            error.clone(),
            error.clone(),
            json!({"fault": "crash"}),
            json!({"fault": "crash"}),
        ];
        // A timeout holds an environment for the function's whole timeout: batch-sync's is five
        // minutes, which would stall the run rather than test it.
        if *f != "batch-sync" {
            faults.push(json!({"fault": "timeout"}));
        }
        all[format!("{}-{f}", DeployedStack::NAME)] =
            json!({"rate": plan.fault_rate, "faults": faults});
    }
    all["aws"] = json!([{
        "service": "events", "operation": "PutEvents",
        "code": "ThrottlingException", "status": 400,
        "message": "Rate exceeded (the soak's outage)",
        "from_ms": outage_from_ms,
        "until_ms": outage_from_ms + plan.bus_outage.as_millis() as i64
    }]);
    write_faults(&all)
}

/// Takes the faults out, returning what the executor counted: injected faults by kind, and the
/// bus's refusals. An invocation that read the file just before it was emptied writes its copy
/// back: the file is emptied until it stays empty, and the highest count seen of each is kept.
pub(super) fn disarm_faults() -> Result<(BTreeMap<String, usize>, usize)> {
    let mut injected: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = 0;
    let mut empty_reads = 0;
    while empty_reads < 3 {
        let text = std::fs::read_to_string(faults_file()).unwrap_or_default();
        let all: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({}));
        if all.as_object().is_none_or(|o| o.is_empty()) {
            empty_reads += 1;
        } else {
            empty_reads = 0;
            let mut counted: BTreeMap<String, usize> = BTreeMap::new();
            for f in FAULTED {
                let entry = &all[format!("{}-{f}", DeployedStack::NAME)]["injected"];
                for (kind, n) in entry.as_object().into_iter().flatten() {
                    *counted.entry(kind.clone()).or_default() += n.as_u64().unwrap_or(0) as usize;
                }
            }
            for (kind, n) in counted {
                let kept = injected.entry(kind).or_default();
                *kept = (*kept).max(n);
            }
            let now_refused: usize = all["aws"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r["refused"].as_u64().unwrap_or(0) as usize)
                .sum();
            refused = refused.max(now_refused);
            write_faults(&json!({}))?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((injected, refused))
}

/// Resets the fault file when dropped, so a failed soak leaves no faults behind for the next test.
pub(super) struct FaultsArmed;

impl Drop for FaultsArmed {
    fn drop(&mut self) {
        let _ = write_faults(&json!({}));
    }
}
