//! Resources a test creates for itself on LocalStack with the real SDK: tables keyed the way
//! busline's stores are, and queues.

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

/// Creates an on-demand table keyed by the string attribute `hash` (and `range`, if given).
pub async fn create_table(
    config: &SdkConfig,
    table: &str,
    hash: &str,
    range: Option<&str>,
) -> Result<()> {
    let mut create = aws_sdk_dynamodb::Client::new(config)
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in [(Some(hash), KeyType::Hash), (range, KeyType::Range)] {
        let Some(name) = name else { continue };
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()?,
            );
    }
    create
        .send()
        .await
        .with_context(|| format!("create table {table}"))?;
    Ok(())
}

/// Creates an on-demand table keyed by a string `pk`, the shape every busline store uses, with TTL on
/// `ttl_attribute` if given.
pub async fn create_key_table(
    config: &SdkConfig,
    table: &str,
    ttl_attribute: Option<&str>,
) -> Result<()> {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    create_table(config, table, "pk", None).await?;
    if let Some(attribute) = ttl_attribute {
        dynamodb
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attribute)
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("enable TTL on {table}"))?;
    }
    Ok(())
}

/// Creates queue `name` with `attributes`, and returns its URL and ARN.
pub async fn create_queue(
    config: &SdkConfig,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> Result<(String, String)> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut create = sqs.create_queue().queue_name(name);
    for (key, value) in attributes {
        create = create.attributes(key.clone(), value);
    }
    let url = create
        .send()
        .await
        .with_context(|| format!("create queue {name}"))?
        .queue_url
        .context("no queue URL")?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .context("no queue ARN")?;
    Ok((url, arn))
}
