//! Sending a delivery again later: one message per (event, endpoint), on the queue the function
//! consumes, with SQS's own delay.
//!
//! A message that came from the bus rule names no endpoint; with several subscribers it is fanned
//! out into one message per endpoint, so each has its own attempts, backoff, circuit and dead
//! letter. A retry is a new message with the attempt count and the time of the first attempt in
//! its attributes, so the retry horizon is a time ([`crate::Config::retry_horizon`]), not a
//! receive count, and a long outage costs no `maxReceiveCount` (which is left to guard against
//! crashes).

use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

/// The endpoint a message is for (absent on messages from the bus rule).
pub const ENDPOINT_ATTRIBUTE: &str = "busline.endpoint";
/// The attempt the message is for, from 1.
pub const ATTEMPT_ATTRIBUTE: &str = "busline.attempt";
/// When the first attempt was made, Unix ms: the retry horizon counts from it.
pub const FIRST_ATTEMPT_ATTRIBUTE: &str = "busline.first_attempt_ms";
/// SQS's longest delay on a message.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// One message to send again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redelivery {
    /// The body as received (the EventBridge event).
    pub body: String,
    /// The endpoint it is for.
    pub endpoint: String,
    /// The attempt it will be.
    pub attempt: u32,
    /// When the first attempt was made, Unix ms.
    pub first_attempt_ms: i64,
    /// How long it waits before it is received (at most [`MAX_DELAY`]).
    pub delay: Duration,
}

/// Where redeliveries go.
pub trait Requeue: Send + Sync {
    /// Sends every redelivery, or fails.
    fn send(
        &self,
        redeliveries: &[Redelivery],
    ) -> impl Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Send;
}

/// `SendMessageBatch` to the queue the function consumes.
#[derive(Clone, Debug)]
pub struct SqsRequeue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsRequeue {
    /// For the queue at `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[expect(
    clippy::expect_used,
    reason = "the builder fails only without a data type, set here"
)]
fn string(value: impl Into<String>) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("a string attribute has its data type")
}

impl Requeue for SqsRequeue {
    async fn send(
        &self,
        redeliveries: &[Redelivery],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        for chunk in redeliveries.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&r.body)
                        .delay_seconds(r.delay.min(MAX_DELAY).as_secs() as i32)
                        .message_attributes(ENDPOINT_ATTRIBUTE, string(&r.endpoint))
                        .message_attributes(ATTEMPT_ATTRIBUTE, string(r.attempt.to_string()))
                        .message_attributes(
                            FIRST_ATTEMPT_ATTRIBUTE,
                            string(r.first_attempt_ms.to_string()),
                        )
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await?;
            if let Some(failed) = out.failed().first() {
                return Err(format!(
                    "SQS refused {} of {} redeliveries, first: {} {}",
                    out.failed().len(),
                    chunk.len(),
                    failed.code(),
                    failed.message().unwrap_or_default()
                )
                .into());
            }
        }
        Ok(())
    }
}
