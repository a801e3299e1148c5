//! What functions logged, read back from CloudWatch Logs: lines, their times, and each
//! invocation's `REPORT`.

use anyhow::{Context, Result};
use aws_config::SdkConfig;

/// Every line function `name` has logged so far (its CloudWatch log group), oldest first; none
/// while it has never run (and so has no log group).
pub async fn function_log_lines(config: &SdkConfig, name: &str) -> Result<Vec<String>> {
    Ok(function_log_events(config, name)
        .await?
        .into_iter()
        .map(|(_, line)| line)
        .collect())
}

/// As [`function_log_lines`], each line with the time it was logged (Unix ms).
pub async fn function_log_events(config: &SdkConfig, name: &str) -> Result<Vec<(i64, String)>> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(config);
    let mut lines = Vec::new();
    let mut token = None;
    loop {
        let out = match logs
            .filter_log_events()
            .log_group_name(format!("/aws/lambda/{name}"))
            .set_next_token(token)
            .send()
            .await
        {
            Ok(out) => out,
            // A function that has never run has no log group yet, and no lines.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(lines);
            }
            Err(e) => return Err(e).with_context(|| format!("the log lines of {name}")),
        };
        lines.extend(
            out.events()
                .iter()
                .filter_map(|e| Some((e.timestamp().unwrap_or_default(), e.message()?.to_owned()))),
        );
        token = out.next_token;
        if token.is_none() {
            return Ok(lines);
        }
    }
}

/// Function `name`'s invocations so far, from the `REPORT` lines Lambda (and LocalStack's process
/// executor) log after each: when the line was logged (Unix ms) and the function's own duration
/// (ms), from the event handed over to the answer.
pub async fn invocation_reports(config: &SdkConfig, name: &str) -> Result<Vec<(i64, f64)>> {
    Ok(function_log_events(config, name)
        .await?
        .into_iter()
        .filter_map(|(at, line)| {
            let duration = line
                .strip_prefix("REPORT ")?
                .split('\t')
                .find_map(|field| field.trim().strip_prefix("Duration: "))?
                .trim_end_matches(" ms")
                .parse()
                .ok()?;
            Some((at, duration))
        })
        .collect())
}
