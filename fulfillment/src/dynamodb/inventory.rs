//! Inventory on the reference table: a reservation is one transaction, the reservation record and
//! a conditional decrement per SKU, all or nothing; its release is the reverse.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::{
    DynamoDbFulfillment, ReservationRecord, is_condition_failure, key, unavailable, unreadable,
};
use crate::{FulfillmentError, Inventory, Order, Reservation};

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
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    let reasons = cancelled.cancellation_reasons.unwrap_or_default();
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
                other => return Err(unavailable(SYSTEM)(other)),
            },
            Err(e) => return Err(unavailable(SYSTEM)(e)),
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
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                // Released meanwhile by another attempt.
                TransactWriteItemsError::TransactionCanceledException(cancelled)
                    if cancelled
                        .cancellation_reasons()
                        .first()
                        .is_some_and(is_condition_failure) =>
                {
                    Ok(())
                }
                other => Err(unavailable(SYSTEM)(other)),
            },
            Err(e) => Err(unavailable(SYSTEM)(e)),
        }
    }
}
