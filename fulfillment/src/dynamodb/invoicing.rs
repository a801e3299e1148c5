//! Invoicing on the reference table: one conditional invoice per order.

use super::{DynamoDbFulfillment, InvoiceRecord, derived_id};
use crate::{FulfillmentError, Invoice, Invoicing, Order};

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
