//! The stack deployed from `template.yaml` to LocalStack by `make deploy-local`, every function a
//! real process: a signed webhook through the ingest function's URL, the bus and its rule, the
//! placed-orders queue and its event-source mapping, to the audit-trail consumer; and a bad record
//! redelivered until it lands in the dead-letter queue.

use std::time::{Duration, Instant};

use busline::audit::{AuditTrail, DynamoDbAuditTrail};
use busline_tests::{DeployedStack, SAMPLE_SHOP_ORDER, localstack, signed_headers};
use serde_json::Value;

#[tokio::test]
async fn a_signed_webhook_reaches_the_audit_trail_consumer_once() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let secret = stack.secret(&aws, "ShopWebhookSecretArn").await.unwrap();
    let delivery = format!("e2e-{}", uuid::Uuid::new_v4().simple());
    let headers = signed_headers(&secret, SAMPLE_SHOP_ORDER, &delivery);

    let (status, accepted) = stack
        .post_webhook("/webhooks/shop", SAMPLE_SHOP_ORDER, &headers)
        .await
        .unwrap();
    assert_eq!(status, 202, "{accepted}");
    let (status, again) = stack
        .post_webhook("/webhooks/shop", SAMPLE_SHOP_ORDER, &headers)
        .await
        .unwrap();
    assert_eq!(
        (status, &again["duplicate"]),
        (202, &Value::Bool(true)),
        "{again}"
    );
    let event_id = accepted["eventId"].as_str().unwrap();

    // The envelope starts its own transaction, so its correlation id is its event id.
    let trail = DynamoDbAuditTrail::new(
        aws_sdk_dynamodb::Client::new(&aws),
        stack.output("AuditTrailTableName").unwrap(),
    );
    let started = Instant::now();
    let history = loop {
        let history = trail.history(event_id).await.unwrap();
        if !history.is_empty() && started.elapsed() > Duration::from_secs(3) {
            break history;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the order never reached the audit trail"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(history.len(), 1, "kept exactly once");
    assert_eq!(
        history[0].envelope.causationid.as_deref(),
        Some(delivery.as_str())
    );
    assert_eq!(history[0].envelope.subject.as_deref(), Some("SO-1001"));
}

#[tokio::test]
async fn a_record_the_consumer_cannot_keep_is_redelivered_then_dead_lettered() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let marker = format!("not-an-envelope-{}", uuid::Uuid::new_v4().simple());
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let sent = sqs
        .send_message()
        .queue_url(stack.output("PlacedOrdersQueueUrl").unwrap())
        .message_body(&marker)
        .send()
        .await
        .unwrap();
    let message_id = sent.message_id().unwrap().to_owned();

    // samconfig's localstack environment sets maxReceiveCount 2 and a 5 s visibility timeout.
    let dlq = stack.output("PlacedOrdersDeadLetterQueueUrl").unwrap();
    let started = Instant::now();
    let mut found = false;
    while !found && started.elapsed() < Duration::from_secs(60) {
        found = raw_bodies(&sqs, dlq).await.contains(&marker);
    }
    assert!(found, "the bad record did not reach the DLQ within 60 s");

    // Each delivery was refused by the consumer, with its reason, before SQS gave up on it.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws)
        .filter_log_events()
        .log_group_name("/aws/lambda/busline-audit-trail")
        .send()
        .await
        .unwrap();
    let refusals = logs
        .events()
        .iter()
        .filter_map(|e| e.message())
        .filter(|m| m.contains(&message_id) && m.contains("not a busline envelope"))
        .count();
    assert!(
        refusals >= 2,
        "expected the record to be refused on each of its 2 deliveries, saw {refusals}"
    );
}

async fn raw_bodies(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<String> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for message in out.messages() {
        bodies.push(message.body().unwrap_or_default().to_owned());
        sqs.delete_message()
            .queue_url(queue_url)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    }
    bodies
}

#[tokio::test]
async fn a_bad_signature_at_the_function_url_is_refused_with_401() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let headers = signed_headers("not-the-secret", SAMPLE_SHOP_ORDER, "e2e-bad");
    let (status, answer) = stack
        .post_webhook("/webhooks/shop", SAMPLE_SHOP_ORDER, &headers)
        .await
        .unwrap();
    assert_eq!(
        (status, &answer["error"]),
        (401, &Value::from("bad_signature")),
        "{answer}"
    );
}
