//! Idempotency: run a handler once per request, however often the request is delivered.
//!
//! Event buses and queues deliver at least once, and senders retry. [`Idempotency::run`] wraps a
//! handler so that a repeat of a request it has already handled gets the first response back without
//! the handler running again. It follows Powertools for AWS Lambda's idempotency utility:
//!
//! - **Key.** Chosen from the event by JSON pointers ([`Selector::pointers`]) or a closure
//!   ([`Selector::function`]); for envelopes the default is the CloudEvents `source` and `id`, which
//!   the spec makes unique. The key is stored hashed (SHA-256) under a namespace, usually the function.
//! - **Claim.** Before the handler runs, an `IN_PROGRESS` record is written with a conditional put. A
//!   concurrent duplicate is refused with [`IdempotencyError::AlreadyInProgress`], which is retryable.
//!   The claim lapses at the invocation's [`Deadline`], so a run that timed out can be retried at once.
//! - **Response.** When the handler succeeds, the record becomes `COMPLETED` with the handler's
//!   response, which a duplicate gets back until the record's TTL (default one hour) runs out. A
//!   response too large for one DynamoDB item is not kept (logged); a duplicate then gets
//!   [`IdempotencyError::AlreadyCompleted`], which is classified as a duplicate, not a failure.
//! - **Payload validation.** Optionally a hash of chosen fields is kept, and a repeat with the same
//!   key but different content is refused with [`IdempotencyError::PayloadMismatch`].
//! - **Failure.** When the handler fails, the record is deleted so a retry runs again.
//! - **Local cache.** Optionally, completed records are kept in an LRU cache per warm environment, so
//!   a duplicate reaching the same environment costs no call at all.
//!
//! Cost, with the DynamoDB store: a first delivery is two calls (claim, complete), a duplicate one
//! (the claim's conditional check returns the existing record through
//! `ReturnValuesOnConditionCheckFailure`). [`Idempotency::run_all`] claims a whole batch in one
//! `TransactWriteItems` and completes it in one `BatchWriteItem`: two calls for ten messages.
//!
//! ```
//! # use busline::idempotency::{Idempotency, InMemoryIdempotencyStore, IdempotencyError};
//! # use busline::Envelope;
//! # use serde_json::Value;
//! # async fn example(envelope: Envelope<Value>) -> Result<String, IdempotencyError<std::io::Error>> {
//! let idempotency = Idempotency::for_envelopes(InMemoryIdempotencyStore::new(), "charge-card");
//! let receipt = idempotency
//!     .run(&envelope, None, || async { Ok::<_, std::io::Error>("receipt-1".to_owned()) })
//!     .await?;
//! # Ok(receipt)
//! # }
//! ```
//!
//! What idempotency cannot do: if the function dies after the side effect but before the record is
//! completed, the claim lapses at the deadline and a redelivery runs the handler again. Side effects
//! that must never repeat should themselves be conditional on the key (a conditional write, an
//! idempotency key sent to the payment provider).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Classify, ErrorClass};

/// How long a completed record answers duplicates unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// How long a claim lasts when the caller has no deadline (local runs, tests).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// DynamoDB's item size limit. A completed record larger than this is kept without its response.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// How many claims one `TransactWriteItems` call may carry.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// How many puts one `BatchWriteItem` call may carry.
const MAX_BATCH_WRITE_ITEMS: usize = 25;

const CONDITION_LIVE_RECORD_ABSENT: &str = "attribute_not_exists(pk) OR expires_at <= :now OR (#status = :in_progress AND lease_until_ms <= :now_ms)";

