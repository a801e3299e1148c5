//! The `audit-trail` Lambda function's entry point, its composition root: reads the configuration,
//! builds the clients and runs the handler in `lib.rs`. SQS consumer that keeps every envelope it
//! receives in the audit trail, once, by correlation id.

use audit_trail::{CONCURRENCY, Config, handle};
use aws_lambda_events::event::sqs::SqsEvent;
use busline::audit::DynamoDbAuditTrail;
use busline::batch::{BatchProcessor, SqsDeadLetterQueue};
use busline::config::{Env, ProcessEnv};
use busline::retry::Deadline;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let config = Config::from_env(&ProcessEnv)?;
    let aws = busline::aws::load_config().await?;
    let trail = DynamoDbAuditTrail::new(aws_sdk_dynamodb::Client::new(&aws), &config.audit_table);
    let dead_letters = SqsDeadLetterQueue::on_first_letter(&aws, &config.dead_letter_queue_url);
    let processor = BatchProcessor::new()
        .concurrency(CONCURRENCY)
        .max_receives(Some(ProcessEnv.parse_or(
            "MAX_RECEIVE_COUNT",
            0,
            "the queue's maxReceiveCount (0: not told)",
        )?))
        .dead_letters(dead_letters);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        handle(
            event.payload,
            &trail,
            &processor,
            Deadline::of(&event.context),
        )
    }))
    .await
}
