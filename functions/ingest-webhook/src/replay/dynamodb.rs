//! The replay guard on DynamoDB: one conditional `PutItem` per accepted signature, in the
//! idempotency table (partition key `pk`, TTL attribute `expires_at`).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use busline::dynamodb::{Conditional, put_if};
use busline::signature::SingleUse;

use super::{ReplayError, ReplayGuard};

/// Keeps `signature#<token>` items with the delivery id and an expiry.
#[derive(Clone, Debug)]
pub struct DynamoDbReplayGuard {
    client: Client,
    table: String,
}

impl DynamoDbReplayGuard {
    /// Signatures are kept in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl ReplayGuard for DynamoDbReplayGuard {
    async fn admit(&self, signature: &SingleUse, delivery_id: &str) -> Result<(), ReplayError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(
                "pk",
                AttributeValue::S(format!("ingest-webhook#signature#{}", signature.token)),
            )
            .item("delivery_id", AttributeValue::S(delivery_id.to_owned()))
            .item(
                "expires_at",
                AttributeValue::N(signature.expires_at.to_string()),
            )
            // DynamoDB's TTL deletes lazily, but an expired signature never gets this far: its
            // timestamp is refused first.
            .condition_expression("attribute_not_exists(pk) OR delivery_id = :delivery_id")
            .expression_attribute_values(":delivery_id", AttributeValue::S(delivery_id.to_owned()));
        match put_if(put).await {
            Ok(Conditional::Written) => Ok(()),
            Ok(Conditional::ConditionFailed(_)) => Err(ReplayError::Replayed),
            Err(e) => Err(ReplayError::Unavailable(Box::new(e))),
        }
    }
}
