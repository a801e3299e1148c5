//! The canonical order, its versions, and the events derived from it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A payload as JSON text.
type Raw = Box<RawValue>;

use super::party::{Address, CURRENCIES, Customer};
use super::{CanonicalError, ORDER_PLACED_V1, ORDER_PLACED_V2, Problems, read};
use crate::Envelope;

/// The longest order id: a Step Functions execution is named after it (80 characters at most).
pub const MAX_ORDER_ID_LEN: usize = 80;

/// Whether `name` can name a Step Functions execution, by AWS's documented rule (`StartExecution`,
/// `name`): 1 to 80 characters, and none of white space, brackets `< > { } [ ]`, wildcards `? *`,
/// the special characters `" # % \ ^ | ~ ` $ & , ; : /`, or control characters (U+0000–U+001F,
/// U+007F–U+009F). The order saga is named after its order, so an order id that fails this is
/// refused where the order enters, with the reason, instead of failing `StartExecution` after the
/// sender was told 202. LocalStack accepts any name, so this rule is tested here, not there.
pub fn is_execution_name(name: &str) -> bool {
    let forbidden =
        |c: char| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c);
    (1..=MAX_ORDER_ID_LEN).contains(&name.chars().count()) && !name.chars().any(forbidden)
}

/// Where an order was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// busline's own web shop.
    WebShop,
    /// A third-party marketplace.
    Marketplace,
    /// Not recorded: an order upcast from v1, which had no channel.
    Unknown,
}

/// A canonical order, v2 (`infra/schemas/canonical/order.placed.v2.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// busline's order id, unique across channels (the saga's key).
    pub order_id: String,
    /// Where it was placed.
    pub channel: Channel,
    /// The order's id in the system it was placed in, when that differs from `order_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// When it was placed, RFC 3339 on the wire.
    #[serde(with = "crate::time::rfc3339")]
    pub placed_at: DateTime<Utc>,
    /// Who ordered, as the channel sent it; `enrich` adds what the customer master knows.
    pub customer: Customer,
    /// ISO 4217 code.
    pub currency: String,
    /// What was ordered, numbered from 1.
    pub lines: Vec<Line>,
    /// The total, in cents.
    pub total_cents: i64,
    /// Where it goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
}

/// One line of a v2 order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The line's number, from 1, unique in the order.
    pub line_no: u32,
    /// The stock keeping unit.
    pub sku: String,
    /// How many, at least 1.
    pub quantity: i64,
    /// Price per unit, in cents.
    pub unit_price_cents: i64,
    /// The warehouse that ships it, when the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<String>,
}

/// A canonical order, v1 (`infra/schemas/canonical/order.placed.v1.json`): no channel, no line
/// numbers. Still read, from archives, replays and producers not yet moved to v2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlacedV1 {
    /// The order id, 1 to 80 characters: the saga's execution is named after it.
    pub order_id: String,
    /// When it was placed, RFC 3339 on the wire.
    #[serde(with = "crate::time::rfc3339")]
    pub placed_at: DateTime<Utc>,
    /// Who ordered, as the channel sent it; `enrich` adds what the customer master knows.
    pub customer: Customer,
    /// ISO 4217 code.
    pub currency: String,
    /// What was ordered, at least one line; upcasting numbers the lines in this order.
    pub lines: Vec<LineV1>,
    /// The total, in cents.
    pub total_cents: i64,
    /// Where it goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
}

/// One line of a v1 order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineV1 {
    /// The stock keeping unit.
    pub sku: String,
    /// How many units, at least 1.
    pub quantity: i64,
    /// Price per unit, in cents.
    pub unit_price_cents: i64,
    /// The warehouse that ships it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<String>,
}

/// Upcasts a v1 order to v2: the channel is `unknown` (v1 did not say), the lines are numbered in
/// the order they come. Nothing else changes, so v2 → v1 → v2 keeps every v1 field.
pub fn upcast(order: OrderPlacedV1) -> OrderPlaced {
    OrderPlaced {
        order_id: order.order_id,
        channel: Channel::Unknown,
        external_id: None,
        placed_at: order.placed_at,
        customer: order.customer,
        currency: order.currency,
        lines: (1..)
            .zip(order.lines)
            .map(|(line_no, l)| Line {
                line_no,
                sku: l.sku,
                quantity: l.quantity,
                unit_price_cents: l.unit_price_cents,
                warehouse: l.warehouse,
            })
            .collect(),
        total_cents: order.total_cents,
        shipping_address: order.shipping_address,
    }
}

