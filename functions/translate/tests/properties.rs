//! Properties of the translator over generated input: round trips, schema conformance, and fuzzing
//! with malformed, truncated, huge and deeply nested JSON.
//!
//! `PROPTEST_CASES` sets the number of cases of every property (proptest's own variable); unset,
//! `make test` runs 512 of each round trip and 2,000 of each fuzz property.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code, which fails by panicking"
)]

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use busline::batch::InMemoryDeadLetterQueue;
use busline::bus::InMemoryBus;
use busline::canonical::customer::{CustomerChanges, Tier};
use busline::canonical::{self, CanonicalError};
use busline::canonical::{Address, CURRENCIES, Customer};
use busline::transform::{self, Outcome};
use busline::{Envelope, EventType};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};
use translate::customers::{CrmCustomerUpdated, from_crm, to_crm};
use translate::orders::{
    Buyer, MarketplaceAddress, MarketplaceItem, MarketplaceNotification, MarketplaceOrder, Money,
    ShopLine, ShopOrder, amount, from_marketplace, from_shop, to_marketplace, to_shop,
};
use translate::{Canonical, DIALECTS};

/// `PROPTEST_CASES`, or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (1_600_000_000_000i64..1_900_000_000_000)
        .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
}

fn customer() -> impl Strategy<Value = Customer> {
    (
        "C-[0-9]{1,6}",
        "[a-z]{1,8}@[a-z]{1,8}\\.com",
        proptest::option::of("[A-Z][a-z]{1,8} [A-Z][a-z]{1,10}"),
    )
        .prop_map(|(id, email, name)| Customer { id, email, name })
}

fn address() -> impl Strategy<Value = Address> {
    (
        "[0-9]{1,3} [A-Z][a-z]{2,10} (Row|Street|Way)",
        proptest::option::of("(Flat|Unit) [0-9]{1,3}"),
        "[A-Z][a-z]{2,10}",
        "[A-Z0-9]{3,4}( [A-Z0-9]{3})?",
        "[A-Z]{2}",
    )
        .prop_map(|(line1, line2, city, postal_code, country)| Address {
            line1,
            line2,
            city,
            postal_code,
            country,
        })
}

fn warehouse() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        prop::sample::select(vec!["DUB-1", "AMS-2", "BER-3"]).prop_map(str::to_owned),
    )
}

prop_compose! {
    fn shop_order()(
        order_id in "SO-[0-9]{1,8}",
        placed_at in time(),
        customer in customer(),
        currency in prop::sample::select(CURRENCIES.to_vec()),
        lines in prop::collection::vec(("[A-Z]{2,3}-[A-Z]{3}-[0-9]{2}", 1i64..1000, 0i64..10_000_000, warehouse()), 1..6),
        shipping_address in proptest::option::of(address()),
    ) -> ShopOrder {
        let lines: Vec<ShopLine> = lines.into_iter().map(|(sku, quantity, unit_price_cents, warehouse)| ShopLine { sku, quantity, unit_price_cents, warehouse }).collect();
        let total_cents = lines.iter().map(|l| l.quantity * l.unit_price_cents).sum();
        ShopOrder { order_id, placed_at, customer, currency: currency.to_owned(), lines, total_cents, shipping_address }
    }
}

prop_compose! {
    fn marketplace_order()(
        number in "[0-9]{3}-[0-9]{7}-[0-9]{7}",
        purchase_date in time(),
        customer in customer(),
        currency in prop::sample::select(CURRENCIES.to_vec()),
        items in prop::collection::vec(("[A-Z]{2,3}-[A-Z]{3}-[0-9]{2}", 1i64..100, 0i64..100_000_000, warehouse()), 1..6),
        address in proptest::option::of(address()),
    ) -> MarketplaceNotification {
        let money = |cents: i64| Money { currency_code: currency.to_owned(), amount: amount(cents) };
        let total: i64 = items.iter().map(|(_, q, p, _)| q * p).sum();
        MarketplaceNotification {
            notification_type: "ORDER_CHANGE".to_owned(),
            payload: MarketplaceOrder {
                order_number: number,
                order_status: "Unshipped".to_owned(),
                purchase_date,
                buyer: Buyer { buyer_id: customer.id, buyer_email: customer.email, buyer_name: customer.name },
                order_total: money(total),
                order_items: items.into_iter().map(|(sku, q, p, wh)| MarketplaceItem {
                    order_item_id: None, seller_sku: sku, title: None, quantity_ordered: q,
                    unit_price: money(p), fulfillment_center_id: wh,
                }).collect(),
                shipping_address: address.map(|a| MarketplaceAddress {
                    name: None, address_line1: a.line1, address_line2: a.line2, city: a.city,
                    postal_code: a.postal_code, country_code: a.country,
                }),
            },
        }
    }
}

