//! Splitter: an EventBridge rule delivers each canonical `order.placed` (v1 is upcast to v2) here,
//! and the order becomes one `io.busline.fulfillment.requested.v1` per warehouse that ships part of
//! it.
//!
//! Each part carries what an aggregator needs to reassemble the order: the order id, the
//! transaction's `correlation_id` (in the data and on the envelope), its `sequence` n and the
//! `total` m. Parts are numbered in warehouse-name order, so the same order always splits the same
//! way, and each part's event id is derived from the order event and the warehouse: a retried split
//! republishes the same ids. Lines the order assigns to no warehouse go to `DEFAULT_WAREHOUSE`. All
//! parts are published in one call; if some are rejected the invocation fails and the retry
//! publishes them all again under the same ids, for consumers to deduplicate.

use std::collections::BTreeMap;

use busline::canonical::order::{FulfillmentLine, FulfillmentRequested, read_order};
use busline::canonical::{self, CanonicalError};
use busline::transform::Raw;
use busline::{Envelope, EventType};

/// The `source` of the events the splitter publishes.
pub const SOURCE: &str = "busline.split";

/// Splits one canonical order envelope into its parts.
pub fn split(
    envelope: &Envelope<Raw>,
    default_warehouse: &str,
) -> Result<Vec<Envelope<FulfillmentRequested>>, CanonicalError> {
    let order = read_order(envelope)?;
    let mut by_warehouse: BTreeMap<&str, Vec<FulfillmentLine>> = BTreeMap::new();
    for line in &order.data.lines {
        by_warehouse
            .entry(line.warehouse.as_deref().unwrap_or(default_warehouse))
            .or_default()
            .push(FulfillmentLine {
                line_no: line.line_no,
                sku: line.sku.clone(),
                quantity: line.quantity,
            });
    }
    let total = u32::try_from(by_warehouse.len()).unwrap_or(u32::MAX);
    #[expect(
        clippy::expect_used,
        reason = "a canonical type: `canonical`'s tests check that each parses and has a schema"
    )]
    let schema_id = canonical::schema_id(canonical::FULFILLMENT_REQUESTED_V1)
        .expect("canonical types have schemas");
    #[expect(
        clippy::expect_used,
        reason = "a canonical type: `canonical`'s tests check that each parses and has a schema"
    )]
    let event_type = EventType::parse(canonical::FULFILLMENT_REQUESTED_V1)
        .expect("canonical types are versioned");
    Ok((1..)
        .zip(by_warehouse)
        .map(|(sequence, (warehouse, lines))| {
            let part = FulfillmentRequested {
                order_id: order.data.order_id.clone(),
                correlation_id: order.correlation_id().to_owned(),
                warehouse: warehouse.to_owned(),
                sequence,
                total,
                lines,
                shipping_address: order.data.shipping_address.clone(),
            };
            order
                .derive(
                    &format!("split/{warehouse}"),
                    SOURCE,
                    event_type.clone(),
                    part,
                )
                .with_subject(&order.data.order_id)
                .with_dataschema(schema_id)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use busline::batch::InMemoryDeadLetterQueue;
    use busline::bus::InMemoryBus;
    use busline::transform::{Outcome, delivered, received, transform};
    use serde_json::{Value, json};

    use super::*;

    fn marketplace_order() -> Envelope<Value> {
        let mut data: Value = serde_json::from_str(include_str!(
            "../../translate/golden/marketplace-order.json"
        ))
        .unwrap();
        data["lines"][1]["warehouse"] = Value::Null;
        data["lines"][1]
            .as_object_mut()
            .unwrap()
            .remove("warehouse");
        Envelope::new(
            "o-1",
            "busline.translate",
            EventType::parse(canonical::ORDER_PLACED_V2).unwrap(),
            data,
        )
        .with_correlation_id("corr-1")
    }

    #[test]
    fn an_order_becomes_one_part_per_warehouse_numbered_n_of_m_with_its_correlation_id() {
        let parts = split(&received(&marketplace_order()), "MAIN").unwrap();
        let schema = canonical::schema(canonical::FULFILLMENT_REQUESTED_V1).unwrap();
        let summary: Vec<(String, u32, u32, Vec<u32>)> = parts
            .iter()
            .map(|p| {
                let data = serde_json::to_value(&p.data).unwrap();
                assert_eq!(schema.violations(&data), vec![]);
                assert_eq!(p.dataschema.as_deref(), schema.id());
                assert_eq!(p.data.correlation_id, "corr-1");
                assert_eq!(p.correlation_id(), "corr-1");
                assert_eq!(p.data.order_id, "mkt-402-8837310-5520345");
                assert_eq!(p.data.shipping_address.as_ref().unwrap().city, "Dublin");
                (
                    p.data.warehouse.clone(),
                    p.data.sequence,
                    p.data.total,
                    p.data.lines.iter().map(|l| l.line_no).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("DUB-1".to_owned(), 1, 2, vec![1, 3]),
                ("MAIN".to_owned(), 2, 2, vec![2]),
            ]
        );
        // The same order splits the same way, under the same ids.
        let again = split(&received(&marketplace_order()), "MAIN").unwrap();
        assert_eq!(
            parts.iter().map(|p| &p.id).collect::<Vec<_>>(),
            again.iter().map(|p| &p.id).collect::<Vec<_>>()
        );
        assert_ne!(parts[0].id, parts[1].id);
    }

    #[tokio::test]
    async fn parts_are_published_together_and_a_bad_order_is_dead_lettered() {
        let (bus, dlq) = (InMemoryBus::new(), InMemoryDeadLetterQueue::new());
        let run = |e: Envelope<Value>| {
            let (bus, dlq) = (&bus, &dlq);
            async move {
                transform(
                    delivered(&e),
                    |e| async move { split(&e, "MAIN") },
                    bus,
                    dlq,
                )
                .await
                .unwrap()
            }
        };
        assert_eq!(run(marketplace_order()).await, Outcome::Published(2));
        assert_eq!(bus.calls(), 1);

        let mut bad = marketplace_order();
        bad.data["lines"][0]["quantity"] = json!(-1);
        assert_eq!(run(bad).await, Outcome::DeadLettered("InvalidEvent".into()));
        assert_eq!(bus.published().len(), 2, "nothing half-split went out");
    }
}
