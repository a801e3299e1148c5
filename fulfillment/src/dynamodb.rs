//! The reference implementation of every fulfillment port on one DynamoDB table (string partition
//! key `pk`), so a deployed stack works end to end with real state:
//!
//! | Item | Holds |
//! |---|---|
//! | `customer#<id>` | `limit_cents`, `owed_cents`, and `declines_payments` (the reference card that is refused) |
//! | `stock#<sku>` | `available`, `reorder_point` |
//! | `reservation#<order>` | `quantities` per SKU |
//! | `payment#<order>` | `payment_id`, `amount_cents`, `currency`, `status` (`CAPTURED`, `REFUNDED`) |
//! | `shipment#<order>` | `shipment_id`, `tracking_number`, `picking_slip`, `status` (`CREATED`, `CANCELLED`) |
//! | `invoice#<order>` | `invoice_id`, `amount_cents` |
//!
//! Each step's record is written conditionally (`attribute_not_exists(pk)`), so a repeat finds it and
//! answers as the first time did. A reservation is one `TransactWriteItems`: the reservation record
//! and a conditional decrement per SKU, all or nothing; its release is the reverse transaction.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Delete, KeysAndAttributes, Put,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{
    CreditStanding, CustomerAccounts, FulfillmentError, Inventory, Invoice, Invoicing, Order,
    Payment, Payments, Reservation, Shipment, Shipping,
};
use busline::dynamodb::{Conditional, put_if};

/// Countries the reference carrier delivers to.
pub const SHIPPING_COUNTRIES: &[&str] = &[
    "AT", "BE", "CH", "CZ", "DE", "DK", "ES", "FI", "FR", "GB", "IE", "IT", "LU", "NL", "NO", "PL",
    "PT", "SE", "US",
];

/// Namespace for ids derived from the order id, so a repeat gets the same id.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b1f_4d0e_2a7c_4c1b_9f3e_b05e_11ae_0002);

/// The five systems on one table.
#[derive(Clone, Debug)]
pub struct DynamoDbFulfillment {
    client: Client,
    table: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct CustomerRecord {
    pk: String,
    limit_cents: i64,
    owed_cents: i64,
    #[serde(default)]
    declines_payments: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct StockRecord {
    pk: String,
    available: i64,
    reorder_point: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReservationRecord {
    pk: String,
    quantities: BTreeMap<String, i64>,
}

/// A payment as the reference ledger keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    /// `payment#<order>`.
    pub pk: String,
    /// The payment id.
    pub payment_id: String,
    /// What was captured.
    pub amount_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `CAPTURED` or `REFUNDED`.
    pub status: String,
}

impl PaymentRecord {
    /// What the ledger holds for the order: the amount while captured, nothing once refunded.
    pub fn net_cents(&self) -> i64 {
        if self.status == "CAPTURED" {
            self.amount_cents
        } else {
            0
        }
    }
}

/// A shipment as the reference carrier keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentRecord {
    /// `shipment#<order>`.
    pub pk: String,
    /// The shipment id.
    pub shipment_id: String,
    /// The tracking number.
    pub tracking_number: String,
    /// One line per SKU.
    pub picking_slip: Vec<String>,
    /// `CREATED` or `CANCELLED`.
    pub status: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct InvoiceRecord {
    pk: String,
    invoice_id: String,
    amount_cents: i64,
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(
    system: &'static str,
) -> impl FnOnce(E) -> FulfillmentError {
    move |e| FulfillmentError::Unavailable {
        system,
        source: Box::new(e),
    }
}

fn unreadable(system: &'static str, what: String) -> FulfillmentError {
    FulfillmentError::Unavailable {
        system,
        source: what.into(),
    }
}

fn derived_id(prefix: &str, order_id: &str) -> String {
    format!(
        "{prefix}-{}",
        uuid::Uuid::new_v5(&ID_NAMESPACE, format!("{prefix}/{order_id}").as_bytes()).simple()
    )
}

fn key(pk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_owned(), AttributeValue::S(pk))])
}

fn is_condition_failure(reason: &CancellationReason) -> bool {
    reason.code() == Some("ConditionalCheckFailed")
}

