//! Where an order stands: a projection the saga keeps up to date, one item per order, so
//! `GET /orders/{id}` answers from one read and never polls Step Functions.
//!
//! Each step records a [`Transition`] when it is done, or when it fails for a business reason; the
//! approval step records that the order waits for a person (with the task token that resumes it),
//! and the state machine itself records the end: fulfilled, failed, or a compensation that failed.
//! A transition sets the order's status, current step and `updated_at`, and adds one entry to its
//! history. History entries are named, and recording a name again keeps the first entry: a retried
//! step, or one that crashed after recording, leaves one entry with the time it first happened.
//!
//! On DynamoDB ([`DynamoDbOrderTracker`]) the item is keyed by `order_id`; each history entry is an
//! attribute `h:<name>` (`{at, step, description}`), written with `if_not_exists` in the same
//! `UpdateItem` as the status, so a transition is one call. The state machine's own transitions
//! (`infra/statemachines/order-fulfillment.asl.json`, the `Record*` states) write the same shape.

//!
//! The port and its types are here; [`DynamoDbOrderTracker`] is the adapter, [`InMemoryOrderTracker`]
//! its twin, and [`contract`] the rules both keep. A step records its transitions through
//! [`crate::step`].

#[cfg(any(test, feature = "test-util"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code, which fails by panicking"
)]
mod contract;
mod dynamodb;
#[cfg(any(test, feature = "test-util"))]
mod memory;

use std::future::Future;

use busline::error::{Classify, ErrorClass};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

#[cfg(any(test, feature = "test-util"))]
pub use contract::contract;
pub use dynamodb::DynamoDbOrderTracker;
#[cfg(any(test, feature = "test-util"))]
pub use memory::InMemoryOrderTracker;

use crate::FulfillmentError;

/// The error type a step fails with when it cannot record its transition (retryable: the step is
/// idempotent, so the state machine runs it again).
pub const ORDER_STATUS_UNAVAILABLE: &str = "OrderStatusUnavailable";

/// Prefix of the attributes that hold history entries.
const HISTORY_PREFIX: &str = "h:";

/// An order's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// The saga is working on it.
    InProgress,
    /// A person must approve it (high-value orders).
    AwaitingApproval,
    /// A step failed; what was done is being undone.
    Failing,
    /// Done: paid, shipped, invoiced (or flagged for finance).
    Fulfilled,
    /// Failed, and everything done for it was undone.
    Failed,
    /// A compensation failed after its retries: a person must look.
    CompensationFailed,
}

impl Status {
    /// The stored form, `IN_PROGRESS` and so on.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::AwaitingApproval => "AWAITING_APPROVAL",
            Self::Failing => "FAILING",
            Self::Fulfilled => "FULFILLED",
            Self::Failed => "FAILED",
            Self::CompensationFailed => "COMPENSATION_FAILED",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
    }
}

/// A step of the saga, as the status names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Validate the order.
    ValidateOrder,
    /// Check the customer's credit.
    CheckCredit,
    /// Wait for a person to approve a high-value order.
    Approval,
    /// Reserve the stock.
    ReserveInventory,
    /// Capture the payment.
    TakePayment,
    /// Create the shipment.
    CreateShipment,
    /// Post the invoice.
    PostInvoice,
    /// Compensation: put the stock back.
    ReleaseInventory,
    /// Compensation: refund the payment.
    RefundPayment,
    /// Compensation: cancel the shipment.
    CancelShipment,
}

impl Step {
    /// The step's name, as the history and `current_step` show it.
    pub fn name(self) -> &'static str {
        match self {
            Self::ValidateOrder => "validate-order",
            Self::CheckCredit => "check-credit",
            Self::Approval => "approval",
            Self::ReserveInventory => "reserve-inventory",
            Self::TakePayment => "take-payment",
            Self::CreateShipment => "create-shipment",
            Self::PostInvoice => "post-invoice",
            Self::ReleaseInventory => "release-inventory",
            Self::RefundPayment => "refund-payment",
            Self::CancelShipment => "cancel-shipment",
        }
    }

    /// What the history says when the step is done.
    fn history_when_done(self) -> &'static str {
        match self {
            Self::ValidateOrder => "order validated",
            Self::CheckCredit => "credit checked",
            Self::Approval => "approved",
            Self::ReserveInventory => "inventory reserved",
            Self::TakePayment => "payment taken",
            Self::CreateShipment => "shipment created",
            Self::PostInvoice => "invoice posted",
            Self::ReleaseInventory => "inventory released",
            Self::RefundPayment => "payment refunded",
            Self::CancelShipment => "shipment cancelled",
        }
    }

    fn is_compensation(self) -> bool {
        matches!(
            self,
            Self::ReleaseInventory | Self::RefundPayment | Self::CancelShipment
        )
    }
}

