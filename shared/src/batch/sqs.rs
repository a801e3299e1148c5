//! SQS batches, standard and FIFO: the failed message ids come back as the partial batch response.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BatchProcessor, BatchReport, DeadLetterQueue, Item, RecordOutcome, groups_by};
use crate::error::Classify;
use crate::idempotency::{Idempotency, IdempotencyStore, in_order};
use crate::retry::Deadline;

impl<Q: DeadLetterQueue> BatchProcessor<Q> {
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
        // Each record's outcome beside its place in the batch, put back in order at the end.
        let mut outcomes: Vec<(usize, RecordOutcome)> = Vec::with_capacity(items.len());
        let mut parsed = Vec::new();
        let mut positions = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match parse(item.record) {
                Ok(event) => {
                    parsed.push(event);
                    positions.push((i, item));
                }
                Err(e) => outcomes.push((i, self.settle(item, &source, None, Err(e)).await)),
            }
        }
        let results = idempotency
            .run_all(&parsed, deadline, self.concurrency, handler)
            .await;
        for ((i, item), result) in positions.into_iter().zip(results) {
            let outcome = match result {
                Ok(handled) if handled.replayed => RecordOutcome::Duplicate,
                result => {
                    self.settle(item, &source, sqs_group(item.record), result.map(drop))
                        .await
                }
            };
            outcomes.push((i, outcome));
        }
        sqs_report(in_order(outcomes))
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
