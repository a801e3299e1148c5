use busline::config::ProcessEnv;
use busline::fulfillment::status::{DynamoDbOrderTracker, Step, serve_step};
use busline::fulfillment::system::{Kind, System};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let aws = busline::aws::load_config().await;
    let systems = System::from_env(Kind::Payments, &ProcessEnv, &aws)?;
    let tracker = DynamoDbOrderTracker::from_env(&ProcessEnv, &aws)?;
    serve_step(&tracker, Step::RefundPayment, |state| {
        refund_payment::handle(state, &systems)
    })
    .await
}
