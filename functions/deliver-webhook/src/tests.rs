use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use busline::batch::InMemoryDeadLetterQueue;
use busline::idempotency::InMemoryIdempotencyStore;
use serde_json::json;
use wiremock::matchers::{header_exists, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::*;
use crate::circuit::InMemoryCircuitStore;

const FULFILLED: &str = include_str!("../../../tests/fixtures/eventbridge-order-fulfilled.json");
const SECRET: &str = "whsec_d2FyZWhvdXNlLWVuZHBvaW50LXNlY3JldC0yNGI=";

/// Redeliveries, recorded (the queue, in memory).
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Redelivery>>>);

impl Recorded {
    fn all(&self) -> Vec<Redelivery> {
        self.0.lock().unwrap().clone()
    }

    fn take(&self) -> Vec<Redelivery> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Requeue for Recorded {
    async fn send(
        &self,
        redeliveries: &[Redelivery],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.lock().unwrap().extend_from_slice(redeliveries);
        Ok(())
    }
}

/// The SQS message a redelivery becomes: its body, and its attributes as message attributes.
fn redelivered(r: &Redelivery, n: usize) -> Value {
    let string = |v: String| json!({"stringValue": v, "dataType": "String"});
    json!({
        "messageId": format!("re-{n}-{}-{}", r.endpoint, r.attempt), "receiptHandle": format!("rh-re-{n}"), "body": r.body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now_millis().to_string()},
        "messageAttributes": {
            ENDPOINT_ATTRIBUTE: string(r.endpoint.clone()),
            ATTEMPT_ATTRIBUTE: string(r.attempt.to_string()),
            FIRST_ATTEMPT_ATTRIBUTE: string(r.first_attempt_ms.to_string()),
        },
        "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:deliveries", "awsRegion": "us-east-1"
    })
}

type TestDeliverer = Deliverer<InMemoryCircuitStore, Recorded, InMemoryIdempotencyStore>;

fn deliverer(server: &MockServer) -> TestDeliverer {
    let subscriptions = json!({"io.busline.order.fulfilled.v1": [{"name": "warehouse", "url": format!("{}/hooks", server.uri()), "secret": "warehouse-secret"}]});
    Deliverer {
        config: Config::from_env(&[
            ("SUBSCRIPTIONS", subscriptions.to_string().as_str()),
            ("REQUEST_TIMEOUT_MS", "500"),
            ("CIRCUIT_THRESHOLD", "3"),
            ("CIRCUIT_OPEN_SECONDS", "1"),
            ("ALLOW_LOCAL_ENDPOINTS", "true"),
        ])
        .unwrap(),
        keys: HashMap::from([(
            "warehouse".to_owned(),
            busline::signature::Scheme::StandardWebhooks
                .key(SECRET)
                .unwrap(),
        )]),
        http: http_client(true).unwrap(),
        circuits: InMemoryCircuitStore::new(),
        requeue: Recorded::default(),
        deliveries: delivery_records(InMemoryIdempotencyStore::new(), Duration::from_secs(86_400)),
    }
}

/// An order.fulfilled event with its own id, as the SQS message of attempt `attempt`.
fn message(id: &str, attempt: u32) -> Value {
    copy_of(id, "", attempt)
}

/// The same event as another SQS message (the bus delivered it twice): its own message id.
fn copy_of(id: &str, copy: &str, attempt: u32) -> Value {
    let mut event: Value = serde_json::from_str(FULFILLED).unwrap();
    event["detail"]["id"] = json!(id);
    json!({
        "messageId": format!("msg-{id}{copy}"), "receiptHandle": format!("rh-{id}-{attempt}"), "body": event.to_string(),
        "attributes": {"ApproximateReceiveCount": attempt.to_string(), "SentTimestamp": now_millis().to_string(), "SenderId": "AIDA", "ApproximateFirstReceiveTimestamp": now_millis().to_string()},
        "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:deliveries", "awsRegion": "us-east-1"
    })
}

fn batch(messages: Vec<Value>) -> SqsEvent {
    serde_json::from_value(json!({"Records": messages})).unwrap()
}

