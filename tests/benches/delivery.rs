//! Webhook delivery end to end on LocalStack: 200 `fulfillment.requested` events put on the bus as
//! fast as `PutEvents` takes them, through the rule, the deliveries queue and deliver-webhook (a real
//! process), to a fast local receiver (a stub on 127.0.0.1:8027, where the LocalStack deployment
//! points `WarehouseWebhookUrl`, answering 200 at once).
//!
//! Each event's time is split into its hops, all on this host's clock (milliseconds):
//! - **bus → queue**: `PutEvents` called → the message's `SentTimestamp` on the deliveries queue
//!   (EventBridge and the rule; LocalStack's);
//! - **queue → handler**: `SentTimestamp` → deliver-webhook took the message (`started_at_ms` in its
//!   "delivered" log line; the event source mapping's polling);
//! - **handler → receiver**: deliver-webhook took it → the receiver had the request (busline's own
//!   code: the circuit's state in DynamoDB, signing, the POST).
//!
//! Throughput is events delivered per second over the run, beside the baseline of the same run: how
//! fast the bus filled the deliveries queue with the same events. Ten warm-up events are not
//! counted. After the burst, 30 events go one at a time (each put once the one before it has
//! arrived): the latency of one event on a quiet queue, which the report holds to its goal (p99
//! ≤ 1 s); the burst's latency is its backlog. Needs LocalStack and the deployed stack (`make
//! bench` does both). Writes `target/bench/delivery.json` (its section of the report) and prints a
//! table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use busline::bus::{EventBridgePublisher, EventPublisher};
use busline::{Envelope, EventType};
use busline_tests::report::{Section, Table};
use busline_tests::{DeployedStack, function_log_lines, localstack};
use chrono::Utc;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const EVENTS: usize = 200;
const WARM_UP: usize = 10;
/// Events delivered one at a time after the burst.
const PACED: usize = 30;
const WAREHOUSE: &str = "127.0.0.1:8027";
const SOURCE: &str = "busline.bench";

/// Answers 200 at once and notes when each idempotency key first arrived.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<HashMap<String, i64>>>);

impl Respond for Receiver {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let now = Utc::now().timestamp_millis();
        if let Some(key) = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
        {
            self.0.lock().unwrap().entry(key.to_owned()).or_insert(now);
        }
        ResponseTemplate::new(200)
    }
}

fn event(id: &str) -> Envelope<Value> {
    Envelope::new(
        id,
        SOURCE,
        EventType::parse("io.busline.fulfillment.requested.v1").unwrap(),
        json!({"order_id": id, "correlation_id": id, "warehouse": "DUB-1", "sequence": 1, "total": 1,
               "lines": [{"line_no": 1, "sku": "KB-RED-01", "quantity": 2}]}),
    )
    .with_subject(id.to_owned())
}

/// Puts the events on the bus ten at a time, as fast as it takes them; returns when each was put.
async fn publish(bus: &EventBridgePublisher, ids: &[String]) -> Result<HashMap<String, i64>> {
    let mut published = HashMap::new();
    for chunk in ids.chunks(10) {
        let at = Utc::now().timestamp_millis();
        let events: Vec<_> = chunk.iter().map(|id| event(id)).collect();
        bus.publish(&events).await?;
        published.extend(chunk.iter().map(|id| (id.clone(), at)));
    }
    Ok(published)
}