/// One change to where an order stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The order's id: the key of the one status item the transition updates.
    pub order_id: String,
    /// The step that changed it.
    pub step: String,
    /// Names the history entry; a name recorded twice keeps its first entry.
    pub name: String,
    /// What the history says.
    pub description: String,
    /// The order's status from now on.
    pub status: Status,
    /// When the change happened (UTC); the history orders entries by it.
    pub at: DateTime<Utc>,
    /// The shipment's tracking number, once there is one.
    pub tracking_number: Option<String>,
    /// Why the order failed, as [`public_reason`] words it.
    pub failure_reason: Option<String>,
    /// The task token that resumes an order waiting for approval. Kept only while the status is
    /// [`Status::AwaitingApproval`]; any other transition removes it.
    pub approval_token: Option<String>,
}

impl Transition {
    /// `step` is done. Compensations leave the order [`Status::Failing`]; other steps leave it
    /// [`Status::InProgress`].
    pub fn done(step: Step, order_id: &str) -> Self {
        let status = if step.is_compensation() {
            Status::Failing
        } else {
            Status::InProgress
        };
        Self::new(
            order_id,
            step.name(),
            step.name(),
            step.history_when_done(),
            status,
        )
    }

    /// `step` failed for a business reason: the order is [`Status::Failing`], with the reason.
    pub fn failed(step: Step, order_id: &str, error: &FulfillmentError) -> Self {
        let mut transition = Self::new(
            order_id,
            step.name(),
            &format!("{}:failed", step.name()),
            &format!("{} failed: {}", step.name(), error.error_type()),
            Status::Failing,
        );
        transition.failure_reason = Some(public_reason(error.error_type()));
        transition
    }

    /// A transition stamped now, with no tracking number, failure reason or approval token.
    pub fn new(order_id: &str, step: &str, name: &str, description: &str, status: Status) -> Self {
        Self {
            order_id: order_id.to_owned(),
            step: step.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            status,
            at: Utc::now(),
            tracking_number: None,
            failure_reason: None,
            approval_token: None,
        }
    }

    /// With the shipment's tracking number.
    pub fn with_tracking_number(mut self, tracking_number: Option<&str>) -> Self {
        self.tracking_number = tracking_number.map(str::to_owned);
        self
    }

    /// With the task token that resumes the execution.
    pub fn with_approval_token(mut self, token: &str) -> Self {
        self.approval_token = Some(token.to_owned());
        self
    }

    /// At `at` instead of now.
    pub fn at(mut self, at: DateTime<Utc>) -> Self {
        self.at = at;
        self
    }

    fn entry(&self) -> HistoryEntry {
        HistoryEntry {
            at: timestamp(self.at),
            step: self.step.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
        }
    }
}

/// What the status API, which anyone with an order id can read, says about a failure: its type and
/// a fixed description, never the words of a system or a person (an issuer's decline text, an
/// approver's name or comment). The whole reason travels in the saga's events to the audit trail.
pub fn public_reason(error_type: &str) -> String {
    let what = match error_type {
        "InvalidOrder" => "the order is not valid",
        "CreditLimitExceeded" => "the order exceeds the customer's credit",
        "OutOfStock" => "an item is out of stock",
        "PaymentDeclined" => "the payment was declined",
        "ShipmentRejected" => "the shipment was refused",
        "OrderRejected" => "the order was rejected at approval",
        "ApprovalTimedOut" => "no one decided on the order in time",
        _ => "a step failed",
    };
    format!("{error_type}: {what}")
}

pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One entry of an order's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When, RFC 3339 (to the microsecond where busline's functions record it).
    pub at: String,
    /// The step's name (`take-payment`), or the state machine's own (`order-failed`).
    pub step: String,
    /// The entry's name (`take-payment`, `take-payment:failed`, `approval-requested`, …).
    #[serde(default)]
    pub name: String,
    /// What happened, for people.
    pub description: String,
}

/// Where an order stands, as `GET /orders/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderView {
    /// The order's id, the `{id}` of `GET /orders/{id}`.
    pub order_id: String,
    /// Its status, in its stored form (`IN_PROGRESS`, `FULFILLED`, …).
    pub status: Status,
    /// The step that last changed it.
    pub current_step: String,
    /// The tracking number, once shipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// Why it failed: `<error type>: <a fixed description>`, never a system's or a person's words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The last change, RFC 3339.
    pub updated_at: String,
    /// Everything that happened, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The token that resumes it while it waits for approval. Never shown.
    #[serde(skip)]
    pub approval_token: Option<String>,
}

impl OrderView {
    /// Whether the history holds an entry named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.history.iter().any(|entry| entry.name == name)
    }
}

/// Why the status could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The table could not be reached. Retryable.
    #[error("the order status table is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The stored item does not read as an order's status. Permanent.
    #[error("the status of order {order_id} is unreadable: {why}")]
    Unreadable {
        /// The order's id: the key of the item that does not read.
        order_id: String,
        /// What is wrong.
        why: String,
    },
}

