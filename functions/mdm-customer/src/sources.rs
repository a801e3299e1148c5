//! The sources, mapped to canonical customer updates.
//!
//! | Event | Source | Timestamp | Fields |
//! |---|---|---|---|
//! | `io.busline.customer.updated.v1` (canonical: the CRM's and the help desk's changes, translated by `translate`) | its `source` | `updated_at` | `changes`: email, phone, name, tier |
//! | `io.busline.shop.order.placed.v1` | `shop` | `placed_at` | the order's customer email and name, its shipping address |
//! | `io.busline.cdc.erp-customers.changed.v1` | `erp` | `ts_ms` (the change's time) | the `after` image's canonical fields |
//!
//! Only canonical fields are taken; a source's other attributes are not the master's business.

use std::collections::BTreeMap;

use busline::Envelope;
use chrono::DateTime;
use serde_json::Value;

use crate::merge::CustomerUpdate;

/// The fields the master keeps.
pub const CANONICAL_FIELDS: &[&str] =
    &["email", "phone", "name", "tier", "address", "credit_limit"];

/// The event types the master listens to.
pub const CUSTOMER_UPDATED: &str = busline::canonical::CUSTOMER_UPDATED_V1;
/// See [`CUSTOMER_UPDATED`].
pub const SHOP_ORDER_PLACED: &str = "io.busline.shop.order.placed.v1";
/// See [`CUSTOMER_UPDATED`].
pub const ERP_CHANGED: &str = "io.busline.cdc.erp-customers.changed.v1";

/// What an event means for the master.
#[derive(Debug, PartialEq, Eq)]
pub enum Mapped {
    /// A change to merge.
    Update(CustomerUpdate),
    /// Nothing for the master (an ERP delete: the golden record outlives a source's copy).
    Nothing(&'static str),
}

fn text<'v>(value: &'v Value, pointer: &str) -> Result<&'v str, String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("{pointer} is missing or not a non-empty string"))
}

fn millis(value: &Value, pointer: &str) -> Result<i64, String> {
    let text = text(value, pointer)?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{pointer} is not an RFC 3339 time ({text:?}): {e}"))
}

fn canonical(fields: impl IntoIterator<Item = (String, Value)>) -> BTreeMap<String, Value> {
    fields
        .into_iter()
        .filter(|(k, _)| CANONICAL_FIELDS.contains(&k.as_str()))
        .collect()
}

/// Maps an envelope from one of the sources; an unknown type or a payload missing what the master
/// needs is an error naming what is wrong.
pub fn map(envelope: &Envelope<Value>) -> Result<Mapped, String> {
    let data = &envelope.data;
    let update = match envelope.event_type.as_str() {
        CUSTOMER_UPDATED => {
            let changes = data
                .get("changes")
                .and_then(Value::as_object)
                .ok_or("/changes is missing or not an object")?;
            CustomerUpdate {
                customer_id: text(data, "/customer_id")?.to_owned(),
                source: text(data, "/source")?.to_owned(),
                ts_ms: millis(data, "/updated_at")?,
                fields: canonical(changes.clone()),
            }
        }
        SHOP_ORDER_PLACED => {
            let mut fields = BTreeMap::new();
            fields.insert(
                "email".to_owned(),
                Value::String(text(data, "/customer/email")?.to_owned()),
            );
            if let Some(name) = data.pointer("/customer/name").filter(|v| v.is_string()) {
                fields.insert("name".to_owned(), name.clone());
            }
            if let Some(address) = data.get("shipping_address").filter(|v| v.is_object()) {
                fields.insert("address".to_owned(), address.clone());
            }
            CustomerUpdate {
                customer_id: text(data, "/customer/id")?.to_owned(),
                source: "shop".to_owned(),
                ts_ms: millis(data, "/placed_at")?,
                fields,
            }
        }
        ERP_CHANGED => {
            let op = text(data, "/op")?;
            if op == "d" {
                return Ok(Mapped::Nothing(
                    "an ERP delete does not delete the golden record",
                ));
            }
            let after = data
                .get("after")
                .and_then(Value::as_object)
                .ok_or("/after is missing or not an object")?;
            CustomerUpdate {
                customer_id: text(data, "/after/customer_id")?.to_owned(),
                source: "erp".to_owned(),
                ts_ms: data
                    .get("ts_ms")
                    .and_then(Value::as_i64)
                    .ok_or("/ts_ms is missing or not an integer")?,
                fields: canonical(after.clone()),
            }
        }
        other => return Err(format!("the customer master does not take {other} events")),
    };
    if update.fields.is_empty() {
        return Ok(Mapped::Nothing("no canonical field in the change"));
    }
    Ok(Mapped::Update(update))
}

#[cfg(test)]
mod tests {
    use busline::EventType;
    use serde_json::json;

    use super::*;

    fn envelope(event_type: &str, data: Value) -> Envelope<Value> {
        Envelope::new("id-1", "test", EventType::parse(event_type).unwrap(), data)
    }

    #[test]
    fn each_source_maps_to_canonical_fields_with_its_own_time() {
        let crm: Value =
            serde_json::from_str(include_str!("../../translate/golden/crm-customer.json")).unwrap();
        let Mapped::Update(u) = map(&envelope(CUSTOMER_UPDATED, crm)).unwrap() else {
            panic!()
        };
        assert_eq!((u.source.as_str(), u.customer_id.as_str()), ("crm", "C-42"));
        assert_eq!(u.fields.keys().collect::<Vec<_>>(), ["phone", "tier"]);
        assert_eq!(u.ts_ms, 1_795_515_362_000);

        let order: Value =
            serde_json::from_str(include_str!("../../../infra/events/shop-order.json")).unwrap();
        let Mapped::Update(u) = map(&envelope(SHOP_ORDER_PLACED, order)).unwrap() else {
            panic!()
        };
        assert_eq!(u.source, "shop");
        assert!(u.fields.contains_key("email") && u.fields.contains_key("address"));

        let erp = json!({"op": "u", "after": {"customer_id": "C-42", "phone": "+1", "internal_code": 7}, "ts_ms": 5});
        let Mapped::Update(u) = map(&envelope(ERP_CHANGED, erp)).unwrap() else {
            panic!()
        };
        assert_eq!(
            u.fields,
            BTreeMap::from([("phone".to_owned(), json!("+1"))]),
            "only canonical fields"
        );
        assert_eq!(u.ts_ms, 5);
        assert!(matches!(
            map(&envelope(ERP_CHANGED, json!({"op": "d", "before": {}}))).unwrap(),
            Mapped::Nothing(_)
        ));
    }

    #[test]
    fn a_payload_missing_what_the_master_needs_says_what() {
        let no_time = json!({"customer_id": "C-1", "source": "crm", "changes": {"phone": "+1"}});
        assert!(
            map(&envelope(CUSTOMER_UPDATED, no_time))
                .unwrap_err()
                .contains("/updated_at")
        );
        let bad_time = json!({"customer_id": "C-1", "source": "crm", "updated_at": "yesterday", "changes": {"phone": "+1"}});
        assert!(
            map(&envelope(CUSTOMER_UPDATED, bad_time))
                .unwrap_err()
                .contains("RFC 3339")
        );
        let no_customer =
            json!({"placed_at": "2026-11-24T10:15:30Z", "customer": {"email": "a@x"}});
        assert!(
            map(&envelope(SHOP_ORDER_PLACED, no_customer))
                .unwrap_err()
                .contains("/customer/id")
        );
        assert!(
            map(&envelope("io.busline.other.v1", json!({})))
                .unwrap_err()
                .contains("does not take")
        );
    }
}
