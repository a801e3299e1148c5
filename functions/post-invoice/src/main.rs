use busline::config::{Env, ProcessEnv};
use busline::fulfillment::SagaState;
use busline::fulfillment::dynamodb::DynamoDbFulfillment;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let table = ProcessEnv.require(
        "FULFILLMENT_TABLE",
        "the fulfillment systems' DynamoDB table",
    )?;
    let aws = busline::aws::load_config().await;
    let systems = DynamoDbFulfillment::new(aws_sdk_dynamodb::Client::new(&aws), table);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SagaState>| async {
        post_invoice::handle(event.payload, &systems)
            .await
            .map_err(|e| busline::error::diagnostic(&e))
    }))
    .await
}
