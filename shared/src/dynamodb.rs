//! The DynamoDB idioms the adapters share: a conditional `PutItem` that, when its condition fails,
//! answers with the item that failed it, and a conditional `TransactWriteItems` that, when it is
//! cancelled, answers with one reason per item.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ReturnValuesOnConditionCheckFailure,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

/// A DynamoDB item, as the SDK gives it.
pub type Item = HashMap<String, AttributeValue>;

/// What a conditional `PutItem` did.
#[derive(Debug)]
pub enum Conditional {
    /// The condition held: the item is written.
    Written,
    /// The condition failed and nothing was written. The item in the way, if there is one (none
    /// when the condition needed an item that is absent).
    ConditionFailed(Option<Item>),
}

/// Sends `put` (which carries its condition) asking for the item that fails the condition
/// (`ReturnValuesOnConditionCheckFailure::ALL_OLD`: no second read, and no extra capacity). A
/// failed condition is an answer, not an error; any other error is given back whole, for the
/// caller to sort into its own taxonomy with [`crate::sdk_error::sort`].
pub async fn put_if(
    put: PutItemFluentBuilder,
) -> Result<Conditional, SdkError<PutItemError, HttpResponse>> {
    let result = put
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(_) => Ok(Conditional::Written),
        Err(SdkError::ServiceError(context))
            if context.err().is_conditional_check_failed_exception() =>
        {
            match context.into_err() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    Ok(Conditional::ConditionFailed(failed.item))
                }
                // The guard matched this variant; nothing else can come out.
                _ => Ok(Conditional::ConditionFailed(None)),
            }
        }
        Err(e) => Err(e),
    }
}

/// What a `TransactWriteItems` whose items carry conditions did.
#[derive(Debug)]
pub enum Transacted {
    /// Every condition held: every item is written.
    Written,
    /// The transaction was cancelled and nothing was written: one reason per item, in the order
    /// the items were given (code `"None"` for an item that did not cause it). A reason carries
    /// the item in the way when its item asked for it
    /// (`ReturnValuesOnConditionCheckFailure::ALL_OLD`). See [`is_condition_failure`].
    Cancelled(Vec<CancellationReason>),
}

/// Sends `transact` (whose items carry their conditions). A cancelled transaction is an answer,
/// with its reasons, not an error; any other error is given back whole, for the caller to sort
/// into its own taxonomy with [`crate::sdk_error::sort`].
pub async fn transact_if(
    transact: TransactWriteItemsFluentBuilder,
) -> Result<Transacted, SdkError<TransactWriteItemsError, HttpResponse>> {
    match transact.send().await {
        Ok(_) => Ok(Transacted::Written),
        Err(SdkError::ServiceError(context))
            if context.err().is_transaction_canceled_exception() =>
        {
            match context.into_err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => Ok(
                    Transacted::Cancelled(cancelled.cancellation_reasons.unwrap_or_default()),
                ),
                // The guard matched this variant; nothing else can come out.
                _ => Ok(Transacted::Cancelled(Vec::new())),
            }
        }
        Err(e) => Err(e),
    }
}

/// Whether `reason` is its item's condition failing (rather than a conflict with another
/// transaction, a throttle or a validation error).
pub fn is_condition_failure(reason: &CancellationReason) -> bool {
    reason.code() == Some("ConditionalCheckFailed")
}
