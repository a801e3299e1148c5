//! Publishing envelopes to the event bus.
//!
//! [`EventPublisher`] is the port handlers depend on. [`EventBridgePublisher`] is the AWS adapter:
//! it batches entries the way `PutEvents` wants them and retries the entries EventBridge reports as
//! failed, with backoff, so a partial failure never loses an event silently. [`InMemoryBus`] is the
//! twin for fast tests, with failures that can be injected.

use std::future::Future;
#[cfg(any(test, feature = "test-util"))]
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use futures_util::StreamExt;
use serde::Serialize;
#[cfg(any(test, feature = "test-util"))]
use serde_json::Value;

use crate::envelope::{Envelope, EnvelopeError, MAX_ENTRY_BYTES};
use crate::error::{Classify, ErrorClass};
use crate::retry::Backoff;

/// `PutEvents` takes at most this many entries per call.
pub const MAX_ENTRIES_PER_CALL: usize = 10;

/// Publishes envelopes to the bus.
pub trait EventPublisher: Send + Sync {
    /// Publishes every envelope, or fails saying which were not accepted.
    ///
    /// On success every envelope is on the bus. On failure some may be: consumers deduplicate on the
    /// envelope's `source` and `id`, so the caller can safely publish the same envelopes again.
    fn publish<T: Serialize + Sync>(
        &self,
        events: &[Envelope<T>],
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Publishes as [`publish`](Self::publish) does, but may take until `deadline` instead of the
    /// publisher's own budget: for a caller that knows how long it may wait, such as a batch run
    /// with the rest of its invocation. Publishers without a budget ignore it.
    fn publish_until<T: Serialize + Sync>(
        &self,
        events: &[Envelope<T>],
        deadline: crate::retry::Deadline,
    ) -> impl Future<Output = Result<(), PublishError>> + Send {
        let _ = deadline;
        self.publish(events)
    }
}

/// One envelope the bus did not accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedEntry {
    /// The envelope's id.
    pub event_id: String,
    /// The bus's error code, such as `ThrottlingException`.
    pub code: String,
    /// The bus's message.
    pub message: String,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The envelope cannot be put on the bus at all (too large, not serialisable). Permanent.
    #[error("event {event_id} cannot be published")]
    Unpublishable {
        /// The envelope's id.
        event_id: String,
        /// What makes the envelope unpublishable (its size, or JSON that does not serialize).
        #[source]
        source: EnvelopeError,
    },
    /// Some entries were still rejected after every retry. Retryable.
    #[error("the bus rejected {} event(s) after {attempts} attempt(s), first: {}", rejected.len(), rejected.first().map_or_else(String::new, |r| format!("{} {}", r.code, r.message)))]
    Rejected {
        /// The entries still rejected.
        rejected: Vec<RejectedEntry>,
        /// `PutEvents` calls made, the first included, by the batch that needed the most (from 1 up
        /// to the backoff's `max_attempts`).
        attempts: u32,
    },
    /// The call itself failed for now (network, throttling of the whole call, 5xx). Retryable.
    #[error("the bus could not be reached")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The bus refused the call for good (validation, access denied, no such bus: see
    /// [`crate::sdk_error`]). Permanent: not retried, here or by the caller.
    #[error("the bus refused the call")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Classify for PublishError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unpublishable { .. } | Self::Refused(_) => ErrorClass::Permanent,
            Self::Rejected { .. } | Self::Unavailable(_) => ErrorClass::Retryable,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Unpublishable { .. } => "EventUnpublishable",
            Self::Rejected { .. } => "EventsRejected",
            Self::Unavailable(_) => "BusUnavailable",
            Self::Refused(_) => "BusRefused",
        }
    }
}

fn entries<T: Serialize>(
    bus: &str,
    events: &[Envelope<T>],
) -> Result<Vec<(String, PutEventsRequestEntry)>, PublishError> {
    events
        .iter()
        .map(|e| {
            e.to_eventbridge_entry(bus)
                .map(|entry| (e.id.clone(), entry))
                .map_err(|source| PublishError::Unpublishable {
                    event_id: e.id.clone(),
                    source,
                })
        })
        .collect()
}

