//! The audit-trail consumer: the placed-orders queue's subscriber in the stack.
//!
//! Each SQS record holds an EventBridge event whose detail is a busline envelope. The handler keeps
//! each envelope in the audit trail once (a redelivery is recognised and counted as done) and answers
//! with an `SqsBatchResponse` naming exactly the records it could not keep, so one bad record never
//! fails the batch: SQS redelivers only those, and after the queue's `maxReceiveCount` moves them to
//! the dead-letter queue. Every failure is logged with the message id and its reason.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use busline::Envelope;
use busline::audit::{AuditTrail, Recorded};
use busline::config::{ConfigError, Env};
use busline::error::Classify;
use busline::telemetry::{Metrics, Unit};
use serde_json::Value;

/// The function's configuration, read once at cold start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `AUDIT_TABLE`: the audit trail table.
    pub audit_table: String,
}

impl Config {
    /// Reads and checks every variable.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(Self {
            audit_table: env
                .require("AUDIT_TABLE", "the name of the DynamoDB audit trail table")?,
        })
    }
}

/// Why one record was not kept.
#[derive(Debug)]
enum RecordFailure {
    NotAnEnvelope(String),
    Audit(busline::audit::AuditError),
}

/// The Lambda handler.
pub async fn handle<A: AuditTrail>(event: SqsEvent, trail: &A) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let (mut kept, mut redelivered) = (0u32, 0u32);
    for message in &event.records {
        match keep(message, trail).await {
            Ok(Recorded::New) => kept += 1,
            Ok(Recorded::AlreadyThere) => redelivered += 1,
            Err(failure) => {
                let id = message.message_id.clone().unwrap_or_default();
                match &failure {
                    RecordFailure::NotAnEnvelope(reason) => {
                        tracing::warn!(message_id = %id, reason = %reason, "not a busline envelope; it goes to the DLQ after the queue's retries");
                    }
                    RecordFailure::Audit(e) => {
                        tracing::warn!(message_id = %id, error = %e, error_type = e.error_type(), "could not keep the envelope; SQS will redeliver it");
                    }
                }
                response.add_failure(id);
            }
        }
    }
    Metrics::new("busline")
        .dimension("Function", "audit-trail")
        .metric("Kept", Unit::Count, f64::from(kept))
        .metric("Redelivered", Unit::Count, f64::from(redelivered))
        .metric(
            "Failed",
            Unit::Count,
            response.batch_item_failures.len() as f64,
        )
        .emit();
    response
}

async fn keep<A: AuditTrail>(message: &SqsMessage, trail: &A) -> Result<Recorded, RecordFailure> {
    let body = message.body.as_deref().unwrap_or_default();
    let event: EventBridgeEvent<Value> = serde_json::from_str(body).map_err(|e| {
        RecordFailure::NotAnEnvelope(format!("the body is not an EventBridge event: {e}"))
    })?;
    let envelope = Envelope::<Value>::from_eventbridge(event)
        .map_err(|e| RecordFailure::NotAnEnvelope(e.to_string()))?;
    let span = tracing::info_span!("audit", correlation_id = envelope.correlation_id(), event_id = %envelope.id);
    let _guard = span.enter();
    trail.record(&envelope).await.map_err(RecordFailure::Audit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use busline::audit::InMemoryAuditTrail;
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
    async fn keeps_each_envelope_once_and_names_only_the_bad_records() {
        let trail = InMemoryAuditTrail::new();
        let bodies = vec![
            ORDER_EVENT.to_owned(),
            "not json".to_owned(),
            ORDER_EVENT.to_owned(),
            json!({"detail-type": "x", "source": "y", "detail": {}}).to_string(),
        ];
        let response = handle(sqs_event(&bodies), &trail).await;

        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["msg-1", "msg-3"]);
        let history = trail.history("corr-7f3a").await.unwrap();
        assert_eq!(history.len(), 1, "the redelivered envelope is kept once");
        assert_eq!(
            history[0].envelope.id,
            "6f0c6f8e-4a4b-5b7e-9d1c-2f1e0b7d9a10"
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
        assert_eq!(
            Config::from_env(&[("AUDIT_TABLE", "t")])
                .unwrap()
                .audit_table,
            "t"
        );
    }
}
