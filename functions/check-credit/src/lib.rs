//! Saga step: check credit. The order total must fit in the customer's credit limit minus what they
//! already owe; otherwise it fails with `CreditLimitExceeded`. It only reads.

use busline::fulfillment::{CustomerAccounts, FulfillmentError, SagaState};

/// The Lambda handler.
pub async fn handle<A: CustomerAccounts>(
    state: SagaState,
    accounts: &A,
) -> Result<(), FulfillmentError> {
    let order = state.order;
    let standing = accounts.credit(&order.customer.id).await?;
    tracing::info!(order_id = %order.order_id, limit_cents = standing.limit_cents, owed_cents = standing.owed_cents, total_cents = order.total_cents, "checking credit");
    standing.check(&order.customer.id, order.total_cents)
}
