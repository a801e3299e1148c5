use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let aws = busline::aws::load_config().await;
    busline::transform::serve(&aws, |event| async move { translate::translate(&event) }).await
}
