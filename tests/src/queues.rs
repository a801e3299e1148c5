//! Windows onto the bus and the queues: receiving a test's messages, watching the bus through a
//! rule and queue of its own, and finding a test's letter in a shared dead-letter queue.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use serde_json::Value;

use crate::create_queue;

/// Receives messages from `queue_url` until `want` have arrived and then `settle` has passed with
/// nothing more, or until `timeout`. Deletes what it receives and returns the bodies as JSON.
pub async fn receive(
    config: &SdkConfig,
    queue_url: &str,
    want: usize,
    settle: Duration,
    timeout: Duration,
) -> Result<Vec<Value>> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let started = Instant::now();
    let mut bodies = Vec::new();
    let mut last_arrival = Instant::now();
    while started.elapsed() < timeout {
        if bodies.len() >= want && last_arrival.elapsed() >= settle {
            return Ok(bodies);
        }
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        let mut deletes = Vec::new();
        for (i, message) in out.messages().iter().enumerate() {
            bodies.push(
                serde_json::from_str(message.body().unwrap_or_default())
                    .context("message body is JSON")?,
            );
            last_arrival = Instant::now();
            if let Some(handle) = message.receipt_handle() {
                deletes.push(
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()?,
                );
            }
        }
        if !deletes.is_empty() {
            sqs.delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(deletes))
                .send()
                .await?;
        }
    }
    if bodies.len() >= want {
        return Ok(bodies);
    }
    bail!(
        "received {} of {want} expected message(s) from {queue_url} within {timeout:?}",
        bodies.len()
    )
}

/// Routes the events on `bus` that match `pattern` to a new queue named `name` (through a rule of
/// the same name), and returns the queue's URL: a test's window onto the bus.
pub async fn watch_bus(
    config: &SdkConfig,
    bus: &str,
    name: &str,
    pattern: &Value,
) -> Result<String> {
    let (queue_url, queue_arn) = create_queue(config, name, &[]).await?;
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": queue_arn}]});
    aws_sdk_sqs::Client::new(config)
        .set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::Policy,
            policy.to_string(),
        )
        .send()
        .await?;
    let events = aws_sdk_eventbridge::Client::new(config);
    events
        .put_rule()
        .name(name)
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .context("put the watch rule")?;
    events
        .put_targets()
        .rule(name)
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("watch")
                .arn(queue_arn)
                .build()?,
        )
        .send()
        .await?;
    Ok(queue_url)
}

/// A message found in a dead-letter queue: its body and its message attributes.
#[derive(Clone, Debug)]
pub struct Letter {
    /// The body, as sent.
    pub body: String,
    /// The string message attributes (`busline.error_type`, `busline.reason`, ...).
    pub attributes: std::collections::HashMap<String, String>,
}

impl Letter {
    /// An attribute's value, empty when absent.
    pub fn attribute(&self, name: &str) -> &str {
        self.attributes.get(name).map_or("", String::as_str)
    }
}

/// Receives from `queue_url` until a message whose body `matches` arrives, for up to `within`, and
/// returns it. Every message received is deleted: dead-letter queues are shared by the tests, and
/// each looks only for its own letter.
pub async fn find_letter(
    config: &SdkConfig,
    queue_url: &str,
    matches: impl Fn(&str) -> bool,
    within: Duration,
) -> Result<Letter> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let started = Instant::now();
    while started.elapsed() < within {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await?;
        let mut found = None;
        for message in out.messages() {
            if let Some(handle) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
            let body = message.body().unwrap_or_default();
            if found.is_none() && matches(body) {
                let attributes = message
                    .message_attributes()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                    .collect();
                found = Some(Letter {
                    body: body.to_owned(),
                    attributes,
                });
            }
        }
        if let Some(letter) = found {
            return Ok(letter);
        }
    }
    bail!("no matching message reached {queue_url} within {within:?}")
}