/// A publisher that does all the real one does short of the network: each envelope becomes its
/// EventBridge entry (serialised, size-checked) and is dropped. For benchmarks of handlers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SerialisingPublisher;

impl EventPublisher for SerialisingPublisher {
    async fn publish<T: Serialize + Sync>(
        &self,
        events: &[Envelope<T>],
    ) -> Result<(), PublishError> {
        std::hint::black_box(entries("bench", events)?);
        Ok(())
    }
}

/// The EventBridge adapter.
#[derive(Clone, Debug)]
pub struct EventBridgePublisher {
    client: Client,
    bus: String,
    backoff: Backoff,
    budget: Duration,
}

/// The most `PutEvents` calls one `publish` has in flight at once.
pub const CONCURRENT_CALLS: usize = 4;

/// How long one `publish` may take, calls and waits included, unless set otherwise: half the
/// stack's 10 s function timeout, so a caller holding a claim answers 503 and releases it instead of
/// being killed mid-call. Callers that know their invocation's deadline pass it instead
/// ([`EventPublisher::publish_until`]), as ingest and batch-sync do.
pub const DEFAULT_PUBLISH_BUDGET: Duration = Duration::from_secs(5);

impl EventBridgePublisher {
    /// Publishes to `bus` (a name or ARN) with the default backoff.
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
            backoff: Backoff::default(),
            budget: DEFAULT_PUBLISH_BUDGET,
        }
    }

    /// Replaces the time one `publish` may take in all ([`DEFAULT_PUBLISH_BUDGET`]): past it, a call
    /// still waiting for the bus is abandoned and the publish fails, retryably.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Replaces the backoff used for rejected entries and failed calls.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sends one call's worth of entries; returns the ones EventBridge rejected.
    async fn put_once(
        &self,
        batch: &[(String, PutEventsRequestEntry)],
    ) -> Result<Vec<(String, PutEventsRequestEntry, RejectedEntry)>, PublishError> {
        let output = self
            .client
            .put_events()
            .set_entries(Some(batch.iter().map(|(_, entry)| entry.clone()).collect()))
            .send()
            .await
            .map_err(|e| {
                crate::sdk_error::sort(e, PublishError::Refused, PublishError::Unavailable)
            })?;
        if output.failed_entry_count() == 0 && output.entries().len() == batch.len() {
            return Ok(Vec::new());
        }
        // Results come back in request order, one per entry. An answer that does not have one per
        // entry cannot say which were taken: every entry is offered again (consumers deduplicate on
        // the envelope id), rather than any counted as published that may not be.
        if output.entries().len() != batch.len() {
            tracing::warn!(
                sent = batch.len(),
                answered = output.entries().len(),
                failed = output.failed_entry_count(),
                "PutEvents answered for fewer entries than were sent; offering them all again"
            );
            return Ok(batch
                .iter()
                .map(|(id, entry)| {
                    let rejected = RejectedEntry {
                        event_id: id.clone(),
                        code: "IncompleteAnswer".to_owned(),
                        message: format!(
                            "PutEvents answered {} of {} entries",
                            output.entries().len(),
                            batch.len()
                        ),
                    };
                    (id.clone(), entry.clone(), rejected)
                })
                .collect());
        }
        Ok(batch
            .iter()
            .zip(output.entries())
            .filter_map(|((id, entry), result)| {
                result.error_code().map(|code| {
                    let rejected = RejectedEntry {
                        event_id: id.clone(),
                        code: code.to_owned(),
                        message: result.error_message().unwrap_or_default().to_owned(),
                    };
                    (id.clone(), entry.clone(), rejected)
                })
            })
            .collect())
    }

    async fn put_with_retries(
        &self,
        mut pending: Vec<(String, PutEventsRequestEntry)>,
        until: tokio::time::Instant,
        allowed: Duration,
    ) -> Result<(), PublishError> {
        let mut attempt = 1;
        loop {
            let outcome = match tokio::time::timeout_at(until, self.put_once(&pending)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Err(PublishError::Unavailable(
                        format!(
                            "the bus did not answer within the publish budget of {} ms",
                            allowed.as_millis()
                        )
                        .into(),
                    ));
                }
            };
            let wait = self.backoff.delay(attempt);
            let out_of_time = tokio::time::Instant::now() + wait >= until;
            let last = attempt >= self.backoff.max_attempts.max(1) || out_of_time;
            match outcome {
                Ok(rejected) if rejected.is_empty() => return Ok(()),
                Ok(rejected) if last => {
                    return Err(PublishError::Rejected {
                        rejected: rejected.into_iter().map(|(_, _, r)| r).collect(),
                        attempts: attempt,
                    });
                }
                Ok(rejected) => {
                    let first_code = rejected
                        .first()
                        .map(|(_, _, r)| r.code.as_str())
                        .unwrap_or_default();
                    tracing::warn!(
                        rejected = rejected.len(),
                        attempt,
                        first_code,
                        "bus rejected entries; retrying them"
                    );
                    pending = rejected
                        .into_iter()
                        .map(|(id, entry, _)| (id, entry))
                        .collect();
                }
                Err(e) if last || e.class() == ErrorClass::Permanent => return Err(e),
                Err(e) => tracing::warn!(attempt, error = %e, "PutEvents failed; retrying"),
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// Splits entries into `PutEvents` calls: at most ten entries and 256 KB per call.
fn batches(
    entries: Vec<(String, PutEventsRequestEntry)>,
) -> Vec<Vec<(String, PutEventsRequestEntry)>> {
    let size = |e: &PutEventsRequestEntry| {
        crate::envelope::entry_size(
            e.source().unwrap_or_default(),
            e.detail_type().unwrap_or_default(),
            e.detail().unwrap_or_default(),
            e.time().is_some(),
        )
    };
    let mut out: Vec<Vec<_>> = Vec::new();
    let mut current_bytes = 0;
    for item in entries {
        let bytes = size(&item.1);
        match out.last_mut() {
            Some(batch)
                if batch.len() < MAX_ENTRIES_PER_CALL
                    && current_bytes + bytes <= MAX_ENTRY_BYTES =>
            {
                current_bytes += bytes;
                batch.push(item);
            }
            _ => {
                current_bytes = bytes;
                out.push(vec![item]);
            }
        }
    }
    out
}

impl EventPublisher for EventBridgePublisher {
    async fn publish<T: Serialize + Sync>(
        &self,
        events: &[Envelope<T>],
    ) -> Result<(), PublishError> {
        self.publish_within(events, self.budget).await
    }

    async fn publish_until<T: Serialize + Sync>(
        &self,
        events: &[Envelope<T>],
        deadline: crate::retry::Deadline,
    ) -> Result<(), PublishError> {
        self.publish_within(events, deadline.remaining()).await
    }
}

impl EventBridgePublisher {
    /// Publishes, calls and waits included, within `allowed`.
    async fn publish_within<T: Serialize + Sync>(
        &self,
        events: &[Envelope<T>],
        allowed: Duration,
    ) -> Result<(), PublishError> {
        let mut rejected = Vec::new();
        let mut attempts = 0;
        let until = tokio::time::Instant::now() + allowed;
        // Up to CONCURRENT_CALLS calls at once: a page of a hundred events waits for the slowest
        // of its calls, not for the sum of ten. The first call that fails for good ends the
        // publish; the ones still in flight are dropped (what they sent may be on the bus, and
        // consumers deduplicate on the envelope id).
        let mut calls = futures_util::stream::iter(batches(entries(&self.bus, events)?))
            .map(|batch| self.put_with_retries(batch, until, allowed))
            .buffered(CONCURRENT_CALLS);
        while let Some(outcome) = calls.next().await {
            match outcome {
                Ok(()) => {}
                Err(PublishError::Rejected {
                    rejected: r,
                    attempts: a,
                }) => {
                    rejected.extend(r);
                    attempts = attempts.max(a);
                }
                Err(e) => return Err(e),
            }
        }
        crate::telemetry::emit_source_latency(
            events
                .iter()
                .filter(|e| !rejected.iter().any(|r| r.event_id == e.id))
                .map(|e| (e.event_type.as_str(), e.time)),
        );
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(PublishError::Rejected { rejected, attempts })
        }
    }
}

/// The in-memory twin: keeps what was published, and can reject entries on demand.
#[cfg(any(test, feature = "test-util"))]
#[derive(Clone, Debug, Default)]
pub struct InMemoryBus {
    state: Arc<Mutex<BusState>>,
}

#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
struct BusState {
    published: Vec<Value>,
    reject_next: usize,
    unavailable: bool,
    calls: usize,
}

#[cfg(any(test, feature = "test-util"))]
impl InMemoryBus {
    /// An empty bus that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rejects the next `n` entries offered, as EventBridge does under throttling.
    pub fn reject_next(&self, n: usize) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reject_next = n;
    }

    /// Makes every call fail as if the bus could not be reached.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unavailable = unavailable;
    }

    /// The envelopes on the bus, as JSON, in publish order.
    pub fn published(&self) -> Vec<Value> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .published
            .clone()
    }

    /// How many publish calls were made.
    pub fn calls(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .calls
    }
}