async fn wait_for(receiver: &Receiver, ids: &[String], within: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let got = {
            let seen = receiver.0.lock().unwrap();
            ids.iter()
                .filter(|id| seen.contains_key(&format!("{SOURCE}:{id}")))
                .count()
        };
        if got == ids.len() {
            return Ok(());
        }
        if started.elapsed() > within {
            bail!("{got} of {} events delivered within {within:?}", ids.len());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// deliver-webhook's "delivered" lines for `ids`: event id → (sent_at_ms, started_at_ms).
async fn handler_times(
    aws: &aws_config::SdkConfig,
    ids: &[String],
) -> Result<HashMap<String, (i64, i64)>> {
    let function = format!("{}-deliver-webhook", DeployedStack::NAME);
    let started = Instant::now();
    loop {
        let mut times = HashMap::new();
        for line in function_log_lines(aws, &function).await? {
            let Ok(log) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if log["message"] != "delivered" {
                continue;
            }
            if let (Some(id), Some(sent), Some(took)) = (
                log["event_id"].as_str(),
                log["sent_at_ms"].as_i64(),
                log["started_at_ms"].as_i64(),
            ) {
                times.entry(id.to_owned()).or_insert((sent, took));
            }
        }
        times.retain(|id, _| ids.contains(id));
        if times.len() == ids.len() || started.elapsed() > Duration::from_secs(30) {
            return Ok(times);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let aws = localstack().await?;
    let stack = DeployedStack::read(&aws).await?;
    let listener =
        std::net::TcpListener::bind(WAREHOUSE).context("port 8027 is free for the receiver")?;
    let server = MockServer::builder().listener(listener).start().await;
    let receiver = Receiver::default();
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(receiver.clone())
        .mount(&server)
        .await;
    // Earlier deliveries found no one listening: start from a closed circuit.
    stack.close_circuit(&aws, "warehouse").await?;
    let bus = EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::new(&aws),
        stack.output("EventBusName")?,
    );
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    let warm: Vec<String> = (0..WARM_UP).map(|i| format!("warm-{tag}-{i}")).collect();
    publish(&bus, &warm).await?;
    wait_for(&receiver, &warm, Duration::from_secs(120)).await?;

    let ids: Vec<String> = (0..EVENTS).map(|i| format!("bench-{tag}-{i:03}")).collect();
    let published = publish(&bus, &ids).await?;
    wait_for(&receiver, &ids, Duration::from_secs(180)).await?;
    let received: HashMap<String, i64> = {
        let seen = receiver.0.lock().unwrap();
        ids.iter()
            .map(|id| (id.clone(), seen[&format!("{SOURCE}:{id}")]))
            .collect()
    };
    // Then one at a time, each put once the one before it arrived: the latency a single event
    // sees on a quiet queue, where the burst above measures the backlog.
    let mut paced = Vec::with_capacity(PACED);
    for i in 0..PACED {
        let id = format!("paced-{tag}-{i:03}");
        let put = publish(&bus, std::slice::from_ref(&id)).await?[&id];
        wait_for(
            &receiver,
            std::slice::from_ref(&id),
            Duration::from_secs(60),
        )
        .await?;
        let at = receiver.0.lock().unwrap()[&format!("{SOURCE}:{id}")];
        paced.push((at - put) as f64);
    }
    let handled = handler_times(&aws, &ids).await?;
    if handled.len() < ids.len() {
        bail!(
            "deliver-webhook logged {} of {} deliveries",
            handled.len(),
            ids.len()
        );
    }

    let (mut bus_hop, mut queue_hop, mut handler_hop, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in &ids {
        let (sent, took) = handled[id];
        bus_hop.push((sent - published[id]) as f64);
        queue_hop.push((took - sent) as f64);
        handler_hop.push((received[id] - took) as f64);
        total.push((received[id] - published[id]) as f64);
    }
    let sum: f64 = total.iter().sum();
    let first = *published.values().min().unwrap();
    let last_received = *received.values().max().unwrap();
    let last_sent = handled.values().map(|(sent, _)| *sent).max().unwrap();
    let delivered_per_s = EVENTS as f64 / ((last_received - first).max(1) as f64 / 1000.0);
    let enqueued_per_s = EVENTS as f64 / ((last_sent - first).max(1) as f64 / 1000.0);
    let mut section = Section::new(
        70,
        "Webhook delivery on LocalStack",
        &format!(
            "{EVENTS} `fulfillment.requested` events put on the bus as fast as it takes them, \
             through the rule, the deliveries queue and deliver-webhook (a real process) to a \
             local receiver answering 200 at once; each event's time split into hops on one clock \
             (the handler logs when it took each message and the queue's `SentTimestamp`). \
             `tests/benches/delivery.rs`."
        ),
    );
    section.tables.push(Table::latency_goal(
        &format!("one event at a time ({PACED}), PutEvents → receiver"),
        &paced,
        1000.0,
    ));
    let mut table = Table::hops(&format!("The burst of {EVENTS}, hop by hop:"));
    table
        .hop("end to end (PutEvents → receiver)", &total, sum)
        .hop("bus → queue (EventBridge, rule)", &bus_hop, sum)
        .hop(
            "queue → handler (event-source mapping, the backlog)",
            &queue_hop,
            sum,
        )
        .hop(
            "handler → receiver (busline: circuit, signing, POST)",
            &handler_hop,
            sum,
        );
    section.tables.push(table);
    section.notes.push(format!(
        "Throughput: {delivered_per_s:.1} events/s delivered, {:.2}× the rate at which the bus \
         filled the deliveries queue with them in the same run ({enqueued_per_s:.1}/s). The limit \
         is LocalStack's single SQS poller (one batch of ten at a time, each an invocation through \
         its Lambda service); on AWS, pollers and concurrent environments scale with the backlog.",
        delivered_per_s / enqueued_per_s
    ));
    section.publish("delivery")
}
