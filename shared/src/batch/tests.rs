use std::cell::{Cell, RefCell};
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::Diagnostic;
use serde_json::{Value, json};

use super::*;
use crate::idempotency::{Idempotency, InMemoryIdempotencyStore, Selector};

const SQS_FIFO_EVENT: &str = include_str!("../../../tests/fixtures/sqs-fifo-event.json");
const DYNAMODB_STREAM_EVENT: &str =
    include_str!("../../../tests/fixtures/dynamodb-stream-event.json");
const KINESIS_EVENT: &str = include_str!("../../../tests/fixtures/kinesis-event.json");

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("order {0} is malformed")]
    Malformed(String),
    #[error("the warehouse is down")]
    WarehouseDown,
    #[error("order {0} was shipped already")]
    AlreadyShipped(String),
}

impl Classify for OrderError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Malformed(_) => ErrorClass::Permanent,
            Self::WarehouseDown => ErrorClass::Retryable,
            Self::AlreadyShipped(_) => ErrorClass::Duplicate,
        }
    }
    fn error_type(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "OrderMalformed",
            Self::WarehouseDown => "WarehouseDown",
            Self::AlreadyShipped(_) => "AlreadyShipped",
        }
    }
}

/// An SQS batch built from the real FIFO fixture: one record per `(body, group)`, ids `m0`, `m1`...
fn sqs_event(records: &[(&str, &str)], fifo: bool) -> SqsEvent {
    let mut event: Value = serde_json::from_str(SQS_FIFO_EVENT).unwrap();
    let template = event["Records"][0].clone();
    let arn = if fifo {
        "arn:aws:sqs:us-east-2:123456789012:orders.fifo"
    } else {
        "arn:aws:sqs:us-east-2:123456789012:orders"
    };
    event["Records"] = records
        .iter()
        .enumerate()
        .map(|(i, (body, group))| {
            let mut record = template.clone();
            record["messageId"] = json!(format!("m{i}"));
            record["body"] = json!(body);
            record["attributes"]["MessageGroupId"] = json!(group);
            record["eventSourceARN"] = json!(arn);
            record
        })
        .collect();
    serde_json::from_value(event).unwrap()
}

/// The handler every SQS test uses: the body names what happens.
async fn handle_body(message: &SqsMessage) -> Result<(), OrderError> {
    tokio::task::yield_now().await;
    match message.body.as_deref().unwrap_or_default() {
        "bad" => Err(OrderError::Malformed(message.message_id.clone().unwrap())),
        "down" => Err(OrderError::WarehouseDown),
        "shipped" => Err(OrderError::AlreadyShipped("SO-1".into())),
        _ => Ok(()),
    }
}

fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect()
}

#[tokio::test]
async fn a_standard_queue_reports_exactly_the_failed_messages() {
    let event = sqs_event(
        &[
            ("ok", "a"),
            ("down", "a"),
            ("ok", "a"),
            ("bad", "a"),
            ("shipped", "a"),
        ],
        false,
    );
    let report = BatchProcessor::new()
        .concurrency(3)
        .sqs(&event, async |m| handle_body(m).await)
        .await;
    assert_eq!(failed_ids(&report.response), ["m1", "m3"]);
    assert_eq!((report.succeeded(), report.duplicates()), (2, 1));
    let reasons: Vec<(&str, &str)> = report
        .failures()
        .map(|f| (f.error_type.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("WarehouseDown", "the warehouse is down"),
            ("OrderMalformed", "order m3 is malformed")
        ]
    );
}

#[tokio::test]
async fn permanent_failures_go_to_the_dead_letter_queue_with_their_reason() {
    let dlq = InMemoryDeadLetterQueue::new();
    let event = sqs_event(&[("ok", "a"), ("bad", "a"), ("down", "a")], false);
    let report = BatchProcessor::new()
        .dead_letters(dlq.clone())
        .sqs(&event, async |m| handle_body(m).await)
        .await;
    assert_eq!(
        failed_ids(&report.response),
        ["m2"],
        "only the retryable one goes back"
    );
    assert_eq!(report.dead_lettered(), 1);
    assert_eq!(
        dlq.letters(),
        [DeadLetter {
            body: "bad".into(),
            record_id: "m1".into(),
            source: Some("arn:aws:sqs:us-east-2:123456789012:orders".into()),
            group: Some("a".into()),
            error_type: "OrderMalformed".into(),
            reason: "order m1 is malformed".into(),
        }]
    );

    // When the dead-letter queue refuses, the record goes back to the source: nothing is lost.
    dlq.set_unavailable(true);
    let report = BatchProcessor::new()
        .dead_letters(dlq.clone())
        .sqs(&event, async |m| handle_body(m).await)
        .await;
    assert_eq!(failed_ids(&report.response), ["m1", "m2"]);
}

