//! Scheduled batch sync: an EventBridge schedule runs it; it pulls the records a source system
//! changed since the last run from its paginated HTTP API, and publishes each as an envelope.
//!
//! The source API: `GET {SOURCE_URL}?changed_since=<RFC 3339>&limit=<n>[&cursor=<token>]` answers
//! `{"records": [{"id": "...", "updated_at": "<RFC 3339>", ...}], "next_cursor": "<token>" | null}`.
//!
//! The checkpoint (the toolkit's [`CheckpointStore`], name `SYNC_NAME`) holds the run's position as
//! JSON: the watermark, the page cursor of a run in progress, the highest `updated_at` seen in it,
//! and the run that holds the lease. A run:
//! 1. reads the checkpoint; if another run holds an unexpired lease it stops (`Refused`); a lease
//!    lasts until its run's invocation deadline, so a run killed midway is taken over after it;
//! 2. claims the lease with a conditional advance: of two runs that read the same version, one
//!    wins and the other is refused, so two runs never work (and publish) the same pages;
//! 3. resumes the run in progress at its cursor, or starts a new one from the watermark;
//! 4. per page: fetches it, publishes its records (ten per `PutEvents`), and only then advances the
//!    checkpoint to the next cursor; a run killed between the two republishes that one page under
//!    the same event ids (derived from the record id and its `updated_at`), so consumers drop the
//!    copies;
//! 5. after the last page, moves the watermark to the highest `updated_at` seen and releases the
//!    lease. The next run asks for `changed_since` that watermark, inclusive, so a record updated in
//!    the same instant is not missed (and republished under the same id if it was seen).
//!
//! It respects the source's rate limit (a `429`'s `Retry-After`) and retries `5xx`, transport errors
//! and unreadable answers with backoff, all within the invocation's time: before it would run out,
//! it stops cleanly, releasing the lease with the checkpoint at the last published page. A page
//! whose publish the deadline cuts short ends the run the same way (`cut_short` counts its records,
//! which the next run publishes again under the same ids).
//!
//! Nothing stalls it for good:
//! - a record without an `id` or `updated_at`, or one that cannot travel on the bus (its envelope
//!   over 256 KB), goes to the dead-letter queue whole, with the reason, and the rest of the page
//!   goes on;
//! - a saved cursor the source no longer knows (it answers `400`, `404`, `410` or `422` to a page
//!   asked for with a cursor) restarts the run from the watermark, once, and says so; the pages
//!   already published in it are published again under the same event ids;
//! - any other refusal (a `4xx` but `429`) fails the run as permanent (`SourceRefused`), and a bus
//!   that refuses for good fails it as permanent too: retrying either is a stall.

use std::time::Duration;

use busline::batch::{DeadLetter, DeadLetterQueue};
use busline::bus::{EventPublisher, PublishError};
use busline::checkpoint::{CheckpointError, CheckpointStore};
use busline::config::{ConfigError, Env};
use busline::retry::{Backoff, Deadline, Pacer};
use busline::{Classify, Envelope, ErrorClass, EventType};
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Namespace for event ids derived from `(sync, record id, updated_at)`.
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b1f_4d0e_2a7c_4c1b_9f3e_b05e_11ae_0006);

/// Where a first run starts.
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

/// What the sync is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// The checkpoint's name and the event type's entity (`SYNC_NAME`).
    pub name: String,
    /// The source API's records URL (`SOURCE_URL`).
    pub source_url: String,
    /// Records per page (`PAGE_SIZE`, default 100).
    pub page_size: u32,
    /// Time kept in hand before the invocation's deadline (`STOP_MARGIN_MS`, default 3000).
    pub stop_margin: Duration,
}

impl SyncConfig {
    /// Reads the variables.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let name = env.require(
            "SYNC_NAME",
            "the sync's name (its checkpoint and event type)",
        )?;
        event_type(&name).map_err(|_| ConfigError::Invalid {
            name: "SYNC_NAME",
            value: name.clone(),
            expected: "letters, digits and '-'",
        })?;
        Ok(Self {
            name,
            source_url: env.require("SOURCE_URL", "the source API's records URL")?,
            page_size: env.parse_or("PAGE_SIZE", 100, "records per page")?,
            stop_margin: Duration::from_millis(env.parse_or(
                "STOP_MARGIN_MS",
                3000,
                "milliseconds kept before the deadline",
            )?),
        })
    }
}