impl DynamoDbFulfillment {
    /// The systems on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The systems on the table named by `FULFILLMENT_TABLE`, with a client from `aws`.
    pub fn from_env(
        env: &impl busline::config::Env,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, busline::config::ConfigError> {
        let table = env.require(
            "FULFILLMENT_TABLE",
            "the name of the fulfillment systems' DynamoDB table",
        )?;
        Ok(Self::new(Client::new(aws), table))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        system: &'static str,
        pk: String,
    ) -> Result<Option<T>, FulfillmentError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk.clone())))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable(system))?;
        output
            .item
            .map(|item| {
                serde_dynamo::from_item(item)
                    .map_err(|e| unreadable(system, format!("record {pk} is unreadable: {e}")))
            })
            .transpose()
    }

    async fn put_once<T: Serialize + DeserializeOwned>(
        &self,
        system: &'static str,
        record: &T,
    ) -> Result<Option<T>, FulfillmentError> {
        let item = serde_dynamo::to_item(record)
            .map_err(|e| unreadable(system, format!("record does not serialise: {e}")))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)");
        match put_if(put).await {
            Ok(Conditional::Written) => Ok(None),
            Ok(Conditional::ConditionFailed(item)) => item
                .map(serde_dynamo::from_item)
                .transpose()
                .map_err(|e| unreadable(system, format!("existing record is unreadable: {e}")))?
                .map(Some)
                .ok_or_else(|| {
                    unreadable(
                        system,
                        "the condition failed but no record came back".into(),
                    )
                }),
            Err(e) => Err(unavailable(system)(e)),
        }
    }

    /// Sets `status` to `to` where it is `from`; a record that is absent or not `from` is left alone.
    async fn transition(
        &self,
        system: &'static str,
        pk: String,
        from: &str,
        to: &str,
    ) -> Result<(), FulfillmentError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk)))
            .update_expression("SET #status = :to")
            .condition_expression("#status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":from", AttributeValue::S(from.to_owned()))
            .expression_attribute_values(":to", AttributeValue::S(to.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(system)(e)),
        }
    }

    /// Sets a customer's credit, and whether their payments are declined (reference data).
    pub async fn put_customer(
        &self,
        customer_id: &str,
        standing: CreditStanding,
        declines_payments: bool,
    ) -> Result<(), FulfillmentError> {
        self.put(
            "CustomerAccountsUnavailable",
            &CustomerRecord {
                pk: format!("customer#{customer_id}"),
                limit_cents: standing.limit_cents,
                owed_cents: standing.owed_cents,
                declines_payments,
            },
        )
        .await
    }

    /// Sets a SKU's stock level and reorder point (reference data).
    pub async fn put_stock(
        &self,
        sku: &str,
        available: i64,
        reorder_point: i64,
    ) -> Result<(), FulfillmentError> {
        self.put(
            "InventoryUnavailable",
            &StockRecord {
                pk: format!("stock#{sku}"),
                available,
                reorder_point,
            },
        )
        .await
    }

    async fn put<T: Serialize>(
        &self,
        system: &'static str,
        record: &T,
    ) -> Result<(), FulfillmentError> {
        let item = serde_dynamo::to_item(record)
            .map_err(|e| unreadable(system, format!("record does not serialise: {e}")))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(drop)
            .map_err(unavailable(system))
    }

    /// How many of `sku` are available, if the SKU is known.
    pub async fn stock(&self, sku: &str) -> Result<Option<i64>, FulfillmentError> {
        Ok(self
            .get::<StockRecord>("InventoryUnavailable", format!("stock#{sku}"))
            .await?
            .map(|s| s.available))
    }

    /// The order's payment, if one was captured.
    pub async fn payment(&self, order_id: &str) -> Result<Option<PaymentRecord>, FulfillmentError> {
        self.get("PaymentsUnavailable", format!("payment#{order_id}"))
            .await
    }

    /// The order's shipment, if one was created.
    pub async fn shipment(
        &self,
        order_id: &str,
    ) -> Result<Option<ShipmentRecord>, FulfillmentError> {
        self.get("ShippingUnavailable", format!("shipment#{order_id}"))
            .await
    }

    /// The order's reservation, if one is held.
    pub async fn reservation(
        &self,
        order_id: &str,
    ) -> Result<Option<BTreeMap<String, i64>>, FulfillmentError> {
        Ok(self
            .get::<ReservationRecord>("InventoryUnavailable", format!("reservation#{order_id}"))
            .await?
            .map(|r| r.quantities))
    }

    /// The order's invoice id, if one was posted.
    pub async fn invoice(&self, order_id: &str) -> Result<Option<String>, FulfillmentError> {
        Ok(self
            .get::<InvoiceRecord>("InvoicingUnavailable", format!("invoice#{order_id}"))
            .await?
            .map(|i| i.invoice_id))
    }

    /// A transaction item that changes `sku`'s stock by `delta`. Taking stock is conditional on the
    /// SKU existing with enough available, and returns the stock record when it fails.
    fn stock_change(&self, sku: &str, delta: i64) -> Result<TransactWriteItem, FulfillmentError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(format!("stock#{sku}"))))
            .expression_attribute_values(":q", AttributeValue::N(delta.abs().to_string()));
        let update = if delta < 0 {
            update
                .update_expression("SET available = available - :q")
                .condition_expression("attribute_exists(pk) AND available >= :q")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
        } else {
            update.update_expression("ADD available :q")
        };
        let update = update
            .build()
            .map_err(unavailable("InventoryUnavailable"))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The SKUs of `quantities` now under their reorder point.
    async fn below_reorder_point(
        &self,
        quantities: &BTreeMap<String, i64>,
    ) -> Result<Vec<String>, FulfillmentError> {
        let keys = KeysAndAttributes::builder()
            .set_keys(Some(
                quantities
                    .keys()
                    .map(|sku| key(format!("stock#{sku}")))
                    .collect(),
            ))
            .consistent_read(true)
            .build()
            .map_err(unavailable("InventoryUnavailable"))?;
        let output = self
            .client
            .batch_get_item()
            .request_items(&self.table, keys)
            .send()
            .await
            .map_err(unavailable("InventoryUnavailable"))?;
        let mut below = Vec::new();
        for item in output
            .responses
            .and_then(|mut r| r.remove(&self.table))
            .unwrap_or_default()
        {
            let stock: StockRecord = serde_dynamo::from_item(item).map_err(|e| {
                unreadable(
                    "InventoryUnavailable",
                    format!("a stock record is unreadable: {e}"),
                )
            })?;
            if stock.available < stock.reorder_point {
                below.push(stock.pk.trim_start_matches("stock#").to_owned());
            }
        }
        below.sort();
        Ok(below)
    }
}