/// A request's identity in the store: a namespace and the SHA-256 of the key material.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key for `parts` under `namespace`. Parts are length-prefixed before hashing, so
    /// `["ab", "c"]` and `["a", "bc"]` differ.
    pub fn new(namespace: &str, parts: &[&str]) -> Self {
        Self::of(namespace, PartsDigest::of_whole(parts))
    }

    /// The key whose parts `digest` has taken, under `namespace`.
    fn of(namespace: &str, digest: PartsDigest) -> Self {
        let mut key = String::with_capacity(namespace.len() + 1 + 2 * DIGEST_BYTES);
        key.push_str(namespace);
        key.push('#');
        digest.finish_into(&mut key);
        Self(key)
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The bytes of a SHA-256 digest.
const DIGEST_BYTES: usize = 32;

/// SHA-256 over parts, each prefixed by its length in bytes (a big-endian `u64`), written as
/// lower-case hex: the form of keys and payload hashes in the store, which must not change while
/// records written in it live. A part may be taken in pieces ([`PartsDigest::part`]) without joining
/// them first.
struct PartsDigest(Sha256);

impl PartsDigest {
    fn new() -> Self {
        Self(Sha256::new())
    }

    /// A digest that has taken each of `parts` whole.
    fn of_whole(parts: &[&str]) -> Self {
        let mut digest = Self::new();
        for part in parts {
            digest.part(&[part]);
        }
        digest
    }

    /// Takes one part, the concatenation of `pieces`.
    fn part(&mut self, pieces: &[&str]) {
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        self.0.update((len as u64).to_be_bytes());
        for piece in pieces {
            self.0.update(piece.as_bytes());
        }
    }

    /// Appends the digest to `out` as lower-case hex.
    fn finish_into(self, out: &mut String) {
        let mut hex = [0u8; 2 * DIGEST_BYTES];
        let digest = self.0.finalize();
        // Both lengths are fixed (32 bytes in, 64 out) and hex digits are ASCII: neither can fail.
        if hex::encode_to_slice(digest, &mut hex).is_ok()
            && let Ok(text) = std::str::from_utf8(&hex)
        {
            out.push_str(text);
        }
    }

    /// The digest as lower-case hex.
    fn finish(self) -> String {
        let mut out = String::with_capacity(2 * DIGEST_BYTES);
        self.finish_into(&mut out);
        out
    }
}

/// The digest of `parts`, each whole.
#[cfg(test)]
fn digest(parts: &[&str]) -> String {
    PartsDigest::of_whole(parts).finish()
}

/// A closure that picks a string out of an event.
pub type SelectFn<T> = Arc<dyn Fn(&T) -> Option<String> + Send + Sync>;

/// Picks the fields of an event that make its key, or that a repeat must match.
pub enum Selector<T> {
    /// JSON pointers (RFC 6901) into the event's JSON form, such as `/detail/order_id`. `""` is the
    /// whole event.
    Pointers(Vec<String>),
    /// A closure over the typed event; `None` means the event has no key.
    Function(SelectFn<T>),
    /// Two of the typed event's fields, borrowed, as one part: `first`, U+001F, `second` (an
    /// envelope's source and id). The same key as a [`Function`](Self::Function) that formats
    /// them so, without building the string.
    Pair(PairFn<T>),
}

/// Borrows two fields of an event (see [`Selector::Pair`]).
pub type PairFn<T> = for<'a> fn(&'a T) -> (&'a str, &'a str);

impl<T> Selector<T> {
    /// Selects by JSON pointers.
    pub fn pointers<I: IntoIterator<Item = S>, S: Into<String>>(pointers: I) -> Self {
        Self::Pointers(pointers.into_iter().map(Into::into).collect())
    }

    /// Selects with a closure.
    pub fn function(f: impl Fn(&T) -> Option<String> + Send + Sync + 'static) -> Self {
        Self::Function(Arc::new(f))
    }

    /// Selects two borrowed fields as one part (see [`Selector::Pair`]).
    pub fn pair(f: PairFn<T>) -> Self {
        Self::Pair(f)
    }
}

impl<T> std::fmt::Debug for Selector<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pointers(p) => f.debug_tuple("Pointers").field(p).finish(),
            Self::Function(_) => f.write_str("Function(..)"),
            Self::Pair(_) => f.write_str("Pair(..)"),
        }
    }
}

impl<T: Serialize> Selector<T> {
    /// Gives `digest` the selected parts; false, having given it nothing, when one is missing (or
    /// null).
    fn digest_into(&self, event: &T, digest: &mut PartsDigest) -> bool {
        match self {
            Self::Pair(f) => {
                let (first, second) = f(event);
                digest.part(&[first, PAIR_SEPARATOR, second]);
            }
            Self::Function(f) => match f(event) {
                Some(part) => digest.part(&[&part]),
                None => return false,
            },
            Self::Pointers(pointers) => match Self::select_pointers(pointers, event) {
                Some(parts) => parts.iter().for_each(|part| digest.part(&[part])),
                None => return false,
            },
        }
        true
    }

