//! The `enrich` Lambda function's entry point, its composition root: reads the configuration,
//! builds the clients and runs the handler in `lib.rs`. Content enricher: adds the customer's tier
//! and credit limit from the customer master to each order before the saga starts.

use std::time::Duration;

use busline::config::{Env, ProcessEnv};
use enrich::master::{CachedMaster, DynamoDbCustomerMaster};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let table = ProcessEnv.require(
        "CUSTOMER_MASTER_TABLE",
        "the customer master's DynamoDB table",
    )?;
    let ttl = ProcessEnv.parse_or(
        "CUSTOMER_CACHE_TTL_SECONDS",
        60u64,
        "seconds a lookup is cached",
    )?;
    let aws = busline::aws::load_config().await?;
    let master = CachedMaster::new(
        DynamoDbCustomerMaster::new(aws_sdk_dynamodb::Client::new(&aws), table),
        Duration::from_secs(ttl),
        enrich::master::CACHE_ENTRIES,
    );
    let master = &master;
    busline::transform::serve(&aws, move |event| async move {
        enrich::enrich(&event, master).await
    })
    .await
}
