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

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use futures_util::StreamExt;
use lru::LruCache;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::envelope::Envelope;
use crate::error::{Classify, ErrorClass};
use crate::retry::{Deadline, now_millis};

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
        Self(format!("{namespace}#{}", digest(parts)))
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

fn digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
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
}

impl<T> Selector<T> {
    /// Selects by JSON pointers.
    pub fn pointers<I: IntoIterator<Item = S>, S: Into<String>>(pointers: I) -> Self {
        Self::Pointers(pointers.into_iter().map(Into::into).collect())
    }

    /// Selects with a closure.
    pub fn function(f: impl Fn(&T) -> Option<String> + Send + Sync + 'static) -> Self {
        Self::Function(Arc::new(f))
    }
}

impl<T> std::fmt::Debug for Selector<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pointers(p) => f.debug_tuple("Pointers").field(p).finish(),
            Self::Function(_) => f.write_str("Function(..)"),
        }
    }
}

impl<T: Serialize> Selector<T> {
    /// The selected parts, or `None` when one is missing (or null).
    fn select(&self, event: &T) -> Option<Vec<String>> {
        match self {
            Self::Function(f) => f(event).map(|s| vec![s]),
            Self::Pointers(pointers) => {
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
        }
    }

    /// Every selected part, a missing one as `null`: what a repeat's payload must match.
    fn select_all(&self, event: &T) -> Vec<String> {
        match self {
            Self::Function(f) => vec![f(event).unwrap_or_else(|| "null".to_owned())],
            Self::Pointers(pointers) => {
                let json = serde_json::to_value(event).unwrap_or_default();
                pointers
                    .iter()
                    .map(|p| json.pointer(p).unwrap_or(&Value::Null).to_string())
                    .collect()
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Pointers(p) => p.join(", "),
            Self::Function(_) => "the key function".to_owned(),
        }
    }
}

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
    /// The hashed key.
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
        /// The hashed key.
        key: String,
        /// When the other invocation's claim lapses, Unix milliseconds.
        lease_until_ms: i64,
    },
    /// The request was handled before with different content under the same key. Permanent.
    #[error(
        "request {key} was handled before with a different payload; resend the same content, or use a new key for new content"
    )]
    PayloadMismatch {
        /// The hashed key.
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
        /// The hashed key.
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
    /// The response.
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

/// Makes a handler idempotent over events of type `T`, with records in store `S`.
pub struct Idempotency<S, T> {
    store: S,
    namespace: String,
    key: Selector<T>,
    payload: Option<Selector<T>>,
    ttl: Duration,
    run_without_key: bool,
    cache: Option<Mutex<LruCache<String, IdempotencyRecord>>>,
    clock: Clock,
}

impl<S: std::fmt::Debug, T> std::fmt::Debug for Idempotency<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("store", &self.store)
            .field("namespace", &self.namespace)
            .field("key", &self.key)
            .field("payload", &self.payload)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<S: IdempotencyStore, D: Serialize + 'static> Idempotency<S, Envelope<D>> {
    /// Idempotency for envelopes: keyed by `source` and `id`, and a repeat must carry the same `data`.
    pub fn for_envelopes(store: S, namespace: impl Into<String>) -> Self {
        Self::new(
            store,
            namespace,
            Selector::function(|e: &Envelope<D>| Some(format!("{}\u{1f}{}", e.source, e.id))),
        )
        .validate_payload(Selector::function(|e: &Envelope<D>| {
            serde_json::to_string(&e.data).ok()
        }))
    }
}

impl<S: IdempotencyStore, T: Serialize> Idempotency<S, T> {
    /// Idempotency keyed by `key` under `namespace` (usually the function's name), with a one-hour
    /// TTL, no payload validation and no local cache. An event without a key is refused with
    /// [`IdempotencyError::MissingKey`].
    pub fn new(store: S, namespace: impl Into<String>, key: Selector<T>) -> Self {
        Self {
            store,
            namespace: namespace.into(),
            key,
            payload: None,
            ttl: DEFAULT_TTL,
            run_without_key: false,
            cache: None,
            clock: Arc::new(now_millis),
        }
    }

