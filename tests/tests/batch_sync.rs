//! The batch sync as a real function process on LocalStack, against a stub source API: 2,000
//! records published exactly once, ten to a `PutEvents` call, by runs that each stop before their
//! timeout and hand over to the next (10,000 records in one run are `make bench`'s); and a run
//! killed midway (its process killed with SIGKILL while it works) taken over by the next run from
//! the last checkpoint, with no record missing and no record published under a second id.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use busline_tests::source_stub::SourceStub;
use busline_tests::{
    DeployedStack, PATIENCE, deploy_process_function, invoke, localstack, receive, watch_bus,
};
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use wiremock::MockServer;

/// The batch-sync binary `make deploy-local` built for the stack.
fn binary() -> String {
    format!(
        "{}/../.state/functions/batch-sync/bootstrap",
        env!("CARGO_MANIFEST_DIR")
    )
}

struct Harness {
    aws: aws_config::SdkConfig,
    function: String,
    queue: String,
    stub: SourceStub,
    _server: MockServer,
}

async fn harness(records: usize, timeout_secs: i32) -> Harness {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let name = format!("sync-{tag}");
    let server = MockServer::start().await;
    let stub =
        SourceStub::with_records(records, Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
    stub.mount(&server).await;
    let queue = watch_bus(
        &aws,
        stack.output("EventBusName").unwrap(),
        &name,
        &json!({"detail-type": [format!("io.busline.sync.{name}.changed.v1")]}),
    )
    .await
    .unwrap();
    let function = format!("busline-test-{name}");
    let source = format!("{}/records", server.uri());
    deploy_process_function(
        &aws,
        &function,
        &binary(),
        timeout_secs,
        &[
            ("SYNC_NAME", name.as_str()),
            ("SOURCE_URL", source.as_str()),
            (
                "CHECKPOINT_TABLE",
                stack.output("CheckpointTableName").unwrap(),
            ),
            ("BUS_NAME", stack.output("EventBusName").unwrap()),
            (
                "DEAD_LETTER_QUEUE_URL",
                stack.output("BatchSyncDeadLetterQueueUrl").unwrap(),
            ),
            ("STOP_MARGIN_MS", "2000"),
        ],
    )
    .await
    .unwrap();
    Harness {
        aws,
        function,
        queue,
        stub,
        _server: server,
    }
}

impl Harness {
    /// Invokes the function as the schedule would; returns its answer or error payload.
    async fn invoke(&self) -> (Option<String>, Value) {
        let scheduled =
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        invoke(&self.aws, &self.function, &scheduled).await.unwrap()
    }

    /// Runs until a run completes, taking over after refusals (a lease still held) and early stops.
    async fn run_to_completion(&self) -> Vec<Value> {
        let mut answers = Vec::new();
        let started = Instant::now();
        loop {
            let (error, answer) = self.invoke().await;
            assert!(error.is_none(), "{error:?} {answer}");
            let complete = answer["complete"] == true;
            if answer.get("refused").is_some() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            answers.push(answer);
            if complete {
                return answers;
            }
            // A liveness bound, not a speed goal: the pace is LocalStack's PutEvents under the
            // rest of the suite's load (2.9 s a page once, with the function's process at 6 s of
            // CPU for 10,000 records, when this test sent that many).
            assert!(
                started.elapsed() < 3 * PATIENCE,
                "no complete run: {answers:?}"
            );
        }
    }

    /// The published events: (subject, id) per delivery.
    async fn published(&self, at_least: usize) -> Vec<(String, String)> {
        receive(
            &self.aws,
            &self.queue,
            at_least,
            Duration::from_secs(3),
            Duration::from_secs(180),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e["detail"]["subject"].as_str().unwrap().to_owned(),
                e["detail"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
    }
}

/// Every record of `0..n` delivered, each under one id; returns how many deliveries were copies.
fn check_no_gaps_no_second_ids(deliveries: &[(String, String)], n: usize) -> usize {
    let mut ids: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (subject, id) in deliveries {
        ids.entry(subject).or_default().insert(id);
    }
    let missing: Vec<String> = (0..n)
        .map(|i| format!("R-{i}"))
        .filter(|s| !ids.contains_key(s.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} records never published, first {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(ids.len(), n, "only the source's records");
    let second_ids: Vec<_> = ids.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        second_ids.is_empty(),
        "records published under two ids: {second_ids:?}"
    );
    deliveries.len() - n
}

#[tokio::test]
async fn records_are_published_exactly_once_across_runs_that_stop_before_their_timeout() {
    // 20 pages at 1 s each take longer than one 20 s run (less its 2 s margin) has, so at least
    // one run stops early and the next goes on from its checkpoint, however fast the machine is.
    let h = harness(2_000, 20).await;
    h.stub.set_page_delay(Duration::from_secs(1));
    let answers = h.run_to_completion().await;
    assert!(
        answers.iter().any(|a| a["stopped"].is_string()),
        "a run stopped before its timeout: {answers:?}"
    );
    let published: u64 = answers.iter().filter_map(|a| a["published"].as_u64()).sum();
    assert_eq!(published, 2_000, "{answers:?}");
    let batches: u64 = answers.iter().filter_map(|a| a["batches"].as_u64()).sum();
    assert_eq!(batches, 200, "ten records to a PutEvents call");
    let pages_cut_short = answers
        .iter()
        .filter(|a| a.get("cut_short").is_some())
        .count();
    assert_eq!(
        h.stub.pages_served(),
        20 + pages_cut_short,
        "each page fetched once, and again only after its publish was cut short"
    );
    let deliveries = h.published(2_000).await;
    // A copy only where the deadline cut a page's publish short (that page goes out again from
    // the checkpoint under the same ids); a page the pacer stopped before is never sent twice.
    let cut_short: u64 = answers.iter().filter_map(|a| a["cut_short"].as_u64()).sum();
    let copies = check_no_gaps_no_second_ids(&deliveries, 2_000);
    assert!(
        copies as u64 <= cut_short,
        "{copies} copies, but only {cut_short} records were cut short: {answers:?}"
    );
}

#[tokio::test]
async fn a_run_killed_midway_is_resumed_without_gaps_or_second_ids() {
    // A 60 s timeout: LocalStack under load can spend much of an invocation's time before the
    // handler runs, and the first run must still be working when the test kills it.
    let h = harness(3_000, 60).await;
    // A slow source while the first run works, so the kill lands midway however fast or loaded
    // the machine is: 30 pages take at least 7.5 s, and the test kills the run at page 8.
    h.stub.set_page_delay(Duration::from_millis(250));
    let first = {
        let aws = h.aws.clone();
        let function = h.function.clone();
        tokio::spawn(async move {
            aws_sdk_lambda::Client::new(&aws)
                .invoke()
                .function_name(&function)
                .payload(aws_smithy_types::Blob::new("{}"))
                .send()
                .await
                .map(|out| {
                    let payload = out
                        .payload()
                        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned());
                    (out.function_error().map(str::to_owned), payload)
                })
                .unwrap()
        })
    };
    let started = Instant::now();
    while h.stub.pages_served() < 8 {
        assert!(
            !first.is_finished(),
            "the first run ended at page {} before it could be killed: {:?}",
            h.stub.pages_served(),
            first.await
        );
        assert!(started.elapsed() < PATIENCE, "the run never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bootstrap = format!("busline-fn-{}/bootstrap", h.function);
    let killed = std::process::Command::new("pkill")
        .args(["-9", "-f", &bootstrap])
        .status()
        .unwrap();
    assert!(killed.success(), "the function's process was running");
    assert_eq!(
        first.await.unwrap().0.as_deref(),
        Some("Unhandled"),
        "the killed invocation failed"
    );
    let pages_at_kill = h.stub.pages_served();
    h.stub.set_page_delay(Duration::ZERO);
    assert!(
        pages_at_kill < 30,
        "killed midway, at page {pages_at_kill} of 30"
    );

    let answers = h.run_to_completion().await;
    assert!(
        answers.iter().any(|a| a.get("refused").is_some()),
        "the dead run's lease held until its deadline: {answers:?}"
    );
    let deliveries = h.published(3_000).await;
    let copies = check_no_gaps_no_second_ids(&deliveries, 3_000);
    assert!(
        copies <= 100,
        "at most the page in flight is published again: {copies}"
    );
}
