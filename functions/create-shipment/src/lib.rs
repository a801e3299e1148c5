//! Saga step: create the shipment, its picking slip and tracking number, once per order; a shipment
//! the carrier refuses fails with `ShipmentRejected`.

use busline_fulfillment::{FulfillmentError, SagaState, Shipment, Shipping};

/// The Lambda handler.
pub async fn handle<S: Shipping>(
    state: SagaState,
    system: &S,
) -> Result<Shipment, FulfillmentError> {
    let order = state.order;
    tracing::info!(order_id = %order.order_id, "create shipment");
    system.create(&order).await
}
