//! Batch processing: one bad record never fails its batch.
//!
//! Lambda hands SQS, DynamoDB Streams and Kinesis records over in batches. [`BatchProcessor`] runs a
//! record handler over each record and answers with a partial batch response (the event source
//! mapping needs `ReportBatchItemFailures`), so only what failed comes back:
//!
//! - **SQS standard queues** ([`BatchProcessor::sqs`]): every record runs, up to
//!   [`concurrency`](BatchProcessor::concurrency) at once, and the response names exactly the failed
//!   message ids.
//! - **SQS FIFO queues** (the same call; a queue ARN ending in `.fifo` is detected): records run in
//!   order and processing stops at the first failure, which is reported with every later record. With
//!   [`keep_other_groups`](BatchProcessor::keep_other_groups), only the failed record's message
//!   group stops, other groups go on, and groups run concurrently.
//! - **DynamoDB Streams and Kinesis** ([`BatchProcessor::dynamodb`], [`BatchProcessor::kinesis`]):
//!   records of one item or partition key run in order, different keys concurrently, and the
//!   response is the first failed record's sequence number: the checkpoint Lambda resumes from.
//!   Records after it are delivered again, so stream handlers should be idempotent.
//!
//! **Time.** Given the invocation's deadline ([`BatchProcessor::sqs_until`]), a record is only
//! started while the time left holds the [stop margin](BatchProcessor::stop_margin) and the slowest
//! record so far; the rest go back unstarted (`OutOfTime`), and what finished is kept. Without it, a
//! slow dependency makes a batch outlive the function's timeout: Lambda kills it, every message of
//! the batch comes back, finished ones included, and each receive brings the whole batch closer to
//! the receive limit, so good messages reach the dead-letter queue unprocessed.
//!
//! Each handler error is classified ([`Classify`]): a **duplicate** counts as done; a **permanent**
//! error goes to the [dead-letter queue](BatchProcessor::dead_letters) at once, with its reason, when
//! one is configured (otherwise it fails like a retryable one and the queue's redrive policy moves it
//! after `maxReceiveCount`); a **retryable** error is reported for redelivery. If every record fails,
//! [`BatchReport::into_result`] says so with [`BatchError::AllFailed`].
//!
//! Batch processing composes with [`idempotency`](crate::idempotency): wrap the record handler in
//! [`Idempotency::run`](crate::idempotency::Idempotency::run), and a redelivered batch re-runs only
//! the records that did not complete. [`BatchProcessor::sqs_claimed`] goes further and claims the
//! whole batch in one `TransactWriteItems`.
//!
//! ```
//! # use aws_lambda_events::event::sqs::SqsEvent;
//! # use busline::batch::{BatchProcessor, BatchError};
//! # #[derive(Debug, thiserror::Error)] #[error("bad order")] struct BadOrder;
//! # impl busline::Classify for BadOrder {
//! #     fn class(&self) -> busline::ErrorClass { busline::ErrorClass::Permanent }
//! #     fn error_type(&self) -> &'static str { "BadOrder" }
//! # }
//! # async fn example(event: SqsEvent) -> Result<(), BatchError> {
//! let processor = BatchProcessor::new().concurrency(4);
//! let report = processor
//!     .sqs(&event, async |message| {
//!         let body = message.body.as_deref().unwrap_or_default();
//!         if body.is_empty() { Err(BadOrder) } else { Ok(()) }
//!     })
//!     .await;
//! let response = report.into_result()?; // the SqsBatchResponse Lambda expects
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;

use crate::error::{Classify, ErrorClass, diagnostic};
use crate::idempotency::in_order;
use crate::retry::{Deadline, Pacer, Shortfall};

mod report;
pub use report::{BatchError, BatchReport, RecordFailure, RecordOutcome};
mod sqs;
mod stream;

mod dead_letter;
#[cfg(any(test, feature = "test-util"))]
pub use dead_letter::InMemoryDeadLetterQueue;
pub use dead_letter::{
    DeadLetter, DeadLetterError, DeadLetterQueue, NoDeadLetterQueue, SqsDeadLetterQueue,
};

