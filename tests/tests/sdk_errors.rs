//! One failure taxonomy for every AWS error, seen through the adapters: a call AWS refuses for good
//! is permanent on its first attempt (and so reaches a dead-letter queue with busline's reason on a
//! message's first receive), while throttling and outages are retried. Against LocalStack where it
//! answers as AWS does, and against a stub speaking EventBridge's wire protocol for answers
//! LocalStack never gives (a `PutEvents` answer with fewer entries than were sent).

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use busline::audit::{AuditError, AuditTrail, DynamoDbAuditTrail};
use busline::batch::{BatchProcessor, InMemoryDeadLetterQueue};
use busline::bus::{EventBridgePublisher, EventPublisher, PublishError};
use busline::retry::Backoff;
use busline::{Classify, Envelope, ErrorClass, EventType};
use busline_tests::{SHOP_ORDER_PLACED, create_table, localstack};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn event(id: &str) -> Envelope<Value> {
    Envelope::new(
        id,
        "busline.test",
        EventType::parse(SHOP_ORDER_PLACED).unwrap(),
        json!({"order_id": id}),
    )
}

async fn audit_table(aws: &aws_config::SdkConfig) -> String {
    let table = format!("audit-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    create_table(aws, &table, "pk", Some("sk")).await.unwrap();
    table
}

/// DynamoDB refuses a partition key over 2 KB with `ValidationException`: before the taxonomy every
/// adapter called that "unavailable", and the message was retried until SQS moved it without
/// busline's reason. Now it is permanent, and the batch layer dead-letters it on its first receive.
#[tokio::test]
async fn a_validation_exception_is_dead_lettered_with_its_reason_on_the_first_receive() {
    let aws = localstack().await.unwrap();
    let trail =
        DynamoDbAuditTrail::new(aws_sdk_dynamodb::Client::new(&aws), audit_table(&aws).await);
    let mut oversized = event("evt-oversized-key");
    oversized.correlationid = Some("c".repeat(3000));
    let error = trail.record(&oversized).await.unwrap_err();
    assert!(matches!(error, AuditError::Refused(_)), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Permanent);

    let fine = event("evt-fine");
    let sqs = |e: &Envelope<Value>, id: &str| {
        json!({"messageId": id, "receiptHandle": id, "body": serde_json::to_string(e).unwrap(),
               "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
               "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:audit"})
    };
    let batch: SqsEvent = serde_json::from_value(
        json!({"Records": [sqs(&oversized, "m-oversized"), sqs(&fine, "m-fine")]}),
    )
    .unwrap();
    let dlq = InMemoryDeadLetterQueue::new();
    let processor = BatchProcessor::new().dead_letters(dlq.clone());
    let report = processor
        .sqs(&batch, async |message| {
            let envelope: Envelope<Value> =
                serde_json::from_str(message.body.as_deref().unwrap()).unwrap();
            trail.record(&envelope).await.map(|_| ())
        })
        .await;
    let response = report.into_result().unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "nothing goes back to the queue to be retried: {:?}",
        response.batch_item_failures
    );
    let letters = dlq.letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].record_id, "m-oversized");
    assert_eq!(letters[0].error_type, "AuditTrailRefused");
    assert!(
        letters[0].reason.contains("refused"),
        "{}",
        letters[0].reason
    );
}

/// Answers `PutEvents` from a script, one answer per call, and keeps each call's entry count.
struct Script(std::sync::Mutex<Vec<ResponseTemplate>>);

impl Respond for Script {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let mut answers = self.0.lock().unwrap();
        if answers.len() > 1 {
            answers.remove(0)
        } else {
            answers[0].clone()
        }
    }
}

fn eventbridge_at(server: &MockServer) -> aws_sdk_eventbridge::Client {
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
        .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_eventbridge::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .endpoint_url(server.uri())
        .retry_config(aws_sdk_eventbridge::config::retry::RetryConfig::disabled())
        .http_client(busline::aws::http_client(
            busline::tls::client_config().unwrap(),
        ))
        .build();
    aws_sdk_eventbridge::Client::from_conf(config)
}

fn answer(body: Value, status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_string(body.to_string())
}

fn entries_sent(request: &Request) -> usize {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    body["Entries"].as_array().map_or(0, Vec::len)
}

const FAST: Backoff = Backoff {
    max_attempts: 3,
    base: Duration::from_millis(5),
    max_delay: Duration::from_millis(10),
};

/// A `PutEvents` answer that reports a failure but lists fewer entries than were sent cannot say
/// which entry failed. Zipping it against the request counted the unlisted ones as published.
#[tokio::test]
async fn a_short_put_events_answer_offers_every_entry_again() {
    let server = MockServer::start().await;
    let short = answer(
        json!({"FailedEntryCount": 1, "Entries": [{"EventId": "taken"}]}),
        200,
    );
    let whole = answer(
        json!({"FailedEntryCount": 0, "Entries": [{"EventId": "a"}, {"EventId": "b"}]}),
        200,
    );
    Mock::given(method("POST"))
        .respond_with(Script(std::sync::Mutex::new(vec![short, whole])))
        .mount(&server)
        .await;
    let publisher = EventBridgePublisher::new(eventbridge_at(&server), "bus").with_backoff(FAST);
    publisher
        .publish(&[event("evt-a"), event("evt-b")])
        .await
        .unwrap();
    let calls: Vec<usize> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(entries_sent)
        .collect();
    assert_eq!(
        calls,
        [2, 2],
        "both entries offered again after the short answer"
    );
}