    /// Gives `digest` every selected part, a missing one as `null`: what a repeat's payload must
    /// match.
    fn digest_all_into(&self, event: &T, digest: &mut PartsDigest) {
        match self {
            Self::Pair(_) => {
                self.digest_into(event, digest);
            }
            Self::Function(f) => match f(event) {
                Some(part) => digest.part(&[&part]),
                None => digest.part(&["null"]),
            },
            Self::Pointers(pointers) => {
                let json = serde_json::to_value(event).unwrap_or_default();
                for pointer in pointers {
                    digest.part(&[&json.pointer(pointer).unwrap_or(&Value::Null).to_string()]);
                }
            }
        }
    }

    /// The parts `pointers` select from the event's JSON form, or `None` when one is missing (or
    /// null).
    fn select_pointers(pointers: &[String], event: &T) -> Option<Vec<String>> {
        let json = serde_json::to_value(event).ok()?;
        pointers
            .iter()
            .map(|p| match json.pointer(p)? {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            })
            .collect()
    }

    fn describe(&self) -> String {
        match self {
            Self::Pointers(p) => p.join(", "),
            Self::Function(_) => "the key function".to_owned(),
            Self::Pair(_) => "the key pair".to_owned(),
        }
    }
}

/// What joins a [`Selector::Pair`]'s two fields: the unit separator, as the keys already in the
/// store were written.
const PAIR_SEPARATOR: &str = "\u{1f}";

/// Where a record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordStatus {
    /// A handler is running for it.
    InProgress,
    /// The handler finished; `response` holds what it returned.
    Completed,
}

/// One request's record, as stored. Times: `expires_at` in Unix seconds (the DynamoDB TTL attribute),
/// `lease_until_ms` in Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The key as stored: `<namespace>#<SHA-256 hex of the key's parts>`.
    pub pk: String,
    /// In progress or completed.
    pub status: RecordStatus,
    /// When the record dies; DynamoDB's TTL sweeps it some time after.
    pub expires_at: i64,
    /// While in progress: when the claim lapses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until_ms: Option<i64>,
    /// Once completed: the handler's response as JSON, unless it was too large to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// The hash of the fields a repeat must match, when payload validation is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hash: Option<String>,
}

impl IdempotencyRecord {
    /// A claim on `key` until `lease_until_ms`.
    pub fn in_progress(
        key: &IdempotencyKey,
        lease_until_ms: i64,
        payload_hash: Option<String>,
    ) -> Self {
        Self {
            pk: key.0.clone(),
            status: RecordStatus::InProgress,
            expires_at: (lease_until_ms + 999).div_euclid(1000),
            lease_until_ms: Some(lease_until_ms),
            response: None,
            payload_hash,
        }
    }

    /// Whether the record still holds its key at `now_ms`. The stores' conditional writes follow the
    /// same rule.
    pub fn is_live(&self, now_ms: i64) -> bool {
        let expired = self.expires_at <= now_ms.div_euclid(1000);
        let lapsed = self.status == RecordStatus::InProgress
            && self.lease_until_ms.is_none_or(|lease| lease <= now_ms);
        !expired && !lapsed
    }

    /// The record's size as DynamoDB counts it: attribute names plus values, with a margin for
    /// numbers.
    pub fn item_size(&self) -> usize {
        let text = |name: &str, value: &str| name.len() + value.len();
        let number = |name: &str| name.len() + 21;
        text("pk", &self.pk)
            + text("status", "IN_PROGRESS")
            + number("expires_at")
            + self.lease_until_ms.map_or(0, |_| number("lease_until_ms"))
            + self.response.as_deref().map_or(0, |r| text("response", r))
            + self
                .payload_hash
                .as_deref()
                .map_or(0, |h| text("payload_hash", h))
    }
}

/// A store call that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached, or failed for now (throttling, 5xx). Retryable.
    #[error("the idempotency store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store refused the call for good (validation, access denied, no such table: see
    /// [`crate::sdk_error`]). Permanent: the same call fails the same way until someone acts.
    #[error("the idempotency store refused the call")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored record could not be read. Permanent until someone fixes the record.
    #[error("idempotency record {key} is unreadable")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What in the stored record does not parse.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable(_) => ErrorClass::Retryable,
            Self::Refused(_) | Self::Corrupt { .. } => ErrorClass::Permanent,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "IdempotencyStoreUnavailable",
            Self::Refused(_) => "IdempotencyStoreRefused",
            Self::Corrupt { .. } => "IdempotencyRecordCorrupt",
        }
    }
}

fn unavailable<E>(e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    crate::sdk_error::sort(e, StoreError::Refused, StoreError::Unavailable)
}

