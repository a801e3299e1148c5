//! The kit busline's integration tests and demo share.
//!
//! - [`localstack`]: an SDK configuration pointed at LocalStack, failing loudly when it is not running;
//! - [`IngestStack`]: the ingest path's resources (bus, rule, queue with DLQ, idempotency table,
//!   secrets),
//!   created with the real SDK under a unique prefix, the way `template.yaml` declares them;
//! - [`webhook_request`] and [`signed_headers`]: a Lambda Function URL request as AWS delivers it,
//!   built from the real event fixture;
//! - [`report`]: the benchmark report's sections, which each benchmark writes and `bench-report`
//!   gathers.

pub mod interop;
pub mod report;
pub mod runtime_api;
pub mod saga;
pub mod soak;
pub mod trace;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use busline::signature::Scheme;
pub use busline_testkit::{
    FUNCTION_URL_REQUEST, Headers, SAMPLE_CRM_CUSTOMER, SAMPLE_SHOP_ORDER, SHOP_ORDER_PLACED,
    new_standard_webhooks_secret, signed_bytes_as, signed_headers, signed_headers_as, source_stub,
    webhook_event, webhook_request,
};
use serde_json::{Value, json};

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

/// Creates an on-demand table keyed by the string attribute `hash` (and `range`, if given).
pub async fn create_table(
    config: &SdkConfig,
    table: &str,
    hash: &str,
    range: Option<&str>,
) -> Result<()> {
    let mut create = aws_sdk_dynamodb::Client::new(config)
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in [(Some(hash), KeyType::Hash), (range, KeyType::Range)] {
        let Some(name) = name else { continue };
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()?,
            );
    }
    create
        .send()
        .await
        .with_context(|| format!("create table {table}"))?;
    Ok(())
}

/// Creates an on-demand table keyed by a string `pk`, the shape every busline store uses, with TTL on
/// `ttl_attribute` if given.
pub async fn create_key_table(
    config: &SdkConfig,
    table: &str,
    ttl_attribute: Option<&str>,
) -> Result<()> {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    create_table(config, table, "pk", None).await?;
    if let Some(attribute) = ttl_attribute {
        dynamodb
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attribute)
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("enable TTL on {table}"))?;
    }
    Ok(())
}

/// Creates queue `name` with `attributes`, and returns its URL and ARN.
pub async fn create_queue(
    config: &SdkConfig,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> Result<(String, String)> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut create = sqs.create_queue().queue_name(name);
    for (key, value) in attributes {
        create = create.attributes(key.clone(), value);
    }
    let url = create
        .send()
        .await
        .with_context(|| format!("create queue {name}"))?
        .queue_url
        .context("no queue URL")?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .context("no queue ARN")?;
    Ok((url, arn))
}

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

/// Counts the requests an SDK client sends, by operation name: each attempt that reaches the wire
/// counts, retries included.
#[derive(Clone, Debug, Default)]
pub struct CallCounter(Arc<Mutex<Vec<String>>>);

impl CallCounter {
    /// A DynamoDB client on `config` whose calls this counter sees.
    pub fn dynamodb(&self, config: &SdkConfig) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(config)
                .interceptor(self.clone())
                .build(),
        )
    }

    /// An EventBridge client on `config` whose calls this counter sees.
    pub fn eventbridge(&self, config: &SdkConfig) -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(config)
                .interceptor(self.clone())
                .build(),
        )
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The operations called so far, in order, and forgets them.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", |m| m.name())
            .to_owned();
        self.0.lock().unwrap().push(operation);
        Ok(())
    }
}

/// The ingest path's resources on LocalStack.
#[derive(Clone, Debug)]
pub struct IngestStack {
    /// The event bus.
    pub bus_name: String,
    /// The queue placed orders are routed to.
    pub queue_url: String,
    /// Its dead-letter queue.
    pub dlq_url: String,
    /// The idempotency table.
    pub table: String,
    /// `(source, secret id, secret value)` for each webhook source.
    pub secrets: Vec<(String, String, String)>,
}

