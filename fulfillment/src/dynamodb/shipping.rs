//! Shipping on the reference table: one conditional shipment per order, cancelled in place.

use super::{DynamoDbFulfillment, SHIPPING_COUNTRIES, ShipmentRecord, derived_id};
use crate::{FulfillmentError, Order, Shipment, Shipping};

impl Shipping for DynamoDbFulfillment {
    async fn create(&self, order: &Order) -> Result<Shipment, FulfillmentError> {
        const SYSTEM: &str = "ShippingUnavailable";
        let rejected = |reason: String| FulfillmentError::ShipmentRejected {
            order_id: order.order_id.clone(),
            reason,
        };
        let address = order
            .shipping_address
            .as_ref()
            .ok_or_else(|| rejected("the order has no shipping address".into()))?;
        if !SHIPPING_COUNTRIES.contains(&address.country.as_str()) {
            return Err(rejected(format!(
                "the carrier does not deliver to {}",
                address.country
            )));
        }
        let record = ShipmentRecord {
            pk: format!("shipment#{}", order.order_id),
            shipment_id: derived_id("shp", &order.order_id),
            tracking_number: format!(
                "BL{}",
                &derived_id("trk", &order.order_id)[4..16].to_uppercase()
            ),
            picking_slip: order
                .quantities()
                .iter()
                .map(|(sku, quantity)| format!("{quantity} x {sku}"))
                .collect(),
            status: "CREATED".into(),
        };
        let record = match self.put_once(SYSTEM, &record).await? {
            None => record,
            Some(existing) if existing.status != "CREATED" => {
                return Err(FulfillmentError::Conflict {
                    order_id: order.order_id.clone(),
                    what: format!("the shipment, which is {}", existing.status),
                });
            }
            Some(existing) => existing,
        };
        Ok(Shipment {
            shipment_id: record.shipment_id,
            tracking_number: record.tracking_number,
            picking_slip: record.picking_slip,
        })
    }

    async fn cancel(&self, order_id: &str) -> Result<(), FulfillmentError> {
        self.transition(
            "ShippingUnavailable",
            format!("shipment#{order_id}"),
            "CREATED",
            "CANCELLED",
        )
        .await
    }
}
