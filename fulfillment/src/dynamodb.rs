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
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{CreditStanding, FulfillmentError};
use busline::dynamodb::{Conditional, put_if};

mod accounts;
mod inventory;
mod invoicing;
mod payments;
mod shipping;

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
    /// `pay-<32 hex digits>`, derived from the order id: a repeated capture gets the same id.
    pub payment_id: String,
    /// What was captured, in cents: the order's total.
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
    /// `shp-<32 hex digits>`, derived from the order id.
    pub shipment_id: String,
    /// `BL` and 12 upper-case hex digits, derived from the order id.
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
