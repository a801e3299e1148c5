use busline::bus::EventBridgePublisher;
use busline::config::{Env, ProcessEnv};
use busline::fulfillment::SagaState;
use busline::fulfillment::dynamodb::DynamoDbFulfillment;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let bus = ProcessEnv.require("BUS_NAME", "the event bus purchase-order requests go to")?;
    let aws = busline::aws::load_config().await;
    let inventory = DynamoDbFulfillment::from_env(&ProcessEnv, &aws)?;
    let publisher = EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&aws), bus);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SagaState>| async {
        reserve_inventory::handle(event.payload, &inventory, &publisher)
            .await
            .map_err(|e| busline::error::diagnostic(&e))
    }))
    .await
}
