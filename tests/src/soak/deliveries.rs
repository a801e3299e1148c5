//! The soak's deliveries: what each sender sends, made from the plan's seed so a run can be made
//! again, with the poison and re-sends the plan asks for.

use serde_json::{Value, json};

use super::Plan;

/// A small deterministic generator (SplitMix64), so a run's deliveries follow from its seed.
pub(super) struct Dice(u64);

impl Dice {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// What a delivery is meant to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A good one.
    Good,
    /// Passes the door, cannot be translated: a marketplace order in two currencies.
    Untranslatable,
    /// Signed with the wrong secret.
    BadSignature,
    /// An order id that cannot be a business key.
    BadOrderId,
    /// Not UTF-8.
    NotUtf8,
    /// Bigger than one bus entry.
    Oversized,
}

impl Kind {
    pub(super) fn refused(self) -> bool {
        !matches!(self, Self::Good | Self::Untranslatable)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Untranslatable => "untranslatable",
            Self::BadSignature => "bad signature",
            Self::BadOrderId => "order id with #",
            Self::NotUtf8 => "not UTF-8",
            Self::Oversized => "too big for the bus",
        }
    }
}

/// One delivery, as its sender keeps it.
#[derive(Clone, Debug)]
pub(super) struct Delivery {
    pub(super) n: usize,
    pub(super) source: &'static str,
    pub(super) kind: Kind,
    pub(super) body: Vec<u8>,
    pub(super) delivery_id: String,
    pub(super) correlation_id: String,
    /// The order it places, if it places one: its id, its lines (SKU, quantity), its total.
    pub(super) order: Option<PlacedOrder>,
    /// Whether its sender sends it again after its acceptance.
    pub(super) resend: bool,
}

#[derive(Clone, Debug)]
pub(super) struct PlacedOrder {
    pub(super) id: String,
    pub(super) lines: Vec<(String, i64)>,
    pub(super) total_cents: i64,
}

pub(super) const WAREHOUSES: &[Option<&str>] = &[Some("DUB-1"), Some("AMS-2"), None];
pub(super) const SKUS: usize = 12;
pub(super) const CUSTOMERS: usize = 40;

