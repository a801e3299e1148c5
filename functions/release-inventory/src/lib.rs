//! Saga compensation: release inventory. Puts back what the order reserved; when nothing is reserved
//! (never, or already released) it succeeds without change.

use busline_fulfillment::{FulfillmentError, Inventory, SagaState};

/// The Lambda handler.
pub async fn handle<S: Inventory>(state: SagaState, system: &S) -> Result<(), FulfillmentError> {
    let order_id = state.order.order_id;
    tracing::info!(order_id = %order_id, "release inventory");
    system.release(&order_id).await
}
