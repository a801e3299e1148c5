//! CDC: a DynamoDB table's stream (`NEW_AND_OLD_IMAGES`) to the bus, one envelope per change.
//!
//! Each change is published as `io.busline.cdc.<entity>.changed.v1` (the entity is the table's
//! name unless `CDC_ENTITY` says otherwise) with a Debezium-style body:
//!
//! ```json
//! {"op": "u", "before": {"customer_id": "C-42", "email": "ada@example.com"},
//!  "after": {"customer_id": "C-42", "email": "ada@lovelace.dev"},
//!  "source": {"table": "customers", "stream_arn": "arn:…", "sequence_number": "44215846…",
//!             "keys": {"customer_id": "C-42"}},
//!  "ts_ms": 1764028801000}
//! ```
//!
//! `op` is `c`, `u` or `d`; `before` and `after` are plain JSON (not DynamoDB attribute values), with
//! the attributes named in `CDC_DROP_FIELDS` (comma-separated, dotted paths reach into maps) removed
//! first, so secrets and personal data never reach the bus. The envelope's `subject` is the item's
//! key (`customer_id=C-42`), and the body carries the stream's sequence number, so consumers can
//! order changes per key; the id is derived from the stream and the sequence number, so a
//! redelivered record is published under the same id.
//!
//! Records are published in stream order, up to ten per `PutEvents` call, and entries the bus
//! rejects are retried (`EventBridgePublisher`). If some still fail, the handler reports the first
//! failed record's sequence number as the batch item failure: Lambda resumes the shard there, so
//! nothing is skipped, and what was published after it is republished under the same ids. The
//! same happens when the invocation's time runs short: no record and no call is started that the
//! time left would not hold with a one-second margin, so a slow bus ends the batch cleanly at the
//! first change not yet published instead of Lambda killing it mid-call. A record
//! that cannot be read as a change (an unknown `eventName`, a missing image or sequence number, an
//! image that is not an item) goes to the dead-letter queue with the reason, whole, and the rest of
//! the batch goes on.
//!
//! A change too large for one EventBridge entry (a 400 KB item with both its images) is not refused:
//! its body is checked in to the claim-check store (S3, `CLAIM_CHECK_BUCKET`;
//! [`busline::claim_check`]) and the event carries a `dataref` to it, which consumers resolve. If
//! the store is down, the shard resumes at that change; if it refuses for good, the record goes to
//! the dead-letter queue whole, with the reason. Either way the records behind it are not dropped.

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use busline::batch::{DEFAULT_STOP_MARGIN, DeadLetter, DeadLetterError, DeadLetterQueue};
use busline::bus::{EventPublisher, MAX_ENTRIES_PER_CALL, PublishError};
use busline::claim_check::{PayloadStore, check_in};
use busline::config::{ConfigError, Env};
use busline::retry::{Deadline, Pacer};
use busline::telemetry::{TraceContext, hop_span};
use busline::{Classify, Envelope, ErrorClass, EventType};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Namespace for event ids derived from `(stream, sequence number)`.
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b1f_4d0e_2a7c_4c1b_9f3e_b05e_11ae_0005);

/// What the connector is told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CdcConfig {
    /// The entity the event type names (`CDC_ENTITY`); the table's name when unset.
    pub entity: Option<String>,
    /// Attribute paths dropped from `before` and `after` (`CDC_DROP_FIELDS`).
    pub drop_fields: Vec<Vec<String>>,
}

impl CdcConfig {
    /// Reads `CDC_ENTITY` and `CDC_DROP_FIELDS`.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let entity = env.get("CDC_ENTITY").filter(|e| !e.trim().is_empty());
        if let Some(entity) = &entity {
            event_type(entity).map_err(|_| ConfigError::Invalid {
                name: "CDC_ENTITY",
                value: entity.clone(),
                expected: "letters, digits, '-' and '_' (it names the event type)",
            })?;
        }
        Ok(Self {
            entity,
            drop_fields: parse_fields(&env.get("CDC_DROP_FIELDS").unwrap_or_default()),
        })
    }
}

/// `"password, address.street"` → `[["password"], ["address", "street"]]`.
pub fn parse_fields(list: &str) -> Vec<Vec<String>> {
    list.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| f.split('.').map(str::to_owned).collect())
        .collect()
}

/// The event type for an entity: `io.busline.cdc.<entity>.changed.v1`, the entity lower-cased with
/// `_` and `.` as `-`.
pub fn event_type(entity: &str) -> Result<EventType, busline::envelope::EnvelopeError> {
    let entity: String = entity
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '_' || c == '.' { '-' } else { c })
        .collect();
    EventType::parse(format!("io.busline.cdc.{entity}.changed.v1"))
}

