//! The canonical event envelope: CloudEvents 1.0 in its JSON format, plus busline's extensions.
//!
//! On the bus an envelope travels as an EventBridge entry: `Source` and `DetailType` repeat the
//! envelope's `source` and `type` so rules can route on them, `Time` repeats `time`, `TraceHeader`
//! carries the trace, and `Detail` holds the whole envelope. Because `Detail` is the envelope itself,
//! the trip envelope → entry → delivered event → envelope loses nothing, including the fields
//! EventBridge has no slot for (`id`, `subject`, the extensions).

use std::fmt;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use chrono::{DateTime, SubsecRound, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::telemetry::TraceContext;

/// The only CloudEvents version busline speaks.
pub const SPEC_VERSION: &str = "1.0";

/// EventBridge's limit for one `PutEvents` entry, in bytes, as it counts them.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// A CloudEvents 1.0 envelope around a typed payload.
///
/// Build one with [`Envelope::new`] and the `with_*` methods; read one from the bus with
/// [`Envelope::from_eventbridge`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: DeserializeOwned"))]
pub struct Envelope<T> {
    /// Unique with `source`: consumers deduplicate on the pair.
    pub id: String,
    /// Where the event happened, as a URI reference (for example `busline.webhook.shop`).
    pub source: String,
    /// Always [`SPEC_VERSION`].
    pub specversion: String,
    /// The versioned event type, for example `io.busline.shop.order.placed.v1`.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When the event happened, RFC 3339 on the wire.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::time::rfc3339_option"
    )]
    pub time: Option<DateTime<Utc>>,
    /// What the event is about within the source (an order id, a customer id): the ordering key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The schema `data` conforms to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    /// The media type of `data`; busline always writes `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// The id shared by every event of one business transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    /// The id of the event that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causationid: Option<String>,
    /// W3C trace context (`00-<trace id>-<span id>-<flags>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Where the payload is when it was too large to travel with the event (the CloudEvents
    /// `dataref` extension, `s3://<bucket>/<key>`): [`claim_check`](crate::claim_check) put it there
    /// and resolves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataref: Option<String>,
    /// The payload; while `dataref` is set, the claim-check receipt (its size and SHA-256) instead.
    pub data: T,
}