#[cfg(any(test, feature = "test-util"))]
impl EventPublisher for InMemoryBus {
    async fn publish<T: Serialize + Sync>(
        &self,
        events: &[Envelope<T>],
    ) -> Result<(), PublishError> {
        let entries = entries("in-memory", events)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.calls += 1;
        if state.unavailable {
            return Err(PublishError::Unavailable(
                "the in-memory bus is set unavailable".into(),
            ));
        }
        let mut rejected = Vec::new();
        for (id, entry) in entries {
            if state.reject_next > 0 {
                state.reject_next -= 1;
                rejected.push(RejectedEntry {
                    event_id: id,
                    code: "ThrottlingException".into(),
                    message: "injected".into(),
                });
            } else {
                // As EventBridge does, an entry whose detail is not JSON is refused.
                match serde_json::from_str(entry.detail().unwrap_or_default()) {
                    Ok(event) => state.published.push(event),
                    Err(e) => rejected.push(RejectedEntry {
                        event_id: id,
                        code: "MalformedDetail".into(),
                        message: e.to_string(),
                    }),
                }
            }
        }
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(PublishError::Rejected {
                rejected,
                attempts: 1,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventType;

    fn envelope(id: &str, bytes: usize) -> Envelope<String> {
        Envelope::new(
            id,
            "busline.test",
            EventType::parse("io.busline.test.v1").unwrap(),
            "x".repeat(bytes),
        )
    }

    #[test]
    fn batches_hold_at_most_ten_entries_and_256_kb() {
        let small: Vec<_> = (0..23).map(|i| envelope(&i.to_string(), 10)).collect();
        let sizes: Vec<usize> = batches(entries("b", &small).unwrap())
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [10, 10, 3]);

        let big: Vec<_> = (0..5)
            .map(|i| envelope(&i.to_string(), 100 * 1024))
            .collect();
        let sizes: Vec<usize> = batches(entries("b", &big).unwrap())
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[tokio::test]
    async fn the_twin_keeps_what_it_accepts_and_names_what_it_rejects() {
        let bus = InMemoryBus::new();
        bus.reject_next(1);
        let err = bus
            .publish(&[envelope("a", 1), envelope("b", 1)])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PublishError::Rejected { rejected, .. } if rejected[0].event_id == "a"),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::Retryable);
        assert_eq!(bus.published().len(), 1);
        assert_eq!(bus.published()[0]["id"], "b");
    }

    #[tokio::test]
    async fn an_oversized_event_is_a_permanent_failure_and_publishes_nothing() {
        let bus = InMemoryBus::new();
        let err = bus
            .publish(&[envelope("ok", 1), envelope("huge", MAX_ENTRY_BYTES)])
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(bus.published().is_empty());
    }
}
