//! HTTP adapters for real external systems (feature `http`): one client per system, with a
//! configurable base URL.
//!
//! Every call carries the running hop's `traceparent` (see [`telemetry`](busline::telemetry)).
//! Every call that changes something carries an `Idempotency-Key` header, `<order id>:<step>`, the
//! convention payment APIs use, so the system itself answers a repeat with its first result. Calls
//! are retried with the toolkit's backoff ([`retry`](busline::retry::retry)), within the invocation's
//! deadline, on what is worth retrying: connection errors, timeouts, `429` and `5xx`. Business
//! refusals come back as their [`FulfillmentError`]: `402` from payments is `PaymentDeclined`, `409`
//! from inventory is `OutOfStock`, `422` from the carrier is `ShipmentRejected`. A compensation that
//! finds nothing to undo (`404`) succeeds.
//!
//! | Port | Calls |
//! |---|---|
//! | [`CustomerAccounts`] | `GET /customers/{id}/credit` → `{limit_cents, owed_cents}`; `404` is no credit |
//! | [`Inventory`] | `POST /reservations` (the order) → `{below_reorder_point}`; `DELETE /reservations/{order}` |
//! | [`Payments`] | `POST /payments` (the order) → `{payment_id, amount_cents, currency}`; `POST /payments/{order}/refund` |
//! | [`Shipping`] | `POST /shipments` (the order) → `{shipment_id, tracking_number, picking_slip}`; `POST /shipments/{order}/cancel` |
//! | [`Invoicing`] | `POST /invoices` (the order) → `{invoice_id, amount_cents}` |
//! | [`CustomerNotifications`] | `POST /emails` → any `2xx`; another `4xx` is `NotificationRejected` |

use std::pin::Pin;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    CreditStanding, CustomerAccounts, CustomerNotifications, FulfilledNotice, FulfillmentError,
    Inventory, Invoice, Invoicing, Order, Payment, Payments, Reservation, Shipment, Shipping,
};
use busline::retry::{Backoff, Deadline, retry};
use std::future::Future;

/// The header that makes a repeated call safe.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// A client for one external system.
#[derive(Clone, Debug)]
pub struct HttpSystem {
    client: reqwest::Client,
    base_url: String,
    /// The error type this system's outages carry, such as `PaymentsUnavailable`.
    system: &'static str,
    backoff: Backoff,
    deadline: Option<Deadline>,
}

/// A system's answer: its status and JSON body.
struct Answer {
    status: StatusCode,
    body: Value,
}

impl HttpSystem {
    /// A client for the system at `base_url` (no trailing slash needed), whose outages are reported
    /// as `system`. Each request times out after `timeout`. It trusts what the process's TLS
    /// configuration trusts ([`busline::tls`]), and fails when that configuration does, or when
    /// reqwest does not take it (a rustls of another version than busline's).
    pub fn new(
        base_url: impl Into<String>,
        system: &'static str,
        timeout: Duration,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self {
            client: reqwest::Client::builder()
                .tls_backend_preconfigured((*busline::tls::client_config()?).clone())
                .timeout(timeout)
                .build()?,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            system,
            backoff: Backoff::default(),
            deadline: None,
        })
    }

    /// Retries with `backoff` instead of the default.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Never retries past `deadline` (the invocation's).
    pub fn with_deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = Some(deadline);
        self
    }

    fn unavailable(
        &self,
        why: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> FulfillmentError {
        FulfillmentError::Unavailable {
            system: self.system,
            source: why.into(),
        }
    }

    /// Sends the request, retrying what is worth retrying; any other answer comes back as it is.
    /// Boxed: the ports' futures must be `Send`, which the compiler cannot see through the retry
    /// closure otherwise.
    fn call<'a>(
        &'a self,
        method: Method,
        path: &'a str,
        idempotency_key: Option<String>,
        body: Option<&'a Value>,
    ) -> Pin<Box<dyn Future<Output = Result<Answer, FulfillmentError>> + Send + 'a>> {
        Box::pin(async move {
            let url = format!("{}{path}", self.base_url);
            let (url, method, idempotency_key) = (&url, &method, &idempotency_key);
            retry(&self.backoff, self.deadline, |_attempt| async move {
                let mut request = self.client.request(method.clone(), url.as_str());
                if let Some(key) = idempotency_key {
                    request = request.header(IDEMPOTENCY_KEY_HEADER, key);
                }
                // The system continues the saga's trace, if it traces.
                if let Some(traceparent) = busline::telemetry::current_traceparent() {
                    request = request.header(busline::telemetry::TRACEPARENT_HEADER, traceparent);
                }
                if let Some(body) = body {
                    request = request
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.to_string());
                }
                let response = request.send().await.map_err(|e| self.unavailable(e))?;
                let status = response.status();
                let text = response.text().await.map_err(|e| self.unavailable(e))?;
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    return Err(
                        self.unavailable(format!("{method} {path} answered {status}: {text}"))
                    );
                }
                Ok(Answer {
                    status,
                    body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
                })
            })
            .await
        })
    }

    fn parse<T: DeserializeOwned>(
        &self,
        path: &str,
        answer: Answer,
    ) -> Result<T, FulfillmentError> {
        if !answer.status.is_success() {
            return Err(self.unavailable(format!(
                "{path} answered {}: {}",
                answer.status, answer.body
            )));
        }
        serde_json::from_value(answer.body)
            .map_err(|e| self.unavailable(format!("{path} answered with an unexpected body: {e}")))
    }

    /// A compensation: success, or nothing to undo.
    fn undone(&self, path: &str, answer: Answer) -> Result<(), FulfillmentError> {
        if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.unavailable(format!(
            "{path} answered {}: {}",
            answer.status, answer.body
        )))
    }
}

