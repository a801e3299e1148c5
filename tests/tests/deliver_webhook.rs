//! Webhook delivery on the deployed stack: an `order.fulfilled` on the bus reaches the warehouse's
//! endpoint (a stub on 127.0.0.1:8027, where the LocalStack deployment points `WarehouseWebhookUrl`)
//! through the rule, the deliveries queue and deliver-webhook (a real process), signed with the
//! outbound secret and keyed for deduplication; an event the endpoint refuses lands in the
//! deliveries dead-letter queue with the status and the answer. And the circuit store's contract on
//! DynamoDB. One test holds the port.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use busline::bus::{EventBridgePublisher, EventPublisher};
use busline::{Envelope, EventType};
use busline_tests::{DeployedStack, PATIENCE, create_key_table, find_letter, localstack};
use deliver_webhook::circuit::{DynamoDbCircuitStore, contract};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WAREHOUSE: &str = "127.0.0.1:8027";

fn fulfilled(id: &str) -> Envelope<serde_json::Value> {
    Envelope::new(
        id,
        "busline.saga.order-fulfillment",
        EventType::parse("io.busline.order.fulfilled.v1").unwrap(),
        json!({"order_id": id, "customer": {"id": "C-1", "email": "ada@example.com"}, "tracking_number": "BL1"}),
    )
    .with_subject(id.to_owned())
}

#[tokio::test]
async fn subscribed_events_are_delivered_signed_and_refusals_dead_lettered() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let listener =
        std::net::TcpListener::bind(WAREHOUSE).expect("port 8027 is free for the stub warehouse");
    let server = MockServer::builder().listener(listener).start().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (good, bad) = (format!("SO-good-{tag}"), format!("SO-bad-{tag}"));
    let flaky = format!("SO-flaky-{tag}");
    // The flaky one fails once: deliver-webhook requeues it on the real queue, with its attempt
    // and first-attempt time as message attributes and SQS's delay as the backoff.
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .and(header(
            "idempotency-key",
            format!("busline.saga.order-fulfillment:{flaky}"),
        ))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .and(header(
            "idempotency-key",
            format!("busline.saga.order-fulfillment:{bad}"),
        ))
        .respond_with(ResponseTemplate::new(422).set_body_string("no such warehouse order"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    // Earlier tests' deliveries found no one listening: start from a closed circuit.
    aws_sdk_dynamodb::Client::new(&aws)
        .delete_item()
        .table_name(stack.output("CircuitTableName").unwrap())
        .key("pk", AttributeValue::S("circuit#warehouse".to_owned()))
        .send()
        .await
        .unwrap();

    EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::new(&aws),
        stack.output("EventBusName").unwrap(),
    )
    .publish(&[fulfilled(&good), fulfilled(&bad), fulfilled(&flaky)])
    .await
    .unwrap();

    let key = format!("busline.saga.order-fulfillment:{good}");
    let started = Instant::now();
    let request = loop {
        let requests = server.received_requests().await.unwrap_or_default();
        if let Some(r) = requests.into_iter().find(|r| {
            r.headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                == Some(key.as_str())
        }) {
            break r;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the event never reached the warehouse"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let secret = stack
        .secret(&aws, "WarehouseEndpointSecretArn")
        .await
        .unwrap();
    let scheme = busline::signature::Scheme::StandardWebhooks;
    let verified = busline::signature::verify(
        scheme,
        &scheme.key(&secret).unwrap(),
        |name| request.headers.get(name).and_then(|v| v.to_str().ok()),
        &request.body,
        chrono::Utc::now().timestamp() as u64,
        300,
    )
    .expect("signed with the warehouse endpoint's own secret");
    // A receiver busline did not write agrees: the official Standard Webhooks package.
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    busline_tests::interop::standard_webhooks_verifies(&secret, &headers, &request.body)
        .expect("the official standardwebhooks package verifies the delivery");
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(verified.delivery_id, body["id"].as_str().unwrap());

    let flaky_key = format!("busline.saga.order-fulfillment:{flaky}");
    let started = Instant::now();
    loop {
        let attempts = server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| {
                r.headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    == Some(flaky_key.as_str())
            })
            .count();
        if attempts >= 2 {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the failed delivery was not retried from its requeued message ({attempts} attempts)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["subject"], good.as_str());

    let letter = find_letter(
        &aws,
        stack.output("DeliveriesDeadLetterQueueUrl").unwrap(),
        |body| body.contains(&bad),
        PATIENCE,
    )
    .await
    .unwrap();
    assert_eq!(letter.attribute("busline.error_type"), "DeliveryRefused");
    assert!(
        letter.attribute("busline.reason").contains("422")
            && letter
                .attribute("busline.reason")
                .contains("no such warehouse order"),
        "{}",
        letter.attribute("busline.reason")
    );
}

#[tokio::test]
async fn the_dynamodb_circuit_store_keeps_the_contract() {
    let aws = localstack().await.unwrap();
    let table = format!(
        "circuits-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    create_key_table(&aws, &table, None).await.unwrap();
    contract(
        &DynamoDbCircuitStore::new(aws_sdk_dynamodb::Client::new(&aws), &table),
        "",
    )
    .await;
}
