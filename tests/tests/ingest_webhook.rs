//! The ingest connector against LocalStack, with real SDK clients: Secrets Manager for the signing
//! secrets, DynamoDB for the idempotency records, EventBridge for the bus, and the rule's SQS queue as
//! the consumer.

use std::time::Duration;

use aws_config::SdkConfig;
use busline::Envelope;
use busline::bus::EventBridgePublisher;
use busline::config::ConfigError;
use busline::idempotency::DynamoDbIdempotencyStore;
use busline::retry::Backoff;
use busline_tests::{
    Headers, IngestStack, SAMPLE_CRM_CUSTOMER, SAMPLE_SHOP_ORDER, localstack, receive,
    signed_headers, webhook_request,
};
use ingest_webhook::{Config, Deps, StartupError, event_id, fetch_secrets, handle};
use lambda_http::http::StatusCode;
use serde_json::{Value, json};

type LiveDeps = Deps<EventBridgePublisher, DynamoDbIdempotencyStore>;

const SETTLE: Duration = Duration::from_secs(3);
const TIMEOUT: Duration = Duration::from_secs(20);

fn prefix() -> String {
    format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// The function's start-up path, as `main.rs` runs it, against the stack.
async fn start(aws: &SdkConfig, stack: &IngestStack) -> LiveDeps {
    start_with_bus_at(aws, stack, aws).await
}

/// [`start`], with the EventBridge client built from `bus_aws`.
async fn start_with_bus_at(aws: &SdkConfig, stack: &IngestStack, bus_aws: &SdkConfig) -> LiveDeps {
    let env = [
        ("BUS_NAME", stack.bus_name.as_str()),
        ("IDEMPOTENCY_TABLE", stack.table.as_str()),
        ("WEBHOOK_SOURCES", &stack.webhook_sources()),
    ];
    let config = Config::from_env(&env).unwrap();
    let secrets = fetch_secrets(&aws_sdk_secretsmanager::Client::new(aws), &config)
        .await
        .unwrap();
    let fast = Backoff {
        max_attempts: 2,
        base: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
    };
    let publisher =
        EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(bus_aws), &config.bus_name)
            .with_backoff(fast);
    let store = DynamoDbIdempotencyStore::new(
        aws_sdk_dynamodb::Client::new(aws),
        &config.idempotency_table,
    );
    Deps::new(publisher, store, &config, secrets).unwrap()
}

async fn post(
    deps: &LiveDeps,
    stack: &IngestStack,
    source: &str,
    body: &str,
    delivery_id: &str,
) -> (StatusCode, Value) {
    let headers = signed_headers(stack.secret(source), body, delivery_id);
    let response = handle(
        webhook_request("POST", &format!("/webhooks/{source}"), body, &headers),
        deps,
    )
    .await;
    (
        response.status(),
        serde_json::from_slice(response.body().as_ref()).unwrap(),
    )
}

fn envelope_of(message: &Value) -> Envelope<Value> {
    Envelope::from_eventbridge(
        serde_json::from_value(message.clone()).expect("an EventBridge event"),
    )
    .expect("a busline envelope")
}