/// `io.busline.sync.<name>.changed.v1`.
pub fn event_type(name: &str) -> Result<EventType, busline::envelope::EnvelopeError> {
    EventType::parse(format!("io.busline.sync.{name}.changed.v1"))
}

/// The checkpoint's cursor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Records changed at or after this were not all published yet.
    pub watermark: String,
    /// The next page of the run in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Whether a run is in progress (its next page is `cursor`, or its first page if `None`).
    #[serde(default)]
    pub in_progress: bool,
    /// The highest `updated_at` the run in progress has published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_water: Option<String>,
    /// The run holding the lease, and until when (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// Who holds the sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The run's id: the Lambda request id of the invocation holding the lease.
    pub run_id: String,
    /// Until when, Unix ms.
    pub until_ms: i64,
}

/// How a run ended.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Pages fetched and published.
    pub pages: u32,
    /// Records the bus took, a page at a time; a page published again after a restart counts again.
    pub published: u64,
    /// Records sent to the dead-letter queue.
    pub dead_lettered: u64,
    /// Batches of at most ten records handed to the bus (each one `PutEvents` call unless the
    /// entries are too large for one, or some are rejected and retried).
    pub batches: u64,
    /// Whether the run reached the last page (otherwise the next run resumes it).
    pub complete: bool,
    /// Whether the saved cursor had expired at the source, so the run started again from the
    /// watermark.
    pub restarted: bool,
    /// Why it stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Records of a page whose publish the deadline cut short: some of them may be on the bus,
    /// and the next run publishes them again under the same ids (consumers deduplicate on them).
    #[serde(skip_serializing_if = "is_zero")]
    pub cut_short: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Another run holds the sync, or won the race to it.
    #[error("another run holds the sync: {0}")]
    Refused(String),
    /// The checkpoint store failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The stored checkpoint does not read as a position.
    #[error("checkpoint {name} does not read as a sync position: {why}")]
    BadCheckpoint {
        /// The checkpoint's name: `SYNC_NAME`.
        name: String,
        /// What in the saved checkpoint does not parse as a cursor.
        why: String,
    },
    /// The source kept failing (after its retries, within the time left).
    #[error("the source failed: {0}")]
    Source(String),
    /// The source refused the request (a 4xx other than 429). Permanent.
    #[error("the source refused the request: {0}")]
    SourceRefused(String),
    /// The bus did not take a page.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A record could not be parked in the dead-letter queue.
    #[error(transparent)]
    DeadLetter(#[from] busline::batch::DeadLetterError),
}

impl Classify for SyncError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Refused(_) => ErrorClass::Duplicate,
            Self::Checkpoint(e) => e.class(),
            Self::BadCheckpoint { .. } | Self::SourceRefused(_) => ErrorClass::Permanent,
            Self::Publish(e) => e.class(),
            _ => ErrorClass::Retryable,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Refused(_) => "SyncRefused",
            Self::Checkpoint(e) => e.error_type(),
            Self::BadCheckpoint { .. } => "SyncCheckpointUnreadable",
            Self::Source(_) => "SourceUnavailable",
            Self::SourceRefused(_) => "SourceRefused",
            Self::Publish(_) => "BusUnavailable",
            Self::DeadLetter(_) => "DeadLetterUnavailable",
        }
    }
}

/// A page as the source answers it.
#[derive(Debug, Deserialize)]
struct Page {
    records: Vec<Value>,
    next_cursor: Option<String>,
}

/// What fetching a page came to.
enum Fetched {
    Page(Page),
    /// The source does not know the cursor (any more): start the run again from the watermark.
    CursorExpired(String),
    /// Out of time (waiting for the rate limit or a retry would pass the deadline).
    OutOfTime(String),
}

