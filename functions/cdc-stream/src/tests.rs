use busline::batch::InMemoryDeadLetterQueue;
use busline::bus::InMemoryBus;
use serde_json::json;

use super::*;
use busline::claim_check::InMemoryPayloadStore;

const STREAM: &str = include_str!("../../../tests/fixtures/dynamodb-stream-event.json");

/// An invocation's time that no test here runs out of.
fn time() -> Deadline {
    Deadline::after(std::time::Duration::from_secs(60))
}

fn batch() -> Value {
    serde_json::from_str(STREAM).unwrap()
}

/// A batch of `n` copies of the fixture's first record, sequence numbers 1000, 1001, ...
fn numbered(n: usize) -> Value {
    let record = batch()["Records"][0].clone();
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let mut r = record.clone();
            r["dynamodb"]["SequenceNumber"] = json!(format!("{}", 1000 + i));
            r
        })
        .collect();
    json!({"Records": records})
}

/// `handle` with an empty payload store and time to spare.
async fn handle_on(
    event: Value,
    config: &CdcConfig,
    bus: &InMemoryBus,
    dlq: &InMemoryDeadLetterQueue,
) -> Result<Outcome, CdcError> {
    handle(
        event,
        config,
        bus,
        dlq,
        &InMemoryPayloadStore::new(),
        time(),
    )
    .await
}

async fn run(event: Value, config: &CdcConfig) -> (Outcome, InMemoryBus, InMemoryDeadLetterQueue) {
    let (bus, dlq) = (InMemoryBus::new(), InMemoryDeadLetterQueue::new());
    let outcome = handle_on(event, config, &bus, &dlq).await.unwrap();
    (outcome, bus, dlq)
}

