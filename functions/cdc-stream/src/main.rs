//! The `cdc-stream` Lambda function's entry point, its composition root: reads the configuration,
//! builds the clients and runs the handler in `lib.rs`. CDC connector: a DynamoDB table's stream to
//! the bus, one Debezium-style change event per record, in order per key.

use busline::batch::SqsDeadLetterQueue;
use busline::bus::EventBridgePublisher;
use busline::claim_check::S3PayloadStore;
use busline::config::{Env, ProcessEnv};
use busline::retry::Deadline;
use cdc_stream::{CdcConfig, handle};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let config = CdcConfig::from_env(&ProcessEnv)?;
    let bus = ProcessEnv.require("BUS_NAME", "the event bus changes are published to")?;
    let dlq = ProcessEnv.require(
        "DEAD_LETTER_QUEUE_URL",
        "the queue stream records that are not changes go to",
    )?;
    let aws = busline::aws::load_config().await?;
    let publisher = EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&aws), bus);
    let dead_letters = SqsDeadLetterQueue::on_first_letter(&aws, dlq);
    let bucket = ProcessEnv.require(
        "CLAIM_CHECK_BUCKET",
        "the S3 bucket changes too large for the bus are checked in to",
    )?;
    let payloads = S3PayloadStore::new(&aws, bucket);
    let (config, publisher, dead_letters, payloads) =
        (&config, &publisher, &dead_letters, &payloads);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let deadline = Deadline::of(&event.context);
        let outcome = handle(
            event.payload,
            config,
            publisher,
            dead_letters,
            payloads,
            deadline,
        )
        .await
        .map_err(|e| busline::error::diagnostic(&e))?;
        tracing::info!(
            published = outcome.published,
            dead_lettered = outcome.dead_lettered,
            resume_at = ?outcome.resume_at,
            "batch handled"
        );
        Ok::<_, lambda_runtime::Diagnostic>(outcome.response())
    }))
    .await
}
