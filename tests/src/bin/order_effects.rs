//! An SQS consumer whose side effect is not idempotent by itself: for each message
//! `{"order_id": "...", "poison": false}` it adds one to `applied` on the order's item in
//! `EFFECTS_TABLE`. busline's idempotency layer (records in `IDEMPOTENCY_TABLE`, keyed by order id)
//! makes a redelivery replay instead of adding again, and its batch layer reports only the failed
//! messages. A message with `"poison": true` fails every time, retryably, so the queue's redrive
//! policy moves it to the dead-letter queue after `maxReceiveCount`. Each record's outcome is logged
//! as `order <id>: applied | replayed | failed`.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::AttributeValue;
use busline::batch::{BatchError, BatchProcessor};
use busline::config::{Env, ProcessEnv};
use busline::error::{Classify, ErrorClass};
use busline::idempotency::{DynamoDbIdempotencyStore, Idempotency, Selector};
use busline::retry::Deadline;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
enum EffectError {
    #[error("order {0} is poison: it fails on every delivery")]
    Poison(String),
    #[error("the effects table refused the update")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Classify for EffectError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }
    fn error_type(&self) -> &'static str {
        match self {
            Self::Poison(_) => "PoisonMessage",
            Self::Store(_) => "EffectsUnavailable",
        }
    }
}

struct Deps {
    dynamodb: aws_sdk_dynamodb::Client,
    effects_table: String,
    idempotency: Idempotency<DynamoDbIdempotencyStore, SqsMessage>,
    processor: BatchProcessor,
}

fn order_of(message: &SqsMessage) -> Value {
    serde_json::from_str(message.body.as_deref().unwrap_or_default()).unwrap_or_default()
}

async fn apply(deps: &Deps, order_id: &str) -> Result<u64, EffectError> {
    let output = deps
        .dynamodb
        .update_item()
        .table_name(&deps.effects_table)
        .key("pk", AttributeValue::S(order_id.to_owned()))
        .update_expression("ADD applied :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
        .send()
        .await
        .map_err(|e| EffectError::Store(Box::new(e)))?;
    let applied = output
        .attributes()
        .and_then(|a| a.get("applied"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    Ok(applied)
}

async fn handle(event: LambdaEvent<SqsEvent>, deps: &Deps) -> Result<SqsBatchResponse, BatchError> {
    let deadline = Deadline::of(&event.context);
    let report = deps
        .processor
        .sqs(&event.payload, async |message| {
            let order = order_of(message);
            let order_id = order["order_id"].as_str().unwrap_or_default().to_owned();
            let handled = deps
                .idempotency
                .run_detailed(message, Some(deadline), || async {
                    if order["poison"] == true {
                        return Err(EffectError::Poison(order_id.clone()));
                    }
                    apply(deps, &order_id).await
                })
                .await;
            match &handled {
                Ok(h) if h.replayed => println!("order {order_id}: replayed"),
                Ok(h) => println!("order {order_id}: applied (count {})", h.response),
                Err(e) => println!("order {order_id}: failed ({e})"),
            }
            handled.map(drop)
        })
        .await;
    report.into_result()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let aws = busline::aws::load_config().await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let idempotency = Idempotency::new(
        DynamoDbIdempotencyStore::new(
            dynamodb.clone(),
            ProcessEnv.require("IDEMPOTENCY_TABLE", "the idempotency table")?,
        ),
        "order-effects",
        Selector::function(|m: &SqsMessage| order_of(m)["order_id"].as_str().map(str::to_owned)),
    );
    let deps = Deps {
        effects_table: ProcessEnv.require("EFFECTS_TABLE", "the effects table")?,
        dynamodb,
        idempotency,
        processor: BatchProcessor::new().concurrency(4),
    };
    lambda_runtime::run(service_fn(|event| handle(event, &deps))).await
}