/// Reads a canonical order of any version as v2, upcasting v1; any other type, or a payload that is
/// not a valid order of its version, is a [`CanonicalError`].
pub fn read_order(envelope: &Envelope<Raw>) -> Result<Envelope<OrderPlaced>, CanonicalError> {
    let order = match envelope.event_type.as_str() {
        ORDER_PLACED_V1 => upcast(read(ORDER_PLACED_V1, &envelope.data)?),
        ORDER_PLACED_V2 => read(ORDER_PLACED_V2, &envelope.data)?,
        other => {
            return Err(CanonicalError::UnexpectedType {
                found: other.to_owned(),
                expected: vec![ORDER_PLACED_V1, ORDER_PLACED_V2],
            });
        }
    };
    order.validate()?;
    Ok(Envelope {
        id: envelope.id.clone(),
        source: envelope.source.clone(),
        specversion: envelope.specversion.clone(),
        event_type: envelope.event_type.clone(),
        time: envelope.time,
        subject: envelope.subject.clone(),
        dataschema: envelope.dataschema.clone(),
        datacontenttype: envelope.datacontenttype.clone(),
        correlationid: envelope.correlationid.clone(),
        causationid: envelope.causationid.clone(),
        traceparent: envelope.traceparent.clone(),
        dataref: envelope.dataref.clone(),
        data: order,
    })
}

impl OrderPlaced {
    /// Checks what the schema says and serde cannot: ids not empty and not too long, at least one
    /// line, line numbers unique, quantities positive, amounts not negative, the currency a known
    /// code, the country two capitals. Every problem is listed. (Whether the total adds up is the
    /// saga's business rule, checked by `validate-order`, so such an order is failed and recorded,
    /// not dropped here.)
    pub fn validate(&self) -> Result<(), CanonicalError> {
        let mut p = Problems::default();
        p.non_empty("the order id", &self.order_id);
        p.check(self.order_id.len() <= MAX_ORDER_ID_LEN, || {
            format!("the order id is longer than {MAX_ORDER_ID_LEN} characters")
        });
        p.check(
            self.order_id.is_empty()
                || self.order_id.len() > MAX_ORDER_ID_LEN
                || is_execution_name(&self.order_id),
            || {
                "the order id names the order's saga execution, so it cannot hold white space, brackets, ? * \" # % \\ ^ | ~ ` $ & , ; : / or control characters".to_owned()
            },
        );
        if let Some(external_id) = &self.external_id {
            p.non_empty("the external id", external_id);
        }
        p.non_empty("the customer id", &self.customer.id);
        p.check(self.customer.email.trim().chars().count() >= 3, || {
            format!("the customer email {:?} is too short", self.customer.email)
        });
        p.check(CURRENCIES.contains(&self.currency.as_str()), || {
            format!(
                "currency {:?} is not one of {}",
                self.currency,
                CURRENCIES.join(", ")
            )
        });
        p.check(!self.lines.is_empty(), || {
            "the order has no lines".to_owned()
        });
        let mut seen = std::collections::HashSet::new();
        for line in &self.lines {
            let n = line.line_no;
            p.check(n >= 1, || "line numbers start at 1".to_owned());
            p.check(seen.insert(n), || format!("line {n} appears twice"));
            p.non_empty(&format!("line {n}'s sku"), &line.sku);
            p.check(line.quantity >= 1, || {
                format!(
                    "line {n} has quantity {}; it must be at least 1",
                    line.quantity
                )
            });
            p.check(line.unit_price_cents >= 0, || {
                format!("line {n} has a negative price")
            });
            if let Some(warehouse) = &line.warehouse {
                p.non_empty(&format!("line {n}'s warehouse"), warehouse);
            }
        }
        p.check(self.total_cents >= 0, || "the total is negative".to_owned());
        if let Some(address) = &self.shipping_address {
            let country = &address.country;
            p.check(
                country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()),
                || format!("country {country:?} is not an ISO 3166 alpha-2 code"),
            );
        }
        p.finish(ORDER_PLACED_V2)
    }
}

/// Whether the customer master knows an order's customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomerStatus {
    /// The master has a record.
    Known,
    /// The master has none (a first-time buyer, a marketplace buyer not yet synced).
    Unknown,
}

/// What the customer master knows of an order's customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerProfile {
    /// Whether the master has a record; when `unknown`, `tier` is `unknown` and there is no credit
    /// limit.
    pub status: CustomerStatus,
    /// `standard`, `silver`, `gold`, or `unknown` when the master has no tier (or no record).
    pub tier: String,
    /// The credit limit the ERP gave the customer, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_limit: Option<serde_json::Number>,
    /// When the master was read (or its cached copy was).
    #[serde(with = "crate::time::rfc3339")]
    pub looked_up_at: DateTime<Utc>,
}

/// `io.busline.order.enriched.v1`: the order, and its customer's profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderEnriched {
    /// The order, v2.
    pub order: OrderPlaced,
    /// The customer as the master knows them.
    pub customer: CustomerProfile,
}

/// One line of a [`FulfillmentRequested`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentLine {
    /// The order line it ships.
    pub line_no: u32,
    /// The stock keeping unit.
    pub sku: String,
    /// How many units: the order line's whole quantity, at least 1.
    pub quantity: i64,
}