impl<T> Envelope<T> {
    /// A new envelope with the required attributes, `time` set to now, JSON content type, and a
    /// `traceparent`: the running hop's span (see [`telemetry`](crate::telemetry)), or a new trace
    /// outside one (a change data capture, a synced record: a business event starts there).
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        event_type: EventType,
        data: T,
    ) -> Self {
        let traceparent = crate::telemetry::current_traceparent().unwrap_or_else(new_traceparent);
        Self::traced(id.into(), source.into(), event_type, data, traceparent)
    }

    /// [`Envelope::new`] with the trace context already chosen.
    fn traced(
        id: String,
        source: String,
        event_type: EventType,
        data: T,
        traceparent: String,
    ) -> Self {
        Self {
            id,
            source,
            specversion: SPEC_VERSION.to_owned(),
            event_type,
            time: Some(Utc::now().trunc_subsecs(3)),
            subject: None,
            dataschema: None,
            datacontenttype: Some("application/json".to_owned()),
            correlationid: None,
            causationid: None,
            traceparent: Some(traceparent),
            dataref: None,
            data,
        }
    }

    /// The same envelope around `f(data)`.
    pub fn map_data<U>(self, f: impl FnOnce(T) -> U) -> Envelope<U> {
        Envelope {
            id: self.id,
            source: self.source,
            specversion: self.specversion,
            event_type: self.event_type,
            time: self.time,
            subject: self.subject,
            dataschema: self.dataschema,
            datacontenttype: self.datacontenttype,
            correlationid: self.correlationid,
            causationid: self.causationid,
            traceparent: self.traceparent,
            dataref: self.dataref,
            data: f(self.data),
        }
    }

    /// Sets `subject`.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets `dataschema`.
    pub fn with_dataschema(mut self, dataschema: impl Into<String>) -> Self {
        self.dataschema = Some(dataschema.into());
        self
    }

    /// Sets `correlationid`.
    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlationid = Some(correlation_id.into());
        self
    }

    /// Sets `causationid`.
    pub fn with_causation_id(mut self, causation_id: impl Into<String>) -> Self {
        self.causationid = Some(causation_id.into());
        self
    }

    /// Sets `traceparent`.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// The correlation id, or the event id when the event starts a transaction.
    pub fn correlation_id(&self) -> &str {
        self.correlationid.as_deref().unwrap_or(&self.id)
    }

    /// An event this one causes, in the same business transaction.
    ///
    /// Its id is derived from this event's source and id and `key` (which tells apart the events one
    /// event causes, such as the parts of a split), so a transformer that runs again on the same
    /// event makes the same ids and consumers deduplicate the copies. The correlation id and subject
    /// carry over, and this event is the cause. Inside a [`Hop`](crate::telemetry::Hop) the trace
    /// continues from the hop's span (the handler that caused it); outside one, this event's
    /// `traceparent` carries over.
    pub fn derive<U>(
        &self,
        key: &str,
        source: impl Into<String>,
        event_type: EventType,
        data: U,
    ) -> Envelope<U> {
        let name = format!("{}\n{}\n{key}", self.source, self.id);
        let id = uuid::Uuid::new_v5(&DERIVED_ID_NAMESPACE, name.as_bytes());
        // The trace context is chosen once: the running hop's span, else this event's, else new.
        let traceparent = crate::telemetry::current_traceparent()
            .or_else(|| self.traceparent.clone())
            .unwrap_or_else(new_traceparent);
        let mut derived =
            Envelope::traced(id.to_string(), source.into(), event_type, data, traceparent)
                .with_correlation_id(self.correlation_id())
                .with_causation_id(&self.id);
        derived.subject.clone_from(&self.subject);
        derived
    }
}

/// The namespace of ids made by [`Envelope::derive`].
const DERIVED_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x0c5e_7a43_91d2_4f0b_8e6a_d3b1_7f20_0001);

impl<T: Serialize> Envelope<T> {
    /// The EventBridge entry for this envelope on `bus`.
    ///
    /// Fails with [`EnvelopeError::TooLarge`] when EventBridge would reject the entry for its size,
    /// so callers can answer "too large" instead of retrying a request that can never succeed.
    pub fn to_eventbridge_entry(&self, bus: &str) -> Result<PutEventsRequestEntry, EnvelopeError> {
        let detail = serde_json::to_string(self).map_err(EnvelopeError::Encode)?;
        let size = entry_size(
            &self.source,
            self.event_type.as_str(),
            &detail,
            self.time.is_some(),
        );
        if size > MAX_ENTRY_BYTES {
            return Err(EnvelopeError::TooLarge {
                size,
                limit: MAX_ENTRY_BYTES,
            });
        }
        Ok(PutEventsRequestEntry::builder()
            .event_bus_name(bus)
            .source(&self.source)
            .detail_type(self.event_type.as_str())
            .detail(detail)
            .set_time(
                self.time
                    .map(|t| aws_smithy_types::DateTime::from_millis(t.timestamp_millis())),
            )
            .set_trace_header(self.traceparent.as_deref().and_then(xray_trace_header))
            .build())
    }
}

impl<T: DeserializeOwned> Envelope<T> {
    /// Reads the envelope back out of an event delivered by EventBridge.
    ///
    /// The event's `source` and `detail-type` must agree with the envelope inside it: a mismatch
    /// means somebody put a hand-made event on the bus, and it is refused rather than guessed at.
    pub fn from_eventbridge(
        event: EventBridgeEvent<serde_json::Value>,
    ) -> Result<Self, EnvelopeError> {
        let envelope: Self = serde_json::from_value(event.detail).map_err(EnvelopeError::Decode)?;
        envelope.verify(&event.source, &event.detail_type)?;
        Ok(envelope)
    }
}

