use std::collections::HashSet;

use busline::batch::InMemoryDeadLetterQueue;
use busline::bus::InMemoryBus;
use busline::checkpoint::InMemoryCheckpointStore;
use busline_testkit::source_stub::SourceStub;
use chrono::{TimeZone, Utc};
use serde_json::json;
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

type TestSync = SourceSync<InMemoryCheckpointStore, InMemoryBus, InMemoryDeadLetterQueue>;

async fn source(n: usize) -> (MockServer, SourceStub) {
    let server = MockServer::start().await;
    let stub = SourceStub::with_records(n, Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
    stub.mount(&server).await;
    (server, stub)
}

fn sync(server: &MockServer) -> TestSync {
    SourceSync {
        config: SyncConfig {
            name: "crm-contacts".to_owned(),
            source_url: format!("{}/records", server.uri()),
            page_size: 100,
            stop_margin: Duration::from_millis(200),
        },
        http: reqwest::Client::new(),
        checkpoints: InMemoryCheckpointStore::new(),
        publisher: InMemoryBus::new(),
        dead_letters: InMemoryDeadLetterQueue::new(),
        backoff: Backoff {
            max_attempts: 3,
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(10),
        },
    }
}

fn minute() -> Deadline {
    Deadline::after(Duration::from_secs(60))
}

async fn position<P: EventPublisher>(
    sync: &SourceSync<InMemoryCheckpointStore, P, InMemoryDeadLetterQueue>,
) -> Position {
    let checkpoint = sync.checkpoints.get("crm-contacts").await.unwrap().unwrap();
    serde_json::from_str(&checkpoint.cursor).unwrap()
}

fn subjects(bus: &InMemoryBus) -> Vec<String> {
    bus.published()
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_run_publishes_every_page_and_moves_the_watermark() {
    let (server, stub) = source(250).await;
    let sync = sync(&server);
    let report = sync.run("run-1", minute()).await.unwrap();
    assert_eq!(
        (
            report.pages,
            report.published,
            report.batches,
            report.complete
        ),
        (3, 250, 25, true)
    );
    assert_eq!(stub.pages_served(), 3);
    let published = sync.publisher.published();
    assert_eq!(
        published[0]["type"],
        "io.busline.sync.crm-contacts.changed.v1"
    );
    assert_eq!(published[0]["subject"], "R-0");
    assert_eq!(published[0]["time"], "2026-11-01T00:00:00Z");
    let unique: HashSet<_> = published
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(unique.len(), 250);
    let at = position(&sync).await;
    assert_eq!(
        at.watermark, "2026-11-01T00:04:09+00:00",
        "the last record's updated_at"
    );
    assert!(!at.in_progress && at.cursor.is_none() && at.lease.is_none());

    // The next run asks from the watermark, inclusive: only the last record, under the same id.
    let again = sync.run("run-2", minute()).await.unwrap();
    assert_eq!(again.published, 1);
    let last = sync.publisher.published().last().unwrap().clone();
    assert_eq!(last["id"], published[249]["id"]);
}

#[tokio::test]
async fn a_run_that_fails_midway_is_resumed_without_gaps_or_repeats() {
    let (server, _stub) = source(250).await;
    Mock::given(method("GET"))
        .and(query_param("cursor", "100"))
        .respond_with(ResponseTemplate::new(500).set_body_string("database is down"))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&server)
        .await;
    let sync = sync(&server);
    let error = sync.run("run-1", minute()).await.unwrap_err();
    assert_eq!(error.error_type(), "SourceUnavailable");
    assert!(error.to_string().contains("500"), "{error}");
    let at = position(&sync).await;
    assert_eq!((at.in_progress, at.cursor.as_deref()), (true, Some("100")));
    assert!(at.lease.is_none(), "the failed run freed the sync");
    assert_eq!(sync.publisher.published().len(), 100);

    let report = sync.run("run-2", minute()).await.unwrap();
    assert_eq!(
        (report.pages, report.published, report.complete),
        (2, 150, true)
    );
    let subjects = subjects(&sync.publisher);
    let unique: HashSet<_> = subjects.iter().collect();
    assert_eq!(
        (subjects.len(), unique.len()),
        (250, 250),
        "every record once"
    );
}

#[tokio::test]
async fn an_overlapping_run_is_refused_while_the_lease_holds() {
    let (server, _stub) = source(10).await;
    let sync = sync(&server);
    let held = Position {
        watermark: EPOCH.to_owned(),
        in_progress: true,
        lease: Some(Lease {
            run_id: "run-1".to_owned(),
            until_ms: busline::retry::now_millis() + 60_000,
        }),
        ..Position::default()
    };
    sync.checkpoints
        .advance("crm-contacts", 0, &serde_json::to_string(&held).unwrap())
        .await
        .unwrap();
    let error = sync.run("run-2", minute()).await.unwrap_err();
    assert_eq!(error.error_type(), "SyncRefused");
    assert!(sync.publisher.published().is_empty());

    // Once the holder's deadline has passed, the next run takes over where it stopped.
    let lapsed = Position {
        lease: Some(Lease {
            run_id: "run-1".to_owned(),
            until_ms: busline::retry::now_millis() - 1,
        }),
        ..held
    };
    sync.checkpoints
        .advance("crm-contacts", 1, &serde_json::to_string(&lapsed).unwrap())
        .await
        .unwrap();
    assert_eq!(sync.run("run-2", minute()).await.unwrap().published, 10);
}

#[tokio::test]
async fn the_rate_limit_is_respected_and_the_deadline_kept() {
    let (server, stub) = source(150).await;
    Mock::given(method("GET"))
        .and(query_param("cursor", "100"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let sync = sync(&server);
    let started = std::time::Instant::now();
    let report = sync.run("run-1", minute()).await.unwrap();
    assert!(report.complete);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited as asked"
    );
    assert_eq!(stub.pages_served(), 2);

    // Not enough time left to wait: it stops cleanly, resumable, with nothing held.
    let (server, _stub) = source(150).await;
    Mock::given(method("GET"))
        .and(query_param("cursor", "100"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
        .with_priority(1)
        .mount(&server)
        .await;
    let sync = super::tests::sync(&server);
    let report = sync
        .run("run-1", Deadline::after(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(!report.complete);
    assert!(
        report.stopped.as_deref().unwrap().contains("deadline"),
        "{report:?}"
    );
    let at = position(&sync).await;
    assert_eq!(
        (at.cursor.as_deref(), at.lease.is_none()),
        (Some("100"), true)
    );
}

#[tokio::test]
async fn a_run_stops_before_a_page_the_time_left_cannot_hold() {
    // Every page takes at least 400 ms; 1.5 s are left beyond the 200 ms margin. The run must stop
    // between pages, once the time left is less than its slowest page, not start one it cannot
    // finish (Lambda would kill it there).
    let (server, stub) = source(1_000).await;
    stub.set_page_delay(Duration::from_millis(400));
    let sync = sync(&server);
    let report = sync
        .run("run-1", Deadline::after(Duration::from_millis(1_700)))
        .await
        .unwrap();
    assert!(!report.complete);
    assert!(
        report.stopped.as_deref().unwrap().contains("slowest page"),
        "{report:?}"
    );
    assert!(
        (1..=3u32).contains(&report.pages),
        "stopped early but not before the first page: {report:?}"
    );
    assert_eq!(
        stub.pages_served(),
        report.pages as usize,
        "no page left half done"
    );
    assert_eq!(
        position(&sync).await.cursor,
        Some((u64::from(report.pages) * 100).to_string()),
        "resumable from the page after the last one published"
    );
}

#[tokio::test]
async fn garbage_from_the_source_is_an_error_and_advances_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .mount(&server)
        .await;
    let sync = sync(&server);
    let error = sync.run("run-1", minute()).await.unwrap_err();
    assert!(error.to_string().contains("unreadable page"), "{error}");
    let at = position(&sync).await;
    assert_eq!(
        (at.in_progress, at.cursor.as_deref(), at.watermark.as_str()),
        (true, None, EPOCH)
    );
    assert!(sync.publisher.published().is_empty());
}

#[tokio::test]
async fn a_record_missing_its_fields_is_dead_lettered_and_the_rest_published() {
    let (server, stub) = source(0).await;
    stub.set_records(vec![
        json!({"id": "R-1", "updated_at": "2026-11-01T00:00:00Z"}),
        json!({"id": "R-2"}),
        json!({"updated_at": "2026-11-01T00:00:02Z"}),
        json!({"id": "R-4", "updated_at": "not a time"}),
        json!({"id": "R-5", "updated_at": "2026-11-01T00:00:05Z"}),
    ]);
    let sync = sync(&server);
    let report = sync.run("run-1", minute()).await.unwrap();
    assert_eq!((report.published, report.dead_lettered), (2, 3));
    let reasons: Vec<String> = sync
        .dead_letters
        .letters()
        .into_iter()
        .map(|l| l.reason)
        .collect();
    assert!(
        reasons[0].contains("no updated_at")
            && reasons[1].contains("no id")
            && reasons[2].contains("RFC 3339"),
        "{reasons:?}"
    );
    assert_eq!(position(&sync).await.watermark, "2026-11-01T00:00:05Z");
}

#[test]
fn the_configuration_is_read_and_checked() {
    let config = SyncConfig::from_env(&[
        ("SYNC_NAME", "crm-contacts"),
        ("SOURCE_URL", "http://x/records"),
    ])
    .unwrap();
    assert_eq!(
        (config.page_size, config.stop_margin),
        (100, Duration::from_secs(3))
    );
    assert!(SyncConfig::from_env(&[("SYNC_NAME", "a b"), ("SOURCE_URL", "x")]).is_err());
    assert!(
        SyncConfig::from_env(&[("SYNC_NAME", "x")])
            .unwrap_err()
            .to_string()
            .contains("SOURCE_URL")
    );
}

/// A record too large for the bus used to fail its page on every run, forever. Now it is parked in
/// the dead-letter queue whole, with the reason, and the run completes.
#[tokio::test]
async fn a_record_the_bus_can_never_take_is_dead_lettered_and_the_run_goes_on() {
    let (server, stub) = source(0).await;
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut records: Vec<Value> = (0..5)
        .map(|i| json!({"id": format!("R-{i}"), "updated_at": (start + chrono::TimeDelta::seconds(i)).to_rfc3339()}))
        .collect();
    records[2]["notes"] = json!("x".repeat(300 * 1024));
    stub.set_records(records);
    let sync = sync(&server);
    let report = sync.run("run-big", minute()).await.unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!((report.published, report.dead_lettered), (4, 1));
    let letters = sync.dead_letters.letters();
    assert_eq!(letters[0].error_type, "UnpublishableSourceRecord");
    assert_eq!(letters[0].record_id, "R-2");
    assert!(
        letters[0].reason.contains("cannot travel on the bus"),
        "{}",
        letters[0].reason
    );
    assert!(
        letters[0].body.len() > 300 * 1024,
        "the letter holds the whole record"
    );
    assert_eq!(subjects(&sync.publisher), ["R-0", "R-1", "R-3", "R-4"]);
}

/// A run that resumes with a cursor the source has expired used to fail on every later run: a
/// permanent stall. Now it starts again from the watermark, once, and completes.
#[tokio::test]
async fn an_expired_cursor_restarts_the_run_from_the_watermark() {
    let (server, _stub) = source(150).await;
    Mock::given(method("GET"))
        .and(query_param("cursor", "token-from-last-week"))
        .respond_with(ResponseTemplate::new(410).set_body_string("cursor expired"))
        .with_priority(1)
        .mount(&server)
        .await;
    let sync = sync(&server);
    let stale = Position {
        watermark: EPOCH.to_owned(),
        cursor: Some("token-from-last-week".to_owned()),
        in_progress: true,
        ..Position::default()
    };
    sync.checkpoints
        .advance("crm-contacts", 0, &serde_json::to_string(&stale).unwrap())
        .await
        .unwrap();
    let report = sync.run("run-after", minute()).await.unwrap();
    assert!(report.complete && report.restarted, "{report:?}");
    assert_eq!(report.published, 150);
    assert_eq!(position(&sync).await.cursor, None);
}

#[tokio::test]
async fn a_source_that_refuses_the_request_fails_the_run_as_permanent() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_string("token revoked"))
        .mount(&server)
        .await;
    let sync = sync(&server);
    let error = sync.run("run-403", minute()).await.unwrap_err();
    assert_eq!(error.error_type(), "SourceRefused");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(error.to_string().contains("token revoked"), "{error}");
}

/// A bus that takes the first `whole` publishes and then answers nothing until the caller's
/// deadline, as EventBridge does to a publish it times out.
#[derive(Clone)]
struct StallsAfter {
    bus: InMemoryBus,
    whole: usize,
}

impl EventPublisher for StallsAfter {
    async fn publish<T: Serialize + Sync>(
        &self,
        events: &[Envelope<T>],
    ) -> Result<(), PublishError> {
        self.publish_until(events, Deadline::after(Duration::from_secs(5)))
            .await
    }

    async fn publish_until<T: Serialize + Sync>(
        &self,
        events: &[Envelope<T>],
        deadline: Deadline,
    ) -> Result<(), PublishError> {
        if self.bus.calls() < self.whole {
            return self.bus.publish(events).await;
        }
        tokio::time::sleep(deadline.remaining()).await;
        Err(PublishError::Unavailable(
            "the bus did not answer within the publish budget".into(),
        ))
    }
}

fn stalling_sync(
    server: &MockServer,
    whole: usize,
) -> SourceSync<InMemoryCheckpointStore, StallsAfter, InMemoryDeadLetterQueue> {
    let TestSync {
        config,
        http,
        checkpoints,
        dead_letters,
        backoff,
        ..
    } = sync(server);
    SourceSync {
        config,
        http,
        checkpoints,
        publisher: StallsAfter {
            bus: InMemoryBus::new(),
            whole,
        },
        dead_letters,
        backoff,
    }
}

#[tokio::test]
async fn a_page_the_deadline_cuts_short_ends_the_run_at_the_last_whole_page() {
    let (server, _stub) = source(500).await;
    let sync = stalling_sync(&server, 2);
    let report = sync
        .run("run-1", Deadline::after(Duration::from_millis(1_500)))
        .await
        .expect("out of time is a stop, not a failure");
    assert_eq!((report.pages, report.published), (2, 200), "{report:?}");
    assert_eq!(report.cut_short, 100, "{report:?}");
    assert!(!report.complete);
    assert!(
        report
            .stopped
            .as_deref()
            .unwrap()
            .contains("publishing page 3"),
        "{report:?}"
    );
    let at = position(&sync).await;
    assert_eq!(at.cursor.as_deref(), Some("200"), "resumes at the cut page");
    assert!(at.lease.is_none(), "the next run may take over at once");
}

#[tokio::test]
async fn a_bus_that_takes_no_page_fails_the_run_however_it_fails() {
    // Stalled until the deadline from the first page: no progress, so an outage, not a stop.
    let (server, _stub) = source(500).await;
    let stalled = stalling_sync(&server, 0);
    let error = stalled
        .run("run-1", Deadline::after(Duration::from_millis(800)))
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "BusUnavailable");
    // Failing at once, with the whole minute left: a failure too.
    let failing = sync(&server);
    failing.publisher.set_unavailable(true);
    let error = failing.run("run-1", minute()).await.unwrap_err();
    assert_eq!(error.error_type(), "BusUnavailable");
    assert_eq!(position(&failing).await.cursor, None);
}
