use busline::config::ProcessEnv;
use busline::fulfillment::SagaState;
use busline::fulfillment::dynamodb::DynamoDbFulfillment;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let aws = busline::aws::load_config().await;
    let systems = DynamoDbFulfillment::from_env(&ProcessEnv, &aws)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SagaState>| async {
        create_shipment::handle(event.payload, &systems)
            .await
            .map_err(|e| busline::error::diagnostic(&e))
    }))
    .await
}
