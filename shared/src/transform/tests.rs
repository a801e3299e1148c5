use serde_json::json;

use super::*;
use crate::EventType;
use crate::batch::InMemoryDeadLetterQueue;
use crate::bus::InMemoryBus;
use crate::canonical::CanonicalError;

fn order_event() -> DeliveredEvent {
    let envelope = Envelope::new(
        "in-1",
        "busline.webhook.shop",
        EventType::parse("io.busline.shop.order.placed.v1").unwrap(),
        json!({"order_id": "SO-1"}),
    )
    .with_correlation_id("corr-1");
    delivered(&envelope)
}

fn with_detail(detail: Value) -> DeliveredEvent {
    let mut event: EventBridgeEvent<Value> =
        serde_json::from_str(&serde_json::to_string(&order_event()).unwrap()).unwrap();
    event.detail = detail;
    raw(&event)
}

fn out_type() -> EventType {
    EventType::parse("io.busline.test.out.v1").unwrap()
}

async fn split_in_two(input: Envelope<Raw>) -> Result<Vec<Envelope<Value>>, CanonicalError> {
    Ok(["a", "b"]
        .iter()
        .map(|k| input.derive(k, "busline.test", out_type(), json!({"part": k})))
        .collect())
}

#[tokio::test]
async fn what_a_transformer_makes_is_published_together_with_ids_derived_from_the_input() {
    let (bus, dlq) = (InMemoryBus::new(), InMemoryDeadLetterQueue::new());
    let outcome = transform(order_event(), split_in_two, &bus, &dlq)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Published(2));
    assert_eq!(bus.calls(), 1);
    let published = bus.published();
    assert_eq!(published[0]["data"], json!({"part": "a"}));
    assert_eq!(published[1]["correlationid"], "corr-1");
    assert_eq!(published[1]["causationid"], "in-1");
    assert_ne!(published[0]["id"], published[1]["id"]);

    // Again, as Lambda's retry would: the same ids.
    transform(order_event(), split_in_two, &bus, &dlq)
        .await
        .unwrap();
    let again = bus.published();
    assert_eq!(
        (&again[2]["id"], &again[3]["id"]),
        (&published[0]["id"], &published[1]["id"])
    );
    assert!(dlq.letters().is_empty());
}

#[tokio::test]
async fn an_event_that_cannot_be_transformed_goes_to_the_dead_letter_queue_whole_with_its_reason() {
    let (bus, dlq) = (InMemoryBus::new(), InMemoryDeadLetterQueue::new());
    let refuse = |_: Envelope<Raw>| async {
        Err::<Vec<Envelope<Value>>, _>(CanonicalError::Invalid {
            event_type: "io.busline.order.placed.v2".into(),
            problems: vec!["the order has no lines".into()],
        })
    };
    let event = order_event();
    let outcome = transform(event.clone(), refuse, &bus, &dlq).await.unwrap();
    assert_eq!(outcome, Outcome::DeadLettered("InvalidEvent".into()));
    assert_eq!(bus.calls(), 0);
    let letter = &dlq.letters()[0];
    assert_eq!(letter.error_type, "InvalidEvent");
    assert!(
        letter.reason.contains("the order has no lines"),
        "{}",
        letter.reason
    );
    assert_eq!(
        letter.source.as_deref(),
        Some("busline.webhook.shop/io.busline.shop.order.placed.v1")
    );
    let body: EventBridgeEvent<Value> = serde_json::from_str(&letter.body).unwrap();
    assert_eq!(
        body.detail.to_string(),
        event.detail.get(),
        "the event as it came"
    );

    // Not an envelope at all.
    let garbage = with_detail(json!({"hello": "world"}));
    let outcome = transform(garbage, split_in_two, &bus, &dlq).await.unwrap();
    assert_eq!(outcome, Outcome::DeadLettered("MalformedEvent".into()));
    assert_eq!(bus.calls(), 0);
}

#[tokio::test]
async fn a_dependency_down_fails_the_invocation_for_lambda_to_retry_and_parks_nothing() {
    let (bus, dlq) = (InMemoryBus::new(), InMemoryDeadLetterQueue::new());
    bus.set_unavailable(true);
    let err = transform(order_event(), split_in_two, &bus, &dlq)
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "BusUnavailable");
    assert!(dlq.letters().is_empty());

    // A permanent failure whose dead-letter queue is down is not lost either: Lambda retries it.
    dlq.set_unavailable(true);
    let garbage = with_detail(json!(null));
    let err = transform(garbage, split_in_two, &bus, &dlq)
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "DeadLetterUnavailable");
}
