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

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::*;
use crate::telemetry::Hop;

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
    fn done(self) -> &'static str {
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
    /// The order.
    pub order_id: String,
    /// The step that changed it.
    pub step: String,
    /// Names the history entry; a name recorded twice keeps its first entry.
    pub name: String,
    /// What the history says.
    pub description: String,
    /// The order's status from now on.
    pub status: Status,
    /// When.
    pub at: DateTime<Utc>,
    /// The shipment's tracking number, once there is one.
    pub tracking_number: Option<String>,
    /// Why the order failed.
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
        Self::new(order_id, step.name(), step.name(), step.done(), status)
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

    /// Any transition.
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

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One entry of an order's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When, RFC 3339 (to the microsecond where busline's functions record it).
    pub at: String,
    /// The step.
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
    /// The order.
    pub order_id: String,
    /// Its status.
    pub status: Status,
    /// The step that last changed it.
    pub current_step: String,
    /// The tracking number, once shipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// Why it failed.
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
        /// The order.
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

/// What a step's answer adds to the order's status.
pub trait Progress {
    /// The tracking number, when the answer carries one.
    fn tracking_number(&self) -> Option<&str> {
        None
    }
}

impl Progress for () {}
impl Progress for Reservation {}
impl Progress for Payment {}
impl Progress for Invoice {}
impl Progress for CreditDecision {}
impl Progress for Shipment {
    fn tracking_number(&self) -> Option<&str> {
        Some(&self.tracking_number)
    }
}

/// Runs a saga step and records its transition: done, or failed for a business reason (with the
/// reason). A retryable failure records nothing, as the step runs again.
///
/// The projection is a read model, and its outage never changes an order's outcome: when a
/// transition cannot be recorded the step's own answer stands (success or business failure), the
/// miss is logged and counted (`StatusWriteFailed`, which `StatusWriteFailedAlarm` watches), and the
/// projection catches up at the order's next transition. Before, a step that succeeded failed with
/// `OrderStatusUnavailable`, and after its retries the saga compensated: a taken payment was
/// refunded because a status table was down.
pub async fn track<T, F>(
    tracker: &impl OrderTracker,
    step: Step,
    order_id: &str,
    work: F,
) -> Result<T, FulfillmentError>
where
    T: Progress,
    F: Future<Output = Result<T, FulfillmentError>>,
{
    match work.await {
        Ok(answer) => {
            let transition =
                Transition::done(step, order_id).with_tracking_number(answer.tracking_number());
            if let Err(e) = tracker.record(&transition).await {
                status_write_failed(step, order_id, &e);
            }
            Ok(answer)
        }
        Err(error) if error.class() == ErrorClass::Permanent => {
            if let Err(e) = tracker
                .record(&Transition::failed(step, order_id, &error))
                .await
            {
                status_write_failed(step, order_id, &e);
            }
            Err(error)
        }
        Err(error) => Err(error),
    }
}

fn status_write_failed(step: Step, order_id: &str, error: &StatusError) {
    tracing::warn!(order_id, step = step.name(), error = %crate::error::with_causes(error), "could not record the order's status; the step's outcome stands, and the next transition catches the projection up");
    // One dimension for every step, so one alarm watches them all; the log line names the step.
    crate::telemetry::Metrics::new("busline")
        .dimension("Projection", "order-status")
        .metric("StatusWriteFailed", crate::telemetry::Unit::Count, 1.0)
        .emit();
}

