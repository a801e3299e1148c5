//! Order fulfillment: the domain of the order saga and the ports of the systems it drives.
//!
//! An order goes through validate → check credit → reserve inventory → take payment → create
//! shipment → post invoice. A step that fails with a business error (`InvalidOrder`,
//! `CreditLimitExceeded`, `OutOfStock`, `PaymentDeclined`, `ShipmentRejected`) makes the state
//! machine undo what was done, in reverse order: cancel the shipment, refund the payment, release the
//! inventory.
//!
//! Every operation is idempotent on the order id: each system keeps one record per (order, step)
//! and writes it conditionally, so a retried or redelivered step (a Step Functions retry, a crash
//! after the side effect) finds its own record and answers as before instead of acting twice. The
//! compensations are idempotent the same way and succeed when there is nothing (left) to undo.
//!
//! Each system sits behind a port: [`CustomerAccounts`], [`Inventory`], [`Payments`], [`Shipping`]
//! and [`Invoicing`]. [`dynamodb::DynamoDbFulfillment`] is the reference implementation of all five
//! on one DynamoDB table, so a deployed stack works end to end with real state; `http::HttpSystem`
//! (feature `http`) talks to a real external system, with an `Idempotency-Key` on every change;
//! `system::System` chooses between them per deployment, from each system's URL variable.

pub mod dynamodb;
#[cfg(feature = "http")]
pub mod http;
pub mod status;
pub mod step;

/// `busline`, for [`saga_step_main!`]'s expansion in crates that name it otherwise.
#[doc(hidden)]
pub use busline as __busline;
#[cfg(feature = "http")]
pub mod system;

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

pub use busline::canonical::{Address, CURRENCIES, Customer};
use busline::error::{Classify, ErrorClass};

/// An order as the web shop places it (`infra/schemas/webhooks/shop-order.v1.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The shop's order id; the saga's key.
    pub order_id: String,
    /// Who ordered: the credit check looks up their id, and the fulfilled notice goes to their
    /// email.
    pub customer: Customer,
    /// ISO 4217 code.
    pub currency: String,
    /// What was ordered, at least one line.
    pub lines: Vec<OrderLine>,
    /// The order total, in cents; must equal the sum of the lines.
    pub total_cents: i64,
    /// Where it goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The stock keeping unit.
    pub sku: String,
    /// How many units; must be positive.
    pub quantity: i64,
    /// Price per unit, in cents.
    pub unit_price_cents: i64,
}

