//! The `translate` Lambda function's entry point, its composition root: reads the configuration,
//! builds the clients and runs the handler in `lib.rs`. The hub's translator: web-shop and
//! marketplace orders, CRM and help-desk customers, into busline's canonical events.

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let aws = busline::aws::load_config().await?;
    busline::transform::serve(&aws, |event| async move { translate::translate(&event) }).await
}
