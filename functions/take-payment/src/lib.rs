//! Saga step: take payment. Authorizes and captures the order total, once per order; a declined card
//! fails with `PaymentDeclined`.

use busline_fulfillment::{FulfillmentError, Payment, Payments, SagaState};

/// The Lambda handler.
pub async fn handle<S: Payments>(
    state: SagaState,
    system: &S,
) -> Result<Payment, FulfillmentError> {
    let order = state.order;
    tracing::info!(order_id = %order.order_id, "take payment");
    system.capture(&order).await
}
