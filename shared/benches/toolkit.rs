//! What the reliability toolkit costs per message on top of the handler, with the in-memory stores
//! (so only the toolkit's own work is measured): `make bench` prints each beside its baseline.
//!
//! - `idempotency/*`: one message through [`Idempotency::run`] (a first delivery, a duplicate, an
//!   envelope with payload validation) against the bare handler;
//! - `batch/*`: a ten-message SQS batch through [`BatchProcessor`] with idempotency per message, and
//!   in claimed mode, against a plain loop over the same handler.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use busline::batch::BatchProcessor;
use busline::error::{Classify, ErrorClass};
use busline::idempotency::{Idempotency, InMemoryIdempotencyStore, Selector};
use busline::{Envelope, EventType};
use criterion::{Criterion, criterion_group};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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

#[derive(Serialize, Deserialize)]
struct Receipt {
    order_id: u64,
    status: u32,
}

async fn handler(order_id: u64) -> Result<Receipt, Never> {
    Ok(black_box(Receipt {
        order_id,
        status: 200,
    }))
}

fn sqs_event(first: u64) -> SqsEvent {
    let records: Vec<Value> = (first..first + 10)
        .map(|i| {
            json!({
                "messageId": format!("m-{i}"), "body": json!({"order_id": i}).to_string(),
                "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:orders",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn order_id(message: &SqsMessage) -> u64 {
    let body = message.body.as_deref().unwrap_or_default();
    body.trim_start_matches("{\"order_id\":")
        .trim_end_matches('}')
        .parse()
        .unwrap_or_default()
}

fn idempotency(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("idempotency");
    let next = AtomicU64::new(0);

    group.bench_function("baseline: handler alone", |b| {
        b.to_async(&runtime)
            .iter(|| handler(next.fetch_add(1, Ordering::Relaxed)))
    });

    let by_order = Idempotency::new(
        InMemoryIdempotencyStore::new(),
        "orders",
        Selector::function(|order_id: &u64| Some(order_id.to_string())),
    );
    group.bench_function("first delivery", |b| {
        b.to_async(&runtime).iter(|| async {
            let id = next.fetch_add(1, Ordering::Relaxed);
            by_order.run(&id, None, || handler(id)).await.unwrap()
        })
    });
    group.bench_function("duplicate", |b| {
        b.to_async(&runtime)
            .iter(|| async { by_order.run(&7, None, || handler(7)).await.unwrap() })
    });
    let cached = Idempotency::new(
        InMemoryIdempotencyStore::new(),
        "orders",
        Selector::function(|order_id: &u64| Some(order_id.to_string())),
    )
    .local_cache(1024);
    group.bench_function("duplicate from the local cache", |b| {
        b.to_async(&runtime)
            .iter(|| async { cached.run(&7, None, || handler(7)).await.unwrap() })
    });

    let envelopes = Idempotency::for_envelopes(InMemoryIdempotencyStore::new(), "orders");
    let event_type = EventType::parse("io.busline.shop.order.placed.v1").unwrap();
    group.bench_function("envelope with payload validation, first delivery", |b| {
        b.to_async(&runtime).iter(|| async {
            let id = next.fetch_add(1, Ordering::Relaxed);
            let envelope = Envelope::new(
                id.to_string(),
                "busline.webhook.shop",
                event_type.clone(),
                json!({"order_id": id, "lines": [{"sku": "SKU-1", "quantity": 2}]}),
            );
            envelopes
                .run(&envelope, None, || handler(id))
                .await
                .unwrap()
        })
    });
    group.finish();
}

fn batch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("batch of 10");
    let next = AtomicU64::new(0);
    let event = || sqs_event(next.fetch_add(10, Ordering::Relaxed));

    group.bench_function("baseline: a loop over the handler", |b| {
        b.to_async(&runtime).iter_batched(
            event,
            |event| async move {
                for message in &event.records {
                    handler(order_id(message)).await.unwrap();
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });

    let idempotency = Idempotency::new(
        InMemoryIdempotencyStore::new(),
        "orders",
        Selector::function(|m: &SqsMessage| Some(order_id(m).to_string())),
    );
    let processor = BatchProcessor::new().concurrency(4);
    group.bench_function("batch processor + idempotency per message", |b| {
        b.to_async(&runtime).iter_batched(
            event,
            |event| {
                let (processor, idempotency) = (&processor, &idempotency);
                async move {
                    processor
                        .sqs(&event, async |m| {
                            idempotency.run(m, None, || handler(order_id(m))).await
                        })
                        .await
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("batch processor, claimed mode", |b| {
        b.to_async(&runtime).iter_batched(
            event,
            |event| {
                let (processor, idempotency) = (&processor, &idempotency);
                async move {
                    processor
                        .sqs_claimed(
                            &event,
                            idempotency,
                            None,
                            |m| Ok::<_, Never>(m.clone()),
                            async |m: &SqsMessage| handler(order_id(m)).await,
                        )
                        .await
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, idempotency, batch);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summarize();
}

/// Prints each measurement's median beside its group's baseline, and the overhead per message.
fn summarize() {
    let root = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion");
    let median_ns = |group: &str, function: &str| -> Option<f64> {
        let dir = root
            .join(group)
            .join(function.replace([':', '/', '\\', '?', '*', '"', '<', '>', '|'], "_"));
        let text = std::fs::read_to_string(dir.join("new/estimates.json")).ok()?;
        serde_json::from_str::<Value>(&text).ok()?["median"]["point_estimate"].as_f64()
    };
    println!(
        "\n| Toolkit overhead, in-memory stores | median | baseline | ratio | overhead / message |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (group, baseline, messages, functions) in [
        (
            "idempotency",
            "baseline: handler alone",
            1.0,
            &[
                "first delivery",
                "duplicate",
                "duplicate from the local cache",
                "envelope with payload validation, first delivery",
            ][..],
        ),
        (
            "batch of 10",
            "baseline: a loop over the handler",
            10.0,
            &[
                "batch processor + idempotency per message",
                "batch processor, claimed mode",
            ][..],
        ),
    ] {
        let Some(base) = median_ns(group, baseline) else {
            continue;
        };
        for function in functions {
            let Some(median) = median_ns(group, function) else {
                continue;
            };
            println!(
                "| {group}/{function} | {:.2} µs | {:.3} µs | {:.0}× | {:.2} µs |",
                median / 1000.0,
                base / 1000.0,
                median / base,
                (median - base) / messages / 1000.0
            );
        }
    }
}