impl CustomerAccounts for DynamoDbFulfillment {
    async fn credit(&self, customer_id: &str) -> Result<CreditStanding, FulfillmentError> {
        Ok(self
            .get::<CustomerRecord>(
                "CustomerAccountsUnavailable",
                format!("customer#{customer_id}"),
            )
            .await?
            .map_or(
                CreditStanding {
                    limit_cents: 0,
                    owed_cents: 0,
                },
                |c| CreditStanding {
                    limit_cents: c.limit_cents,
                    owed_cents: c.owed_cents,
                },
            ))
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

impl Payments for DynamoDbFulfillment {
    async fn capture(&self, order: &Order) -> Result<Payment, FulfillmentError> {
        const SYSTEM: &str = "PaymentsUnavailable";
        let customer = self
            .get::<CustomerRecord>(SYSTEM, format!("customer#{}", order.customer.id))
            .await?;
        if customer.is_some_and(|c| c.declines_payments) {
            return Err(FulfillmentError::PaymentDeclined {
                order_id: order.order_id.clone(),
                reason: "the card was declined by the issuer".into(),
            });
        }
        let record = PaymentRecord {
            pk: format!("payment#{}", order.order_id),
            payment_id: derived_id("pay", &order.order_id),
            amount_cents: order.total_cents,
            currency: order.currency.clone(),
            status: "CAPTURED".into(),
        };
        let record = match self.put_once(SYSTEM, &record).await? {
            None => record,
            Some(existing) if existing.status != "CAPTURED" => {
                return Err(FulfillmentError::Conflict {
                    order_id: order.order_id.clone(),
                    what: format!("the payment, which is {}", existing.status),
                });
            }
            Some(existing)
                if (existing.amount_cents, &existing.currency)
                    != (record.amount_cents, &record.currency) =>
            {
                return Err(FulfillmentError::Conflict {
                    order_id: order.order_id.clone(),
                    what: "the payment's amount".into(),
                });
            }
            Some(existing) => existing,
        };
        Ok(Payment {
            payment_id: record.payment_id,
            amount_cents: record.amount_cents,
            currency: record.currency,
        })
    }

    async fn refund(&self, order_id: &str) -> Result<(), FulfillmentError> {
        self.transition(
            "PaymentsUnavailable",
            format!("payment#{order_id}"),
            "CAPTURED",
            "REFUNDED",
        )
        .await
    }
}

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

impl Invoicing for DynamoDbFulfillment {
    async fn post(&self, order: &Order) -> Result<Invoice, FulfillmentError> {
        let record = InvoiceRecord {
            pk: format!("invoice#{}", order.order_id),
            invoice_id: derived_id("inv", &order.order_id),
            amount_cents: order.total_cents,
        };
        let record = self
            .put_once("InvoicingUnavailable", &record)
            .await?
            .unwrap_or(record);
        Ok(Invoice {
            invoice_id: record.invoice_id,
            amount_cents: record.amount_cents,
        })
    }
}
