//! The audit trail: every envelope a consumer saw, kept once, findable by correlation id.
//!
//! Records are keyed by the envelope's correlation id (partition) and `<time>#<source>#<id>`
//! (sort), so one query returns a business transaction's events in order. Writing is idempotent:
//! a conditional put that finds the record already there answers [`Recorded::AlreadyThere`], which a
//! consumer treats as success under at-least-once delivery.

#[cfg(any(test, feature = "test-util"))]
use std::collections::BTreeMap;
use std::future::Future;
#[cfg(any(test, feature = "test-util"))]
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Envelope;
use crate::dynamodb::{Conditional, put_if};
use crate::error::{Classify, ErrorClass};

/// The outcome of recording an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The first sighting of the event: the conditional put wrote its record.
    New,
    /// A redelivery: the record was already there.
    AlreadyThere,
}

/// An audit write that failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store could not be reached, or failed for now (throttling, 5xx). Retryable.
    #[error("the audit trail is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store refused the call for good (validation, such as a correlation id over DynamoDB's
    /// 2 KB key limit; access denied; no such table: see [`crate::sdk_error`]). Permanent.
    #[error("the audit trail refused the record")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The envelope cannot be stored as an item. Permanent.
    #[error("envelope {event_id} cannot be stored")]
    Unstorable {
        /// The envelope's id.
        event_id: String,
        /// The (de)serialization error of the envelope or of the stored entry.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Classify for AuditError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable(_) => ErrorClass::Retryable,
            Self::Refused(_) | Self::Unstorable { .. } => ErrorClass::Permanent,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "AuditTrailUnavailable",
            Self::Refused(_) => "AuditTrailRefused",
            Self::Unstorable { .. } => "AuditRecordUnstorable",
        }
    }
}

fn sdk_failure<E>(
    e: aws_sdk_dynamodb::error::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> AuditError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    crate::sdk_error::sort(e, AuditError::Refused, AuditError::Unavailable)
}

/// Keeps envelopes for later inspection.
pub trait AuditTrail: Send + Sync {
    /// Records `envelope` once.
    fn record(
        &self,
        envelope: &Envelope<Value>,
    ) -> impl Future<Output = Result<Recorded, AuditError>> + Send;

    /// Every entry recorded under `correlation_id`, oldest event first.
    fn history(
        &self,
        correlation_id: &str,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, AuditError>> + Send;
}

/// One envelope in the trail, and when it was recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// The envelope as received.
    pub envelope: Envelope<Value>,
    /// When the trail recorded it.
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

/// An audit record as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct AuditRecord {
    pk: String,
    /// `<source>#<id>`: what makes an event itself, so a republished copy (the same id, a later
    /// `time`, as a publisher writes after an answer it never saw) is recognised.
    sk: String,
    /// The event's time, RFC 3339 with milliseconds: the order of a history.
    #[serde(default)]
    time: String,
    event_type: String,
    envelope: String,
    recorded_at_ms: i64,
}

impl AuditRecord {
    fn of(envelope: &Envelope<Value>) -> Result<Self, AuditError> {
        let time = envelope
            .time
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        Ok(Self {
            pk: envelope.correlation_id().to_owned(),
            sk: format!("{}#{}", envelope.source, envelope.id),
            time,
            event_type: envelope.event_type.to_string(),
            envelope: serde_json::to_string(envelope).map_err(|e| AuditError::Unstorable {
                event_id: envelope.id.clone(),
                source: Box::new(e),
            })?,
            recorded_at_ms: chrono::Utc::now().timestamp_millis(),
        })
    }

    fn entry(&self) -> Result<AuditEntry, AuditError> {
        let unstorable =
            |source: Box<dyn std::error::Error + Send + Sync>| AuditError::Unstorable {
                event_id: self.sk.clone(),
                source,
            };
        Ok(AuditEntry {
            envelope: serde_json::from_str(&self.envelope).map_err(|e| unstorable(Box::new(e)))?,
            recorded_at: chrono::DateTime::from_timestamp_millis(self.recorded_at_ms)
                .ok_or_else(|| unstorable("recorded_at_ms is out of range".into()))?,
        })
    }
}

/// A history's order: by the events' time, then by source and id.
fn oldest_first(records: &mut [AuditRecord]) {
    records.sort_by(|a, b| (&a.time, &a.sk).cmp(&(&b.time, &b.sk)));
}