    /// Keeps a hash of the selected fields and refuses a repeat whose fields differ.
    pub fn validate_payload(mut self, selector: Selector<T>) -> Self {
        self.payload = Some(selector);
        self
    }

    /// Turns payload validation off.
    pub fn without_payload_validation(mut self) -> Self {
        self.payload = None;
        self
    }

    /// How long a completed record answers duplicates.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Keeps up to `capacity` completed records in memory for the life of the warm environment.
    pub fn local_cache(mut self, capacity: usize) -> Self {
        self.cache = NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c)));
        self
    }

    /// Runs the handler without idempotency (and logs a warning) when an event has no key, instead of
    /// refusing it.
    pub fn run_without_key(mut self) -> Self {
        self.run_without_key = true;
        self
    }

    /// Uses `clock` (Unix milliseconds) instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The key `event` is recorded under, or why it has none.
    pub fn key_of<E>(&self, event: &T) -> Result<IdempotencyKey, IdempotencyError<E>> {
        let parts = self
            .key
            .select(event)
            .ok_or_else(|| IdempotencyError::MissingKey {
                selector: self.key.describe(),
            })?;
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(IdempotencyKey::new(&self.namespace, &parts))
    }

    fn payload_hash(&self, event: &T) -> Option<String> {
        let parts = self.payload.as_ref()?.select_all(event);
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        Some(digest(&parts))
    }

    fn lease_until(&self, now_ms: i64, deadline: Option<Deadline>) -> i64 {
        deadline
            .map(|d| d.epoch_millis())
            .filter(|&d| d > now_ms)
            .unwrap_or(now_ms + DEFAULT_LEASE.as_millis() as i64)
    }

    /// Runs `handler` once for `event`: the first delivery runs it and keeps its response; a
    /// duplicate gets that response back without running it. `deadline` is the invocation's
    /// ([`Deadline::of`]); the claim lapses then.
    pub async fn run<R, E, F, Fut>(
        &self,
        event: &T,
        deadline: Option<Deadline>,
        handler: F,
    ) -> Result<R, IdempotencyError<E>>
    where
        R: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        self.run_detailed(event, deadline, handler)
            .await
            .map(|handled| handled.response)
    }

    /// [`run`](Self::run), also telling whether the response was replayed from an earlier run.
    pub async fn run_detailed<R, E, F, Fut>(
        &self,
        event: &T,
        deadline: Option<Deadline>,
        handler: F,
    ) -> Result<Handled<R>, IdempotencyError<E>>
    where
        R: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let key = match self.key_of(event) {
            Ok(key) => key,
            Err(_) if self.run_without_key => {
                tracing::warn!(selector = %self.key.describe(), "the event has no idempotency key; running without idempotency");
                return handler()
                    .await
                    .map(Handled::fresh)
                    .map_err(IdempotencyError::Handler);
            }
            Err(missing) => return Err(missing),
        };
        let payload_hash = self.payload_hash(event);
        let now = (self.clock)();
        if let Some(cached) = self.cached(&key, now) {
            return replay(&key, cached, payload_hash.as_deref());
        }
        let claim =
            IdempotencyRecord::in_progress(&key, self.lease_until(now, deadline), payload_hash);
        if let Some(existing) = self.store.claim(&claim, now).await? {
            self.remember(&existing);
            return replay(&key, existing, claim.payload_hash.as_deref());
        }
        let result = handler().await;
        self.settle(&key, claim, result).await.map(Handled::fresh)
    }

    /// Claims, runs and completes every event of a batch: one `claim_all` call up front, one
    /// `complete_all` call at the end, with at most `concurrency` handlers running at once. Results
    /// line up with `events`. A key that appears twice in the batch runs once, and its later copies
    /// get the first copy's response (or [`IdempotencyError::AlreadyInProgress`] if it failed).
    pub async fn run_all<R, E, F>(
        &self,
        events: &[T],
        deadline: Option<Deadline>,
        concurrency: usize,
        handler: F,
    ) -> Vec<Result<Handled<R>, IdempotencyError<E>>>
    where
        R: Serialize + DeserializeOwned,
        F: AsyncFn(&T) -> Result<R, E>,
    {
        let now = (self.clock)();
        let lease_until = self.lease_until(now, deadline);
        let mut results: Vec<Option<Result<Handled<R>, IdempotencyError<E>>>> =
            events.iter().map(|_| None).collect();
        // The claims the store must be asked about, and the in-batch copies of their keys.
        let mut claims: Vec<(usize, IdempotencyKey)> = Vec::new();
        let mut records: Vec<IdempotencyRecord> = Vec::new();
        let mut copies: Vec<(usize, IdempotencyKey, Option<String>)> = Vec::new();
        let mut seen = HashSet::new();
        for (i, event) in events.iter().enumerate() {
            let key = match self.key_of(event) {
                Ok(key) => key,
                Err(_) if self.run_without_key => {
                    tracing::warn!(selector = %self.key.describe(), "the event has no idempotency key; running without idempotency");
                    results[i] = Some(
                        handler(event)
                            .await
                            .map(Handled::fresh)
                            .map_err(IdempotencyError::Handler),
                    );
                    continue;
                }
                Err(missing) => {
                    results[i] = Some(Err(missing));
                    continue;
                }
            };
            let payload_hash = self.payload_hash(event);
            if let Some(cached) = self.cached(&key, now) {
                results[i] = Some(replay(&key, cached, payload_hash.as_deref()));
            } else if !seen.insert(key.clone()) {
                copies.push((i, key, payload_hash));
            } else {
                records.push(IdempotencyRecord::in_progress(
                    &key,
                    lease_until,
                    payload_hash,
                ));
                claims.push((i, key));
            }
        }

        let answers = if records.is_empty() {
            Ok(Vec::new())
        } else {
            self.store.claim_all(&records, now).await
        };
        let answers = match answers {
            Ok(answers) => answers,
            Err(e) => {
                let shared = Arc::new(e);
                for i in claims
                    .iter()
                    .map(|(i, _)| *i)
                    .chain(copies.iter().map(|(i, ..)| *i))
                {
                    results[i] = Some(Err(IdempotencyError::Store(StoreError::Unavailable(
                        Box::new(SharedError(shared.clone())),
                    ))));
                }
                return results.into_iter().map(Option::unwrap).collect();
            }
        };

        // Each claimed key's final record: what blocked it, or what it completed as.
        // Only needed, and only kept, when the batch repeats a key.
        let mut finals: HashMap<IdempotencyKey, IdempotencyRecord> = HashMap::new();
        let mut acquired = Vec::new();
        for (((i, key), claim), answer) in claims.into_iter().zip(records).zip(answers) {
            match answer {
                Some(existing) => {
                    self.remember(&existing);
                    if !copies.is_empty() {
                        finals.insert(key.clone(), existing.clone());
                    }
                    results[i] = Some(replay(&key, existing, claim.payload_hash.as_deref()));
                }
                None => acquired.push((i, key, claim)),
            }
        }

        let handler = &handler;
        let outcomes: Vec<_> = futures_util::stream::iter(acquired)
            .map(|(i, key, claim)| async move {
                let outcome = handler(&events[i]).await;
                (i, key, claim, outcome)
            })
            .buffered(concurrency.max(1))
            .collect()
            .await;

        let mut completed = Vec::new();
        for (i, key, claim, outcome) in outcomes {
            match outcome {
                Ok(response) => {
                    let record = self.completed(&key, claim, &response);
                    if !copies.is_empty() {
                        finals.insert(key, record.clone());
                    }
                    completed.push(record);
                    results[i] = Some(Ok(Handled::fresh(response)));
                }
                Err(e) => {
                    self.forget(&key).await;
                    results[i] = Some(Err(IdempotencyError::Handler(e)));
                }
            }
        }
        if !completed.is_empty() {
            if let Err(e) = self.store.complete_all(&completed).await {
                tracing::error!(error = %e, records = completed.len(), "handled, but could not record the batch as completed; a redelivery after the claims lapse runs again");
            }
            for record in &completed {
                self.remember(record);
            }
        }
        for (i, key, payload_hash) in copies {
            results[i] = Some(match finals.get(&key) {
                Some(record) => replay(&key, record.clone(), payload_hash.as_deref()),
                None => Err(IdempotencyError::AlreadyInProgress {
                    key: key.0,
                    lease_until_ms: lease_until,
                }),
            });
        }
        results.into_iter().map(Option::unwrap).collect()
    }

    async fn settle<R: Serialize, E>(
        &self,
        key: &IdempotencyKey,
        claim: IdempotencyRecord,
        result: Result<R, E>,
    ) -> Result<R, IdempotencyError<E>> {
        match result {
            Ok(response) => {
                let record = self.completed(key, claim, &response);
                match self.store.complete_all(std::slice::from_ref(&record)).await {
                    // The side effect happened: failing now would only make the sender retry it.
                    Err(e) => {
                        tracing::error!(key = %key, error = %e, "handled, but could not record it as completed; a redelivery after the claim lapses runs again");
                    }
                    Ok(()) => self.remember(&record),
                }
                Ok(response)
            }
            Err(e) => {
                self.forget(key).await;
                Err(IdempotencyError::Handler(e))
            }
        }
    }

    fn completed<R: Serialize>(
        &self,
        key: &IdempotencyKey,
        claim: IdempotencyRecord,
        response: &R,
    ) -> IdempotencyRecord {
        let now = (self.clock)();
        let mut record = IdempotencyRecord {
            status: RecordStatus::Completed,
            expires_at: now.div_euclid(1000) + self.ttl.as_secs() as i64,
            lease_until_ms: None,
            response: None,
            ..claim
        };
        match serde_json::to_string(response) {
            Ok(json) => {
                let size = record.item_size() + "response".len() + json.len();
                if size > MAX_ITEM_BYTES {
                    tracing::warn!(key = %key, size, limit = MAX_ITEM_BYTES, "the response is too large to keep; duplicates will be told the request was handled, without it");
                } else {
                    record.response = Some(json);
                }
            }
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "the response does not serialise; duplicates will be told the request was handled, without it");
            }
        }
        record
    }

    async fn forget(&self, key: &IdempotencyKey) {
        if let Err(e) = self.store.delete(key.as_str()).await {
            tracing::error!(key = %key, error = %e, "the handler failed and its claim could not be deleted; a retry waits until the claim lapses");
        }
    }

    fn cached(&self, key: &IdempotencyKey, now_ms: i64) -> Option<IdempotencyRecord> {
        let mut cache = self.cache.as_ref()?.lock().unwrap();
        match cache.get(key.as_str()) {
            Some(record) if record.is_live(now_ms) => Some(record.clone()),
            Some(_) => {
                cache.pop(key.as_str());
                None
            }
            None => None,
        }
    }

    fn remember(&self, record: &IdempotencyRecord) {
        if let Some(cache) = &self.cache
            && record.status == RecordStatus::Completed
        {
            cache.lock().unwrap().put(record.pk.clone(), record.clone());
        }
    }
}

