//! LocalStack's Lambda service running real function processes through busline's process executor
//! (`infra/localstack/process-executor`), with no Docker: invoke, function errors, timeouts,
//! crashes, and injected faults.

use aws_config::SdkConfig;
use busline_tests::{
    PATIENCE, create_hot_reload_function, deploy_process_function, localstack, queue_faults,
    settled_function,
};
use serde_json::{Value, json};

const PROBE: &str = env!("CARGO_BIN_EXE_probe-function");

async fn deploy_probe(aws: &SdkConfig, timeout_secs: i32) -> String {
    let name = format!("probe-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    deploy_process_function(aws, &name, PROBE, timeout_secs, &[])
        .await
        .unwrap();
    name
}

/// Invokes synchronously; returns the function error (if any) and the payload.
async fn invoke(aws: &SdkConfig, name: &str, event: Value) -> (Option<String>, Value) {
    busline_tests::invoke(aws, name, &event).await.unwrap()
}

#[tokio::test]
async fn invoke_returns_the_functions_result_and_hands_it_localstacks_endpoint() {
    let aws = localstack().await.unwrap();
    let name = deploy_probe(&aws, 3).await;
    let (error, payload) = invoke(&aws, &name, json!({"echo": {"order": "SO-1"}})).await;
    assert_eq!(error, None, "{payload}");
    assert_eq!(payload["echo"], json!({"order": "SO-1"}));
    assert_eq!(payload["function"], name);
    assert_eq!(payload["endpoint"], "http://127.0.0.1:4566");

    // A warm environment is reused: the same process answers the next invoke.
    let (_, again) = invoke(&aws, &name, json!({"echo": 2})).await;
    assert_eq!(again["pid"], payload["pid"]);
}

/// The lines a function prints go back with its own answer, however much it printed and however
/// busy LocalStack is: an environment's last invocation must not keep its last lines to itself.
/// Four environments print at once, so their log readers compete for LocalStack's interpreter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_line_a_function_prints_before_it_answers_goes_with_that_answer() {
    let aws = localstack().await.unwrap();
    let name = deploy_probe(&aws, 30).await;
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let lambda = aws_sdk_lambda::Client::new(&aws);
            let name = name.clone();
            tokio::spawn(async move {
                let mut missing = Vec::new();
                for _ in 0..5 {
                    let out = lambda
                        .invoke()
                        .function_name(&name)
                        .log_type(aws_sdk_lambda::types::LogType::Tail)
                        .payload(aws_smithy_types::Blob::new(
                            json!({"lines": 20_000}).to_string(),
                        ))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(out.function_error(), None);
                    let tail = out.log_result().expect("a Tail invoke returns its log");
                    let tail = aws_smithy_types::base64::decode(tail).unwrap();
                    let tail = String::from_utf8(tail).unwrap();
                    // The executor's REPORT line names the request; the probe's last line too.
                    let request = tail
                        .lines()
                        .find_map(|l| l.strip_prefix("REPORT RequestId: "))
                        .and_then(|r| r.split_whitespace().next())
                        .unwrap_or_else(|| panic!("no REPORT line in the tail: {tail}"))
                        .to_owned();
                    if !tail.contains(&format!("probe done: request {request}\n")) {
                        missing.push(tail);
                    }
                }
                missing
            })
        })
        .collect();
    let mut missing = Vec::new();
    for caller in callers {
        missing.extend(caller.await.unwrap());
    }
    assert!(
        missing.is_empty(),
        "{} of 20 answers came without the last line printed before them; the first's log ends: {}",
        missing.len(),
        missing
            .first()
            .map(|t| &t[t.len().saturating_sub(400)..])
            .unwrap_or_default()
    );
}

#[tokio::test]
async fn a_function_error_surfaces_as_unhandled_with_the_functions_error_type() {
    let aws = localstack().await.unwrap();
    let name = deploy_probe(&aws, 3).await;
    let (error, payload) = invoke(&aws, &name, json!({"fail": "OutOfStock"})).await;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(payload["errorType"], "OutOfStock");
    assert_eq!(payload["errorMessage"], "the probe was asked to fail");
}

