//! The ingest path's resources, created under a unique prefix the way `template.yaml` declares
//! them.

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

use crate::{SHOP_ORDER_PLACED, create_key_table, create_queue, new_standard_webhooks_secret};

/// The ingest path's resources on LocalStack.
#[derive(Clone, Debug)]
pub struct IngestStack {
    /// The event bus.
    pub bus_name: String,
    /// The queue placed orders are routed to.
    pub queue_url: String,
    /// Its dead-letter queue.
    pub dlq_url: String,
    /// The idempotency table.
    pub table: String,
    /// `(source, secret id, secret value)` for each webhook source.
    pub secrets: Vec<(String, String, String)>,
}

impl IngestStack {
    /// Creates every resource under `prefix`. Safe to call with a fresh prefix per test.
    pub async fn create(config: &SdkConfig, prefix: &str) -> Result<Self> {
        let events = aws_sdk_eventbridge::Client::new(config);
        let sqs = aws_sdk_sqs::Client::new(config);
        let secrets_client = aws_sdk_secretsmanager::Client::new(config);

        let bus_name = format!("{prefix}-bus");
        events
            .create_event_bus()
            .name(&bus_name)
            .send()
            .await
            .context("create event bus")?;

        let retention = (
            QueueAttributeName::MessageRetentionPeriod,
            "1209600".to_owned(),
        );
        let (dlq_url, dlq_arn) = create_queue(
            config,
            &format!("{prefix}-placed-orders-dlq"),
            std::slice::from_ref(&retention),
        )
        .await?;
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}).to_string();
        let (queue_url, queue_arn) = create_queue(
            config,
            &format!("{prefix}-placed-orders"),
            &[retention, (QueueAttributeName::RedrivePolicy, redrive)],
        )
        .await?;

        let rule = format!("{prefix}-placed-orders");
        let rule_arn = events
            .put_rule()
            .name(&rule)
            .event_bus_name(&bus_name)
            .event_pattern(json!({"detail-type": [SHOP_ORDER_PLACED]}).to_string())
            .send()
            .await
            .context("put rule")?
            .rule_arn
            .unwrap_or_default();
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}
            }]
        });
        sqs.set_queue_attributes()
            .queue_url(&queue_url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .context("set queue policy")?;
        events
            .put_targets()
            .rule(&rule)
            .event_bus_name(&bus_name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("placed-orders-queue")
                    .arn(&queue_arn)
                    .build()?,
            )
            .send()
            .await
            .context("put targets")?;

        let table = format!("{prefix}-deliveries");
        create_key_table(config, &table, Some("expires_at")).await?;

        let mut secrets = Vec::new();
        for source in ["shop", "crm"] {
            let id = format!("{prefix}/webhooks/{source}");
            let value = new_standard_webhooks_secret();
            secrets_client
                .create_secret()
                .name(&id)
                .secret_string(&value)
                .send()
                .await
                .context("create secret")?;
            secrets.push((source.to_owned(), id, value));
        }
        Ok(Self {
            bus_name,
            queue_url,
            dlq_url,
            table,
            secrets,
        })
    }

    /// The `WEBHOOK_SOURCES` value for this stack.
    pub fn webhook_sources(&self) -> String {
        self.secrets
            .iter()
            .map(|(source, id, _)| format!("{source}={id}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The signing secret of `source`.
    pub fn secret(&self, source: &str) -> &str {
        &self
            .secrets
            .iter()
            .find(|(s, _, _)| s == source)
            .expect("stack has the source")
            .2
    }
}