impl<T> Envelope<T> {
    /// Whether this is the envelope EventBridge says it delivered.
    fn verify(&self, event_source: &str, detail_type: &str) -> Result<(), EnvelopeError> {
        if self.specversion != SPEC_VERSION {
            return Err(EnvelopeError::SpecVersion(self.specversion.clone()));
        }
        if self.source != event_source || self.event_type.as_str() != detail_type {
            return Err(EnvelopeError::Mismatch {
                event_source: event_source.to_owned(),
                detail_type: detail_type.to_owned(),
            });
        }
        Ok(())
    }
}

impl Envelope<Box<serde_json::value::RawValue>> {
    /// [`Envelope::from_eventbridge`] for an event whose detail is still JSON text (as a transformer
    /// receives it): the envelope's attributes are read, and `data` stays text, for the consumer to
    /// read straight into its own types without building a `serde_json::Value` tree first.
    pub fn from_eventbridge_raw(
        event: &EventBridgeEvent<Box<serde_json::value::RawValue>>,
    ) -> Result<Self, EnvelopeError> {
        let envelope: Self =
            serde_json::from_str(event.detail.get()).map_err(EnvelopeError::Decode)?;
        envelope.verify(&event.source, &event.detail_type)?;
        Ok(envelope)
    }
}

/// The size EventBridge charges an entry against [`MAX_ENTRY_BYTES`]: `Time` counts 14 bytes, and
/// `Source`, `DetailType` and `Detail` count their UTF-8 length.
pub fn entry_size(source: &str, detail_type: &str, detail: &str, has_time: bool) -> usize {
    let time = if has_time { 14 } else { 0 };
    time + source.len() + detail_type.len() + detail.len()
}

/// The X-Ray form (`Root=1-…;Parent=…;Sampled=…`) of a W3C `traceparent`, for `PutEvents`'
/// `TraceHeader`. `None` when the traceparent is malformed.
pub fn xray_trace_header(traceparent: &str) -> Option<String> {
    TraceContext::parse(traceparent).map(|t| t.xray_header())
}

/// A fresh W3C `traceparent` for an event that arrives without one.
pub fn new_traceparent() -> String {
    TraceContext::root().traceparent()
}

/// A versioned event type: a dotted name ending in `.v<N>`, for example
/// `io.busline.order.placed.v1`. The version is part of the name so that rules can route each
/// version on its own and consumers can upcast.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventType {
    name: String,
    version: u32,
}

impl EventType {
    /// Parses a versioned type name.
    pub fn parse(name: impl Into<String>) -> Result<Self, EnvelopeError> {
        let name = name.into();
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
        let version = name.rsplit_once(".v").and_then(|(stem, digits)| {
            let stem_ok = !stem.is_empty()
                && !stem.starts_with('.')
                && !stem.ends_with('.')
                && !stem.contains("..");
            let digits_ok = !digits.is_empty()
                && !digits.starts_with('0')
                && digits.bytes().all(|b| b.is_ascii_digit());
            (stem_ok && digits_ok && name.bytes().all(allowed))
                .then(|| digits.parse().ok())
                .flatten()
        });
        let Some(version) = version else {
            return Err(EnvelopeError::EventType(name));
        };
        Ok(Self { name, version })
    }

    /// The full name, version included.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The schema version the name carries.
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl TryFrom<String> for EventType {
    type Error = EnvelopeError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(name)
    }
}

impl From<EventType> for String {
    fn from(event_type: EventType) -> Self {
        event_type.name
    }
}

