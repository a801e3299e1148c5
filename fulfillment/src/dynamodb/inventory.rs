//! Inventory on the reference table: a reservation is one transaction, the reservation record and
//! a conditional decrement per SKU, all or nothing; its release is the reverse.

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use busline::dynamodb::{Transacted, is_condition_failure, transact_if};

use super::{DynamoDbFulfillment, ReservationRecord, key, unavailable, unreadable};
use crate::{FulfillmentError, Inventory, Order, Reservation};

impl DynamoDbFulfillment {
    /// Writes `items` in one transaction: all of them, or none and a reason for each. Any other
    /// error is `system` being unavailable.
    async fn transact(
        &self,
        system: &'static str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Transacted, FulfillmentError> {
        transact_if(
            self.client
                .transact_write_items()
                .set_transact_items(Some(items)),
        )
        .await
        .map_err(unavailable(system))
    }
}

impl Inventory for DynamoDbFulfillment {
    async fn reserve(&self, order: &Order) -> Result<Reservation, FulfillmentError> {
        const SYSTEM: &str = "InventoryUnavailable";
        let quantities = order.quantities();
        let record = ReservationRecord {
            pk: format!("reservation#{}", order.order_id),
            quantities: quantities.clone(),
        };
        let reservation = TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(serde_dynamo::to_item(&record).map_err(|e| {
                        unreadable(SYSTEM, format!("reservation does not serialise: {e}"))
                    })?))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(unavailable(SYSTEM))?,
            )
            .build();
        let mut items = vec![reservation];
        for (sku, quantity) in &quantities {
            items.push(self.stock_change(sku, -quantity)?);
        }
        match self.transact(SYSTEM, items).await? {
            Transacted::Written => {}
            Transacted::Cancelled(reasons) => {
                if reasons.first().is_some_and(is_condition_failure) {
                    // Reserved before: answer as the first time did.
                    let held = self.reservation(&order.order_id).await?.unwrap_or_default();
                    if held != quantities {
                        return Err(FulfillmentError::Conflict {
                            order_id: order.order_id.clone(),
                            what: "the reservation's quantities".into(),
                        });
                    }
                } else if let Some((reason, (sku, requested))) = reasons
                    .iter()
                    // After the reservation, one stock change per SKU, in `quantities`' order.
                    .skip(1)
                    .zip(&quantities)
                    .find(|(r, _)| is_condition_failure(r))
                {
                    let available = reason
                        .item()
                        .and_then(|item| item.get("available"))
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    return Err(FulfillmentError::OutOfStock {
                        sku: sku.clone(),
                        requested: *requested,
                        available,
                    });
                } else {
                    let codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).collect();
                    return Err(unreadable(
                        SYSTEM,
                        format!("the reservation was cancelled: {}", codes.join(", ")),
                    ));
                }
            }
        }
        Ok(Reservation {
            order_id: order.order_id.clone(),
            below_reorder_point: self.below_reorder_point(&quantities).await?,
            quantities,
        })
    }

    async fn release(&self, order_id: &str) -> Result<(), FulfillmentError> {
        const SYSTEM: &str = "InventoryUnavailable";
        let Some(quantities) = self.reservation(order_id).await? else {
            return Ok(());
        };
        let mut items = vec![
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(format!("reservation#{order_id}"))))
                        .condition_expression("attribute_exists(pk)")
                        .build()
                        .map_err(unavailable(SYSTEM))?,
                )
                .build(),
        ];
        for (sku, quantity) in &quantities {
            items.push(self.stock_change(sku, *quantity)?);
        }
        match self.transact(SYSTEM, items).await? {
            Transacted::Written => Ok(()),
            // Released meanwhile by another attempt.
            Transacted::Cancelled(reasons) if reasons.first().is_some_and(is_condition_failure) => {
                Ok(())
            }
            Transacted::Cancelled(reasons) => {
                let codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).collect();
                Err(unreadable(
                    SYSTEM,
                    format!("the release was cancelled: {}", codes.join(", ")),
                ))
            }
        }
    }
}
