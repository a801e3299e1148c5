//! The `reserve-inventory` Lambda function's entry point, its composition root: reads the
//! configuration, builds the clients and runs the handler in `lib.rs`. Saga step: reserves every
//! line of an order atomically and requests purchase orders for SKUs under their reorder point.

use busline::bus::EventBridgePublisher;
use busline::config::{Env, ProcessEnv};
use busline_fulfillment::status::{DynamoDbOrderTracker, Step};
use busline_fulfillment::step::serve_step;
use busline_fulfillment::system::{Kind, System};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let bus = ProcessEnv.require("BUS_NAME", "the event bus purchase-order requests go to")?;
    let aws = busline::aws::load_config().await?;
    let inventory = System::from_env(Kind::Inventory, &ProcessEnv, &aws)?;
    let tracker = DynamoDbOrderTracker::from_env(&ProcessEnv, &aws)?;
    let publisher = EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&aws), bus);
    serve_step(&tracker, Step::ReserveInventory, |state| {
        reserve_inventory::handle(state, &inventory, &publisher)
    })
    .await
}
