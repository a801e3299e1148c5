//! The idempotency layer against LocalStack's DynamoDB: DynamoDB calls per message, counted on the
//! wire by an SDK interceptor, and the latency it adds, beside a bare `PutItem` of the same size in
//! the same run.
//!
//! Needs LocalStack (`make bench` starts it). Creates its own table. Writes
//! `target/bench/idempotency.json` (its section of the report) and prints a table.

use std::time::Instant;

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue;
use busline::error::{Classify, ErrorClass};
use busline::idempotency::{DynamoDbIdempotencyStore, Idempotency, Selector};
use busline_tests::report::{Column, Section, Table};
use busline_tests::{CallCounter, create_key_table, localstack, percentile};
use serde_json::{Value, json};

const MESSAGES: usize = 200;

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Classify for Never {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }
    fn error_type(&self) -> &'static str {
        "Never"
    }
}

struct Row {
    name: &'static str,
    calls_per_message: f64,
    per_message_ms: Vec<f64>,
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let aws = localstack().await?;
    let table = format!(
        "bench-idempotency-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    create_key_table(&aws, &table, Some("expires_at")).await?;
    let counter = CallCounter::default();
    let client = counter.dynamodb(&aws);
    let idempotency = Idempotency::new(
        DynamoDbIdempotencyStore::new(client.clone(), &table),
        "bench",
        Selector::pointers(["/order_id"]),
    );
    let order = |i: usize| json!({"order_id": format!("SO-{i}"), "lines": [{"sku": "SKU-1", "quantity": 2}]});
    let handler = async |event: &Value| Ok::<_, Never>(json!({"reserved": event["order_id"]}));
    let mut rows = Vec::new();

    // Warm the connection pool and LocalStack's table before measuring.
    for i in 0..20 {
        let event = order(1_000_000 + i);
        idempotency.run(&event, None, || handler(&event)).await?;
    }
    let mut row = |name: &'static str, messages: usize, per_message_ms: Vec<f64>| {
        rows.push(Row {
            name,
            calls_per_message: counter.take().len() as f64 / messages as f64,
            per_message_ms,
        })
    };
    counter.take();

    let mut samples = Vec::new();
    for i in 0..MESSAGES {
        let started = Instant::now();
        client
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("bench#baseline-{i}")))
            .item("status", AttributeValue::S("COMPLETED".into()))
            .item("expires_at", AttributeValue::N("1900000000".into()))
            .item(
                "response",
                AttributeValue::S(r#"{"reserved":"SO-1"}"#.into()),
            )
            .send()
            .await?;
        samples.push(elapsed_ms(started));
    }
    row(
        "baseline: one PutItem of a record's size",
        MESSAGES,
        samples,
    );

    for name in [
        "first delivery (claim, handler, complete)",
        "duplicate (replayed from the claim's answer)",
    ] {
        let mut samples = Vec::new();
        for i in 0..MESSAGES {
            let event = order(i);
            let started = Instant::now();
            idempotency.run(&event, None, || handler(&event)).await?;
            samples.push(elapsed_ms(started));
        }
        row(name, MESSAGES, samples);
    }

    for name in [
        "batch of 10 distinct, claimed mode",
        "batch of 10 redelivered, claimed mode",
    ] {
        let mut samples = Vec::new();
        for first in (0..MESSAGES).step_by(10) {
            let batch: Vec<Value> = (first..first + 10).map(|i| order(10_000 + i)).collect();
            let started = Instant::now();
            for result in idempotency.run_all(&batch, None, 10, handler).await {
                result?;
            }
            samples.push(elapsed_ms(started) / 10.0);
        }
        row(name, MESSAGES, samples);
    }

    let baseline = percentile(&rows[0].per_message_ms, 0.5);
    let mut section = Section::new(
        30,
        "DynamoDB calls per message: the idempotency layer",
        &format!(
            "The idempotency layer against LocalStack's DynamoDB, {MESSAGES} messages each: calls \
             counted on the wire by an SDK interceptor (retries would count), and the latency per \
             message beside one bare `PutItem` of a record's size in the same run. Batch rows time \
             each batch of ten and divide by ten; their p99 is over {} batches \
             (`tests/benches/idempotency_store.rs`).",
            MESSAGES / 10
        ),
    );
    let mut table = Table::new(
        "",
        vec![
            Column::text("message"),
            Column::number("DynamoDB calls / message", "", 2),
            Column::number("p50 / message", "ms", 2),
            Column::number("p99 / message", "ms", 2),
            Column::number("p50 vs PutItem", "×", 2),
        ],
    );
    for row in &rows {
        let (p50, p99) = (
            percentile(&row.per_message_ms, 0.5),
            percentile(&row.per_message_ms, 0.99),
        );
        table.row(vec![
            json!(row.name),
            json!(row.calls_per_message),
            json!(p50),
            json!(p99),
            json!(p50 / baseline),
        ]);
    }
    section.tables.push(table);
    section.publish("idempotency")
}
