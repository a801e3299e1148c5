//! Lambda functions from a test's side: invoking them, and deploying a binary as a process
//! function through LocalStack's hot-reload code location.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use serde_json::Value;

use crate::PATIENCE;

/// Invokes function `name` synchronously with `event`; returns the function error type (if any) and
/// the payload as JSON (`null` when empty or not JSON).
pub async fn invoke(
    config: &SdkConfig,
    name: &str,
    event: &Value,
) -> Result<(Option<String>, Value)> {
    let out = aws_sdk_lambda::Client::new(config)
        .invoke()
        .function_name(name)
        .payload(aws_smithy_types::Blob::new(event.to_string()))
        .send()
        .await
        .with_context(|| format!("invoke {name}"))?;
    let payload = out
        .payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
        .unwrap_or(Value::Null);
    Ok((out.function_error().map(str::to_owned), payload))
}

/// Deploys the binary at `binary` as a `provided.al2023` function named `name` through LocalStack's
/// hot-reload code location (a folder holding `bootstrap`), and waits until it is active.
pub async fn deploy_process_function(
    config: &SdkConfig,
    name: &str,
    binary: &str,
    timeout_secs: i32,
    environment: &[(&str, &str)],
) -> Result<()> {
    // The folder holds a link to the binary, not a copy: test functions are many and short-lived,
    // and a debug binary is tens of megabytes.
    let dir = std::env::temp_dir().join(format!("busline-fn-{name}"));
    std::fs::create_dir_all(&dir)?;
    let bootstrap = dir.join("bootstrap");
    let _ = std::fs::remove_file(&bootstrap);
    let target = std::fs::canonicalize(binary).with_context(|| format!("find {binary}"))?;
    std::os::unix::fs::symlink(&target, &bootstrap)
        .with_context(|| format!("link {} to {binary}", bootstrap.display()))?;
    let runtime = aws_sdk_lambda::types::Runtime::Providedal2023;
    create_hot_reload_function(config, name, runtime, "bootstrap", &dir, timeout_secs).await?;
    if !environment.is_empty() {
        let variables = environment
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        settled_function(config, name).await?;
        aws_sdk_lambda::Client::new(config)
            .update_function_configuration()
            .function_name(name)
            .environment(
                aws_sdk_lambda::types::Environment::builder()
                    .set_variables(Some(variables))
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("set the environment of {name}"))?;
        wait_for_update(config, name).await?;
    }
    let settled = settled_function(config, name).await?;
    match settled.state() {
        Some(aws_sdk_lambda::types::State::Active) => Ok(()),
        state => bail!(
            "function {name} did not become active: {state:?}, {}",
            settled.state_reason().unwrap_or_default()
        ),
    }
}

/// Creates function `name` whose code is the folder `dir`, through LocalStack's hot-reload code
/// location, so no zip is built or uploaded.
pub async fn create_hot_reload_function(
    config: &SdkConfig,
    name: &str,
    runtime: aws_sdk_lambda::types::Runtime,
    handler: &str,
    dir: &std::path::Path,
    timeout_secs: i32,
) -> Result<()> {
    aws_sdk_lambda::Client::new(config)
        .create_function()
        .function_name(name)
        .runtime(runtime)
        .handler(handler)
        .role("arn:aws:iam::000000000000:role/busline-test")
        .timeout(timeout_secs)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .s3_bucket("hot-reload")
                .s3_key(dir.to_string_lossy())
                .build(),
        )
        .send()
        .await
        .with_context(|| format!("create function {name}"))?;
    Ok(())
}

/// Waits until the last configuration update of function `name` is done, within 30 s.
pub async fn wait_for_update(config: &SdkConfig, name: &str) -> Result<()> {
    use aws_sdk_lambda::types::LastUpdateStatus;
    let lambda = aws_sdk_lambda::Client::new(config);
    let started = Instant::now();
    loop {
        let out = lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await?;
        match out.last_update_status() {
            Some(LastUpdateStatus::InProgress) if started.elapsed() < PATIENCE => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Some(LastUpdateStatus::Failed) => bail!(
                "updating function {name} failed: {}",
                out.last_update_status_reason().unwrap_or_default()
            ),
            Some(LastUpdateStatus::InProgress) => {
                bail!("function {name} still updating after {PATIENCE:?}")
            }
            _ => return Ok(()),
        }
    }
}

/// The configuration of function `name` once it has left `Pending` (Active or Failed), within 30 s.
pub async fn settled_function(
    config: &SdkConfig,
    name: &str,
) -> Result<aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput> {
    use aws_sdk_lambda::types::State;
    let lambda = aws_sdk_lambda::Client::new(config);
    let started = Instant::now();
    loop {
        let out = lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await?;
        match out.state() {
            Some(State::Active | State::Failed) => return Ok(out),
            state if started.elapsed() > Duration::from_secs(30) => {
                bail!("function {name} still {state:?} after 30 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