#[tokio::test]
async fn a_signed_order_webhook_reaches_the_consumer_queue_through_the_bus() {
    let aws = localstack().await.unwrap();
    let stack = IngestStack::create(&aws, &prefix()).await.unwrap();
    let deps = start(&aws, &stack).await;

    let (status, body) = post(&deps, &stack, "shop", SAMPLE_SHOP_ORDER, "dlv-100").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // A CRM change is published too, but the rule routes only placed orders to this queue.
    let (status, _) = post(&deps, &stack, "crm", SAMPLE_CRM_CUSTOMER, "dlv-101").await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let messages = receive(&aws, &stack.queue_url, 1, SETTLE, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(
        messages[0]["detail-type"],
        "io.busline.shop.order.placed.v1"
    );
    let envelope = envelope_of(&messages[0]);
    assert_eq!(envelope.id, event_id("shop", "dlv-100"));
    assert_eq!(json!(envelope.id), body["eventId"]);
    assert_eq!(envelope.subject.as_deref(), Some("SO-1001"));
    assert_eq!(
        envelope.data,
        serde_json::from_str::<Value>(SAMPLE_SHOP_ORDER).unwrap()
    );
}

#[tokio::test]
async fn a_resent_delivery_id_yields_one_message() {
    let aws = localstack().await.unwrap();
    let stack = IngestStack::create(&aws, &prefix()).await.unwrap();
    let deps = start(&aws, &stack).await;

    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(post(&deps, &stack, "shop", SAMPLE_SHOP_ORDER, "dlv-200").await);
    }
    assert_eq!(answers[0].0, StatusCode::ACCEPTED);
    assert_eq!(answers[0].1["duplicate"], false);
    for (status, body) in &answers[1..] {
        assert_eq!(
            (*status, &body["eventId"], &body["duplicate"]),
            (StatusCode::ACCEPTED, &answers[0].1["eventId"], &json!(true))
        );
    }
    let messages = receive(&aws, &stack.queue_url, 1, SETTLE, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(messages.len(), 1, "{messages:#?}");
}

#[tokio::test]
async fn bad_inputs_get_their_status_and_leave_the_queue_empty() {
    let aws = localstack().await.unwrap();
    let stack = IngestStack::create(&aws, &prefix()).await.unwrap();
    let deps = start(&aws, &stack).await;
    let secret = stack.secret("shop");
    let order = SAMPLE_SHOP_ORDER;

    let mut invalid: Value = serde_json::from_str(order).unwrap();
    invalid["lines"] = json!([]);
    let invalid = invalid.to_string();
    let mut huge: Value = serde_json::from_str(order).unwrap();
    huge["customer"]["name"] = json!("x".repeat(300 * 1024));
    let huge = huge.to_string();
    let tampered = order.replace("4598", "1");

    let cases: Vec<(&str, &str, &str, Headers, StatusCode)> = vec![
        (
            "unknown source",
            "/webhooks/erp",
            order,
            signed_headers(secret, order, "b1"),
            StatusCode::NOT_FOUND,
        ),
        (
            "no signature",
            "/webhooks/shop",
            order,
            vec![("x-delivery-id".into(), "b2".into())],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "tampered body",
            "/webhooks/shop",
            &tampered,
            signed_headers(secret, order, "b3"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "malformed JSON",
            "/webhooks/shop",
            "{not json",
            signed_headers(secret, "{not json", "b4"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "schema violation",
            "/webhooks/shop",
            &invalid,
            signed_headers(secret, &invalid, "b5"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "too large",
            "/webhooks/shop",
            &huge,
            signed_headers(secret, &huge, "b6"),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (name, path, body, headers, status) in cases {
        let response = handle(webhook_request("POST", path, body, &headers), &deps).await;
        assert_eq!(response.status(), status, "{name}");
    }

    // A valid delivery after them is the only thing the consumer sees.
    let (status, canary) = post(&deps, &stack, "shop", order, "canary").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let messages = receive(&aws, &stack.queue_url, 1, SETTLE, TIMEOUT)
        .await
        .unwrap();
    let ids: Vec<String> = messages.iter().map(|m| envelope_of(m).id).collect();
    assert_eq!(ids, [canary["eventId"].as_str().unwrap()]);
}

#[tokio::test]
async fn an_unreachable_bus_answers_503_and_the_resend_is_published_once_it_recovers() {
    let aws = localstack().await.unwrap();
    let stack = IngestStack::create(&aws, &prefix()).await.unwrap();

    // Nothing listens on the discard port: every PutEvents call fails to connect. (LocalStack accepts
    // PutEvents for a bus that does not exist, so a wrong bus name would not fail here.)
    let unreachable = aws.to_builder().endpoint_url("http://127.0.0.1:9").build();
    let broken = start_with_bus_at(&aws, &stack, &unreachable).await;
    let (status, body) = post(&broken, &stack, "shop", SAMPLE_SHOP_ORDER, "dlv-300").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "bus_unavailable");

    // The failed attempt released its claim in DynamoDB, so the sender's retry goes through.
    let healthy = start(&aws, &stack).await;
    let (status, body) = post(&healthy, &stack, "shop", SAMPLE_SHOP_ORDER, "dlv-300").await;
    assert_eq!(
        (status, &body["duplicate"]),
        (StatusCode::ACCEPTED, &json!(false)),
        "{body}"
    );
    let messages = receive(&aws, &stack.queue_url, 1, SETTLE, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(messages.len(), 1);
}

#[tokio::test]
async fn a_missing_signing_secret_fails_the_start_naming_the_secret() {
    let aws = localstack().await.unwrap();
    let env = [
        ("BUS_NAME", "b"),
        ("IDEMPOTENCY_TABLE", "t"),
        ("WEBHOOK_SOURCES", "shop=it/does-not-exist"),
    ];
    let config = Config::from_env(&env).unwrap();
    let err = fetch_secrets(&aws_sdk_secretsmanager::Client::new(&aws), &config)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StartupError::Secret { secret_id, .. } if secret_id == "it/does-not-exist"),
        "{err}"
    );
    assert!(err.to_string().contains("it/does-not-exist"));

    let unknown = Config::from_env(&[
        ("BUS_NAME", "b"),
        ("IDEMPOTENCY_TABLE", "t"),
        ("WEBHOOK_SOURCES", "erp=x"),
    ])
    .unwrap_err();
    assert!(matches!(
        unknown,
        ConfigError::Invalid {
            name: "WEBHOOK_SOURCES",
            ..
        }
    ));
}