/// `io.busline.fulfillment.requested.v1`: the part of an order one warehouse ships.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentRequested {
    /// busline's order id, the same in every part of the order.
    pub order_id: String,
    /// The same for every part of the order: what an aggregator groups by.
    pub correlation_id: String,
    /// The warehouse that ships this part, unique among the order's parts: the lines' own, or the
    /// splitter's default for lines that name none.
    pub warehouse: String,
    /// This part's number, 1 to `total`.
    pub sequence: u32,
    /// How many parts the order has.
    pub total: u32,
    /// The lines this warehouse ships.
    pub lines: Vec<FulfillmentLine>,
    /// Where they go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::EventType;
    use crate::canonical::schema;

    fn v1() -> Value {
        serde_json::from_str(include_str!("../../../infra/events/shop-order.json")).unwrap()
    }

    fn envelope(event_type: &str, data: Value) -> Envelope<Raw> {
        let envelope = Envelope::new("e-1", "test", EventType::parse(event_type).unwrap(), data)
            .with_correlation_id("c-1");
        crate::transform::received(&envelope)
    }

    #[test]
    fn a_v1_order_upcasts_to_a_valid_v2_with_unknown_channel_and_numbered_lines() {
        let v1_schema = schema(ORDER_PLACED_V1).unwrap();
        let v2_schema = schema(ORDER_PLACED_V2).unwrap();
        assert_eq!(v1_schema.violations(&v1()), vec![]);
        // A v1 event is not a v2 one: the consumer must upcast.
        assert!(!v2_schema.violations(&v1()).is_empty());

        let read = read_order(&envelope(ORDER_PLACED_V1, v1())).unwrap();
        assert_eq!((read.id.as_str(), read.correlation_id()), ("e-1", "c-1"));
        let order = read.data;
        assert_eq!(order.channel, Channel::Unknown);
        assert_eq!(
            order.lines.iter().map(|l| l.line_no).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(order.lines[1].warehouse.as_deref(), Some("AMS-2"));
        let v2 = serde_json::to_value(&order).unwrap();
        assert_eq!(v2_schema.violations(&v2), vec![]);

        // Every v1 field survives the upcast.
        let mut back = v2.clone();
        back.as_object_mut().unwrap().remove("channel");
        for line in back["lines"].as_array_mut().unwrap() {
            line.as_object_mut().unwrap().remove("line_no");
        }
        assert_eq!(back, v1());
    }

    #[test]
    fn a_v2_order_reads_as_it_is_and_other_types_are_refused() {
        let mut order = v1();
        order["channel"] = json!("web-shop");
        order["lines"][0]["line_no"] = json!(1);
        order["lines"][1]["line_no"] = json!(2);
        let read = read_order(&envelope(ORDER_PLACED_V2, order.clone())).unwrap();
        assert_eq!(serde_json::to_value(&read.data).unwrap(), order);

        let err = read_order(&envelope("io.busline.shop.order.placed.v1", v1())).unwrap_err();
        assert!(
            matches!(err, CanonicalError::UnexpectedType { .. }),
            "{err}"
        );
        // A v2 event that lacks v2's fields is malformed, not silently upcast.
        let err = read_order(&envelope(ORDER_PLACED_V2, v1())).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }

    #[test]
    fn an_execution_name_keeps_to_the_documented_rule() {
        for good in [
            "SO-1001",
            "MP-402-8812340-1",
            "a",
            "ordre-été_2",
            &"x".repeat(80),
        ] {
            assert!(is_execution_name(good), "{good:?}");
        }
        let mut bad: Vec<String> = [
            "", "SO 1", "SO\t1", "SO-1\n", "SO#1", "SO%1", "SO/1", "SO:1", "SO?1", "SO,1", "SO;1",
            "SO\\1", "SO^1", "SO|1", "SO~1", "SO$1", "SO&1", "SO*1", "SO\"1", "SO`1", "SO<1>",
            "SO{1}", "SO[1]", "SO\u{7f}", "SO\u{85}", "SO\u{0}",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        bad.push("x".repeat(81));
        for name in bad {
            assert!(!is_execution_name(&name), "{name:?}");
        }
    }

    #[test]
    fn an_order_id_no_saga_can_be_named_by_is_invalid() {
        let mut order = read_order(&envelope(ORDER_PLACED_V1, v1())).unwrap().data;
        order.order_id = "SO-1#2".to_owned();
        let err = order.validate().unwrap_err();
        assert!(err.to_string().contains("saga execution"), "{err}");
    }

    #[test]
    fn validation_lists_every_problem() {
        let mut order = read_order(&envelope(ORDER_PLACED_V1, v1())).unwrap().data;
        order.lines[1].line_no = 1;
        order.lines[0].quantity = 0;
        order.currency = "XXX".into();
        order.order_id = "x".repeat(81);
        // Three bytes, two characters: JSON Schema counts characters (the fuzzer found this).
        order.customer.email = "!¡".into();
        let CanonicalError::Invalid { problems, .. } = order.validate().unwrap_err() else {
            panic!("not an invalid order")
        };
        assert_eq!(problems.len(), 5, "{problems:?}");
    }
}
