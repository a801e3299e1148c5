//! What the stack holds, read back: watch queues drained, the saga's executions, the work queues'
//! depths and this run's dead letters with their reasons.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use aws_config::SdkConfig;
use serde_json::{Value, json};

use crate::DeployedStack;

/// The saga's executions of a run, by name: (status, start ms, stop ms) of each.
pub(super) type Executions = HashMap<String, Vec<(String, f64, f64)>>;

/// Receives (and deletes) everything waiting in `queue`, as JSON bodies.
pub(super) async fn drain(aws: &SdkConfig, queue: &str) -> Result<Vec<Value>> {
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut bodies = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await?;
        if out.messages().is_empty() {
            return Ok(bodies);
        }
        for message in out.messages() {
            bodies.push(
                serde_json::from_str(message.body().unwrap_or_default()).unwrap_or(Value::Null),
            );
            if let Some(handle) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(queue)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
    }
}

/// Drains `queue` and adds the subject `pick` finds in each event's detail to `seen`.
pub(super) async fn drain_subjects(
    aws: &SdkConfig,
    queue: &str,
    seen: &mut HashSet<String>,
    pick: impl Fn(&Value) -> Option<String>,
) -> Result<()> {
    for event in drain(aws, queue).await? {
        if let Some(subject) = pick(&event["detail"]) {
            seen.insert(subject);
        }
    }
    Ok(())
}

/// The saga's executions for this run, by name: (status, start ms, stop ms).
pub(super) async fn list_executions(
    sfn: &aws_sdk_sfn::Client,
    machine: &str,
    tag: &str,
) -> Result<Executions> {
    let mut all = Executions::new();
    let mut token = None;
    loop {
        let page = sfn
            .list_executions()
            .state_machine_arn(machine)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await?;
        for e in page.executions() {
            if e.name().contains(tag) {
                let ms = |t: &aws_smithy_types::DateTime| t.to_millis().unwrap_or_default() as f64;
                all.entry(e.name().to_owned()).or_default().push((
                    e.status().as_str().to_owned(),
                    ms(e.start_date()),
                    e.stop_date().map_or(0.0, ms),
                ));
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(all);
        }
    }
}

/// The stack's work queues (every queue of the stack that is not a dead-letter or hold queue), by
/// logical id, with their URLs.
pub(super) async fn stack_work_queues(aws: &SdkConfig) -> Result<Vec<(String, String)>> {
    let cloudformation = aws_sdk_cloudformation::Client::new(aws);
    let mut queues = Vec::new();
    let mut token = None;
    loop {
        let page = cloudformation
            .list_stack_resources()
            .stack_name(DeployedStack::NAME)
            .set_next_token(token)
            .send()
            .await?;
        for resource in page.stack_resource_summaries() {
            let logical = resource.logical_resource_id().unwrap_or_default();
            let parked = ["DeadLetter", "Finance", "Unstarted", "Unpublished"];
            if resource.resource_type() == Some("AWS::SQS::Queue")
                && !parked.iter().any(|p| logical.contains(p))
                && let Some(url) = resource.physical_resource_id()
            {
                queues.push((logical.to_owned(), url.to_owned()));
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(queues);
        }
    }
}

/// The work queues that hold messages (visible, in flight or delayed), with the count.
pub(super) async fn busy_queues(
    aws: &SdkConfig,
    queues: &[(String, String)],
) -> Result<Vec<(String, i64)>> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut busy = Vec::new();
    for (name, url) in queues {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await?;
        let depth: i64 = attributes
            .attributes()
            .into_iter()
            .flatten()
            .map(|(_, v)| v.parse::<i64>().unwrap_or(0))
            .sum();
        if depth > 0 {
            busy.push((name.to_owned(), depth));
        }
    }
    Ok(busy)
}

/// The reason given a letter that carries none: SQS moved it at the queue's receive limit.
pub(super) const RECEIVE_LIMIT: &str = "receive limit (SQS redrive)";

/// A letter of this run in one of the stack's dead-letter (or hold) queues.
pub(super) struct RunLetter {
    pub(super) queue: String,
    pub(super) reason: String,
    pub(super) body: String,
    /// The id and subject of the event it holds, when it holds one as EventBridge delivers it.
    pub(super) event: Value,
    pub(super) subject: Value,
    /// The letter's SQS message id and system attributes (`ApproximateReceiveCount`,
    /// `SentTimestamp`, `ApproximateFirstReceiveTimestamp`), for diagnosis.
    pub(super) sqs: Value,
}

/// Drains every dead-letter and hold queue of the stack and keeps this run's letters (their body
/// names the run's tag), with the reason each carries: busline's `busline.error_type`, EventBridge's
/// `ERROR_CODE`, a Lambda on-failure record's error, or the queue's own receive limit.
pub(super) async fn dead_letters(
    aws: &SdkConfig,
    stack: &DeployedStack,
    tag: &str,
) -> Result<Vec<RunLetter>> {
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut letters = Vec::new();
    let mut outputs: Vec<(&String, &String)> = stack
        .outputs
        .iter()
        .filter(|(k, _)| {
            k.ends_with("DeadLetterQueueUrl")
                || [
                    "UnstartedOrdersQueueUrl",
                    "UnpublishedOutcomesQueueUrl",
                    "FinanceQueueUrl",
                ]
                .contains(&k.as_str())
        })
        .collect();
    outputs.sort();
    for (output, url) in outputs {
        let queue = output.trim_end_matches("Url").to_owned();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .wait_time_seconds(0)
                .send()
                .await?;
            if out.messages().is_empty() {
                break;
            }
            for message in out.messages() {
                let body = message.body().unwrap_or_default().to_owned();
                let attribute = |name: &str| {
                    message
                        .message_attributes()
                        .and_then(|a| a.get(name))
                        .and_then(|v| v.string_value())
                        .map(str::to_owned)
                };
                if body.contains(tag) {
                    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let reason = attribute("busline.error_type")
                        .or_else(|| attribute("ERROR_CODE"))
                        .or_else(|| {
                            json["responsePayload"]["errorType"]
                                .as_str()
                                .map(|e| format!("async retries exhausted ({e})"))
                        })
                        .or_else(|| json["Error"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| RECEIVE_LIMIT.to_owned());
                    let system: serde_json::Map<String, Value> = message
                        .attributes()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.as_str().to_owned(), Value::from(v.as_str())))
                        .collect();
                    letters.push(RunLetter {
                        queue: queue.clone(),
                        reason,
                        event: json["detail"]["id"].clone(),
                        subject: json["detail"]["subject"].clone(),
                        body,
                        sqs: json!({"message_id": message.message_id(), "attributes": system}),
                    });
                }
                if let Some(handle) = message.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
    }
    Ok(letters)
}
