//! busline's canonical model: the hub's one language, which every source dialect is translated into
//! (`functions/translate`) and every consumer reads.
//!
//! Each canonical event type has a versioned JSON Schema under `infra/schemas/canonical/`, named
//! after the type (`order.placed.v2.json` for `io.busline.order.placed.v2`). A published version
//! only changes in ways its consumers accept ([`crate::schema::compat`], checked against every
//! committed revision by the test suite); anything else is a new version, and consumers that need the
//! new version upcast the old one ([`order::read_order`]).
//!
//! The types here are the producers' side and are strict: a translator builds one, checks it with
//! its `validate`, and only then publishes, so nothing half-translated reaches the bus. Consumers may
//! read a tolerant view of their own (the saga's `busline_fulfillment::Order` reads only what it
//! needs from [`order::OrderPlaced`]).

pub mod customer;
pub mod order;
pub mod party;

pub use party::{Address, CURRENCIES, Customer};

use crate::schema::{Schema, SchemaError};

/// `io.busline.order.placed.v1`: the first canonical order ([`order::OrderPlacedV1`]).
pub const ORDER_PLACED_V1: &str = "io.busline.order.placed.v1";
/// `io.busline.order.placed.v2`: the current canonical order ([`order::OrderPlaced`]).
pub const ORDER_PLACED_V2: &str = "io.busline.order.placed.v2";
/// `io.busline.order.enriched.v1`: an order with what the customer master knows of its customer.
pub const ORDER_ENRICHED_V1: &str = "io.busline.order.enriched.v1";
/// `io.busline.customer.updated.v1`: a change to a customer in one source system.
pub const CUSTOMER_UPDATED_V1: &str = "io.busline.customer.updated.v1";
/// `io.busline.fulfillment.requested.v1`: the part of an order one warehouse ships.
pub const FULFILLMENT_REQUESTED_V1: &str = "io.busline.fulfillment.requested.v1";

/// Every canonical schema: the event type, the schema's `$id` (which envelopes carry as
/// `dataschema`; a test checks it against the file) and the schema itself.
pub const SCHEMAS: &[(&str, &str, &str)] = &[
    (
        ORDER_PLACED_V1,
        "urn:busline:schema:order:placed:v1",
        include_str!("../../../infra/schemas/canonical/order.placed.v1.json"),
    ),
    (
        ORDER_PLACED_V2,
        "urn:busline:schema:order:placed:v2",
        include_str!("../../../infra/schemas/canonical/order.placed.v2.json"),
    ),
    (
        ORDER_ENRICHED_V1,
        "urn:busline:schema:order:enriched:v1",
        include_str!("../../../infra/schemas/canonical/order.enriched.v1.json"),
    ),
    (
        CUSTOMER_UPDATED_V1,
        "urn:busline:schema:customer:updated:v1",
        include_str!("../../../infra/schemas/canonical/customer.updated.v1.json"),
    ),
    (
        FULFILLMENT_REQUESTED_V1,
        "urn:busline:schema:fulfillment:requested:v1",
        include_str!("../../../infra/schemas/canonical/fulfillment.requested.v1.json"),
    ),
];

/// The compiled schema of a canonical event type; `$ref`s between canonical schemas (the enriched
/// order's `order` is a v2 order) resolve to the others, offline.
pub fn schema(event_type: &str) -> Result<Schema, SchemaError> {
    let (name, _, text) = SCHEMAS
        .iter()
        .find(|(name, _, _)| *name == event_type)
        .ok_or_else(|| SchemaError {
            name: event_type.to_owned(),
            reason: "no canonical schema has this event type".to_owned(),
        })?;
    let references: Vec<&str> = SCHEMAS.iter().map(|(_, _, text)| *text).collect();
    Schema::compile_with_references(name, text, &references)
}

/// The schema's `$id` for a canonical event type, which envelopes carry as `dataschema`.
pub fn schema_id(event_type: &str) -> Option<&'static str> {
    SCHEMAS
        .iter()
        .find(|(name, _, _)| *name == event_type)
        .map(|(_, id, _)| *id)
}

/// Why a payload is not a canonical event: always permanent, since the same bytes never translate.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// The payload does not have the shape of the type it claims (missing field, wrong type).
    #[error("the {event_type} payload is malformed at {at}: {cause}")]
    Malformed {
        /// The type it claims.
        event_type: String,
        /// Where, as a path (`lines[0].quantity`; `.` for the payload itself).
        at: String,
        /// What serde found.
        cause: serde_json::Error,
    },
    /// The payload has the shape but breaks the type's rules; every problem is listed.
    #[error("the {event_type} payload is invalid: {}", problems.join("; "))]
    Invalid {
        /// The event type whose rules are broken; a v1 order is checked as the v2 it upcasts to.
        event_type: String,
        /// Every problem found.
        problems: Vec<String>,
    },
    /// The event is of a type this reader does not take.
    #[error("{found} is not one of {}", expected.join(", "))]
    UnexpectedType {
        /// The envelope's event type, such as `io.busline.customer.updated.v1`.
        found: String,
        /// What the reader takes.
        expected: Vec<&'static str>,
    },
}

impl crate::Classify for CanonicalError {
    fn class(&self) -> crate::ErrorClass {
        crate::ErrorClass::Permanent
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "MalformedEvent",
            Self::Invalid { .. } => "InvalidEvent",
            Self::UnexpectedType { .. } => "UnexpectedEvent",
        }
    }
}

/// Reads a payload, still JSON text, as `T`; the error says where in the payload reading stopped,
/// and why.
pub fn read<T: serde::de::DeserializeOwned>(
    event_type: &str,
    data: &serde_json::value::RawValue,
) -> Result<T, CanonicalError> {
    // The fast way first; only a payload that fails is read again, to say where it failed (tracking
    // the path costs a translation a third of its time).
    let text = data.get();
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| CanonicalError::Malformed {
        event_type: event_type.to_owned(),
        at: e.path().to_string(),
        cause: e.into_inner(),
    })
}

/// Collects rule violations for a `validate`.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<String>);

impl Problems {
    pub(crate) fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    pub(crate) fn non_empty(&mut self, what: &str, value: &str) {
        self.check(!value.trim().is_empty(), || format!("{what} is empty"));
    }

    pub(crate) fn finish(self, event_type: &str) -> Result<(), CanonicalError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CanonicalError::Invalid {
                event_type: event_type.to_owned(),
                problems: self.0,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_canonical_schema_compiles_is_named_after_its_type_and_has_an_id() {
        for (event_type, _, _) in SCHEMAS {
            crate::envelope::EventType::parse(*event_type).unwrap();
            let schema = schema(event_type).unwrap();
            let id = schema.id().unwrap();
            let version = event_type.rsplit('.').next().unwrap();
            assert!(id.ends_with(&format!(":{version}")), "{event_type}: {id}");
            assert_eq!(schema_id(event_type), Some(id));
        }
        assert!(schema("io.busline.nothing.v1").is_err());
    }
}
