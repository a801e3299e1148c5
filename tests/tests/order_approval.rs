//! High-value orders on the deployed stack: above check-credit's `APPROVAL_THRESHOLD_CENTS` the saga
//! waits for a person (`.waitForTaskToken`), and `POST /orders/{id}/approval` (signed with the
//! approvers' secret) approves or rejects it; without a decision the order is rejected after
//! `ApprovalTimeoutSeconds` (15 s in the LocalStack deployment, `samconfig.toml`).

use std::time::Duration;

use busline_tests::saga::Scenario;
use busline_tests::{DeployedStack, localstack, signed_headers};
use serde_json::{Value, json};

const FINISH: Duration = Duration::from_secs(90);
const SETTLE: Duration = Duration::from_secs(3);
const WAITING: &str = "AWAITING_APPROVAL";

/// The deployed check-credit function's approval threshold.
async fn threshold(aws: &aws_config::SdkConfig) -> i64 {
    let config = aws_sdk_lambda::Client::new(aws)
        .get_function_configuration()
        .function_name(format!("{}-check-credit", DeployedStack::NAME))
        .send()
        .await
        .unwrap();
    config.environment().unwrap().variables().unwrap()["APPROVAL_THRESHOLD_CENTS"]
        .parse()
        .unwrap()
}

/// A scenario whose order is just above the threshold, with the credit to pay for it.
async fn high_value(aws: &aws_config::SdkConfig) -> Scenario {
    let threshold = threshold(aws).await;
    let mut scenario = Scenario::new(aws, threshold * 10, false, 0).await.unwrap();
    let order = &mut scenario.order;
    order.lines[0].unit_price_cents = threshold / order.lines[0].quantity + 1;
    order.total_cents = order
        .lines
        .iter()
        .map(|l| l.quantity * l.unit_price_cents)
        .sum();
    assert!(order.total_cents > threshold);
    scenario
}

/// POSTs a decision on the scenario's order, signed with `secret` (Standard Webhooks); the decision
/// names the order unless it names one already.
async fn decide(scenario: &Scenario, secret: &str, mut decision: Value) -> (u16, Value) {
    if decision.get("order_id").is_none() {
        decision["order_id"] = json!(scenario.order.order_id);
    }
    let body = decision.to_string();
    let headers = signed_headers(
        secret,
        &body,
        &format!("decision-{}", uuid::Uuid::new_v4().simple()),
    );
    let path = format!("/orders/{}/approval", scenario.order.order_id);
    scenario
        .stack()
        .call(
            "ApprovalUrl",
            reqwest::Method::POST,
            &path,
            Some(&body),
            &headers,
        )
        .await
        .unwrap()
}

async fn approvers_secret(aws: &aws_config::SdkConfig, scenario: &Scenario) -> String {
    scenario
        .stack()
        .secret(aws, "ApproversSecretArn")
        .await
        .unwrap()
}