/// One change, Debezium-style.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `c`, `u` or `d`.
    pub op: String,
    /// The item before the change (`null` for a create).
    pub before: Option<Value>,
    /// The item after the change (`null` for a delete).
    pub after: Option<Value>,
    /// Where the change comes from.
    pub source: ChangeSource,
    /// When the change happened (the stream's approximate creation time), ms since the epoch.
    pub ts_ms: i64,
}

/// Where a change comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeSource {
    /// The table's name: the record's own, or the one in the stream's ARN.
    pub table: String,
    /// The stream's ARN: the record's `eventSourceARN`.
    pub stream_arn: String,
    /// The record's sequence number: the order of changes to one key.
    pub sequence_number: String,
    /// The item's key, as plain JSON.
    pub keys: Value,
}

/// Why a stream record is not a change. Permanent: the record goes to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
#[error("stream record {record_id} is not a change: {reason}")]
pub struct MalformedRecord {
    /// The record's event id, or its position in the batch.
    pub record_id: String,
    /// What is missing or malformed in it, for the dead letter's reason.
    pub reason: String,
}

impl Classify for MalformedRecord {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }

    fn error_type(&self) -> &'static str {
        "MalformedStreamRecord"
    }
}

/// Why the batch could not be handled at all (Lambda retries it).
#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    /// The event is not a stream batch (`Records` missing).
    #[error("the event is not a DynamoDB stream batch: {0}")]
    NotABatch(String),
}

impl Classify for CdcError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }

    fn error_type(&self) -> &'static str {
        "NotAStreamBatch"
    }
}

fn item_json(item: &serde_dynamo::Item) -> Result<Value, String> {
    serde_dynamo::from_item(item.clone()).map_err(|e| e.to_string())
}

fn drop_path(value: &mut Value, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            if let Some(map) = value.as_object_mut() {
                map.remove(last);
            }
        }
        [first, rest @ ..] => {
            if let Some(inner) = value.get_mut(first) {
                drop_path(inner, rest);
            }
        }
    }
}

