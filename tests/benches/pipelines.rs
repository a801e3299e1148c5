//! Two of busline's paths end to end on the deployed stack, one event at a time, 50 events each
//! after three warm-up ones, every function a real process:
//!
//! - **ingest → consumer**: a signed web-shop order POSTed to ingest-webhook's Function URL →
//!   `PutEvents` → the placed-orders rule and queue → the audit-trail consumer, until the consumer
//!   has recorded the event (its `recorded_at`);
//! - **CDC write → bus**: a `PutItem` on the ERP's customers table → its stream → cdc-stream →
//!   `PutEvents`, until the change is on the bus (delivered to a queue watching it; its
//!   `SentTimestamp`).
//!
//! Beside them, in the same run, the bus alone: `PutEvents` of the same orders from this process.
//!
//! All times are on this host's clock: LocalStack and the functions run here. The time inside
//! busline's handlers is each function's own duration from its `REPORT` line (the event handed
//! over to the answer), matched to the event by when the invocation started. The web-shop orders
//! fan out as they do in production (translate, enrich and the saga, the customer master); each
//! next event waits for that to settle.
//!
//! Needs LocalStack and the deployed stack (`make bench` does both). Writes
//! `target/bench/pipelines.json` and prints tables.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use busline::audit::{AuditTrail, DynamoDbAuditTrail};
use busline::{Envelope, EventType};
use busline_tests::report::{Column, Section, Table};
use busline_tests::{
    DeployedStack, SAMPLE_SHOP_ORDER, invocation_reports, localstack, percentile, signed_headers,
    watch_bus,
};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, ResponseTemplate};

const EVENTS: usize = 50;
const WARM_UP: usize = 3;

/// The pause after each order: its fan-out (translate, enrich, a saga that fails its credit
/// check, the customer master) runs on the same two cores as LocalStack, and would otherwise slow
/// the next order's every hop.
const SETTLE: Duration = Duration::from_millis(1200);

/// One event's trip, Unix ms on this host's clock.
#[derive(Debug)]
struct Trip {
    /// Just before the first call.
    start: f64,
    /// When the first function had answered, where the client sees it (ingest's 202).
    answered: Option<f64>,
    /// When the event reached the end of the path.
    end: f64,
}

