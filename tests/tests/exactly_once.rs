//! At-least-once delivery made safe, end to end on LocalStack: the `order-effects` consumer (a
//! real process behind an SQS event-source mapping) applies a side effect that is not idempotent by
//! itself, through busline's batch and idempotency layers.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_lambda::types::FunctionResponseType;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use busline_tests::{
    PATIENCE, create_key_table, create_queue, deploy_process_function, function_log_lines,
    localstack, queue_faults, receive,
};
use serde_json::{Value, json};

const ORDER_EFFECTS: &str = env!("CARGO_BIN_EXE_order-effects");

/// One consumer with its own queue, dead-letter queue (after 2 receives) and tables.
struct Consumer {
    name: String,
    queue_url: String,
    dlq_url: String,
    effects_table: String,
}

impl Consumer {
    async fn deploy(aws: &SdkConfig) -> Self {
        let name = format!(
            "order-effects-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let (idempotency_table, effects_table) =
            (format!("{name}-idempotency"), format!("{name}-effects"));
        create_key_table(aws, &idempotency_table, Some("expires_at"))
            .await
            .unwrap();
        create_key_table(aws, &effects_table, None).await.unwrap();
        deploy_process_function(
            aws,
            &name,
            ORDER_EFFECTS,
            3,
            &[
                ("IDEMPOTENCY_TABLE", &idempotency_table),
                ("EFFECTS_TABLE", &effects_table),
            ],
        )
        .await
        .unwrap();
        let (dlq_url, dlq_arn) = create_queue(aws, &format!("{name}-dlq"), &[])
            .await
            .unwrap();
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string();
        let (queue_url, queue_arn) = create_queue(
            aws,
            &name,
            &[
                (QueueAttributeName::RedrivePolicy, redrive),
                // Longer than the function's 3 s timeout, as AWS requires.
                (QueueAttributeName::VisibilityTimeout, "4".into()),
            ],
        )
        .await
        .unwrap();
        aws_sdk_lambda::Client::new(aws)
            .create_event_source_mapping()
            .function_name(&name)
            .event_source_arn(&queue_arn)
            .batch_size(10)
            .maximum_batching_window_in_seconds(1)
            .function_response_types(FunctionResponseType::ReportBatchItemFailures)
            .send()
            .await
            .unwrap();
        Self {
            name,
            queue_url,
            dlq_url,
            effects_table,
        }
    }

    async fn send(&self, aws: &SdkConfig, orders: &[(&str, bool)]) {
        let entries = orders
            .iter()
            .enumerate()
            .map(|(i, (id, poison))| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(json!({"order_id": id, "poison": poison}).to_string())
                    .build()
                    .unwrap()
            })
            .collect();
        let out = aws_sdk_sqs::Client::new(aws)
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert!(out.failed().is_empty(), "{:?}", out.failed());
    }

    /// How many times the side effect was applied to `order_id`.
    async fn applied(&self, aws: &SdkConfig, order_id: &str) -> u64 {
        aws_sdk_dynamodb::Client::new(aws)
            .get_item()
            .table_name(&self.effects_table)
            .key("pk", AttributeValue::S(order_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .and_then(|item| item.get("applied").and_then(|v| v.as_n().ok()).cloned())
            .map_or(0, |n| n.parse().unwrap())
    }

    async fn outcomes(&self, aws: &SdkConfig, order_id: &str) -> Vec<String> {
        let prefix = format!("order {order_id}: ");
        function_log_lines(aws, &self.name)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|line| {
                line.find(&prefix)
                    .map(|at| line[at + prefix.len()..].to_owned())
            })
            .map(|outcome| {
                outcome
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// The orders in the dead-letter queue: at least `expected`, waiting up to `within`, then
    /// whatever else arrives within `settle`.
    async fn dead_letters(
        &self,
        aws: &SdkConfig,
        expected: usize,
        settle: Duration,
        within: Duration,
    ) -> Vec<Value> {
        receive(aws, &self.dlq_url, expected, settle, within)
            .await
            .unwrap()
    }
}

async fn wait_for(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < within,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_after_max_receive_count_without_blocking_its_neighbours()
{
    let aws = localstack().await.unwrap();
    let consumer = Consumer::deploy(&aws).await;
    let good = ["SO-1", "SO-2", "SO-3", "SO-4"];
    let mut batch: Vec<(&str, bool)> = good.iter().map(|id| (*id, false)).collect();
    batch.insert(2, ("SO-POISON", true));
    consumer.send(&aws, &batch).await;

    let letters = consumer
        .dead_letters(&aws, 1, Duration::ZERO, PATIENCE)
        .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["order_id"], "SO-POISON", "{letters:?}");

    assert_eq!(
        consumer.outcomes(&aws, "SO-POISON").await,
        ["failed", "failed"],
        "the poison message is tried maxReceiveCount times"
    );
    assert_eq!(consumer.applied(&aws, "SO-POISON").await, 0);
    for id in good {
        assert_eq!(consumer.applied(&aws, id).await, 1, "{id}");
        assert_eq!(
            consumer.outcomes(&aws, id).await,
            ["applied"],
            "{id} was acknowledged on its first delivery, not redelivered with the poison"
        );
    }
}

#[tokio::test]
async fn a_crash_after_the_side_effect_is_redelivered_and_the_effect_happens_once() {
    let aws = localstack().await.unwrap();
    let consumer = Consumer::deploy(&aws).await;
    // The executor lets the invocation finish (the side effect and its idempotency record are
    // written), then kills the process before its answer reaches the mapping: nothing is
    // acknowledged, and SQS redelivers the message after its visibility timeout.
    queue_faults(&consumer.name, json!([{"fault": "crash"}])).unwrap();
    consumer.send(&aws, &[("SO-CRASH", false)]).await;

    wait_for("the redelivery", PATIENCE, async || {
        consumer.outcomes(&aws, "SO-CRASH").await.len() >= 2
    })
    .await;
    assert_eq!(
        consumer.outcomes(&aws, "SO-CRASH").await,
        ["applied", "replayed"]
    );
    assert_eq!(
        consumer.applied(&aws, "SO-CRASH").await,
        1,
        "the side effect happened once"
    );
    assert!(
        consumer
            .dead_letters(&aws, 0, Duration::from_secs(2), Duration::from_secs(3))
            .await
            .is_empty()
    );
}