/// [`unavailable`] for a service error taken out of its `SdkError`.
fn service_failure<E>(e: E) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    crate::sdk_error::sort_service_error(e, StoreError::Refused, StoreError::Unavailable)
}

fn corrupt(key: &str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        source: source.into(),
    }
}

/// Where idempotency records live: the port, with [`DynamoDbIdempotencyStore`] and
/// [`InMemoryIdempotencyStore`] as adapters. Callers pass distinct keys to the batch methods.
pub trait IdempotencyStore: Send + Sync {
    /// Writes `claim` unless a live record holds its key at `now_ms`; that record is returned instead.
    fn claim(
        &self,
        claim: &IdempotencyRecord,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>, StoreError>> + Send;

    /// [`claim`](Self::claim) for many records in as few calls as the store allows; the answers line
    /// up with `claims`.
    fn claim_all(
        &self,
        claims: &[IdempotencyRecord],
        now_ms: i64,
    ) -> impl Future<Output = Result<Vec<Option<IdempotencyRecord>>, StoreError>> + Send;

    /// Stores completed records, replacing their claims.
    fn complete_all(
        &self,
        records: &[IdempotencyRecord],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes the record for `key`, so the next delivery runs again.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Why [`Idempotency::run`] did not return the handler's response.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError<E> {
    /// Another invocation is handling this request right now. Retryable.
    #[error(
        "request {key} is being handled by another invocation; retry after its claim lapses at {lease_until_ms} ms"
    )]
    AlreadyInProgress {
        /// The request's key as stored: `<namespace>#<SHA-256 hex>`.
        key: String,
        /// When the other invocation's claim lapses, Unix milliseconds.
        lease_until_ms: i64,
    },
    /// The request was handled before with different content under the same key. Permanent.
    #[error(
        "request {key} was handled before with a different payload; resend the same content, or use a new key for new content"
    )]
    PayloadMismatch {
        /// The request's key as stored: `<namespace>#<SHA-256 hex>`.
        key: String,
    },
    /// The event has none of the fields its key is made of. Permanent.
    #[error("the event has no idempotency key at {selector}")]
    MissingKey {
        /// The selector that found nothing.
        selector: String,
    },
    /// The request was handled before, but its response was too large to keep. Treat as done.
    #[error("request {key} was handled before; its response was too large to keep")]
    AlreadyCompleted {
        /// The request's key as stored: `<namespace>#<SHA-256 hex>`.
        key: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The handler failed; its record was deleted so a retry runs again.
    #[error(transparent)]
    Handler(E),
}

impl<E: Classify> Classify for IdempotencyError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            Self::AlreadyInProgress { .. } => ErrorClass::Retryable,
            Self::PayloadMismatch { .. } | Self::MissingKey { .. } => ErrorClass::Permanent,
            Self::AlreadyCompleted { .. } => ErrorClass::Duplicate,
            Self::Store(e) => e.class(),
            Self::Handler(e) => e.class(),
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::AlreadyInProgress { .. } => "IdempotencyAlreadyInProgress",
            Self::PayloadMismatch { .. } => "IdempotencyPayloadMismatch",
            Self::MissingKey { .. } => "IdempotencyKeyMissing",
            Self::AlreadyCompleted { .. } => "IdempotencyAlreadyCompleted",
            Self::Store(e) => e.error_type(),
            Self::Handler(e) => e.error_type(),
        }
    }
}

/// A handler's response, and whether it was replayed from an earlier run instead of run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled<R> {
    /// What the handler returned: just now, or, when `replayed`, decoded from the completed record.
    pub response: R,
    /// True when the request had been handled before and the handler did not run.
    pub replayed: bool,
}

impl<R> Handled<R> {
    fn fresh(response: R) -> Self {
        Self {
            response,
            replayed: false,
        }
    }
}

/// A clock in Unix milliseconds; tests swap in their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

mod runner;
pub use runner::Idempotency;
pub(crate) use runner::in_order;

#[cfg(any(test, feature = "test-util"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code, which fails by panicking"
)]
mod contract;
#[cfg(any(test, feature = "test-util"))]
pub use contract::contract;
mod dynamodb;
pub use dynamodb::DynamoDbIdempotencyStore;
#[cfg(any(test, feature = "test-util"))]
mod memory;
#[cfg(any(test, feature = "test-util"))]
pub use memory::{InMemoryIdempotencyStore, ManualClock};

#[cfg(test)]
mod tests;