/// A batch sync of one source to the bus: its configuration, the source's HTTP client and the
/// ports.
pub struct SourceSync<C, P, D> {
    /// What it is told.
    pub config: SyncConfig,
    /// The source's client.
    pub http: reqwest::Client,
    /// The checkpoint store.
    pub checkpoints: C,
    /// The event bus the records go to, at most ten per `PutEvents` call.
    pub publisher: P,
    /// Where bad records go.
    pub dead_letters: D,
    /// Retries of the source.
    pub backoff: Backoff,
}

impl<C: CheckpointStore, P: EventPublisher, D: DeadLetterQueue> SourceSync<C, P, D> {
    /// One run, until the last page or the deadline.
    pub async fn run(&self, run_id: &str, deadline: Deadline) -> Result<Report, SyncError> {
        let name = &self.config.name;
        let current = self.checkpoints.get(name).await?;
        let (version, mut position) = match &current {
            None => (
                0,
                Position {
                    watermark: EPOCH.to_owned(),
                    ..Position::default()
                },
            ),
            Some(checkpoint) => (
                checkpoint.version,
                serde_json::from_str(&checkpoint.cursor).map_err(|e| SyncError::BadCheckpoint {
                    name: name.clone(),
                    why: e.to_string(),
                })?,
            ),
        };
        let now = busline::retry::now_millis();
        if let Some(lease) = &position.lease
            && lease.until_ms > now
            && lease.run_id != run_id
        {
            return Err(SyncError::Refused(format!(
                "run {} holds it for another {} ms",
                lease.run_id,
                lease.until_ms - now
            )));
        }
        // Claim: of two runs that read this version, one advances it and the other is refused.
        if !position.in_progress {
            position.in_progress = true;
            position.cursor = None;
            position.high_water = None;
        }
        // The lease lasts as long as this invocation can: a run killed midway cannot outlive its
        // deadline, so the next run takes over from its last checkpoint once the deadline is past.
        position.lease = Some(Lease {
            run_id: run_id.to_owned(),
            until_ms: deadline.epoch_millis() + 1000,
        });
        let mut version = self
            .advance(version, &position)
            .await
            .map_err(|e| match e {
                SyncError::Checkpoint(CheckpointError::Conflict { .. }) => {
                    SyncError::Refused("another run claimed it first".to_owned())
                }
                other => other,
            })?;

        let mut report = Report::default();
        match self
            .pages(&mut position, &mut version, deadline, &mut report)
            .await
        {
            Ok(()) if report.complete => {
                tracing::info!(sync = %name, ?report, watermark = %position.watermark, "sync complete");
                Ok(report)
            }
            Ok(()) => {
                // Stopped early: keep the position, and let the next run take over at once.
                position.lease = None;
                self.advance(version, &position).await?;
                tracing::warn!(sync = %name, ?report, cursor = ?position.cursor, "sync stopped before the last page; the next run resumes");
                Ok(report)
            }
            Err(error) => {
                // The checkpoint stands at the last published page; free it for the retry.
                position.lease = None;
                if let Err(e) = self.advance(version, &position).await {
                    tracing::warn!(error = %e, "could not release the lease; it lapses at the deadline");
                }
                Err(error)
            }
        }
    }

