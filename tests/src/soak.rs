//! The soak: load and faults at once on the deployed stack, then a check that nothing was lost,
//! duplicated or left in flight (`make soak`, and a shorter run in `make test`).
//!
//! **What it does.** [`Plan::webhooks`] signed webhooks from [`Plan::senders`] concurrent senders
//! across the sources (the web shop on Standard Webhooks, the marketplace on Shopify, the CRM on
//! busline-v1, the help desk on GitHub's scheme and the payment provider on Stripe's), each with
//! its own `X-Correlation-Id`. Senders behave as real ones do: a 5xx, a 429 or no answer is sent
//! again, re-signed, with backoff. On top of that:
//!
//! - **duplicates**: a share of accepted deliveries is sent once more later, as senders do;
//! - **poison**: a share is bad on purpose. Some are refused at the door (a wrong signature, an
//!   order id with `#`, a body not in UTF-8, a body too big for the bus) and must get a 4xx with a
//!   reason; some pass the door and cannot be translated (a marketplace order in two currencies) and
//!   must reach the transformers' dead-letter queue with theirs;
//! - **faults**: LocalStack's executor fails invocations of every consumer, saga step and the
//!   ingest function at [`Plan::fault_rate`] (an error before the function runs, a crash after its
//!   side effects, a timeout);
//! - **an outage**: the bus refuses every `PutEvents` for [`Plan::bus_outage`], from the functions,
//!   Step Functions and the tooling alike (the executor's `aws` rule);
//! - **other load**: [`Plan::cdc_writes`] writes to the ERP table behind the CDC stream, and a
//!   batch-sync run of [`Plan::sync_records`] records from the stub source, invoked as the schedule
//!   would until it completes.
//!
//! **What it checks, once the stack is quiet.** Every accepted delivery is in the audit trail
//! exactly once, or in a dead-letter queue with a reason. Every order has exactly one execution, one
//! terminal event and one status, and its effects agree: paid the total and shipped if fulfilled,
//! nothing paid and nothing shipped if not; per SKU, the stock fell by exactly what fulfilled orders
//! took. The warehouse and the email API accepted each `Idempotency-Key` once, and every part of
//! every order reached the warehouse. Every CDC write and every synced record reached the bus.
//! Nothing is left in a work queue or a running execution. [`Figures`] holds the counts.
//!
//! The stub receivers listen where the LocalStack deployment points the stack (8025 email API, 8026
//! sync source, 8027 warehouse), so a soak runs alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use busline::audit::{AuditTrail, DynamoDbAuditTrail};
use busline::signature::Scheme;
use busline_fulfillment::CreditStanding;
use busline_fulfillment::dynamodb::DynamoDbFulfillment;
use busline_fulfillment::status::{DynamoDbOrderTracker, OrderTracker, Status};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::report::{Column, Section, Table};
use crate::source_stub::SourceStub;
use crate::{
    DeployedStack, Headers, faults_file, percentile, signed_bytes_as, watch_bus, write_faults,
};

/// The `p` quantile of `values`, 0 when there are none.
fn quantile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        percentile(values, p)
    }
}

/// How hard a soak pushes.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Distinct webhook deliveries.
    pub webhooks: usize,
    /// Concurrent senders.
    pub senders: usize,
    /// Share of accepted deliveries sent again later.
    pub duplicate_rate: f64,
    /// Share of deliveries that are bad on purpose.
    pub poison_rate: f64,
    /// Share of invocations the executor fails, per function.
    pub fault_rate: f64,
    /// How long the bus refuses `PutEvents`, starting a quarter into the load.
    pub bus_outage: Duration,
    /// Writes to the ERP table behind the CDC stream.
    pub cdc_writes: usize,
    /// Records the batch sync pulls.
    pub sync_records: usize,
    /// How long the stack may take to become quiet after the last answer.
    pub quiet_within: Duration,
    /// How long the whole soak may take, set-up and checks included: past it, the soak fails
    /// saying which phase it was in, rather than hang its caller.
    pub deadline: Duration,
    /// Seeds the generator, so a run's deliveries can be made again.
    pub seed: u64,
}

impl Plan {
    /// `make soak`: what the issue asks of a full run.
    pub fn full() -> Self {
        Self {
            webhooks: 2000,
            senders: 16,
            duplicate_rate: 0.10,
            poison_rate: 0.02,
            fault_rate: 0.03,
            bus_outage: Duration::from_secs(8),
            cdc_writes: 200,
            sync_records: 500,
            quiet_within: Duration::from_secs(1800),
            deadline: Duration::from_secs(3600),
            seed: 20_261_201,
        }
    }

    /// `make test`'s: the same mix at a rate LocalStack on two cores keeps up with. Sixteen
    /// senders overdrive it: its Lambda invoke path then costs seconds per call, ingest times out
    /// (502s the senders retry), and consumers outlive their visibility timeout, so the run takes
    /// longer than the rest of `make test`. Four senders keep it to a few minutes.
    pub fn short() -> Self {
        Self {
            webhooks: 150,
            senders: 4,
            cdc_writes: 20,
            sync_records: 50,
            bus_outage: Duration::from_secs(5),
            quiet_within: Duration::from_secs(600),
            deadline: Duration::from_secs(1200),
            ..Self::full()
        }
    }
}

/// Every figure a soak reports.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// The run's tag (in every id it made).
    pub tag: String,
    /// The plan it ran.
    pub plan_text: String,
    /// Distinct deliveries sent.
    pub deliveries: usize,
    /// Requests made, every retry and re-send included.
    pub requests: usize,
    /// Deliveries sent again on purpose after their acceptance.
    pub resent: usize,
    /// Deliveries answered 2xx.
    pub accepted: usize,
    /// 2xx answers that said "duplicate": nothing new was published.
    pub duplicates_absorbed: usize,
    /// Deliveries refused with a 4xx, by status and the poison they were.
    pub refused: BTreeMap<String, usize>,
    /// Good deliveries refused, or poison accepted (must be 0).
    pub misanswered: Vec<String>,
    /// Refusals without a reason in the body (must be 0).
    pub refused_without_reason: usize,
    /// Deliveries the senders gave up on, still 5xx after every retry (must be 0).
    pub gave_up: usize,
    /// Letters of this run in the dead-letter queues, by queue and reason.
    pub dead_lettered: BTreeMap<String, usize>,
    /// Letters without a reason: moved by SQS at its receive limit, so busline never said why, and
    /// under load most were good messages never processed (must be 0).
    pub letters_without_reason: usize,
    /// What was lost: accepted and neither where it belongs nor dead-lettered (must be empty).
    pub lost: Vec<String>,
    /// Effects that happened twice or are wrong (must be empty).
    pub double_effects: Vec<String>,
    /// What was still in flight when the checks ran (must be empty).
    pub in_flight: Vec<String>,
    /// Orders, by how they ended.
    pub orders: BTreeMap<String, usize>,
    /// Faults the executor injected, by kind.
    pub faults: BTreeMap<String, usize>,
    /// `PutEvents` calls the bus refused during the outage.
    pub bus_refusals: usize,
    /// CDC writes seen on the bus, of those made.
    pub cdc_seen: (usize, usize),
    /// Synced records seen on the bus, of those served.
    pub sync_seen: (usize, usize),
    /// Batch-sync invocations until a run completed.
    pub sync_invocations: usize,
    /// Warehouse requests: accepted once, refused with a 503 first.
    pub warehouse: (usize, usize),
    /// Emails sent (distinct keys).
    pub emails: usize,
    /// Requests the email API dropped by their `Idempotency-Key` (copies notify-customer sent).
    pub email_copies: usize,
    /// Accepted deliveries per second, from the first request to the last answer.
    pub throughput: f64,
    /// Seconds from the first request to the last answer.
    pub load_seconds: f64,
    /// Seconds from the last answer until the stack was quiet.
    pub quiet_seconds: f64,
    /// First request → recorded in the audit trail, ms.
    pub to_audit_ms: Vec<f64>,
    /// The saga's executions, start → stop, ms.
    pub saga_ms: Vec<f64>,
    /// Request → answer at the Function URL, ms (every request).
    pub answer_ms: Vec<f64>,
}

