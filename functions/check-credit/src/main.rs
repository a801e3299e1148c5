//! The `check-credit` Lambda function's entry point, its composition root: reads the configuration,
//! builds the clients and runs the handler in `lib.rs`. Saga step: checks the order total against
//! the customer's credit limit minus what they owe.

use busline::config::ProcessEnv;
use busline_fulfillment::ApprovalPolicy;
use busline_fulfillment::status::{DynamoDbOrderTracker, Step};
use busline_fulfillment::step::serve_step;
use busline_fulfillment::system::{Kind, System};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let policy = ApprovalPolicy::from_env(&ProcessEnv)?;
    let aws = busline::aws::load_config().await?;
    let systems = System::from_env(Kind::CustomerAccounts, &ProcessEnv, &aws)?;
    let tracker = DynamoDbOrderTracker::from_env(&ProcessEnv, &aws)?;
    serve_step(&tracker, Step::CheckCredit, |state| {
        check_credit::handle(state, &systems, &policy)
    })
    .await
}
