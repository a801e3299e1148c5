//! The stack deployed from `template.yaml` to LocalStack by `make deploy-local`: the ingest function
//! runs as a real process behind its Function URL, with the template's own bus, rule, queue, table
//! and secrets.

use std::time::{Duration, Instant};

use busline::Envelope;
use busline_tests::{DeployedStack, SAMPLE_SHOP_ORDER, localstack, signed_headers};
use serde_json::Value;

#[tokio::test]
async fn a_signed_webhook_to_the_function_url_reaches_the_routed_queue_once() {
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

    // The queue is shared with other runs: collect until our event has come and a quiet spell has
    // passed, and count only ours.
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue_url = stack.output("PlacedOrdersQueueUrl").unwrap();
    let started = Instant::now();
    let mut ours = Vec::new();
    while started.elapsed() < Duration::from_secs(20)
        && (ours.is_empty() || started.elapsed() < Duration::from_secs(4))
    {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in out.messages() {
            let event = serde_json::from_str(message.body().unwrap()).unwrap();
            let envelope: Envelope<Value> = Envelope::from_eventbridge(event).unwrap();
            if envelope.id == event_id {
                ours.push(envelope);
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    assert_eq!(
        ours.len(),
        1,
        "the delivery should reach the queue exactly once"
    );
    assert_eq!(ours[0].causationid.as_deref(), Some(delivery.as_str()));
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