/// `customer_id=C-42`, or `pk=A,sk=B` for a composite key (attributes in name order).
fn subject(keys: &Map<String, Value>) -> String {
    keys.iter()
        .map(|(name, value)| match value {
            Value::String(s) => format!("{name}={s}"),
            other => format!("{name}={other}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The table's name in a stream ARN (`arn:aws:dynamodb:…:table/<name>/stream/<time>`).
fn table_name(stream_arn: &str) -> Option<&str> {
    stream_arn.split(":table/").nth(1)?.split('/').next()
}

/// Reads one stream record as a change and its envelope.
pub fn change(record: &EventRecord, config: &CdcConfig) -> Result<Envelope<Change>, String> {
    let op = match record.event_name.as_str() {
        "INSERT" => "c",
        "MODIFY" => "u",
        "REMOVE" => "d",
        other => return Err(format!("unknown eventName {other:?}")),
    };
    let stream_arn = record.event_source_arn.clone().ok_or("no eventSourceARN")?;
    let table = record
        .table_name
        .clone()
        .or_else(|| table_name(&stream_arn).map(str::to_owned))
        .ok_or_else(|| format!("no table name in {stream_arn:?}"))?;
    let sequence_number = record
        .change
        .sequence_number
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or("no SequenceNumber")?;
    let keys = item_json(&record.change.keys).map_err(|e| format!("Keys: {e}"))?;
    let Value::Object(key_map) = &keys else {
        return Err("Keys is not a map".to_owned());
    };
    if key_map.is_empty() {
        return Err("no Keys".to_owned());
    }
    let image =
        |item: &serde_dynamo::Item, name: &str, wanted: bool| -> Result<Option<Value>, String> {
            if !wanted {
                return Ok(None);
            }
            if item.is_empty() {
                return Err(format!("no {name} (the stream must be NEW_AND_OLD_IMAGES)"));
            }
            let mut value = item_json(item).map_err(|e| format!("{name}: {e}"))?;
            for path in &config.drop_fields {
                drop_path(&mut value, path);
            }
            Ok(Some(value))
        };
    let before = image(&record.change.old_image, "OldImage", op != "c")?;
    let after = image(&record.change.new_image, "NewImage", op != "d")?;
    let entity = config.entity.as_deref().unwrap_or(&table);
    let event_type = event_type(entity).map_err(|e| e.to_string())?;
    let at = record.change.approximate_creation_date_time;
    let id = uuid::Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!("{stream_arn}/{sequence_number}").as_bytes(),
    );
    let subject = subject(key_map);
    let mut envelope = Envelope::new(
        id.to_string(),
        format!("busline.cdc.{table}"),
        event_type,
        Change {
            op: op.to_owned(),
            before,
            after,
            source: ChangeSource {
                table,
                stream_arn,
                sequence_number,
                keys,
            },
            ts_ms: at.timestamp_millis(),
        },
    )
    .with_subject(subject);
    envelope.time = Some(at);
    Ok(envelope)
}

/// What happened to a batch, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Changes the bus took, counted a chunk at a time: a chunk it did not take whole counts none.
    pub published: usize,
    /// Records sent to the dead-letter queue.
    pub dead_lettered: usize,
    /// The sequence number the shard resumes at, if the batch stopped early.
    pub resume_at: Option<String>,
}

impl Outcome {
    /// The partial batch response Lambda reads.
    pub fn response(&self) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        if let Some(at) = &self.resume_at {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(at.clone());
            response.batch_item_failures.push(failure);
        }
        response
    }
}

/// The Lambda handler. The event is read record by record, so one malformed record does not take
/// the batch down with it. Changes are published ten at a time as they are read, and no record or
/// call is started that the time left before `deadline` (the invocation's) would not hold with the
/// stop margin: past that, the shard resumes at the first change not yet published, instead of
/// Lambda killing the invocation mid-call and retrying the whole batch.
pub async fn handle<P: EventPublisher, D: DeadLetterQueue, S: PayloadStore>(
    event: Value,
    config: &CdcConfig,
    publisher: &P,
    dead_letters: &D,
    payloads: &S,
    deadline: Deadline,
) -> Result<Outcome, CdcError> {
    let Some(Value::Array(records)) = event.get("Records") else {
        return Err(CdcError::NotABatch("no Records array".to_owned()));
    };
    let mut batch = Batch {
        publisher,
        pacer: Pacer::new(deadline, DEFAULT_STOP_MARGIN),
        // Calls to the bus end by the margin, so the answer still goes out in time.
        publish_by: deadline.less(DEFAULT_STOP_MARGIN),
        pending: Changes::default(),
        outcome: Outcome::default(),
    };
    for (position, raw) in records.iter().enumerate() {
        let own_sequence = raw
            .pointer("/dynamodb/SequenceNumber")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Err(short) = batch.pacer.check() {
            let resume = own_sequence.or_else(|| first_sequence(records));
            tracing::warn!(
                left_ms = short.left.as_millis() as u64,
                slowest_ms = short.slowest.as_millis() as u64,
                resume_at = ?resume,
                "out of time for the next record; the shard resumes at it"
            );
            return Ok(batch.stop(resume));
        }
        let started = std::time::Instant::now();
        let record_id = raw["eventID"]
            .as_str()
            .map_or_else(|| format!("#{position}"), str::to_owned);
        let parsed = serde_json::from_value::<EventRecord>(raw.clone())
            .map_err(|e| e.to_string())
            .and_then(|record| change(&record, config));
        match parsed {
            Ok(envelope) => {
                // A change starts its own trace (the envelope's): this is its first hop.
                if let Some(trace) = envelope
                    .traceparent
                    .as_deref()
                    .and_then(TraceContext::parse)
                {
                    let lag_ms = envelope.time.map(|t| (Utc::now() - t).num_milliseconds());
                    hop_span(&trace, &envelope.id, &envelope.id, envelope.event_type.as_str())
                        .in_scope(|| {
                            tracing::info!(op = %envelope.data.op, subject = envelope.subject.as_deref(), lag_ms, "change captured");
                        });
                }
                let sequence = envelope.data.source.sequence_number.clone();
                match check_in(envelope, payloads).await {
                    Ok(travelling) => {
                        batch.pending.envelopes.push(travelling);
                        batch.pending.sequences.push(sequence);
                    }
                    Err(e) if e.class() == ErrorClass::Retryable => {
                        tracing::warn!(error = %e, "the claim-check store is unavailable; the shard resumes at this change");
                        return Ok(batch.finish(Some(sequence)).await);
                    }
                    Err(e) => {
                        let letter = (
                            record_id.as_str(),
                            e.error_type(),
                            busline::error::with_causes(&e),
                        );
                        tracing::warn!(record_id, reason = %letter.2, "a change that cannot travel");
                        if let Err(e) = dead_letter(dead_letters, raw, letter).await {
                            tracing::error!(error = %e, "the dead-letter queue is unreachable");
                            return Ok(batch.finish(Some(sequence)).await);
                        }
                        batch.outcome.dead_lettered += 1;
                    }
                }
            }
            Err(reason) => {
                let error = MalformedRecord { record_id, reason };
                tracing::warn!(record_id = %error.record_id, reason = %error.reason, "malformed stream record");
                let letter = (
                    error.record_id.as_str(),
                    error.error_type(),
                    error.to_string(),
                );
                if let Err(e) = dead_letter(dead_letters, raw, letter).await {
                    // Not parked: the shard must stop here. Publish what came before, then resume at
                    // this record (or at the first one, if it has no sequence number of its own).
                    tracing::error!(error = %e, "the dead-letter queue is unreachable");
                    let resume = own_sequence.or_else(|| first_sequence(records));
                    return Ok(batch.finish(resume).await);
                }
                batch.outcome.dead_lettered += 1;
            }
        }
        batch.pacer.took(started.elapsed());
        if batch.pending.envelopes.len() >= MAX_ENTRIES_PER_CALL && !batch.flush().await {
            return Ok(batch.outcome);
        }
    }
    Ok(batch.finish(None).await)
}

fn first_sequence(records: &[Value]) -> Option<String> {
    records.iter().find_map(|r| {
        r.pointer("/dynamodb/SequenceNumber")?
            .as_str()
            .map(str::to_owned)
    })
}

/// Parks `raw` whole, with `(record id, error type, reason)`.
async fn dead_letter<D: DeadLetterQueue>(
    dead_letters: &D,
    raw: &Value,
    (record_id, error_type, reason): (&str, &str, String),
) -> Result<(), DeadLetterError> {
    dead_letters
        .send(&DeadLetter {
            body: raw.to_string(),
            record_id: record_id.to_owned(),
            source: raw["eventSourceARN"].as_str().map(str::to_owned),
            group: None,
            error_type: error_type.to_owned(),
            reason,
        })
        .await
}

/// Changes read but not yet published, in stream order, as they travel, with each one's sequence
/// number.
#[derive(Default)]
struct Changes {
    envelopes: Vec<Envelope<Value>>,
    sequences: Vec<String>,
}

/// A batch under way: what is read and not yet published, and how it is paced.
struct Batch<'a, P> {
    publisher: &'a P,
    pacer: Pacer,
    publish_by: Deadline,
    pending: Changes,
    outcome: Outcome,
}