/// Serves a saga step as a Lambda function: each invocation's [`SagaState`] goes to `handler`, its
/// transition is recorded ([`track`]), and an error becomes the `Diagnostic` whose `errorType` the
/// state machine matches.
pub async fn serve_step<T, F, Fut>(
    tracker: &impl OrderTracker,
    step: Step,
    handler: F,
) -> Result<(), lambda_runtime::Error>
where
    T: Progress + Serialize,
    F: Fn(SagaState) -> Fut,
    Fut: Future<Output = Result<T, FulfillmentError>>,
{
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<SagaState>| {
            let state = &event.payload;
            let order_id = state.order.order_id.clone();
            // The step continues the trace of the event that started the saga; its metrics are
            // under the event type `saga/<step>`.
            let hop = Hop::new(
                state.traceparent.as_deref(),
                state.correlation_id.as_deref().unwrap_or(&order_id),
                &order_id,
                &format!("saga/{}", step.name()),
            );
            let work = handler(event.payload);
            // Boxed: nesting the handler's future in the runtime's makes a type too deep to lay out.
            Box::pin(async move {
                let result = hop
                    .run(async {
                        let result = track(tracker, step, &order_id, work).await;
                        let outcome = result.as_ref().map_or_else(|e| e.error_type(), |_| "done");
                        tracing::info!(order_id, step = step.name(), outcome, "step finished");
                        result
                    })
                    .await;
                result.map_err(|e| crate::error::diagnostic(&e))
            })
        },
    ))
    .await
}

/// The projection on DynamoDB: one item per order, key `order_id`.
#[derive(Clone, Debug)]
pub struct DynamoDbOrderTracker {
    client: Client,
    table: String,
}

#[derive(Deserialize)]
struct StoredStatus {
    order_id: String,
    status: String,
    current_step: String,
    updated_at: String,
    tracking_number: Option<String>,
    failure_reason: Option<String>,
    approval_token: Option<String>,
}

impl DynamoDbOrderTracker {
    /// The projection on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The projection on the table named by `ORDER_STATUS_TABLE`, with a client from `aws`.
    pub fn from_env(
        env: &impl crate::config::Env,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, crate::config::ConfigError> {
        let table = env.require(
            "ORDER_STATUS_TABLE",
            "the name of the order status DynamoDB table",
        )?;
        Ok(Self::new(Client::new(aws), table))
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

impl OrderTracker for DynamoDbOrderTracker {
    async fn record(&self, transition: &Transition) -> Result<(), StatusError> {
        let entry = transition.entry();
        let mut set = vec![
            "#status = :status",
            "current_step = :step",
            "updated_at = :at",
            "#entry = if_not_exists(#entry, :entry)",
        ];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", s(&transition.order_id))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#entry", format!("{HISTORY_PREFIX}{}", transition.name))
            .expression_attribute_values(":status", s(transition.status.as_str()))
            .expression_attribute_values(":step", s(&transition.step))
            .expression_attribute_values(":at", s(&entry.at))
            .expression_attribute_values(
                ":entry",
                AttributeValue::M(HashMap::from([
                    ("at".to_owned(), s(&entry.at)),
                    ("step".to_owned(), s(&entry.step)),
                    ("description".to_owned(), s(&entry.description)),
                ])),
            );
        if let Some(tracking_number) = &transition.tracking_number {
            set.push("tracking_number = :tracking_number");
            request = request.expression_attribute_values(":tracking_number", s(tracking_number));
        }
        if let Some(reason) = &transition.failure_reason {
            set.push("failure_reason = if_not_exists(failure_reason, :reason)");
            request = request.expression_attribute_values(":reason", s(reason));
        }
        let mut expression = format!("SET {}", set.join(", "));
        match (&transition.approval_token, transition.status) {
            (Some(token), Status::AwaitingApproval) => {
                expression.push_str(", approval_token = :token");
                request = request.expression_attribute_values(":token", s(token));
            }
            _ => expression.push_str(" REMOVE approval_token"),
        }
        request
            .update_expression(expression)
            .send()
            .await
            .map_err(|e| StatusError::Unavailable(Box::new(e)))?;
        Ok(())
    }

    async fn get(&self, order_id: &str) -> Result<Option<OrderView>, StatusError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("order_id", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StatusError::Unavailable(Box::new(e)))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let unreadable = |why: String| StatusError::Unreadable {
            order_id: order_id.to_owned(),
            why,
        };
        let mut history = Vec::new();
        for (attribute, value) in &item {
            if let Some(name) = attribute.strip_prefix(HISTORY_PREFIX) {
                let mut entry: HistoryEntry = serde_dynamo::from_attribute_value(value.clone())
                    .map_err(|e| unreadable(format!("history entry {name}: {e}")))?;
                entry.name = name.to_owned();
                history.push(entry);
            }
        }
        let stored: StoredStatus =
            serde_dynamo::from_item(item).map_err(|e| unreadable(e.to_string()))?;
        let status = Status::parse(&stored.status)
            .ok_or_else(|| unreadable(format!("unknown status {:?}", stored.status)))?;
        Ok(Some(view(stored, status, history)))
    }
}

/// `at` in one form, UTC to the microsecond, so entries from busline's functions and from Step
/// Functions (whose `EnteredTime` comes as `…Z` or `…+00:00`) sort by time; anything else is kept.
fn normalized(at: &str) -> String {
    DateTime::parse_from_rfc3339(at)
        .map(|t| timestamp(t.with_timezone(&Utc)))
        .unwrap_or_else(|_| at.to_owned())
}

fn view(stored: StoredStatus, status: Status, mut history: Vec<HistoryEntry>) -> OrderView {
    for entry in &mut history {
        entry.at = normalized(&entry.at);
    }
    history.sort_by(|a, b| a.at.cmp(&b.at));
    OrderView {
        order_id: stored.order_id,
        status,
        current_step: stored.current_step,
        tracking_number: stored.tracking_number,
        failure_reason: stored.failure_reason,
        updated_at: normalized(&stored.updated_at),
        history,
        approval_token: stored.approval_token,
    }
}

/// The projection in memory, for tests: the same rules as the DynamoDB one.
#[derive(Debug, Default)]
pub struct InMemoryOrderTracker {
    orders: Mutex<HashMap<String, OrderView>>,
    unavailable: AtomicBool,
}

impl InMemoryOrderTracker {
    /// An empty projection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail as an outage would (or stop failing).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StatusError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StatusError::Unavailable(
                "the in-memory tracker is set unavailable".into(),
            ));
        }
        Ok(())
    }
}

