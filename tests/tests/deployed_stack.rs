//! The stack deployed from `template.yaml` to LocalStack by `make deploy-local`, every function a
//! real process: a signed webhook through the ingest function's URL, the bus and its rule, the
//! placed-orders queue and its event-source mapping, to the audit-trail consumer; and a record that
//! is not an envelope, dead-lettered by the consumer with its reason.

use std::time::{Duration, Instant};

use busline::audit::{AuditTrail, DynamoDbAuditTrail};
use busline_tests::{
    DeployedStack, PATIENCE, SAMPLE_SHOP_ORDER, find_letter, function_log_lines, localstack,
    signed_headers,
};
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
            started.elapsed() < PATIENCE,
            "the order never reached the audit trail"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The transaction's history also holds the saga's outcome for the order, once it ends.
    let placed: Vec<_> = history
        .iter()
        .filter(|e| e.envelope.id == event_id)
        .collect();
    assert_eq!(placed.len(), 1, "kept exactly once");
    assert_eq!(
        placed[0].envelope.causationid.as_deref(),
        Some(delivery.as_str())
    );
    assert_eq!(placed[0].envelope.subject.as_deref(), Some("SO-1001"));
}

#[tokio::test]
async fn a_record_that_is_not_an_envelope_goes_to_the_dead_letter_queue_with_its_reason() {
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

    let dlq = stack.output("PlacedOrdersDeadLetterQueueUrl").unwrap();
    let letter = find_letter(&aws, dlq, |body| body == marker, PATIENCE)
        .await
        .expect("the bad record reaches the DLQ within 30 s");
    let attribute = |name: &str| letter.attribute(name).to_owned();
    assert_eq!(attribute("busline.error_type"), "NotAnEnvelope");
    assert_eq!(attribute("busline.record_id"), message_id);
    assert!(
        attribute("busline.reason")
            .starts_with("not a busline envelope: the body is not an EventBridge event"),
        "{}",
        attribute("busline.reason")
    );
    let queue_name = stack
        .output("PlacedOrdersQueueUrl")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    assert_eq!(
        attribute("busline.source").rsplit(':').next(),
        Some(queue_name),
        "the letter names the queue it came from"
    );

    // It was dead-lettered on its first delivery: a permanent failure is not retried. The
    // invocation's logs reach CloudWatch when it ends, which can be after the letter arrived.
    let started = Instant::now();
    let refusals = loop {
        let refusals = function_log_lines(&aws, "busline-audit-trail")
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.contains(&message_id) && m.contains("sent to the dead-letter queue"))
            .count();
        if refusals > 0 || started.elapsed() > Duration::from_secs(10) {
            break refusals;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(refusals, 1);
}

/// Receives what is in the dead-letter queue now, with message attributes, deleting it.
#[tokio::test]
async fn a_bad_signature_at_the_function_url_is_refused_with_401() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let not_the_secret = busline_tests::new_standard_webhooks_secret();
    let headers = signed_headers(&not_the_secret, SAMPLE_SHOP_ORDER, "e2e-bad");
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
