//! The audit-trail consumer: the placed-orders queue's subscriber in the stack.
//!
//! Each SQS record holds an EventBridge event whose detail is a busline envelope. The handler runs
//! on busline's [batch layer](busline::batch): it keeps each envelope in the audit trail once (a
//! redelivery is recognised and counted as done) and answers with an `SqsBatchResponse` naming
//! exactly the records that may succeed later, so one bad record never fails the batch. A record
//! that can never succeed (not an envelope) goes straight to the dead-letter queue with its reason
//! in message attributes; one that failed for a passing reason (the table is unavailable) is
//! redelivered, and after the queue's `maxReceiveCount` the redrive policy moves it there too.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use busline::Envelope;
use busline::audit::{AuditError, AuditTrail, Recorded};
use busline::batch::{BatchError, BatchProcessor, DeadLetterQueue};
use busline::config::{ConfigError, Env};
use busline::error::{Classify, ErrorClass};
use busline::retry::Deadline;
use busline::telemetry::{Hop, Metrics, Unit, sqs_sent_at};
use serde_json::Value;

/// How many records are kept at once; each is one DynamoDB round trip.
pub const CONCURRENCY: usize = 4;

/// The function's configuration, read once at cold start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `AUDIT_TABLE`: the audit trail table.
    pub audit_table: String,
    /// `DEAD_LETTER_QUEUE_URL`: where records that can never be kept go, with the reason.
    pub dead_letter_queue_url: String,
}

impl Config {
    /// Reads and checks every variable.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(Self {
            audit_table: env
                .require("AUDIT_TABLE", "the name of the DynamoDB audit trail table")?,
            dead_letter_queue_url: env.require(
                "DEAD_LETTER_QUEUE_URL",
                "the URL of the SQS queue for records that can never be kept",
            )?,
        })
    }
}

/// Why one record was not kept.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The body is not an EventBridge event carrying a busline envelope. Permanent.
    #[error("not a busline envelope: {0}")]
    NotAnEnvelope(String),
    /// The audit trail refused it.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl Classify for RecordError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::NotAnEnvelope(_) => ErrorClass::Permanent,
            Self::Audit(e) => e.class(),
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::NotAnEnvelope(_) => "NotAnEnvelope",
            Self::Audit(e) => e.error_type(),
        }
    }
}

/// The Lambda handler. Starts no record the time left before `deadline` (the invocation's) cannot
/// hold; fails as a whole only when every record failed.
pub async fn handle<A: AuditTrail, Q: DeadLetterQueue>(
    event: SqsEvent,
    trail: &A,
    processor: &BatchProcessor<Q>,
    deadline: Deadline,
) -> Result<SqsBatchResponse, BatchError> {
    let redelivered = std::cell::Cell::new(0u32);
    let report = processor
        .sqs_until(&event, deadline, async |message| {
            let recorded = keep(message, trail).await?;
            if recorded == Recorded::AlreadyThere {
                redelivered.set(redelivered.get() + 1);
            }
            Ok::<_, RecordError>(())
        })
        .await;
    let failed = report.failures().count();
    Metrics::new("busline")
        .dimension("Function", "audit-trail")
        .metric(
            "Kept",
            Unit::Count,
            (report.succeeded() as u32 - redelivered.get()).into(),
        )
        .metric("Redelivered", Unit::Count, redelivered.get().into())
        .metric("DeadLettered", Unit::Count, report.dead_lettered() as f64)
        .metric("Failed", Unit::Count, failed as f64)
        .emit();
    report.into_result()
}

async fn keep<A: AuditTrail>(message: &SqsMessage, trail: &A) -> Result<Recorded, RecordError> {
    let body = message.body.as_deref().unwrap_or_default();
    let event: EventBridgeEvent<Value> = serde_json::from_str(body).map_err(|e| {
        RecordError::NotAnEnvelope(format!("the body is not an EventBridge event: {e}"))
    })?;
    Hop::of_detail(&event.detail)
        .queued_at(sqs_sent_at(message))
        .run(async {
            let envelope = Envelope::<Value>::from_eventbridge(event)
                .map_err(|e| RecordError::NotAnEnvelope(e.to_string()))?;
            Ok(trail.record(&envelope).await?)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute() -> Deadline {
        Deadline::after(std::time::Duration::from_secs(60))
    }
    use busline::audit::InMemoryAuditTrail;
    use busline::batch::InMemoryDeadLetterQueue;
    use serde_json::json;

    fn sqs_event(bodies: &[String]) -> SqsEvent {
        let records: Vec<Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                json!({
                    "messageId": format!("msg-{i}"), "receiptHandle": "h", "body": body,
                    "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795564530000", "SenderId": "AIDA", "ApproximateFirstReceiveTimestamp": "1795564530001"},
                    "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:placed-orders", "awsRegion": "us-east-1"
                })
            })
            .collect();
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    const ORDER_EVENT: &str = include_str!("../../../tests/fixtures/eventbridge-order-placed.json");

    #[tokio::test]
    async fn keeps_each_envelope_once_and_dead_letters_what_is_not_an_envelope() {
        let trail = InMemoryAuditTrail::new();
        let dlq = InMemoryDeadLetterQueue::new();
        let processor = BatchProcessor::new().dead_letters(dlq.clone());
        let bodies = vec![
            ORDER_EVENT.to_owned(),
            "not json".to_owned(),
            ORDER_EVENT.to_owned(),
            json!({"detail-type": "x", "source": "y", "detail": {}}).to_string(),
        ];
        let response = handle(sqs_event(&bodies), &trail, &processor, minute())
            .await
            .unwrap();

        assert!(response.batch_item_failures.is_empty());
        let letters: Vec<(String, String, String)> = dlq
            .letters()
            .into_iter()
            .map(|l| (l.record_id, l.error_type, l.body))
            .collect();
        assert_eq!(
            letters,
            [
                ("msg-1".into(), "NotAnEnvelope".into(), bodies[1].clone()),
                ("msg-3".into(), "NotAnEnvelope".into(), bodies[3].clone())
            ]
        );
        let history = trail.history("corr-7f3a").await.unwrap();
        assert_eq!(history.len(), 1, "the redelivered envelope is kept once");
        assert_eq!(
            history[0].envelope.id,
            "6f0c6f8e-4a4b-5b7e-9d1c-2f1e0b7d9a10"
        );
    }

    #[tokio::test]
    async fn an_unavailable_trail_sends_records_back_and_a_batch_that_all_failed_is_an_error() {
        let trail = InMemoryAuditTrail::new();
        trail.set_unavailable(true);
        let processor = BatchProcessor::new().dead_letters(InMemoryDeadLetterQueue::new());
        let error = handle(
            sqs_event(&[ORDER_EVENT.to_owned()]),
            &trail,
            &processor,
            minute(),
        )
        .await
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("msg-0, with AuditTrailUnavailable"),
            "{error}"
        );
    }

    #[test]
    fn config_names_the_missing_variable() {
        assert!(
            Config::from_env(&[("OTHER", "x")])
                .unwrap_err()
                .to_string()
                .contains("AUDIT_TABLE")
        );
        assert!(
            Config::from_env(&[("AUDIT_TABLE", "t")])
                .unwrap_err()
                .to_string()
                .contains("DEAD_LETTER_QUEUE_URL")
        );
        let config =
            Config::from_env(&[("AUDIT_TABLE", "t"), ("DEAD_LETTER_QUEUE_URL", "q")]).unwrap();
        assert_eq!(
            (
                config.audit_table.as_str(),
                config.dead_letter_queue_url.as_str()
            ),
            ("t", "q")
        );
    }
}
