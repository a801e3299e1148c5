//! DynamoDB Streams and Kinesis batches: records of one key in order, the first failure's sequence
//! number back as the checkpoint Lambda resumes from.

use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord};
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisEventResponse,
};
use std::collections::BTreeMap;

use serde::Serialize;

use super::{BatchProcessor, BatchReport, DeadLetterQueue, Item, RecordOutcome, groups_by};
use crate::error::Classify;

impl<Q: DeadLetterQueue> BatchProcessor<Q> {
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
            .and_then(|i| items.get(i))
            .map(|item| item.id.clone());
        (outcomes, checkpoint)
    }
}
