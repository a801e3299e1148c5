//! The reliability toolkit's DynamoDB and SQS adapters against LocalStack: the contracts their
//! in-memory twins keep, and what each message costs in calls, counted on the wire.

use busline::batch::{DeadLetter, DeadLetterQueue, SqsDeadLetterQueue};
use busline::checkpoint::{self, DynamoDbCheckpointStore};
use busline::idempotency::{
    self, DynamoDbIdempotencyStore, Idempotency, IdempotencyError, Selector,
};
use busline_tests::{CallCounter, create_key_table, localstack};
use serde_json::{Value, json};

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl busline::Classify for Never {
    fn class(&self) -> busline::ErrorClass {
        busline::ErrorClass::Retryable
    }
    fn error_type(&self) -> &'static str {
        "Never"
    }
}

#[tokio::test]
async fn the_dynamodb_idempotency_store_keeps_the_contract() {
    let aws = localstack().await.unwrap();
    let table = unique("idempotency");
    create_key_table(&aws, &table, Some("expires_at"))
        .await
        .unwrap();
    let store = DynamoDbIdempotencyStore::new(aws_sdk_dynamodb::Client::new(&aws), &table);
    idempotency::contract(&store, "contract").await;
}

#[tokio::test]
async fn the_dynamodb_checkpoint_store_keeps_the_contract() {
    let aws = localstack().await.unwrap();
    let table = unique("checkpoints");
    create_key_table(&aws, &table, None).await.unwrap();
    let store = DynamoDbCheckpointStore::new(aws_sdk_dynamodb::Client::new(&aws), &table);
    checkpoint::contract(&store, "").await;
}

#[tokio::test]
async fn calls_per_message_first_two_duplicate_one_batch_of_ten_two() {
    let aws = localstack().await.unwrap();
    let table = unique("idempotency");
    create_key_table(&aws, &table, Some("expires_at"))
        .await
        .unwrap();
    let counter = CallCounter::default();
    let store = DynamoDbIdempotencyStore::new(counter.dynamodb(&aws), &table);
    let idempotency = Idempotency::new(store, "orders", Selector::pointers(["/order_id"]));
    let handle = async |event: &Value| -> Result<String, IdempotencyError<Never>> {
        idempotency
            .run(event, None, || async {
                Ok(format!("done-{}", event["order_id"]))
            })
            .await
    };

    handle(&json!({"order_id": "SO-1"})).await.unwrap();
    assert_eq!(
        counter.take(),
        ["PutItem", "PutItem"],
        "first time: claim, complete"
    );
    assert_eq!(
        handle(&json!({"order_id": "SO-1"})).await.unwrap(),
        "done-\"SO-1\""
    );
    assert_eq!(
        counter.take(),
        ["PutItem"],
        "duplicate: the claim's failed condition returns the record"
    );

    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"order_id": format!("B-{i}")}))
        .collect();
    let run_batch = async || {
        idempotency
            .run_all(&batch, None, 10, async |e: &Value| {
                Ok::<_, Never>(e["order_id"].clone())
            })
            .await
    };
    assert!(run_batch().await.iter().all(Result::is_ok));
    assert_eq!(
        counter.take(),
        ["TransactWriteItems", "BatchWriteItem"],
        "ten distinct messages: two calls"
    );
    let replayed: Vec<Value> = run_batch()
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .filter(|h| h.replayed)
        .map(|h| h.response)
        .collect();
    assert_eq!(
        replayed,
        (0..10).map(|i| json!(format!("B-{i}"))).collect::<Vec<_>>()
    );
    assert_eq!(
        counter.take(),
        ["TransactWriteItems"],
        "a redelivered batch: one call"
    );

    // Three duplicates among seven new: the cancelled transaction names the duplicates, the rest
    // is claimed in a second one.
    let mixed: Vec<Value> = (7..17)
        .map(|i| json!({"order_id": format!("B-{i}")}))
        .collect();
    let ran = std::cell::Cell::new(0);
    let results = idempotency
        .run_all(&mixed, None, 10, async |e: &Value| {
            ran.set(ran.get() + 1);
            Ok::<_, Never>(e["order_id"].clone())
        })
        .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(ran.get(), 7);
    assert_eq!(
        counter.take(),
        ["TransactWriteItems", "TransactWriteItems", "BatchWriteItem"]
    );
}

#[tokio::test]
async fn a_dead_letter_carries_its_reason_in_message_attributes() {
    let aws = localstack().await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("dead-letters"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let letter = DeadLetter {
        body: r#"{"order_id":"SO-1"}"#.into(),
        record_id: "m-1".into(),
        source: Some("arn:aws:sqs:us-east-1:000000000000:orders".into()),
        group: None,
        error_type: "OrderMalformed".into(),
        reason: "order SO-1 has no lines".into(),
    };
    SqsDeadLetterQueue::new(sqs.clone(), &queue_url)
        .send(&letter)
        .await
        .unwrap();
    // The queue the functions build at start, whose client waits for the first letter.
    let lazy = SqsDeadLetterQueue::on_first_letter(&aws, &queue_url);
    assert!(!lazy.client_built());
    let copy = lazy.clone();
    lazy.send(&letter).await.unwrap();
    assert!(
        lazy.client_built() && copy.client_built(),
        "one client, shared by clones"
    );
    let mut received = Vec::new();
    for _ in 0..5 {
        received.extend(
            sqs.receive_message()
                .queue_url(&queue_url)
                .message_attribute_names("All")
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default(),
        );
        if received.len() >= 2 {
            break;
        }
    }
    assert_eq!(received.len(), 2, "one letter from each queue");
    assert_eq!(received[0].body(), received[1].body());
    assert_eq!(
        received[0].message_attributes(),
        received[1].message_attributes()
    );
    let message = &received[0];
    assert_eq!(message.body(), Some(letter.body.as_str()));
    let attribute = |name: &str| {
        message
            .message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_owned)
    };
    assert_eq!(
        attribute("busline.error_type").as_deref(),
        Some("OrderMalformed")
    );
    assert_eq!(
        attribute("busline.reason").as_deref(),
        Some("order SO-1 has no lines")
    );
    assert_eq!(attribute("busline.record_id").as_deref(), Some("m-1"));
    assert_eq!(
        attribute("busline.source").as_deref(),
        Some("arn:aws:sqs:us-east-1:000000000000:orders")
    );
}
