//! The `batch-sync` Lambda function's entry point, its composition root: reads the configuration,
//! builds the clients and runs the handler in `lib.rs`. Scheduled batch sync: pulls records changed
//! since the watermark from a source's paginated HTTP API and publishes them, checkpointing after
//! every page.

use batch_sync::{SourceSync, SyncConfig, SyncError};
use busline::Classify;
use busline::batch::{DeadLetterQueue, SqsDeadLetterQueue};
use busline::bus::{EventBridgePublisher, EventPublisher};
use busline::checkpoint::{CheckpointStore, DynamoDbCheckpointStore};
use busline::config::{Env, ProcessEnv};
use busline::retry::{Backoff, Deadline};
use busline::telemetry::Hop;
use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let config = SyncConfig::from_env(&ProcessEnv)?;
    let table = ProcessEnv.require("CHECKPOINT_TABLE", "the checkpoint store's DynamoDB table")?;
    let bus = ProcessEnv.require("BUS_NAME", "the event bus records are published to")?;
    let dlq = ProcessEnv.require("DEAD_LETTER_QUEUE_URL", "the queue malformed records go to")?;
    let aws = busline::aws::load_config().await?;
    let sync = SourceSync {
        config,
        http: reqwest::Client::builder()
            .tls_backend_preconfigured((*busline::tls::client_config()?).clone())
            .timeout(std::time::Duration::from_secs(10))
            .build()?,
        checkpoints: DynamoDbCheckpointStore::new(aws_sdk_dynamodb::Client::new(&aws), table),
        publisher: EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&aws), bus),
        dead_letters: SqsDeadLetterQueue::on_first_letter(&aws, dlq),
        backoff: Backoff::default(),
    };
    let sync = &sync;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let run_id = event.context.request_id.clone();
        // A run starts a trace: the records it publishes carry it, so their consumers' hops are
        // its children (`make trace ID=<run id>`).
        let hop = Hop::new(None, &run_id, &run_id, "schedule/batch-sync");
        hop.run(run(sync, &run_id, Deadline::of(&event.context)))
            .await
    }))
    .await
}

/// One scheduled run, answered as the schedule's target sees it.
async fn run<C: CheckpointStore, P: EventPublisher, D: DeadLetterQueue>(
    sync: &SourceSync<C, P, D>,
    run_id: &str,
    deadline: Deadline,
) -> Result<Value, Diagnostic> {
    match sync.run(run_id, deadline).await {
        Ok(report) => serde_json::to_value(report).map_err(|e| Diagnostic {
            error_type: "ReportUnserialisable".into(),
            error_message: e.to_string(),
        }),
        // Another run has it: this one has nothing to do, and that is not a failure.
        Err(SyncError::Refused(why)) => {
            tracing::info!(reason = %why, "refused");
            Ok(serde_json::json!({"refused": why}))
        }
        Err(e) => {
            tracing::error!(error = %e, error_type = e.error_type(), "the sync failed; the checkpoint stands at the last published page");
            Err(busline::error::diagnostic(&e))
        }
    }
}
