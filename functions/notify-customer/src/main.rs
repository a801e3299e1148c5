//! The `notify-customer` Lambda function's entry point, its composition root: reads the
//! configuration, builds the clients and runs the handler in `lib.rs`. Tells the customer their
//! order is on its way: order.fulfilled to an HTTP email API, once.

use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use busline::batch::SqsDeadLetterQueue;
use busline::config::{Env, ProcessEnv};
use busline::retry::Deadline;
use busline_fulfillment::http::HttpSystem;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let url = ProcessEnv.require("EMAIL_API_URL", "the base URL of the email API")?;
    let dlq = ProcessEnv.require(
        "DEAD_LETTER_QUEUE_URL",
        "the queue notices that cannot be sent go to",
    )?;
    let aws = busline::aws::load_config().await?;
    let emails = HttpSystem::new(url, "EmailUnavailable", Duration::from_secs(3))?;
    let dead_letters = SqsDeadLetterQueue::on_first_letter(&aws, dlq);
    lambda_runtime::run(service_fn(|event: LambdaEvent<EventBridgeEvent<Value>>| {
        let emails = emails.clone().with_deadline(Deadline::of(&event.context));
        let dead_letters = &dead_letters;
        async move {
            notify_customer::handle(event.payload, &emails, dead_letters)
                .await
                .map(drop)
                .map_err(|e| busline::error::diagnostic(&e))
        }
    }))
    .await
}
