//! Merges per second in-process: the survivorship merge alone, and a whole change through the
//! customer master (read, merge, conditional write, publish) with the in-memory store and bus.

use std::hint::black_box;

use busline::Envelope;
use busline::bus::{EventPublisher, PublishError};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mdm_customer::CustomerMaster;
use mdm_customer::merge::{CustomerUpdate, Master, Rules, merge};
use mdm_customer::store::InMemoryMasterStore;
use serde::Serialize;
use serde_json::json;

const UPDATES: usize = 1000;

/// A bus that serialises and drops (the in-memory one keeps everything, which would grow).
struct Dropping;

impl EventPublisher for Dropping {
    async fn publish<T: Serialize + Sync>(
        &self,
        events: &[Envelope<T>],
    ) -> Result<(), PublishError> {
        for event in events {
            black_box(serde_json::to_vec(event).unwrap());
        }
        Ok(())
    }
}

fn updates() -> Vec<CustomerUpdate> {
    let sources = ["crm", "shop", "erp"];
    let cities = ["Cork", "Dublin", "Galway"];
    (0..UPDATES)
        .map(|i| CustomerUpdate {
            customer_id: format!("C-{}", i % 50),
            source: sources[i % 3].to_owned(),
            ts_ms: (i * 7 % 101) as i64,
            fields: serde_json::from_value(json!({
                "email": format!("user{}@example.com", i % 13),
                "phone": format!("+353 1 555 {:04}", i % 17),
                "address": {"city": cities[i % 3]},
            }))
            .unwrap(),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let updates = updates();
    let rules = Rules::default();
    let mut group = c.benchmark_group("mdm");
    group.throughput(Throughput::Elements(UPDATES as u64));
    group.bench_function("merge alone", |b| {
        b.iter(|| {
            let mut masters: std::collections::HashMap<&str, Master> = Default::default();
            for update in &updates {
                let master = masters.entry(&update.customer_id).or_default();
                black_box(merge(master, update, &rules));
            }
        })
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    group.bench_function("through the customer master (in-memory store)", |b| {
        b.iter(|| {
            let master = CustomerMaster {
                store: InMemoryMasterStore::new(),
                publisher: Dropping,
                rules: rules.clone(),
            };
            runtime.block_on(async {
                for update in &updates {
                    black_box(master.apply(update).await.unwrap());
                }
            });
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
