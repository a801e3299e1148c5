//! The idempotency store on DynamoDB: one item per key, claimed with a conditional write.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    WriteRequest,
};

use super::{
    CONDITION_LIVE_RECORD_ABSENT, IdempotencyRecord, IdempotencyStore, MAX_BATCH_WRITE_ITEMS,
    MAX_TRANSACTION_ITEMS, StoreError, corrupt, service_failure, unavailable,
};
use crate::dynamodb::{Conditional, Transacted, put_if, transact_if};
use crate::retry::Backoff;

/// The DynamoDB store. The table has a string partition key `pk` and TTL on `expires_at`.
#[derive(Clone, Debug)]
pub struct DynamoDbIdempotencyStore {
    client: Client,
    table: String,
    backoff: Backoff,
}

impl DynamoDbIdempotencyStore {
    /// A store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            backoff: Backoff::default(),
        }
    }

    fn put_claim(&self, claim: &IdempotencyRecord, now_ms: i64) -> Result<Put, StoreError> {
        let item = serde_dynamo::to_item(claim).map_err(|e| corrupt(&claim.pk, e))?;
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(CONDITION_LIVE_RECORD_ABSENT)
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(condition_values(now_ms)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| StoreError::Refused(Box::new(e)))
    }
}

fn condition_values(now_ms: i64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            ":now".to_owned(),
            AttributeValue::N(now_ms.div_euclid(1000).to_string()),
        ),
        (":now_ms".to_owned(), AttributeValue::N(now_ms.to_string())),
        (
            ":in_progress".to_owned(),
            AttributeValue::S("IN_PROGRESS".to_owned()),
        ),
    ])
}

fn existing_record(
    key: &str,
    item: Option<HashMap<String, AttributeValue>>,
) -> Result<IdempotencyRecord, StoreError> {
    let item = item.ok_or_else(|| corrupt(key, "the condition failed but no record came back"))?;
    serde_dynamo::from_item(item).map_err(|e| corrupt(key, e))
}

impl IdempotencyStore for DynamoDbIdempotencyStore {
    async fn claim(
        &self,
        claim: &IdempotencyRecord,
        now_ms: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let put = self.put_claim(claim, now_ms)?;
        let put = self
            .client
            .put_item()
            .table_name(put.table_name)
            .set_item(Some(put.item))
            .set_condition_expression(put.condition_expression)
            .set_expression_attribute_names(put.expression_attribute_names)
            .set_expression_attribute_values(put.expression_attribute_values);
        match put_if(put).await {
            Ok(Conditional::Written) => Ok(None),
            Ok(Conditional::ConditionFailed(item)) => existing_record(&claim.pk, item).map(Some),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn claim_all(
        &self,
        claims: &[IdempotencyRecord],
        now_ms: i64,
    ) -> Result<Vec<Option<IdempotencyRecord>>, StoreError> {
        let mut answers = vec![None; claims.len()];
        for (chunk_index, chunk) in claims.chunks(MAX_TRANSACTION_ITEMS).enumerate() {
            // Where the chunk starts in `claims`, and so in `answers`.
            let offset = chunk_index * MAX_TRANSACTION_ITEMS;
            // A cancelled transaction writes nothing: drop the claims that met a live record and
            // send the rest again.
            let mut pending: Vec<(usize, &IdempotencyRecord)> = (offset..).zip(chunk).collect();
            while !pending.is_empty() {
                let items = pending
                    .iter()
                    .map(|&(_, claim)| {
                        self.put_claim(claim, now_ms)
                            .map(|put| TransactWriteItem::builder().put(put).build())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let result = transact_if(
                    self.client
                        .transact_write_items()
                        .set_transact_items(Some(items)),
                )
                .await;
                let reasons = match result {
                    Ok(Transacted::Written) => break,
                    Ok(Transacted::Cancelled(reasons)) => reasons,
                    Err(SdkError::ServiceError(e)) => return Err(service_failure(e.into_err())),
                    Err(e) => return Err(unavailable(e)),
                };
                let before = pending.len();
                let mut still_pending = Vec::with_capacity(pending.len());
                for (&(i, claim), reason) in pending
                    .iter()
                    .zip(reasons.iter().map(Some).chain(std::iter::repeat(None)))
                {
                    match reason.and_then(|r| r.code()) {
                        Some("ConditionalCheckFailed") => {
                            let item = reason.and_then(|r| r.item.clone());
                            if let Some(answer) = answers.get_mut(i) {
                                *answer = Some(existing_record(&claim.pk, item)?);
                            }
                        }
                        Some("None") | None => still_pending.push((i, claim)),
                        Some(code) => {
                            return Err(StoreError::Unavailable(
                                format!("the claim transaction was cancelled: {code}").into(),
                            ));
                        }
                    }
                }
                if still_pending.len() == before {
                    return Err(StoreError::Unavailable(
                        "the claim transaction was cancelled without a reason".into(),
                    ));
                }
                pending = still_pending;
            }
        }
        Ok(answers)
    }

    async fn complete_all(&self, records: &[IdempotencyRecord]) -> Result<(), StoreError> {
        for chunk in records.chunks(MAX_BATCH_WRITE_ITEMS) {
            let mut requests = chunk
                .iter()
                .map(|record| {
                    let item = serde_dynamo::to_item(record).map_err(|e| corrupt(&record.pk, e))?;
                    let put = PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map_err(|e| StoreError::Refused(Box::new(e)))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut attempt = 1;
            loop {
                let output = if let [only] = requests.as_slice() {
                    // One record: a plain put is the same single call, and cheaper to serve.
                    let item = only
                        .put_request()
                        .map(|p| p.item().clone())
                        .unwrap_or_default();
                    self.client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .send()
                        .await
                        .map_err(unavailable)?;
                    break;
                } else {
                    self.client
                        .batch_write_item()
                        .request_items(&self.table, requests)
                        .send()
                        .await
                        .map_err(unavailable)?
                };
                requests = output
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt >= self.backoff.max_attempts {
                    return Err(StoreError::Unavailable(
                        format!(
                            "DynamoDB left {} completed records unprocessed",
                            requests.len()
                        )
                        .into(),
                    ));
                }
                tokio::time::sleep(self.backoff.delay(attempt)).await;
                attempt += 1;
            }
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .send()
            .await
            .map(drop)
            .map_err(unavailable)
    }
}
