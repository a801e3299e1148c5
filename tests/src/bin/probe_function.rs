//! A stand-in Lambda for testing the LocalStack process executor. Its event says what to do:
//! `{"echo": v}` answers `v` (with the function's name and whether it saw `AWS_ENDPOINT_URL`),
//! `{"fail": "OutOfStock"}` fails with that `errorType`, `{"sleep_ms": n}` sleeps first,
//! `{"exit": code}` exits the process mid-invocation.

use std::time::Duration;

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
}

async fn probe(event: LambdaEvent<Probe>) -> Result<Value, Diagnostic> {
    let probe = event.payload;
    println!("probe invoked: request {}", event.context.request_id);
    if let Some(ms) = probe.sleep_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
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

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(probe)).await
}
