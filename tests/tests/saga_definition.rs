//! The order saga's definition, read as data (`infra/statemachines/order-fulfillment.asl.json`):
//! once the goods have shipped, nothing may fail the execution or undo the order. Every path out
//! of the states after `CreateShipment` (the invoice, the finance flag, the outcome events and
//! their records), including every `Catch`, must end at `Fulfilled`, the execution's successful
//! end, never at a `Fail` state or a compensation, and every task on them catches what its retries
//! leave. LocalStack cannot make an EventBridge or SQS
//! integration fail on demand, so this is where `PublishOrderFulfilled` exhausting its retries is
//! proved not to fail a shipped order: before, its retries ran out into the execution's failure.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

const DEFINITION: &str = include_str!("../../infra/statemachines/order-fulfillment.asl.json");

/// Every state reachable from `from` through `Next`, `Default`, `Choices` and `Catch`.
fn reachable(states: &Value, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let state = &states[&name];
        assert!(state.is_object(), "state {name} is named but not defined");
        let mut next: Vec<&Value> = vec![&state["Next"], &state["Default"]];
        for list in ["Choices", "Catch"] {
            next.extend(
                state[list]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| &c["Next"]),
            );
        }
        todo.extend(
            next.into_iter()
                .filter_map(Value::as_str)
                .map(str::to_owned),
        );
    }
    seen
}

#[test]
fn after_the_goods_ship_every_path_ends_in_a_fulfilled_order() {
    let definition: Value = serde_json::from_str(DEFINITION).unwrap();
    let states = &definition["States"];
    let after_shipping = [
        "PostInvoice",
        "FlagForFinance",
        "PublishInvoiceFailed",
        "PublishOrderFulfilled",
        "RecordOrderFulfilled",
    ];
    let compensations: HashSet<&str> =
        ["CancelShipment", "RefundPayment", "ReleaseInventory"].into();
    for from in after_shipping {
        let paths = reachable(states, from);
        for name in &paths {
            let state = &states[name];
            assert_ne!(
                state["Type"], "Fail",
                "{from} can reach {name}, which fails the execution"
            );
            assert!(
                !compensations.contains(name.as_str()),
                "{from} can reach the compensation {name}"
            );
            // A task whose retries run out with no Catch fails the execution. Only the holding
            // states, the last resort, may do that.
            let catches_all = state["Catch"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["ErrorEquals"][0] == "States.ALL");
            if state["Type"] == "Task" && !name.starts_with("Hold") {
                assert!(
                    catches_all,
                    "{name}, after the goods shipped, can fail the execution"
                );
            }
        }
        assert!(
            paths.contains("Fulfilled"),
            "{from} never reaches Fulfilled: {paths:?}"
        );
        let end = &states["Fulfilled"];
        assert!(
            end["End"] == true && end["Parameters"]["status"] == "FULFILLED",
            "{end}"
        );
    }
    for publish in [
        "PublishOrderFulfilled",
        "FlagForFinance",
        "PublishInvoiceFailed",
    ] {
        let catch = &states[publish]["Catch"][0];
        assert_eq!(
            catch["ErrorEquals"][0], "States.ALL",
            "{publish} catches everything"
        );
        let hold = &states[catch["Next"].as_str().unwrap()];
        assert_eq!(hold["Resource"], "arn:aws:states:::sqs:sendMessage");
        assert_eq!(
            hold["Parameters"]["QueueUrl"],
            "${UnpublishedOutcomesQueueUrl}"
        );
    }
}