    /// Works through the pages from `position`, advancing the checkpoint after each.
    async fn pages(
        &self,
        position: &mut Position,
        version: &mut u64,
        deadline: Deadline,
        report: &mut Report,
    ) -> Result<(), SyncError> {
        let mut restarted = false;
        // A page (fetch, publish, checkpoint) is only started when the time left holds the margin
        // and the slowest page so far, so a slow source or a slow bus makes the run stop cleanly
        // between pages instead of being killed by Lambda in the middle of one.
        let pacer = Pacer::new(deadline, self.config.stop_margin);
        loop {
            if let Err(short) = pacer.check() {
                report.stopped = Some(format!(
                    "out of time before the next page: {} ms left, the slowest page took {} ms",
                    short.left.as_millis(),
                    short.slowest.as_millis()
                ));
                return Ok(());
            }
            let page_started = std::time::Instant::now();
            let page = match self.fetch(position, deadline).await? {
                Fetched::Page(page) => page,
                Fetched::CursorExpired(why) if !restarted => {
                    restarted = true;
                    tracing::warn!(sync = %self.config.name, cursor = ?position.cursor, watermark = %position.watermark, reason = %why, "the source no longer knows the saved cursor; restarting the run from the watermark (pages already published go out again under the same ids)");
                    position.cursor = None;
                    *version = self.advance(*version, position).await?;
                    report.restarted = true;
                    continue;
                }
                Fetched::CursorExpired(why) => return Err(SyncError::SourceRefused(why)),
                Fetched::OutOfTime(why) => {
                    report.stopped = Some(why);
                    return Ok(());
                }
            };
            let mut envelopes = Vec::with_capacity(page.records.len());
            for record in &page.records {
                let checked = self
                    .envelope(record)
                    .map_err(|reason| ("MalformedSourceRecord", reason))
                    .and_then(|(envelope, updated_at)| {
                        // What the bus can never take is parked now, not retried with its page.
                        envelope
                            .to_eventbridge_entry("size-check")
                            .map(|_| (envelope, updated_at))
                            .map_err(|e| {
                                (
                                    "UnpublishableSourceRecord",
                                    format!("the record cannot travel on the bus: {e}"),
                                )
                            })
                    });
                match checked {
                    Ok((envelope, updated_at)) => {
                        if position
                            .high_water
                            .as_deref()
                            .is_none_or(|h| later(&updated_at, h))
                        {
                            position.high_water = Some(updated_at);
                        }
                        envelopes.push(envelope);
                    }
                    Err((error_type, reason)) => {
                        self.dead_letters
                            .send(&DeadLetter {
                                body: record.to_string(),
                                record_id: record["id"].as_str().unwrap_or("?").to_owned(),
                                source: Some(self.config.source_url.clone()),
                                group: None,
                                error_type: error_type.to_owned(),
                                reason,
                            })
                            .await?;
                        report.dead_lettered += 1;
                    }
                }
            }
            // The page may take what is left of the run, not the bus's default budget (which is
            // sized for a webhook caller waiting on an answer): a slow bus then fails no page the
            // invocation had time for.
            let publish_by = deadline.less(self.config.stop_margin);
            if let Err(error) = self.publisher.publish_until(&envelopes, publish_by).await {
                // A page the deadline cut short, after this run has made progress, is where the
                // run stops, not a failure: the checkpoint stands at the last page the bus took
                // whole, and the next run publishes this one again under the same ids. A bus that
                // fails with time still left, or before any page went out, fails the run.
                pacer.took(page_started.elapsed());
                if error.class() == ErrorClass::Retryable
                    && report.pages > 0
                    && pacer.check().is_err()
                {
                    report.cut_short = envelopes.len() as u64;
                    report.stopped = Some(format!(
                        "out of time publishing page {}; its records go out again from the \
                         checkpoint under the same ids: {error}",
                        report.pages + 1
                    ));
                    return Ok(());
                }
                return Err(error.into());
            }
            report.batches += envelopes.len().div_ceil(busline::bus::MAX_ENTRIES_PER_CALL) as u64;
            report.published += envelopes.len() as u64;
            report.pages += 1;
            // Only now: the page is on the bus.
            position.cursor = page.next_cursor;
            if position.cursor.is_none() {
                position.in_progress = false;
                if let Some(high) = position.high_water.take() {
                    position.watermark = high;
                }
                position.lease = None;
                *version = self.advance(*version, position).await?;
                report.complete = true;
                return Ok(());
            }
            *version = self.advance(*version, position).await?;
            pacer.took(page_started.elapsed());
        }
    }

    async fn advance(&self, expected: u64, position: &Position) -> Result<u64, SyncError> {
        let cursor = serde_json::to_string(position).map_err(|e| SyncError::BadCheckpoint {
            name: self.config.name.clone(),
            why: format!("the position does not serialise: {e}"),
        })?;
        Ok(self
            .checkpoints
            .advance(&self.config.name, expected, &cursor)
            .await?
            .version)
    }

