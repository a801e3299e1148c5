//! Checkpoints: where a connector stopped, so the next run resumes there.
//!
//! A checkpoint is a named cursor (a page token, a change-stream position, an `updated_since`
//! watermark) with a version. [`CheckpointStore::advance`] writes a new cursor only if the stored
//! version is still the one the caller read, so two runs cannot both advance the same checkpoint:
//! the stale writer gets [`CheckpointError::Conflict`] with the checkpoint as it now stands, and must
//! not commit the work it did from the old cursor.
//!
//! ```
//! # use busline::checkpoint::{CheckpointStore, InMemoryCheckpointStore};
//! # async fn example() -> Result<(), busline::checkpoint::CheckpointError> {
//! let store = InMemoryCheckpointStore::new();
//! let current = store.get("crm-customers").await?; // None on the first run
//! let version = current.as_ref().map_or(0, |c| c.version);
//! // ... sync everything changed since current.cursor ...
//! store.advance("crm-customers", version, "2026-11-25T00:00:00Z").await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
#[cfg(any(test, feature = "test-util"))]
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use serde::{Deserialize, Serialize};

use crate::dynamodb::{Conditional, put_if};
use crate::error::{Classify, ErrorClass};
use crate::retry::now_millis;

/// A connector's position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The checkpoint's name, such as the connector and the source it reads.
    #[serde(rename = "pk")]
    pub name: String,
    /// Where the next run starts.
    pub cursor: String,
    /// Starts at 1 and goes up by one on each advance.
    pub version: u64,
    /// When it was last advanced, Unix milliseconds.
    pub updated_at_ms: i64,
}

impl Checkpoint {
    /// The checkpoint that follows version `expected` of `name`, at `cursor`, stamped now.
    fn after(name: &str, expected: u64, cursor: &str) -> Self {
        Self {
            name: name.to_owned(),
            cursor: cursor.to_owned(),
            version: expected + 1,
            updated_at_ms: now_millis(),
        }
    }
}

/// A checkpoint call that failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Another run advanced the checkpoint since this one read it. The caller's work from the old
    /// cursor is stale: stop, and let the next run start from `current`.
    #[error(
        "checkpoint {name} was advanced by another run (expected version {expected}, found {found})",
        found = current.as_ref().map_or(0, |c| c.version)
    )]
    Conflict {
        /// The checkpoint's name, as passed to [`CheckpointStore::advance`].
        name: String,
        /// The version the caller expected.
        expected: u64,
        /// The checkpoint as it now stands (`None` if it does not exist).
        current: Option<Checkpoint>,
    },
    /// The store could not be reached, or failed for now (throttling, 5xx). Retryable.
    #[error("the checkpoint store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store refused the call for good (validation, access denied, no such table: see
    /// [`crate::sdk_error`]). Permanent.
    #[error("the checkpoint store refused the call")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored checkpoint could not be read. Permanent until someone fixes it.
    #[error("checkpoint {name} is unreadable")]
    Corrupt {
        /// The checkpoint's name: the `pk` of the stored item that does not parse.
        name: String,
        /// What in the stored item does not parse.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Classify for CheckpointError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Conflict { .. } => ErrorClass::Duplicate,
            Self::Unavailable(_) => ErrorClass::Retryable,
            Self::Refused(_) | Self::Corrupt { .. } => ErrorClass::Permanent,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Conflict { .. } => "CheckpointConflict",
            Self::Unavailable(_) => "CheckpointStoreUnavailable",
            Self::Refused(_) => "CheckpointStoreRefused",
            Self::Corrupt { .. } => "CheckpointCorrupt",
        }
    }
}

/// Where checkpoints live: the port, with [`DynamoDbCheckpointStore`] and
/// [`InMemoryCheckpointStore`] as adapters.
pub trait CheckpointStore: Send + Sync {
    /// The checkpoint `name`, or `None` before its first advance. Strongly consistent.
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, CheckpointError>> + Send;

    /// Moves `name` to `cursor` if its version is still `expected` (0: it must not exist yet), and
    /// returns the new checkpoint, at version `expected + 1`.
    fn advance(
        &self,
        name: &str,
        expected: u64,
        cursor: &str,
    ) -> impl Future<Output = Result<Checkpoint, CheckpointError>> + Send;
}

/// The DynamoDB store. The table has a string partition key `pk`.
#[derive(Clone, Debug)]
pub struct DynamoDbCheckpointStore {
    client: Client,
    table: String,
}

impl DynamoDbCheckpointStore {
    /// A store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn unavailable<E>(e: SdkError<E, HttpResponse>) -> CheckpointError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    crate::sdk_error::sort(e, CheckpointError::Refused, CheckpointError::Unavailable)
}

