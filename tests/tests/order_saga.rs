//! The order-fulfillment saga on the deployed stack, end to end on LocalStack with every step a real
//! function process: a webhook's order fulfilled, each business failure compensated in reverse order,
//! and a duplicated `order.placed` starting one execution. Every case ends with the same invariant
//! check (`Scenario::check_consistent`).

use std::time::Duration;

use busline_tests::saga::{FORWARD_STEPS, Scenario};
use busline_tests::{localstack, signed_headers};

const FINISH: Duration = Duration::from_secs(90);
const SETTLE: Duration = Duration::from_secs(3);
const PLENTY: i64 = 1_000_000;

#[tokio::test]
async fn an_order_posted_to_the_webhook_is_fulfilled_and_low_stock_is_reordered() {
    let aws = localstack().await.unwrap();
    // Reorder point 9: the keyboards (10 - 2 = 8) fall under it, the mice (10 - 1 = 9) do not.
    let scenario = Scenario::new(&aws, PLENTY, false, 9).await.unwrap();
    let stack = scenario.stack();
    let secret = stack.secret(&aws, "ShopWebhookSecretArn").await.unwrap();
    let body = scenario.webhook_body().unwrap();
    let delivery = format!("saga-{}", scenario.order.order_id);
    let (status, answer) = stack
        .post_webhook(
            "/webhooks/shop",
            &body,
            &signed_headers(&secret, &body, &delivery),
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{answer}");

    let finished = scenario.finished(FINISH).await.unwrap();
    assert_eq!(finished.status, "SUCCEEDED", "{finished:?}");
    assert_eq!(finished.output["status"], "FULFILLED");
    assert_eq!(
        finished.states,
        [
            "ValidateOrder",
            "CheckCredit",
            "NeedsApproval",
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
    let fulfilled = scenario.check_consistent(true, &events).await.unwrap();
    let (_, status) = scenario.status().await.unwrap();
    assert_eq!(
        history(&status),
        [FORWARD_STEPS, &["order-fulfilled"][..]].concat(),
        "{status}"
    );
    let shipment = scenario
        .systems
        .shipment(&scenario.order.order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        fulfilled["data"]["tracking_number"],
        shipment.tracking_number.as_str()
    );
    assert_eq!(
        fulfilled["correlationid"], answer["eventId"],
        "the saga's events carry the webhook's transaction"
    );
    assert!(
        scenario
            .systems
            .invoice(&scenario.order.order_id)
            .await
            .unwrap()
            .is_some()
    );
    let reorders: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "io.busline.inventory.purchase-order.requested.v1")
        .filter_map(|e| e["data"]["sku"].as_str())
        .collect();
    assert_eq!(reorders, [scenario.order.lines[0].sku.as_str()]);
}

/// The names of the entries in an order's status history, oldest first.
fn history(status: &serde_json::Value) -> Vec<&str> {
    status["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["name"].as_str())
        .collect()
}

/// Places `scenario`'s order, waits for it, and checks it failed with `reason` after entering
/// exactly `states`, with everything undone.
async fn fails_with(scenario: Scenario, reason: &str, states: &[&str]) -> Scenario {
    scenario.place().await.unwrap();
    let finished = scenario.finished(FINISH).await.unwrap();
    assert_eq!(
        finished.status, "SUCCEEDED",
        "the saga ends cleanly: {finished:?}"
    );
    assert_eq!(
        (
            finished.output["status"].as_str(),
            finished.output["reason"].as_str()
        ),
        (Some("FAILED"), Some(reason))
    );
    assert_eq!(finished.states, states);
    let events = scenario.events(SETTLE).await.unwrap();
    let failed = scenario.check_consistent(false, &events).await.unwrap();
    assert_eq!(failed["data"]["reason"], reason);
    assert!(
        failed["data"]["cause"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "the event carries the reason's detail: {failed}"
    );
    scenario
}

#[tokio::test]
async fn an_invalid_order_fails_before_anything_is_done() {
    let aws = localstack().await.unwrap();
    let mut scenario = Scenario::new(&aws, PLENTY, false, 0).await.unwrap();
    scenario.order.total_cents += 1;
    fails_with(
        scenario,
        "InvalidOrder",
        &[
            "ValidateOrder",
            "PublishOrderFailed",
            "RecordOrderFailed",
            "OrderFailed",
        ],
    )
    .await;
}

#[tokio::test]
async fn an_order_over_the_credit_limit_fails_before_anything_is_reserved() {
    let aws = localstack().await.unwrap();
    let scenario = Scenario::new(&aws, 100, false, 0).await.unwrap();
    fails_with(
        scenario,
        "CreditLimitExceeded",
        &[
            "ValidateOrder",
            "CheckCredit",
            "PublishOrderFailed",
            "RecordOrderFailed",
            "OrderFailed",
        ],
    )
    .await;
}

#[tokio::test]
async fn an_order_out_of_stock_reserves_nothing() {
    let aws = localstack().await.unwrap();
    let mut scenario = Scenario::new(&aws, PLENTY, false, 0).await.unwrap();
    scenario.order.lines[1].quantity = 11;
    scenario.order.total_cents = 2 * 1999 + 11 * 600;
    fails_with(
        scenario,
        "OutOfStock",
        &[
            "ValidateOrder",
            "CheckCredit",
            "NeedsApproval",
            "ReserveInventory",
            "ReleaseInventory",
            "PublishOrderFailed",
            "RecordOrderFailed",
            "OrderFailed",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_declined_payment_releases_the_inventory() {
    let aws = localstack().await.unwrap();
    let scenario = Scenario::new(&aws, PLENTY, true, 0).await.unwrap();
    let scenario = fails_with(
        scenario,
        "PaymentDeclined",
        &[
            "ValidateOrder",
            "CheckCredit",
            "NeedsApproval",
            "ReserveInventory",
            "TakePayment",
            "RefundPayment",
            "ReleaseInventory",
            "PublishOrderFailed",
            "RecordOrderFailed",
            "OrderFailed",
        ],
    )
    .await;
    let (_, status) = scenario.status().await.unwrap();
    assert_eq!(
        history(&status),
        [
            "validate-order",
            "check-credit",
            "reserve-inventory",
            "take-payment:failed",
            "refund-payment",
            "release-inventory",
            "order-failed"
        ],
        "the status shows the failure and each compensation: {status}"
    );
    assert!(
        status["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains("declined")),
        "{status}"
    );
}

#[tokio::test]
async fn a_rejected_shipment_refunds_the_payment_and_releases_the_inventory() {
    let aws = localstack().await.unwrap();
    let mut scenario = Scenario::new(&aws, PLENTY, false, 0).await.unwrap();
    scenario.order.shipping_address.as_mut().unwrap().country = "AQ".into();
    fails_with(
        scenario,
        "ShipmentRejected",
        &[
            "ValidateOrder",
            "CheckCredit",
            "NeedsApproval",
            "ReserveInventory",
            "TakePayment",
            "CreateShipment",
            "CancelShipment",
            "RefundPayment",
            "ReleaseInventory",
            "PublishOrderFailed",
            "RecordOrderFailed",
            "OrderFailed",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_duplicated_order_placed_starts_one_execution() {
    let aws = localstack().await.unwrap();
    let scenario = Scenario::new(&aws, PLENTY, false, 0).await.unwrap();
    scenario.place().await.unwrap();
    scenario.place().await.unwrap();
    let finished = scenario.finished(FINISH).await.unwrap();
    assert_eq!(finished.status, "SUCCEEDED");
    scenario.place().await.unwrap();
    let events = scenario.events(SETTLE).await.unwrap();
    assert_eq!(scenario.executions().await.unwrap(), 1);
    scenario.check_consistent(true, &events).await.unwrap();
}
