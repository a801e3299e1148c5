//! The batch sync end to end on LocalStack, in-process: 10,000 records from a stub source API
//! (pages of 100) to the bus, checkpointed after every page, beside the same records put on the bus
//! by a bare loop of `PutEvents` calls of ten (the limit any sync works under). `PutEvents` and
//! DynamoDB calls are counted on the wire.

use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use batch_sync::{SourceSync, SyncConfig};
use busline::batch::NoDeadLetterQueue;
use busline::bus::EventBridgePublisher;
use busline::checkpoint::DynamoDbCheckpointStore;
use busline::retry::{Backoff, Deadline};
use busline_tests::report::{Column, Section, Table};
use busline_tests::source_stub::SourceStub;
use busline_tests::{CallCounter, DeployedStack, localstack};
use chrono::{TimeZone, Utc};
use serde_json::json;
use wiremock::MockServer;

const RECORDS: usize = 10_000;

#[tokio::main]
async fn main() -> Result<()> {
    let aws = localstack().await?;
    let stack = DeployedStack::read(&aws).await?;
    let bus = stack.output("EventBusName")?.to_owned();
    let server = MockServer::start().await;
    let stub =
        SourceStub::with_records(RECORDS, Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
    stub.mount(&server).await;

    // Baseline: the same records, ten to a PutEvents call, nothing else.
    let events = aws_sdk_eventbridge::Client::new(&aws);
    let started = Instant::now();
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(10) {
        let entries = chunk
            .iter()
            .map(|i| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&bus)
                    .source("bench.baseline")
                    .detail_type("bench.baseline.v1")
                    .detail(format!(r#"{{"id":"R-{i}","name":"Customer {i}"}}"#))
                    .build()
            })
            .collect();
        events
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    let baseline = started.elapsed();

    let (bus_calls, table_calls) = (CallCounter::default(), CallCounter::default());
    let sync = SourceSync {
        config: SyncConfig {
            name: format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            source_url: format!("{}/records", server.uri()),
            page_size: 100,
            stop_margin: Duration::from_secs(2),
        },
        http: reqwest::Client::new(),
        checkpoints: DynamoDbCheckpointStore::new(
            table_calls.dynamodb(&aws),
            stack.output("CheckpointTableName")?,
        ),
        publisher: EventBridgePublisher::new(bus_calls.eventbridge(&aws), &bus),
        dead_letters: NoDeadLetterQueue,
        backoff: Backoff::default(),
    };
    let started = Instant::now();
    let report = sync
        .run("bench", Deadline::after(Duration::from_secs(600)))
        .await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        report.complete && report.published == RECORDS as u64,
        "{report:?}"
    );

    let per_second = |d: Duration| RECORDS as f64 / d.as_secs_f64();
    let per_thousand = |calls: usize| calls as f64 * 1000.0 / RECORDS as f64;
    assert_eq!(RECORDS, 10_000, "the section's text says so");
    let mut section = Section::new(
        75,
        "Batch sync on LocalStack",
        "10,000 records from a stub source API in pages of 100 to the bus, checkpointed after \
         every page, in-process against LocalStack, beside the same records put on the bus by a \
         bare loop of `PutEvents` calls of ten (the limit any sync works under). Calls counted on \
         the wire (`tests/benches/batch_sync.rs`).",
    );
    let mut table = Table::new(
        "",
        vec![
            Column::text("run"),
            Column::number("records / s", "", 0),
            Column::number("vs the bare loop", "×", 2),
            Column::number("PutEvents / 1,000 records", "", 0).at_most(100.0),
            Column::number("DynamoDB calls / 1,000 records", "", 1),
        ],
    );
    table.row(vec![
        json!("baseline: PutEvents of ten, nothing else"),
        json!(per_second(baseline)),
        json!(1.0),
        json!(100),
        json!(0),
    ]);
    table.row(vec![
        json!("batch sync (fetch, envelope, publish, checkpoint per page)"),
        json!(per_second(elapsed)),
        json!(baseline.as_secs_f64() / elapsed.as_secs_f64()),
        json!(per_thousand(bus_calls.count())),
        json!(per_thousand(table_calls.count())),
    ]);
    section.tables.push(table);
    section.publish("batch-sync")
}
