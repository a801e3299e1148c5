//! Content enricher: an EventBridge rule delivers each canonical `order.placed` (v1 is upcast to
//! v2) here; the enricher adds what the customer master knows of the customer, its tier and credit
//! limit, and publishes `io.busline.order.enriched.v1`, which starts the saga.
//!
//! **A customer the master does not know** is a defined outcome, not a failure: the order is
//! enriched with `status: unknown`, `tier: unknown` and no credit limit, and goes on. Refusing it
//! would fail a first-time buyer's order because the master has not caught up yet; the saga's own
//! credit check still decides whether the order can be paid. Operators see such orders in the logs
//! (`customer unknown to the master`) and by the event's `customer.status`.
//!
//! Lookups are cached per warm environment ([`master::CachedMaster`], `CUSTOMER_CACHE_TTL_SECONDS`,
//! 60 by default). A master that cannot be read fails the invocation, for Lambda to retry; an event
//! that is not a valid order goes to the dead-letter queue with its reason.

pub mod master;

use busline::canonical::order::{CustomerProfile, CustomerStatus, OrderEnriched, read_order};
use busline::canonical::{self, CanonicalError};
use busline::transform::Raw;
use busline::{Classify, Envelope, ErrorClass, EventType};
use chrono::{SubsecRound, Utc};

use crate::master::{CustomerMaster, MasterUnavailable};

/// The `source` of the events the enricher publishes.
pub const SOURCE: &str = "busline.enrich";

/// The tiers an enriched order may carry; anything else in the master reads as `unknown`.
pub const TIERS: &[&str] = &["standard", "silver", "gold"];

/// Why an order was not enriched.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// Not a valid canonical order: permanent.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// The master could not be read: retryable.
    #[error(transparent)]
    Master(#[from] MasterUnavailable),
}

impl Classify for EnrichError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Canonical(e) => e.class(),
            Self::Master(e) => e.class(),
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Canonical(e) => e.error_type(),
            Self::Master(e) => e.error_type(),
        }
    }
}

/// Enriches one canonical order envelope.
pub async fn enrich(
    envelope: &Envelope<Raw>,
    master: &impl CustomerMaster,
) -> Result<Vec<Envelope<OrderEnriched>>, EnrichError> {
    let order = read_order(envelope)?;
    let customer_id = &order.data.customer.id;
    let looked_up_at = Utc::now().trunc_subsecs(3);
    let customer = match master.profile(customer_id).await? {
        Some(profile) => CustomerProfile {
            status: CustomerStatus::Known,
            tier: profile
                .tier
                .filter(|t| TIERS.contains(&t.as_str()))
                .unwrap_or_else(|| "unknown".to_owned()),
            credit_limit: profile
                .credit_limit
                .filter(|n| n.as_f64().is_some_and(|n| n >= 0.0)),
            looked_up_at,
        },
        None => {
            tracing::info!(order_id = %order.data.order_id, customer_id, "customer unknown to the master; enriched as unknown");
            CustomerProfile {
                status: CustomerStatus::Unknown,
                tier: "unknown".to_owned(),
                credit_limit: None,
                looked_up_at,
            }
        }
    };
    #[expect(
        clippy::expect_used,
        reason = "a canonical type: `canonical`'s tests check that each parses and has a schema"
    )]
    let event_type =
        EventType::parse(canonical::ORDER_ENRICHED_V1).expect("canonical types are versioned");
    #[expect(
        clippy::expect_used,
        reason = "a canonical type: `canonical`'s tests check that each parses and has a schema"
    )]
    let schema_id =
        canonical::schema_id(canonical::ORDER_ENRICHED_V1).expect("canonical types have schemas");
    // Derived from the event as it came: `read_order` kept its id, source and correlation, so the
    // order itself moves into the enriched event instead of being copied.
    let enriched = OrderEnriched {
        order: order.data,
        customer,
    };
    Ok(vec![
        envelope
            .derive("enrich", SOURCE, event_type, enriched)
            .with_dataschema(schema_id),
    ])
}

#[cfg(test)]
mod tests;