async fn run(
    deliverer: &TestDeliverer,
    messages: Vec<Value>,
) -> (Vec<String>, InMemoryDeadLetterQueue) {
    let dlq = InMemoryDeadLetterQueue::new();
    let processor = BatchProcessor::new().dead_letters(dlq.clone());
    let ids: Vec<String> = messages
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_owned())
        .collect();
    let failures = match handle(
        batch(messages),
        deliverer,
        &processor,
        Deadline::after(Duration::from_secs(30)),
    )
    .await
    {
        Ok(response) => response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect(),
        // Every message failed: the invocation fails, and Lambda retries them all.
        Err(_) => ids,
    };
    (failures, dlq)
}

#[tokio::test]
async fn an_event_is_posted_signed_with_its_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .and(header_exists(HEADER_WEBHOOK_SIGNATURE))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let deliverer = deliverer(&server);
    let (failures, dlq) = run(&deliverer, vec![message("e-1", 1)]).await;
    assert!(failures.is_empty() && dlq.letters().is_empty());
    let request = &server.received_requests().await.unwrap()[0];
    assert_eq!(
        request.headers[IDEMPOTENCY_KEY_HEADER],
        "busline.saga.order-fulfillment:e-1"
    );
    let now = chrono::Utc::now().timestamp() as u64;
    let verified = busline::signature::verify(
        busline::signature::Scheme::StandardWebhooks,
        &busline::signature::Scheme::StandardWebhooks
            .key(SECRET)
            .unwrap(),
        |name| request.headers.get(name).and_then(|v| v.to_str().ok()),
        &request.body,
        now,
        300,
    )
    .expect("a valid Standard Webhooks signature");
    assert_eq!(verified.delivery_id, "e-1", "webhook-id is the event id");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        (body["id"].as_str(), body["type"].as_str()),
        (Some("e-1"), Some("io.busline.order.fulfilled.v1"))
    );
}

#[tokio::test]
async fn failures_are_requeued_with_a_growing_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let mut deliverer = deliverer(&server);
    deliverer.config.circuit.threshold = 100; // this test is about the backoff alone
    let mut caps = Vec::new();
    for attempt in 1..=6 {
        let (failures, dlq) = run(&deliverer, vec![message("e-1", attempt)]).await;
        assert!(
            failures.is_empty(),
            "attempt {attempt} is requeued, not left on the queue"
        );
        assert!(dlq.letters().is_empty());
        caps.push(deliverer.config.backoff.cap(attempt));
    }
    let requeued = deliverer.requeue.all();
    assert_eq!(
        requeued.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6, 7]
    );
    let delays: Vec<Duration> = requeued.iter().map(|r| r.delay).collect();
    println!(
        "backoff schedule (attempt: delay, cap): {:?}",
        delays.iter().zip(&caps).collect::<Vec<_>>()
    );
    for (delay, cap) in delays.iter().zip(&caps) {
        assert!(
            *delay >= Duration::from_secs(1) && *delay <= (*cap).max(Duration::from_secs(1)),
            "{delay:?} within {cap:?}"
        );
    }
    assert!(
        caps.windows(2).all(|w| w[1] >= w[0]) && caps[5] > caps[0],
        "{caps:?}"
    );
}

#[tokio::test]
async fn a_429_waits_at_least_its_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "120"))
        .mount(&server)
        .await;
    let deliverer = deliverer(&server);
    run(&deliverer, vec![message("e-1", 1)]).await;
    assert!(deliverer.requeue.all()[0].delay >= Duration::from_secs(120));
}

#[tokio::test]
async fn a_permanent_refusal_goes_to_the_dead_letter_queue_with_status_and_excerpt() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(422).set_body_string("unknown tracking carrier"))
        .mount(&server)
        .await;
    let deliverer = deliverer(&server);
    let (failures, dlq) = run(&deliverer, vec![message("e-1", 1)]).await;
    assert!(failures.is_empty(), "not retried");
    let letters = dlq.letters();
    assert_eq!(letters[0].error_type, "DeliveryRefused");
    assert!(
        letters[0].reason.contains("422") && letters[0].reason.contains("unknown tracking carrier"),
        "{}",
        letters[0].reason
    );
    assert!(deliverer.requeue.all().is_empty());
}