impl<P: EventPublisher> Batch<'_, P> {
    /// Publishes the pending changes (at most ten) in one call. On a failure, or when the time left
    /// would not hold the call, the outcome resumes the shard at the first change the bus did not
    /// take, and `false` says the batch ends there.
    async fn flush(&mut self) -> bool {
        if self.pending.envelopes.is_empty() {
            return true;
        }
        if let Err(short) = self.pacer.check() {
            let resume = self.pending.sequences.first().cloned();
            tracing::warn!(
                left_ms = short.left.as_millis() as u64,
                slowest_ms = short.slowest.as_millis() as u64,
                resume_at = ?resume,
                "out of time for the next PutEvents call; the shard resumes at its first change"
            );
            self.outcome.resume_at = resume;
            return false;
        }
        let started = std::time::Instant::now();
        let chunk = std::mem::take(&mut self.pending);
        let published = self
            .publisher
            .publish_until(&chunk.envelopes, self.publish_by)
            .await;
        self.pacer.took(started.elapsed());
        match published {
            Ok(()) => {
                self.outcome.published += chunk.envelopes.len();
                true
            }
            Err(error) => {
                let at = match &error {
                    PublishError::Rejected { rejected, .. } => chunk
                        .envelopes
                        .iter()
                        .position(|e| rejected.iter().any(|r| r.event_id == e.id))
                        .unwrap_or(0),
                    _ => 0,
                };
                let resume = chunk.sequences.get(at).cloned();
                tracing::warn!(error = %error, resume_at = ?resume, "the bus did not take every change; the shard resumes there");
                self.outcome.resume_at = resume;
                false
            }
        }
    }

    /// Publishes what is pending; `stop_at` is where the shard resumes if every change is
    /// published but the batch could not be finished.
    async fn finish(mut self, stop_at: Option<String>) -> Outcome {
        if self.flush().await {
            self.outcome.resume_at = stop_at;
        }
        self.outcome
    }

    /// Ends the batch out of time: the shard resumes at the first pending change, or at `here`.
    fn stop(mut self, here: Option<String>) -> Outcome {
        self.outcome.resume_at = self.pending.sequences.first().cloned().or(here);
        self.outcome
    }
}

#[cfg(test)]
mod tests;