/// A store error shared by every claim of a failed batch call.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct SharedError(Arc<StoreError>);

/// What a record that blocked a claim means for the caller.
fn replay<R: DeserializeOwned, E>(
    key: &IdempotencyKey,
    existing: IdempotencyRecord,
    payload_hash: Option<&str>,
) -> Result<Handled<R>, IdempotencyError<E>> {
    if let (Some(expected), Some(stored)) = (payload_hash, existing.payload_hash.as_deref())
        && expected != stored
    {
        return Err(IdempotencyError::PayloadMismatch { key: key.0.clone() });
    }
    match (existing.status, existing.response) {
        (RecordStatus::InProgress, _) => Err(IdempotencyError::AlreadyInProgress {
            key: key.0.clone(),
            lease_until_ms: existing.lease_until_ms.unwrap_or_default(),
        }),
        (RecordStatus::Completed, None) => {
            Err(IdempotencyError::AlreadyCompleted { key: key.0.clone() })
        }
        (RecordStatus::Completed, Some(json)) => serde_json::from_str(&json)
            .map(|response| Handled {
                response,
                replayed: true,
            })
            .map_err(|e| IdempotencyError::Store(corrupt(&key.0, e))),
    }
}

#[cfg(any(test, feature = "contract-tests"))]
mod contract;
#[cfg(any(test, feature = "contract-tests"))]
pub use contract::contract;
mod dynamodb;
pub use dynamodb::DynamoDbIdempotencyStore;
mod memory;
pub use memory::{InMemoryIdempotencyStore, ManualClock};

#[cfg(test)]
mod tests;
