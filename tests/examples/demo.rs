//! `make demo`: two orders through the stack `make deploy-local` deployed from `template.yaml` on
//! LocalStack, each a signed webhook into the ingest function, then the order-fulfillment saga on
//! Step Functions with every step a real function process. One is fulfilled (and its customer
//! emailed, through a stub email API on 127.0.0.1:8025); the other's card is declined, and the saga
//! refunds and releases what it did. Both timelines are read from `GET /orders/{id}`; the
//! fulfilled order's whole trace, every function it passed through, from the logs (as
//! `make trace ID=<order id>` prints it).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use busline::audit::{AuditTrail, DynamoDbAuditTrail};
use busline_tests::saga::Scenario;
use busline_tests::{localstack, signed_headers};
use chrono::{DateTime, Utc};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FINISH: Duration = Duration::from_secs(90);
const EMAIL_API: &str = "127.0.0.1:8025";
const WAREHOUSE: &str = "127.0.0.1:8027";

#[tokio::main]
async fn main() -> Result<()> {
    let aws = localstack().await?;
    // The email API the stack's notify-customer function calls on LocalStack (samconfig.toml).
    let emails = stub(
        EMAIL_API,
        "/emails",
        202,
        "the demo will not show the customer email",
    )
    .await;
    // The warehouse's webhook endpoint, where deliver-webhook sends fulfillment requests and
    // fulfilled orders on LocalStack (samconfig.toml): it takes them.
    let warehouse = stub(
        WAREHOUSE,
        "/hooks",
        200,
        "deliveries to the warehouse will fail and retry",
    )
    .await;

    println!(
        "\n==> Seeding the reference systems (the fulfillment table): two customers, 10 of each SKU"
    );
    let fulfilled = Scenario::new(&aws, 1_000_000, false, 9).await?;
    let declined = Scenario::new(&aws, 1_000_000, true, 0).await?;
    println!(
        "    {}: credit 10,000.00 EUR          {}: credit 10,000.00 EUR, card declines",
        fulfilled.order.customer.id, declined.order.customer.id
    );

    let stack = fulfilled.stack().clone();
    if warehouse.is_some() {
        // Deliveries of an earlier run, with no one listening, may have opened the circuit.
        stack.close_circuit(&aws, "warehouse").await?;
    }
    let secret = stack.secret(&aws, "ShopWebhookSecretArn").await?;
    let mut sent = Vec::new();
    for scenario in [&fulfilled, &declined] {
        let body = scenario.webhook_body()?;
        let headers = signed_headers(&secret, &body, &format!("demo-{}", scenario.order.order_id));
        let at = Utc::now();
        let (status, answer) = stack
            .post_webhook("/webhooks/shop", &body, &headers)
            .await?;
        println!(
            "\n==> POST {}webhooks/shop  order {} ({} lines, {} cents)\n<== {status} {answer}",
            stack.output("WebhookUrl")?,
            scenario.order.order_id,
            scenario.order.lines.len(),
            scenario.order.total_cents
        );
        if status != 202 {
            bail!(
                "the ingest function refused order {}",
                scenario.order.order_id
            );
        }
        let event_id = answer["eventId"].as_str().context("no eventId")?.to_owned();
        sent.push((at, event_id));
    }

    println!(
        "\n==> Following both sagas through GET {}orders/{{id}} ...",
        stack.output("OrderStatusUrl")?
    );
    for (scenario, (at, event_id)) in [&fulfilled, &declined].into_iter().zip(&sent) {
        let finished = scenario.finished(FINISH).await?;
        let (_, view) = scenario.status().await?;
        print_timeline(&view, *at);
        println!(
            "    execution {}: {}",
            finished.status,
            finished.states.join(" > ")
        );
        let trail = DynamoDbAuditTrail::new(
            aws_sdk_dynamodb::Client::new(&aws),
            stack.output("AuditTrailTableName")?,
        );
        let kept = trail.history(event_id).await?.into_iter().next();
        println!(
            "    order.placed {event_id}: {}",
            kept.map_or("not (yet) in the audit trail".to_owned(), |e| format!(
                "kept in the audit trail at +{} ms",
                (e.recorded_at - *at).num_milliseconds()
            ))
        );
    }

    let events = declined.events(Duration::from_secs(1)).await?;
    let failed = events
        .iter()
        .find(|e| e["type"] == "io.busline.order.failed.v1")
        .context("no order.failed event for the declined order")?;
    println!(
        "\n==> order.failed on the bus:\n{}",
        serde_json::to_string_pretty(failed)?
    );
    declined.check_consistent(false, &events).await?;
    let events = fulfilled.events(Duration::from_secs(1)).await?;
    fulfilled.check_consistent(true, &events).await?;
    println!(
        "\n==> Invariants hold for both: stock, payment ledger, shipments, one terminal event each, and the status API agrees."
    );

    if let Some(server) = emails {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let requests = server.received_requests().await.unwrap_or_default();
            let ours = requests
                .iter()
                .find(|r| String::from_utf8_lossy(&r.body).contains(&fulfilled.order.order_id));
            if let Some(request) = ours {
                let email: Value = serde_json::from_slice(&request.body)?;
                println!(
                    "\n==> The email API was asked to send (Idempotency-Key {}):\n    to: {}\n    subject: {}\n    {}",
                    request
                        .headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("?"),
                    email["to"].as_str().unwrap_or("?"),
                    email["subject"].as_str().unwrap_or("?"),
                    email["text"].as_str().unwrap_or("?")
                );
                break;
            }
            if Instant::now() > deadline {
                println!("\n(no email reached the stub within 15 s; see the notify-customer logs)");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The same journey, from the logs: every hop of the order's trace (`make trace ID=<id>`).
    let order_id = &fulfilled.order.order_id;
    println!("\n==> make trace ID={order_id}: the order's hops, from the functions' logs\n");
    let journey = busline_tests::trace::journey(&aws, order_id).await?;
    busline_tests::trace::print(order_id, &journey);
    Ok(())
}

/// A stub answering `status` to every POST to `route` on `address`, or `None` (saying what the demo
/// then lacks) when the port is taken.
async fn stub(address: &str, route: &str, status: u16, without: &str) -> Option<MockServer> {
    match std::net::TcpListener::bind(address) {
        Ok(listener) => {
            let server = MockServer::builder().listener(listener).start().await;
            Mock::given(method("POST"))
                .and(path(route))
                .respond_with(ResponseTemplate::new(status))
                .mount(&server)
                .await;
            Some(server)
        }
        Err(e) => {
            println!("({address} is taken ({e}); {without})");
            None
        }
    }
}

/// Prints an order's status and its history, each entry's time since the webhook was sent.
fn print_timeline(view: &Value, sent: DateTime<Utc>) {
    let outcome = match (
        view["tracking_number"].as_str(),
        view["failure_reason"].as_str(),
    ) {
        (Some(tracking), _) => format!("tracking number {tracking}"),
        (None, Some(reason)) => reason.to_owned(),
        (None, None) => String::new(),
    };
    println!(
        "\n  {}  {}  {outcome}",
        view["order_id"].as_str().unwrap_or("?"),
        view["status"].as_str().unwrap_or("?")
    );
    println!("    {:>10}  {:<20} what", "since POST", "step");
    for entry in view["history"].as_array().into_iter().flatten() {
        let at = entry["at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| (t.with_timezone(&Utc) - sent).num_milliseconds());
        println!(
            "    {:>7} ms  {:<20} {}",
            at.map_or("?".to_owned(), |ms| ms.to_string()),
            entry["step"].as_str().unwrap_or("?"),
            entry["description"].as_str().unwrap_or("?")
        );
    }
}
