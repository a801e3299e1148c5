//! What the reliability toolkit costs per message, with the in-memory stores (so only the
//! toolkit's own work is measured). Every function starts from the payload's JSON text and ends
//! with the answer serialised, as a Lambda handler does; `make bench`'s report sets each beside its
//! group's baseline, `serde_json` parsing the same payload and writing it back out.
//!
//! - `idempotency/*`: one order envelope through [`Idempotency::for_envelopes`] (a first delivery,
//!   a duplicate, a duplicate from the local cache), beside the bare handler;
//! - `batch of 10/*`: an SQS batch of ten order envelopes through [`BatchProcessor`] with
//!   idempotency per message, and in claimed mode, beside a plain loop over the same handler;
//! - `telemetry/*`: what the hop costs a handler (its span on every log line, its trace context for
//!   what it publishes, its "handled" line and its metrics record): a handler that reads an order
//!   envelope, logs a line, publishes one event and answers, with and without
//!   [`Hop`](busline::telemetry::Hop). Logs and metrics go to the JSON subscriber every function
//!   installs, writing to nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark, which fails by panicking"
)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lambda_events::event::sqs::SqsEvent;
use busline::batch::BatchProcessor;
use busline::bus::{EventPublisher, SerialisingPublisher};
use busline::error::{Classify, ErrorClass};
use busline::idempotency::{Idempotency, InMemoryIdempotencyStore};
use busline::telemetry::Hop;
use busline::{Envelope, EventType};
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
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
    order_id: String,
    status: u32,
}

/// The sample order as its envelope's JSON, with event id `id`.
fn envelope_text(id: u64) -> String {
    let order: Value =
        serde_json::from_str(include_str!("../../infra/events/shop-order.json")).unwrap();
    let envelope = Envelope::new(
        format!("evt-{id}"),
        "busline.webhook.shop",
        EventType::parse("io.busline.shop.order.placed.v1").unwrap(),
        order,
    );
    serde_json::to_string(&envelope).unwrap()
}

/// An SQS batch of ten, each body an order envelope: the event's JSON.
fn sqs_text(first: u64) -> String {
    let records: Vec<Value> = (first..first + 10)
        .map(|i| {
            json!({
                "messageId": format!("m-{i}"), "body": envelope_text(i),
                "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:orders",
            })
        })
        .collect();
    json!({ "Records": records }).to_string()
}

/// The handler's answer for an order, serialised as a Lambda answer would be.
async fn handler(envelope: &Envelope<Value>) -> Result<Receipt, Never> {
    Ok(black_box(Receipt {
        order_id: envelope.id.clone(),
        status: 200,
    }))
}

fn envelope(text: &str) -> Envelope<Value> {
    serde_json::from_str(text).unwrap()
}

fn baseline(text: &str) -> String {
    let value: Value = serde_json::from_str(text).unwrap();
    serde_json::to_string(&value).unwrap()
}

fn idempotency(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("idempotency");
    group.throughput(Throughput::Elements(1));
    let next = AtomicU64::new(0);
    let fresh = || envelope_text(next.fetch_add(1, Ordering::Relaxed));
    let same = || envelope_text(7);
    let small = BatchSize::SmallInput;

    group.bench_function("baseline: serde_json parse + serialise", |b| {
        b.iter_batched(fresh, |text| baseline(&text), small)
    });
    group.bench_function("handler alone", |b| {
        b.to_async(&runtime).iter_batched(
            fresh,
            async |text| serde_json::to_string(&handler(&envelope(&text)).await.unwrap()),
            small,
        )
    });
    let envelopes = Idempotency::for_envelopes(InMemoryIdempotencyStore::new(), "orders");
    let cached =
        Idempotency::for_envelopes(InMemoryIdempotencyStore::new(), "orders").local_cache(1024);
    for (name, idempotency, input) in [
        ("first delivery", &envelopes, &fresh as &dyn Fn() -> String),
        ("duplicate", &envelopes, &same),
        ("duplicate from the local cache", &cached, &same),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_batched(
                input,
                async |text| {
                    let envelope = envelope(&text);
                    let receipt = idempotency
                        .run(&envelope, None, || handler(&envelope))
                        .await;
                    serde_json::to_string(&receipt.unwrap())
                },
                small,
            )
        });
    }
    group.finish();
}

/// An SQS batch through a plain loop over the handler: what the batch layer is compared with.
async fn handler_loop(text: &str) -> String {
    let event: SqsEvent = serde_json::from_str(text).unwrap();
    let mut receipts = Vec::new();
    for message in &event.records {
        let envelope = envelope(message.body.as_deref().unwrap());
        receipts.push(handler(&envelope).await.unwrap());
    }
    serde_json::to_string(&receipts).unwrap()
}

/// An SQS batch through the batch processor with idempotency per message.
async fn through_processor(
    text: &str,
    processor: &BatchProcessor,
    idempotency: &Idempotency<InMemoryIdempotencyStore, Envelope<Value>>,
) -> String {
    let event: SqsEvent = serde_json::from_str(text).unwrap();
    let report = processor
        .sqs(&event, async |m| {
            let envelope = envelope(m.body.as_deref().unwrap());
            idempotency
                .run(&envelope, None, || handler(&envelope))
                .await
        })
        .await;
    serde_json::to_string(&report.into_result().unwrap()).unwrap()
}

