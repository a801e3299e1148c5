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

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord};
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisEventResponse,
};
use futures_util::StreamExt;
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Classify, ErrorClass, diagnostic};
use crate::idempotency::{Idempotency, IdempotencyStore};
use crate::retry::Deadline;

/// A record that did not succeed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFailure {
    /// The message id or sequence number.
    pub id: String,
    /// The error's stable name, or `Skipped` for a record not run because an earlier one failed.
    pub error_type: String,
    /// The error with its cause chain.
    pub reason: String,
}

/// What happened to one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The handler succeeded.
    Succeeded,
    /// The record had been handled before.
    Duplicate,
    /// The handler failed permanently and the record is in the dead-letter queue with the reason.
    DeadLettered(RecordFailure),
    /// The record goes back to the source for another try.
    Failed(RecordFailure),
}

impl RecordOutcome {
    fn is_done(&self) -> bool {
        !matches!(self, Self::Failed(_))
    }
}

/// A processed batch: the response Lambda expects, and what happened to each record.
#[derive(Clone, Debug)]
pub struct BatchReport<Response> {
    /// The partial batch response.
    pub response: Response,
    /// Each record's outcome, in the batch's order.
    pub outcomes: Vec<RecordOutcome>,
}

impl<Response> BatchReport<Response> {
    /// How many records the batch had.
    pub fn total(&self) -> usize {
        self.outcomes.len()
    }

    /// How many records were handled now.
    pub fn succeeded(&self) -> usize {
        self.count(|o| matches!(o, RecordOutcome::Succeeded))
    }

    /// How many records had been handled before.
    pub fn duplicates(&self) -> usize {
        self.count(|o| matches!(o, RecordOutcome::Duplicate))
    }

    /// How many records went to the dead-letter queue.
    pub fn dead_lettered(&self) -> usize {
        self.count(|o| matches!(o, RecordOutcome::DeadLettered(_)))
    }

    /// The records that go back to the source.
    pub fn failures(&self) -> impl Iterator<Item = &RecordFailure> {
        self.outcomes.iter().filter_map(|o| match o {
            RecordOutcome::Failed(f) => Some(f),
            _ => None,
        })
    }

    fn count(&self, f: impl Fn(&RecordOutcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }

    /// The response, or [`BatchError::AllFailed`] when every record of a non-empty batch failed, so
    /// the invocation is reported as an error rather than a quiet partial response.
    pub fn into_result(self) -> Result<Response, BatchError> {
        if !self.outcomes.is_empty() && self.outcomes.iter().all(|o| !o.is_done()) {
            let failures: Vec<RecordFailure> = self.failures().cloned().collect();
            return Err(BatchError::AllFailed {
                total: failures.len(),
                failures,
            });
        }
        Ok(self.response)
    }
}

/// A batch that failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Every record failed; the source redelivers them all.
    #[error(
        "all {total} records of the batch failed; the first, {}, with {}: {}",
        failures[0].id, failures[0].error_type, failures[0].reason
    )]
    AllFailed {
        /// How many records.
        total: usize,
        /// Each failure, in the batch's order.
        failures: Vec<RecordFailure>,
    },
}

impl Classify for BatchError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }

    fn error_type(&self) -> &'static str {
        "BatchAllFailed"
    }
}

impl From<BatchError> for Diagnostic {
    fn from(error: BatchError) -> Self {
        diagnostic(&error)
    }
}

