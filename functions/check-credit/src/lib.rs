//! Saga step: check credit. The order total must fit in the customer's credit limit minus what they
//! already owe; otherwise it fails with `CreditLimitExceeded`. It only reads. Its answer also says
//! whether the order is above the approval threshold (`APPROVAL_THRESHOLD_CENTS`), in which case the
//! state machine waits for a person before anything is reserved or charged, for at most
//! `APPROVAL_TIMEOUT_SECONDS`.

use busline_fulfillment::{
    ApprovalPolicy, CreditDecision, CustomerAccounts, FulfillmentError, SagaState,
};

/// The Lambda handler.
pub async fn handle<A: CustomerAccounts>(
    state: SagaState,
    accounts: &A,
    policy: &ApprovalPolicy,
) -> Result<CreditDecision, FulfillmentError> {
    let order = state.order;
    let standing = accounts.credit(&order.customer.id).await?;
    tracing::info!(order_id = %order.order_id, limit_cents = standing.limit_cents, owed_cents = standing.owed_cents, total_cents = order.total_cents, "checking credit");
    policy.decide(&order, &standing)
}
