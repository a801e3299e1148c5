//! Where permanently failed records go: the dead-letter port, the SQS adapter whose message
//! attributes carry the reason, its in-memory twin, and none at all.

use std::future::Future;
use std::sync::{Arc, OnceLock};
#[cfg(any(test, feature = "test-util"))]
use std::sync::{Mutex, PoisonError};

use aws_sdk_sqs::types::MessageAttributeValue;

use crate::text::truncated;

/// SQS caps a message attribute's value; reasons are cut to fit with room to spare.
const MAX_REASON_BYTES: usize = 4096;

/// A record sent to the dead-letter queue, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The original body, so the letter can be redriven as it came.
    pub body: String,
    /// The message id or sequence number.
    pub record_id: String,
    /// Where it came from: the queue or stream ARN.
    pub source: Option<String>,
    /// The FIFO message group, if any.
    pub group: Option<String>,
    /// The error's stable name.
    pub error_type: String,
    /// The error with its cause chain.
    pub reason: String,
}

/// Sending a dead letter failed; the record is reported failed instead, so nothing is lost.
#[derive(Debug, thiserror::Error)]
#[error("could not send record {record_id} to the dead-letter queue")]
pub struct DeadLetterError {
    /// The letter's `record_id`: the message id or sequence number the record came with.
    pub record_id: String,
    /// The dead-letter queue's refusal, or the reason the record could not be sent to it.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where permanently failed records go: the port, with [`SqsDeadLetterQueue`] and
/// [`InMemoryDeadLetterQueue`] as adapters, and [`NoDeadLetterQueue`] when there is none.
pub trait DeadLetterQueue: Send + Sync {
    /// Whether there is a queue at all.
    fn is_configured(&self) -> bool {
        true
    }

    /// Sends one letter.
    fn send(&self, letter: &DeadLetter)
    -> impl Future<Output = Result<(), DeadLetterError>> + Send;
}

/// No dead-letter queue: permanent failures are reported failed, and the source's redrive policy
/// moves them after `maxReceiveCount`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDeadLetterQueue;

impl DeadLetterQueue for NoDeadLetterQueue {
    fn is_configured(&self) -> bool {
        false
    }

    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        Err(DeadLetterError {
            record_id: letter.record_id.clone(),
            source: "no dead-letter queue is configured".into(),
        })
    }
}

/// An SQS dead-letter queue. The letter's body is the record's body; the reason travels in message
/// attributes: `busline.error_type`, `busline.reason`, `busline.record_id` and `busline.source`.
#[derive(Clone, Debug)]
pub struct SqsDeadLetterQueue {
    client: SqsClient,
    queue_url: String,
}

/// The queue's client: given, or built at the first letter.
#[derive(Clone, Debug)]
enum SqsClient {
    Built(aws_sdk_sqs::Client),
    OnFirstLetter(Arc<(aws_config::SdkConfig, OnceLock<aws_sdk_sqs::Client>)>),
}

impl SqsDeadLetterQueue {
    /// The queue at `queue_url`, through `client`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client: SqsClient::Built(client),
            queue_url: queue_url.into(),
        }
    }

    /// The queue at `queue_url`, its SQS client built from `aws` when the first letter goes out.
    /// For a function whose only SQS call is the dead letter: building an SDK client costs its
    /// crate's endpoint rules at cold start (a quarter of a light function's init), and a function
    /// whose records succeed never needs it.
    pub fn on_first_letter(aws: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        Self {
            client: SqsClient::OnFirstLetter(Arc::new((aws.clone(), OnceLock::new()))),
            queue_url: queue_url.into(),
        }
    }

    /// Whether the client has been built (a lazy queue's, once a letter went out).
    pub fn client_built(&self) -> bool {
        match &self.client {
            SqsClient::Built(_) => true,
            SqsClient::OnFirstLetter(lazy) => lazy.1.get().is_some(),
        }
    }

    fn client(&self) -> &aws_sdk_sqs::Client {
        match &self.client {
            SqsClient::Built(client) => client,
            SqsClient::OnFirstLetter(lazy) => {
                let (aws, client) = &**lazy;
                client.get_or_init(|| aws_sdk_sqs::Client::new(aws))
            }
        }
    }
}

#[expect(
    clippy::expect_used,
    reason = "the builder fails only without a data type, set here"
)]
fn text_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data type is set")
}

impl DeadLetterQueue for SqsDeadLetterQueue {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let mut send = self
            .client()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&letter.body)
            .message_attributes("busline.error_type", text_attribute(&letter.error_type))
            .message_attributes(
                "busline.reason",
                text_attribute(truncated(&letter.reason, MAX_REASON_BYTES)),
            )
            .message_attributes("busline.record_id", text_attribute(&letter.record_id));
        if let Some(source) = &letter.source {
            send = send.message_attributes("busline.source", text_attribute(source));
        }
        if self.queue_url.ends_with(".fifo") {
            send = send
                .message_group_id(letter.group.as_deref().unwrap_or("dead-letters"))
                .message_deduplication_id(truncated(&letter.record_id, 128));
        }
        send.send().await.map(drop).map_err(|e| DeadLetterError {
            record_id: letter.record_id.clone(),
            source: Box::new(e),
        })
    }
}

/// The in-memory twin: keeps the letters, and can refuse them.
#[cfg(any(test, feature = "test-util"))]
#[derive(Clone, Debug, Default)]
pub struct InMemoryDeadLetterQueue {
    state: Arc<Mutex<(Vec<DeadLetter>, bool)>>,
}

#[cfg(any(test, feature = "test-util"))]
impl InMemoryDeadLetterQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// The letters sent so far.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// Makes every send fail.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = unavailable;
    }
}

#[cfg(any(test, feature = "test-util"))]
impl DeadLetterQueue for InMemoryDeadLetterQueue {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.1 {
            return Err(DeadLetterError {
                record_id: letter.record_id.clone(),
                source: "the in-memory dead-letter queue is set unavailable".into(),
            });
        }
        state.0.push(letter.clone());
        Ok(())
    }
}
