//! `make demo`: a signed order webhook into the stack `make deploy-local` deployed from
//! `template.yaml` on LocalStack, followed hop by hop: the ingest function (a real process behind
//! its Function URL), the bus and its rule, the placed-orders queue, and the audit-trail function
//! its event-source mapping invokes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use busline::audit::{AuditTrail, DynamoDbAuditTrail};
use busline_tests::{DeployedStack, SAMPLE_SHOP_ORDER, localstack, signed_headers};
use chrono::{DateTime, Utc};

#[tokio::main]
async fn main() -> Result<()> {
    let aws = localstack().await?;
    let stack = DeployedStack::read(&aws).await?;
    let secret = stack.secret(&aws, "ShopWebhookSecretArn").await?;
    let delivery_id = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let headers = signed_headers(&secret, SAMPLE_SHOP_ORDER, &delivery_id);

    println!(
        "\n==> POST {}webhooks/shop  (infra/events/shop-order.json)",
        stack.output("WebhookUrl")?
    );
    for (name, value) in &headers {
        println!("    {name}: {value}");
    }
    let sent = Utc::now();
    let clock = Instant::now();
    let (status, accepted) = stack
        .post_webhook("/webhooks/shop", SAMPLE_SHOP_ORDER, &headers)
        .await?;
    let answered = clock.elapsed();
    println!("<== {status} {accepted}  ({} ms)", answered.as_millis());
    if status != 202 {
        bail!("the ingest function refused the sample order");
    }
    let event_id = accepted["eventId"]
        .as_str()
        .context("no eventId")?
        .to_owned();

    println!("\n==> The same delivery again, as a sender's retry would send it");
    let (status, again) = stack
        .post_webhook("/webhooks/shop", SAMPLE_SHOP_ORDER, &headers)
        .await?;
    println!("<== {status} {again}");

    println!(
        "\n==> Following event {event_id} through the bus, the rule, the placed-orders queue and its event-source mapping to the audit-trail function ..."
    );
    let trail = DynamoDbAuditTrail::new(
        aws_sdk_dynamodb::Client::new(&aws),
        stack.output("AuditTrailTableName")?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let entry = loop {
        if let Some(entry) = trail.history(&event_id).await?.into_iter().next() {
            break entry;
        }
        if Instant::now() > deadline {
            bail!(
                "event {event_id} did not reach the audit trail within 30 s; see `make localstack-status` and .state/localstack/localstack.log"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let found = Utc::now();
    let envelope = entry.envelope;
    let accepted_at = envelope.time.unwrap_or(sent);
    let since = |t: DateTime<Utc>| format!("{:>+6} ms", (t - accepted_at).num_milliseconds());

    println!(
        "\n  hop                            function / resource            at (UTC)      since accepted"
    );
    let row = |hop: &str, place: &str, at: Option<DateTime<Utc>>| match at {
        Some(at) => println!(
            "  {hop:<30} {place:<30} {}  {}",
            at.format("%H:%M:%S%.3f"),
            since(at)
        ),
        None => println!(
            "  {hop:<30} {place:<30} (not timed: EventBridge and SQS keep no ms stamps we can read here)"
        ),
    };
    row("webhook sent", "demo, signed POST", Some(sent));
    row(
        "verified, envelope published",
        "ingest-webhook (process)",
        Some(accepted_at),
    );
    row(
        "routed by rule, queued",
        "busline-bus -> placed-orders",
        None,
    );
    row(
        "kept in the audit trail",
        "audit-trail (process, via ESM)",
        Some(entry.recorded_at),
    );
    row("read back by the demo", "audit trail table", Some(found));

    println!(
        "\n==> The envelope as the audit trail keeps it:\n{}",
        serde_json::to_string_pretty(&envelope)?
    );
    println!(
        "\nSummary: order {} accepted in {} ms and published once as {} ({}); the audit-trail consumer kept it {} ms after acceptance.",
        envelope.subject.as_deref().unwrap_or("?"),
        answered.as_millis(),
        envelope.id,
        envelope.event_type,
        (entry.recorded_at - accepted_at).num_milliseconds(),
    );
    Ok(())
}
