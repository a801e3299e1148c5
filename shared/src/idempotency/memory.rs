//! The idempotency store in memory: the DynamoDB store's twin, for tests, with a call counter; and
//! a clock tests can move.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{
    Clock, IdempotencyRecord, IdempotencyStore, MAX_BATCH_WRITE_ITEMS, MAX_TRANSACTION_ITEMS,
    StoreError,
};

/// The in-memory store, with a call counter that counts what the DynamoDB store would send.
#[derive(Clone, Debug, Default)]
pub struct InMemoryIdempotencyStore {
    state: Arc<Mutex<StoreState>>,
}

#[derive(Debug, Default)]
struct StoreState {
    records: HashMap<String, IdempotencyRecord>,
    calls: usize,
    unavailable: bool,
}

impl InMemoryIdempotencyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many calls the DynamoDB store would have made so far.
    pub fn calls(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .calls
    }

    /// The record for `key`, live or not.
    pub fn record(&self, key: &str) -> Option<IdempotencyRecord> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .records
            .get(key)
            .cloned()
    }

    /// Makes every call fail as if the store could not be reached.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unavailable = unavailable;
    }

    fn with_state<R>(
        &self,
        calls: usize,
        f: impl FnOnce(&mut StoreState) -> R,
    ) -> Result<R, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.calls += calls;
        if state.unavailable {
            return Err(StoreError::Unavailable(
                "the in-memory store is set unavailable".into(),
            ));
        }
        Ok(f(&mut state))
    }
}

impl StoreState {
    fn claim(&mut self, claim: &IdempotencyRecord, now_ms: i64) -> Option<IdempotencyRecord> {
        match self.records.get(&claim.pk) {
            Some(existing) if existing.is_live(now_ms) => Some(existing.clone()),
            _ => {
                self.records.insert(claim.pk.clone(), claim.clone());
                None
            }
        }
    }
}

impl IdempotencyStore for InMemoryIdempotencyStore {
    async fn claim(
        &self,
        claim: &IdempotencyRecord,
        now_ms: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.with_state(1, |state| state.claim(claim, now_ms))
    }

    async fn claim_all(
        &self,
        claims: &[IdempotencyRecord],
        now_ms: i64,
    ) -> Result<Vec<Option<IdempotencyRecord>>, StoreError> {
        // One transaction per 100 claims, and one more for each chunk that met a live record.
        let answers = self.with_state(0, |state| {
            claims
                .iter()
                .map(|c| state.claim(c, now_ms))
                .collect::<Vec<_>>()
        })?;
        let retries = claims
            .chunks(MAX_TRANSACTION_ITEMS)
            .zip(answers.chunks(MAX_TRANSACTION_ITEMS))
            .map(|(chunk, answers)| {
                let blocked = answers.iter().filter(|a| a.is_some()).count();
                usize::from(blocked > 0 && blocked < chunk.len())
            })
            .sum::<usize>();
        self.with_state(
            claims.len().div_ceil(MAX_TRANSACTION_ITEMS) + retries,
            |_| (),
        )?;
        Ok(answers)
    }

    async fn complete_all(&self, records: &[IdempotencyRecord]) -> Result<(), StoreError> {
        self.with_state(records.len().div_ceil(MAX_BATCH_WRITE_ITEMS), |state| {
            for record in records {
                state.records.insert(record.pk.clone(), record.clone());
            }
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.with_state(1, |state| {
            state.records.remove(key);
        })
    }
}

/// A clock tests can move: [`ManualClock::clock`] plugs into [`Idempotency::with_clock`].
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `epoch_millis`.
    pub fn at(epoch_millis: i64) -> Self {
        Self(Arc::new(AtomicI64::new(epoch_millis)))
    }

    /// The time, Unix milliseconds.
    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    /// The clock as an [`Idempotency`] clock.
    pub fn clock(&self) -> Clock {
        let inner = self.0.clone();
        Arc::new(move || inner.load(Ordering::SeqCst))
    }
}