#[tokio::test]
async fn a_fifo_queue_stops_at_the_first_failure() {
    let records = [
        ("ok", "g1"),
        ("ok", "g2"),
        ("down", "g1"),
        ("ok", "g2"),
        ("ok", "g1"),
    ];
    let event = sqs_event(&records, true);
    let ran = RefCell::new(Vec::new());
    let report = BatchProcessor::new()
        .concurrency(4)
        .sqs(&event, async |m| {
            ran.borrow_mut().push(m.message_id.clone().unwrap());
            handle_body(m).await
        })
        .await;
    assert_eq!(failed_ids(&report.response), ["m2", "m3", "m4"]);
    assert_eq!(
        *ran.borrow(),
        ["m0", "m1", "m2"],
        "nothing after the failure runs"
    );
    let skipped = report.failures().nth(1).unwrap();
    assert_eq!(skipped.error_type, "Skipped");
    assert!(skipped.reason.contains("m2"), "{}", skipped.reason);
}

#[tokio::test]
async fn a_fifo_queue_can_keep_other_groups_going_in_order() {
    let records = [
        ("ok", "g1"),
        ("ok", "g2"),
        ("down", "g1"),
        ("ok", "g2"),
        ("ok", "g1"),
        ("ok", "g3"),
    ];
    let event = sqs_event(&records, true);
    let ran = RefCell::new(Vec::new());
    let report = BatchProcessor::new()
        .concurrency(3)
        .keep_other_groups()
        .sqs(&event, async |m| {
            ran.borrow_mut().push(m.message_id.clone().unwrap());
            handle_body(m).await
        })
        .await;
    assert_eq!(failed_ids(&report.response), ["m2", "m4"]);
    let ran = ran.borrow();
    let position = |id: &str| ran.iter().position(|r| r == id).unwrap();
    assert!(
        position("m1") < position("m3"),
        "g2 keeps its order: {ran:?}"
    );
    assert!(!ran.contains(&"m4".to_owned()));
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let bodies: Vec<(&str, &str)> = (0..12).map(|_| ("ok", "g")).collect();
    let event = sqs_event(&bodies, false);
    let (running, peak) = (Cell::new(0), Cell::new(0));
    BatchProcessor::new()
        .concurrency(4)
        .sqs(&event, async |_m| {
            running.set(running.get() + 1);
            peak.set(peak.get().max(running.get()));
            tokio::time::sleep(Duration::from_millis(1)).await;
            running.set(running.get() - 1);
            Ok::<_, OrderError>(())
        })
        .await;
    assert_eq!(peak.get(), 4);
}

#[tokio::test]
async fn a_batch_where_everything_failed_is_an_error() {
    let event = sqs_event(&[("down", "a"), ("bad", "a")], false);
    let error = BatchProcessor::new()
        .sqs(&event, async |m| handle_body(m).await)
        .await
        .into_result()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "all 2 records of the batch failed; the first, m0, with WarehouseDown: the warehouse is down"
    );
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "BatchAllFailed");

    let empty = sqs_event(&[], false);
    let report = BatchProcessor::new()
        .sqs(&empty, async |m| handle_body(m).await)
        .await;
    assert!(report.into_result().is_ok());
}