/// Why an envelope could not be built, sent or read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The type name does not end in a schema version.
    #[error(
        "event type {0:?} must be a dotted name ending in a schema version, such as `io.busline.order.placed.v1`"
    )]
    EventType(String),
    /// The envelope names a CloudEvents version other than 1.0.
    #[error("specversion {0:?} is not supported; busline speaks CloudEvents {SPEC_VERSION}")]
    SpecVersion(String),
    /// The entry would exceed EventBridge's size limit.
    #[error(
        "the event is {size} bytes on the bus, over EventBridge's {limit}-byte limit per entry"
    )]
    TooLarge {
        /// The entry's size as EventBridge counts it.
        size: usize,
        /// EventBridge's limit per entry, in bytes: [`MAX_ENTRY_BYTES`].
        limit: usize,
    },
    /// The delivered event's routing fields disagree with its envelope.
    #[error(
        "event source {event_source:?} / detail-type {detail_type:?} disagree with the envelope in its detail"
    )]
    Mismatch {
        /// The event's `source`.
        event_source: String,
        /// The event's `detail-type`.
        detail_type: String,
    },
    /// The envelope could not be serialised.
    #[error("could not encode the envelope as JSON")]
    Encode(#[source] serde_json::Error),
    /// The detail is not an envelope of the expected payload type.
    #[error("the event detail is not a busline envelope of the expected type: {0}")]
    Decode(#[source] serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OrderPlaced {
        order_id: String,
        total_cents: u64,
    }

    fn delivered(bytes: &[u8]) -> EventBridgeEvent<Value> {
        serde_json::from_slice(bytes).expect("fixture is a valid EventBridge event")
    }

    #[test]
    fn reads_a_typed_envelope_from_a_delivered_eventbridge_event() {
        let event = delivered(include_bytes!(
            "../../tests/fixtures/eventbridge-order-placed.json"
        ));
        let envelope: Envelope<OrderPlaced> = Envelope::from_eventbridge(event).unwrap();

        assert_eq!(envelope.id, "6f0c6f8e-4a4b-5b7e-9d1c-2f1e0b7d9a10");
        assert_eq!(
            envelope.event_type.as_str(),
            "io.busline.shop.order.placed.v1"
        );
        assert_eq!(envelope.event_type.version(), 1);
        assert_eq!(envelope.subject.as_deref(), Some("SO-1001"));
        assert_eq!(envelope.correlationid.as_deref(), Some("corr-7f3a"));
        assert_eq!(
            envelope.data,
            OrderPlaced {
                order_id: "SO-1001".into(),
                total_cents: 4598
            }
        );
    }

    #[test]
    fn the_trip_through_eventbridge_is_lossless() {
        let fixture = delivered(include_bytes!(
            "../../tests/fixtures/eventbridge-order-placed.json"
        ));
        let original: Envelope<Value> = Envelope::from_eventbridge(fixture.clone()).unwrap();

        let entry = original.to_eventbridge_entry("busline").unwrap();
        assert_eq!(entry.source(), Some(original.source.as_str()));
        assert_eq!(entry.detail_type(), Some(original.event_type.as_str()));
        assert_eq!(
            entry.time().map(|t| t.to_millis().unwrap()),
            original.time.map(|t| t.timestamp_millis())
        );
        assert_eq!(
            entry.trace_header(),
            Some("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1")
        );

        // What EventBridge delivers: its own envelope around our Detail, verbatim.
        let mut redelivered = serde_json::to_value(&fixture).unwrap();
        redelivered["detail"] = serde_json::from_str(entry.detail().unwrap()).unwrap();
        let back: Envelope<Value> =
            Envelope::from_eventbridge(serde_json::from_value(redelivered).unwrap()).unwrap();
        assert_eq!(back, original);
        assert_eq!(serde_json::to_value(&back).unwrap(), fixture.detail);
    }

    #[test]
    fn a_minimal_envelope_without_optional_attributes_round_trips() {
        let event = delivered(include_bytes!(
            "../../tests/fixtures/eventbridge-minimal-envelope.json"
        ));
        let envelope: Envelope<Value> = Envelope::from_eventbridge(event.clone()).unwrap();
        assert_eq!(envelope.time, None);
        let entry = envelope.to_eventbridge_entry("busline").unwrap();
        assert_eq!(entry.time(), None);
        assert_eq!(entry.trace_header(), None);
        assert_eq!(
            serde_json::from_str::<Value>(entry.detail().unwrap()).unwrap(),
            event.detail
        );
    }

    #[test]
    fn refuses_an_event_whose_routing_fields_disagree_with_its_envelope() {
        let mut event = delivered(include_bytes!(
            "../../tests/fixtures/eventbridge-order-placed.json"
        ));
        event.detail_type = "io.busline.shop.order.cancelled.v1".into();
        let err = Envelope::<Value>::from_eventbridge(event).unwrap_err();
        assert!(matches!(err, EnvelopeError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn refuses_a_detail_that_is_not_an_envelope() {
        let event = delivered(include_bytes!(
            "../../tests/fixtures/eventbridge-scheduled-event.json"
        ));
        let err = Envelope::<Value>::from_eventbridge(event).unwrap_err();
        assert!(matches!(err, EnvelopeError::Decode(_)), "{err}");
    }

    #[test]
    fn refuses_another_cloudevents_version() {
        let mut event = delivered(include_bytes!(
            "../../tests/fixtures/eventbridge-order-placed.json"
        ));
        event.detail["specversion"] = json!("0.3");
        assert!(matches!(
            Envelope::<Value>::from_eventbridge(event).unwrap_err(),
            EnvelopeError::SpecVersion(v) if v == "0.3"
        ));
    }

    #[test]
    fn event_types_must_carry_a_version() {
        assert_eq!(
            EventType::parse("io.busline.order.placed.v12")
                .unwrap()
                .version(),
            12
        );
        for bad in [
            "io.busline.order.placed",
            "io.busline.order.placed.v",
            "io.busline.order.placed.v0",
            ".v1",
            "a..v1",
            "order placed.v1",
            "x.v1.2",
        ] {
            assert!(EventType::parse(bad).is_err(), "{bad} should be refused");
        }
        let unversioned = json!({"id": "1", "source": "s", "specversion": "1.0", "type": "order.placed", "data": {}});
        assert!(serde_json::from_value::<Envelope<Value>>(unversioned).is_err());
    }

    #[test]
    fn an_entry_over_the_eventbridge_limit_is_refused_before_sending() {
        let big = "x".repeat(MAX_ENTRY_BYTES);
        let envelope = Envelope::new(
            "1",
            "busline.test",
            EventType::parse("io.busline.test.v1").unwrap(),
            big,
        );
        assert!(matches!(
            envelope.to_eventbridge_entry("busline").unwrap_err(),
            EnvelopeError::TooLarge {
                limit: MAX_ENTRY_BYTES,
                ..
            }
        ));
    }

    #[test]
    fn traceparent_maps_to_an_xray_header_or_nothing() {
        assert_eq!(
            xray_trace_header("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").as_deref(),
            Some("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=0")
        );
        assert_eq!(xray_trace_header("garbage"), None);
        assert_eq!(
            xray_trace_header("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
        assert!(xray_trace_header(&new_traceparent()).is_some());
    }

    proptest::proptest! {
        #[test]
        fn any_envelope_survives_the_trip(
            id in "[a-zA-Z0-9-]{1,40}",
            subject in proptest::option::of("\\PC{0,30}"),
            correlation in proptest::option::of("[a-z0-9-]{1,20}"),
            text in "\\PC{0,200}",
            millis in 0i64..4_000_000_000_000,
        ) {
            let mut envelope = Envelope::new(id, "busline.test", EventType::parse("io.busline.test.thing.v3").unwrap(), json!({"text": text}));
            envelope.time = DateTime::from_timestamp_millis(millis);
            envelope.subject = subject;
            envelope.correlationid = correlation;
            let entry = envelope.to_eventbridge_entry("bus").unwrap();
            let delivered = json!({
                "version": "0", "id": "x", "detail-type": entry.detail_type(), "source": entry.source(),
                "account": "000000000000", "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
                "detail": serde_json::from_str::<Value>(entry.detail().unwrap()).unwrap(),
            });
            let back: Envelope<Value> = Envelope::from_eventbridge(serde_json::from_value(delivered).unwrap()).unwrap();
            proptest::prop_assert_eq!(back, envelope);
        }
    }
}