impl Order {
    /// Checks the order: lines present, quantities positive, prices not negative, the total equal to
    /// the sum of the lines, a known currency. Returns every problem found.
    pub fn validate(&self) -> Result<(), FulfillmentError> {
        let mut problems = Vec::new();
        if self.order_id.trim().is_empty() {
            problems.push("the order has no id".to_owned());
        }
        if self.lines.is_empty() {
            problems.push("the order has no lines".to_owned());
        }
        for (i, line) in self.lines.iter().enumerate() {
            if line.quantity <= 0 {
                problems.push(format!(
                    "line {i} ({}) has quantity {}; quantities must be positive",
                    line.sku, line.quantity
                ));
            }
            if line.unit_price_cents < 0 {
                problems.push(format!("line {i} ({}) has a negative price", line.sku));
            }
        }
        let sum = self.lines.iter().try_fold(0i64, |sum, l| {
            sum.checked_add(l.quantity.checked_mul(l.unit_price_cents)?)
        });
        match sum {
            Some(sum) if sum != self.total_cents => problems.push(format!(
                "the total is {} cents but the lines add up to {sum}",
                self.total_cents
            )),
            None => problems.push("the line totals overflow".to_owned()),
            Some(_) => {}
        }
        if !CURRENCIES.contains(&self.currency.as_str()) {
            problems.push(format!(
                "currency {:?} is not one of {}",
                self.currency,
                CURRENCIES.join(", ")
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FulfillmentError::InvalidOrder {
                order_id: self.order_id.clone(),
                problems,
            })
        }
    }

    /// The quantity ordered per SKU, lines of the same SKU added up.
    pub fn quantities(&self) -> BTreeMap<String, i64> {
        let mut quantities = BTreeMap::new();
        for line in &self.lines {
            *quantities.entry(line.sku.clone()).or_default() += line.quantity;
        }
        quantities
    }
}

/// Why a fulfillment step failed. The business failures are permanent and start the compensations;
/// an unavailable system is retryable.
#[derive(Debug, thiserror::Error)]
pub enum FulfillmentError {
    /// The order is malformed.
    #[error("order {order_id} is invalid: {}", problems.join("; "))]
    InvalidOrder {
        /// The order's id, as the order gave it: possibly blank, which is then one of the problems.
        order_id: String,
        /// Every problem found.
        problems: Vec<String>,
    },
    /// The order would take the customer over their credit limit.
    #[error(
        "customer {customer_id} has {available_cents} cents of credit left; the order needs {requested_cents}"
    )]
    CreditLimitExceeded {
        /// The customer's id in the CRM, as on the order.
        customer_id: String,
        /// Limit minus what is owed.
        available_cents: i64,
        /// The order total.
        requested_cents: i64,
    },
    /// A line cannot be reserved.
    #[error("SKU {sku} is out of stock: {requested} requested, {available} available")]
    OutOfStock {
        /// The SKU.
        sku: String,
        /// How many were asked for.
        requested: i64,
        /// How many are left (0 when the SKU is unknown).
        available: i64,
    },
    /// The payment was refused.
    #[error("the payment for order {order_id} was declined: {reason}")]
    PaymentDeclined {
        /// The order's id: the business key the saga's execution is named by.
        order_id: String,
        /// The provider's reason.
        reason: String,
    },
    /// The carrier refused the shipment.
    #[error("the shipment for order {order_id} was rejected: {reason}")]
    ShipmentRejected {
        /// The order's id: the business key the saga's execution is named by.
        order_id: String,
        /// The warehouse's reason, as it gave it.
        reason: String,
    },
    /// A repeat of a step carried different content than the first (another amount for the same
    /// order's payment, say). Permanent: someone must look.
    #[error("order {order_id}: {what} differs from what was recorded the first time")]
    Conflict {
        /// The order's id: the business key the saga's execution is named by.
        order_id: String,
        /// What differs, as a phrase the message goes on from, such as `the payment's amount`.
        what: String,
    },
    /// The customer could not be told (the email API refused the message: a bad address, say).
    /// Permanent: the notice goes to the dead-letter queue with the reason.
    #[error("the notice for order {order_id} was refused: {reason}")]
    NotificationRejected {
        /// The order's id: the business key the saga's execution is named by.
        order_id: String,
        /// The email system's reason, as it gave it.
        reason: String,
    },
    /// A system could not be reached or refused the call. Retryable.
    #[error("{system} is unavailable")]
    Unavailable {
        /// Which system, as its error type says (`InventoryUnavailable`).
        system: &'static str,
        /// The transport or service error that made the system unreachable.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Classify for FulfillmentError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidOrder { .. } => "InvalidOrder",
            Self::CreditLimitExceeded { .. } => "CreditLimitExceeded",
            Self::OutOfStock { .. } => "OutOfStock",
            Self::PaymentDeclined { .. } => "PaymentDeclined",
            Self::ShipmentRejected { .. } => "ShipmentRejected",
            Self::Conflict { .. } => "FulfillmentConflict",
            Self::NotificationRejected { .. } => "NotificationRejected",
            Self::Unavailable { system, .. } => system,
        }
    }
}

/// What the order-fulfillment state machine hands each step: the order, and what earlier steps
/// answered (ignored by the steps, which act on the order alone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaState {
    /// The order being fulfilled.
    pub order: Order,
    /// The business transaction's correlation id (the order.placed event's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The trace the saga continues (the event that started it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A customer's credit: their limit and what they owe now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditStanding {
    /// The credit limit, in cents.
    pub limit_cents: i64,
    /// What the customer owes, in cents.
    pub owed_cents: i64,
}

impl CreditStanding {
    /// Whether an order of `total_cents` fits: limit minus owed must cover it.
    pub fn check(&self, customer_id: &str, total_cents: i64) -> Result<(), FulfillmentError> {
        let available = self.limit_cents - self.owed_cents;
        if total_cents > available {
            return Err(FulfillmentError::CreditLimitExceeded {
                customer_id: customer_id.to_owned(),
                available_cents: available,
                requested_cents: total_cents,
            });
        }
        Ok(())
    }
}

/// When an order needs a person's approval before anything is reserved or charged: above
/// `threshold_cents`, and the person has `timeout_seconds` to decide, after which the order is
/// rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// Orders with a total above this, in cents, wait for a person.
    pub threshold_cents: i64,
    /// How long the person has.
    pub timeout_seconds: u64,
}

impl Default for ApprovalPolicy {
    /// 5,000.00 in the order's currency, and a day to decide.
    fn default() -> Self {
        Self {
            threshold_cents: 500_000,
            timeout_seconds: 86_400,
        }
    }
}

impl ApprovalPolicy {
    /// The policy from `APPROVAL_THRESHOLD_CENTS` and `APPROVAL_TIMEOUT_SECONDS`, each defaulting
    /// as [`ApprovalPolicy::default`] does.
    pub fn from_env(env: &impl busline::config::Env) -> Result<Self, busline::config::ConfigError> {
        let default = Self::default();
        Ok(Self {
            threshold_cents: env.parse_or(
                "APPROVAL_THRESHOLD_CENTS",
                default.threshold_cents,
                "an order total in cents above which a person must approve",
            )?,
            timeout_seconds: env.parse_or(
                "APPROVAL_TIMEOUT_SECONDS",
                default.timeout_seconds,
                "the seconds a person has to approve an order",
            )?,
        })
    }