#[tokio::test]
async fn the_circuit_opens_after_failures_stops_calls_and_closes_after_a_good_trial() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(3)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let deliverer = deliverer(&server);
    for i in 0..3 {
        run(&deliverer, vec![message(&format!("e-{i}"), 1)]).await;
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    // Open: the next message is not sent, and waits out the open time.
    let (failures, _) = run(&deliverer, vec![message("e-3", 1)]).await;
    assert!(failures.is_empty(), "requeued to wait out the open time");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        3,
        "no call while open"
    );
    let last = deliverer.requeue.all().last().unwrap().delay;
    assert!(last >= Duration::from_secs(1));
    // After the open time, a trial goes through and closes it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (failures, _) = run(&deliverer, vec![message("e-3", 2)]).await;
    assert!(failures.is_empty());
    assert_eq!(
        deliverer.circuits.get("warehouse").await.unwrap(),
        circuit::Circuit::default()
    );
}

/// A receiver that fails every other request with 503 and keeps each Idempotency-Key once.
#[derive(Clone, Default)]
struct Deduplicating {
    seen: Arc<Mutex<(u32, HashSet<String>, u32)>>,
}

impl Respond for Deduplicating {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().unwrap();
        seen.0 += 1;
        if seen.0 % 2 == 1 {
            return ResponseTemplate::new(503);
        }
        let key = request.headers[IDEMPOTENCY_KEY_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        if !seen.1.insert(key) {
            seen.2 += 1; // a copy, dropped
        }
        ResponseTemplate::new(200)
    }
}

#[tokio::test]
async fn every_event_reaches_a_deduplicating_receiver_exactly_once() {
    let server = MockServer::start().await;
    let receiver = Deduplicating::default();
    Mock::given(method("POST"))
        .respond_with(receiver.clone())
        .mount(&server)
        .await;
    let mut deliverer = deliverer(&server);
    deliverer.config.circuit.threshold = 1000;
    // Twenty events; what fails is requeued and fed back (as SQS would after its delay) until
    // done, and some deliveries are duplicated on purpose, as at-least-once delivery allows.
    let mut messages: Vec<Value> = (0..20).map(|i| message(&format!("e-{i}"), 1)).collect();
    messages.extend((0..5).map(|i| copy_of(&format!("e-{i}"), "-copy", 1)));
    let mut rounds = 0;
    while !messages.is_empty() {
        rounds += 1;
        assert!(rounds < 20, "never drained");
        let (failures, dlq) = run(&deliverer, messages).await;
        assert!(failures.is_empty() && dlq.letters().is_empty());
        messages = deliverer
            .requeue
            .take()
            .iter()
            .enumerate()
            .map(|(n, r)| redelivered(r, n))
            .collect();
    }
    let (requests, keys, copies) = receiver.seen.lock().unwrap().clone();
    assert_eq!(keys.len(), 20, "every event accepted once");
    println!(
        "{requests} requests, {} accepted events, {copies} copies dropped by the receiver",
        keys.len()
    );
}

