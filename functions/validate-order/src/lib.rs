//! Saga step: validate the order. Lines present, quantities positive, totals consistent, a known currency;
//! otherwise it fails with `InvalidOrder`, listing every problem. It touches no system.

use busline_fulfillment::{FulfillmentError, SagaState};

/// The Lambda handler.
pub async fn handle(state: SagaState) -> Result<(), FulfillmentError> {
    tracing::info!(order_id = %state.order.order_id, "validating the order");
    state.order.validate()
}