    fn envelope(&self, record: &Value) -> Result<(Envelope<Value>, String), String> {
        let id = record
            .get("id")
            .and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            })
            .filter(|id| !id.is_empty())
            .ok_or("the record has no id")?;
        let updated_at = record
            .get("updated_at")
            .and_then(Value::as_str)
            .ok_or("the record has no updated_at")?;
        let time = DateTime::parse_from_rfc3339(updated_at)
            .map_err(|e| format!("updated_at {updated_at:?} is not an RFC 3339 time: {e}"))?;
        let event_id = uuid::Uuid::new_v5(
            &EVENT_ID_NAMESPACE,
            format!("{}/{id}/{updated_at}", self.config.name).as_bytes(),
        );
        let mut envelope = Envelope::new(
            event_id.to_string(),
            format!("busline.sync.{}", self.config.name),
            event_type(&self.config.name).map_err(|e| format!("the sync's event type: {e}"))?,
            record.clone(),
        )
        .with_subject(id);
        envelope.time = Some(time.with_timezone(&chrono::Utc));
        Ok((envelope, updated_at.to_owned()))
    }

    /// Fetches the position's next page, honouring `Retry-After` and retrying failures with backoff,
    /// as long as the deadline allows.
    async fn fetch(&self, position: &Position, deadline: Deadline) -> Result<Fetched, SyncError> {
        let mut query = vec![
            ("changed_since", position.watermark.clone()),
            ("limit", self.config.page_size.to_string()),
        ];
        if let Some(cursor) = &position.cursor {
            query.push(("cursor", cursor.clone()));
        }
        let mut failures = 0;
        loop {
            let wait = match self
                .http
                .get(&self.config.source_url)
                .query(&query)
                .send()
                .await
            {
                Ok(response) if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    let after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map_or(Duration::from_secs(1), Duration::from_secs);
                    tracing::info!(
                        retry_after_ms = after.as_millis() as u64,
                        "the source asks us to slow down"
                    );
                    after
                }
                Ok(response) if response.status().is_success() => {
                    let page = match response.text().await {
                        Ok(text) => serde_json::from_str::<Page>(&text).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match page {
                        Ok(page) => return Ok(Fetched::Page(page)),
                        Err(e) => self.failed(&mut failures, format!("an unreadable page: {e}"))?,
                    }
                }
                Ok(response) if response.status().is_client_error() => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    let why = format!("answered {status}: {}", truncate(&body));
                    let unknown_cursor = matches!(status.as_u16(), 400 | 404 | 410 | 422);
                    if position.cursor.is_some() && unknown_cursor {
                        return Ok(Fetched::CursorExpired(why));
                    }
                    return Err(SyncError::SourceRefused(why));
                }
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    self.failed(
                        &mut failures,
                        format!("answered {status}: {}", truncate(&body)),
                    )?
                }
                Err(e) => self.failed(&mut failures, format!("could not be reached: {e}"))?,
            };
            if deadline.remaining() <= wait + self.config.stop_margin {
                return Ok(Fetched::OutOfTime(format!(
                    "waiting {} ms for the source would pass the deadline",
                    wait.as_millis()
                )));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Counts a failure: the delay before the next try, or the error once the retries are spent.
    fn failed(&self, failures: &mut u32, why: String) -> Result<Duration, SyncError> {
        *failures += 1;
        tracing::warn!(attempt = *failures, reason = %why, "the source failed");
        if *failures >= self.backoff.max_attempts {
            return Err(SyncError::Source(why));
        }
        Ok(self.backoff.delay(*failures))
    }
}

fn later(a: &str, b: &str) -> bool {
    match (
        DateTime::parse_from_rfc3339(a),
        DateTime::parse_from_rfc3339(b),
    ) {
        (Ok(a), Ok(b)) => a > b,
        _ => a > b,
    }
}

/// The start of the source's answer, for reasons.
fn truncate(text: &str) -> &str {
    busline::text::truncated(text, 200)
}

#[cfg(test)]
mod tests;
