//! `make demo`: a signed order webhook into the stack `make deploy-local` deployed from
//! `template.yaml` on LocalStack, followed hop by hop: the ingest function (a real process behind
//! its Function URL), the bus, the rule, the consumer queue.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use busline::Envelope;
use busline_tests::{DeployedStack, SAMPLE_SHOP_ORDER, localstack, signed_headers};
use chrono::{DateTime, Utc};
use serde_json::Value;

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

    println!("\n==> Following event {event_id} to the placed-orders queue ...");
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue_url = stack.output("PlacedOrdersQueueUrl")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (message, body) = loop {
        if Instant::now() > deadline {
            bail!("event {event_id} did not reach {queue_url} within 20 s");
        }
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await?;
        let found = out.messages().iter().find_map(|m| {
            let body: Value = serde_json::from_str(m.body()?).ok()?;
            (body["detail"]["id"] == event_id.as_str()).then(|| (m.clone(), body))
        });
        if let Some(found) = found {
            break found;
        }
    };
    let received = Utc::now();
    sqs.delete_message()
        .queue_url(queue_url)
        .receipt_handle(message.receipt_handle().unwrap_or_default())
        .send()
        .await?;

    let envelope: Envelope<Value> =
        Envelope::from_eventbridge(serde_json::from_value(body.clone())?)?;
    let queued = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|ms| ms.parse().ok())
        .and_then(DateTime::from_timestamp_millis);
    let accepted_at = envelope.time.unwrap_or(sent);
    let since = |t: DateTime<Utc>| format!("{:>+6} ms", (t - accepted_at).num_milliseconds());

    println!(
        "\n  hop                         where                         at (UTC)        since accepted"
    );
    let row = |hop: &str, place: &str, at: Option<DateTime<Utc>>, note: &str| match at {
        Some(at) => println!(
            "  {hop:<27} {place:<29} {}  {}{note}",
            at.format("%H:%M:%S%.3f"),
            since(at)
        ),
        None => println!("  {hop:<27} {place:<29} {note}"),
    };
    row("webhook sent", "demo (signed POST)", Some(sent), "");
    row(
        "accepted, envelope built",
        "ingest-webhook (process)",
        Some(accepted_at),
        "",
    );
    row(
        "published on the bus",
        "busline-bus",
        None,
        "(between the rows around it: EventBridge keeps whole seconds)",
    );
    row("routed by rule to queue", "placed-orders queue", queued, "");
    row(
        "received by consumer",
        "demo (SQS ReceiveMessage)",
        Some(received),
        "",
    );

    println!(
        "\n==> The event as the consumer queue received it:\n{}",
        serde_json::to_string_pretty(&body)?
    );
    println!(
        "\nSummary: order {} accepted in {} ms, published once as {} ({}), routed to the consumer queue {} ms after acceptance.",
        envelope.subject.as_deref().unwrap_or("?"),
        answered.as_millis(),
        envelope.id,
        envelope.event_type,
        queued.map_or_else(
            || "?".into(),
            |q| (q - accepted_at).num_milliseconds().to_string()
        ),
    );
    Ok(())
}
