//! `make demo`: a signed order webhook through the ingest connector, the bus and its rule, to the
//! consumer queue, all on LocalStack.
//!
//! The resources are created with the SDK the way `template.yaml` declares them. The handler runs
//! in-process, on the same start-up path as the Lambda (`Config::from_env`, signing secrets from
//! Secrets Manager, the EventBridge publisher and the DynamoDB ledger).

use std::time::Duration;

use anyhow::{Context, Result};
use busline::bus::EventBridgePublisher;
use busline::dedupe::DynamoDbLedger;
use busline_tests::{
    IngestStack, SAMPLE_SHOP_ORDER, localstack, receive, signed_headers, webhook_request,
};
use ingest_webhook::{Config, Deps, fetch_secrets, handle};

#[tokio::main]
async fn main() -> Result<()> {
    let aws = localstack().await?;
    let prefix = format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let stack = IngestStack::create(&aws, &prefix).await?;
    println!(
        "==> Created on LocalStack: bus {}, rule -> queue {}, ledger table {}, secrets for shop and crm\n",
        stack.bus_name, stack.queue_url, stack.table
    );

    let sources = stack.webhook_sources();
    let env = [
        ("BUS_NAME", stack.bus_name.as_str()),
        ("DEDUPE_TABLE", stack.table.as_str()),
        ("WEBHOOK_SOURCES", sources.as_str()),
    ];
    let config = Config::from_env(&env)?;
    let secrets = fetch_secrets(&aws_sdk_secretsmanager::Client::new(&aws), &config).await?;
    let publisher =
        EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&aws), &config.bus_name);
    let ledger = DynamoDbLedger::new(aws_sdk_dynamodb::Client::new(&aws), &config.dedupe_table);
    let deps = Deps::new(publisher, ledger, &config, secrets)?;

    let delivery_id = format!("dlv-{}", uuid::Uuid::new_v4().simple());
    let headers = signed_headers(stack.secret("shop"), SAMPLE_SHOP_ORDER, &delivery_id);
    println!("==> POST /webhooks/shop  (infra/events/shop-order.json)");
    for (name, value) in &headers {
        println!("    {name}: {value}");
    }
    let response = handle(
        webhook_request("POST", "/webhooks/shop", SAMPLE_SHOP_ORDER, &headers),
        &deps,
    )
    .await;
    println!(
        "<== {} {}\n",
        response.status(),
        String::from_utf8_lossy(response.body().as_ref())
    );

    println!("==> The same delivery again (a sender's retry)");
    let again = handle(
        webhook_request("POST", "/webhooks/shop", SAMPLE_SHOP_ORDER, &headers),
        &deps,
    )
    .await;
    println!(
        "<== {} {}\n",
        again.status(),
        String::from_utf8_lossy(again.body().as_ref())
    );

    println!("==> Waiting for the consumer queue ...");
    let messages = receive(
        &aws,
        &stack.queue_url,
        1,
        Duration::from_secs(2),
        Duration::from_secs(20),
    )
    .await
    .context("the event did not reach the consumer queue")?;
    println!(
        "<== {} message(s) on {}:\n",
        messages.len(),
        stack.queue_url
    );
    for message in &messages {
        println!("{}", serde_json::to_string_pretty(message)?);
    }
    Ok(())
}
