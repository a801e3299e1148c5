//! Runs the CRM translation through the whole handler 20,000 times, for callgrind:
//! `CARGO_PROFILE_RELEASE_DEBUG=true CARGO_PROFILE_RELEASE_STRIP=false cargo build --release -p translate --example profile_crm`
//! then `valgrind --tool=callgrind target/release/examples/profile_crm` and `callgrind_annotate --inclusive=yes`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a profiling tool, which fails by panicking"
)]
use busline::batch::NoDeadLetterQueue;
use busline::bus::SerialisingPublisher;
use busline::transform::{DeliveredEvent, delivered};
use busline::{Envelope, EventType};
use serde_json::Value;

fn main() {
    let envelope = Envelope::new(
        "7d1c1c52-5e1a-4b8e-9a53-0f4b7c1e2d3a",
        "busline.webhook.bench",
        EventType::parse(translate::CRM_CUSTOMER_UPDATED).unwrap(),
        serde_json::from_str::<Value>(include_str!("../../../infra/events/crm-customer.json"))
            .unwrap(),
    )
    .with_correlation_id("corr-bench");
    let text = serde_json::to_string(&delivered(&envelope)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for _ in 0..20_000 {
        let event: DeliveredEvent = serde_json::from_str(std::hint::black_box(&text)).unwrap();
        runtime
            .block_on(translate::handle(
                event,
                &SerialisingPublisher,
                &NoDeadLetterQueue,
            ))
            .unwrap();
    }
}