/// Runs record handlers over a batch. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct BatchProcessor<Q = NoDeadLetterQueue> {
    concurrency: usize,
    keep_other_groups: bool,
    max_receives: Option<u32>,
    stop_margin: Duration,
    dead_letters: Q,
}

/// The time a batch keeps in hand before its invocation's deadline unless set otherwise: what the
/// response, a dead letter and the runtime's reply take.
pub const DEFAULT_STOP_MARGIN: Duration = Duration::from_millis(1_000);

/// A record not started because the invocation's time would not hold it.
#[derive(Debug, thiserror::Error)]
#[error(
    "not started: {left_ms} ms of the invocation left, under the {margin_ms} ms margin and the \
     slowest record's {slowest_ms} ms"
)]
struct OutOfTime {
    left_ms: u128,
    margin_ms: u128,
    slowest_ms: u128,
}

impl From<Shortfall> for OutOfTime {
    fn from(short: Shortfall) -> Self {
        Self {
            left_ms: short.left.as_millis(),
            margin_ms: short.margin.as_millis(),
            slowest_ms: short.slowest.as_millis(),
        }
    }
}

impl Classify for OutOfTime {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }
    fn error_type(&self) -> &'static str {
        "OutOfTime"
    }
}

impl Default for BatchProcessor {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchProcessor {
    /// One record at a time, FIFO processing stops at the first failure, no dead-letter queue.
    pub fn new() -> Self {
        Self {
            concurrency: 1,
            keep_other_groups: false,
            max_receives: None,
            stop_margin: DEFAULT_STOP_MARGIN,
            dead_letters: NoDeadLetterQueue,
        }
    }
}

/// A record as the processor sees it: its id, ordering group, body and how often it was received.
struct Item<'a, R> {
    record: &'a R,
    id: String,
    body: fn(&R) -> String,
    receives: fn(&R) -> Option<u32>,
}

impl<Q: DeadLetterQueue> BatchProcessor<Q> {
    /// Runs up to `concurrency` record handlers at once (at least 1). Ordered records (a FIFO
    /// message group, a stream's item or partition key) still run one after another.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// For SQS FIFO queues: a failure stops only its message group, and groups run concurrently.
    pub fn keep_other_groups(mut self) -> Self {
        self.keep_other_groups = true;
        self
    }

    /// Sends records that fail permanently to `queue`, with the reason, instead of back to the source.
    pub fn dead_letters<D: DeadLetterQueue>(self, queue: D) -> BatchProcessor<D> {
        BatchProcessor {
            concurrency: self.concurrency,
            keep_other_groups: self.keep_other_groups,
            max_receives: self.max_receives,
            stop_margin: self.stop_margin,
            dead_letters: queue,
        }
    }

    /// The SQS queue's `maxReceiveCount` (`None`: not told). A message that fails for a passing
    /// reason on its last receive goes to the dead-letter queue with that reason, rather than being
    /// handed back for SQS to move without one; so every letter says why it is there.
    pub fn max_receives(mut self, max_receives: Option<u32>) -> Self {
        self.max_receives = max_receives.filter(|&n| n > 0);
        self
    }

    /// The time [`sqs_until`](Self::sqs_until) keeps in hand before the deadline
    /// ([`DEFAULT_STOP_MARGIN`]).
    pub fn stop_margin(mut self, margin: Duration) -> Self {
        self.stop_margin = margin;
        self
    }