impl Figures {
    /// Whether the run kept every promise.
    pub fn conserved(&self) -> bool {
        self.lost.is_empty()
            && self.double_effects.is_empty()
            && self.in_flight.is_empty()
            && self.misanswered.is_empty()
            && self.refused_without_reason == 0
            && self.gave_up == 0
            && self.letters_without_reason == 0
    }

    /// The figures as text.
    pub fn text(&self) -> String {
        let list = |m: &BTreeMap<String, usize>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let some = |v: &[String]| {
            if v.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}{}",
                    v.iter().take(10).cloned().collect::<Vec<_>>().join("; "),
                    if v.len() > 10 { "; ..." } else { "" }
                )
            }
        };
        let p = |v: &[f64]| {
            format!(
                "p50 {:.0} ms, p99 {:.0} ms ({} samples)",
                quantile(v, 0.5),
                quantile(v, 0.99),
                v.len()
            )
        };
        let refused: usize = self.refused.values().sum();
        let dead: usize = self.dead_lettered.values().sum();
        let faults: usize = self.faults.values().sum();
        [
            format!("soak {}: {}", self.tag, self.plan_text),
            format!(
                "  sent                 {} requests: {} deliveries, {} re-sent on purpose, the rest retries",
                self.requests, self.deliveries, self.resent
            ),
            format!("  accepted             {}", self.accepted),
            format!(
                "  refused (4xx)        {refused}: {}; misanswered (good refused, poison let in) {}{}; without a reason {}",
                list(&self.refused),
                self.misanswered.len(),
                some(&self.misanswered),
                self.refused_without_reason
            ),
            format!("  senders gave up      {}", self.gave_up),
            format!("  duplicates absorbed  {}", self.duplicates_absorbed),
            format!(
                "  dead-lettered        {dead}: {}; without a reason {}",
                list(&self.dead_lettered),
                self.letters_without_reason
            ),
            format!("  lost                 {}{}", self.lost.len(), some(&self.lost)),
            format!(
                "  double effects       {}{}",
                self.double_effects.len(),
                some(&self.double_effects)
            ),
            format!(
                "  in flight            {}{}",
                self.in_flight.len(),
                some(&self.in_flight)
            ),
            format!("  orders               {}", list(&self.orders)),
            format!(
                "  faults injected      {faults}: {}; PutEvents refused {} times",
                list(&self.faults),
                self.bus_refusals
            ),
            format!(
                "  CDC                  {} of {} writes on the bus; batch sync {} of {} records ({} invocations)",
                self.cdc_seen.0,
                self.cdc_seen.1,
                self.sync_seen.0,
                self.sync_seen.1,
                self.sync_invocations
            ),
            format!(
                "  warehouse            {} deliveries accepted once, {} answered 503 first; emails {} (copies dropped by their key {})",
                self.warehouse.0, self.warehouse.1, self.emails, self.email_copies
            ),
            format!(
                "  throughput           {:.1} accepted deliveries/s over {:.0} s; quiet {:.0} s after the last answer",
                self.throughput, self.load_seconds, self.quiet_seconds
            ),
            format!("  POST → ingest answer {}", p(&self.answer_ms)),
            format!("  POST → audit trail   {}", p(&self.to_audit_ms)),
            format!("  saga execution       {}", p(&self.saga_ms)),
        ]
        .join("\n")
    }

    /// The figures as a section of `make bench`'s report.
    pub fn section(&self) -> Section {
        let mut section = Section::new(
            85,
            "Soak: conservation under load and faults",
            &format!(
                "`make soak` (`tests/src/soak.rs`) on the deployed stack: {}. When the stack is \
                 quiet, every accepted delivery must be in the audit trail exactly once or in a \
                 dead-letter queue with a reason, every order must have one outcome whose effects \
                 agree, and each Idempotency-Key must have been accepted once downstream.",
                self.plan_text
            ),
        );
        let mut counts = Table::new(
            "",
            vec![Column::text("figure"), Column::number("count", "", 0)],
        );
        let refused: usize = self.refused.values().sum();
        let dead: usize = self.dead_lettered.values().sum();
        for (what, n) in [
            ("deliveries sent", self.deliveries),
            ("requests (retries and re-sends included)", self.requests),
            ("accepted", self.accepted),
            ("refused with a reason (poison)", refused),
            ("duplicates absorbed", self.duplicates_absorbed),
            ("dead-lettered", dead),
            (
                "dead-lettered without a reason",
                self.letters_without_reason,
            ),
            ("faults injected", self.faults.values().sum()),
            ("PutEvents refused during the outage", self.bus_refusals),
        ] {
            counts.row(vec![json!(what), json!(n)]);
        }
        let mut goals = Table::new(
            "",
            vec![
                Column::text("must be zero"),
                Column::number("count", "", 0).at_most(0.0),
            ],
        );
        for (what, n) in [
            ("lost", self.lost.len()),
            ("double effects", self.double_effects.len()),
            ("in flight at the end", self.in_flight.len()),
            (
                "good deliveries refused or poison let in",
                self.misanswered.len(),
            ),
            ("senders gave up", self.gave_up),
        ] {
            goals.row(vec![json!(what), json!(n)]);
        }
        let mut times = Table::new(
            "",
            vec![
                Column::text("path"),
                Column::number("p50", "ms", 0),
                Column::number("p99", "ms", 0),
            ],
        );
        for (what, v) in [
            ("POST → ingest's answer", &self.answer_ms),
            (
                "first POST → recorded in the audit trail",
                &self.to_audit_ms,
            ),
            ("saga execution, start → stop", &self.saga_ms),
        ] {
            times.row(vec![
                json!(what),
                json!(quantile(v, 0.5)),
                json!(quantile(v, 0.99)),
            ]);
        }
        let mut rate = Table::new(
            "",
            vec![
                Column::text("throughput"),
                Column::number("accepted / s", "", 1),
            ],
        );
        rate.row(vec![
            json!("accepted deliveries per second under faults"),
            json!(self.throughput),
        ]);
        section.tables.extend([goals, counts, times, rate]);
        section
    }
}

/// A small deterministic generator (SplitMix64), so a run's deliveries follow from its seed.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// What a delivery is meant to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
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
    fn refused(self) -> bool {
        !matches!(self, Self::Good | Self::Untranslatable)
    }

    fn name(self) -> &'static str {
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
struct Delivery {
    n: usize,
    source: &'static str,
    kind: Kind,
    body: Vec<u8>,
    delivery_id: String,
    correlation_id: String,
    /// The order it places, if it places one: its id, its lines (SKU, quantity), its total.
    order: Option<PlacedOrder>,
    /// Whether its sender sends it again after its acceptance.
    resend: bool,
}

