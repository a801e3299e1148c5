//! Saga step: reserve inventory. Every line at once, all or nothing (one `TransactWriteItems` with
//! conditional decrements); otherwise it fails with `OutOfStock`. A repeat for the same order answers
//! with the first reservation. For each SKU the reservation took under its reorder point, it publishes
//! an `io.busline.inventory.purchase-order.requested.v1` event, with an id derived from the order and
//! the SKU so a repeat publishes the same event.

use busline::bus::EventPublisher;
use busline::{Envelope, EventType};
use busline_fulfillment::{FulfillmentError, Inventory, Reservation, SagaState};
use serde_json::json;

/// The event type a purchase-order request is published as.
pub const PURCHASE_ORDER_REQUESTED: &str = "io.busline.inventory.purchase-order.requested.v1";

/// Namespace for purchase-order request ids derived from `(order, sku)`.
const REQUEST_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b1f_4d0e_2a7c_4c1b_9f3e_b05e_11ae_0003);

/// The Lambda handler.
pub async fn handle<I: Inventory, P: EventPublisher>(
    state: SagaState,
    inventory: &I,
    publisher: &P,
) -> Result<Reservation, FulfillmentError> {
    let order = state.order;
    let reservation = inventory.reserve(&order).await?;
    tracing::info!(order_id = %order.order_id, below_reorder_point = ?reservation.below_reorder_point, "reserved");
    if reservation.below_reorder_point.is_empty() {
        return Ok(reservation);
    }
    #[expect(
        clippy::expect_used,
        reason = "a constant, published by this crate's tests"
    )]
    let event_type = EventType::parse(PURCHASE_ORDER_REQUESTED).expect("a versioned type");
    let requests: Vec<Envelope<_>> = reservation
        .below_reorder_point
        .iter()
        .map(|sku| {
            let id = uuid::Uuid::new_v5(
                &REQUEST_ID_NAMESPACE,
                format!("{}/{sku}", order.order_id).as_bytes(),
            );
            Envelope::new(
                id.to_string(),
                "busline.saga.reserve-inventory",
                event_type.clone(),
                json!({"sku": sku, "triggered_by_order": order.order_id}),
            )
            .with_subject(sku.clone())
            .with_correlation_id(&order.order_id)
        })
        .collect();
    // The reservation stands either way: a lost request is retried with the step, under the same ids.
    publisher
        .publish(&requests)
        .await
        .map_err(|e| FulfillmentError::Unavailable {
            system: "BusUnavailable",
            source: Box::new(e),
        })?;
    Ok(reservation)
}