#[tokio::test]
async fn a_timed_out_invocation_is_killed_and_the_next_one_gets_a_fresh_process() {
    let aws = localstack().await.unwrap();
    let name = deploy_probe(&aws, 1).await;
    let (_, first) = invoke(&aws, &name, json!({"echo": 1})).await;

    let (error, payload) = invoke(&aws, &name, json!({"sleep_ms": 3000})).await;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(payload["errorType"], "Sandbox.Timedout");
    assert!(
        payload["errorMessage"]
            .as_str()
            .unwrap()
            .contains("Task timed out after 1.00 seconds"),
        "{payload}"
    );

    let (error, after) = invoke(&aws, &name, json!({"echo": 3})).await;
    assert_eq!(error, None, "{after}");
    assert_ne!(after["pid"], first["pid"]);
}

#[tokio::test]
async fn a_process_that_dies_mid_invocation_is_reported_and_replaced() {
    let aws = localstack().await.unwrap();
    let name = deploy_probe(&aws, 3).await;
    let (error, payload) = invoke(&aws, &name, json!({"exit": 3})).await;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(payload["errorType"], "Runtime.ExitError");
    assert!(
        payload["errorMessage"]
            .as_str()
            .unwrap()
            .contains("exit status 3"),
        "{payload}"
    );

    let (error, after) = invoke(&aws, &name, json!({"echo": "alive"})).await;
    assert_eq!((error, &after["echo"]), (None, &json!("alive")));
}

#[tokio::test]
async fn injected_faults_hit_the_chosen_invocation_only() {
    let aws = localstack().await.unwrap();
    let name = deploy_probe(&aws, 1).await;
    queue_faults(
        &name,
        json!([
            {"fault": "none"},
            {"fault": "error", "errorType": "PaymentDeclined"},
            {"fault": "crash"},
            {"fault": "timeout"}
        ]),
    )
    .unwrap();

    let (error, _) = invoke(&aws, &name, json!({"echo": 1})).await;
    assert_eq!(error, None);
    let (_, declined) = invoke(&aws, &name, json!({"echo": 2})).await;
    assert_eq!(declined["errorType"], "PaymentDeclined");
    let (_, crashed) = invoke(&aws, &name, json!({"echo": 3})).await;
    assert_eq!(crashed["errorType"], "Runtime.ExitError");
    let (_, timed_out) = invoke(&aws, &name, json!({"echo": 4})).await;
    assert_eq!(timed_out["errorType"], "Sandbox.Timedout");
    let (error, fine) = invoke(&aws, &name, json!({"echo": 5})).await;
    assert_eq!((error, &fine["echo"]), (None, &json!(5)));
}

#[tokio::test]
async fn a_function_of_another_runtime_fails_with_a_reason_naming_what_is_supported() {
    let aws = localstack().await.unwrap();
    let name = format!(
        "python-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let dir = std::env::temp_dir().join(format!("busline-fn-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("handler.py"),
        "def handler(event, context):\n    return event\n",
    )
    .unwrap();
    let runtime = aws_sdk_lambda::types::Runtime::Python312;
    create_hot_reload_function(&aws, &name, runtime, "handler.handler", &dir, 3)
        .await
        .unwrap();
    let settled = settled_function(&aws, &name).await.unwrap();
    assert_eq!(settled.state(), Some(&aws_sdk_lambda::types::State::Failed));
    let reason = settled.state_reason().unwrap_or_default();
    assert!(
        reason.contains("provided.al2023") && reason.contains("python3.12"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn overlapping_invokes_run_in_separate_processes_and_a_deleted_function_leaves_none() {
    let aws = localstack().await.unwrap();
    let name = deploy_probe(&aws, 3).await;
    invoke(&aws, &name, json!({"echo": "warm"})).await;
    let invokes: Vec<_> = (0..3)
        .map(|i| {
            let aws = aws.clone();
            let name = name.clone();
            tokio::spawn(
                async move { invoke(&aws, &name, json!({"echo": i, "sleep_ms": 700})).await },
            )
        })
        .collect();
    let mut pids = Vec::new();
    for handle in invokes {
        let (error, payload) = handle.await.unwrap();
        assert_eq!(error, None, "{payload}");
        pids.push(payload["pid"].as_u64().unwrap());
    }
    pids.sort();
    pids.dedup();
    assert_eq!(
        pids.len(),
        3,
        "three overlapping invokes need three environments: {pids:?}"
    );

    aws_sdk_lambda::Client::new(&aws)
        .delete_function()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while pids
        .iter()
        .any(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    {
        assert!(
            started.elapsed() < PATIENCE,
            "processes outlived their deleted function: {pids:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
