//! The CDC handler's throughput in-process, beside the cost of just parsing and re-serialising the
//! same stream records (the limit any connector works under). Goal: at least 0.5× that limit.
//!
//! - `baseline: parse + re-serialise`: a batch of 100 `MODIFY` records read from JSON into
//!   `EventRecord`s, each written back out as JSON;
//! - `cdc handler`: the same batch through [`cdc_stream::handle`], each change built, its field
//!   filter applied and serialised as the EventBridge entry it would be published as (a publisher
//!   that stops short of the network).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark, which fails by panicking"
)]

use std::hint::black_box;

use aws_lambda_events::event::dynamodb::EventRecord;
use busline::batch::NoDeadLetterQueue;
use busline::bus::SerialisingPublisher;
use cdc_stream::{CdcConfig, handle, parse_fields};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

const RECORDS: usize = 100;

fn batch() -> Value {
    let fixture: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/dynamodb-stream-event.json"
    ))
    .unwrap();
    let template = fixture["Records"][1].clone();
    let records: Vec<Value> = (0..RECORDS)
        .map(|i| {
            let mut record = template.clone();
            record["dynamodb"]["Keys"]["customer_id"] = json!({"S": format!("C-{}", i % 17)});
            record["dynamodb"]["NewImage"]["customer_id"] = json!({"S": format!("C-{}", i % 17)});
            record["dynamodb"]["OldImage"]["customer_id"] = json!({"S": format!("C-{}", i % 17)});
            record["dynamodb"]["NewImage"]["phone"] = json!({"S": "+44 20 7946 0000"});
            record["dynamodb"]["SequenceNumber"] =
                json!(format!("{}", 4_421_584_600_000_u64 + i as u64));
            record
        })
        .collect();
    json!({"Records": records})
}

fn cdc(c: &mut Criterion) {
    let event = batch();
    let text = event.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let config = CdcConfig {
        drop_fields: parse_fields("phone"),
        ..CdcConfig::default()
    };
    let mut group = c.benchmark_group("cdc");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("baseline: parse + re-serialise", |b| {
        b.iter(|| {
            let event: Value = serde_json::from_str(black_box(&text)).unwrap();
            for record in event["Records"].as_array().unwrap() {
                let record: EventRecord = serde_json::from_value(record.clone()).unwrap();
                black_box(serde_json::to_string(&record).unwrap());
            }
        })
    });
    let payloads = busline::claim_check::InMemoryPayloadStore::new();
    group.bench_function("cdc handler", |b| {
        b.iter(|| {
            let event: Value = serde_json::from_str(black_box(&text)).unwrap();
            let outcome = runtime
                .block_on(handle(
                    event,
                    &config,
                    &SerialisingPublisher,
                    &NoDeadLetterQueue,
                    &payloads,
                    busline::retry::Deadline::after(std::time::Duration::from_secs(60)),
                ))
                .unwrap();
            assert_eq!(outcome.published, RECORDS);
        })
    });
    group.finish();
}

criterion_group!(benches, cdc);

criterion_main!(benches);
