//! The `order-status` Lambda function's entry point, its composition root: reads the configuration,
//! builds the clients and runs the handler in `lib.rs`. GET /orders/{id}: where an order stands,
//! from the projection the saga keeps.

use busline::config::ProcessEnv;
use busline_fulfillment::status::DynamoDbOrderTracker;
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let aws = busline::aws::load_config().await?;
    let tracker = DynamoDbOrderTracker::from_env(&ProcessEnv, &aws)?;
    lambda_http::run(service_fn(|request| async {
        Ok::<_, std::convert::Infallible>(order_status::handle(request, &tracker).await)
    }))
    .await
}