    /// Runs each group's records in order, stopping the group at its first failure, with up to
    /// `concurrency` groups at once, and starting no record the time left before `deadline` would
    /// not hold. Outcomes line up with `items`.
    async fn execute<'a, R, E, F>(
        &self,
        items: &[Item<'a, R>],
        groups: Vec<Vec<usize>>,
        source: Option<String>,
        group_of: fn(&R) -> Option<String>,
        deadline: Option<Deadline>,
        handler: F,
    ) -> Vec<RecordOutcome>
    where
        E: Classify,
        F: AsyncFn(&'a R) -> Result<(), E>,
    {
        let handler = &handler;
        let source = &source;
        // A record is started only if the time left holds the margin and the slowest record.
        let pacer = &deadline.map(|deadline| Pacer::new(deadline, self.stop_margin));
        let out_of_time = move || Some(OutOfTime::from(pacer.as_ref()?.check().err()?));
        let per_group: Vec<Vec<(usize, RecordOutcome)>> = futures_util::stream::iter(groups)
            .map(|group| async move {
                let mut outcomes = Vec::with_capacity(group.len());
                let mut stopped: Option<String> = None;
                // The groups hold indexes of `items`, each once.
                for (i, item) in group.into_iter().filter_map(|i| Some((i, items.get(i)?))) {
                    let outcome = match &stopped {
                        Some(after) => RecordOutcome::Failed(RecordFailure {
                            id: item.id.clone(),
                            error_type: "Skipped".to_owned(),
                            reason: format!("not run: record {after} before it in order failed"),
                        }),
                        None => match out_of_time() {
                            Some(late) => {
                                self.settle(item, source, group_of(item.record), Err(late))
                                    .await
                            }
                            None => {
                                let started = std::time::Instant::now();
                                let result = handler(item.record).await;
                                if let Some(pacer) = pacer {
                                    pacer.took(started.elapsed());
                                }
                                self.settle(item, source, group_of(item.record), result)
                                    .await
                            }
                        },
                    };
                    if !outcome.is_done() && stopped.is_none() {
                        stopped = Some(item.id.clone());
                    }
                    outcomes.push((i, outcome));
                }
                outcomes
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        in_order(per_group.into_iter().flatten().collect())
    }

    /// What a handler's result means for the record, dead-lettering permanent failures.
    async fn settle<R, E: Classify>(
        &self,
        item: &Item<'_, R>,
        source: &Option<String>,
        group: Option<String>,
        result: Result<(), E>,
    ) -> RecordOutcome {
        let error = match result {
            Ok(()) => return RecordOutcome::Succeeded,
            Err(error) if error.class() == ErrorClass::Duplicate => {
                return RecordOutcome::Duplicate;
            }
            Err(error) => error,
        };
        let mut failure = RecordFailure {
            id: item.id.clone(),
            error_type: error.error_type().to_owned(),
            reason: diagnostic(&error).error_message,
        };
        let last_receive = match (self.max_receives, (item.receives)(item.record)) {
            (Some(max), Some(received)) if received >= max => Some(received),
            _ => None,
        };
        if let Some(received) = last_receive.filter(|_| error.class() == ErrorClass::Retryable) {
            failure.reason = format!(
                "still failing on receive {received} of {}: {}",
                self.max_receives.unwrap_or(received),
                failure.reason
            );
        }
        let give_up = error.class() == ErrorClass::Permanent || last_receive.is_some();
        if give_up && self.dead_letters.is_configured() {
            let letter = DeadLetter {
                body: (item.body)(item.record),
                record_id: item.id.clone(),
                source: source.clone(),
                group,
                error_type: failure.error_type.clone(),
                reason: failure.reason.clone(),
            };
            match self.dead_letters.send(&letter).await {
                Ok(()) => {
                    tracing::warn!(record_id = %failure.id, error_type = %failure.error_type, reason = %failure.reason, "given up: sent to the dead-letter queue");
                    return RecordOutcome::DeadLettered(failure);
                }
                Err(e) => {
                    tracing::error!(record_id = %failure.id, error = %e, "could not dead-letter a permanent failure; reporting it failed so it is redelivered");
                }
            }
        } else {
            tracing::warn!(record_id = %failure.id, error_type = %failure.error_type, reason = %failure.reason, retryable = error.class() == ErrorClass::Retryable, "record failed; reported for redelivery");
        }
        RecordOutcome::Failed(failure)
    }
}

/// The batch's records grouped by `key`, each group in batch order, groups in order of first record.
fn groups_by<R>(items: &[Item<'_, R>], key: impl Fn(&R) -> String) -> Vec<Vec<usize>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match index
            .get(&key(item.record))
            .and_then(|&slot| groups.get_mut(slot))
        {
            Some(group) => group.push(i),
            None => {
                index.insert(key(item.record), groups.len());
                groups.push(vec![i]);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests;
