//! The translator's throughput on one core, beside parsing and re-serialising the same events with
//! `serde_json` (the limit any transformer works under). Goal: at least 0.5× that limit.
//!
//! For each dialect's sample, as EventBridge delivers it (the whole event, as bytes):
//! - `baseline`: parsed into a `serde_json::Value` and written back out;
//! - `translate`: parsed into the delivered event, its detail left as text (as the Lambda runtime
//!   does for a transformer), then the whole
//!   handler: the transform runtime reads the envelope, the translator reads the dialect, maps it
//!   and validates the canonical event, and the publisher serialises the EventBridge entry (a
//!   publisher that stops short of the network).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark, which fails by panicking"
)]

use std::hint::black_box;

use busline::batch::NoDeadLetterQueue;
use busline::bus::SerialisingPublisher;
use busline::transform::{DeliveredEvent, Outcome, delivered};
use busline::{Envelope, EventType};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

const DIALECTS: &[(&str, &str, &str)] = &[
    (
        "shop",
        translate::SHOP_ORDER_PLACED,
        include_str!("../../../infra/events/shop-order.json"),
    ),
    (
        "marketplace",
        translate::MARKETPLACE_ORDER_PLACED,
        include_str!("../../../infra/events/marketplace-order.json"),
    ),
    (
        "crm",
        translate::CRM_CUSTOMER_UPDATED,
        include_str!("../../../infra/events/crm-customer.json"),
    ),
    (
        "helpdesk",
        translate::HELPDESK_USER_UPDATED,
        include_str!("../../../infra/events/helpdesk-user.json"),
    ),
];

/// The sample as the event EventBridge delivers, serialised.
fn delivered_text(event_type: &str, sample: &str) -> String {
    let envelope = Envelope::new(
        "7d1c1c52-5e1a-4b8e-9a53-0f4b7c1e2d3a",
        "busline.webhook.bench",
        EventType::parse(event_type).unwrap(),
        serde_json::from_str::<Value>(sample).unwrap(),
    )
    .with_correlation_id("corr-bench")
    .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    serde_json::to_string(&delivered(&envelope)).unwrap()
}

fn translation(c: &mut Criterion) {
    // The handler's metrics records (one per event) would otherwise go to stdout.
    busline::telemetry::set_metrics_writer(std::io::sink());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (name, event_type, sample) in DIALECTS {
        let text = delivered_text(event_type, sample);
        let mut group = c.benchmark_group(format!("translate/{name}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("baseline", |b| {
            b.iter(|| {
                let value: Value = serde_json::from_str(black_box(&text)).unwrap();
                black_box(serde_json::to_string(&value).unwrap());
            })
        });
        group.bench_function("translate", |b| {
            b.iter(|| {
                let event: DeliveredEvent = serde_json::from_str(black_box(&text)).unwrap();
                let outcome = runtime
                    .block_on(translate::handle(
                        event,
                        &SerialisingPublisher,
                        &NoDeadLetterQueue,
                    ))
                    .unwrap();
                assert_eq!(outcome, Outcome::Published(1));
            })
        });
        group.finish();
    }
}

criterion_group!(benches, translation);

criterion_main!(benches);
