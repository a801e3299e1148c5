use std::time::Duration;

use busline::batch::InMemoryDeadLetterQueue;
use busline::bus::InMemoryBus;
use busline::transform::{Outcome, delivered, received, transform};
use serde_json::Value;
use serde_json::{Number, json};

use super::*;
use crate::master::{CachedMaster, InMemoryCustomerMaster, MasterProfile, contract};

fn order(event_type: &str, customer: &str) -> Envelope<Raw> {
    received(&order_in_hand(event_type, customer))
}

fn order_in_hand(event_type: &str, customer: &str) -> Envelope<Value> {
    let mut data: Value =
        serde_json::from_str(include_str!("../../../infra/events/shop-order.json")).unwrap();
    data["customer"]["id"] = json!(customer);
    if event_type == canonical::ORDER_PLACED_V2 {
        data["channel"] = json!("web-shop");
        data["lines"][0]["line_no"] = json!(1);
        data["lines"][1]["line_no"] = json!(2);
    }
    Envelope::new(
        "o-1",
        "busline.translate",
        EventType::parse(event_type).unwrap(),
        data,
    )
    .with_correlation_id("corr-1")
    .with_subject("SO-1001")
}

fn master() -> InMemoryCustomerMaster {
    let master = InMemoryCustomerMaster::new();
    master.insert(
        "C-gold",
        MasterProfile {
            tier: Some("gold".into()),
            credit_limit: Some(Number::from(5000)),
        },
    );
    master.insert("C-bare", MasterProfile::default());
    master
}

#[tokio::test]
async fn the_in_memory_master_keeps_the_contract_and_so_does_its_cache() {
    contract(&master()).await;
    contract(&CachedMaster::new(master(), Duration::from_secs(60), 10)).await;
}

#[tokio::test]
async fn an_order_gets_its_customers_tier_and_credit_and_conforms_to_the_schema() {
    let [out] = <[_; 1]>::try_from(
        enrich(&order(canonical::ORDER_PLACED_V2, "C-gold"), &master())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(out.event_type.as_str(), canonical::ORDER_ENRICHED_V1);
    assert_eq!(out.data.customer.status, CustomerStatus::Known);
    let data = serde_json::to_value(&out.data).unwrap();
    assert_eq!(data["customer"]["tier"], "gold");
    assert_eq!(data["customer"]["credit_limit"], 5000);
    assert_eq!(data["order"]["order_id"], "SO-1001");
    let schema = canonical::schema(canonical::ORDER_ENRICHED_V1).unwrap();
    assert_eq!(schema.violations(&data), vec![]);
    // The schema file's own `$id`, not the table the code reads it from.
    assert_eq!(out.dataschema.as_deref(), schema.id());
    assert_eq!(
        (out.correlation_id(), out.subject.as_deref()),
        ("corr-1", Some("SO-1001"))
    );
}

#[tokio::test]
async fn an_unknown_customer_or_an_empty_record_is_enriched_as_unknown_and_a_v1_order_is_upcast() {
    let master = master();
    let out = enrich(&order(canonical::ORDER_PLACED_V1, "C-new"), &master)
        .await
        .unwrap();
    let data = serde_json::to_value(&out[0].data).unwrap();
    assert_eq!(data["customer"]["status"], "unknown");
    assert_eq!(data["customer"]["tier"], "unknown");
    assert!(data["customer"].get("credit_limit").is_none());
    assert_eq!(data["order"]["channel"], "unknown");
    assert_eq!(data["order"]["lines"][1]["line_no"], 2);
    let schema = canonical::schema(canonical::ORDER_ENRICHED_V1).unwrap();
    assert_eq!(schema.violations(&data), vec![]);

    let out = enrich(&order(canonical::ORDER_PLACED_V1, "C-bare"), &master)
        .await
        .unwrap();
    assert_eq!(out[0].data.customer.status, CustomerStatus::Known);
    assert_eq!(out[0].data.customer.tier, "unknown");
}

#[tokio::test]
async fn lookups_are_cached_for_the_ttl_and_failures_are_not() {
    let cached = CachedMaster::new(master(), Duration::from_millis(200), 10);
    for _ in 0..5 {
        enrich(&order(canonical::ORDER_PLACED_V2, "C-gold"), &cached)
            .await
            .unwrap();
        enrich(&order(canonical::ORDER_PLACED_V2, "C-new"), &cached)
            .await
            .unwrap();
    }
    assert_eq!(
        cached.inner().reads(),
        2,
        "one read per customer, unknown included"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    enrich(&order(canonical::ORDER_PLACED_V2, "C-gold"), &cached)
        .await
        .unwrap();
    assert_eq!(cached.inner().reads(), 3, "read again after the TTL");

    cached.inner().set_unavailable(true);
    let err = enrich(&order(canonical::ORDER_PLACED_V2, "C-other"), &cached)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable);
    cached.inner().set_unavailable(false);
    enrich(&order(canonical::ORDER_PLACED_V2, "C-other"), &cached)
        .await
        .unwrap();
    assert_eq!(cached.inner().reads(), 5, "the failed read was not cached");
}

#[tokio::test]
async fn through_the_runtime_a_master_down_is_retried_and_a_bad_order_is_dead_lettered() {
    let (bus, dlq, master) = (InMemoryBus::new(), InMemoryDeadLetterQueue::new(), master());
    let run = |envelope: Envelope<Value>| {
        let (bus, dlq, master) = (&bus, &dlq, &master);
        async move {
            transform(
                delivered(&envelope),
                |e| async move { enrich(&e, master).await },
                bus,
                dlq,
            )
            .await
        }
    };
    assert_eq!(
        run(order_in_hand(canonical::ORDER_PLACED_V2, "C-gold"))
            .await
            .unwrap(),
        Outcome::Published(1)
    );
    master.set_unavailable(true);
    let err = run(order_in_hand(canonical::ORDER_PLACED_V2, "C-gold"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "CustomerMasterUnavailable");
    master.set_unavailable(false);

    let mut bad = order_in_hand(canonical::ORDER_PLACED_V2, "C-gold");
    bad.data["lines"] = json!([]);
    assert_eq!(
        run(bad).await.unwrap(),
        Outcome::DeadLettered("InvalidEvent".into())
    );
    assert!(dlq.letters()[0].reason.contains("the order has no lines"));
    assert_eq!(bus.published().len(), 1);
}