mod dead_letter;
pub use dead_letter::{
    DeadLetter, DeadLetterError, DeadLetterQueue, InMemoryDeadLetterQueue, NoDeadLetterQueue,
    SqsDeadLetterQueue,
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

    /// Processes an SQS batch, standard or FIFO, with no regard to time: for callers without a
    /// deadline. A Lambda handler should use [`sqs_until`](Self::sqs_until).
    pub async fn sqs<R, E, F>(&self, event: &SqsEvent, handler: F) -> BatchReport<SqsBatchResponse>
    where
        E: Classify,
        F: AsyncFn(&SqsMessage) -> Result<R, E>,
    {
        self.sqs_within(event, None, handler).await
    }

    /// Processes an SQS batch, standard or FIFO, starting a record only while the time left before
    /// `deadline` (the invocation's: [`Deadline::of`]) holds the stop margin and the slowest record
    /// so far. Records not started are handed back (`OutOfTime`); on their last receive they go to
    /// the dead-letter queue with that reason, as any passing failure does.
    pub async fn sqs_until<R, E, F>(
        &self,
        event: &SqsEvent,
        deadline: Deadline,
        handler: F,
    ) -> BatchReport<SqsBatchResponse>
    where
        E: Classify,
        F: AsyncFn(&SqsMessage) -> Result<R, E>,
    {
        self.sqs_within(event, Some(deadline), handler).await
    }

    async fn sqs_within<R, E, F>(
        &self,
        event: &SqsEvent,
        deadline: Option<Deadline>,
        handler: F,
    ) -> BatchReport<SqsBatchResponse>
    where
        E: Classify,
        F: AsyncFn(&SqsMessage) -> Result<R, E>,
    {
        let items = sqs_items(event);
        let groups = self.sqs_groups(&items);
        let outcomes = self
            .execute(
                &items,
                groups,
                sqs_source(event),
                sqs_group,
                deadline,
                async |m| handler(m).await.map(drop),
            )
            .await;
        sqs_report(outcomes)
    }

    /// Processes an SQS standard-queue batch with the idempotency records of the whole batch claimed
    /// in one `TransactWriteItems` and completed in one `BatchWriteItem`: ten distinct messages cost
    /// two DynamoDB calls instead of twenty. `parse` turns a message into the event `idempotency`
    /// keys on; a parse error is the record's failure. FIFO queues use [`sqs`](Self::sqs), whose
    /// ordering this mode cannot keep.
    pub async fn sqs_claimed<S, T, R, E, P, F>(
        &self,
        event: &SqsEvent,
        idempotency: &Idempotency<S, T>,
        deadline: Option<Deadline>,
        parse: P,
        handler: F,
    ) -> BatchReport<SqsBatchResponse>
    where
        S: IdempotencyStore,
        T: Serialize,
        R: Serialize + DeserializeOwned,
        E: Classify,
        P: Fn(&SqsMessage) -> Result<T, E>,
        F: AsyncFn(&T) -> Result<R, E>,
    {
        let items = sqs_items(event);
        let source = sqs_source(event);
        let mut outcomes: Vec<Option<RecordOutcome>> = items.iter().map(|_| None).collect();
        let mut parsed = Vec::new();
        let mut positions = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match parse(item.record) {
                Ok(event) => {
                    parsed.push(event);
                    positions.push(i);
                }
                Err(e) => outcomes[i] = Some(self.settle(item, &source, None, Err(e)).await),
            }
        }
        let results = idempotency
            .run_all(&parsed, deadline, self.concurrency, handler)
            .await;
        for (i, result) in positions.into_iter().zip(results) {
            let item = &items[i];
            outcomes[i] = Some(match result {
                Ok(handled) if handled.replayed => RecordOutcome::Duplicate,
                result => {
                    self.settle(item, &source, sqs_group(item.record), result.map(drop))
                        .await
                }
            });
        }
        sqs_report(outcomes.into_iter().map(Option::unwrap).collect())
    }

    /// Processes a DynamoDB Streams batch; the response names the checkpoint.
    pub async fn dynamodb<R, E, F>(
        &self,
        event: &DynamoDbEvent,
        handler: F,
    ) -> BatchReport<DynamoDbEventResponse>
    where
        E: Classify,
        F: AsyncFn(&EventRecord) -> Result<R, E>,
    {
        let (outcomes, checkpoint) = self
            .stream(
                &event.records,
                |r| r.change.sequence_number.clone().unwrap_or_default(),
                |r| format!("{:?}", r.change.keys.iter().collect::<BTreeMap<_, _>>()),
                |r| r.event_source_arn.clone(),
                handler,
            )
            .await;
        let mut response = DynamoDbEventResponse::default();
        if let Some(checkpoint) = checkpoint {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(checkpoint);
            response.batch_item_failures.push(failure);
        }
        BatchReport { response, outcomes }
    }

    /// Processes a Kinesis batch; the response names the checkpoint.
    pub async fn kinesis<R, E, F>(
        &self,
        event: &KinesisEvent,
        handler: F,
    ) -> BatchReport<KinesisEventResponse>
    where
        E: Classify,
        F: AsyncFn(&KinesisEventRecord) -> Result<R, E>,
    {
        let (outcomes, checkpoint) = self
            .stream(
                &event.records,
                |r| r.kinesis.sequence_number.clone(),
                |r| r.kinesis.partition_key.clone(),
                |r| r.event_source_arn.clone(),
                handler,
            )
            .await;
        let mut response = KinesisEventResponse::default();
        if let Some(checkpoint) = checkpoint {
            response.add_failure(checkpoint);
        }
        BatchReport { response, outcomes }
    }

    /// Runs a stream batch, one ordering group per `key`, and finds its checkpoint: the sequence
    /// number of the first record, in batch order, that goes back to the stream.
    async fn stream<Rec: Serialize, R, E, F>(
        &self,
        records: &[Rec],
        sequence_number: fn(&Rec) -> String,
        key: fn(&Rec) -> String,
        source: fn(&Rec) -> Option<String>,
        handler: F,
    ) -> (Vec<RecordOutcome>, Option<String>)
    where
        E: Classify,
        F: AsyncFn(&Rec) -> Result<R, E>,
    {
        let items: Vec<Item<'_, Rec>> = records
            .iter()
            .map(|r| Item {
                record: r,
                id: sequence_number(r),
                body: |r| serde_json::to_string(r).unwrap_or_default(),
                receives: |_| None,
            })
            .collect();
        let groups = groups_by(&items, key);
        let source = records.first().and_then(source);
        let outcomes = self
            .execute(
                &items,
                groups,
                source,
                |_| None,
                None,
                async |r| handler(r).await.map(drop),
            )
            .await;
        let checkpoint = outcomes
            .iter()
            .position(|o| !o.is_done())
            .map(|i| items[i].id.clone());
        (outcomes, checkpoint)
    }

    fn sqs_groups(&self, items: &[Item<'_, SqsMessage>]) -> Vec<Vec<usize>> {
        let fifo = items
            .first()
            .and_then(|i| i.record.event_source_arn.as_deref())
            .is_some_and(|arn| arn.ends_with(".fifo"));
        let all = 0..items.len();
        match (fifo, self.keep_other_groups) {
            (false, _) => all.map(|i| vec![i]).collect(),
            (true, false) => vec![all.collect()],
            (true, true) => groups_by(items, |m| sqs_group(m).unwrap_or_default()),
        }
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
        // The slowest record so far: a record is started only if the time left holds another.
        let slowest = &std::sync::Mutex::new(Duration::ZERO);
        let out_of_time = move || {
            let deadline = deadline?;
            let slowest = *slowest.lock().unwrap_or_else(|e| e.into_inner());
            let left = deadline.remaining();
            (left <= self.stop_margin + slowest).then_some(OutOfTime {
                left_ms: left.as_millis(),
                margin_ms: self.stop_margin.as_millis(),
                slowest_ms: slowest.as_millis(),
            })
        };
        let per_group: Vec<Vec<(usize, RecordOutcome)>> = futures_util::stream::iter(groups)
            .map(|group| async move {
                let mut outcomes = Vec::with_capacity(group.len());
                let mut stopped: Option<String> = None;
                for i in group {
                    let item = &items[i];
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
                                let took = started.elapsed();
                                {
                                    let mut slowest =
                                        slowest.lock().unwrap_or_else(|e| e.into_inner());
                                    *slowest = (*slowest).max(took);
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
        let mut outcomes: Vec<Option<RecordOutcome>> = items.iter().map(|_| None).collect();
        for (i, outcome) in per_group.into_iter().flatten() {
            outcomes[i] = Some(outcome);
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every record is in one group"))
            .collect()
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

fn sqs_items(event: &SqsEvent) -> Vec<Item<'_, SqsMessage>> {
    event
        .records
        .iter()
        .map(|m| Item {
            record: m,
            id: m.message_id.clone().unwrap_or_default(),
            body: |m| m.body.clone().unwrap_or_default(),
            receives: |m| {
                m.attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|n| n.parse().ok())
            },
        })
        .collect()
}

fn sqs_source(event: &SqsEvent) -> Option<String> {
    event
        .records
        .first()
        .and_then(|r| r.event_source_arn.clone())
}

fn sqs_group(message: &SqsMessage) -> Option<String> {
    message.attributes.get("MessageGroupId").cloned()
}

fn sqs_report(outcomes: Vec<RecordOutcome>) -> BatchReport<SqsBatchResponse> {
    let mut response = SqsBatchResponse::default();
    for failure in outcomes.iter().filter_map(|o| match o {
        RecordOutcome::Failed(f) => Some(f),
        _ => None,
    }) {
        response.add_failure(failure.id.clone());
    }
    BatchReport { response, outcomes }
}

/// The batch's records grouped by `key`, each group in batch order, groups in order of first record.
fn groups_by<R>(items: &[Item<'_, R>], key: impl Fn(&R) -> String) -> Vec<Vec<usize>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let slot = *index.entry(key(item.record)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[slot].push(i);
    }
    groups
}

#[cfg(test)]
mod tests;
