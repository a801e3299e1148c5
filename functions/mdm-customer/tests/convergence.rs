//! The customer master converges: any set of updates from the three sources, delivered in any
//! order with any duplicates, gives the same master, and the changes it published, replayed in
//! version order, rebuild that master's values (what a downstream system syncing from the bus sees).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code, which fails by panicking"
)]

use std::collections::BTreeMap;

use busline::bus::InMemoryBus;
use mdm_customer::CustomerMaster;
use mdm_customer::merge::{CustomerUpdate, Master, Rules, merge};
use mdm_customer::store::InMemoryMasterStore;
use proptest::prelude::*;
use serde_json::{Value, json};

fn an_update() -> impl Strategy<Value = CustomerUpdate> {
    let source = prop::sample::select(vec!["crm", "shop", "erp"]);
    let field = prop::sample::select(vec!["email", "phone", "tier", "address", "name"]);
    let value = prop::sample::select(vec![
        json!("a"),
        json!("b"),
        json!("c"),
        json!({"city": "Cork"}),
        Value::Null,
    ]);
    (
        source,
        0i64..6, // few timestamps: ties happen
        prop::collection::btree_map(field, value, 1..4),
    )
        .prop_map(|(source, ts_ms, fields)| CustomerUpdate {
            customer_id: "C-1".to_owned(),
            source: source.to_owned(),
            ts_ms,
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })
}

/// The updates, plus duplicates of some of them, in a shuffled order.
fn deliveries() -> impl Strategy<Value = (Vec<CustomerUpdate>, Vec<CustomerUpdate>)> {
    prop::collection::vec(an_update(), 1..12).prop_flat_map(|updates| {
        let n = updates.len();
        (Just(updates.clone()), prop::collection::vec(0..n, n..n * 2)).prop_flat_map(
            |(updates, extra)| {
                let mut delivered: Vec<CustomerUpdate> = updates.clone();
                delivered.extend(extra.iter().map(|&i| updates[i].clone()));
                (Just(updates), Just(delivered).prop_shuffle())
            },
        )
    })
}

fn merged(updates: &[CustomerUpdate]) -> Master {
    let rules = Rules::default();
    let mut master = Master {
        customer_id: "C-1".to_owned(),
        ..Master::default()
    };
    for update in updates {
        merge(&mut master, update, &rules);
    }
    master
}

proptest! {
    #[test]
    fn any_order_with_duplicates_gives_the_same_master((updates, delivered) in deliveries()) {
        prop_assert_eq!(merged(&updates), merged(&delivered));
    }

    #[test]
    fn the_published_changes_rebuild_the_master((updates, delivered) in deliveries()) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let master = CustomerMaster {
                store: InMemoryMasterStore::new(),
                publisher: InMemoryBus::new(),
                rules: Rules::default(),
            };
            for update in &delivered {
                master.apply(update).await.unwrap();
            }
            let stored = master.store.records()["C-1"].master();
            prop_assert_eq!(&stored, &merged(&updates));

            let mut downstream: BTreeMap<String, Value> = BTreeMap::new();
            let mut versions = Vec::new();
            for event in master.publisher.published() {
                versions.push(event["data"]["version"].as_u64().unwrap());
                for (field, value) in event["data"]["changed"].as_object().unwrap() {
                    downstream.insert(field.clone(), value.clone());
                }
            }
            prop_assert!(versions.windows(2).all(|w| w[0] < w[1]), "published in version order: {:?}", versions);
            prop_assert_eq!(downstream, stored.values());
            Ok(())
        })?;
    }
}
