//! Changes per second in-process, each run reading the 1,000 changes from their JSON: the
//! survivorship merge alone, and each change through the customer master (read, merge, conditional
//! write, publish as far as the serialised EventBridge entry) with the in-memory store. `make
//! bench`'s report sets both beside the baseline: `serde_json` parsing the same JSON and writing
//! it back out.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark, which fails by panicking"
)]

use std::hint::black_box;

use busline::bus::SerialisingPublisher;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mdm_customer::CustomerMaster;
use mdm_customer::merge::{CustomerUpdate, Master, Rules, merge};
use mdm_customer::store::InMemoryMasterStore;
use serde_json::json;

const UPDATES: usize = 1000;

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
    let text = serde_json::to_string(&updates()).unwrap();
    let read = |text: &str| serde_json::from_str::<Vec<CustomerUpdate>>(text).unwrap();
    let rules = Rules::default();
    let mut group = c.benchmark_group("mdm");
    group.throughput(Throughput::Elements(UPDATES as u64));
    group.bench_function("baseline: serde_json parse + serialise", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_str(black_box(&text)).unwrap();
            black_box(serde_json::to_string(&value).unwrap());
        })
    });
    group.bench_function("merge alone", |b| {
        b.iter(|| {
            let updates = read(black_box(&text));
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
            let updates = read(black_box(&text));
            let master = CustomerMaster {
                store: InMemoryMasterStore::new(),
                publisher: SerialisingPublisher,
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
