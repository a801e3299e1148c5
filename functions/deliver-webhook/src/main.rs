//! The `deliver-webhook` Lambda function's entry point, its composition root: reads the
//! configuration, builds the clients and runs the handler in `lib.rs`. Sink connector: POSTs bus
//! events to subscriber endpoints, signed, with an Idempotency-Key, backoff by visibility timeout
//! and a shared circuit breaker per destination.

use aws_lambda_events::event::sqs::SqsEvent;
use busline::batch::{BatchProcessor, SqsDeadLetterQueue};
use busline::config::{Env, ProcessEnv};
use busline::idempotency::DynamoDbIdempotencyStore;
use busline::retry::Deadline;
use deliver_webhook::circuit::DynamoDbCircuitStore;
use deliver_webhook::{Config, Deliverer, SqsRequeue, delivery_records, fetch_keys, handle};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let config = Config::from_env(&ProcessEnv)?;
    let allow_local = config.allow_local_endpoints;
    let queue = ProcessEnv.require(
        "QUEUE_URL",
        "the queue the function consumes (retries and fanned-out messages go back to it)",
    )?;
    let dlq = ProcessEnv.require("DEAD_LETTER_QUEUE_URL", "the queue refused events go to")?;
    let table = ProcessEnv.require("CIRCUIT_TABLE", "the DynamoDB table circuits are kept in")?;
    let records = ProcessEnv.require(
        "IDEMPOTENCY_TABLE",
        "the DynamoDB table that records what was delivered",
    )?;
    let aws = busline::aws::load_config().await?;
    let keys = fetch_keys(&aws_sdk_secretsmanager::Client::new(&aws), &config).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    // One client per service: a client is a runtime plan built at start; clones share it.
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let deliverer = Deliverer {
        keys,
        http: deliver_webhook::http_client(allow_local)?,
        circuits: DynamoDbCircuitStore::new(dynamodb.clone(), table),
        requeue: SqsRequeue::new(sqs.clone(), queue),
        deliveries: delivery_records(
            DynamoDbIdempotencyStore::new(dynamodb, records),
            config.retry_horizon,
        ),
        config,
    };
    let processor = BatchProcessor::new()
        .concurrency(4)
        .dead_letters(SqsDeadLetterQueue::new(sqs, dlq));
    let (deliverer, processor) = (&deliverer, &processor);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        handle(
            event.payload,
            deliverer,
            processor,
            Deadline::of(&event.context),
        )
        .await
    }))
    .await
}
