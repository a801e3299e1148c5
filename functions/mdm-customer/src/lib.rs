//! The customer master (MDM): one golden record per customer, merged field by field from the
//! CRM, the web shop and the ERP.
//!
//! A rule on the bus sends the three sources' events through a queue (with a dead-letter queue) to
//! this function. Each is mapped to a canonical [`CustomerUpdate`](merge::CustomerUpdate)
//! ([`sources`]) and merged into the master ([`merge`]) under the survivorship rules in
//! `MDM_RULES` (JSON; [`Rules::default`](merge::Rules) when unset): source priority per field,
//! last-writer-wins on the source's own timestamp, and a fallback to any source's value until a
//! preferred one sends one. Every field keeps its provenance (source and timestamp).
//!
//! - **Concurrency.** Every write is conditional on the version read; on a conflict the handler
//!   re-reads and re-merges (up to 5 times, then the message is retried), never overwriting blindly.
//! - **At-least-once.** The merge is a per-field maximum under a total order, so duplicates and
//!   any delivery order converge to the same master (property-tested).
//! - **Downstream sync.** Only a change of value publishes `io.busline.customer-master.changed.v1`,
//!   with only the changed fields and their provenance, under an id derived from the customer and the
//!   record's version. A change written but not yet on the bus (the bus was down) is published by
//!   the next delivery for that customer, before anything else is merged.
//! - **Audit.** Each incoming value the rules discarded is logged as an audit entry (target
//!   `busline::audit`: the field, the incoming and the kept provenance; never the values, which may be
//!   personal data).
//! - **Bad input.** An event that is not a customer change, or lacks what the master needs, goes to
//!   the dead-letter queue with the reason.

pub mod merge;
pub mod sources;
pub mod store;

use std::collections::BTreeMap;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use busline::batch::{BatchError, BatchProcessor, DeadLetterQueue};
use busline::bus::{EventPublisher, PublishError};
use busline::claim_check::{ClaimCheckError, PayloadStore, resolve};
use busline::config::{ConfigError, Env};
use busline::retry::Deadline;
use busline::telemetry::{Hop, sqs_sent_at};
use busline::{Classify, Envelope, ErrorClass, EventType};
use serde_json::{Value, json};

use crate::merge::{CustomerUpdate, Discarded, Rules, merge};
use crate::sources::Mapped;
use crate::store::{MasterStore, Record, StoreError};

/// The event a change of the master is published as.
pub const MASTER_CHANGED: &str = "io.busline.customer-master.changed.v1";

/// Merges tried before the message is handed back for a retry.
pub const MAX_MERGES: usize = 5;

/// How far ahead of now a source's timestamp may be. "Latest wins" trusts sources' clocks, so an
/// update dated a year ahead would win every such field for a year, whatever came after it: past
/// this bound a change is refused, permanently, to the dead-letter queue with the reason.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// Reads `MDM_RULES`, or the default rules when it is unset.
pub fn rules_from_env(env: &impl Env) -> Result<Rules, ConfigError> {
    match env.get("MDM_RULES").filter(|r| !r.trim().is_empty()) {
        None => Ok(Rules::default()),
        Some(json) => serde_json::from_str(&json).map_err(|_| ConfigError::Invalid {
            name: "MDM_RULES",
            value: json,
            expected: r#"{"default": "latest", "fields": {"phone": {"priority": ["crm", "erp"]}}}"#,
        }),
    }
}

/// Why a change could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MdmError {
    /// Not a customer change the master can take. Permanent.
    #[error("not a customer change: {0}")]
    Malformed(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change's checked-in payload could not be resolved.
    #[error(transparent)]
    ClaimCheck(#[from] ClaimCheckError),
    /// The source's timestamp is further ahead of now than [`MAX_FUTURE_SKEW_MS`]. Permanent.
    #[error(
        "the {source_name} change to customer {customer_id} is dated {ahead_ms} ms ahead of now, beyond the {} s skew bound; fix the source's clock or its timestamp and redrive it",
        MAX_FUTURE_SKEW_MS / 1000
    )]
    FutureDated {
        /// The customer's id (the CRM's) the change is for.
        customer_id: String,
        /// The update's source: `crm`, `helpdesk`, `shop` or `erp`.
        source_name: String,
        /// How far ahead of now.
        ahead_ms: i64,
    },
    /// Other writers kept winning the race.
    #[error("customer {0} kept changing during {MAX_MERGES} merges")]
    Contended(String),
    /// The change is written but not on the bus yet; the retry publishes it.
    #[error("the master changed but the change could not be published")]
    Publish(#[source] PublishError),
}

impl Classify for MdmError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Malformed(_) | Self::FutureDated { .. } => ErrorClass::Permanent,
            Self::Store(e) => e.class(),
            Self::ClaimCheck(e) => e.class(),
            Self::Contended(_) | Self::Publish(_) => ErrorClass::Retryable,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "MalformedCustomerChange",
            Self::FutureDated { .. } => "FutureDatedChange",
            Self::Store(e) => e.error_type(),
            Self::ClaimCheck(e) => e.error_type(),
            Self::Contended(_) => "MasterContended",
            Self::Publish(_) => "BusUnavailable",
        }
    }
}

/// What a change did to the master.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Values changed; the change is on the bus as this version.
    Changed {
        /// The record's version.
        version: u64,
        /// The fields that changed, with their new values.
        changed: BTreeMap<String, Value>,
    },
    /// No value changed (a duplicate, a losing value, or only provenance moved).
    Unchanged,
    /// Nothing for the master, and why.
    Ignored(&'static str),
}

