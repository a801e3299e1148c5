//! Dead-letter queues, looked into and redriven: what sits in a DLQ with its reason, and chosen
//! messages moved back to the queue they came from (`make redrive`, the `redrive` binary).
//!
//! A letter's source is the `busline.source` attribute busline's dead-letter port sets (a queue
//! ARN), or, for a message SQS moved itself after `maxReceiveCount`, the one queue whose redrive
//! policy names this DLQ (`ListDeadLetterSourceQueues`). A letter whose source is not a queue (a
//! DynamoDB stream, a bus rule's target, an asynchronous invocation) is listed with why it is not
//! redriven here: replay events from the bus archive instead (README, "Redrive and replay").
//!
//! A redriven message is sent to its source queue with its body and its own attributes (not
//! busline's `busline.*` diagnosis), then deleted from the DLQ: a crash between the two leaves a
//! copy, never a loss, and consumers are idempotent.

use std::collections::{HashMap, HashSet};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};

/// A boxed error, for an operator's tool.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A message in a dead-letter queue.
#[derive(Clone, Debug, PartialEq)]
pub struct Letter {
    /// SQS's id.
    pub message_id: String,
    /// The body, as it will be redriven.
    pub body: String,
    /// `busline.error_type`, when busline parked it.
    pub error_type: Option<String>,
    /// `busline.reason`.
    pub reason: Option<String>,
    /// `busline.source`: where it came from.
    pub source: Option<String>,
    /// How often it was received (from the DLQ too).
    pub receive_count: u32,
    attributes: HashMap<String, MessageAttributeValue>,
    receipt_handle: String,
}

/// Which letters to redrive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only letters of this `busline.error_type`.
    pub error_type: Option<String>,
    /// Only these message ids (all when empty).
    pub message_ids: Vec<String>,
    /// Stop once this many letters are moved (skipped ones do not count); no limit when `None`.
    pub limit: Option<usize>,
}

impl Selection {
    fn matches(&self, letter: &Letter) -> bool {
        self.error_type
            .as_ref()
            .is_none_or(|t| letter.error_type.as_ref() == Some(t))
            && (self.message_ids.is_empty() || self.message_ids.contains(&letter.message_id))
    }
}

/// What a redrive did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Moved back to their source queue.
    pub moved: usize,
    /// Selected but not redrivable, with why.
    pub skipped: Vec<(String, String)>,
}

fn text(attributes: &HashMap<String, MessageAttributeValue>, name: &str) -> Option<String> {
    attributes
        .get(name)
        .and_then(|v| v.string_value())
        .map(str::to_owned)
}

/// Receives up to ten letters, hidden for 30 s while this run decides on them.
async fn receive(client: &Client, dlq_url: &str) -> Result<Vec<Letter>, Error> {
    let out = client
        .receive_message()
        .queue_url(dlq_url)
        .max_number_of_messages(10)
        .visibility_timeout(30)
        .wait_time_seconds(1)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await?;
    Ok(out
        .messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let attributes = m.message_attributes.clone().unwrap_or_default();
            Letter {
                message_id: m.message_id.clone().unwrap_or_default(),
                body: m.body.clone().unwrap_or_default(),
                error_type: text(&attributes, "busline.error_type"),
                reason: text(&attributes, "busline.reason"),
                source: text(&attributes, "busline.source"),
                receive_count: m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                attributes,
                receipt_handle: m.receipt_handle.unwrap_or_default(),
            }
        })
        .collect())
}

/// Makes a received letter visible again at once.
async fn release(client: &Client, dlq_url: &str, letter: &Letter) -> Result<(), Error> {
    client
        .change_message_visibility()
        .queue_url(dlq_url)
        .receipt_handle(&letter.receipt_handle)
        .visibility_timeout(0)
        .send()
        .await?;
    Ok(())
}

