//! A ledger of deliveries already handled, so a resent message is acted on once.
//!
//! A delivery goes through two states. [`DeliveryLedger::claim`] writes an `IN_PROGRESS` record with
//! a conditional put that only succeeds when no live record exists; the claim lapses at the
//! invocation's deadline, so a run that timed out can be retried at once. [`DeliveryLedger::complete`]
//! marks it `COMPLETED` until its TTL; [`DeliveryLedger::release`] deletes a claim whose work failed,
//! so the sender's retry runs again.
//!
//! A duplicate costs one call: the conditional put asks DynamoDB to return the existing record when
//! the condition fails (`ReturnValuesOnConditionCheckFailure`), so there is no second read.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorClass};

/// The outcome of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This caller owns the delivery and must complete or release it.
    Acquired,
    /// The delivery was handled before; `event_id` is what it produced.
    Completed {
        /// The event id recorded when the delivery completed.
        event_id: String,
    },
    /// Another invocation is handling the delivery right now.
    InProgress,
}

/// A ledger call that failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store could not be reached or refused the call. Retryable.
    #[error("the delivery ledger is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored record could not be read. Permanent until someone fixes the record.
    #[error("delivery record {key} is unreadable")]
    Corrupt {
        /// The record's key.
        key: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Classify for LedgerError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable(_) => ErrorClass::Retryable,
            Self::Corrupt { .. } => ErrorClass::Permanent,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "LedgerUnavailable",
            Self::Corrupt { .. } => "LedgerRecordCorrupt",
        }
    }
}

/// Records which deliveries have been handled. Times are unix seconds.
pub trait DeliveryLedger: Send + Sync {
    /// Claims `key` until `lease_until`, unless a live record already holds it.
    fn claim(
        &self,
        key: &str,
        event_id: &str,
        now: i64,
        lease_until: i64,
    ) -> impl Future<Output = Result<Claim, LedgerError>> + Send;