#[derive(Clone, Debug)]
struct PlacedOrder {
    id: String,
    lines: Vec<(String, i64)>,
    total_cents: i64,
}

/// How a delivery's sending ended.
#[derive(Clone, Debug, Default)]
struct Sent {
    status: u16,
    body: Value,
    attempts: usize,
    first_ms: f64,
    duplicates: usize,
    answers_ms: Vec<f64>,
}

fn now_ms() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1000.0
}

const WAREHOUSES: &[Option<&str>] = &[Some("DUB-1"), Some("AMS-2"), None];
const SKUS: usize = 12;
const CUSTOMERS: usize = 40;

/// Makes the plan's deliveries.
fn deliveries(plan: &Plan, tag: &str) -> Vec<Delivery> {
    let mut dice = Dice(plan.seed);
    let sample_shop: Value = serde_json::from_str(crate::SAMPLE_SHOP_ORDER).expect("sample");
    let sample_market: Value =
        serde_json::from_str(include_str!("../../infra/events/marketplace-order.json"))
            .expect("sample");
    let sample_helpdesk: Value =
        serde_json::from_str(include_str!("../../infra/events/helpdesk-user.json"))
            .expect("sample");
    let sample_payment: Value =
        serde_json::from_str(include_str!("../../infra/events/payments-event.json"))
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

/// The warehouse's receiver: every request with its key, answered 503 the first time for one key
/// in twenty (a bad moment at the warehouse), 200 otherwise.
#[derive(Clone, Default)]
struct Warehouse {
    seen: Arc<Mutex<Vec<(String, u16, Value)>>>,
}

impl Respond for Warehouse {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let mut seen = self.seen.lock().unwrap();
        let first = !seen.iter().any(|(k, _, _)| *k == key);
        let flaky = key
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
            % 20
            == 0;
        let status = if first && flaky { 503 } else { 200 };
        seen.push((key, status, body));
        ResponseTemplate::new(status)
    }
}

/// The email API: every request's key. As email APIs that take an `Idempotency-Key` do, a key seen
/// before is answered as the first time and sends nothing: such copies are counted, not sent.
#[derive(Clone, Default)]
struct Email {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Respond for Email {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.seen.lock().unwrap().push(key);
        ResponseTemplate::new(202).set_body_json(json!({"id": uuid::Uuid::new_v4().to_string()}))
    }
}

/// Functions the executor fails at the plan's rate: the edge, every consumer and every saga step.
const FAULTED: &[&str] = &[
    "ingest-webhook",
    "audit-trail",
    "translate",
    "enrich",
    "split",
    "mdm-customer",
    "cdc-stream",
    "batch-sync",
    "deliver-webhook",
    "notify-customer",
    "validate-order",
    "check-credit",
    "reserve-inventory",
    "take-payment",
    "create-shipment",
    "post-invoice",
    "release-inventory",
    "refund-payment",
    "cancel-shipment",
];

/// Puts the plan's faults in the executor's file: a rate per function, and the bus's outage window.
fn arm_faults(plan: &Plan, outage_from_ms: i64) -> Result<()> {
    let mut all = json!({});
    let error = json!({"fault": "error", "errorType": "Lambda.ServiceException", "errorMessage": "injected by the soak"});
    for f in FAULTED {
        let mut faults = vec![
            error.clone(),
            error.clone(),
            json!({"fault": "crash"}),
            json!({"fault": "crash"}),
        ];
        // A timeout holds an environment for the function's whole timeout: batch-sync's is five
        // minutes, which would stall the run rather than test it.
        if *f != "batch-sync" {
            faults.push(json!({"fault": "timeout"}));
        }
        all[format!("{}-{f}", DeployedStack::NAME)] =
            json!({"rate": plan.fault_rate, "faults": faults});
    }
    all["aws"] = json!([{
        "service": "events", "operation": "PutEvents",
        "code": "ThrottlingException", "status": 400,
        "message": "Rate exceeded (the soak's outage)",
        "from_ms": outage_from_ms,
        "until_ms": outage_from_ms + plan.bus_outage.as_millis() as i64
    }]);
    write_faults(&all)
}

/// Takes the faults out, returning what the executor counted: injected faults by kind, and the
/// bus's refusals. An invocation that read the file just before it was emptied writes its copy
/// back: the file is emptied until it stays empty, and the highest count seen of each is kept.
fn disarm_faults() -> Result<(BTreeMap<String, usize>, usize)> {
    let mut injected: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = 0;
    let mut empty_reads = 0;
    while empty_reads < 3 {
        let text = std::fs::read_to_string(faults_file()).unwrap_or_default();
        let all: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({}));
        if all.as_object().is_none_or(|o| o.is_empty()) {
            empty_reads += 1;
        } else {
            empty_reads = 0;
            let mut counted: BTreeMap<String, usize> = BTreeMap::new();
            for f in FAULTED {
                let entry = &all[format!("{}-{f}", DeployedStack::NAME)]["injected"];
                for (kind, n) in entry.as_object().into_iter().flatten() {
                    *counted.entry(kind.clone()).or_default() += n.as_u64().unwrap_or(0) as usize;
                }
            }
            for (kind, n) in counted {
                let kept = injected.entry(kind).or_default();
                *kept = (*kept).max(n);
            }
            let now_refused: usize = all["aws"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r["refused"].as_u64().unwrap_or(0) as usize)
                .sum();
            refused = refused.max(now_refused);
            write_faults(&json!({}))?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((injected, refused))
}

/// Resets the fault file when dropped, so a failed soak leaves no faults behind for the next test.
struct FaultsArmed;

impl Drop for FaultsArmed {
    fn drop(&mut self) {
        let _ = write_faults(&json!({}));
    }
}

/// The senders' side: secrets per source and the stack's URL.
struct Senders {
    stack: DeployedStack,
    secrets: HashMap<&'static str, String>,
    http: reqwest::Client,
}

impl Senders {
    /// Sends `delivery` as its source would: signed now, again on a 5xx, 429 or no answer, with
    /// backoff, up to a minute; returns how it ended.
    async fn send(&self, delivery: &Delivery) -> Sent {
        let scheme = self
            .stack
            .scheme_of(delivery.source)
            .unwrap_or(Scheme::StandardWebhooks);
        let secret = match delivery.kind {
            Kind::BadSignature => match scheme {
                Scheme::StandardWebhooks => crate::new_standard_webhooks_secret(),
                _ => "not-the-secret".to_owned(),
            },
            _ => self.secrets[delivery.source].clone(),
        };
        let url = self.stack.output("WebhookUrl").unwrap_or_default();
        let host = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .unwrap_or_else(|_| crate::DEFAULT_ENDPOINT.to_owned());
        let mut sent = Sent {
            first_ms: now_ms(),
            ..Sent::default()
        };
        let mut delay = Duration::from_millis(250);
        let started = Instant::now();
        loop {
            sent.attempts += 1;
            // Signed over the bytes as sent, a new signature for every attempt.
            let headers: Headers = signed_bytes_as(
                scheme,
                &secret,
                &delivery.body,
                &delivery.delivery_id,
                chrono::Utc::now().timestamp(),
            );
            let mut request = self
                .http
                .post(format!("{endpoint}/webhooks/{}", delivery.source))
                .header("host", &host)
                .header("content-type", "application/json")
                .header("x-correlation-id", &delivery.correlation_id)
                .timeout(Duration::from_secs(30))
                .body(delivery.body.clone());
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            let at = now_ms();
            let answer = request.send().await;
            let (status, body) = match answer {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    (
                        status,
                        serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    )
                }
                Err(_) => (0, Value::Null),
            };
            sent.answers_ms.push(now_ms() - at);
            sent.status = status;
            if (200..300).contains(&status) && body["duplicate"] == true {
                sent.duplicates += 1;
            }
            sent.body = body;
            let again = status == 0 || status == 429 || status >= 500;
            if !again || started.elapsed() > Duration::from_secs(60) {
                return sent;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(4));
        }
    }
}