fn read(name: &str, item: HashMap<String, AttributeValue>) -> Result<Checkpoint, CheckpointError> {
    serde_dynamo::from_item(item).map_err(|e| CheckpointError::Corrupt {
        name: name.to_owned(),
        source: Box::new(e),
    })
}

impl CheckpointStore for DynamoDbCheckpointStore {
    async fn get(&self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(name.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.map(|item| read(name, item)).transpose()
    }

    async fn advance(
        &self,
        name: &str,
        expected: u64,
        cursor: &str,
    ) -> Result<Checkpoint, CheckpointError> {
        let next = Checkpoint::after(name, expected, cursor);
        let item = serde_dynamo::to_item(&next).map_err(|e| CheckpointError::Corrupt {
            name: name.to_owned(),
            source: Box::new(e),
        })?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = if expected == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :expected")
                .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
        };
        match put_if(put).await {
            Ok(Conditional::Written) => Ok(next),
            Ok(Conditional::ConditionFailed(item)) => Err(CheckpointError::Conflict {
                name: name.to_owned(),
                expected,
                current: item.map(|item| read(name, item)).transpose()?,
            }),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The in-memory store.
#[cfg(any(test, feature = "test-util"))]
#[derive(Clone, Debug, Default)]
pub struct InMemoryCheckpointStore {
    checkpoints: Arc<Mutex<HashMap<String, Checkpoint>>>,
}

#[cfg(any(test, feature = "test-util"))]
impl InMemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg(any(test, feature = "test-util"))]
impl CheckpointStore for InMemoryCheckpointStore {
    async fn get(&self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned())
    }

    async fn advance(
        &self,
        name: &str,
        expected: u64,
        cursor: &str,
    ) -> Result<Checkpoint, CheckpointError> {
        let mut checkpoints = self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = checkpoints.get(name);
        if current.map_or(0, |c| c.version) != expected {
            return Err(CheckpointError::Conflict {
                name: name.to_owned(),
                expected,
                current: current.cloned(),
            });
        }
        let next = Checkpoint::after(name, expected, cursor);
        checkpoints.insert(name.to_owned(), next.clone());
        Ok(next)
    }
}

/// The contract every [`CheckpointStore`] keeps; `prefix` keeps runs on a shared table apart. Test
/// tooling: only built for tests or with the `test-util` feature.
#[cfg(any(test, feature = "test-util"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code, which fails by panicking"
)]
pub async fn contract<S: CheckpointStore>(store: &S, prefix: &str) {
    let name = format!("{prefix}crm-customers");

    // Before the first advance there is nothing.
    assert_eq!(store.get(&name).await.unwrap(), None);

    // The first advance creates version 1, and a read sees it.
    let first = store.advance(&name, 0, "page-1").await.unwrap();
    assert_eq!((first.cursor.as_str(), first.version), ("page-1", 1));
    assert_eq!(store.get(&name).await.unwrap(), Some(first.clone()));

    // A second "first" run is stale: conflict, with the checkpoint as it stands.
    let stale = store.advance(&name, 0, "page-1b").await.unwrap_err();
    assert!(
        matches!(&stale, CheckpointError::Conflict { expected: 0, current: Some(c), .. } if *c == first),
        "{stale:?}"
    );
    assert_eq!(stale.class(), ErrorClass::Duplicate);

    // Advancing from the version read moves it on.
    let second = store.advance(&name, 1, "page-2").await.unwrap();
    assert_eq!((second.cursor.as_str(), second.version), ("page-2", 2));

    // Two runs that both read version 2: exactly one advances.
    let (a, b) = tokio::join!(
        store.advance(&name, 2, "page-3a"),
        store.advance(&name, 2, "page-3b")
    );
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one advance wins: {a:?} {b:?}"
    );
    let winner = a.or(b).unwrap();
    assert_eq!(store.get(&name).await.unwrap(), Some(winner.clone()));
    assert_eq!(winner.version, 3);

    // A writer with a version from the future is also refused.
    assert!(matches!(
        store.advance(&name, 7, "page-x").await,
        Err(CheckpointError::Conflict { expected: 7, .. })
    ));

    // A checkpoint that was never written cannot be advanced from a version.
    assert!(matches!(
        store.advance(&format!("{prefix}never"), 1, "page-1").await,
        Err(CheckpointError::Conflict { current: None, .. })
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_memory_store_keeps_the_contract() {
        contract(&InMemoryCheckpointStore::new(), "").await;
    }
}