/// Makes the plan's deliveries.
pub(super) fn deliveries(plan: &Plan, tag: &str) -> Vec<Delivery> {
    let mut dice = Dice(plan.seed);
    let sample_shop: Value = serde_json::from_str(crate::SAMPLE_SHOP_ORDER).expect("sample");
    let sample_market: Value =
        serde_json::from_str(include_str!("../../../infra/events/marketplace-order.json"))
            .expect("sample");
    let sample_helpdesk: Value =
        serde_json::from_str(include_str!("../../../infra/events/helpdesk-user.json"))
            .expect("sample");
    let sample_payment: Value =
        serde_json::from_str(include_str!("../../../infra/events/payments-event.json"))
            .expect("sample");
    let now = chrono::Utc::now();
    let mut out = Vec::with_capacity(plan.webhooks);
    for n in 0..plan.webhooks {
        let roll = dice.below(100);
        let source = match roll {
            0..35 => "shop",
            35..55 => "marketplace",
            55..75 => "crm",
            75..90 => "helpdesk",
            _ => "payments",
        };
        let poison = dice.chance(plan.poison_rate);
        let kind = match (poison, n % 5) {
            (false, _) => Kind::Good,
            (true, 0) => Kind::Untranslatable,
            (true, 1) => Kind::BadSignature,
            (true, 2) => Kind::BadOrderId,
            (true, 3) => Kind::NotUtf8,
            (true, _) => Kind::Oversized,
        };
        // Poison aimed at orders travels on the order sources; bytes that are not text on the
        // CRM's scheme, which signs bytes (Standard Webhooks signs text).
        let source = match kind {
            Kind::Untranslatable => "marketplace",
            Kind::BadOrderId => "shop",
            Kind::NotUtf8 => "crm",
            _ => source,
        };
        let customer = format!("C-{tag}-{}", dice.below(CUSTOMERS));
        let mut order = None;
        let mut lines = Vec::new();
        for _ in 0..1 + dice.below(3) {
            let sku = format!("SK-{tag}-{}", dice.below(SKUS));
            if lines
                .iter()
                .any(|(s, _, _, _): &(String, i64, i64, Option<&str>)| *s == sku)
            {
                continue;
            }
            let quantity = 1 + dice.below(2) as i64;
            let price = 500 + 100 * dice.below(40) as i64;
            lines.push((
                sku,
                quantity,
                price,
                WAREHOUSES[dice.below(WAREHOUSES.len())],
            ));
        }
        let total: i64 = lines.iter().map(|(_, q, p, _)| q * p).sum();
        let body: Value = match source {
            "shop" => {
                let id = if kind == Kind::BadOrderId {
                    format!("SO #{tag}-{n}")
                } else {
                    format!("SO-{tag}-{n}")
                };
                let mut body = sample_shop.clone();
                body["order_id"] = json!(id);
                body["placed_at"] = json!(now.to_rfc3339());
                body["customer"]["id"] = json!(customer);
                body["lines"] = lines
                    .iter()
                    .map(|(sku, q, p, w)| {
                        let mut line = json!({"sku": sku, "quantity": q, "unit_price_cents": p});
                        if let Some(w) = w {
                            line["warehouse"] = json!(w);
                        }
                        line
                    })
                    .collect();
                body["total_cents"] = json!(total);
                order = Some(PlacedOrder {
                    id,
                    lines: lines.iter().map(|(s, q, _, _)| (s.clone(), *q)).collect(),
                    total_cents: total,
                });
                body
            }
            "marketplace" => {
                let number = format!("{tag}-{n}");
                let mut body = sample_market.clone();
                let payload = &mut body["payload"];
                payload["orderNumber"] = json!(number);
                payload["purchaseDate"] = json!(now.to_rfc3339());
                payload["buyer"]["buyerId"] = json!(customer);
                let amount = |cents: i64| format!("{}.{:02}", cents / 100, cents % 100);
                payload["orderTotal"]["amount"] = json!(amount(total));
                payload["orderItems"] = lines
                    .iter()
                    .enumerate()
                    .map(|(i, (sku, q, p, w))| {
                        let currency = if kind == Kind::Untranslatable && i == 0 {
                            "USD"
                        } else {
                            "EUR"
                        };
                        let mut item = json!({"orderItemId": format!("{n}{i}"), "sellerSku": sku,
                            "title": "Soak item", "quantityOrdered": q,
                            "unitPrice": {"currencyCode": currency, "amount": amount(*p)}});
                        if let Some(w) = w {
                            item["fulfillmentCenterId"] = json!(w);
                        }
                        item
                    })
                    .collect();
                if kind == Kind::Good {
                    order = Some(PlacedOrder {
                        id: format!("mkt-{number}"),
                        lines: lines.iter().map(|(s, q, _, _)| (s.clone(), *q)).collect(),
                        total_cents: total,
                    });
                }
                body
            }
            "crm" => {
                let tier = ["gold", "silver", "standard"][n % 3];
                json!({
                "customer_id": customer,
                "updated_at": now.to_rfc3339(),
                "changes": {"phone": format!("+353 1 555 {n:04}"), "tier": tier}
                })
            }
            "helpdesk" => {
                let mut body = sample_helpdesk.clone();
                body["time"] = json!(now.to_rfc3339());
                body["detail"]["id"] = json!(n as u64 + 1);
                body["detail"]["external_id"] = json!(customer);
                body["detail"]["updated_at"] = json!(now.to_rfc3339());
                body["detail"]["phone"] = json!(format!("+353 1 555 {n:04}"));
                body
            }
            _ => {
                let mut body = sample_payment.clone();
                body["id"] = json!(format!("evt_{tag}{n}"));
                body["created"] = json!(now.timestamp());
                body["data"]["object"]["metadata"]["order_id"] = json!(format!("SO-{tag}-{n}"));
                body
            }
        };
        let mut bytes = body.to_string().into_bytes();
        match kind {
            Kind::NotUtf8 => {
                // Latin-1 where UTF-8 is promised: "Müller" with a bare 0xFC.
                let text = String::from_utf8(bytes).expect("JSON is UTF-8");
                let at = text.find('{').map_or(0, |i| i + 1);
                bytes = text.into_bytes();
                let field = b"\"name_latin1\":\"M\xFCller\",";
                bytes.splice(at..at, field.iter().copied());
            }
            Kind::Oversized => {
                let mut body = body;
                body["padding"] = json!("x".repeat(300 * 1024));
                bytes = body.to_string().into_bytes();
            }
            _ => {}
        }
        out.push(Delivery {
            n,
            source,
            kind,
            body: bytes,
            delivery_id: format!("{tag}-{n}"),
            correlation_id: format!("soak-{tag}-{n}"),
            order: if kind == Kind::Good { order } else { None },
            resend: !kind.refused() && dice.chance(plan.duplicate_rate),
        });
    }
    out
}