fn reason(body: &Value) -> String {
    body.get("reason")
        .and_then(Value::as_str)
        .map_or_else(|| body.to_string(), str::to_owned)
}

fn order_json(order: &Order) -> Result<Value, FulfillmentError> {
    serde_json::to_value(order).map_err(|e| FulfillmentError::InvalidOrder {
        order_id: order.order_id.clone(),
        problems: vec![format!("the order does not serialise: {e}")],
    })
}

impl CustomerAccounts for HttpSystem {
    async fn credit(&self, customer_id: &str) -> Result<CreditStanding, FulfillmentError> {
        let path = format!("/customers/{customer_id}/credit");
        let answer = self.call(Method::GET, &path, None, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(CreditStanding {
                limit_cents: 0,
                owed_cents: 0,
            });
        }
        self.parse(&path, answer)
    }
}

impl Inventory for HttpSystem {
    async fn reserve(&self, order: &Order) -> Result<Reservation, FulfillmentError> {
        let key = format!("{}:reserve-inventory", order.order_id);
        let answer = self
            .call(
                Method::POST,
                "/reservations",
                Some(key),
                Some(&order_json(order)?),
            )
            .await?;
        if answer.status == StatusCode::CONFLICT {
            let sku = answer
                .body
                .get("sku")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            return Err(FulfillmentError::OutOfStock {
                requested: order.quantities().get(&sku).copied().unwrap_or_default(),
                available: answer
                    .body
                    .get("available")
                    .and_then(Value::as_i64)
                    .unwrap_or_default(),
                sku,
            });
        }
        #[derive(serde::Deserialize)]
        struct Reserved {
            #[serde(default)]
            below_reorder_point: Vec<String>,
        }
        let reserved: Reserved = self.parse("/reservations", answer)?;
        Ok(Reservation {
            order_id: order.order_id.clone(),
            quantities: order.quantities(),
            below_reorder_point: reserved.below_reorder_point,
        })
    }

    async fn release(&self, order_id: &str) -> Result<(), FulfillmentError> {
        let path = format!("/reservations/{order_id}");
        let key = format!("{order_id}:release-inventory");
        let answer = self.call(Method::DELETE, &path, Some(key), None).await?;
        self.undone(&path, answer)
    }
}

impl Payments for HttpSystem {
    async fn capture(&self, order: &Order) -> Result<Payment, FulfillmentError> {
        let key = format!("{}:take-payment", order.order_id);
        let answer = self
            .call(
                Method::POST,
                "/payments",
                Some(key),
                Some(&order_json(order)?),
            )
            .await?;
        if answer.status == StatusCode::PAYMENT_REQUIRED {
            return Err(FulfillmentError::PaymentDeclined {
                order_id: order.order_id.clone(),
                reason: reason(&answer.body),
            });
        }
        self.parse("/payments", answer)
    }

    async fn refund(&self, order_id: &str) -> Result<(), FulfillmentError> {
        let path = format!("/payments/{order_id}/refund");
        let key = format!("{order_id}:refund-payment");
        let answer = self.call(Method::POST, &path, Some(key), None).await?;
        self.undone(&path, answer)
    }
}

impl Shipping for HttpSystem {
    async fn create(&self, order: &Order) -> Result<Shipment, FulfillmentError> {
        let key = format!("{}:create-shipment", order.order_id);
        let answer = self
            .call(
                Method::POST,
                "/shipments",
                Some(key),
                Some(&order_json(order)?),
            )
            .await?;
        if answer.status == StatusCode::UNPROCESSABLE_ENTITY {
            return Err(FulfillmentError::ShipmentRejected {
                order_id: order.order_id.clone(),
                reason: reason(&answer.body),
            });
        }
        self.parse("/shipments", answer)
    }

    async fn cancel(&self, order_id: &str) -> Result<(), FulfillmentError> {
        let path = format!("/shipments/{order_id}/cancel");
        let key = format!("{order_id}:cancel-shipment");
        let answer = self.call(Method::POST, &path, Some(key), None).await?;
        self.undone(&path, answer)
    }
}

impl Invoicing for HttpSystem {
    async fn post(&self, order: &Order) -> Result<Invoice, FulfillmentError> {
        let key = format!("{}:post-invoice", order.order_id);
        let answer = self
            .call(
                Method::POST,
                "/invoices",
                Some(key),
                Some(&order_json(order)?),
            )
            .await?;
        self.parse("/invoices", answer)
    }
}

impl CustomerNotifications for HttpSystem {
    async fn order_fulfilled(&self, notice: &FulfilledNotice) -> Result<(), FulfillmentError> {
        let key = format!("{}:notify-fulfilled", notice.order_id);
        let email = serde_json::json!({
            "to": notice.customer.email,
            "name": notice.customer.name,
            "template": "order-fulfilled",
            "subject": format!("Your order {} is on its way", notice.order_id),
            "text": format!(
                "Your order {} has shipped. Track it with {}.",
                notice.order_id, notice.tracking_number
            ),
            "order_id": notice.order_id,
            "tracking_number": notice.tracking_number,
        });
        let answer = self
            .call(Method::POST, "/emails", Some(key), Some(&email))
            .await?;
        if answer.status.is_success() {
            return Ok(());
        }
        Err(FulfillmentError::NotificationRejected {
            order_id: notice.order_id.clone(),
            reason: format!(
                "POST /emails answered {}: {}",
                answer.status,
                reason(&answer.body)
            ),
        })
    }
}