impl Classify for StatusError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable(_) => ErrorClass::Retryable,
            Self::Unreadable { .. } => ErrorClass::Permanent,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => ORDER_STATUS_UNAVAILABLE,
            Self::Unreadable { .. } => "OrderStatusUnreadable",
        }
    }
}

/// The projection of where orders stand.
pub trait OrderTracker: Send + Sync {
    /// Records `transition`.
    fn record(
        &self,
        transition: &Transition,
    ) -> impl Future<Output = Result<(), StatusError>> + Send;

    /// Where the order stands; `None` when nothing was recorded for it.
    fn get(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Option<OrderView>, StatusError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::dynamodb::normalized;
    use super::*;
    use crate::Shipment;
    use crate::step::track;

    #[tokio::test]
    async fn the_in_memory_tracker_keeps_the_contract() {
        contract(&InMemoryOrderTracker::new(), "").await;
    }

    fn order_id() -> &'static str {
        "SO-1"
    }

    #[test]
    fn times_from_step_functions_and_from_functions_sort_together() {
        assert_eq!(
            normalized("2026-11-30T02:40:38.44+00:00"),
            "2026-11-30T02:40:38.440000Z"
        );
        assert_eq!(
            normalized("2026-11-30T02:40:38.440Z"),
            "2026-11-30T02:40:38.440000Z"
        );
        assert_eq!(normalized("yesterday"), "yesterday");
    }

    #[tokio::test]
    async fn a_done_step_is_recorded_with_its_tracking_number() {
        let tracker = InMemoryOrderTracker::new();
        let shipment = Shipment {
            shipment_id: "S-1".to_owned(),
            tracking_number: "TRK-9".to_owned(),
            picking_slip: vec![],
        };
        let answer = track(&tracker, Step::CreateShipment, order_id(), async {
            Ok(shipment.clone())
        })
        .await
        .unwrap();
        assert_eq!(answer, shipment);
        let seen = tracker.get(order_id()).await.unwrap().unwrap();
        assert_eq!(seen.current_step, "create-shipment");
        assert_eq!(seen.tracking_number.as_deref(), Some("TRK-9"));
    }

    #[tokio::test]
    async fn a_business_failure_is_recorded_and_still_returned() {
        let tracker = InMemoryOrderTracker::new();
        let error = track(&tracker, Step::TakePayment, order_id(), async {
            Err::<(), _>(FulfillmentError::PaymentDeclined {
                order_id: order_id().to_owned(),
                reason: "no funds".to_owned(),
            })
        })
        .await
        .unwrap_err();
        assert_eq!(error.error_type(), "PaymentDeclined");
        let seen = tracker.get(order_id()).await.unwrap().unwrap();
        assert_eq!(seen.status, Status::Failing);
        // The issuer's words stay out of the public projection; the type and a fixed summary stand.
        assert_eq!(
            seen.failure_reason.as_deref(),
            Some("PaymentDeclined: the payment was declined")
        );
    }

    #[tokio::test]
    async fn a_retryable_failure_records_nothing() {
        let tracker = InMemoryOrderTracker::new();
        let error = track(&tracker, Step::TakePayment, order_id(), async {
            Err::<(), _>(FulfillmentError::Unavailable {
                system: "PaymentsUnavailable",
                source: "down".into(),
            })
        })
        .await
        .unwrap_err();
        assert_eq!(error.error_type(), "PaymentsUnavailable");
        assert!(tracker.get(order_id()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_step_that_cannot_record_its_success_still_succeeds() {
        // A read model's outage never changes a business outcome: before, this failed the step with
        // OrderStatusUnavailable, and past its retries the saga compensated a step that had worked.
        let tracker = InMemoryOrderTracker::new();
        tracker.set_unavailable(true);
        let answer = track(&tracker, Step::TakePayment, order_id(), async { Ok(()) }).await;
        assert!(answer.is_ok(), "{answer:?}");

        // The projection catches up at the order's next transition.
        tracker.set_unavailable(false);
        track(&tracker, Step::CreateShipment, order_id(), async { Ok(()) })
            .await
            .unwrap();
        let seen = tracker.get(order_id()).await.unwrap().unwrap();
        assert_eq!(seen.current_step, Step::CreateShipment.name());
        assert_eq!(seen.status, Status::InProgress);
    }

    #[tokio::test]
    async fn a_business_failure_wins_over_an_unavailable_tracker() {
        let tracker = InMemoryOrderTracker::new();
        tracker.set_unavailable(true);
        let error = track(&tracker, Step::CheckCredit, order_id(), async {
            Err::<(), _>(FulfillmentError::CreditLimitExceeded {
                customer_id: "C-1".to_owned(),
                available_cents: 1,
                requested_cents: 2,
            })
        })
        .await
        .unwrap_err();
        assert_eq!(error.error_type(), "CreditLimitExceeded");
    }
}
