//! Where the master lives: a port with a DynamoDB adapter and an in-memory twin.
//!
//! A record holds the master, its `version` (optimistic concurrency: every write is conditional on
//! the version it read), the last change published or to be published, and `published_version`,
//! so a change whose event was lost (the bus down after the write) is published by the next
//! delivery instead of never.

use std::collections::BTreeMap;
#[cfg(any(test, feature = "test-util"))]
use std::collections::HashMap;
#[cfg(any(test, feature = "test-util"))]
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
#[cfg(any(test, feature = "test-util"))]
use std::sync::{Mutex, PoisonError};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use busline::dynamodb::{Conditional, put_if};
use busline::{Classify, ErrorClass};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::merge::{FieldValue, Master};

/// A stored master.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The customer, the key.
    pub customer_id: String,
    /// Every field with its provenance.
    pub fields: BTreeMap<String, FieldValue>,
    /// Incremented by every write.
    pub version: u64,
    /// The version whose change is on the bus.
    #[serde(default)]
    pub published_version: u64,
    /// The values the last write changed (empty when it changed only provenance).
    #[serde(default)]
    pub last_change: BTreeMap<String, Value>,
}

impl Record {
    /// The master it holds.
    pub fn master(&self) -> Master {
        Master {
            customer_id: self.customer_id.clone(),
            fields: self.fields.clone(),
        }
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone wrote first: re-read and re-merge.
    #[error("customer {customer_id} changed since it was read (expected version {expected})")]
    Conflict {
        /// The customer whose record moved on: its `customer_id` key.
        customer_id: String,
        /// The version the write expected.
        expected: u64,
    },
    /// The table could not be reached.
    #[error("the customer master table is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored record does not read.
    #[error("the master record of {customer_id} is unreadable: {why}")]
    Unreadable {
        /// The customer whose item does not read or write: its `customer_id` key.
        customer_id: String,
        /// What in the golden record does not parse from, or serialize to, a DynamoDB item.
        why: String,
    },
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unreadable { .. } => ErrorClass::Permanent,
            _ => ErrorClass::Retryable,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Conflict { .. } => "MasterConflict",
            Self::Unavailable(_) => "MasterUnavailable",
            Self::Unreadable { .. } => "MasterUnreadable",
        }
    }
}

/// The customer master's store.
pub trait MasterStore: Send + Sync {
    /// The record, if any.
    fn get(
        &self,
        customer_id: &str,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Writes `record` if the stored version is still `expected` (0: no record yet).
    fn put(
        &self,
        record: &Record,
        expected: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that `version`'s change is on the bus (never moves back).
    fn mark_published(
        &self,
        customer_id: &str,
        version: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The master on DynamoDB, key `customer_id`.
#[derive(Clone, Debug)]
pub struct DynamoDbMasterStore {
    client: Client,
    table: String,
}

impl DynamoDbMasterStore {
    /// The store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

impl MasterStore for DynamoDbMasterStore {
    async fn get(&self, customer_id: &str) -> Result<Option<Record>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("customer_id", AttributeValue::S(customer_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item
            .map(|item| {
                serde_dynamo::from_item(item).map_err(|e| StoreError::Unreadable {
                    customer_id: customer_id.to_owned(),
                    why: e.to_string(),
                })
            })
            .transpose()
    }

    async fn put(&self, record: &Record, expected: u64) -> Result<(), StoreError> {
        let item = serde_dynamo::to_item(record).map_err(|e| StoreError::Unreadable {
            customer_id: record.customer_id.clone(),
            why: format!("does not serialise: {e}"),
        })?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        put = if expected == 0 {
            put.condition_expression("attribute_not_exists(customer_id)")
        } else {
            put.condition_expression("version = :expected")
                .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
        };
        match put_if(put).await {
            Ok(Conditional::Written) => Ok(()),
            Ok(Conditional::ConditionFailed(_)) => Err(StoreError::Conflict {
                customer_id: record.customer_id.clone(),
                expected,
            }),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn mark_published(&self, customer_id: &str, version: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("customer_id", AttributeValue::S(customer_id.to_owned()))
            .update_expression("SET published_version = :v")
            .condition_expression("attribute_exists(customer_id) AND published_version < :v")
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already marked, by this delivery's twin or a later one: nothing to do.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The master in memory, with the same rules, and a count of writes.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct InMemoryMasterStore {
    records: Mutex<HashMap<String, Record>>,
    unavailable: AtomicBool,
    /// How many conflicting writes to stage before the next write (a concurrent writer).
    interleave: AtomicUsize,
    /// Writes that succeeded.
    pub writes: AtomicUsize,
}

#[cfg(any(test, feature = "test-util"))]
impl InMemoryMasterStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail as an outage would.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Before each of the next `n` writes, another writer bumps the record's version, as a
    /// concurrent delivery would.
    pub fn interleave_writers(&self, n: usize) {
        self.interleave.store(n, Ordering::SeqCst);
    }

    /// A copy of every record, by customer id.
    pub fn records(&self) -> HashMap<String, Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the in-memory store is set unavailable".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(any(test, feature = "test-util"))]
impl MasterStore for InMemoryMasterStore {
    async fn get(&self, customer_id: &str) -> Result<Option<Record>, StoreError> {
        self.check()?;
        Ok(self
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(customer_id)
            .cloned())
    }

    async fn put(&self, record: &Record, expected: u64) -> Result<(), StoreError> {
        self.check()?;
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if self
            .interleave
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let other = records
                .entry(record.customer_id.clone())
                .or_insert_with(|| Record {
                    customer_id: record.customer_id.clone(),
                    ..Record::default()
                });
            other.version += 1;
            other.published_version = other.version;
        }
        let current = records.get(&record.customer_id).map_or(0, |r| r.version);
        if current != expected {
            return Err(StoreError::Conflict {
                customer_id: record.customer_id.clone(),
                expected,
            });
        }
        records.insert(record.customer_id.clone(), record.clone());
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn mark_published(&self, customer_id: &str, version: u64) -> Result<(), StoreError> {
        self.check()?;
        if let Some(record) = self
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(customer_id)
        {
            record.published_version = record.published_version.max(version);
        }
        Ok(())
    }
}