impl IngestStack {
    /// Creates every resource under `prefix`. Safe to call with a fresh prefix per test.
    pub async fn create(config: &SdkConfig, prefix: &str) -> Result<Self> {
        let events = aws_sdk_eventbridge::Client::new(config);
        let sqs = aws_sdk_sqs::Client::new(config);
        let secrets_client = aws_sdk_secretsmanager::Client::new(config);

        let bus_name = format!("{prefix}-bus");
        events
            .create_event_bus()
            .name(&bus_name)
            .send()
            .await
            .context("create event bus")?;

        let retention = (
            QueueAttributeName::MessageRetentionPeriod,
            "1209600".to_owned(),
        );
        let (dlq_url, dlq_arn) = create_queue(
            config,
            &format!("{prefix}-placed-orders-dlq"),
            std::slice::from_ref(&retention),
        )
        .await?;
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}).to_string();
        let (queue_url, queue_arn) = create_queue(
            config,
            &format!("{prefix}-placed-orders"),
            &[retention, (QueueAttributeName::RedrivePolicy, redrive)],
        )
        .await?;

        let rule = format!("{prefix}-placed-orders");
        let rule_arn = events
            .put_rule()
            .name(&rule)
            .event_bus_name(&bus_name)
            .event_pattern(json!({"detail-type": [SHOP_ORDER_PLACED]}).to_string())
            .send()
            .await
            .context("put rule")?
            .rule_arn
            .unwrap_or_default();
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}
            }]
        });
        sqs.set_queue_attributes()
            .queue_url(&queue_url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .context("set queue policy")?;
        events
            .put_targets()
            .rule(&rule)
            .event_bus_name(&bus_name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("placed-orders-queue")
                    .arn(&queue_arn)
                    .build()?,
            )
            .send()
            .await
            .context("put targets")?;

        let table = format!("{prefix}-deliveries");
        create_key_table(config, &table, Some("expires_at")).await?;

        let mut secrets = Vec::new();
        for source in ["shop", "crm"] {
            let id = format!("{prefix}/webhooks/{source}");
            let value = new_standard_webhooks_secret();
            secrets_client
                .create_secret()
                .name(&id)
                .secret_string(&value)
                .send()
                .await
                .context("create secret")?;
            secrets.push((source.to_owned(), id, value));
        }
        Ok(Self {
            bus_name,
            queue_url,
            dlq_url,
            table,
            secrets,
        })
    }

    /// The `WEBHOOK_SOURCES` value for this stack.
    pub fn webhook_sources(&self) -> String {
        self.secrets
            .iter()
            .map(|(source, id, _)| format!("{source}={id}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The signing secret of `source`.
    pub fn secret(&self, source: &str) -> &str {
        &self
            .secrets
            .iter()
            .find(|(s, _, _)| s == source)
            .expect("stack has the source")
            .2
    }
}

/// Receives messages from `queue_url` until `want` have arrived and then `settle` has passed with
/// nothing more, or until `timeout`. Deletes what it receives and returns the bodies as JSON.
pub async fn receive(
    config: &SdkConfig,
    queue_url: &str,
    want: usize,
    settle: Duration,
    timeout: Duration,
) -> Result<Vec<Value>> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let started = Instant::now();
    let mut bodies = Vec::new();
    let mut last_arrival = Instant::now();
    while started.elapsed() < timeout {
        if bodies.len() >= want && last_arrival.elapsed() >= settle {
            return Ok(bodies);
        }
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        let mut deletes = Vec::new();
        for (i, message) in out.messages().iter().enumerate() {
            bodies.push(
                serde_json::from_str(message.body().unwrap_or_default())
                    .context("message body is JSON")?,
            );
            last_arrival = Instant::now();
            if let Some(handle) = message.receipt_handle() {
                deletes.push(
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()?,
                );
            }
        }
        if !deletes.is_empty() {
            sqs.delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(deletes))
                .send()
                .await?;
        }
    }
    if bodies.len() >= want {
        return Ok(bodies);
    }
    bail!(
        "received {} of {want} expected message(s) from {queue_url} within {timeout:?}",
        bodies.len()
    )
}

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

/// Routes the events on `bus` that match `pattern` to a new queue named `name` (through a rule of
/// the same name), and returns the queue's URL: a test's window onto the bus.
pub async fn watch_bus(
    config: &SdkConfig,
    bus: &str,
    name: &str,
    pattern: &Value,
) -> Result<String> {
    let (queue_url, queue_arn) = create_queue(config, name, &[]).await?;
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": queue_arn}]});
    aws_sdk_sqs::Client::new(config)
        .set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::Policy,
            policy.to_string(),
        )
        .send()
        .await?;
    let events = aws_sdk_eventbridge::Client::new(config);
    events
        .put_rule()
        .name(name)
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .context("put the watch rule")?;
    events
        .put_targets()
        .rule(name)
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("watch")
                .arn(queue_arn)
                .build()?,
        )
        .send()
        .await?;
    Ok(queue_url)
}

/// A message found in a dead-letter queue: its body and its message attributes.
#[derive(Clone, Debug)]
pub struct Letter {
    /// The body, as sent.
    pub body: String,
    /// The string message attributes (`busline.error_type`, `busline.reason`, ...).
    pub attributes: std::collections::HashMap<String, String>,
}

impl Letter {
    /// An attribute's value, empty when absent.
    pub fn attribute(&self, name: &str) -> &str {
        self.attributes.get(name).map_or("", String::as_str)
    }
}

