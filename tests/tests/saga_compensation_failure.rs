//! A compensation that still fails after its retries, on the deployed stack: take-payment fails with
//! `PaymentDeclined` before its own code runs (the executor's injected error, as a crash or a Lambda
//! service error would, so the step records nothing itself), and refund-payment (the first
//! compensation) fails 7 times, past its 6 retries. The execution must
//! publish exactly one `order.compensation-failed` event, record `COMPENSATION_FAILED` in the order
//! status, and end FAILED (what the `CompensationFailedAlarm` watches), with nothing dropped: no
//! `order.failed` pretending all was undone, and the inventory still held for a person to release.
//! Its own test binary: the fault queue is per function, and other saga tests run refund-payment.

use std::time::Duration;

use busline_tests::saga::{INITIAL_STOCK, Scenario};
use busline_tests::{localstack, queue_faults};
use serde_json::json;

#[tokio::test]
async fn a_compensation_that_outlasts_its_retries_is_escalated_never_dropped() {
    let aws = localstack().await.unwrap();
    let scenario = Scenario::new(&aws, 1_000_000, false, 0).await.unwrap();
    queue_faults(
        "busline-take-payment",
        json!([{"fault": "error", "errorType": "PaymentDeclined"}]),
    )
    .unwrap();
    let faults = vec![json!({"fault": "error", "errorType": "PaymentsUnavailable"}); 7];
    queue_faults("busline-refund-payment", json!(faults)).unwrap();
    scenario.place().await.unwrap();

    let finished = scenario.finished(Duration::from_secs(240)).await;
    queue_faults("busline-refund-payment", json!([])).unwrap();
    queue_faults("busline-take-payment", json!([])).unwrap();
    let finished = finished.unwrap();
    assert_eq!(finished.status, "FAILED", "{finished:?}");
    assert_eq!(
        finished.states,
        [
            "ValidateOrder",
            "CheckCredit",
            "NeedsApproval",
            "ReserveInventory",
            "TakePayment",
            "RefundPayment",
            "PublishCompensationFailed",
            "RecordCompensationFailed",
            "CompensationFailed"
        ]
    );
    assert_eq!(
        finished.failed_invocations,
        1 + 7,
        "the decline and 7 refund attempts"
    );

    let events = scenario.events(Duration::from_secs(3)).await.unwrap();
    let types: Vec<&str> = events
        .iter()
        .filter_map(|e| e["type"].as_str())
        .filter(|t| t.starts_with("io.busline.order."))
        .collect();
    assert_eq!(
        types,
        ["io.busline.order.compensation-failed.v1"],
        "{events:?}"
    );

    let (_, status) = scenario.status().await.unwrap();
    assert_eq!(status["status"], "COMPENSATION_FAILED", "{status}");
    // The failing step never ran, so it recorded no reason; the state machine records both
    // errors, so the person who must act learns why from the status too.
    assert!(
        status["failure_reason"].as_str().is_some_and(|r| {
            r.starts_with("PaymentDeclined:") && r.contains("PaymentsUnavailable")
        }),
        "the first failure is the reason, with the compensation's: {status}"
    );
    // What was not undone is still there for a person: the stock reserved, no payment taken.
    for (sku, quantity) in scenario.order.quantities() {
        let stock = scenario.systems.stock(&sku).await.unwrap();
        assert_eq!(stock, Some(INITIAL_STOCK - quantity), "{sku}");
    }
    assert!(
        scenario
            .systems
            .reservation(&scenario.order.order_id)
            .await
            .unwrap()
            .is_some()
    );
    let payment = scenario
        .systems
        .payment(&scenario.order.order_id)
        .await
        .unwrap();
    assert_eq!(payment.map_or(0, |p| p.net_cents()), 0);
}
