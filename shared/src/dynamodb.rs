//! The DynamoDB idiom the adapters share: a conditional `PutItem` that, when its condition fails,
//! answers with the item that failed it.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
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