#[tokio::test]
async fn what_is_not_an_event_or_has_no_subscriber_is_dead_lettered() {
    let server = MockServer::start().await;
    let deliverer = deliverer(&server);
    let mut other = message("e-1", 1);
    let mut event: Value = serde_json::from_str(FULFILLED).unwrap();
    event["detail-type"] = json!("io.busline.order.failed.v1");
    event["detail"]["type"] = json!("io.busline.order.failed.v1");
    other["body"] = json!(event.to_string());
    let mut garbage = message("e-2", 1);
    garbage["body"] = json!("{\"truncated\": ");
    let (failures, dlq) = run(&deliverer, vec![other, garbage]).await;
    assert!(failures.is_empty());
    let types: Vec<String> = dlq.letters().into_iter().map(|l| l.error_type).collect();
    assert_eq!(types, ["NoSubscriber", "NotAnEvent"]);
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[test]
fn subscriptions_are_read_and_checked() {
    let config = Config::from_env(&[(
        "SUBSCRIPTIONS",
        r#"{"t.v1": [{"url": "https://erp.example/hooks", "secret": "erp"}], "u.v1": [{"url": "https://erp.example/hooks", "secret": "erp"}]}"#,
    )])
    .unwrap();
    assert_eq!(config.subscriptions["t.v1"][0].name, "erp.example");
    assert_eq!(
        config.endpoint_secrets(),
        [("erp.example".to_owned(), "erp".to_owned())]
    );
    for bad in [
        r#"{"t.v1": [{"url": "https://erp.example/hooks"}]}"#,
        r#"{"t.v1": [{"url": "https://erp.example/hooks", "secret": "a"}], "u.v1": [{"url": "https://erp.example/hooks", "secret": "b"}]}"#,
    ] {
        assert!(
            Config::from_env(&[("SUBSCRIPTIONS", bad)]).is_err(),
            "an endpoint needs one secret: {bad}"
        );
    }
    assert!(Config::from_env(&[("SUBSCRIPTIONS", r#"{"t.v1": [{"url": "ftp://x"}]}"#)]).is_err());
    assert!(Config::from_env(&[("SUBSCRIPTIONS", "[]")]).is_err());
}

/// A 301, 302 or 303 used to be followed as a body-less GET, whose 200 counted as delivered: the
/// event was lost. A 307 or 308 sent the signed body to another host. Now every redirect is an
/// answer: dead-lettered with its Location, and the other host never hears of it.
#[tokio::test]
async fn a_redirect_is_never_followed_and_dead_letters_the_event_with_its_location() {
    let elsewhere = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    for status in [301, 302, 303, 307, 308] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("location", format!("{}/moved", elsewhere.uri())),
            )
            .mount(&server)
            .await;
        let deliverer = deliverer(&server);
        let (failures, dlq) = run(&deliverer, vec![message("e-moved", 1)]).await;
        assert!(failures.is_empty(), "{status}: not retried");
        let letters = dlq.letters();
        assert_eq!(letters.len(), 1, "{status}");
        assert_eq!(letters[0].error_type, "DeliveryRedirected");
        assert!(
            letters[0].reason.contains(&status.to_string())
                && letters[0]
                    .reason
                    .contains(&format!("{}/moved", elsewhere.uri())),
            "{}",
            letters[0].reason
        );
    }
    assert!(
        elsewhere.received_requests().await.unwrap().is_empty(),
        "the redirect's target was never called"
    );
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_later_events_are_dead_lettered_unsent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(410).set_body_string("this hook was removed"))
        .mount(&server)
        .await;
    let deliverer = deliverer(&server);
    let (failures, dlq) = run(&deliverer, vec![message("e-gone-1", 1)]).await;
    assert!(failures.is_empty());
    assert_eq!(dlq.letters()[0].error_type, "EndpointDisabled");
    let circuit = deliverer.circuits.get("warehouse").await.unwrap();
    assert!(
        circuit
            .disabled
            .as_deref()
            .is_some_and(|r| r.contains("410")),
        "{circuit:?}"
    );

    let (failures, dlq) = run(&deliverer, vec![message("e-gone-2", 1)]).await;
    assert!(failures.is_empty());
    assert_eq!(dlq.letters()[0].error_type, "EndpointDisabled");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "nothing more is sent to a disabled endpoint"
    );
}

/// Two subscribers of one event type, a warehouse that refuses and an ERP that takes it. They were
/// POSTed in sequence, so the first one's 4xx dead-lettered the event for both.
#[tokio::test]
async fn a_message_delivered_again_after_its_post_succeeded_is_not_sent_twice() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let deliverer = deliverer(&server);
    // The invocation that POSTed died before SQS heard of it: the message comes back, and the bus
    // delivered the event a second time besides.
    let (failures, dlq) = run(&deliverer, vec![message("e-1", 1)]).await;
    assert!(failures.is_empty() && dlq.letters().is_empty());
    let (failures, dlq) = run(
        &deliverer,
        vec![message("e-1", 2), copy_of("e-1", "-copy", 1)],
    )
    .await;
    assert!(failures.is_empty() && dlq.letters().is_empty());
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_post_leaves_no_record_and_its_retry_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let deliverer = deliverer(&server);
    let (failures, dlq) = run(&deliverer, vec![message("e-1", 1)]).await;
    assert!(failures.is_empty() && dlq.letters().is_empty());
    let retry: Vec<Value> = deliverer
        .requeue
        .take()
        .iter()
        .enumerate()
        .map(|(n, r)| redelivered(r, n))
        .collect();
    assert_eq!(retry.len(), 1);
    let (failures, dlq) = run(&deliverer, retry).await;
    assert!(failures.is_empty() && dlq.letters().is_empty());
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    assert!(
        deliverer.requeue.take().is_empty(),
        "delivered on the retry"
    );
}

