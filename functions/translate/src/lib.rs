//! The hub's translator: each source system's dialect in, busline's [canonical](busline::canonical)
//! events out. An EventBridge rule delivers every dialect event here, and the
//! [transform runtime](busline::transform) publishes the translation or dead-letters the event.
//!
//! | In | Out |
//! |---|---|
//! | `io.busline.shop.order.placed.v1` (web shop) | `io.busline.order.placed.v2`, channel `web-shop` |
//! | `io.busline.marketplace.order.placed.v1` (marketplace, `Unshipped` orders) | `io.busline.order.placed.v2`, channel `marketplace`, order id `mkt-<orderNumber>` |
//! | `io.busline.crm.customer.updated.v1` (CRM) | `io.busline.customer.updated.v1`, source `crm` |
//! | `io.busline.helpdesk.user.updated.v1` (help desk) | `io.busline.customer.updated.v1`, source `helpdesk` |
//!
//! The dialects' schemas are in `infra/schemas/webhooks/`, the canonical ones in
//! `infra/schemas/canonical/`. Each mapping is typed code: the dialect is read into its own structs,
//! mapped field by field, and the canonical result is checked (`validate`) before it is returned, so
//! an event is translated whole or not at all. Every mapping has its reverse (`to_shop`,
//! `to_marketplace`, `to_crm`), for delivering canonical events back to those systems and for the
//! round-trip tests.

pub mod customers;
pub mod orders;

use busline::batch::DeadLetterQueue;
use busline::bus::EventPublisher;
use busline::canonical::customer::CustomerUpdated;
use busline::canonical::order::OrderPlaced;
use busline::canonical::{self, CanonicalError, read};
use busline::transform::{DeliveredEvent, Outcome, transform};
use busline::{Envelope, EventType};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::value::RawValue;

/// The `source` of the events the translator publishes.
pub const SOURCE: &str = "busline.translate";

/// A web-shop order.
pub const SHOP_ORDER_PLACED: &str = "io.busline.shop.order.placed.v1";
/// A marketplace order notification.
pub const MARKETPLACE_ORDER_PLACED: &str = "io.busline.marketplace.order.placed.v1";
/// A CRM customer change.
pub const CRM_CUSTOMER_UPDATED: &str = "io.busline.crm.customer.updated.v1";
/// A help-desk user change.
pub const HELPDESK_USER_UPDATED: &str = "io.busline.helpdesk.user.updated.v1";

/// Every dialect the translator reads.
pub const DIALECTS: &[&str] = &[
    SHOP_ORDER_PLACED,
    MARKETPLACE_ORDER_PLACED,
    CRM_CUSTOMER_UPDATED,
    HELPDESK_USER_UPDATED,
];

/// A translation: the canonical payload a dialect's event becomes, serialised as the payload alone.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Canonical {
    /// `io.busline.order.placed.v2`.
    Order(OrderPlaced),
    /// `io.busline.customer.updated.v1`.
    Customer(CustomerUpdated),
}

impl Canonical {
    /// Its event type.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Order(_) => canonical::ORDER_PLACED_V2,
            Self::Customer(_) => canonical::CUSTOMER_UPDATED_V1,
        }
    }

    /// What it is about: the order or the customer.
    pub fn subject(&self) -> &str {
        match self {
            Self::Order(o) => &o.order_id,
            Self::Customer(c) => &c.customer_id,
        }
    }
}

/// Translates the payload of one dialect event. `Ok(None)` is an event that means nothing yet
/// (a marketplace order not ready to ship).
pub fn translate_data(
    event_type: &str,
    data: &RawValue,
) -> Result<Option<Canonical>, CanonicalError> {
    let translated = match event_type {
        SHOP_ORDER_PLACED => Some(Canonical::Order(orders::from_shop(read(event_type, data)?))),
        MARKETPLACE_ORDER_PLACED => {
            orders::from_marketplace(read(event_type, data)?)?.map(Canonical::Order)
        }
        CRM_CUSTOMER_UPDATED => Some(Canonical::Customer(customers::from_crm(read(
            event_type, data,
        )?))),
        HELPDESK_USER_UPDATED => Some(Canonical::Customer(customers::from_helpdesk(read(
            event_type, data,
        )?)?)),
        other => {
            return Err(CanonicalError::UnexpectedType {
                found: other.to_owned(),
                expected: DIALECTS.to_vec(),
            });
        }
    };
    match &translated {
        Some(Canonical::Order(order)) => order.validate()?,
        Some(Canonical::Customer(customer)) => customer.validate()?,
        None => {}
    }
    Ok(translated)
}

/// One delivered event through the transform runtime with [`translate`], publishing to `bus` and
/// dead-lettering to `dead_letters`: the function's whole handler, as `main.rs` serves it, for the
/// benchmark, the profiling example and the tests that drive it with their own bus and queue.
pub async fn handle<P: EventPublisher, D: DeadLetterQueue>(
    event: DeliveredEvent,
    bus: &P,
    dead_letters: &D,
) -> Result<Outcome, Diagnostic> {
    transform(event, |e| async move { translate(&e) }, bus, dead_letters).await
}

/// Translates one dialect envelope into the canonical envelope it becomes (none, or one), derived
/// from it: same correlation id and trace, the input as its cause, an id that is the same every time
/// the same event is translated.
pub fn translate(
    envelope: &Envelope<Box<RawValue>>,
) -> Result<Vec<Envelope<Canonical>>, CanonicalError> {
    let Some(translated) = translate_data(envelope.event_type.as_str(), &envelope.data)? else {
        tracing::info!(event_id = %envelope.id, event_type = %envelope.event_type, "nothing to translate yet: a marketplace order that is not ready to ship");
        return Ok(Vec::new());
    };
    #[expect(
        clippy::expect_used,
        reason = "a canonical type: `canonical`'s tests check that each parses and has a schema"
    )]
    let event_type =
        EventType::parse(translated.event_type()).expect("canonical types are versioned");
    let subject = translated.subject().to_owned();
    #[expect(
        clippy::expect_used,
        reason = "a canonical type: `canonical`'s tests check that each parses and has a schema"
    )]
    let schema_id =
        canonical::schema_id(translated.event_type()).expect("canonical types have schemas");
    Ok(vec![
        envelope
            .derive("translate", SOURCE, event_type, translated)
            .with_subject(subject)
            .with_dataschema(schema_id),
    ])
}

#[cfg(test)]
mod tests;
