//! The system a saga step talks to, chosen per deployment (feature `http`): an external system over
//! HTTP when its URL variable is set (`PAYMENTS_API_URL`, …), otherwise the reference
//! implementation on DynamoDB (`FULFILLMENT_TABLE`).

use std::time::Duration;

use super::dynamodb::DynamoDbFulfillment;
use super::http::HttpSystem;
use crate::{
    CreditStanding, CustomerAccounts, FulfillmentError, Inventory, Invoice, Invoicing, Order,
    Payment, Payments, Reservation, Shipment, Shipping,
};
use busline::config::{ConfigError, Env};

/// Each HTTP request's timeout. With the default backoff (4 attempts, at most 2 s apart) a step
/// gives up well inside the functions' 10 s timeout, and the state machine retries it.
pub const HTTP_TIMEOUT: Duration = Duration::from_millis(1500);

/// A fulfillment system: the reference implementation, or an external one.
#[derive(Clone, Debug)]
pub enum System {
    /// The reference implementation on DynamoDB.
    Reference(DynamoDbFulfillment),
    /// An external system over HTTP.
    External(HttpSystem),
}

/// Which variable names each system's URL, and the error type of its outages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `CUSTOMER_ACCOUNTS_API_URL`.
    CustomerAccounts,
    /// `INVENTORY_API_URL`.
    Inventory,
    /// `PAYMENTS_API_URL`.
    Payments,
    /// `SHIPPING_API_URL`.
    Shipping,
    /// `INVOICING_API_URL`.
    Invoicing,
}

impl Kind {
    /// The variable that names the external system's base URL.
    pub fn url_variable(self) -> &'static str {
        match self {
            Self::CustomerAccounts => "CUSTOMER_ACCOUNTS_API_URL",
            Self::Inventory => "INVENTORY_API_URL",
            Self::Payments => "PAYMENTS_API_URL",
            Self::Shipping => "SHIPPING_API_URL",
            Self::Invoicing => "INVOICING_API_URL",
        }
    }

    fn unavailable(self) -> &'static str {
        match self {
            Self::CustomerAccounts => "CustomerAccountsUnavailable",
            Self::Inventory => "InventoryUnavailable",
            Self::Payments => "PaymentsUnavailable",
            Self::Shipping => "ShippingUnavailable",
            Self::Invoicing => "InvoicingUnavailable",
        }
    }
}

impl System {
    /// The external system at the URL in `kind`'s variable if it is set and not empty, otherwise
    /// the reference implementation on `FULFILLMENT_TABLE`.
    pub fn from_env(
        kind: Kind,
        env: &impl Env,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        match env
            .get(kind.url_variable())
            .filter(|url| !url.trim().is_empty())
        {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                tracing::info!(url, "using the external system");
                Ok(Self::External(HttpSystem::new(
                    url,
                    kind.unavailable(),
                    HTTP_TIMEOUT,
                )?))
            }
            Some(url) => Err(ConfigError::Invalid {
                name: kind.url_variable(),
                value: url,
                expected: "an http:// or https:// base URL, or nothing for the reference implementation",
            }
            .into()),
            None => Ok(Self::Reference(DynamoDbFulfillment::from_env(env, aws)?)),
        }
    }
}

impl CustomerAccounts for System {
    async fn credit(&self, customer_id: &str) -> Result<CreditStanding, FulfillmentError> {
        match self {
            Self::Reference(s) => s.credit(customer_id).await,
            Self::External(s) => s.credit(customer_id).await,
        }
    }
}

impl Inventory for System {
    async fn reserve(&self, order: &Order) -> Result<Reservation, FulfillmentError> {
        match self {
            Self::Reference(s) => s.reserve(order).await,
            Self::External(s) => s.reserve(order).await,
        }
    }

    async fn release(&self, order_id: &str) -> Result<(), FulfillmentError> {
        match self {
            Self::Reference(s) => s.release(order_id).await,
            Self::External(s) => s.release(order_id).await,
        }
    }
}

impl Payments for System {
    async fn capture(&self, order: &Order) -> Result<Payment, FulfillmentError> {
        match self {
            Self::Reference(s) => s.capture(order).await,
            Self::External(s) => s.capture(order).await,
        }
    }

    async fn refund(&self, order_id: &str) -> Result<(), FulfillmentError> {
        match self {
            Self::Reference(s) => s.refund(order_id).await,
            Self::External(s) => s.refund(order_id).await,
        }
    }
}

impl Shipping for System {
    async fn create(&self, order: &Order) -> Result<Shipment, FulfillmentError> {
        match self {
            Self::Reference(s) => s.create(order).await,
            Self::External(s) => s.create(order).await,
        }
    }

    async fn cancel(&self, order_id: &str) -> Result<(), FulfillmentError> {
        match self {
            Self::Reference(s) => s.cancel(order_id).await,
            Self::External(s) => s.cancel(order_id).await,
        }
    }
}

impl Invoicing for System {
    async fn post(&self, order: &Order) -> Result<Invoice, FulfillmentError> {
        match self {
            Self::Reference(s) => s.post(order).await,
            Self::External(s) => s.post(order).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn aws() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    #[tokio::test]
    async fn a_url_chooses_the_external_system_and_nothing_the_reference_one() {
        let aws = aws().await;
        let external = System::from_env(
            Kind::Payments,
            &[("PAYMENTS_API_URL", "https://payments.example")],
            &aws,
        )
        .unwrap();
        assert!(matches!(external, System::External(_)));
        let reference = System::from_env(
            Kind::Payments,
            &[("PAYMENTS_API_URL", " "), ("FULFILLMENT_TABLE", "t")],
            &aws,
        )
        .unwrap();
        assert!(matches!(reference, System::Reference(_)));
        let neither = System::from_env(Kind::Payments, &[("X", "y")], &aws).unwrap_err();
        assert!(
            neither.to_string().contains("FULFILLMENT_TABLE"),
            "{neither}"
        );
        let bad = System::from_env(Kind::Shipping, &[("SHIPPING_API_URL", "carrier:80")], &aws)
            .unwrap_err();
        assert!(bad.to_string().contains("SHIPPING_API_URL"), "{bad}");
    }
}
