//! The `approve-order` Lambda function's entry point, its composition root: reads the
//! configuration, builds the clients and runs the handler in `lib.rs`. POST /orders/{id}/approval:
//! a person approves or rejects a high-value order, resuming its saga.

use approve_order::{Deps, StepFunctionsCallbacks, handle};
use busline::config::{Env, ProcessEnv};
use busline_fulfillment::status::DynamoDbOrderTracker;
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let secret_id = ProcessEnv.require(
        "APPROVERS_SECRET",
        "the Secrets Manager id of the approvers' signing secret",
    )?;
    let tolerance_secs = ProcessEnv.parse_or(
        "SIGNATURE_TOLERANCE_SECONDS",
        busline::signature::DEFAULT_TOLERANCE_SECS,
        "seconds a signature's timestamp may be away from now",
    )?;
    let aws = busline::aws::load_config().await?;
    let secret =
        busline::aws::secret_string(&aws_sdk_secretsmanager::Client::new(&aws), &secret_id).await?;
    let key = busline::signature::Scheme::StandardWebhooks
        .key(&secret)
        .map_err(|e| {
            format!("the approvers' secret {secret_id} is not a Standard Webhooks secret: {e}")
        })?;
    let deps = Deps {
        tracker: DynamoDbOrderTracker::from_env(&ProcessEnv, &aws)?,
        callbacks: StepFunctionsCallbacks::new(aws_sdk_sfn::Client::new(&aws)),
        key,
        tolerance_secs,
    };
    lambda_http::run(service_fn(|request| async {
        Ok::<_, std::convert::Infallible>(handle(request, &deps).await)
    }))
    .await
}