prop_compose! {
    fn crm_change()(
        customer_id in "C-[0-9]{1,6}",
        updated_at in time(),
        email in proptest::option::of("[a-z]{1,8}@[a-z]{1,8}\\.com"),
        phone in proptest::option::of("\\+[0-9]{2} [0-9]{3} [0-9]{4}"),
        name in proptest::option::of("[A-Z][a-z]{1,8}"),
        tier in proptest::option::of(prop::sample::select(vec![Tier::Standard, Tier::Silver, Tier::Gold])),
    ) -> CrmCustomerUpdated {
        let mut changes = CustomerChanges { email, phone, name, tier };
        if changes.is_empty() {
            changes.tier = Some(Tier::Gold);
        }
        CrmCustomerUpdated { customer_id, updated_at, changes }
    }
}

/// The translator on a payload in hand.
fn translate_data(event_type: &str, data: &Value) -> Result<Option<Canonical>, CanonicalError> {
    translate::translate_data(event_type, &serde_json::value::to_raw_value(data).unwrap())
}

fn conforms(translated: &Canonical) {
    let data = serde_json::to_value(translated).unwrap();
    let violations = canonical::schema(translated.event_type())
        .unwrap()
        .violations(&data);
    assert!(violations.is_empty(), "{violations:?}\n{data:#}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn a_shop_order_round_trips_and_conforms(order in shop_order()) {
        let canonical = from_shop(order.clone());
        canonical.validate().unwrap();
        conforms(&Canonical::Order(canonical.clone()));
        prop_assert_eq!(to_shop(&canonical), order.clone());
        // And through JSON, as it travels.
        let data = serde_json::to_value(&order).unwrap();
        let translated = translate_data(translate::SHOP_ORDER_PLACED, &data).unwrap().unwrap();
        prop_assert_eq!(translated, Canonical::Order(canonical));
    }

    #[test]
    fn a_marketplace_order_round_trips_and_conforms(notification in marketplace_order()) {
        let canonical = from_marketplace(notification.clone()).unwrap().unwrap();
        canonical.validate().unwrap();
        conforms(&Canonical::Order(canonical.clone()));
        prop_assert_eq!(to_marketplace(&canonical), notification);
    }

    #[test]
    fn a_crm_change_round_trips_and_conforms(change in crm_change()) {
        let canonical = from_crm(change.clone());
        canonical.validate().unwrap();
        conforms(&Canonical::Customer(canonical.clone()));
        prop_assert_eq!(to_crm(&canonical), change);
    }
}

