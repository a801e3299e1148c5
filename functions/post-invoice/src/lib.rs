//! Saga step: post the invoice, once per order. It has no business failure: the state machine retries
//! it on a long schedule and, if it still fails, flags the order for finance.

use busline_fulfillment::{FulfillmentError, Invoice, Invoicing, SagaState};

/// The Lambda handler.
pub async fn handle<S: Invoicing>(
    state: SagaState,
    system: &S,
) -> Result<Invoice, FulfillmentError> {
    let order = state.order;
    tracing::info!(order_id = %order.order_id, "post invoice");
    system.post(&order).await
}
