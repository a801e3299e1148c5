//! Payments on the reference table: one conditional payment record per order, refunded in place.

use super::{CustomerRecord, DynamoDbFulfillment, PaymentRecord, derived_id};
use crate::{FulfillmentError, Order, Payment, Payments};

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
