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
use busline::signature::Scheme;
use busline_tests::{
    CallCounter, Headers, IngestStack, PATIENCE, SAMPLE_CRM_CUSTOMER, SAMPLE_SHOP_ORDER,
    localstack, receive, signed_headers, signed_headers_as, webhook_request,
};
use ingest_webhook::replay::{DynamoDbReplayGuard, contract};
use ingest_webhook::{Config, Deps, SourceConfig, StartupError, event_id, fetch_secrets, handle};
use lambda_http::http::StatusCode;
use serde_json::{Value, json};

type LiveDeps = Deps<EventBridgePublisher, DynamoDbIdempotencyStore, DynamoDbReplayGuard>;

const SETTLE: Duration = Duration::from_secs(3);
const TIMEOUT: Duration = PATIENCE;

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
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let store = DynamoDbIdempotencyStore::new(dynamodb.clone(), &config.idempotency_table);
    let replay = DynamoDbReplayGuard::new(dynamodb, &config.idempotency_table);
    Deps::new(publisher, store, replay, &config, secrets).unwrap()
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

#[tokio::test]
async fn the_dynamodb_replay_guard_keeps_the_contract() {
    let aws = localstack().await.unwrap();
    let stack = IngestStack::create(&aws, &prefix()).await.unwrap();
    let guard = DynamoDbReplayGuard::new(aws_sdk_dynamodb::Client::new(&aws), &stack.table);
    contract::admits_a_signature_for_one_delivery_id_only(&guard).await;
    contract::one_of_concurrent_replays_wins(&guard).await;
}

/// DynamoDB calls per accepted delivery and per resend under every scheme, on LocalStack: each
/// scheme's first delivery, then the same request again from a cold environment (no local cache).
#[tokio::test]
async fn dynamodb_calls_per_delivery_under_each_scheme() {
    let aws = localstack().await.unwrap();
    let stack = IngestStack::create(&aws, &prefix()).await.unwrap();
    let mut report = Vec::new();
    for (scheme, first, resend) in [
        (Scheme::StandardWebhooks, 2, 1),
        (Scheme::Stripe, 2, 1),
        (Scheme::GitHub, 2, 1),
        (Scheme::Shopify, 2, 1),
        // The signature is admitted once (one conditional put), then deduplication as for the rest.
        (Scheme::BuslineV1, 3, 2),
    ] {
        let config = Config {
            bus_name: stack.bus_name.clone(),
            idempotency_table: stack.table.clone(),
            sources: vec![SourceConfig {
                name: "crm".into(),
                secret_id: "unused".into(),
                scheme,
            }],
            tolerance_secs: 300,
            idempotency_ttl_secs: 3600,
        };
        let secret = busline_tests::new_standard_webhooks_secret();
        let environment = |counter: &CallCounter| {
            let dynamodb = counter.dynamodb(&aws);
            Deps::new(
                EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&aws), &stack.bus_name),
                DynamoDbIdempotencyStore::new(dynamodb.clone(), &stack.table),
                DynamoDbReplayGuard::new(dynamodb, &stack.table),
                &config,
                vec![("crm".into(), secret.clone())],
            )
            .unwrap()
        };
        let mut body: Value = serde_json::from_str(SAMPLE_CRM_CUSTOMER).unwrap();
        let unique = uuid::Uuid::new_v4().simple();
        body["customer_id"] = json!(format!("C-{unique}"));
        // Stripe deduplicates on the event id in the body.
        body["id"] = json!(format!("evt_{unique}"));
        let body = body.to_string();
        let id = format!("calls-{}", uuid::Uuid::new_v4().simple());
        let headers =
            signed_headers_as(scheme, &secret, &body, &id, chrono::Utc::now().timestamp());
        let mut calls = Vec::new();
        for expected_duplicate in [false, true] {
            let counter = CallCounter::default();
            let deps = environment(&counter);
            let response = handle(
                webhook_request("POST", "/webhooks/crm", &body, &headers),
                &deps,
            )
            .await;
            let answer: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
            assert_eq!(
                (response.status(), &answer["duplicate"]),
                (StatusCode::ACCEPTED, &json!(expected_duplicate)),
                "{scheme}: {answer}"
            );
            calls.push(counter.take());
        }
        report.push(format!(
            "{scheme}: accepted {} calls {:?}, resent {} calls {:?}",
            calls[0].len(),
            calls[0],
            calls[1].len(),
            calls[1]
        ));
        assert_eq!(
            (calls[0].len(), calls[1].len()),
            (first, resend),
            "{scheme}: {calls:?}"
        );
    }
    println!("{}", report.join("\n"));
}

/// Requests signed by the official Standard Webhooks package (PyPI), which busline did not write,
/// are accepted; and Stripe's own library accepts what busline's Stripe signer makes, so the
/// adversarial suite signs as Stripe does.
#[tokio::test]
async fn code_busline_did_not_write_signs_and_verifies_as_busline_does() {
    let aws = localstack().await.unwrap();
    let stack = IngestStack::create(&aws, &prefix()).await.unwrap();
    let deps = start(&aws, &stack).await;
    let secret = stack.secret("shop");
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let at = chrono::Utc::now().timestamp();
    let signature =
        busline_tests::interop::standard_webhooks_signs(secret, &id, at, SAMPLE_SHOP_ORDER)
            .unwrap();
    let headers: Headers = vec![
        ("webhook-id".into(), id.clone()),
        ("webhook-timestamp".into(), at.to_string()),
        ("webhook-signature".into(), signature.clone()),
    ];
    let response = handle(
        webhook_request("POST", "/webhooks/shop", SAMPLE_SHOP_ORDER, &headers),
        &deps,
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // The package agrees with busline's signer byte for byte.
    let ours = signed_headers_as(Scheme::StandardWebhooks, secret, SAMPLE_SHOP_ORDER, &id, at);
    assert_eq!(ours[2].1, signature);
    // And it refuses what it should: another body under the same headers.
    assert!(busline_tests::interop::standard_webhooks_verifies(secret, &headers, b"{}").is_err());

    let stripe_secret = "whsec_interop_stripe";
    let body = r#"{"id":"evt_interop","object":"event"}"#;
    let header = &signed_headers_as(Scheme::Stripe, stripe_secret, body, "", at)[0].1;
    busline_tests::interop::stripe_verifies(stripe_secret, header, body).unwrap();
    assert!(busline_tests::interop::stripe_verifies("whsec_other", header, body).is_err());
}
