//! The order saga's starter on the deployed stack: an `order.enriched` event it cannot start from
//! is held in the unstarted-orders queue with busline's reason, never lost.

use busline_tests::{DeployedStack, PATIENCE, find_letter, localstack};
use serde_json::json;

/// The starter reads the event's id, correlation id, trace context, order (with its id) and
/// customer. On AWS a missing one fails the execution with `States.Runtime`, which no `Catch`
/// takes: EventBridge had started the Express execution, so the event counted as delivered and the
/// order was gone. LocalStack catches it and so hid the loss (the soak's `States.Runtime` letters).
/// Now the starter checks first and holds such an event with a reason of its own.
#[tokio::test]
async fn an_enriched_order_without_its_correlation_id_is_held_with_the_reason() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let tag = format!("starter-{}", uuid::Uuid::new_v4().simple());
    // An envelope as enrich writes it, but for its correlation id.
    let detail = json!({
        "specversion": "1.0",
        "id": tag,
        "source": "busline.test",
        "type": "io.busline.order.enriched.v1",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "data": {
            "order": {"order_id": format!("ORD-{tag}")},
            "customer": {"customer_id": "C-1"}
        }
    });
    let put = aws_sdk_eventbridge::Client::new(&aws)
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .event_bus_name(stack.output("EventBusName").unwrap())
                .source("busline.test")
                .detail_type("io.busline.order.enriched.v1")
                .detail(detail.to_string())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(put.failed_entry_count(), 0, "{put:?}");

    let letter = find_letter(
        &aws,
        stack.output("UnstartedOrdersQueueUrl").unwrap(),
        |body| body.contains(&tag),
        PATIENCE,
    )
    .await
    .unwrap();
    assert_eq!(
        letter.attribute("busline.error_type"),
        "IncompleteOrderEvent",
        "{:?}",
        letter.attributes
    );
    assert!(
        letter
            .attribute("busline.reason")
            .contains("detail.correlationid"),
        "{:?}",
        letter.attributes
    );
    assert_eq!(
        letter.attribute("busline.source"),
        "order-fulfillment-starter"
    );
}