/// Any JSON at all: scalars, long strings, wide and nested containers.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        "[0-9]{1,3}(\\.[0-9]{0,4})?".prop_map(Value::from),
        "20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z".prop_map(Value::from),
    ];
    leaf.prop_recursive(8, 256, 10, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..10).prop_map(Value::from),
            prop::collection::hash_map(
                prop_oneof![
                    "[a-z_]{1,12}",
                    prop::sample::select(vec![
                        "order_id",
                        "placed_at",
                        "customer",
                        "currency",
                        "lines",
                        "sku",
                        "quantity",
                        "unit_price_cents",
                        "total_cents",
                        "notificationType",
                        "payload",
                        "orderNumber",
                        "orderStatus",
                        "purchaseDate",
                        "buyer",
                        "orderTotal",
                        "orderItems",
                        "amount",
                        "currencyCode",
                        "customer_id",
                        "updated_at",
                        "changes",
                        "detail",
                        "external_id",
                    ])
                    .prop_map(str::to_owned),
                ],
                inner,
                0..10,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A sample payload with one field replaced by anything, or removed.
fn mutated_sample() -> impl Strategy<Value = (&'static str, Value)> {
    let samples: Vec<(&'static str, &'static str)> = vec![
        (
            translate::SHOP_ORDER_PLACED,
            include_str!("../../../infra/events/shop-order.json"),
        ),
        (
            translate::MARKETPLACE_ORDER_PLACED,
            include_str!("../../../infra/events/marketplace-order.json"),
        ),
        (
            translate::CRM_CUSTOMER_UPDATED,
            include_str!("../../../infra/events/crm-customer.json"),
        ),
        (
            translate::HELPDESK_USER_UPDATED,
            include_str!("../../../infra/events/helpdesk-user.json"),
        ),
    ];
    (
        prop::sample::select(samples),
        any::<prop::sample::Index>(),
        proptest::option::of(any_json()),
    )
        .prop_map(|((event_type, text), index, replacement)| {
            let mut data: Value = serde_json::from_str(text).unwrap();
            let mut pointers = Vec::new();
            collect_pointers(&data, String::new(), &mut pointers);
            let pointer = index.get(&pointers).clone();
            if let Some((parent, key)) = pointer.rsplit_once('/') {
                match (data.pointer_mut(parent), replacement) {
                    (Some(Value::Object(o)), None) => {
                        o.remove(key);
                    }
                    (Some(Value::Array(a)), None) => {
                        let i: usize = key.parse().unwrap();
                        a.remove(i);
                    }
                    (Some(_), Some(r)) => *data.pointer_mut(&pointer).unwrap() = r,
                    _ => {}
                }
            }
            (event_type, data)
        })
}

fn collect_pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(o) => o
            .iter()
            .for_each(|(k, v)| collect_pointers(v, format!("{at}/{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| collect_pointers(v, format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// Translates, and checks the one thing that must always hold: a clear refusal, or a whole
/// translation that conforms to its canonical schema. A panic fails the property.
fn translates_whole_or_refuses(event_type: &str, data: &Value) -> Result<(), TestCaseError> {
    match translate_data(event_type, data) {
        Ok(Some(translated)) => conforms(&translated),
        Ok(None) => {}
        Err(e) => {
            let refused = matches!(
                e,
                CanonicalError::Malformed { .. } | CanonicalError::Invalid { .. }
            );
            prop_assert!(refused, "{}", e);
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2_000)))]

    #[test]
    fn fuzz_any_json_as_any_dialect(event_type in prop::sample::select(DIALECTS.to_vec()), data in any_json()) {
        translates_whole_or_refuses(event_type, &data)?;
    }

    #[test]
    fn fuzz_samples_with_a_field_replaced_or_removed((event_type, data) in mutated_sample()) {
        translates_whole_or_refuses(event_type, &data)?;
    }

    /// Truncated or corrupted bytes never become an event: they are rejected before the translator
    /// (by the runtime's parser, or here serde_json's), and a detail that is JSON but not an
    /// envelope goes to the dead-letter queue.
    #[test]
    fn fuzz_truncated_and_corrupted_events_end_in_the_dead_letter_queue(
        sample in prop::sample::select(vec!["shop-order", "marketplace-order", "crm-customer", "helpdesk-user"]),
        cut in any::<prop::sample::Index>(),
        flip in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
    ) {
        let text = std::fs::read_to_string(format!("{}/../../infra/events/{sample}.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let mut bytes = text.into_bytes();
        if let Some((at, byte)) = flip {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        bytes.truncate(cut.index(bytes.len()));
        if let Ok(detail) = serde_json::from_slice::<Value>(&bytes) {
            let outcome = run(detail);
            prop_assert!(matches!(outcome, Outcome::DeadLettered(_)), "{outcome:?}");
        }
    }
}

fn run(detail: Value) -> Outcome {
    let mut event = EventBridgeEvent::<Value>::default();
    event.source = "busline.webhook.shop".into();
    event.detail_type = translate::SHOP_ORDER_PLACED.into();
    event.detail = detail;
    let event = transform::raw(&event);
    let (bus, dlq) = (InMemoryBus::new(), InMemoryDeadLetterQueue::new());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let outcome = runtime
        .block_on(translate::handle(event, &bus, &dlq))
        .unwrap();
    match &outcome {
        Outcome::DeadLettered(_) => assert_eq!(dlq.letters().len(), 1),
        Outcome::Published(n) => assert_eq!(bus.published().len(), *n),
    }
    outcome
}

#[test]
fn deeply_nested_and_huge_payloads_are_refused_not_crashed_on() {
    // 100,000 levels of nesting: serde_json stops at its recursion limit with an error.
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    assert!(serde_json::from_str::<Value>(&deep).is_err());
    // 1,000 levels built in memory (past the limit a parser allows), as the order's customer.
    let mut nested = json!("bottom");
    for _ in 0..1_000 {
        nested = json!([nested]);
    }
    let mut order: Value =
        serde_json::from_str(include_str!("../../../infra/events/shop-order.json")).unwrap();
    order["customer"] = nested;
    let err = translate_data(translate::SHOP_ORDER_PLACED, &order).unwrap_err();
    assert!(err.to_string().contains("customer"), "{err}");

    // A 4 MB SKU and 50,000 lines translate (the bus's size limit is the publisher's business) or
    // are refused; they do not crash.
    let mut huge = order.clone();
    huge["customer"] = json!({"id": "C-1", "email": "a@b.c"});
    huge["lines"][0]["sku"] = json!("X".repeat(4 << 20));
    let translated = translate_data(translate::SHOP_ORDER_PLACED, &huge)
        .unwrap()
        .unwrap();
    conforms(&translated);
    let mut wide = huge.clone();
    wide["lines"] = Value::Array(vec![
        json!({"sku": "A", "quantity": 1, "unit_price_cents": 1});
        50_000
    ]);
    wide["total_cents"] = json!(50_000);
    assert!(translate_data(translate::SHOP_ORDER_PLACED, &wide).is_ok());

    // Through the runtime, an event too large for the bus goes to the dead-letter queue.
    let envelope = Envelope::new(
        "e-1",
        "busline.webhook.shop",
        EventType::parse(translate::SHOP_ORDER_PLACED).unwrap(),
        huge,
    );
    let outcome = run(serde_json::to_value(&envelope).unwrap());
    assert_eq!(outcome, Outcome::DeadLettered("EventUnpublishable".into()));
}
