//! Cold start and peak memory of each function, beside a bare `lambda_runtime` hello world built
//! with the same profile, measured in the same run.
//!
//! Each run spawns the release binary with a Lambda Runtime API served here on loopback. Cold start
//! is the time from spawn to the process's first `GET /invocation/next`: everything the function
//! does at init, its Secrets Manager reads included. The last run then serves one representative
//! invocation and reads the process's peak resident set (`VmHWM`) before killing it.
//!
//! Warm invokes: 200 invocations of the hello world through LocalStack's `Invoke` (its API, the
//! process executor, the Runtime API), beside 200 served to the same binary straight over the
//! Runtime API in this process; the difference is what LocalStack and the executor add.
//!
//! Needs LocalStack with the stack deployed (`make bench` does both) and release binaries
//! (`cargo build --release --bins`). Writes `target/bench/cold-start.json` and prints tables.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use busline_tests::{
    DeployedStack, SAMPLE_SHOP_ORDER, localstack, percentile, signed_headers, webhook_event,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const RUNS: usize = 10;

/// The event a rule delivers for `data` of `event_type`, as JSON.
fn delivered_event(event_type: &str, data: &str) -> Result<Value> {
    let envelope = busline::Envelope::new(
        format!("cold-{}", uuid::Uuid::new_v4().simple()),
        "busline.bench",
        busline::EventType::parse(event_type)?,
        serde_json::from_str::<Value>(data)?,
    );
    Ok(serde_json::to_value(busline::transform::delivered(
        &envelope,
    ))?)
}

struct Subject {
    name: &'static str,
    env: Vec<(String, String)>,
    event: Value,
}

