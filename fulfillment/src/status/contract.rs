//! The rules every [`OrderTracker`] keeps, run against the twin here and against DynamoDB on
//! LocalStack by the integration tests.

use busline::error::Classify;
use chrono::Utc;

use super::{OrderTracker, Status, Step, Transition, public_reason, timestamp};
use crate::FulfillmentError;

/// The contract every [`OrderTracker`] keeps; `order_prefix` keeps runs on a shared table apart.
/// Test tooling: only built for tests or with the `test-util` feature.
pub async fn contract<T: OrderTracker>(tracker: &T, order_prefix: &str) {
    use chrono::TimeDelta;

    let order = format!("{order_prefix}contract-1");
    let t0 = Utc::now();
    assert!(
        tracker.get(&order).await.unwrap().is_none(),
        "nothing recorded yet"
    );

    tracker
        .record(&Transition::done(Step::ValidateOrder, &order).at(t0))
        .await
        .unwrap();
    let seen = tracker.get(&order).await.unwrap().expect("recorded");
    assert_eq!(seen.status, Status::InProgress);
    assert_eq!(seen.current_step, "validate-order");
    assert_eq!(seen.history.len(), 1);
    assert_eq!(seen.history[0].name, "validate-order");
    assert_eq!(seen.history[0].description, "order validated");

    // Waiting for approval keeps the token; the next transition removes it.
    let waiting = Transition::new(
        &order,
        "approval",
        "approval-requested",
        "waiting for approval",
        Status::AwaitingApproval,
    )
    .with_approval_token("token-1")
    .at(t0 + TimeDelta::milliseconds(10));
    tracker.record(&waiting).await.unwrap();
    let seen = tracker.get(&order).await.unwrap().unwrap();
    assert_eq!(seen.status, Status::AwaitingApproval);
    assert_eq!(seen.approval_token.as_deref(), Some("token-1"));
    tracker
        .record(&Transition::done(Step::Approval, &order).at(t0 + TimeDelta::milliseconds(20)))
        .await
        .unwrap();
    assert_eq!(
        tracker.get(&order).await.unwrap().unwrap().approval_token,
        None
    );

    // A repeat keeps the first entry and its time; history comes back oldest first.
    tracker
        .record(
            &Transition::done(Step::CreateShipment, &order)
                .with_tracking_number(Some("TRK-1"))
                .at(t0 + TimeDelta::milliseconds(40)),
        )
        .await
        .unwrap();
    tracker
        .record(
            &Transition::done(Step::CreateShipment, &order).at(t0 + TimeDelta::milliseconds(90)),
        )
        .await
        .unwrap();
    tracker
        .record(&Transition::done(Step::TakePayment, &order).at(t0 + TimeDelta::milliseconds(30)))
        .await
        .unwrap();
    let seen = tracker.get(&order).await.unwrap().unwrap();
    let names: Vec<_> = seen.history.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "validate-order",
            "approval-requested",
            "approval",
            "take-payment",
            "create-shipment"
        ]
    );
    assert_eq!(
        seen.history[4].at,
        timestamp(t0 + TimeDelta::milliseconds(40)),
        "the first time is kept"
    );
    assert_eq!(
        seen.tracking_number.as_deref(),
        Some("TRK-1"),
        "a later transition without one keeps it"
    );

    // A business failure records its reason, and the first reason stays.
    let declined = FulfillmentError::PaymentDeclined {
        order_id: order.clone(),
        reason: "card refused".to_owned(),
    };
    tracker
        .record(&Transition::failed(Step::TakePayment, &order, &declined))
        .await
        .unwrap();
    tracker
        .record(
            &Transition::new(
                &order,
                "order-failed",
                "order-failed",
                "order failed",
                Status::Failed,
            )
            .at(Utc::now() + TimeDelta::seconds(1)),
        )
        .await
        .unwrap();
    let seen = tracker.get(&order).await.unwrap().unwrap();
    assert_eq!(seen.status, Status::Failed);
    assert_eq!(
        seen.failure_reason.as_deref(),
        Some(public_reason(declined.error_type()).as_str())
    );
    assert!(seen.has("take-payment:failed"));
    assert_eq!(seen.history.last().unwrap().name, "order-failed");
    let shown = serde_json::to_value(&seen).unwrap();
    assert_eq!(shown["status"], "FAILED");
    assert!(
        shown.get("approval_token").is_none(),
        "the token is never shown"
    );

    // A transition that arrives after a later one (approve-order answers Step Functions, then
    // records; the state machine can record the end first) adds its history entry and what it
    // knows, but moves neither the status nor the current step back.
    let late = format!("{order_prefix}contract-late");
    let end = Utc::now();
    tracker
        .record(
            &Transition::new(
                &late,
                "order-failed",
                "order-failed",
                "order failed",
                Status::Failed,
            )
            .at(end),
        )
        .await
        .unwrap();
    let reason = public_reason("OrderRejected");
    tracker
        .record(&Transition {
            failure_reason: Some(reason.clone()),
            ..Transition::new(
                &late,
                "approval",
                "approval:rejected",
                "rejected",
                Status::Failing,
            )
            .at(end - TimeDelta::milliseconds(20))
        })
        .await
        .unwrap();
    let seen = tracker.get(&late).await.unwrap().unwrap();
    assert_eq!(
        (seen.status, seen.current_step.as_str()),
        (Status::Failed, "order-failed"),
        "the end stands"
    );
    assert_eq!(seen.updated_at, timestamp(end));
    let names: Vec<_> = seen.history.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["approval:rejected", "order-failed"]);
    assert_eq!(seen.failure_reason.as_deref(), Some(reason.as_str()));
}