#[tokio::test]
async fn each_record_becomes_a_debezium_style_change_in_stream_order() {
    let (outcome, bus, dlq) = run(batch(), &CdcConfig::default()).await;
    assert_eq!(
        outcome,
        Outcome {
            published: 4,
            ..Outcome::default()
        }
    );
    assert!(outcome.response().batch_item_failures.is_empty());
    assert!(dlq.letters().is_empty());
    let published = bus.published();
    let ops: Vec<&str> = published
        .iter()
        .map(|e| e["data"]["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["c", "u", "c", "d"]);
    let update = &published[1];
    assert_eq!(update["type"], "io.busline.cdc.customers.changed.v1");
    assert_eq!(update["source"], "busline.cdc.customers");
    assert_eq!(update["subject"], "customer_id=C-42");
    assert_eq!(update["time"], "2025-11-25T00:00:01Z");
    assert_eq!(
        update["data"],
        json!({
            "op": "u",
            "before": {"customer_id": "C-42", "email": "ada@example.com", "version": 1},
            "after": {"customer_id": "C-42", "email": "ada@lovelace.dev", "version": 2},
            "source": {
                "table": "customers",
                "stream_arn": "arn:aws:dynamodb:us-east-1:123456789012:table/customers/stream/2026-11-25T00:00:00.000",
                "sequence_number": "4421584600000000017450439092",
                "keys": {"customer_id": "C-42"}
            },
            "ts_ms": 1764028801000_i64
        })
    );
    assert_eq!(
        published[0]["data"]["before"],
        Value::Null,
        "a create has no before"
    );
    assert_eq!(
        published[3]["data"]["after"],
        Value::Null,
        "a delete has no after"
    );

    let (_, again, _) = run(batch(), &CdcConfig::default()).await;
    assert_eq!(
        again.published()[1]["id"],
        update["id"],
        "a redelivered record keeps its id"
    );
}

#[tokio::test]
async fn dropped_fields_never_reach_the_bus() {
    let mut event = batch();
    event["Records"][1]["dynamodb"]["NewImage"]["address"] =
        json!({"M": {"street": {"S": "12 St James's Square"}, "city": {"S": "London"}}});
    let config = CdcConfig {
        drop_fields: parse_fields("email, address.street"),
        ..CdcConfig::default()
    };
    let (_, bus, _) = run(event, &config).await;
    let published = bus.published();
    for change in &published {
        for image in ["before", "after"] {
            assert!(change["data"][image].get("email").is_none(), "{change}");
        }
    }
    assert_eq!(
        published[1]["data"]["after"]["address"],
        json!({"city": "London"})
    );
    assert!(
        !serde_json::to_string(&published).unwrap().contains("ada@"),
        "no email anywhere"
    );
}

#[tokio::test]
async fn the_entity_can_be_named_and_is_checked() {
    let config = CdcConfig::from_env(&[("CDC_ENTITY", "ERP_Customers")]).unwrap();
    let (_, bus, _) = run(batch(), &config).await;
    assert_eq!(
        bus.published()[0]["type"],
        "io.busline.cdc.erp-customers.changed.v1"
    );
    assert!(CdcConfig::from_env(&[("CDC_ENTITY", "a b")]).is_err());
}

#[tokio::test]
async fn a_malformed_record_is_dead_lettered_whole_and_the_rest_goes_on() {
    let mut event = batch();
    event["Records"][1]["eventName"] = json!("TRUNCATE");
    event["Records"][2]["dynamodb"]
        .as_object_mut()
        .unwrap()
        .remove("NewImage");
    let (outcome, bus, dlq) = run(event.clone(), &CdcConfig::default()).await;
    assert_eq!(
        outcome,
        Outcome {
            published: 2,
            dead_lettered: 2,
            resume_at: None
        }
    );
    let published = bus.published();
    let ops: Vec<&str> = published
        .iter()
        .map(|e| e["data"]["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["c", "d"]);
    let letters = dlq.letters();
    assert_eq!(letters[0].error_type, "MalformedStreamRecord");
    assert!(
        letters[0].reason.contains("unknown eventName \"TRUNCATE\""),
        "{}",
        letters[0].reason
    );
    assert!(
        letters[1].reason.contains("no NewImage"),
        "{}",
        letters[1].reason
    );
    assert_eq!(
        serde_json::from_str::<Value>(&letters[0].body).unwrap(),
        event["Records"][1]
    );

    let mut broken = batch();
    broken["Records"][0]["dynamodb"]["Keys"] = json!("C-42");
    let (outcome, _, dlq) = run(broken, &CdcConfig::default()).await;
    assert_eq!(outcome.dead_lettered, 1);
    assert!(!dlq.letters()[0].reason.is_empty());
}

#[tokio::test]
async fn a_rejected_change_stops_the_batch_at_its_sequence_number() {
    let (bus, dlq) = (InMemoryBus::new(), InMemoryDeadLetterQueue::new());
    bus.reject_next(1);
    let outcome = handle_on(batch(), &CdcConfig::default(), &bus, &dlq)
        .await
        .unwrap();
    assert_eq!(
        outcome.resume_at.as_deref(),
        Some("4421584500000000017450439091")
    );
    let failures = outcome.response().batch_item_failures;
    assert_eq!(failures.len(), 1);
    assert_eq!(
        failures[0].item_identifier.as_deref(),
        Some("4421584500000000017450439091")
    );

    let bus = InMemoryBus::new();
    bus.set_unavailable(true);
    let outcome = handle_on(batch(), &CdcConfig::default(), &bus, &dlq)
        .await
        .unwrap();
    assert_eq!(
        outcome.resume_at.as_deref(),
        Some("4421584500000000017450439091")
    );
}

#[tokio::test]
async fn changes_go_ten_to_a_call() {
    let (outcome, bus, _) = run(numbered(23), &CdcConfig::default()).await;
    assert_eq!(outcome.published, 23);
    assert_eq!(bus.calls(), 3);
}

#[tokio::test]
async fn an_unreachable_dead_letter_queue_stops_the_batch_at_the_bad_record() {
    let mut event = batch();
    event["Records"][2]["eventName"] = json!("TRUNCATE");
    let (bus, dlq) = (InMemoryBus::new(), InMemoryDeadLetterQueue::new());
    dlq.set_unavailable(true);
    let outcome = handle_on(event, &CdcConfig::default(), &bus, &dlq)
        .await
        .unwrap();
    assert_eq!(outcome.published, 2, "the records before it");
    assert_eq!(
        outcome.resume_at.as_deref(),
        Some("4421584700000000017450439093")
    );
}

#[tokio::test]
async fn an_event_that_is_not_a_batch_is_refused() {
    let (bus, dlq) = (InMemoryBus::new(), InMemoryDeadLetterQueue::new());
    let error = handle_on(json!({"hello": 1}), &CdcConfig::default(), &bus, &dlq)
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "NotAStreamBatch");
}

/// A change whose envelope is over 256 KB (a 300 KB attribute, in both images) was resumed at for
/// every error until Lambda bisected and dropped it with the records behind it. Now its body is
/// checked in to the claim-check store, and it travels, in order, with a `dataref` to it.
#[tokio::test]
async fn a_change_too_large_for_the_bus_is_checked_in_and_travels_in_order() {
    let mut event = batch();
    let big = json!({"S": "x".repeat(300 * 1024)});
    event["Records"][1]["dynamodb"]["NewImage"]["notes"] = big.clone();
    event["Records"][1]["dynamodb"]["OldImage"]["notes"] = big;
    let (bus, dlq, payloads) = (
        InMemoryBus::new(),
        InMemoryDeadLetterQueue::new(),
        InMemoryPayloadStore::new(),
    );
    let outcome = handle(event, &CdcConfig::default(), &bus, &dlq, &payloads, time())
        .await
        .unwrap();
    assert_eq!((outcome.published, outcome.dead_lettered), (4, 0));
    assert!(outcome.response().batch_item_failures.is_empty());
    assert_eq!(payloads.len(), 1);
    let published = bus.published();
    let ops: Vec<&str> = published
        .iter()
        .map(|e| e["data"]["op"].as_str().unwrap_or("(checked in)"))
        .collect();
    assert_eq!(ops, ["c", "(checked in)", "c", "d"], "stream order kept");
    let travelling: Envelope<Value> = serde_json::from_value(published[1].clone()).unwrap();
    assert!(travelling.dataref.is_some());
    let resolved = busline::claim_check::resolve(travelling, &payloads)
        .await
        .unwrap();
    assert_eq!(resolved.data["op"], "u");
    assert_eq!(
        resolved.data["after"]["notes"].as_str().unwrap().len(),
        300 * 1024
    );
}

/// A bus that takes a second for every call.
struct SlowBus(InMemoryBus);

impl EventPublisher for SlowBus {
    async fn publish<T: Serialize + Sync>(
        &self,
        events: &[Envelope<T>],
    ) -> Result<(), PublishError> {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        self.0.publish(events).await
    }
}

/// A batch used to publish every change however little of the invocation was left, so a slow bus
/// let Lambda kill it mid-call and retry the whole batch, a retry closer to giving up on it. Now no
/// call starts that the time left would not hold with the margin: with 2.5 s left and a bus that
/// takes 1 s a call, the batch ends after one or two calls (never all three), cleanly, and the
/// shard resumes at the first change not published.
#[tokio::test]
async fn a_batch_stops_at_the_first_unpublished_change_when_its_time_runs_short() {
    let (bus, dlq) = (SlowBus(InMemoryBus::new()), InMemoryDeadLetterQueue::new());
    let deadline = Deadline::after(std::time::Duration::from_millis(2500));
    let outcome = handle(
        numbered(23),
        &CdcConfig::default(),
        &bus,
        &dlq,
        &InMemoryPayloadStore::new(),
        deadline,
    )
    .await
    .unwrap();
    assert!(
        matches!(outcome.published, 10 | 20),
        "whole calls only, and not all three: {outcome:?}"
    );
    assert_eq!(bus.0.published().len(), outcome.published);
    assert_eq!(
        outcome.resume_at,
        Some(format!("{}", 1000 + outcome.published)),
        "the first change not published"
    );
    assert!(
        deadline.remaining() > std::time::Duration::ZERO,
        "answered before the invocation's deadline"
    );
}