#[tokio::test]
async fn a_short_answer_that_never_recovers_is_a_rejection_not_a_success() {
    let server = MockServer::start().await;
    let short = answer(
        json!({"FailedEntryCount": 1, "Entries": [{"EventId": "taken"}]}),
        200,
    );
    Mock::given(method("POST"))
        .respond_with(Script(std::sync::Mutex::new(vec![short])))
        .mount(&server)
        .await;
    let publisher = EventBridgePublisher::new(eventbridge_at(&server), "bus").with_backoff(FAST);
    let error = publisher
        .publish(&[event("evt-a"), event("evt-b")])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PublishError::Rejected { rejected, .. } if rejected.len() == 2),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Retryable);
}

/// A call the bus refuses for good is not retried, and says it is permanent; a throttled one is.
#[tokio::test]
async fn a_refused_put_events_call_is_permanent_at_once_and_throttling_is_retried() {
    let server = MockServer::start().await;
    let refused = answer(
        json!({"__type": "ValidationException", "message": "EventBus bus does not exist."}),
        400,
    );
    Mock::given(method("POST"))
        .respond_with(Script(std::sync::Mutex::new(vec![refused])))
        .mount(&server)
        .await;
    let publisher = EventBridgePublisher::new(eventbridge_at(&server), "bus").with_backoff(FAST);
    let error = publisher.publish(&[event("evt-a")]).await.unwrap_err();
    assert!(matches!(error, PublishError::Refused(_)), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "not retried"
    );

    let server = MockServer::start().await;
    let throttled = answer(
        json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
        400,
    );
    Mock::given(method("POST"))
        .respond_with(Script(std::sync::Mutex::new(vec![throttled])))
        .mount(&server)
        .await;
    let publisher = EventBridgePublisher::new(eventbridge_at(&server), "bus").with_backoff(FAST);
    let error = publisher.publish(&[event("evt-a")]).await.unwrap_err();
    assert!(matches!(error, PublishError::Unavailable(_)), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Retryable);
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        3,
        "retried to its limit"
    );
}

/// A bus that never answers used to hold ingest until Lambda killed it, its idempotency claim still
/// in progress. Now a publish has a time budget, past which it fails retryably (ingest: 503, claim
/// released). The stub answers 200 after 30 s: without the budget this publish would succeed.
#[tokio::test]
async fn a_bus_that_never_answers_fails_the_publish_within_its_budget() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            answer(
                json!({"FailedEntryCount": 0, "Entries": [{"EventId": "a"}]}),
                200,
            )
            .set_delay(Duration::from_secs(30)),
        )
        .mount(&server)
        .await;
    let publisher = EventBridgePublisher::new(eventbridge_at(&server), "bus")
        .with_backoff(FAST)
        .with_budget(Duration::from_millis(500));
    let error = publisher.publish(&[event("evt-a")]).await.unwrap_err();
    assert!(
        matches!(&error, PublishError::Unavailable(e) if e.to_string().contains("budget")),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Retryable);
}

/// Takes every entry, answering each call after `delay`, and notes when each call arrived.
struct SlowBus {
    delay: Duration,
    arrivals: std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

impl Respond for SlowBus {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.arrivals
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
        let entries: Vec<Value> = (0..entries_sent(request))
            .map(|i| json!({"EventId": format!("e-{i}")}))
            .collect();
        answer(json!({"FailedEntryCount": 0, "Entries": entries}), 200).set_delay(self.delay)
    }
}

/// A publish of more than ten events used to send its `PutEvents` calls one after another, so a
/// batch-sync page of a hundred waited for ten answers in a row from a slow bus. Now up to four
/// are in flight at once: with a bus that answers each call after 2 s, all four calls of 35
/// events have arrived before the first is answered (one after another, they would arrive 2 s
/// apart).
#[tokio::test]
async fn a_publish_has_its_put_events_calls_in_flight_at_once() {
    let server = MockServer::start().await;
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let delay = Duration::from_secs(2);
    Mock::given(method("POST"))
        .respond_with(SlowBus {
            delay,
            arrivals: arrivals.clone(),
        })
        .mount(&server)
        .await;
    let publisher = EventBridgePublisher::new(eventbridge_at(&server), "bus")
        .with_backoff(FAST)
        .with_budget(Duration::from_secs(30));
    let events: Vec<_> = (0..35).map(|i| event(&format!("evt-{i}"))).collect();
    publisher.publish(&events).await.unwrap();
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 4, "ten entries a call");
    let spread = arrivals[arrivals.len() - 1].duration_since(arrivals[0]);
    assert!(
        spread < delay,
        "the last call arrived {spread:?} after the first, which is answered after {delay:?}: \
         the calls went one after another"
    );
}