/// The DynamoDB adapter: partition key `pk`, sort key `sk`, both strings.
#[derive(Clone, Debug)]
pub struct DynamoDbAuditTrail {
    client: Client,
    table: String,
}

impl DynamoDbAuditTrail {
    /// An audit trail on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl AuditTrail for DynamoDbAuditTrail {
    async fn record(&self, envelope: &Envelope<Value>) -> Result<Recorded, AuditError> {
        let record = AuditRecord::of(envelope)?;
        let item = serde_dynamo::to_item(&record).map_err(|e| AuditError::Unstorable {
            event_id: envelope.id.clone(),
            source: Box::new(e),
        })?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)");
        match put_if(put).await {
            Ok(Conditional::Written) => Ok(Recorded::New),
            Ok(Conditional::ConditionFailed(_)) => Ok(Recorded::AlreadyThere),
            Err(e) => Err(sdk_failure(e)),
        }
    }

    async fn history(&self, correlation_id: &str) -> Result<Vec<AuditEntry>, AuditError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(correlation_id.to_owned()),
            )
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_failure)?;
        let mut records = items
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, AuditRecord>(item).map_err(|e| {
                    AuditError::Unstorable {
                        event_id: correlation_id.to_owned(),
                        source: Box::new(e),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        oldest_first(&mut records);
        records.iter().map(AuditRecord::entry).collect()
    }
}

/// The in-memory twin.
#[cfg(any(test, feature = "test-util"))]
#[derive(Clone, Debug, Default)]
pub struct InMemoryAuditTrail {
    records: Arc<Mutex<BTreeMap<(String, String), AuditRecord>>>,
    unavailable: Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(any(test, feature = "test-util"))]
impl InMemoryAuditTrail {
    /// An empty trail.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every record call fail as if the store could not be reached.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable
            .store(unavailable, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "test-util"))]
impl AuditTrail for InMemoryAuditTrail {
    async fn record(&self, envelope: &Envelope<Value>) -> Result<Recorded, AuditError> {
        if self.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(AuditError::Unavailable(
                "the in-memory audit trail is set unavailable".into(),
            ));
        }
        let record = AuditRecord::of(envelope)?;
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (record.pk.clone(), record.sk.clone());
        if records.contains_key(&key) {
            return Ok(Recorded::AlreadyThere);
        }
        records.insert(key, record);
        Ok(Recorded::New)
    }

    async fn history(&self, correlation_id: &str) -> Result<Vec<AuditEntry>, AuditError> {
        let mut records: Vec<AuditRecord> = self
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|((pk, _), _)| pk == correlation_id)
            .map(|(_, r)| r.clone())
            .collect();
        oldest_first(&mut records);
        records.iter().map(AuditRecord::entry).collect()
    }
}

/// The contract every [`AuditTrail`] keeps; `correlation_prefix` keeps runs on a shared table apart.
#[cfg(any(test, feature = "test-util"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code, which fails by panicking"
)]
pub async fn contract<A: AuditTrail>(trail: &A, correlation_prefix: &str) {
    use crate::EventType;
    let correlation = format!("{correlation_prefix}order-7");
    let event = |id: &str, second: u32| {
        let mut e = Envelope::new(
            id,
            "busline.test",
            EventType::parse("io.busline.test.step.v1").unwrap(),
            serde_json::json!({"id": id}),
        )
        .with_correlation_id(&correlation);
        e.time = chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(second), 0);
        e
    };
    let (second, first) = (event("evt-2", 2), event("evt-1", 1));

    assert_eq!(trail.record(&second).await.unwrap(), Recorded::New);
    assert_eq!(trail.record(&first).await.unwrap(), Recorded::New);
    // A redelivery is recognised and stored once, and so is a copy published again later.
    assert_eq!(trail.record(&second).await.unwrap(), Recorded::AlreadyThere);
    let mut republished = second.clone();
    republished.time = chrono::DateTime::from_timestamp(1_800_000_009, 0);
    assert_eq!(
        trail.record(&republished).await.unwrap(),
        Recorded::AlreadyThere
    );

    let history: Vec<_> = trail
        .history(&correlation)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.envelope)
        .collect();
    assert_eq!(
        history,
        vec![first, second],
        "oldest first, each once, losslessly"
    );
    assert!(
        trail
            .history(&format!("{correlation_prefix}nobody"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_memory_twin_keeps_the_contract() {
        contract(&InMemoryAuditTrail::new(), "").await;
    }
}
