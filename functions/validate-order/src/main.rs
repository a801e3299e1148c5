use busline::fulfillment::SagaState;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    lambda_runtime::run(service_fn(|event: LambdaEvent<SagaState>| async {
        validate_order::handle(event.payload)
            .await
            .map_err(|e| busline::error::diagnostic(&e))
    }))
    .await
}