fn now_ms() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let aws = localstack().await?;
    let stack = DeployedStack::read(&aws).await?;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    // The orders' fulfillment requests go out to the warehouse: a receiver where the LocalStack
    // deployment points it, so that they are delivered rather than retried behind later benchmarks.
    let listener = std::net::TcpListener::bind("127.0.0.1:8027")
        .context("port 8027 is free for the warehouse's receiver")?;
    let warehouse = MockServer::builder().listener(listener).start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&warehouse)
        .await;
    stack.close_circuit(&aws, "warehouse").await?;

    let (bus_matched, bus_unmatched) = bus_alone(&aws, stack.output("EventBusName")?, &tag).await?;
    let ingest = ingest_to_consumer(&aws, &stack, &tag).await?;
    let cdc = cdc_to_bus(&aws, &stack, &tag).await?;
    // The last invocations' REPORT lines reach CloudWatch just after their answers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let function = |name: &str| format!("{}-{name}", DeployedStack::NAME);
    let ingest_handler = handler_times(&aws, &function("ingest-webhook"), &ingest).await?;
    let consumer_handler = handler_times(&aws, &function("audit-trail"), &ingest).await?;
    let cdc_handler = handler_times(&aws, &function("cdc-stream"), &cdc).await?;

    let mut section = Section::new(
        50,
        "End to end on LocalStack: ingest → consumer, CDC write → bus",
        &format!(
            "{EVENTS} events on each path, one at a time, after {WARM_UP} warm-up ones, on the \
             deployed stack with every function a real process (`tests/benches/pipelines.rs`). \
             Handler time is each function's own duration from its `REPORT` line. The web-shop \
             orders fan out as in production (translate, enrich, the saga, the customer master); \
             each next order waits {} s for that to settle.",
            SETTLE.as_secs_f64()
        ),
    );

    let column = |f: &dyn Fn(&Trip) -> f64, trips: &[Trip]| trips.iter().map(f).collect::<Vec<_>>();
    let end_to_end = column(&|t| t.end - t.start, &ingest);
    let through_ingest = column(&|t| t.answered.unwrap_or(t.start) - t.start, &ingest);
    let after_ingest = column(&|t| t.end - t.answered.unwrap_or(t.start), &ingest);
    let mut table = Table::hops(&format!(
        "**Ingest → consumer**: signed web-shop order POSTed to the Function URL → the audit-trail \
         consumer has recorded it ({EVENTS} events):"
    ));
    let total: f64 = end_to_end.iter().sum();
    for (hop, values) in [
        ("end to end (POST → recorded by the consumer)", &end_to_end),
        ("Function URL → ingest's 202", &through_ingest),
        ("  of which ingest-webhook's handler", &ingest_handler),
        (
            "202 → bus → rule → queue → consumer has recorded",
            &after_ingest,
        ),
        ("  of which audit-trail's handler", &consumer_handler),
    ] {
        table.hop(hop, values, total);
    }
    section
        .tables
        .push(Table::latency_goal("ingest → consumer", &end_to_end, 500.0));
    section.tables.push(table);
    let mut bus = Table::new(
        &format!(
            "The bus alone in the same run: {EVENTS} `PutEvents` each from this process, of the \
             same orders (their fan-out included, with the same pause after each) and of an \
             event no rule matches:"
        ),
        vec![
            Column::text("PutEvents of"),
            Column::number("p50", "ms", 1),
            Column::number("p99", "ms", 1),
        ],
    );
    for (what, values) in [
        ("a web-shop order (three rules match)", &bus_matched),
        ("an event no rule matches", &bus_unmatched),
    ] {
        bus.row(vec![
            json!(what),
            json!(percentile(values, 0.5)),
            json!(percentile(values, 0.99)),
        ]);
    }
    section.tables.push(bus);
    let handlers: f64 = ingest_handler.iter().chain(&consumer_handler).sum();
    section.notes.push(format!(
        "Ingest → consumer: busline's two handlers take {:.1} % of the end-to-end time (their \
         DynamoDB, Secrets Manager and EventBridge calls included). They overlap: ingest \
         publishes before it records the delivery and answers, so the consumer may have recorded \
         the event before the 202 reaches the sender.",
        100.0 * handlers / total
    ));

    let end_to_end = column(&|t| t.end - t.start, &cdc);
    let total: f64 = end_to_end.iter().sum();
    let mut table = Table::hops(&format!(
        "**CDC write → bus**: `PutItem` on the ERP's customers table → the change is on the bus \
         ({EVENTS} events):"
    ));
    table
        .hop("end to end (PutItem → on the bus)", &end_to_end, total)
        .hop("  of which cdc-stream's handler", &cdc_handler, total);
    section.tables.push(table);
    section.notes.push(
        "Between the bus and the consumer: the rule and the queue take tens of milliseconds (see \
         the delivery section's bus → queue hop), then LocalStack's SQS event-source mapping, \
         which long-polls (busline's patch, `esm_long_polling.py`; without it the mapping backed \
         off 0.5–1.5 s after every empty poll, and an event on a quiet queue waited that long)."
            .to_owned(),
    );
    section.notes.push(format!(
        "CDC write → bus: {:.1} % of the time is inside cdc-stream; the rest is the stream, the \
         event-source mapping's polling (every 0.1 s; the LocalStack deployment sets no batching \
         window, `CdcBatchingWindowSeconds=0`, where AWS's default here is 1 s) and the bus.",
        100.0 * cdc_handler.iter().sum::<f64>() / total
    ));
    section.publish("pipelines")
}

/// `PutEvents` of orders as ingest publishes them, and of events no rule matches, one at a time:
/// the bus's own share of ingest's handler time (ms each).
async fn bus_alone(
    aws: &aws_config::SdkConfig,
    bus: &str,
    tag: &str,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let events = aws_sdk_eventbridge::Client::new(aws);
    let mut order: Value = serde_json::from_str(SAMPLE_SHOP_ORDER)?;
    let (mut matched, mut unmatched) = (Vec::new(), Vec::new());
    for i in 0..WARM_UP + EVENTS {
        order["order_id"] = json!(format!("SO-bus-{tag}-{i}"));
        // The unrouted event first, while the bus is quiet; the order's fan-out follows it.
        for (event_type, samples) in [
            ("io.busline.bench.unrouted.v1", &mut unmatched),
            ("io.busline.shop.order.placed.v1", &mut matched),
        ] {
            let envelope = Envelope::new(
                uuid::Uuid::new_v4().to_string(),
                "busline.webhook.shop",
                EventType::parse(event_type)?,
                order.clone(),
            );
            let entry = PutEventsRequestEntry::builder()
                .event_bus_name(bus)
                .source(&envelope.source)
                .detail_type(event_type)
                .detail(serde_json::to_string(&envelope)?)
                .build();
            let start = now_ms();
            let out = events.put_events().entries(entry).send().await?;
            ensure!(out.failed_entry_count() == 0, "PutEvents failed: {out:?}");
            if i >= WARM_UP {
                samples.push(now_ms() - start);
            }
        }
        tokio::time::sleep(SETTLE).await;
    }
    Ok((matched, unmatched))
}

