//! The `mdm-customer` Lambda function's entry point, its composition root: reads the configuration,
//! builds the clients and runs the handler in `lib.rs`. The customer master: merges customer
//! changes from the CRM, the web shop and the ERP into one golden record, field by field, with
//! survivorship rules and provenance.

use aws_lambda_events::event::sqs::SqsEvent;
use busline::batch::{BatchProcessor, SqsDeadLetterQueue};
use busline::bus::EventBridgePublisher;
use busline::claim_check::S3PayloadStore;
use busline::config::{Env, ProcessEnv};
use busline::retry::Deadline;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use mdm_customer::store::DynamoDbMasterStore;
use mdm_customer::{CustomerMaster, handle, rules_from_env};

#[tokio::main]
async fn main() -> Result<(), Error> {
    busline::telemetry::init_tracing();
    let rules = rules_from_env(&ProcessEnv)?;
    let table = ProcessEnv.require("MASTER_TABLE", "the customer master's DynamoDB table")?;
    let bus = ProcessEnv.require("BUS_NAME", "the event bus master changes are published to")?;
    let dlq = ProcessEnv.require(
        "DEAD_LETTER_QUEUE_URL",
        "the queue changes that can never be merged go to",
    )?;
    let bucket = ProcessEnv.require(
        "CLAIM_CHECK_BUCKET",
        "the S3 bucket payloads too large for the bus are checked in to",
    )?;
    let aws = busline::aws::load_config().await?;
    let payloads = S3PayloadStore::new(&aws, bucket);
    let master = CustomerMaster {
        store: DynamoDbMasterStore::new(aws_sdk_dynamodb::Client::new(&aws), table),
        publisher: EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&aws), bus),
        rules,
    };
    // Four at a time: the merge is commutative and every write conditional on the version read, so
    // two changes of one customer in a batch race safely (the loser re-reads and re-merges); one at
    // a time, a batch of ten on a slow bus outlived the function's timeout.
    let processor = BatchProcessor::new()
        .concurrency(4)
        .max_receives(Some(ProcessEnv.parse_or(
            "MAX_RECEIVE_COUNT",
            0,
            "the queue's maxReceiveCount (0: not told)",
        )?))
        .dead_letters(SqsDeadLetterQueue::on_first_letter(&aws, dlq));
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        handle(
            event.payload,
            &master,
            &processor,
            &payloads,
            Deadline::of(&event.context),
        )
    }))
    .await
}
