//! The kit busline's integration tests, demo, soak and benchmarks share, one concern a module:
//!
//! - [`localstack`]: an SDK configuration pointed at LocalStack, failing loudly when it is not
//!   running ([`target_dir`], [`PATIENCE`] and [`percentile`] beside it);
//! - `resources`, `logs`, `calls`, `queues`, `faults` and `functions`: tables and queues a test
//!   creates for itself, what functions logged, SDK calls counted per operation, windows onto the
//!   bus and the dead-letter queues, the process executor's fault file, and functions invoked or
//!   deployed as processes (all re-exported here);
//! - [`IngestStack`] and [`DeployedStack`]: the ingest path created under a unique prefix, and
//!   the stack `make deploy-local` deployed, read from its outputs;
//! - [`webhook_request`] and [`signed_headers`] (from `busline-testkit`): a Lambda Function URL
//!   request as AWS delivers it, built from the real event fixture;
//! - [`soak`], [`saga`], [`trace`], [`interop`], [`runtime_api`] and [`report`]: the soak, the
//!   saga's helpers, `make trace`, the webhook libraries busline did not write, an in-process
//!   Runtime API for the release binaries, and the benchmark report's sections.

pub mod interop;
pub mod report;
pub mod runtime_api;
pub mod saga;
pub mod soak;
pub mod trace;

mod calls;
mod deployed_stack;
mod faults;
mod functions;
mod ingest_stack;
mod logs;
mod queues;
mod resources;

pub use calls::CallCounter;
pub use deployed_stack::DeployedStack;
pub use faults::{faults_file, queue_faults, write_faults};
pub use functions::{
    create_hot_reload_function, deploy_process_function, invoke, settled_function, wait_for_update,
};
pub use ingest_stack::IngestStack;
pub use logs::{function_log_events, function_log_lines, invocation_reports};
pub use queues::{Letter, find_letter, receive, watch_bus};
pub use resources::{create_key_table, create_queue, create_table};

use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
pub use busline_testkit::{
    FUNCTION_URL_REQUEST, Headers, SAMPLE_CRM_CUSTOMER, SAMPLE_SHOP_ORDER, SHOP_ORDER_PLACED,
    new_standard_webhooks_secret, signed_bytes_as, signed_headers, signed_headers_as, source_stub,
    webhook_event, webhook_request,
};

/// LocalStack's default edge endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4566";

/// How long a test waits on the deployed stack before it calls the wait hung. A hang guard, not a
/// speed goal: a test that passes returns as soon as what it waits for happens, so a generous
/// guard costs nothing, while a tight one fails tests whenever LocalStack on two shared cores is
/// slow (a cold function, a poller backing off, a neighbouring test's load).
pub const PATIENCE: Duration = Duration::from_secs(180);

/// Cargo's target directory: `CARGO_TARGET_DIR` when it is set, else the workspace's `target`.
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into())
}

/// An SDK configuration for LocalStack (`AWS_ENDPOINT_URL`, or [`DEFAULT_ENDPOINT`]), after checking
/// that LocalStack answers. There is no fallback and no skip: without LocalStack this fails, naming
/// the command that starts it.
pub async fn localstack() -> Result<SdkConfig> {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| DEFAULT_ENDPOINT.to_owned());
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new(region))
        .credentials_provider(Credentials::new("test", "test", None, None, "localstack"))
        .http_client(busline::aws::http_client(busline::tls::client_config()?))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
        .list_queues()
        .send()
        .await
        .with_context(|| format!("LocalStack is not answering at {endpoint}; start it with `make localstack-start` (`make test` does this for you)"))?;
    Ok(config)
}

/// The `p` quantile (0 to 1) of `values`, nearest rank.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
