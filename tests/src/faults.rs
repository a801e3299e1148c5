//! The process executor's fault file: what a test arms to make invocations or AWS calls fail.

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// The fault file LocalStack's process executor reads (`BUSLINE_LAMBDA_FAULTS_FILE`, which
/// `infra/localstack/localstack.sh start` sets to `.state/localstack/lambda-faults.json`).
pub fn faults_file() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("BUSLINE_LAMBDA_FAULTS_FILE") {
        return path.into();
    }
    let state = std::env::var("BUSLINE_STATE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.state/localstack")
        });
    state.join("lambda-faults.json")
}

/// Queues `faults` for the next invocations of `function` (see the executor's docs), keeping other
/// functions' queues.
pub fn queue_faults(function: &str, faults: Value) -> Result<()> {
    let path = faults_file();
    let mut all: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}));
    all[function] = faults;
    write_faults(&all)
}

/// Replaces the fault file with `all` in one step (a new copy renamed over it), as the executor
/// does, so neither side ever reads it half written.
pub fn write_faults(all: &Value) -> Result<()> {
    let path = faults_file();
    let temporary = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&temporary, all.to_string())
        .with_context(|| format!("write {}", temporary.display()))?;
    std::fs::rename(&temporary, &path).with_context(|| format!("replace {}", path.display()))
}