#[tokio::test]
async fn a_dynamodb_stream_reports_the_first_failure_as_the_checkpoint() {
    let event: DynamoDbEvent = serde_json::from_str(DYNAMODB_STREAM_EVENT).unwrap();
    let ran = RefCell::new(Vec::new());
    let report = BatchProcessor::new()
        .concurrency(2)
        .dynamodb(&event, async |record| {
            let sequence = record.change.sequence_number.clone().unwrap();
            ran.borrow_mut().push(record.event_name.clone());
            if record.event_name == "MODIFY" {
                Err(OrderError::WarehouseDown)
            } else {
                Ok(())
            }
            .map(|()| sequence)
        })
        .await;
    let checkpoint: Vec<_> = report
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(checkpoint, ["4421584600000000017450439092"]);
    // C-42's REMOVE comes after its failed MODIFY and must not run; C-7 is another item and does.
    let mut ran = ran.borrow().clone();
    ran.sort();
    assert_eq!(ran, ["INSERT", "INSERT", "MODIFY"]);
}

#[tokio::test]
async fn a_kinesis_stream_reports_the_first_failure_as_the_checkpoint() {
    let event: KinesisEvent = serde_json::from_str(KINESIS_EVENT).unwrap();
    let report = BatchProcessor::new()
        .kinesis(&event, async |record| {
            let order: Value = serde_json::from_slice(&record.kinesis.data).unwrap();
            if order["order_id"] == "SO-1002" {
                Err(OrderError::Malformed("SO-1002".into()))
            } else {
                Ok(())
            }
        })
        .await;
    let checkpoint: Vec<_> = report
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(
        checkpoint,
        ["49590338271490256608559692540925702759324208523137515618"]
    );
    assert_eq!(
        report.succeeded(),
        2,
        "SO-1001's records are another partition key"
    );

    let all_good = BatchProcessor::new()
        .kinesis(&event, async |_| Ok::<_, OrderError>(()))
        .await;
    assert!(all_good.response.batch_item_failures.is_empty());
}

#[tokio::test]
async fn a_redelivered_batch_reruns_only_what_did_not_complete() {
    let store = InMemoryIdempotencyStore::new();
    let idempotency = Idempotency::new(store.clone(), "orders", Selector::pointers(["/body"]));
    let event = sqs_event(&[("a", "g"), ("down", "g"), ("c", "g")], false);
    let runs = RefCell::new(Vec::new());
    let warehouse_up = Cell::new(false);
    let process = async || {
        BatchProcessor::new()
            .sqs(&event, async |m| {
                idempotency
                    .run(m, None, || async {
                        let body = m.body.clone().unwrap();
                        runs.borrow_mut().push(body.clone());
                        match body.as_str() {
                            "down" if !warehouse_up.get() => Err(OrderError::WarehouseDown),
                            _ => Ok(body),
                        }
                    })
                    .await
            })
            .await
    };
    assert_eq!(failed_ids(&process().await.response), ["m1"]);
    warehouse_up.set(true);
    let redelivered = process().await;
    assert!(redelivered.response.batch_item_failures.is_empty());
    assert_eq!(*runs.borrow(), ["a", "down", "c", "down"]);
}

#[tokio::test]
async fn claimed_mode_costs_two_calls_for_ten_messages_and_one_for_their_redelivery() {
    let store = InMemoryIdempotencyStore::new();
    let idempotency = Idempotency::new(store.clone(), "orders", Selector::pointers(["/order_id"]));
    let bodies: Vec<String> = (0..10)
        .map(|i| json!({"order_id": i}).to_string())
        .collect();
    let mut records: Vec<(&str, &str)> = bodies.iter().map(|b| (b.as_str(), "g")).collect();
    records.push(("not json", "g"));
    let event = sqs_event(&records, false);
    let runs = Cell::new(0);
    let process = async || {
        BatchProcessor::new()
            .concurrency(5)
            .dead_letters(InMemoryDeadLetterQueue::new())
            .sqs_claimed(
                &event,
                &idempotency,
                None,
                |m| {
                    serde_json::from_str::<Value>(m.body.as_deref().unwrap_or_default())
                        .map_err(|e| OrderError::Malformed(e.to_string()))
                },
                async |order: &Value| {
                    runs.set(runs.get() + 1);
                    Ok::<_, OrderError>(order["order_id"].clone())
                },
            )
            .await
    };
    let report = process().await;
    assert_eq!((report.succeeded(), report.dead_lettered()), (10, 1));
    assert_eq!((runs.get(), store.calls()), (10, 2));
    let report = process().await;
    assert_eq!((report.duplicates(), report.dead_lettered()), (10, 1));
    assert_eq!((runs.get(), store.calls()), (10, 3));
}