impl OrderTracker for InMemoryOrderTracker {
    async fn record(&self, transition: &Transition) -> Result<(), StatusError> {
        self.check()?;
        let entry = transition.entry();
        let mut orders = self.orders.lock().expect("the lock is never poisoned");
        let order = orders
            .entry(transition.order_id.clone())
            .or_insert_with(|| OrderView {
                order_id: transition.order_id.clone(),
                status: transition.status,
                current_step: transition.step.clone(),
                tracking_number: None,
                failure_reason: None,
                updated_at: entry.at.clone(),
                history: Vec::new(),
                approval_token: None,
            });
        order.status = transition.status;
        order.current_step = transition.step.clone();
        order.updated_at = entry.at.clone();
        if transition.tracking_number.is_some() {
            order.tracking_number = transition.tracking_number.clone();
        }
        if order.failure_reason.is_none() {
            order.failure_reason = transition.failure_reason.clone();
        }
        order.approval_token = match transition.status {
            Status::AwaitingApproval => transition.approval_token.clone(),
            _ => None,
        };
        if !order.has(&transition.name) {
            order.history.push(entry);
            order.history.sort_by(|a, b| a.at.cmp(&b.at));
        }
        Ok(())
    }

    async fn get(&self, order_id: &str) -> Result<Option<OrderView>, StatusError> {
        self.check()?;
        Ok(self
            .orders
            .lock()
            .expect("the lock is never poisoned")
            .get(order_id)
            .cloned())
    }
}