/// Where a soak is, for its progress lines and for the error if it overruns its deadline.
#[derive(Clone)]
struct Progress {
    started: Instant,
    phase: Arc<Mutex<String>>,
}

impl Progress {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            phase: Arc::new(Mutex::new("starting".to_owned())),
        }
    }

    /// Enters `phase`, and says so on standard error (`--nocapture` shows it under `cargo test`).
    fn enter(&self, phase: &str) {
        *self.phase.lock().unwrap() = phase.to_owned();
        self.say(phase);
    }

    fn say(&self, text: &str) {
        eprintln!(
            "soak {:>6.1} s: {text}",
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Runs the soak of `plan` on the deployed stack and returns its figures. Fails only when the
/// soak itself could not run or overran `plan.deadline`; the figures say whether the stack kept
/// its promises.
pub async fn run(aws: &SdkConfig, plan: &Plan) -> Result<Figures> {
    let progress = Progress::new();
    match tokio::time::timeout(plan.deadline, run_within(aws, plan, &progress)).await {
        Ok(figures) => figures,
        Err(_) => bail!(
            "the soak overran its deadline of {} s while {}; a stack this slow cannot be judged \
             (see LocalStack's log under .state/localstack)",
            plan.deadline.as_secs(),
            progress.phase.lock().unwrap()
        ),
    }
}

async fn run_within(aws: &SdkConfig, plan: &Plan, progress: &Progress) -> Result<Figures> {
    let stack = DeployedStack::read(aws).await?;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut figures = Figures {
        tag: tag.clone(),
        plan_text: format!(
            "{} webhooks from {} concurrent senders across five sources, {:.0} % re-sent, {:.0} % \
             poison, the executor's faults at {:.0} % on {} functions, the bus refusing PutEvents for \
             {} s, {} CDC writes and a batch sync of {} records at the same time",
            plan.webhooks,
            plan.senders,
            plan.duplicate_rate * 100.0,
            plan.poison_rate * 100.0,
            plan.fault_rate * 100.0,
            FAULTED.len(),
            plan.bus_outage.as_secs(),
            plan.cdc_writes,
            plan.sync_records
        ),
        ..Figures::default()
    };

    // A soak counts what is in the stack's queues, so they must start empty: a backlog from earlier
    // runs would be counted as this run's in flight and delay its quiet. Earlier tests leave
    // deliveries for warehouses that were not listening, requeued for up to a day: those are
    // purged, and said so.
    progress.enter("waiting for the stack to be quiet before the load");
    let work_queues = stack_work_queues(aws).await?;
    let sqs = aws_sdk_sqs::Client::new(aws);
    let waited = Instant::now();
    let mut purged = false;
    loop {
        let busy = busy_queues(aws, &work_queues).await?;
        if busy.is_empty() {
            break;
        }
        if !purged {
            for (name, depth) in &busy {
                progress.say(&format!(
                    "purging {depth} message(s) an earlier run left in {name}"
                ));
                if let Some((_, url)) = work_queues.iter().find(|(n, _)| n == name) {
                    sqs.purge_queue().queue_url(url).send().await?;
                }
            }
            purged = true;
        } else if waited.elapsed() > Duration::from_secs(120) {
            bail!(
                "the stack is not quiet before the soak, even after purging its queues: {busy:?}; \
                 wait for it, or restart LocalStack and deploy again"
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    // The outside systems, where the LocalStack deployment points the stack.
    progress.enter("setting up the stubs, stock, customers and bus watches");
    let warehouse = Warehouse::default();
    let warehouse_server = stub_at("127.0.0.1:8027", Some(warehouse.clone())).await?;
    let email = Email::default();
    let _email_server = stub_at("127.0.0.1:8025", Some(email.clone())).await?;
    let source_server = stub_at::<Email>("127.0.0.1:8026", None).await?;
    let source = SourceStub::default();
    let sync_start = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    source.set_records(
        (0..plan.sync_records)
            .map(|i| {
                json!({"id": format!("R-{tag}-{i}"),
                       "updated_at": (sync_start + chrono::TimeDelta::milliseconds(i as i64)).to_rfc3339(),
                       "name": format!("Contact {i}")})
            })
            .collect(),
    );
    source.mount(&source_server).await;
    stack.close_circuit(aws, "warehouse").await?;

    // The systems behind the saga: a shared pool of SKUs (stock for about nine orders in ten) and
    // customers (one in ten with a card that declines).
    let systems = DynamoDbFulfillment::new(
        aws_sdk_dynamodb::Client::new(aws),
        stack.output("FulfillmentTableName")?,
    );
    let planned = deliveries(plan, &tag);
    let mut demand: HashMap<String, i64> = HashMap::new();
    for order in planned.iter().filter_map(|d| d.order.as_ref()) {
        for (sku, q) in &order.lines {
            *demand.entry(sku.clone()).or_default() += q;
        }
    }
    let mut initial: HashMap<String, i64> = HashMap::new();
    for k in 0..SKUS {
        let sku = format!("SK-{tag}-{k}");
        let stock = demand.get(&sku).copied().unwrap_or(0) * 9 / 10;
        systems.put_stock(&sku, stock, 0).await?;
        initial.insert(sku, stock);
    }
    for c in 0..CUSTOMERS {
        let standing = CreditStanding {
            limit_cents: 1_000_000_000,
            owed_cents: 0,
        };
        systems
            .put_customer(&format!("C-{tag}-{c}"), standing, c % 10 == 9)
            .await?;
    }

    // Windows onto the bus, independent of the stack's own consumers.
    let bus = stack.output("EventBusName")?;
    let outcomes_queue = watch_bus(
        aws,
        bus,
        &format!("soak-outcomes-{tag}"),
        &json!({"detail-type": ["io.busline.order.fulfilled.v1", "io.busline.order.failed.v1",
                                 "io.busline.order.compensation-failed.v1"],
                "detail": {"data": {"order_id": [{"prefix": format!("SO-{tag}")}, {"prefix": format!("mkt-{tag}")}]}}}),
    )
    .await?;
    let cdc_queue = watch_bus(
        aws,
        bus,
        &format!("soak-cdc-{tag}"),
        &json!({"detail-type": ["io.busline.cdc.erp-customers.changed.v1"],
                "detail": {"subject": [{"prefix": format!("customer_id=E-{tag}")}]}}),
    )
    .await?;
    let sync_queue = watch_bus(
        aws,
        bus,
        &format!("soak-sync-{tag}"),
        &json!({"detail-type": ["io.busline.sync.crm-contacts.changed.v1"],
                "detail": {"subject": [{"prefix": format!("R-{tag}")}]}}),
    )
    .await?;
    let mut secrets = HashMap::new();
    for (source, output) in [
        ("shop", "ShopWebhookSecretArn"),
        ("crm", "CrmWebhookSecretArn"),
        ("marketplace", "MarketplaceWebhookSecretArn"),
        ("helpdesk", "HelpdeskWebhookSecretArn"),
        ("payments", "PaymentsWebhookSecretArn"),
    ] {
        secrets.insert(source, stack.secret(aws, output).await?);
    }
    let senders = Arc::new(Senders {
        stack: stack.clone(),
        secrets,
        http: reqwest::Client::new(),
    });

    // Load: the senders, the CDC writer and the batch sync, with the faults armed.
    let started = Instant::now();
    let load_started_ms = now_ms();
    // The outage starts about a quarter into the load (a rough guess of its length: 12
    // deliveries a second).
    let outage_from =
        chrono::Utc::now().timestamp_millis() + (plan.webhooks as i64 * 1000 / 12 / 4).max(2000);
    arm_faults(plan, outage_from)?;
    let _armed = FaultsArmed;
    progress.enter(&format!(
        "sending {} webhooks from {} senders, with CDC writes and a batch sync",
        plan.webhooks, plan.senders
    ));
    let work = Arc::new(Mutex::new(
        planned
            .clone()
            .into_iter()
            .collect::<std::collections::VecDeque<_>>(),
    ));
    let resends = Arc::new(Mutex::new(Vec::<Delivery>::new()));
    let results = Arc::new(Mutex::new(HashMap::<usize, Sent>::new()));
    let resent_results = Arc::new(Mutex::new(Vec::<(usize, Sent)>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    // In a set of its own, so it is aborted with the run if the run fails or overruns its deadline.
    let mut reporter = tokio::task::JoinSet::new();
    {
        let (progress, results, total) = (progress.clone(), results.clone(), plan.webhooks);
        reporter.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let answered = results.lock().unwrap().len();
                progress.say(&format!("{answered} of {total} deliveries answered"));
            }
        });
    }
    for _ in 0..plan.senders {
        let (senders, work, resends, results, resent_results) = (
            senders.clone(),
            work.clone(),
            resends.clone(),
            results.clone(),
            resent_results.clone(),
        );
        tasks.spawn(async move {
            loop {
                let next = work.lock().unwrap().pop_front();
                let Some(delivery) = next else { break };
                let sent = senders.send(&delivery).await;
                if delivery.resend && (200..300).contains(&sent.status) {
                    resends.lock().unwrap().push(delivery.clone());
                }
                results.lock().unwrap().insert(delivery.n, sent);
                // Re-sends go out a while after their first acceptance, mixed into the load.
                let due = {
                    let mut r = resends.lock().unwrap();
                    if r.len() >= 8 || (work.lock().unwrap().is_empty() && !r.is_empty()) {
                        r.pop()
                    } else {
                        None
                    }
                };
                if let Some(again) = due {
                    let sent = senders.send(&again).await;
                    resent_results.lock().unwrap().push((again.n, sent));
                }
            }
            // What is left to re-send once the work is done.
            loop {
                let next = resends.lock().unwrap().pop();
                let Some(again) = next else { break };
                let sent = senders.send(&again).await;
                resent_results.lock().unwrap().push((again.n, sent));
            }
        });
    }
    let cdc_keys: Vec<String> = (0..plan.cdc_writes)
        .map(|i| format!("E-{tag}-{i}"))
        .collect();
    {
        let (aws, table, keys) = (
            aws.clone(),
            stack.output("ErpCustomersTableName")?.to_owned(),
            cdc_keys.clone(),
        );
        let pause = Duration::from_millis(
            (plan.webhooks as u64 * 1000 / 12) / plan.cdc_writes.max(1) as u64,
        );
        tasks.spawn(async move {
            let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
            for key in keys {
                let mut tries = 0;
                // A write DynamoDB refuses is written again: what the ERP would do.
                while dynamodb
                    .put_item()
                    .table_name(&table)
                    .item("customer_id", AttributeValue::S(key.clone()))
                    .item("email", AttributeValue::S(format!("{key}@example.com")))
                    .item("credit_limit", AttributeValue::N("5000".into()))
                    .send()
                    .await
                    .is_err()
                    && tries < 5
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                tokio::time::sleep(pause).await;
            }
        });
    }
    let sync_invocations = Arc::new(Mutex::new(0usize));
    {
        let (aws, invocations) = (aws.clone(), sync_invocations.clone());
        tasks.spawn(async move {
            let scheduled =
                json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
            let function = format!("{}-batch-sync", DeployedStack::NAME);
            for _ in 0..60 {
                *invocations.lock().unwrap() += 1;
                match crate::invoke(&aws, &function, &scheduled).await {
                    Ok((None, answer)) if answer["complete"] == true => return,
                    _ => tokio::time::sleep(Duration::from_secs(2)).await,
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a load task panicked")?;
    }
    reporter.abort_all();
    let load_seconds = started.elapsed().as_secs_f64();
    let load_ended_ms = now_ms();
    figures.sync_invocations = *sync_invocations.lock().unwrap();

    let results = std::mem::take(&mut *results.lock().unwrap());
    let resent_results = std::mem::take(&mut *resent_results.lock().unwrap());
    account_answers(&mut figures, &planned, &results, &resent_results);
    figures.load_seconds = load_seconds;
    figures.throughput = figures.accepted as f64 / ((load_ended_ms - load_started_ms) / 1000.0);

    // Faults off, then wait for quiet.
    let (injected, refusals) = disarm_faults()?;
    figures.faults = injected;
    figures.bus_refusals = refusals;
    let accepted: Vec<&Delivery> = planned
        .iter()
        .filter(|d| {
            results
                .get(&d.n)
                .is_some_and(|s| (200..300).contains(&s.status))
        })
        .collect();
    let orders: Vec<&PlacedOrder> = accepted.iter().filter_map(|d| d.order.as_ref()).collect();
    let quiet_started = Instant::now();
    let mut cdc_seen = HashSet::new();
    let mut sync_seen = HashSet::new();
    let mut outcomes: HashMap<String, HashSet<(String, String)>> = HashMap::new();
    let sfn = aws_sdk_sfn::Client::new(aws);
    let machine = stack.output("OrderFulfillmentStateMachineArn")?.to_owned();
    let mut executions;
    let mut calm = 0;
    progress.enter("waiting for the stack to be quiet after the load");
    let mut reported = Instant::now();
    loop {
        drain_subjects(aws, &cdc_queue, &mut cdc_seen, |d| {
            d["subject"]
                .as_str()
                .map(|s| s.trim_start_matches("customer_id=").to_owned())
        })
        .await?;
        drain_subjects(aws, &sync_queue, &mut sync_seen, |d| {
            d["subject"].as_str().map(str::to_owned)
        })
        .await?;
        for event in drain(aws, &outcomes_queue).await? {
            let detail = &event["detail"];
            if let Some(order) = detail["data"]["order_id"].as_str() {
                outcomes.entry(order.to_owned()).or_default().insert((
                    detail["id"].as_str().unwrap_or_default().to_owned(),
                    detail["type"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        executions = list_executions(&sfn, &machine, &tag).await?;
        let running = executions
            .values()
            .flatten()
            .filter(|e| e.0 == "RUNNING")
            .count();
        let busy = busy_queues(aws, &work_queues).await?;
        let done = running == 0
            && busy.is_empty()
            && cdc_seen.len() >= cdc_keys.len()
            && sync_seen.len() >= plan.sync_records
            && orders.iter().all(|o| outcomes.contains_key(&o.id));
        calm = if done { calm + 1 } else { 0 };
        if reported.elapsed() > Duration::from_secs(30) {
            reported = Instant::now();
            let open = orders
                .iter()
                .filter(|o| !outcomes.contains_key(&o.id))
                .count();
            progress.say(&format!(
                "{running} execution(s) running, {open} order(s) without an outcome, CDC {}/{}, \
                 sync {}/{}, busy queues {busy:?}",
                cdc_seen.len(),
                cdc_keys.len(),
                sync_seen.len(),
                plan.sync_records
            ));
        }
        if calm >= 3 || quiet_started.elapsed() > plan.quiet_within {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    figures.quiet_seconds = quiet_started.elapsed().as_secs_f64();
    figures.cdc_seen = (
        cdc_keys.iter().filter(|k| cdc_seen.contains(*k)).count(),
        cdc_keys.len(),
    );
    figures.sync_seen = (
        (0..plan.sync_records)
            .filter(|i| sync_seen.contains(&format!("R-{tag}-{i}")))
            .count(),
        plan.sync_records,
    );

    // What is still moving, and what reached a dead-letter queue.
    progress.enter("counting dead letters and checking every accepted delivery");
    for (queue, depth) in busy_queues(aws, &work_queues).await? {
        figures
            .in_flight
            .push(format!("{queue}: {depth} message(s)"));
    }
    for (name, runs) in &executions {
        if runs.iter().any(|e| e.0 == "RUNNING") {
            figures
                .in_flight
                .push(format!("execution {name} still running"));
        }
    }
    let letters = dead_letters(aws, &stack, &tag).await?;
    // Every letter with its SQS attributes, for diagnosis: `target/bench/soak-letters.jsonl`.
    let dump: String = letters
        .iter()
        .map(|l| {
            json!({"queue": l.queue, "reason": l.reason, "sqs": l.sqs,
                "event": l.event, "subject": l.subject})
            .to_string()
                + "\n"
        })
        .collect();
    let dump_path = crate::report::dir().join("soak-letters.jsonl");
    if let Err(e) = std::fs::create_dir_all(crate::report::dir())
        .and_then(|()| std::fs::write(&dump_path, dump))
    {
        progress.say(&format!("could not write {}: {e}", dump_path.display()));
    }
    for letter in &letters {
        *figures
            .dead_lettered
            .entry(format!("{}: {}", letter.queue, letter.reason))
            .or_default() += 1;
        if letter.reason == RECEIVE_LIMIT {
            figures.letters_without_reason += 1;
        }
    }
    let dead = |needle: &str| letters.iter().any(|l| l.body.contains(needle));

    // Every accepted delivery: in the audit trail exactly once, or dead-lettered.
    let audit = DynamoDbAuditTrail::new(
        aws_sdk_dynamodb::Client::new(aws),
        stack.output("AuditTrailTableName")?,
    );
    let audit = Arc::new(audit);
    let mut lookups = tokio::task::JoinSet::new();
    for chunk in accepted.chunks(accepted.len().div_ceil(8).max(1)) {
        let chunk: Vec<(String, String, f64)> = chunk
            .iter()
            .map(|d| {
                let sent = &results[&d.n];
                (
                    d.correlation_id.clone(),
                    sent.body["eventId"].as_str().unwrap_or_default().to_owned(),
                    sent.first_ms,
                )
            })
            .collect();
        let audit = audit.clone();
        lookups.spawn(async move {
            let mut found = Vec::new();
            for (correlation, event_id, first_ms) in chunk {
                let history = audit.history(&correlation).await;
                found.push((correlation, event_id, first_ms, history));
            }
            found
        });
    }
    while let Some(found) = lookups.join_next().await {
        for (correlation, event_id, first_ms, history) in found? {
            let history = history.with_context(|| format!("the audit trail of {correlation}"))?;
            let entries: Vec<_> = history
                .iter()
                .filter(|e| e.envelope.source.starts_with("busline.webhook."))
                .collect();
            match entries.as_slice() {
                [entry] if entry.envelope.id == event_id => {
                    figures
                        .to_audit_ms
                        .push(entry.recorded_at.timestamp_micros() as f64 / 1000.0 - first_ms);
                }
                [] if dead(&event_id) || dead(&correlation) => {}
                [] => figures.lost.push(format!(
                    "{correlation} (event {event_id}) is not in the audit trail"
                )),
                more => figures.double_effects.push(format!(
                    "{correlation} is in the audit trail {} times",
                    more.len()
                )),
            }
        }
    }

    // Every order: one execution, one terminal event, one status, and effects that agree.
    let tracker = DynamoDbOrderTracker::new(
        aws_sdk_dynamodb::Client::new(aws),
        stack.output("OrderStatusTableName")?,
    );
    let mut taken: HashMap<String, i64> = HashMap::new();
    let mut status_of: HashMap<String, Status> = HashMap::new();
    for order in &orders {
        let id = &order.id;
        let runs = executions.get(id).cloned().unwrap_or_default();
        if runs.is_empty() {
            if !dead(id) {
                figures.lost.push(format!(
                    "order {id} started no saga and is in no dead-letter queue"
                ));
            }
            *figures
                .orders
                .entry("dead-lettered before the saga".into())
                .or_default() += 1;
            continue;
        }
        if runs.len() > 1 {
            figures
                .double_effects
                .push(format!("order {id} has {} executions", runs.len()));
        }
        figures
            .saga_ms
            .extend(runs.iter().filter(|r| r.2 > 0.0).map(|r| r.2 - r.1));
        let view = tracker
            .get(id)
            .await
            .with_context(|| format!("the status of {id}"))?;
        let status = view.as_ref().map(|v| v.status);
        if let Some(status) = status {
            status_of.insert(id.clone(), status);
        }
        let terminal = outcomes.get(id).cloned().unwrap_or_default();
        let ended = match status {
            Some(Status::Fulfilled) => "fulfilled".to_owned(),
            Some(Status::Failed) => format!(
                "failed: {}",
                view.as_ref()
                    .and_then(|v| v.failure_reason.as_deref())
                    .and_then(|r| r.split(':').next())
                    .unwrap_or("?")
            ),
            Some(Status::CompensationFailed) => "compensation failed".to_owned(),
            other => {
                figures.in_flight.push(format!("order {id} is {other:?}"));
                continue;
            }
        };
        *figures.orders.entry(ended.clone()).or_default() += 1;
        if terminal.len() != 1 && !dead(id) {
            figures.double_effects.push(format!(
                "order {id} ({ended}) has {} terminal events: {terminal:?}",
                terminal.len()
            ));
        }
        if status == Some(Status::CompensationFailed) {
            continue; // a person's: its effects are what the alarm is for
        }
        let fulfilled = status == Some(Status::Fulfilled);
        if let Some((_, kind)) = terminal.iter().next() {
            let expected = if fulfilled {
                "io.busline.order.fulfilled.v1"
            } else {
                "io.busline.order.failed.v1"
            };
            if kind != expected {
                figures
                    .double_effects
                    .push(format!("order {id} is {ended} but published {kind}"));
            }
        }
        let net = systems.payment(id).await?.map_or(0, |p| p.net_cents());
        let expected = if fulfilled { order.total_cents } else { 0 };
        if net != expected {
            figures.double_effects.push(format!(
                "order {id} ({ended}) nets {net} cents, expected {expected}"
            ));
        }
        let shipment = systems.shipment(id).await?;
        let live = shipment.as_ref().is_some_and(|s| s.status == "CREATED");
        if live != fulfilled {
            figures
                .double_effects
                .push(format!("order {id} ({ended}) has shipment {shipment:?}"));
        }
        if fulfilled {
            for (sku, q) in &order.lines {
                *taken.entry(sku.clone()).or_default() += q;
            }
        }
    }
    let compensation_failed = figures.orders.contains_key("compensation failed");
    for (sku, stock) in &initial {
        let now = systems.stock(sku).await?.unwrap_or_default();
        let want = stock - taken.get(sku).copied().unwrap_or(0);
        if now != want && !compensation_failed {
            figures
                .double_effects
                .push(format!("{sku}: stock {now}, expected {want}"));
        }
    }

    // The warehouse and the email API: each key accepted once; every part of every order there.
    let seen = warehouse.seen.lock().unwrap().clone();
    let mut accepted_keys: HashMap<&str, usize> = HashMap::new();
    // Per order: the parts received (by sequence) and how many it said there are.
    let mut parts: HashMap<String, (HashSet<u64>, u64)> = HashMap::new();
    let mut fulfilled_there: HashSet<String> = HashSet::new();
    for (key, status, body) in &seen {
        if *status == 200 {
            *accepted_keys.entry(key).or_default() += 1;
            let data = &body["data"];
            if let Some(order) = data["order_id"].as_str() {
                match body["type"].as_str() {
                    Some("io.busline.fulfillment.requested.v1") => {
                        let entry = parts.entry(order.to_owned()).or_default();
                        entry.0.insert(data["sequence"].as_u64().unwrap_or(0));
                        entry.1 = data["total"].as_u64().unwrap_or(0);
                    }
                    Some("io.busline.order.fulfilled.v1") => {
                        fulfilled_there.insert(order.to_owned());
                    }
                    _ => {}
                }
            }
        }
    }
    figures.warehouse = (
        accepted_keys.len(),
        seen.iter().filter(|(_, s, _)| *s == 503).count(),
    );
    for (key, n) in &accepted_keys {
        if *n > 1 {
            figures
                .double_effects
                .push(format!("the warehouse accepted {key} {n} times"));
        }
    }
    for order in &orders {
        let (got, of) = parts
            .get(&order.id)
            .map_or((0, 0), |(got, of)| (got.len() as u64, *of));
        if (got == 0 || got != of) && !dead(&order.id) {
            figures.lost.push(format!(
                "order {}: {got} of its {of} fulfillment requests reached the warehouse",
                order.id
            ));
        }
        let fulfilled = status_of.get(&order.id) == Some(&Status::Fulfilled);
        if fulfilled && !fulfilled_there.contains(&order.id) && !dead(&order.id) {
            figures.lost.push(format!(
                "order {}: order.fulfilled never reached the warehouse",
                order.id
            ));
        }
    }
    let emails = email.seen.lock().unwrap().clone();
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for key in &emails {
        *per_key.entry(key).or_default() += 1;
    }
    figures.emails = per_key.len();
    figures.email_copies = emails.len() - per_key.len();
    for (id, status) in &status_of {
        if *status == Status::Fulfilled
            && !per_key.contains_key(format!("{id}:notify-fulfilled").as_str())
            && !dead(id)
        {
            figures.lost.push(format!(
                "order {id} is fulfilled and its customer was never emailed"
            ));
        }
    }

    // CDC and the batch sync: every change on the bus, or dead-lettered.
    for key in &cdc_keys {
        if !cdc_seen.contains(key) && !dead(key) {
            figures
                .lost
                .push(format!("CDC write {key} never reached the bus"));
        }
    }
    for i in 0..plan.sync_records {
        let id = format!("R-{tag}-{i}");
        if !sync_seen.contains(&id) && !dead(&id) {
            figures
                .lost
                .push(format!("synced record {id} never reached the bus"));
        }
    }

    for queue in [&outcomes_queue, &cdc_queue, &sync_queue] {
        let _ = aws_sdk_sqs::Client::new(aws)
            .delete_queue()
            .queue_url(queue)
            .send()
            .await;
    }
    let events = aws_sdk_eventbridge::Client::new(aws);
    for name in ["outcomes", "cdc", "sync"] {
        let rule = format!("soak-{name}-{tag}");
        let _ = events
            .remove_targets()
            .rule(&rule)
            .event_bus_name(bus)
            .ids("watch")
            .send()
            .await;
        let _ = events
            .delete_rule()
            .name(&rule)
            .event_bus_name(bus)
            .send()
            .await;
    }
    drop(warehouse_server);
    progress.enter("done");
    Ok(figures)
}

/// A stub server on `addr` (which must be free: a soak runs alone) answering every request with
/// `responder`, if given.
async fn stub_at<R: Respond + 'static>(addr: &str, responder: Option<R>) -> Result<MockServer> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("{addr} is free for a stub (a soak runs alone)"))?;
    let server = MockServer::builder().listener(listener).start().await;
    if let Some(responder) = responder {
        Mock::given(wiremock::matchers::any())
            .respond_with(responder)
            .mount(&server)
            .await;
    }
    Ok(server)
}

/// Adds one delivery's sending (its requests, their answer times, the duplicates it was told of).
fn count_requests(figures: &mut Figures, sent: &Sent) {
    figures.requests += sent.attempts;
    figures.answer_ms.extend(&sent.answers_ms);
    figures.duplicates_absorbed += sent.duplicates;
}

/// Counts what the senders were told.
fn account_answers(
    figures: &mut Figures,
    planned: &[Delivery],
    results: &HashMap<usize, Sent>,
    resent: &[(usize, Sent)],
) {
    figures.deliveries = planned.len();
    figures.resent = resent.len();
    for delivery in planned {
        let Some(sent) = results.get(&delivery.n) else {
            figures
                .lost
                .push(format!("delivery {} was never sent", delivery.n));
            continue;
        };
        count_requests(figures, sent);
        let status = sent.status;
        match (status, delivery.kind.refused()) {
            (200..300, false) => figures.accepted += 1,
            (400..500, true) => {
                *figures
                    .refused
                    .entry(format!("{status} {}", delivery.kind.name()))
                    .or_default() += 1;
                let reason = sent.body["reason"].as_str();
                if reason.is_none_or(str::is_empty) {
                    figures.refused_without_reason += 1;
                }
            }
            (0 | 429 | 500.., _) => figures.gave_up += 1,
            _ => figures.misanswered.push(format!(
                "{} delivery {} ({}) answered {status}: {}",
                delivery.source,
                delivery.n,
                delivery.kind.name(),
                sent.body
            )),
        }
    }
    for (n, sent) in resent {
        count_requests(figures, sent);
        if !(200..300).contains(&sent.status) || sent.duplicates == 0 {
            figures.double_effects.push(format!(
                "delivery {n} sent again was answered {} {} instead of a duplicate",
                sent.status, sent.body
            ));
        }
    }
}

/// Receives (and deletes) everything waiting in `queue`, as JSON bodies.
async fn drain(aws: &SdkConfig, queue: &str) -> Result<Vec<Value>> {
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut bodies = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await?;
        if out.messages().is_empty() {
            return Ok(bodies);
        }
        for message in out.messages() {
            bodies.push(
                serde_json::from_str(message.body().unwrap_or_default()).unwrap_or(Value::Null),
            );
            if let Some(handle) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(queue)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
    }
}

/// Drains `queue` and adds the subject `pick` finds in each event's detail to `seen`.
async fn drain_subjects(
    aws: &SdkConfig,
    queue: &str,
    seen: &mut HashSet<String>,
    pick: impl Fn(&Value) -> Option<String>,
) -> Result<()> {
    for event in drain(aws, queue).await? {
        if let Some(subject) = pick(&event["detail"]) {
            seen.insert(subject);
        }
    }
    Ok(())
}

/// The saga's executions for this run, by name: (status, start ms, stop ms).
async fn list_executions(
    sfn: &aws_sdk_sfn::Client,
    machine: &str,
    tag: &str,
) -> Result<HashMap<String, Vec<(String, f64, f64)>>> {
    let mut all: HashMap<String, Vec<(String, f64, f64)>> = HashMap::new();
    let mut token = None;
    loop {
        let page = sfn
            .list_executions()
            .state_machine_arn(machine)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await?;
        for e in page.executions() {
            if e.name().contains(tag) {
                let ms = |t: &aws_smithy_types::DateTime| t.to_millis().unwrap_or_default() as f64;
                all.entry(e.name().to_owned()).or_default().push((
                    e.status().as_str().to_owned(),
                    ms(e.start_date()),
                    e.stop_date().map_or(0.0, ms),
                ));
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(all);
        }
    }
}

/// The stack's work queues (every queue of the stack that is not a dead-letter or hold queue), by
/// logical id, with their URLs.
async fn stack_work_queues(aws: &SdkConfig) -> Result<Vec<(String, String)>> {
    let cloudformation = aws_sdk_cloudformation::Client::new(aws);
    let mut queues = Vec::new();
    let mut token = None;
    loop {
        let page = cloudformation
            .list_stack_resources()
            .stack_name(DeployedStack::NAME)
            .set_next_token(token)
            .send()
            .await?;
        for resource in page.stack_resource_summaries() {
            let logical = resource.logical_resource_id().unwrap_or_default();
            let parked = ["DeadLetter", "Finance", "Unstarted", "Unpublished"];
            if resource.resource_type() == Some("AWS::SQS::Queue")
                && !parked.iter().any(|p| logical.contains(p))
                && let Some(url) = resource.physical_resource_id()
            {
                queues.push((logical.to_owned(), url.to_owned()));
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(queues);
        }
    }
}

/// The work queues that hold messages (visible, in flight or delayed), with the count.
async fn busy_queues(aws: &SdkConfig, queues: &[(String, String)]) -> Result<Vec<(String, i64)>> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut busy = Vec::new();
    for (name, url) in queues {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await?;
        let depth: i64 = attributes
            .attributes()
            .into_iter()
            .flatten()
            .map(|(_, v)| v.parse::<i64>().unwrap_or(0))
            .sum();
        if depth > 0 {
            busy.push((name.to_owned(), depth));
        }
    }
    Ok(busy)
}

/// The reason given a letter that carries none: SQS moved it at the queue's receive limit.
const RECEIVE_LIMIT: &str = "receive limit (SQS redrive)";

/// A letter of this run in one of the stack's dead-letter (or hold) queues.
struct RunLetter {
    queue: String,
    reason: String,
    body: String,
    /// The id and subject of the event it holds, when it holds one as EventBridge delivers it.
    event: Value,
    subject: Value,
    /// The letter's SQS message id and system attributes (`ApproximateReceiveCount`,
    /// `SentTimestamp`, `ApproximateFirstReceiveTimestamp`), for diagnosis.
    sqs: Value,
}

/// Drains every dead-letter and hold queue of the stack and keeps this run's letters (their body
/// names the run's tag), with the reason each carries: busline's `busline.error_type`, EventBridge's
/// `ERROR_CODE`, a Lambda on-failure record's error, or the queue's own receive limit.
async fn dead_letters(aws: &SdkConfig, stack: &DeployedStack, tag: &str) -> Result<Vec<RunLetter>> {
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut letters = Vec::new();
    let mut outputs: Vec<(&String, &String)> = stack
        .outputs
        .iter()
        .filter(|(k, _)| {
            k.ends_with("DeadLetterQueueUrl")
                || [
                    "UnstartedOrdersQueueUrl",
                    "UnpublishedOutcomesQueueUrl",
                    "FinanceQueueUrl",
                ]
                .contains(&k.as_str())
        })
        .collect();
    outputs.sort();
    for (output, url) in outputs {
        let queue = output.trim_end_matches("Url").to_owned();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .wait_time_seconds(0)
                .send()
                .await?;
            if out.messages().is_empty() {
                break;
            }
            for message in out.messages() {
                let body = message.body().unwrap_or_default().to_owned();
                let attribute = |name: &str| {
                    message
                        .message_attributes()
                        .and_then(|a| a.get(name))
                        .and_then(|v| v.string_value())
                        .map(str::to_owned)
                };
                if body.contains(tag) {
                    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let reason = attribute("busline.error_type")
                        .or_else(|| attribute("ERROR_CODE"))
                        .or_else(|| {
                            json["responsePayload"]["errorType"]
                                .as_str()
                                .map(|e| format!("async retries exhausted ({e})"))
                        })
                        .or_else(|| json["Error"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| RECEIVE_LIMIT.to_owned());
                    let system: serde_json::Map<String, Value> = message
                        .attributes()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.as_str().to_owned(), Value::from(v.as_str())))
                        .collect();
                    letters.push(RunLetter {
                        queue: queue.clone(),
                        reason,
                        event: json["detail"]["id"].clone(),
                        subject: json["detail"]["subject"].clone(),
                        body,
                        sqs: json!({"message_id": message.message_id(), "attributes": system}),
                    });
                }
                if let Some(handle) = message.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
    }
    Ok(letters)
}

/// Fails with the figures when a soak broke a promise, or when its faults never happened (then it
/// proved nothing).
pub fn check(figures: &Figures) -> Result<()> {
    let faults: usize = figures.faults.values().sum();
    if !figures.conserved() {
        bail!("the soak broke a promise:\n{}", figures.text());
    }
    if faults == 0 || figures.bus_refusals == 0 {
        bail!(
            "the soak's faults never happened, so it proved nothing:\n{}",
            figures.text()
        );
    }
    if figures.refused.is_empty() || figures.duplicates_absorbed == 0 || figures.orders.is_empty() {
        bail!(
            "the soak sent no poison, no duplicate or no order:\n{}",
            figures.text()
        );
    }
    Ok(())
}
