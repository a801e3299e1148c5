//! Saga compensation: refund or void the payment. When nothing is captured (never, or already
//! refunded) it succeeds without change.

use busline_fulfillment::{FulfillmentError, Payments, SagaState};

/// The Lambda handler.
pub async fn handle<S: Payments>(state: SagaState, system: &S) -> Result<(), FulfillmentError> {
    let order_id = state.order.order_id;
    tracing::info!(order_id = %order_id, "refund payment");
    system.refund(&order_id).await
}