#[tokio::test]
async fn a_passing_failure_on_the_last_receive_is_dead_lettered_with_its_reason() {
    let dlq = InMemoryDeadLetterQueue::new();
    let mut event = sqs_event(&[("down", "a"), ("down", "a"), ("ok", "a")], false);
    // The first is on its second receive of two, the second on its first.
    event.records[0]
        .attributes
        .insert("ApproximateReceiveCount".into(), "2".into());
    event.records[1]
        .attributes
        .insert("ApproximateReceiveCount".into(), "1".into());
    let report = BatchProcessor::new()
        .max_receives(Some(2))
        .dead_letters(dlq.clone())
        .sqs(&event, async |m| handle_body(m).await)
        .await;
    assert_eq!(failed_ids(&report.response), ["m1"], "redelivered");
    assert_eq!(report.dead_lettered(), 1);
    let letters = dlq.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].record_id, "m0");
    assert_eq!(letters[0].error_type, "WarehouseDown");
    assert_eq!(
        letters[0].reason,
        "still failing on receive 2 of 2: the warehouse is down"
    );
}

#[tokio::test]
async fn without_the_receive_limit_a_passing_failure_is_always_redelivered() {
    let dlq = InMemoryDeadLetterQueue::new();
    let mut event = sqs_event(&[("down", "a")], false);
    event.records[0]
        .attributes
        .insert("ApproximateReceiveCount".into(), "9".into());
    let report = BatchProcessor::new()
        .dead_letters(dlq.clone())
        .sqs(&event, async |m| handle_body(m).await)
        .await;
    assert_eq!(failed_ids(&report.response), ["m0"]);
    assert!(dlq.letters().is_empty());
}

#[tokio::test]
async fn a_batch_starts_no_record_the_time_left_cannot_hold_and_keeps_what_finished() {
    // Five records of 200 ms each, one at a time, 650 ms to the deadline, a 100 ms margin: the
    // first two fit; the third would start with 250 ms left, under the margin and the slowest
    // record, so it and the rest go back unstarted. Without the deadline all five would run, past
    // it, and Lambda would kill the batch, finished records and all.
    let event = sqs_event(&[("ok", "a"); 5], false);
    let started = RefCell::new(Vec::new());
    let report = BatchProcessor::new()
        .stop_margin(Duration::from_millis(100))
        .sqs_until(
            &event,
            Deadline::after(Duration::from_millis(650)),
            async |m| {
                started.borrow_mut().push(m.message_id.clone().unwrap());
                tokio::time::sleep(Duration::from_millis(200)).await;
                handle_body(m).await
            },
        )
        .await;
    let ran = started.borrow().len();
    assert!((1..=2).contains(&ran), "started {ran} of 5");
    assert_eq!(report.succeeded(), ran, "what finished is kept");
    let failed = failed_ids(&report.response);
    assert_eq!(failed.len(), 5 - ran, "the rest go back: {failed:?}");
    for outcome in &report.outcomes[ran..] {
        let RecordOutcome::Failed(failure) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(failure.error_type, "OutOfTime");
        assert!(
            failure.reason.starts_with("not started: "),
            "{}",
            failure.reason
        );
    }
}

#[tokio::test]
async fn a_record_out_of_time_on_its_last_receive_is_dead_lettered_with_that_reason() {
    let dlq = InMemoryDeadLetterQueue::new();
    let mut event = sqs_event(&[("ok", "a")], false);
    event.records[0]
        .attributes
        .insert("ApproximateReceiveCount".into(), "3".into());
    let ran = Cell::new(false);
    let report = BatchProcessor::new()
        .max_receives(Some(3))
        .dead_letters(dlq.clone())
        .sqs_until(&event, Deadline::after(Duration::ZERO), async |m| {
            ran.set(true);
            handle_body(m).await
        })
        .await;
    assert!(!ran.get(), "nothing starts past the deadline");
    assert_eq!(report.dead_lettered(), 1);
    let letters = dlq.letters();
    assert_eq!(letters[0].error_type, "OutOfTime");
    assert!(
        letters[0]
            .reason
            .starts_with("still failing on receive 3 of 3: not started: "),
        "{}",
        letters[0].reason
    );
}
