//! The `split` Lambda function's entry point, its composition root: reads the configuration, builds
//! the clients and runs the handler in `lib.rs`. Splitter: one fulfillment.requested per warehouse
//! for each order, n of m, with the order's correlation id.

use busline::config::{Env, ProcessEnv};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let default_warehouse = ProcessEnv.require(
        "DEFAULT_WAREHOUSE",
        "the warehouse that ships lines the order assigns to none",
    )?;
    let aws = busline::aws::load_config().await?;
    let default_warehouse = default_warehouse.as_str();
    busline::transform::serve(&aws, move |event| async move {
        split::split(&event, default_warehouse)
    })
    .await
}
