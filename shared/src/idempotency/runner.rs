//! [`Idempotency`]: runs a handler at most once per key, over one event or a whole batch, with its
//! records in any [`IdempotencyStore`](super::IdempotencyStore).

use crate::envelope::Envelope;
use crate::retry::Deadline;
use crate::retry::now_millis;
use futures_util::StreamExt;
use lru::LruCache;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::collections::HashSet;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::{
    Clock, DEFAULT_LEASE, DEFAULT_TTL, Handled, IdempotencyError, IdempotencyKey,
    IdempotencyRecord, IdempotencyStore, MAX_ITEM_BYTES, PartsDigest, RecordStatus, Selector,
    StoreError, corrupt,
};

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
            Selector::pair(|e: &Envelope<D>| (&e.source, &e.id)),
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

    /// The store the records are kept in (tests reach the in-memory twin through it).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The key `event` is recorded under, or why it has none.
    pub fn key_of<E>(&self, event: &T) -> Result<IdempotencyKey, IdempotencyError<E>> {
        let mut digest = PartsDigest::new();
        if !self.key.digest_into(event, &mut digest) {
            return Err(IdempotencyError::MissingKey {
                selector: self.key.describe(),
            });
        }
        Ok(IdempotencyKey::of(&self.namespace, digest))
    }

    pub(super) fn payload_hash(&self, event: &T) -> Option<String> {
        let mut digest = PartsDigest::new();
        self.payload.as_ref()?.digest_all_into(event, &mut digest);
        Some(digest.finish())
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
        // Each event's result beside its place in `events`, put back in order at the end.
        let mut results: Vec<(usize, RunResult<R, E>)> = Vec::with_capacity(events.len());
        // The claims the store must be asked about, and the in-batch copies of their keys.
        let mut claims: Vec<(usize, &T, IdempotencyKey)> = Vec::new();
        let mut records: Vec<IdempotencyRecord> = Vec::new();
        let mut copies: Vec<(usize, IdempotencyKey, Option<String>)> = Vec::new();
        let mut seen = HashSet::new();
        for (i, event) in events.iter().enumerate() {
            let key = match self.key_of(event) {
                Ok(key) => key,
                Err(_) if self.run_without_key => {
                    tracing::warn!(selector = %self.key.describe(), "the event has no idempotency key; running without idempotency");
                    results.push((
                        i,
                        handler(event)
                            .await
                            .map(Handled::fresh)
                            .map_err(IdempotencyError::Handler),
                    ));
                    continue;
                }
                Err(missing) => {
                    results.push((i, Err(missing)));
                    continue;
                }
            };
            let payload_hash = self.payload_hash(event);
            if let Some(cached) = self.cached(&key, now) {
                results.push((i, replay(&key, cached, payload_hash.as_deref())));
            } else if !seen.insert(key.clone()) {
                copies.push((i, key, payload_hash));
            } else {
                records.push(IdempotencyRecord::in_progress(
                    &key,
                    lease_until,
                    payload_hash,
                ));
                claims.push((i, event, key));
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
                    .map(|(i, ..)| *i)
                    .chain(copies.iter().map(|(i, ..)| *i))
                {
                    results.push((
                        i,
                        Err(IdempotencyError::Store(StoreError::Unavailable(Box::new(
                            SharedError(shared.clone()),
                        )))),
                    ));
                }
                return in_order(results);
            }
        };

        // Each claimed key's final record: what blocked it, or what it completed as.
        // Only needed, and only kept, when the batch repeats a key.
        let mut finals: HashMap<IdempotencyKey, IdempotencyRecord> = HashMap::new();
        let mut acquired = Vec::new();
        for (((i, event, key), claim), answer) in claims.into_iter().zip(records).zip(answers) {
            match answer {
                Some(existing) => {
                    self.remember(&existing);
                    if !copies.is_empty() {
                        finals.insert(key.clone(), existing.clone());
                    }
                    results.push((i, replay(&key, existing, claim.payload_hash.as_deref())));
                }
                None => acquired.push((i, event, key, claim)),
            }
        }

        let handler = &handler;
        let outcomes: Vec<_> = futures_util::stream::iter(acquired)
            .map(|(i, event, key, claim)| async move {
                let outcome = handler(event).await;
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
                    results.push((i, Ok(Handled::fresh(response))));
                }
                Err(e) => {
                    self.forget(&key).await;
                    results.push((i, Err(IdempotencyError::Handler(e))));
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
            results.push((
                i,
                match finals.get(&key) {
                    Some(record) => replay(&key, record.clone(), payload_hash.as_deref()),
                    None => Err(IdempotencyError::AlreadyInProgress {
                        key: key.0,
                        lease_until_ms: lease_until,
                    }),
                },
            ));
        }
        in_order(results)
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
        let mut cache = self
            .cache
            .as_ref()?
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
            cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(record.pk.clone(), record.clone());
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

/// One event's result in [`Idempotency::run_all`].
type RunResult<R, E> = Result<Handled<R>, IdempotencyError<E>>;

/// Results, each beside its item's place in the batch, in the batch's order (the batch
/// processor's outcomes too).
pub(crate) fn in_order<X>(mut results: Vec<(usize, X)>) -> Vec<X> {
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}
