//! A stand-in Lambda for testing the LocalStack process executor. Its event says what to do:
//! `{"echo": v}` answers `v` (with the function's name and whether it saw `AWS_ENDPOINT_URL`),
//! `{"fail": "OutOfStock"}` fails with that `errorType`, `{"sleep_ms": n}` sleeps first,
//! `{"exit": code}` exits the process mid-invocation, `{"lines": n}` prints n lines and then
//! `probe done: request <id>` just before it answers. Given an SQS event, it answers a partial batch
//! response naming every record whose body is `{"fail": true}`. Every record it gets is logged as
//! `probe record: <eventSource> <eventName>`.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    echo: Value,
    fail: Option<String>,
    sleep_ms: Option<u64>,
    exit: Option<i32>,
    lines: Option<usize>,
}

async fn probe(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    println!("probe invoked: request {}", event.context.request_id);
    if let Some(records) = event.payload["Records"].as_array() {
        for record in records {
            println!(
                "probe record: {} {}",
                record["eventSource"].as_str().unwrap_or("?"),
                record["eventName"].as_str().unwrap_or("-")
            );
        }
        let sqs: SqsEvent = serde_json::from_value(event.payload).map_err(|e| Diagnostic {
            error_type: "BadEvent".into(),
            error_message: e.to_string(),
        })?;
        return Ok(json!(batch_response(sqs)));
    }
    let probe: Probe = serde_json::from_value(event.payload).map_err(|e| Diagnostic {
        error_type: "BadEvent".into(),
        error_message: e.to_string(),
    })?;
    if let Some(ms) = probe.sleep_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(lines) = probe.lines {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        for line in 0..lines {
            writeln!(out, "probe line {line} of {lines}: {}", "x".repeat(48))?;
        }
        writeln!(out, "probe done: request {}", event.context.request_id)?;
    }
    if let Some(code) = probe.exit {
        std::process::exit(code);
    }
    if let Some(error_type) = probe.fail {
        return Err(Diagnostic {
            error_type,
            error_message: "the probe was asked to fail".into(),
        });
    }
    Ok(json!({
        "echo": probe.echo,
        "function": std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
        "endpoint": std::env::var("AWS_ENDPOINT_URL").unwrap_or_default(),
        "pid": std::process::id(),
    }))
}

fn batch_response(event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let fail = record
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
            .is_some_and(|b| b["fail"] == true);
        if fail {
            response.add_failure(record.message_id.unwrap_or_default());
        }
    }
    response
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(probe)).await
}