    /// Marks a claimed delivery done; the record then lives until `expires_at`.
    fn complete(
        &self,
        key: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Forgets a claim whose work failed, so the next delivery runs again.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// A ledger record as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct DeliveryRecord {
    pk: String,
    status: Status,
    event_id: String,
    /// The claim's lease while `IN_PROGRESS`.
    lease_until: i64,
    /// DynamoDB's TTL attribute.
    expires_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Status {
    InProgress,
    Completed,
}

impl DeliveryRecord {
    /// A fresh claim: in progress, and dead at the end of its lease.
    fn claimed(key: &str, event_id: &str, lease_until: i64) -> Self {
        Self {
            pk: key.to_owned(),
            status: Status::InProgress,
            event_id: event_id.to_owned(),
            lease_until,
            expires_at: lease_until,
        }
    }

    /// What a claim finds when this record is in the way; `None` when the record is dead.
    fn blocks(&self, now: i64) -> Option<Claim> {
        match self.status {
            _ if self.expires_at <= now => None,
            Status::Completed => Some(Claim::Completed {
                event_id: self.event_id.clone(),
            }),
            Status::InProgress if self.lease_until > now => Some(Claim::InProgress),
            Status::InProgress => None,
        }
    }
}

/// The DynamoDB adapter. The table has a string partition key `pk` and TTL on `expires_at`.
#[derive(Clone, Debug)]
pub struct DynamoDbLedger {
    client: Client,
    table: String,
}

impl DynamoDbLedger {
    /// A ledger on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> LedgerError {
    LedgerError::Unavailable(Box::new(e))
}

impl DeliveryLedger for DynamoDbLedger {
    async fn claim(
        &self,
        key: &str,
        event_id: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Claim, LedgerError> {
        let record = DeliveryRecord::claimed(key, event_id, lease_until);
        let item = serde_dynamo::to_item(&record).map_err(|e| LedgerError::Corrupt {
            key: key.to_owned(),
            source: Box::new(e),
        })?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now OR (#status = :in_progress AND lease_until <= :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":in_progress", AttributeValue::S("IN_PROGRESS".into()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Acquired),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                let PutItemError::ConditionalCheckFailedException(failed) = e.into_err() else {
                    unreachable!()
                };
                let existing: DeliveryRecord = failed
                    .item
                    .map(serde_dynamo::from_item)
                    .transpose()
                    .map_err(|e| LedgerError::Corrupt {
                        key: key.to_owned(),
                        source: Box::new(e),
                    })?
                    .ok_or_else(|| LedgerError::Corrupt {
                        key: key.to_owned(),
                        source: "the condition failed but no record came back".into(),
                    })?;
                // The condition failed, so the record was live when DynamoDB evaluated it.
                Ok(existing.blocks(now).unwrap_or(Claim::InProgress))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn complete(&self, key: &str, expires_at: i64) -> Result<(), LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .update_expression("SET #status = :completed, expires_at = :expires_at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":completed", AttributeValue::S("COMPLETED".into()))
            .expression_attribute_values(":expires_at", AttributeValue::N(expires_at.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Nothing to complete: never claimed, or released meanwhile. Creating a record here would
            // leave a COMPLETED entry with no event id.
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn release(&self, key: &str) -> Result<(), LedgerError> {
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

/// The in-memory twin, with a call counter so tests can assert the cost of a delivery.
#[derive(Clone, Debug, Default)]
pub struct InMemoryLedger {
    state: Arc<Mutex<LedgerState>>,
}

#[derive(Debug, Default)]
struct LedgerState {
    records: HashMap<String, DeliveryRecord>,
    calls: usize,
    unavailable: bool,
}

impl InMemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many calls the ledger has served.
    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }

    /// Makes every call fail as if the store could not be reached.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state.lock().unwrap().unavailable = unavailable;
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut LedgerState) -> R) -> Result<R, LedgerError> {
        let mut state = self.state.lock().unwrap();
        state.calls += 1;
        if state.unavailable {
            return Err(LedgerError::Unavailable(
                "the in-memory ledger is set unavailable".into(),
            ));
        }
        Ok(f(&mut state))
    }
}

impl DeliveryLedger for InMemoryLedger {
    async fn claim(
        &self,
        key: &str,
        event_id: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Claim, LedgerError> {
        self.with_state(|state| {
            if let Some(blocked) = state.records.get(key).and_then(|r| r.blocks(now)) {
                return blocked;
            }
            state.records.insert(
                key.to_owned(),
                DeliveryRecord::claimed(key, event_id, lease_until),
            );
            Claim::Acquired
        })
    }

    async fn complete(&self, key: &str, expires_at: i64) -> Result<(), LedgerError> {
        self.with_state(|state| {
            if let Some(record) = state.records.get_mut(key) {
                record.status = Status::Completed;
                record.expires_at = expires_at;
            }
        })
    }

    async fn release(&self, key: &str) -> Result<(), LedgerError> {
        self.with_state(|state| {
            state.records.remove(key);
        })
    }
}

/// The contract every [`DeliveryLedger`] keeps. Run it against each adapter; `key_prefix` keeps runs
/// on a shared table apart. Test tooling: only built for tests or with the `contract-tests` feature.
#[cfg(any(test, feature = "contract-tests"))]
pub async fn contract<L: DeliveryLedger>(ledger: &L, key_prefix: &str) {
    const NOW: i64 = 1_800_000_000;
    // Claims `key` at `NOW + at` with a 30 s lease.
    let claim = async |key: &str, event_id: &str, at: i64| {
        ledger
            .claim(
                &format!("{key_prefix}{key}"),
                event_id,
                NOW + at,
                NOW + at + 30,
            )
            .await
            .unwrap()
    };
    let key = |k: &str| format!("{key_prefix}{k}");

    // A first claim wins; a second, while the first is live, is told it is in progress.
    assert_eq!(claim("a", "evt-a", 0).await, Claim::Acquired);
    assert_eq!(claim("a", "evt-a2", 1).await, Claim::InProgress);

    // Once completed, a repeat is answered with the recorded event id until the TTL.
    ledger.complete(&key("a"), NOW + 3600).await.unwrap();
    let done = Claim::Completed {
        event_id: "evt-a".into(),
    };
    assert_eq!(claim("a", "evt-a3", 60).await, done);
    assert_eq!(claim("a", "evt-a3", 3599).await, done);
    // After the TTL the record is dead even if the store has not swept it yet.
    assert_eq!(claim("a", "evt-a4", 3600).await, Claim::Acquired);

    // A claim whose lease ran out (the invocation timed out) can be taken over at once.
    assert_eq!(claim("b", "evt-b", 0).await, Claim::Acquired);
    assert_eq!(claim("b", "evt-b", 30).await, Claim::Acquired);

    // A released claim is forgotten, so the sender's retry runs again.
    assert_eq!(claim("c", "evt-c", 0).await, Claim::Acquired);
    ledger.release(&key("c")).await.unwrap();
    assert_eq!(claim("c", "evt-c", 1).await, Claim::Acquired);

    // Releasing or completing an unknown key is harmless and leaves no record behind.
    ledger.release(&key("never-claimed")).await.unwrap();
    ledger
        .complete(&key("never-claimed"), NOW + 3600)
        .await
        .unwrap();
    assert_eq!(claim("never-claimed", "evt-d", 0).await, Claim::Acquired);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_memory_twin_keeps_the_contract() {
        contract(&InMemoryLedger::new(), "").await;
    }

    #[tokio::test]
    async fn a_duplicate_costs_one_call() {
        let ledger = InMemoryLedger::new();
        ledger.claim("k", "e", 0, 30).await.unwrap();
        ledger.complete("k", 3600).await.unwrap();
        let before = ledger.calls();
        ledger.claim("k", "e", 1, 31).await.unwrap();
        assert_eq!(ledger.calls() - before, 1);
    }
}