/// The contract every [`OrderTracker`] keeps; `order_prefix` keeps runs on a shared table apart.
/// Test tooling: only built for tests or with the `contract-tests` feature.
#[cfg(any(test, feature = "contract-tests"))]
pub async fn contract<T: OrderTracker>(tracker: &T, order_prefix: &str) {
    use chrono::TimeDelta;

    let order = format!("{order_prefix}contract-1");
    let t0 = Utc::now();
    assert!(
        tracker.get(&order).await.unwrap().is_none(),
        "nothing recorded yet"
    );

    tracker
        .record(&Transition::done(Step::ValidateOrder, &order).at(t0))
        .await
        .unwrap();
    let seen = tracker.get(&order).await.unwrap().expect("recorded");
    assert_eq!(seen.status, Status::InProgress);
    assert_eq!(seen.current_step, "validate-order");
    assert_eq!(seen.history.len(), 1);
    assert_eq!(seen.history[0].name, "validate-order");
    assert_eq!(seen.history[0].description, "order validated");

    // Waiting for approval keeps the token; the next transition removes it.
    let waiting = Transition::new(
        &order,
        "approval",
        "approval-requested",
        "waiting for approval",
        Status::AwaitingApproval,
    )
    .with_approval_token("token-1")
    .at(t0 + TimeDelta::milliseconds(10));
    tracker.record(&waiting).await.unwrap();
    let seen = tracker.get(&order).await.unwrap().unwrap();
    assert_eq!(seen.status, Status::AwaitingApproval);
    assert_eq!(seen.approval_token.as_deref(), Some("token-1"));
    tracker
        .record(&Transition::done(Step::Approval, &order).at(t0 + TimeDelta::milliseconds(20)))
        .await
        .unwrap();
    assert_eq!(
        tracker.get(&order).await.unwrap().unwrap().approval_token,
        None
    );

    // A repeat keeps the first entry and its time; history comes back oldest first.
    tracker
        .record(
            &Transition::done(Step::CreateShipment, &order)
                .with_tracking_number(Some("TRK-1"))
                .at(t0 + TimeDelta::milliseconds(40)),
        )
        .await
        .unwrap();
    tracker
        .record(
            &Transition::done(Step::CreateShipment, &order).at(t0 + TimeDelta::milliseconds(90)),
        )
        .await
        .unwrap();
    tracker
        .record(&Transition::done(Step::TakePayment, &order).at(t0 + TimeDelta::milliseconds(30)))
        .await
        .unwrap();
    let seen = tracker.get(&order).await.unwrap().unwrap();
    let names: Vec<_> = seen.history.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "validate-order",
            "approval-requested",
            "approval",
            "take-payment",
            "create-shipment"
        ]
    );
    assert_eq!(
        seen.history[4].at,
        timestamp(t0 + TimeDelta::milliseconds(40)),
        "the first time is kept"
    );
    assert_eq!(
        seen.tracking_number.as_deref(),
        Some("TRK-1"),
        "a later transition without one keeps it"
    );

    // A business failure records its reason, and the first reason stays.
    let declined = FulfillmentError::PaymentDeclined {
        order_id: order.clone(),
        reason: "card refused".to_owned(),
    };
    tracker
        .record(&Transition::failed(Step::TakePayment, &order, &declined))
        .await
        .unwrap();
    tracker
        .record(
            &Transition::new(
                &order,
                "order-failed",
                "order-failed",
                "order failed",
                Status::Failed,
            )
            .at(Utc::now() + TimeDelta::seconds(1)),
        )
        .await
        .unwrap();
    let seen = tracker.get(&order).await.unwrap().unwrap();
    assert_eq!(seen.status, Status::Failed);
    assert_eq!(
        seen.failure_reason.as_deref(),
        Some(public_reason(declined.error_type()).as_str())
    );
    assert!(seen.has("take-payment:failed"));
    assert_eq!(seen.history.last().unwrap().name, "order-failed");
    let shown = serde_json::to_value(&seen).unwrap();
    assert_eq!(shown["status"], "FAILED");
    assert!(
        shown.get("approval_token").is_none(),
        "the token is never shown"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