/// The customer master: its store, the bus, and the rules.
pub struct CustomerMaster<S, P> {
    /// Where the master lives.
    pub store: S,
    /// Where changes go.
    pub publisher: P,
    /// The survivorship rules.
    pub rules: Rules,
}

impl<S: MasterStore, P: EventPublisher> CustomerMaster<S, P> {
    /// Maps an envelope from a source and merges it.
    pub async fn apply_envelope(&self, envelope: &Envelope<Value>) -> Result<Applied, MdmError> {
        match sources::map(envelope).map_err(MdmError::Malformed)? {
            Mapped::Nothing(why) => Ok(Applied::Ignored(why)),
            Mapped::Update(update) => self.apply(&update).await,
        }
    }

    /// Merges one update into the master.
    pub async fn apply(&self, update: &CustomerUpdate) -> Result<Applied, MdmError> {
        let ahead_ms = update.ts_ms - chrono::Utc::now().timestamp_millis();
        if ahead_ms > MAX_FUTURE_SKEW_MS {
            return Err(MdmError::FutureDated {
                customer_id: update.customer_id.clone(),
                source_name: update.source.clone(),
                ahead_ms,
            });
        }
        for _ in 0..MAX_MERGES {
            let stored = self.store.get(&update.customer_id).await?;
            if let Some(stored) = &stored
                && stored.published_version < stored.version
            {
                // The last change never reached the bus: it goes first.
                self.publish(stored).await?;
            }
            let mut record = stored.unwrap_or_else(|| Record {
                customer_id: update.customer_id.clone(),
                ..Record::default()
            });
            let mut master = record.master();
            let merged = merge(&mut master, update, &self.rules);
            audit(update, &merged.discarded);
            if !merged.provenance_changed {
                return Ok(Applied::Unchanged);
            }
            let expected = record.version;
            record.fields = master.fields;
            record.version += 1;
            record.last_change = merged.changed.clone();
            if merged.changed.is_empty() {
                // Only provenance moved: nothing for downstream systems.
                record.published_version = record.version;
            }
            match self.store.put(&record, expected).await {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => {
                    tracing::info!(customer_id = %update.customer_id, expected, "the master changed under us; re-reading");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            if merged.changed.is_empty() {
                return Ok(Applied::Unchanged);
            }
            self.publish(&record).await?;
            return Ok(Applied::Changed {
                version: record.version,
                changed: merged.changed,
            });
        }
        Err(MdmError::Contended(update.customer_id.clone()))
    }

    async fn publish(&self, record: &Record) -> Result<(), MdmError> {
        let provenance: BTreeMap<&String, Value> = record
            .last_change
            .keys()
            .filter_map(|field| {
                let held = record.fields.get(field)?;
                Some((field, json!({"source": held.source, "ts_ms": held.ts_ms})))
            })
            .collect();
        #[expect(
            clippy::expect_used,
            reason = "a constant, published by this crate's tests"
        )]
        let event_type = EventType::parse(MASTER_CHANGED).expect("a versioned type");
        let envelope = Envelope::new(
            format!("customer-master/{}/v{}", record.customer_id, record.version),
            "busline.mdm.customer",
            event_type,
            json!({
                "customer_id": record.customer_id,
                "version": record.version,
                "changed": record.last_change,
                "provenance": provenance,
            }),
        )
        .with_subject(record.customer_id.clone());
        self.publisher
            .publish(std::slice::from_ref(&envelope))
            .await
            .map_err(MdmError::Publish)?;
        self.store
            .mark_published(&record.customer_id, record.version)
            .await?;
        Ok(())
    }
}

/// The Lambda handler: a batch of source events from the queue, each merged; what can never be
/// merged goes to the dead-letter queue with the reason, what failed for a passing reason is
/// retried. Fails as a whole only when every record failed.
///
/// An event whose payload was checked in (too large for the bus, `dataref`) is resolved from
/// `payloads` first.
pub async fn handle<S: MasterStore, P: EventPublisher, Q: DeadLetterQueue, R: PayloadStore>(
    event: SqsEvent,
    master: &CustomerMaster<S, P>,
    processor: &BatchProcessor<Q>,
    payloads: &R,
    deadline: Deadline,
) -> Result<SqsBatchResponse, BatchError> {
    let report = processor
        .sqs_until(&event, deadline, async |message| {
            let body = message.body.as_deref().unwrap_or_default();
            let event: EventBridgeEvent<Value> = serde_json::from_str(body).map_err(|e| {
                MdmError::Malformed(format!("the body is not an EventBridge event: {e}"))
            })?;
            Hop::of_detail(&event.detail)
                .queued_at(sqs_sent_at(message))
                .run(async {
                    let envelope = Envelope::<Value>::from_eventbridge(event)
                        .map_err(|e| MdmError::Malformed(e.to_string()))?;
                    let envelope = resolve(envelope, payloads).await?;
                    let applied = master.apply_envelope(&envelope).await?;
                    tracing::info!(?applied, "merged");
                    Ok::<_, MdmError>(())
                })
                .await
        })
        .await;
    report.into_result()
}

fn audit(update: &CustomerUpdate, discarded: &[Discarded]) {
    for d in discarded {
        tracing::info!(
            target: "busline::audit",
            customer_id = %update.customer_id,
            field = %d.field,
            incoming_source = %d.incoming.source,
            incoming_ts_ms = d.incoming.ts_ms,
            kept_source = %d.kept.source,
            kept_ts_ms = d.kept.ts_ms,
            "incoming value discarded by the survivorship rules"
        );
    }
}

#[cfg(test)]
mod tests;
