//! Saga compensation: cancel the shipment. When there is no live shipment it succeeds without change.

use busline_fulfillment::{FulfillmentError, SagaState, Shipping};

/// The Lambda handler.
pub async fn handle<S: Shipping>(state: SagaState, system: &S) -> Result<(), FulfillmentError> {
    let order_id = state.order.order_id;
    tracing::info!(order_id = %order_id, "cancel shipment");
    system.cancel(&order_id).await
}