    /// Checks `order` against `standing` and says whether it needs approval.
    pub fn decide(
        &self,
        order: &Order,
        standing: &CreditStanding,
    ) -> Result<CreditDecision, FulfillmentError> {
        standing.check(&order.customer.id, order.total_cents)?;
        Ok(CreditDecision {
            available_cents: standing.limit_cents - standing.owed_cents,
            approval_required: order.total_cents > self.threshold_cents,
            approval_timeout_seconds: self.timeout_seconds,
        })
    }
}

/// What the credit check decided: the order fits, and whether a person must approve it first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditDecision {
    /// Limit minus owed, before this order.
    pub available_cents: i64,
    /// The order is above the approval threshold.
    pub approval_required: bool,
    /// How long the person has to decide (the state machine's `TimeoutSecondsPath`).
    pub approval_timeout_seconds: u64,
}

/// What a reservation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The order's id: a repeated reservation for it returns this one.
    pub order_id: String,
    /// Quantity per SKU.
    pub quantities: BTreeMap<String, i64>,
    /// SKUs now under their reorder point: each needs a purchase order.
    pub below_reorder_point: Vec<String>,
}

/// A captured payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The provider's id.
    pub payment_id: String,
    /// What was captured, in cents.
    pub amount_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// A shipment created with the carrier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// The carrier's id.
    pub shipment_id: String,
    /// What the customer tracks.
    pub tracking_number: String,
    /// The warehouse's picking slip: one line per SKU.
    pub picking_slip: Vec<String>,
}

/// A posted invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// The invoice number.
    pub invoice_id: String,
    /// The amount, in cents.
    pub amount_cents: i64,
}

/// The CRM's view of customers' credit.
pub trait CustomerAccounts: Send + Sync {
    /// The customer's credit standing; an unknown customer has no credit.
    fn credit(
        &self,
        customer_id: &str,
    ) -> impl Future<Output = Result<CreditStanding, FulfillmentError>> + Send;
}

/// The warehouse's stock.
pub trait Inventory: Send + Sync {
    /// Reserves every line of `order`, all or nothing. A repeat for the same order returns the first
    /// reservation.
    fn reserve(
        &self,
        order: &Order,
    ) -> impl Future<Output = Result<Reservation, FulfillmentError>> + Send;

    /// Puts back what `order_id` reserved; nothing to release is success.
    fn release(&self, order_id: &str) -> impl Future<Output = Result<(), FulfillmentError>> + Send;
}

/// The payment provider: captures an order's total once, and refunds it when the saga undoes the
/// order.
pub trait Payments: Send + Sync {
    /// Authorizes and captures the order's total. A repeat returns the first capture.
    fn capture(
        &self,
        order: &Order,
    ) -> impl Future<Output = Result<Payment, FulfillmentError>> + Send;

    /// Refunds (or voids) the order's capture; nothing to refund is success.
    fn refund(&self, order_id: &str) -> impl Future<Output = Result<(), FulfillmentError>> + Send;
}

/// The carrier: creates an order's shipment once, and cancels it when the saga undoes the order.
pub trait Shipping: Send + Sync {
    /// Creates the shipment, its picking slip and tracking number. A repeat returns the first.
    fn create(
        &self,
        order: &Order,
    ) -> impl Future<Output = Result<Shipment, FulfillmentError>> + Send;

    /// Cancels the order's shipment; nothing to cancel is success.
    fn cancel(&self, order_id: &str) -> impl Future<Output = Result<(), FulfillmentError>> + Send;
}

/// A fulfilled order, as the customer is told about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilledNotice {
    /// The order's id: a repeated notice for it sends nothing new.
    pub order_id: String,
    /// Who is told, at their email.
    pub customer: Customer,
    /// The shipment's tracking number.
    pub tracking_number: String,
}

/// Telling customers (an email API).
pub trait CustomerNotifications: Send + Sync {
    /// Tells the customer their order is on its way. A repeat for the same order sends nothing new.
    fn order_fulfilled(
        &self,
        notice: &FulfilledNotice,
    ) -> impl Future<Output = Result<(), FulfillmentError>> + Send;
}

/// Accounting: posts one invoice per order.
pub trait Invoicing: Send + Sync {
    /// Posts the order's invoice. A repeat returns the first.
    fn post(&self, order: &Order)
    -> impl Future<Output = Result<Invoice, FulfillmentError>> + Send;
}

#[cfg(test)]
mod tests;