/// POSTs signed orders one at a time, each after the previous one reached the audit trail.
async fn ingest_to_consumer(
    aws: &aws_config::SdkConfig,
    stack: &DeployedStack,
    tag: &str,
) -> Result<Vec<Trip>> {
    let secret = stack.secret(aws, "ShopWebhookSecretArn").await?;
    let trail = DynamoDbAuditTrail::new(
        aws_sdk_dynamodb::Client::new(aws),
        stack.output("AuditTrailTableName")?,
    );
    let mut order: Value = serde_json::from_str(SAMPLE_SHOP_ORDER)?;
    let mut trips = Vec::new();
    for i in 0..WARM_UP + EVENTS {
        order["order_id"] = json!(format!("SO-pipe-{tag}-{i}"));
        let body = order.to_string();
        let headers = signed_headers(&secret, &body, &format!("pipe-{tag}-{i}"));
        let start = now_ms();
        let (status, accepted) = stack
            .post_webhook("/webhooks/shop", &body, &headers)
            .await?;
        let answered = now_ms();
        ensure!(status == 202, "ingest answered {status}: {accepted}");
        let event_id = accepted["eventId"]
            .as_str()
            .context("no eventId in ingest's answer")?;
        let waiting = Instant::now();
        let recorded = loop {
            if let Some(entry) = trail.history(event_id).await?.first() {
                break entry.recorded_at.timestamp_micros() as f64 / 1000.0;
            }
            if waiting.elapsed() > Duration::from_secs(30) {
                bail!("event {event_id} never reached the audit trail");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if i >= WARM_UP {
            trips.push(Trip {
                start,
                answered: Some(answered),
                end: recorded,
            });
        }
        tokio::time::sleep(SETTLE).await;
    }
    Ok(trips)
}

/// Writes ERP customers one at a time, each after the previous change reached the bus.
async fn cdc_to_bus(
    aws: &aws_config::SdkConfig,
    stack: &DeployedStack,
    tag: &str,
) -> Result<Vec<Trip>> {
    let bus = stack.output("EventBusName")?;
    let table = stack.output("ErpCustomersTableName")?;
    let prefix = format!("pipe-{tag}-");
    let watch = format!("bench-cdc-{tag}");
    // cdc-stream names the item by its key: `customer_id=<id>`.
    let pattern = json!({"detail-type": ["io.busline.cdc.erp-customers.changed.v1"],
        "detail": {"subject": [{"prefix": format!("customer_id={prefix}")}]}});
    let queue = watch_bus(aws, bus, &watch, &pattern).await?;
    let trips = cdc_trips(aws, table, &queue, &prefix).await;
    // The watch goes whatever happened: a rule left on the bus would slow every later event.
    let events = aws_sdk_eventbridge::Client::new(aws);
    events
        .remove_targets()
        .rule(&watch)
        .event_bus_name(bus)
        .ids("watch")
        .send()
        .await?;
    events
        .delete_rule()
        .name(&watch)
        .event_bus_name(bus)
        .send()
        .await?;
    aws_sdk_sqs::Client::new(aws)
        .delete_queue()
        .queue_url(&queue)
        .send()
        .await?;
    trips
}

async fn cdc_trips(
    aws: &aws_config::SdkConfig,
    table: &str,
    queue: &str,
    prefix: &str,
) -> Result<Vec<Trip>> {
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut trips = Vec::new();
    for i in 0..WARM_UP + EVENTS {
        let customer = format!("{prefix}{i}");
        let start = now_ms();
        dynamodb
            .put_item()
            .table_name(table)
            .item("customer_id", AttributeValue::S(customer.clone()))
            .item(
                "email",
                AttributeValue::S(format!("{customer}@example.com")),
            )
            .item("credit_limit", AttributeValue::N("5000".into()))
            .send()
            .await?;
        let waiting = Instant::now();
        let on_bus = 'found: loop {
            let out = sqs
                .receive_message()
                .queue_url(queue)
                .wait_time_seconds(1)
                .max_number_of_messages(10)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send()
                .await?;
            for message in out.messages() {
                if let Some(handle) = message.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(queue)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
                let body: Value = serde_json::from_str(message.body().unwrap_or_default())?;
                if body["detail"]["subject"] == format!("customer_id={customer}").as_str() {
                    let sent = message
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                        .context("no SentTimestamp")?;
                    break 'found sent.parse::<f64>()?;
                }
            }
            if waiting.elapsed() > Duration::from_secs(30) {
                bail!("the change to {customer} never reached the bus");
            }
        };
        if i >= WARM_UP {
            trips.push(Trip {
                start,
                answered: None,
                end: on_bus,
            });
        }
    }
    Ok(trips)
}

/// Each trip's time inside `function`: the durations of its invocations that started during the
/// trip (before the next one began).
async fn handler_times(
    aws: &aws_config::SdkConfig,
    function: &str,
    trips: &[Trip],
) -> Result<Vec<f64>> {
    let reports = invocation_reports(aws, function).await?;
    let mut times = Vec::with_capacity(trips.len());
    for (i, trip) in trips.iter().enumerate() {
        let until = trips.get(i + 1).map_or(f64::MAX, |next| next.start);
        let during: Vec<f64> = reports
            .iter()
            .filter(|(at, duration)| (trip.start..until).contains(&(*at as f64 - duration)))
            .map(|(_, duration)| *duration)
            .collect();
        ensure!(
            !during.is_empty(),
            "no REPORT line of {function} for the trip starting at {}",
            trip.start
        );
        times.push(during.iter().sum());
    }
    Ok(times)
}