/// The next letters this run has not seen; those it has are made visible again at once, so
/// looking twice never hides anything. Empty when the queue holds nothing new.
async fn receive_fresh(
    client: &Client,
    dlq_url: &str,
    seen: &mut HashSet<String>,
) -> Result<Vec<Letter>, Error> {
    let mut fresh = Vec::new();
    for letter in receive(client, dlq_url).await? {
        if seen.insert(letter.message_id.clone()) {
            fresh.push(letter);
        } else {
            release(client, dlq_url, &letter).await?;
        }
    }
    Ok(fresh)
}

/// Up to `max` letters, without taking them: each is visible again when this returns.
pub async fn peek(client: &Client, dlq_url: &str, max: usize) -> Result<Vec<Letter>, Error> {
    let mut seen = HashSet::new();
    let mut letters = Vec::new();
    while letters.len() < max {
        let fresh = receive_fresh(client, dlq_url, &mut seen).await?;
        if fresh.is_empty() {
            break;
        }
        letters.extend(fresh);
    }
    for letter in &letters {
        release(client, dlq_url, letter).await?;
    }
    letters.truncate(max);
    Ok(letters)
}

/// How many messages the queue holds, roughly (SQS's own count).
pub async fn depth(client: &Client, queue_url: &str) -> Result<u64, Error> {
    let out = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await?;
    Ok(out
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                .cloned()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Where a letter goes back to: a queue URL, or why there is none.
async fn source_queue(
    client: &Client,
    letter: &Letter,
    native_sources: &[String],
) -> Result<String, String> {
    match &letter.source {
        Some(arn) if arn.starts_with("arn:aws:sqs:") => {
            let mut parts = arn.split(':').skip(4);
            let (Some(account), Some(name)) = (parts.next(), parts.next()) else {
                return Err(format!("{arn} is not a queue ARN"));
            };
            client
                .get_queue_url()
                .queue_name(name)
                .queue_owner_aws_account_id(account)
                .send()
                .await
                .map_err(|e| format!("source queue {arn} not found: {e}"))?
                .queue_url
                .ok_or_else(|| format!("source queue {arn} has no URL"))
        }
        Some(other) => Err(format!(
            "its source is not a queue ({other}); replay it from the bus archive or its source"
        )),
        None => match native_sources {
            [only] => Ok(only.clone()),
            [] => Err(
                "no queue names this DLQ in its redrive policy, and the letter names no source"
                    .to_owned(),
            ),
            several => Err(format!(
                "{} queues redrive to this DLQ, and the letter names none",
                several.len()
            )),
        },
    }
}

/// Moves the selected letters back to their source queues, calling `progress` with the running
/// count after each batch.
pub async fn redrive(
    client: &Client,
    dlq_url: &str,
    selection: &Selection,
    mut progress: impl FnMut(&Redriven),
) -> Result<Redriven, Error> {
    let native_sources = client
        .list_dead_letter_source_queues()
        .queue_url(dlq_url)
        .send()
        .await?
        .queue_urls;
    let mut done = Redriven::default();
    let mut seen = HashSet::new();
    loop {
        let fresh = receive_fresh(client, dlq_url, &mut seen).await?;
        if fresh.is_empty() {
            return Ok(done);
        }
        for letter in fresh {
            if !selection.matches(&letter) || selection.limit.is_some_and(|n| done.moved >= n) {
                // Not chosen: back as it was, for the next look.
                release(client, dlq_url, &letter).await?;
                continue;
            }
            match source_queue(client, &letter, &native_sources).await {
                Err(why) => {
                    release(client, dlq_url, &letter).await?;
                    done.skipped.push((letter.message_id.clone(), why));
                }
                Ok(target) => {
                    let own: HashMap<String, MessageAttributeValue> = letter
                        .attributes
                        .iter()
                        .filter(|(k, _)| !k.starts_with("busline."))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    client
                        .send_message()
                        .queue_url(&target)
                        .message_body(&letter.body)
                        .set_message_attributes((!own.is_empty()).then_some(own))
                        .send()
                        .await?;
                    client
                        .delete_message()
                        .queue_url(dlq_url)
                        .receipt_handle(&letter.receipt_handle)
                        .send()
                        .await?;
                    done.moved += 1;
                }
            }
        }
        progress(&done);
    }
}