struct Measured {
    name: &'static str,
    cold_ms: Vec<f64>,
    peak_rss_kb: u64,
    invocation_ok: bool,
    bytes: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let release = target_dir().join("release");
    let aws = localstack().await?;
    let stack = DeployedStack::read(&aws).await?;
    let shop_secret = stack.secret(&aws, "ShopWebhookSecretArn").await?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .unwrap_or_else(|_| busline_tests::DEFAULT_ENDPOINT.into());
    let aws_env: [(String, String); 4] = [
        ("AWS_ENDPOINT_URL".into(), endpoint),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ];
    let ingest_env = [
        ("BUS_NAME", stack.output("EventBusName")?.to_owned()),
        (
            "IDEMPOTENCY_TABLE",
            stack.output("IdempotencyTableName")?.to_owned(),
        ),
        (
            "WEBHOOK_SOURCES",
            format!(
                "shop={},crm={}",
                stack.output("ShopWebhookSecretArn")?,
                stack.output("CrmWebhookSecretArn")?
            ),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let delivery = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let transformer_env: Vec<(String, String)> = aws_env
        .iter()
        .cloned()
        .chain([
            (
                "BUS_NAME".to_owned(),
                stack.output("EventBusName")?.to_owned(),
            ),
            (
                "DEAD_LETTER_QUEUE_URL".to_owned(),
                stack.output("TransformersDeadLetterQueueUrl")?.to_owned(),
            ),
        ])
        .collect();
    let subjects = vec![
        Subject {
            name: "hello-lambda",
            env: vec![],
            event: json!({"hello": "world"}),
        },
        Subject {
            name: "ingest-webhook",
            env: aws_env.iter().cloned().chain(ingest_env).collect(),
            event: webhook_event(
                "POST",
                "/webhooks/shop",
                SAMPLE_SHOP_ORDER,
                &signed_headers(&shop_secret, SAMPLE_SHOP_ORDER, &delivery),
            ),
        },
        Subject {
            name: "audit-trail",
            env: aws_env
                .iter()
                .cloned()
                .chain([
                    (
                        "AUDIT_TABLE".to_owned(),
                        stack.output("AuditTrailTableName")?.to_owned(),
                    ),
                    (
                        "DEAD_LETTER_QUEUE_URL".to_owned(),
                        stack.output("PlacedOrdersDeadLetterQueueUrl")?.to_owned(),
                    ),
                ])
                .collect(),
            event: sqs_event(include_str!("../fixtures/eventbridge-order-placed.json")),
        },
        Subject {
            name: "take-payment",
            env: aws_env
                .iter()
                .cloned()
                .chain([
                    (
                        "FULFILLMENT_TABLE".to_owned(),
                        stack.output("FulfillmentTableName")?.to_owned(),
                    ),
                    (
                        "ORDER_STATUS_TABLE".to_owned(),
                        stack.output("OrderStatusTableName")?.to_owned(),
                    ),
                ])
                .collect(),
            event: json!({"order": serde_json::from_str::<Value>(SAMPLE_SHOP_ORDER)?}),
        },
        Subject {
            name: "order-status",
            env: aws_env
                .iter()
                .cloned()
                .chain([(
                    "ORDER_STATUS_TABLE".to_owned(),
                    stack.output("OrderStatusTableName")?.to_owned(),
                )])
                .collect(),
            event: webhook_event("GET", "/orders/SO-1001", "", &Vec::new()),
        },
        Subject {
            name: "translate",
            env: transformer_env.clone(),
            event: delivered_event("io.busline.shop.order.placed.v1", SAMPLE_SHOP_ORDER)?,
        },
        Subject {
            name: "enrich",
            env: transformer_env
                .iter()
                .cloned()
                .chain([(
                    "CUSTOMER_MASTER_TABLE".to_owned(),
                    stack.output("CustomerMasterTableName")?.to_owned(),
                )])
                .collect(),
            event: delivered_event(
                "io.busline.order.placed.v2",
                include_str!("../../functions/translate/golden/shop-order.json"),
            )?,
        },
    ];

    let mut results = Vec::new();
    for subject in &subjects {
        let binary = release.join(subject.name);
        let bytes = std::fs::metadata(&binary)
            .with_context(|| {
                format!(
                    "{} is not built; run `cargo build --release --bins`",
                    binary.display()
                )
            })?
            .len();
        let mut cold_ms = Vec::new();
        let mut last = (0, false);
        for run in 0..RUNS {
            let (cold, rss, ok) = cold_start(
                &binary,
                &subject.env,
                (run + 1 == RUNS).then_some(&subject.event),
            )
            .await?;
            cold_ms.push(cold.as_secs_f64() * 1000.0);
            last = (rss, ok);
        }
        results.push(Measured {
            name: subject.name,
            cold_ms,
            peak_rss_kb: last.0,
            invocation_ok: last.1,
            bytes,
        });
    }
    let warm = warm_invokes(&aws, &release.join("hello-lambda")).await?;
    report(&results, &warm)
}

const WARM_INVOKES: usize = 200;

/// Round trips in ms: (through LocalStack's Invoke, straight over the Runtime API).
async fn warm_invokes(aws: &aws_config::SdkConfig, hello: &Path) -> Result<(Vec<f64>, Vec<f64>)> {
    let name = format!(
        "bench-hello-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    busline_tests::deploy_process_function(aws, &name, &hello.to_string_lossy(), 3, &[]).await?;
    let lambda = aws_sdk_lambda::Client::new(aws);
    let payload = aws_sdk_lambda::primitives::Blob::new(r#"{"hello":"world"}"#);
    lambda
        .invoke()
        .function_name(&name)
        .payload(payload.clone())
        .send()
        .await?;
    let mut through_localstack = Vec::with_capacity(WARM_INVOKES);
    for _ in 0..WARM_INVOKES {
        let started = Instant::now();
        let out = lambda
            .invoke()
            .function_name(&name)
            .payload(payload.clone())
            .send()
            .await?;
        through_localstack.push(started.elapsed().as_secs_f64() * 1000.0);
        if out.function_error().is_some() {
            bail!("hello-lambda failed through LocalStack");
        }
    }
    lambda.delete_function().function_name(&name).send().await?;

    let mut api = RuntimeApiStub::start().await?;
    let mut child = tokio::process::Command::new(hello)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &api.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let (_, mut pending_next) = api.next().await?;
    let mut direct = Vec::with_capacity(WARM_INVOKES);
    for i in 0..WARM_INVOKES {
        let started = Instant::now();
        let _ = pending_next.send(invocation(&format!("warm-{i}"), r#"{"hello":"world"}"#));
        let (path, answer) = api.next().await?;
        direct.push(started.elapsed().as_secs_f64() * 1000.0);
        if !path.ends_with("/response") {
            bail!("expected a response, got {path}");
        }
        let _ = answer.send(ACCEPTED.to_vec());
        pending_next = api.next().await?.1;
    }
    child.kill().await?;
    Ok((through_localstack, direct))
}

/// An SQS event of ten records, each holding `body`: a full batch for the consumer.
fn sqs_event(body: &str) -> Value {
    let records: Vec<Value> = (0..10)
        .map(|i| {
            json!({
                "messageId": format!("bench-{i}"), "receiptHandle": "h", "body": body, "md5OfBody": "",
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795564530000"},
                "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:placed-orders", "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Spawns `binary`, times it to its first `/next`, and optionally serves `event` and reads peak RSS.
async fn cold_start(
    binary: &Path,
    env: &[(String, String)],
    event: Option<&Value>,
) -> Result<(Duration, u64, bool)> {
    let mut api = RuntimeApiStub::start().await?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", &api.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("no pid")?;
    let (path, pending_next) = api.next().await?;
    let cold = started.elapsed();
    if !path.ends_with("/invocation/next") {
        bail!(
            "{}: first call was {path}, not /next (init error?)",
            binary.display()
        );
    }
    let mut ok = false;
    let mut rss = 0;
    if let Some(event) = event {
        let _ = pending_next.send(invocation("bench-1", &event.to_string()));
        let (path, _answer) = api.next().await?;
        ok = path.ends_with("/bench-1/response");
        // Read while the process waits for our answer to its response, so it is surely alive.
        rss = peak_rss_kb(pid)?;
    }
    child.kill().await?;
    Ok((cold, rss, ok))
}

const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

/// The HTTP answer to `/invocation/next` that hands over one invocation.
fn invocation(request_id: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {request_id}\r\nLambda-Runtime-Deadline-Ms: {}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:bench\r\nContent-Length: {}\r\n\r\n{body}",
        chrono::Utc::now().timestamp_millis() + 10_000,
        body.len()
    )
    .into_bytes()
}

/// A Lambda Runtime API on loopback that hands each request to the bench in arrival order, with a
/// channel to answer it on. The runtime's HTTP client may use any number of connections.
struct RuntimeApiStub {
    address: String,
    requests: mpsc::Receiver<(String, oneshot::Sender<Vec<u8>>)>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApiStub {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let (tx, requests) = mpsc::channel(16);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut conn = BufReader::new(stream);
                    while let Ok((path, _)) = read_request(&mut conn).await {
                        let (answer, answered) = oneshot::channel::<Vec<u8>>();
                        if path.is_empty() || tx.send((path, answer)).await.is_err() {
                            break;
                        }
                        match answered.await {
                            Ok(bytes) if conn.get_mut().write_all(&bytes).await.is_ok() => {}
                            _ => break,
                        }
                    }
                });
            }
        });
        Ok(Self {
            address,
            requests,
            server,
        })
    }

    /// The next request's path, and where to answer it.
    async fn next(&mut self) -> Result<(String, oneshot::Sender<Vec<u8>>)> {
        tokio::time::timeout(Duration::from_secs(20), self.requests.recv())
            .await
            .context("the function sent nothing to the Runtime API for 20 s")?
            .context("the Runtime API stub stopped")
    }
}

impl Drop for RuntimeApiStub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn read_request(conn: &mut BufReader<TcpStream>) -> Result<(String, Vec<u8>)> {
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut length = 0;
    loop {
        let mut header = String::new();
        if conn.read_line(&mut header).await? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok((path, body))
}

fn peak_rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmHWM")
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn report(results: &[Measured], (through, direct): &(Vec<f64>, Vec<f64>)) -> Result<()> {
    let baseline = median(&results[0].cold_ms);
    println!(
        "\n| Function | Cold start median | max | ratio to hello-world (goal ≤ 1.25) | Peak RSS (goal ≤ 32 MB) | Binary (goal ≤ 8 MB) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for r in results {
        let max = r.cold_ms.iter().copied().fold(0.0, f64::max);
        let ratio = median(&r.cold_ms) / baseline;
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} | {:.1} MB{} | {:.2} MB |",
            r.name,
            median(&r.cold_ms),
            max,
            ratio,
            r.peak_rss_kb as f64 / 1024.0,
            if r.invocation_ok {
                ""
            } else {
                " (invocation failed)"
            },
            r.bytes as f64 / 1_000_000.0
        );
        rows.push(json!({
            "function": r.name, "runs": r.cold_ms.len(), "cold_start_ms": r.cold_ms, "median_ms": median(&r.cold_ms),
            "max_ms": max, "ratio_to_hello": ratio, "peak_rss_kb": r.peak_rss_kb, "invocation_ok": r.invocation_ok, "binary_bytes": r.bytes,
        }));
    }
    println!(
        "\nReference (lambda-perf, 128 MB, init duration on AWS): Rust ~14-16 ms, Python ~81 ms, Node ~124 ms."
    );

    println!("\n| Warm invoke of hello-lambda ({WARM_INVOKES} each) | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| through LocalStack `Invoke` (API + process executor) | {:.2} ms | {:.2} ms |",
        percentile(through, 0.5),
        percentile(through, 0.99)
    );
    println!(
        "| straight over the Runtime API | {:.2} ms | {:.2} ms |",
        percentile(direct, 0.5),
        percentile(direct, 0.99)
    );
    println!(
        "| added by LocalStack and the executor | {:.2} ms ({:.1}x) | |",
        percentile(through, 0.5) - percentile(direct, 0.5),
        percentile(through, 0.5) / percentile(direct, 0.5)
    );
    rows.push(json!({
        "warm_invoke": {"invokes": WARM_INVOKES,
            "through_localstack_ms": {"p50": percentile(through, 0.5), "p99": percentile(through, 0.99)},
            "direct_runtime_api_ms": {"p50": percentile(direct, 0.5), "p99": percentile(direct, 0.99)}}
    }));
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("cold-start.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    println!("Written to {}", dir.join("cold-start.json").display());
    Ok(())
}