/// Receives from `queue_url` until a message whose body `matches` arrives, for up to `within`, and
/// returns it. Every message received is deleted: dead-letter queues are shared by the tests, and
/// each looks only for its own letter.
pub async fn find_letter(
    config: &SdkConfig,
    queue_url: &str,
    matches: impl Fn(&str) -> bool,
    within: Duration,
) -> Result<Letter> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let started = Instant::now();
    while started.elapsed() < within {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await?;
        let mut found = None;
        for message in out.messages() {
            if let Some(handle) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
            let body = message.body().unwrap_or_default();
            if found.is_none() && matches(body) {
                let attributes = message
                    .message_attributes()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                    .collect();
                found = Some(Letter {
                    body: body.to_owned(),
                    attributes,
                });
            }
        }
        if let Some(letter) = found {
            return Ok(letter);
        }
    }
    bail!("no matching message reached {queue_url} within {within:?}")
}

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

/// The stack `make deploy-local` deployed from `template.yaml`, read from its outputs.
#[derive(Clone, Debug)]
pub struct DeployedStack {
    /// Every output, by key.
    pub outputs: std::collections::HashMap<String, String>,
}

impl DeployedStack {
    /// The name `samconfig.toml` gives the stack.
    pub const NAME: &str = "busline";

    /// Reads the deployed stack, failing with the command that deploys it.
    pub async fn read(config: &SdkConfig) -> Result<Self> {
        let stacks = aws_sdk_cloudformation::Client::new(config)
            .describe_stacks()
            .stack_name(Self::NAME)
            .send()
            .await
            .context("the busline stack is not deployed on LocalStack; run `make deploy-local` (`make test` does)")?;
        let outputs = stacks
            .stacks()
            .first()
            .context("no busline stack")?
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect();
        Ok(Self { outputs })
    }

    /// An output's value.
    pub fn output(&self, key: &str) -> Result<&str> {
        self.outputs
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("the stack has no output {key}"))
    }

    /// Closes deliver-webhook's circuit to `subscription` (deletes its state): deliveries that
    /// earlier found no one listening leave it open, and the next ones would wait out its cool-off.
    pub async fn close_circuit(&self, config: &SdkConfig, subscription: &str) -> Result<()> {
        aws_sdk_dynamodb::Client::new(config)
            .delete_item()
            .table_name(self.output("CircuitTableName")?)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("circuit#{subscription}")),
            )
            .send()
            .await?;
        Ok(())
    }

    /// POSTs `body` to the deployed ingest function's URL at `path`.
    pub async fn post_webhook(
        &self,
        path: &str,
        body: &str,
        headers: &Headers,
    ) -> Result<(u16, Value)> {
        self.call(
            "WebhookUrl",
            reqwest::Method::POST,
            path,
            Some(body),
            headers,
        )
        .await
    }

    /// The scheme the deployed ingest function verifies `source` with (output `WebhookSchemes`,
    /// the function's `WEBHOOK_SCHEMES`; a source not named there is on Standard Webhooks).
    pub fn scheme_of(&self, source: &str) -> Result<Scheme> {
        let schemes = self.output("WebhookSchemes")?;
        match schemes
            .split(',')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == source)
        {
            None => Ok(Scheme::StandardWebhooks),
            Some((_, scheme)) => Scheme::parse(scheme)
                .with_context(|| format!("output WebhookSchemes names an unknown scheme {scheme}")),
        }
    }

    /// POSTs `body` to `/webhooks/{source}` signed with the secret in output `secret_output`, as
    /// the source system would (in the source's scheme), for delivery `delivery_id`.
    pub async fn post_signed(
        &self,
        config: &SdkConfig,
        source: &str,
        secret_output: &str,
        body: &Value,
        delivery_id: &str,
    ) -> Result<(u16, Value)> {
        let secret = self.secret(config, secret_output).await?;
        let text = body.to_string();
        let headers = signed_headers_as(
            self.scheme_of(source)?,
            &secret,
            &text,
            delivery_id,
            chrono::Utc::now().timestamp(),
        );
        self.post_webhook(&format!("/webhooks/{source}"), &text, &headers)
            .await
    }

    /// Calls the Function URL in output `url_output` at `path`, through LocalStack's gateway (the
    /// Function URL's host is named in the `Host` header, as DNS would route it), and returns the
    /// status and the JSON body (or the text as a JSON string).
    pub async fn call(
        &self,
        url_output: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        headers: &Headers,
    ) -> Result<(u16, Value)> {
        let url = self.output(url_output)?;
        let host = url.trim_start_matches("http://").trim_end_matches('/');
        let endpoint =
            std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| DEFAULT_ENDPOINT.to_owned());
        let mut request = reqwest::Client::new()
            .request(method.clone(), format!("{endpoint}{path}"))
            .header("host", host);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path} on {url_output}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// The value of the secret whose ARN is in output `key`.
    pub async fn secret(&self, config: &SdkConfig, key: &str) -> Result<String> {
        aws_sdk_secretsmanager::Client::new(config)
            .get_secret_value()
            .secret_id(self.output(key)?)
            .send()
            .await?
            .secret_string
            .context("secret has no string")
    }
}
