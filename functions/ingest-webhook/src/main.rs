//! The `ingest-webhook` Lambda function's entry point, its composition root: reads the
//! configuration, builds the clients and runs the handler in `lib.rs`. Webhook ingest connector:
//! verifies, validates, deduplicates and publishes incoming webhooks to the bus.

use busline::bus::EventBridgePublisher;
use busline::config::ProcessEnv;
use busline::idempotency::DynamoDbIdempotencyStore;
use ingest_webhook::replay::DynamoDbReplayGuard;
use ingest_webhook::{Config, Deps, fetch_secrets, handle};
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let config = Config::from_env(&ProcessEnv)?;
    let aws = busline::aws::load_config().await?;
    let secrets = fetch_secrets(&aws_sdk_secretsmanager::Client::new(&aws), &config).await?;
    let publisher =
        EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&aws), &config.bus_name);
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let store = DynamoDbIdempotencyStore::new(dynamodb.clone(), &config.idempotency_table);
    let replay = DynamoDbReplayGuard::new(dynamodb, &config.idempotency_table);
    let deps = Deps::new(publisher, store, replay, &config, secrets)?;
    lambda_http::run(service_fn(|request| async {
        Ok::<_, std::convert::Infallible>(handle(request, &deps).await)
    }))
    .await
}