fn names(view: &Value) -> Vec<&str> {
    view["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect()
}

#[tokio::test]
async fn an_approved_order_is_fulfilled_after_the_wait() {
    let aws = localstack().await.unwrap();
    let scenario = high_value(&aws).await;
    let secret = approvers_secret(&aws, &scenario).await;
    scenario.place().await.unwrap();
    let waiting = scenario.wait_for_status(WAITING, FINISH).await.unwrap();
    assert_eq!(waiting["current_step"], "approval");
    assert!(
        waiting.get("approval_token").is_none(),
        "the token is never shown: {waiting}"
    );

    let (status, body) = decide(
        &scenario,
        &busline_tests::new_standard_webhooks_secret(),
        json!({"decision": "approve", "approver": "Eve"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("bad_signature")),
        "{body}"
    );
    // A decision signed, with the right secret, for another order is refused, and changes nothing.
    let (status, body) = decide(
        &scenario,
        &secret,
        json!({"order_id": "SO-another-order", "decision": "approve", "approver": "Eve"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("bad_signature")),
        "{body}"
    );
    let (_, still) = scenario.status().await.unwrap();
    assert_eq!(still["status"], "AWAITING_APPROVAL", "{still}");
    let (status, body) = decide(
        &scenario,
        &secret,
        json!({"decision": "approve", "approver": "Ada", "comment": "known customer"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicate"], false);

    let finished = scenario.finished(FINISH).await.unwrap();
    assert_eq!(finished.output["status"], "FULFILLED", "{finished:?}");
    assert_eq!(
        finished.states,
        [
            "ValidateOrder",
            "CheckCredit",
            "NeedsApproval",
            "RequestApproval",
            "ReserveInventory",
            "TakePayment",
            "CreateShipment",
            "PostInvoice",
            "PublishOrderFulfilled",
            "RecordOrderFulfilled",
            "Fulfilled"
        ]
    );
    let events = scenario.events(SETTLE).await.unwrap();
    scenario.check_consistent(true, &events).await.unwrap();
    let requested: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "io.busline.order.approval-requested.v1")
        .collect();
    assert_eq!(requested.len(), 1, "{events:?}");
    assert!(
        requested[0]["data"]["task_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(
        requested[0]["data"]["total_cents"],
        scenario.order.total_cents
    );

    let (_, view) = scenario.status().await.unwrap();
    let history = names(&view);
    assert_eq!(
        &history[..4],
        [
            "validate-order",
            "check-credit",
            "approval-requested",
            "approval"
        ],
        "{view}"
    );
    // Anyone with the order id can read the status: it says what happened, not who said what.
    assert!(
        view["history"][3]["description"].as_str() == Some("approved"),
        "{view}"
    );
    assert!(
        !view.to_string().contains("Ada") && !view.to_string().contains("known customer"),
        "{view}"
    );
    let (status, body) = decide(
        &scenario,
        &secret,
        json!({"decision": "approve", "approver": "Ada"}),
    )
    .await;
    assert_eq!(
        (status, body["duplicate"].as_bool()),
        (200, Some(true)),
        "a repeat is answered: {body}"
    );
    let (status, body) = decide(
        &scenario,
        &secret,
        json!({"decision": "reject", "approver": "Bob"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("not_awaiting_approval")),
        "{body}"
    );
}

#[tokio::test]
async fn a_rejected_order_fails_before_anything_is_reserved_or_charged() {
    let aws = localstack().await.unwrap();
    let scenario = high_value(&aws).await;
    let secret = approvers_secret(&aws, &scenario).await;
    scenario.place().await.unwrap();
    scenario.wait_for_status(WAITING, FINISH).await.unwrap();
    let (status, body) = decide(
        &scenario,
        &secret,
        json!({"decision": "reject", "approver": "Ada", "comment": "looks like fraud"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let finished = scenario.finished(FINISH).await.unwrap();
    assert_eq!(finished.output["status"], "FAILED", "{finished:?}");
    assert_eq!(finished.output["reason"], "OrderRejected");
    assert_eq!(
        finished.states,
        [
            "ValidateOrder",
            "CheckCredit",
            "NeedsApproval",
            "RequestApproval",
            "PublishOrderFailed",
            "RecordOrderFailed",
            "OrderFailed"
        ]
    );
    let events = scenario.events(SETTLE).await.unwrap();
    let failed = scenario.check_consistent(false, &events).await.unwrap();
    // The approver's words travel in the event, to the audit trail; the public status has none.
    assert_eq!(failed["data"]["cause"], "rejected by Ada: looks like fraud");
    let (_, view) = scenario.status().await.unwrap();
    // approve-order records the decision after it answers Step Functions, so the state machine's
    // own record of the end can land first: the first reason recorded stays, either approve-order's
    // or the state machine's, and either names the rejection.
    let reason = view["failure_reason"].as_str().unwrap_or_default();
    assert!(
        [
            "OrderRejected: the order was rejected at approval",
            "OrderRejected: see the order.failed event in the audit trail"
        ]
        .contains(&reason),
        "{view}"
    );
    assert!(
        !view.to_string().contains("Ada") && !view.to_string().contains("fraud"),
        "{view}"
    );
    assert!(names(&view).contains(&"approval:rejected"), "{view}");
}

#[tokio::test]
async fn an_order_no_one_decides_on_is_rejected_at_the_timeout() {
    let aws = localstack().await.unwrap();
    let scenario = high_value(&aws).await;
    let secret = approvers_secret(&aws, &scenario).await;
    scenario.place().await.unwrap();
    scenario.wait_for_status(WAITING, FINISH).await.unwrap();

    let finished = scenario.finished(FINISH).await.unwrap();
    assert_eq!(finished.output["status"], "FAILED", "{finished:?}");
    assert_eq!(finished.output["reason"], "ApprovalTimedOut");
    assert_eq!(
        finished.states,
        [
            "ValidateOrder",
            "CheckCredit",
            "NeedsApproval",
            "RequestApproval",
            "ApprovalTimedOut",
            "PublishOrderFailed",
            "RecordOrderFailed",
            "OrderFailed"
        ]
    );
    let events = scenario.events(SETTLE).await.unwrap();
    scenario.check_consistent(false, &events).await.unwrap();
    let (status, body) = decide(
        &scenario,
        &secret,
        json!({"decision": "approve", "approver": "Ada"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("not_awaiting_approval")),
        "too late: {body}"
    );
}