fn batch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("batch of 10");
    group.throughput(Throughput::Elements(10));
    let next = AtomicU64::new(0);
    let event = || sqs_text(next.fetch_add(10, Ordering::Relaxed));
    let small = BatchSize::SmallInput;

    group.bench_function("baseline: serde_json parse + serialise", |b| {
        b.iter_batched(event, |text| baseline(&text), small)
    });
    group.bench_function("a loop over the handler", |b| {
        b.to_async(&runtime)
            .iter_batched(event, async |text| handler_loop(&text).await, small)
    });

    // Each batch gets a store of its own, made and dropped outside the timing: one store kept
    // across the run held millions of records by its end (criterion runs hundreds of thousands of
    // batches), and its hash table's growth and cache misses, which no Lambda invocation sees
    // (its store is DynamoDB), were most of what this measured.
    let processor = BatchProcessor::new().concurrency(4);
    let with_store = || {
        (
            event(),
            Idempotency::for_envelopes(InMemoryIdempotencyStore::new(), "orders"),
        )
    };
    group.bench_function("batch processor + idempotency per message", |b| {
        b.to_async(&runtime).iter_batched(
            with_store,
            async |(text, idempotency)| {
                let answer = through_processor(&text, &processor, &idempotency).await;
                (answer, idempotency)
            },
            small,
        )
    });
    group.bench_function("batch processor, claimed mode", |b| {
        b.to_async(&runtime).iter_batched(
            with_store,
            async |(text, idempotency)| {
                let event: SqsEvent = serde_json::from_str(&text).unwrap();
                let report = processor
                    .sqs_claimed(
                        &event,
                        &idempotency,
                        None,
                        |m| Ok::<_, Never>(envelope(m.body.as_deref().unwrap())),
                        handler,
                    )
                    .await;
                (
                    serde_json::to_string(&report.into_result().unwrap()),
                    idempotency,
                )
            },
            small,
        )
    });
    group.finish();
}

/// A handler's work on one order: a log line, one event published (serialised as its entry), and
/// the answer.
async fn publishing_handler(envelope: &Envelope<Value>) -> Result<String, Never> {
    tracing::info!(order = %envelope.id, "accepted");
    let accepted = envelope.derive(
        "accepted",
        "busline.bench",
        EventType::parse("io.busline.order.accepted.v1").unwrap(),
        json!({"order_id": envelope.id}),
    );
    SerialisingPublisher
        .publish(std::slice::from_ref(&accepted))
        .await
        .unwrap();
    Ok(serde_json::to_string(&Receipt {
        order_id: envelope.id.clone(),
        status: 202,
    })
    .unwrap())
}

fn telemetry(c: &mut Criterion) {
    busline::telemetry::init_tracing_with_writer(std::io::sink);
    busline::telemetry::set_metrics_writer(std::io::sink());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let text = envelope_text(1);
    let mut group = c.benchmark_group("telemetry");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline: the handler alone", |b| {
        b.iter(|| {
            let envelope = envelope(black_box(&text));
            black_box(runtime.block_on(publishing_handler(&envelope)).unwrap());
        })
    });
    group.bench_function("the handler in a hop", |b| {
        b.iter(|| {
            let envelope = envelope(black_box(&text));
            let hop = Hop::of(&envelope);
            black_box(
                runtime
                    .block_on(hop.run(publishing_handler(&envelope)))
                    .unwrap(),
            );
        })
    });
    group.finish();
}

/// The batch paths without criterion, for callgrind: `TOOLKIT_PROFILE=<path>` runs `path` over
/// [`PROFILE_BATCHES`] batches (or `TOOLKIT_PROFILE_BATCHES`) made beforehand and exits; `setup` only makes them, so a path's own
/// instructions are its total less setup's (`make profile-toolkit` prints them per message).
const PROFILE_BATCHES: u64 = 200;

fn profile(path: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let batches = std::env::var("TOOLKIT_PROFILE_BATCHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(PROFILE_BATCHES);
    let inputs: Vec<String> = (0..batches).map(|i| sqs_text(i * 10)).collect();
    let idempotency = Idempotency::for_envelopes(InMemoryIdempotencyStore::new(), "orders");
    let processor = BatchProcessor::new().concurrency(4);
    for text in inputs {
        let answer = match path {
            "setup" => text,
            "baseline" => baseline(&text),
            "loop" => runtime.block_on(handler_loop(&text)),
            "processor" => runtime.block_on(through_processor(&text, &processor, &idempotency)),
            other => panic!("TOOLKIT_PROFILE={other}: one of setup, baseline, loop, processor"),
        };
        black_box(answer);
    }
}

criterion_group!(benches, idempotency, batch, telemetry);

fn main() {
    if let Ok(path) = std::env::var("TOOLKIT_PROFILE") {
        return profile(&path);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
