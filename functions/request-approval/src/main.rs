//! The `request-approval` Lambda function's entry point, its composition root: reads the
//! configuration, builds the clients and runs the handler in `lib.rs`. Saga step: a high-value
//! order waits for a person; records the wait and publishes order.approval-requested with the task
//! token.

use busline::bus::EventBridgePublisher;
use busline::config::{Env, ProcessEnv};
use busline_fulfillment::status::DynamoDbOrderTracker;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use request_approval::ApprovalRequest;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let bus = ProcessEnv.require("BUS_NAME", "the event bus approval requests go to")?;
    let aws = busline::aws::load_config().await?;
    let tracker = DynamoDbOrderTracker::from_env(&ProcessEnv, &aws)?;
    let publisher = EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&aws), bus);
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApprovalRequest>| async {
        request_approval::handle(event.payload, &tracker, &publisher)
            .await
            .map_err(|e| busline::error::diagnostic(&e))
    }))
    .await
}
