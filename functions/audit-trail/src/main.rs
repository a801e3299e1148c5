use audit_trail::{Config, handle};
use aws_lambda_events::event::sqs::SqsEvent;
use busline::audit::DynamoDbAuditTrail;
use busline::config::ProcessEnv;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let config = Config::from_env(&ProcessEnv)?;
    let aws = busline::aws::load_config().await;
    let trail = DynamoDbAuditTrail::new(aws_sdk_dynamodb::Client::new(&aws), &config.audit_table);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async {
        Ok::<_, std::convert::Infallible>(handle(event.payload, &trail).await)
    }))
    .await
}