#[tokio::test]
async fn with_two_subscribers_one_endpoints_refusal_is_its_own() {
    let warehouse = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(422).set_body_string("unknown order"))
        .mount(&warehouse)
        .await;
    let erp = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&erp)
        .await;
    let mut deliverer = deliverer(&warehouse);
    deliverer.config.subscriptions.insert(
        "io.busline.order.fulfilled.v1".to_owned(),
        vec![
            Subscription {
                name: "warehouse".into(),
                url: format!("{}/hooks", warehouse.uri()),
                secret: "warehouse-secret".into(),
            },
            Subscription {
                name: "erp".into(),
                url: format!("{}/hooks", erp.uri()),
                secret: "erp-secret".into(),
            },
        ],
    );
    deliverer.keys.insert(
        "erp".into(),
        busline::signature::Scheme::StandardWebhooks
            .key("whsec_ZXJwLWVuZHBvaW50LXNlY3JldC1vZi0yNC1ieXRlcw==")
            .unwrap(),
    );

    // The rule's message is fanned out: one message per endpoint, nothing sent yet.
    let (failures, dlq) = run(&deliverer, vec![message("e-two", 1)]).await;
    assert!(failures.is_empty() && dlq.letters().is_empty());
    let fanned = deliverer.requeue.take();
    let endpoints: Vec<&str> = fanned.iter().map(|r| r.endpoint.as_str()).collect();
    assert_eq!(endpoints, ["warehouse", "erp"]);
    assert!(fanned.iter().all(|r| r.attempt == 1 && r.delay.is_zero()));

    let messages = fanned
        .iter()
        .enumerate()
        .map(|(n, r)| redelivered(r, n))
        .collect();
    let (failures, dlq) = run(&deliverer, messages).await;
    assert!(failures.is_empty());
    let letters = dlq.letters();
    assert_eq!(letters.len(), 1, "only the warehouse's copy: {letters:?}");
    assert!(
        letters[0].reason.contains("warehouse"),
        "{}",
        letters[0].reason
    );
    assert_eq!(
        erp.received_requests().await.unwrap().len(),
        1,
        "the ERP has it"
    );
}

/// A subscriber down for 25 minutes: while its circuit was open each retry spent one of the queue's
/// 50 receives, and the event reached the dead-letter queue in about 25 minutes. The horizon is a
/// time now: at the 60th attempt, 25 minutes in, it is requeued, and delivered once the endpoint
/// is back. (The clock is the first attempt's time, set 25 minutes back.)
#[tokio::test]
async fn a_25_minute_outage_is_waited_out_whatever_the_attempt_count() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let deliverer = deliverer(&server);
    let body = message("e-outage", 1)["body"].as_str().unwrap().to_owned();
    let late = Redelivery {
        body,
        endpoint: "warehouse".into(),
        attempt: 60,
        first_attempt_ms: now_millis() - 25 * 60 * 1000,
        delay: Duration::ZERO,
    };
    let (failures, dlq) = run(&deliverer, vec![redelivered(&late, 0)]).await;
    assert!(
        failures.is_empty() && dlq.letters().is_empty(),
        "{:?}",
        dlq.letters()
    );
    let again = deliverer.requeue.take();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].attempt, again[0].first_attempt_ms),
        (61, late.first_attempt_ms),
        "the horizon still counts from the first attempt"
    );
    let (failures, dlq) = run(&deliverer, vec![redelivered(&again[0], 1)]).await;
    assert!(failures.is_empty() && dlq.letters().is_empty());
    assert!(deliverer.requeue.all().is_empty(), "delivered");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn past_the_retry_horizon_the_event_is_dead_lettered_with_the_last_failure() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
        .mount(&server)
        .await;
    let deliverer = deliverer(&server);
    let body = message("e-horizon", 1)["body"].as_str().unwrap().to_owned();
    let day_old = Redelivery {
        body,
        endpoint: "warehouse".into(),
        attempt: 9,
        first_attempt_ms: now_millis() - (24 * 3600 + 60) * 1000,
        delay: Duration::ZERO,
    };
    let (failures, dlq) = run(&deliverer, vec![redelivered(&day_old, 0)]).await;
    assert!(failures.is_empty());
    let letters = dlq.letters();
    assert_eq!(letters[0].error_type, "DeliveryGaveUp");
    assert!(
        letters[0].reason.contains("maintenance") && letters[0].reason.contains("horizon"),
        "{}",
        letters[0].reason
    );
    assert!(deliverer.requeue.all().is_empty());
}
