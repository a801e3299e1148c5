//! Cold start, peak memory and size of every function, beside a bare `lambda_runtime` hello world
//! built with the same profile, measured in the same run.
//!
//! Each run spawns the release binary with a Lambda Runtime API served here on loopback, and with
//! the environment the deployed stack gives the function (read back from LocalStack's Lambda).
//! Cold start is the time from spawn to the process's first `GET /invocation/next`: everything the
//! function does at init, its Secrets Manager reads included. The last of each function's runs
//! then serves one representative invocation against the deployed stack's tables, queues and bus
//! (and stubs of the outside systems on the ports the LocalStack deployment names) and reads the
//! process's peak resident set (`VmHWM`) before killing it.
//!
//! The saga's steps are invoked in the state machine's order on one seeded order, each with the
//! state the previous steps' answers made, as Step Functions would pass it; the compensations then
//! undo that order.
//!
//! Each function is spawned with the certificate store as this host lays it out (Debian: a
//! directory of several hundred files beside one bundle) and again as Lambda's `provided.al2023`
//! does (one CA bundle, named by `SSL_CERT_FILE`, and nothing else), so a function that read the
//! store at start would show it on both. A second request of the same shape then follows the
//! representative one: the first's duration beside the second's shows work deferred from init into
//! the first request (a connector built or a schema compiled on first use). The second is a new
//! request, not the first again, so that a deduplicating function does the same work both times:
//! new envelope and delivery ids, a second seeded order for the saga's steps (each step's second
//! invocation is on that order, after the steps before it), and the sync's checkpoint cleared so
//! that its second run syncs the same records again. Before the measured process starts, an earlier
//! spawn of the same binary serves a third request of the shape, so that LocalStack's own first
//! time (DynamoDB Local's first query of a table, a queue's first message) is behind both: without
//! it, the first request of a function that reads DynamoDB took up to 6× the second on 2026-12-08,
//! and with it most of those came within 1.25× (cdc-stream 3.52× to 1.01×).
//!
//! Warm invokes: 200 invocations of the hello world through LocalStack's `Invoke` (its API, the
//! process executor, the Runtime API), beside 200 served to the same binary straight over the
//! Runtime API in this process; the difference is what LocalStack and the executor add.
//!
//! Needs LocalStack with the stack deployed (`make bench` does both) and the release binaries
//! (`make release`). Writes `target/bench/cold-start.json` and prints tables. Fails if a function in
//! `functions/` has no subject here.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use busline_tests::report::{Column, Section, Table};
use busline_tests::runtime_api::{
    FunctionProcess, arm64_release_binary, deployed_env, function_names, lambda_certificate_layout,
    release_binary,
};
use busline_tests::saga::Scenario;
use busline_tests::source_stub::SourceStub;
use busline_tests::{
    DeployedStack, SAMPLE_SHOP_ORDER, localstack, percentile, signed_headers, webhook_event,
};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, ResponseTemplate};

const RUNS: usize = 10;

/// The event a rule delivers for `data` of `event_type`, as JSON.
fn delivered_event(event_type: &str, data: &Value) -> Result<Value> {
    let envelope = busline::Envelope::new(
        format!("cold-{}", uuid::Uuid::new_v4().simple()),
        "busline.bench",
        busline::EventType::parse(event_type)?,
        data.clone(),
    );
    Ok(serde_json::to_value(busline::transform::delivered(
        &envelope,
    ))?)
}

/// The saga's state: what the state machine would pass the next step.
type SagaState = Value;

/// Makes the `n`th request of a function's representative shape (0, then 1), given the saga's
/// state so far for that request's order.
type MakeEvent = Box<dyn Fn(&SagaState, usize) -> Result<Value>>;

/// One function to measure, and how to make its representative invocation's event.
struct Subject {
    name: &'static str,
    kind: &'static str,
    event: MakeEvent,
    /// For a saga step whose answer the state machine keeps, where it goes in the state.
    result_path: Option<&'static str>,
}

impl Subject {
    /// The same event both times: for a function that keeps nothing per request.
    fn same(name: &'static str, kind: &'static str, event: Value) -> Self {
        Self {
            name,
            kind,
            event: Box::new(move |_, _| Ok(event.clone())),
            result_path: None,
        }
    }

    /// A new request each time: for a function that would take the duplicate's path the second
    /// time.
    fn fresh(
        name: &'static str,
        kind: &'static str,
        make: impl Fn(usize) -> Result<Value> + 'static,
    ) -> Self {
        Self {
            name,
            kind,
            event: Box::new(move |_, n| make(n)),
            result_path: None,
        }
    }

    /// A saga step, invoked with the state, its answer kept at `result_path` (`$.credit`) if the
    /// state machine keeps it.
    fn step(name: &'static str, result_path: Option<&'static str>) -> Self {
        Self {
            name,
            kind: "saga step",
            event: Box::new(|state, _| Ok(state.clone())),
            result_path,
        }
    }

    fn from_state(
        name: &'static str,
        kind: &'static str,
        event: impl Fn(&SagaState, usize) -> Result<Value> + 'static,
    ) -> Self {
        Self {
            name,
            kind,
            event: Box::new(event),
            result_path: None,
        }
    }
}

struct Measured {
    name: &'static str,
    kind: &'static str,
    cold_ms: Vec<f64>,
    /// Spawn to the first `/invocation/next` with the store laid out as on Lambda.
    bundle_ms: Vec<f64>,
    /// The representative invocation's duration, and the next request's of the same shape.
    first_ms: f64,
    second_ms: f64,
    peak_rss_kb: u64,
    outcome: String,
    bytes: u64,
    /// The arm64 build's size, if there is one.
    arm64_bytes: Option<u64>,
}

/// Stubs of the outside systems, where the LocalStack deployment points the functions: the email
/// API (8025), the sync source (8026) and the warehouse's webhook (8027).
async fn outside_systems() -> Result<Vec<MockServer>> {
    let mut servers = Vec::new();
    for port in [8025, 8026, 8027] {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("port {port} is free for a stub of an outside system"))?;
        servers.push(MockServer::builder().listener(listener).start().await);
    }
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"id": "msg-1"})))
        .mount(&servers[0])
        .await;
    SourceStub::with_records(100, chrono::Utc::now())
        .mount(&servers[1])
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&servers[2])
        .await;
    Ok(servers)
}

/// Every function, in the order they are measured (a saga step after the steps before it).
async fn subjects(aws: &aws_config::SdkConfig, stack: &DeployedStack) -> Result<Vec<Subject>> {
    let shop_secret = stack.secret(aws, "ShopWebhookSecretArn").await?;
    let approvers_secret = stack.secret(aws, "ApproversSecretArn").await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let v2_order: Value = serde_json::from_str(include_str!(
        "../../functions/translate/golden/shop-order.json"
    ))?;
    let profile = json!({"status": "known", "tier": "gold", "credit_limit": 5000, "looked_up_at": "2026-11-24T10:15:31Z"});
    let customer_updated: Value = serde_json::from_str(include_str!(
        "../../functions/translate/golden/crm-customer.json"
    ))?;
    let order_placed: Value =
        serde_json::from_str(include_str!("../fixtures/eventbridge-order-placed.json"))?;
    let order_fulfilled: Value =
        serde_json::from_str(include_str!("../fixtures/eventbridge-order-fulfilled.json"))?;
    let webhook = {
        let run = run.clone();
        move |n: usize| {
            webhook_event(
                "POST",
                "/webhooks/shop",
                SAMPLE_SHOP_ORDER,
                &signed_headers(&shop_secret, SAMPLE_SHOP_ORDER, &format!("bench-{run}-{n}")),
            )
        }
    };
    let approval = move |state: &SagaState, n: usize| {
        let order_id = state["order"]["order_id"].as_str().context("no order id")?;
        let body = json!({"order_id": order_id, "decision": "approve", "approver": "bench",
            "comment": "cold start"})
        .to_string();
        Ok(webhook_event(
            "POST",
            &format!("/orders/{order_id}/approval"),
            &body,
            &signed_headers(&approvers_secret, &body, &format!("bench-{run}-{n}")),
        ))
    };
    Ok(vec![
        Subject::same("hello-lambda", "baseline", json!({"hello": "world"})),
        Subject::same(
            "hello-traced",
            "baseline + telemetry",
            json!({"detail-type": "io.busline.bench.hello.v1", "detail": {"id": "hello-1",
                "type": "io.busline.bench.hello.v1", "correlationid": "hello",
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}),
        ),
        Subject::fresh("ingest-webhook", "connector", move |n| Ok(webhook(n))),
        Subject::fresh("audit-trail", "connector", move |_| {
            Ok(sqs_event(&with_new_ids(&order_placed).to_string()))
        }),
        Subject::same(
            "cdc-stream",
            "connector",
            serde_json::from_str(include_str!("../fixtures/dynamodb-stream-event.json"))?,
        ),
        Subject::same(
            "batch-sync",
            "connector",
            serde_json::from_str(include_str!("../fixtures/eventbridge-scheduled-event.json"))?,
        ),
        Subject::from_state("deliver-webhook", "connector", |state, _| {
            let order_id = &state["order"]["order_id"];
            let fulfillment = json!({"order_id": order_id, "correlation_id": order_id,
                "warehouse": "DUB-1", "sequence": 1, "total": 1,
                "lines": [{"line_no": 1, "sku": "KB-RED-01", "quantity": 2}]});
            Ok(sqs_event(
                &delivered_event("io.busline.fulfillment.requested.v1", &fulfillment)?.to_string(),
            ))
        }),
        Subject::fresh("notify-customer", "connector", move |_| {
            Ok(with_new_ids(&order_fulfilled))
        }),
        Subject::fresh("translate", "transformer", |_| {
            delivered_event(
                "io.busline.shop.order.placed.v1",
                &serde_json::from_str(SAMPLE_SHOP_ORDER)?,
            )
        }),
        Subject::fresh("enrich", "transformer", move |_| {
            delivered_event("io.busline.order.placed.v2", &v2_order)
        }),
        {
            let v2_order: Value = serde_json::from_str(include_str!(
                "../../functions/translate/golden/shop-order.json"
            ))?;
            Subject::fresh("split", "transformer", move |_| {
                delivered_event(
                    "io.busline.order.enriched.v1",
                    &json!({"order": v2_order, "customer": profile}),
                )
            })
        },
        Subject::fresh("mdm-customer", "transformer", move |_| {
            Ok(sqs_event(
                &delivered_event("io.busline.customer.updated.v1", &customer_updated)?.to_string(),
            ))
        }),
        Subject::step("validate-order", None),
        Subject::step("check-credit", Some("$.credit")),
        Subject::from_state("request-approval", "saga step", |state, _| {
            Ok(
                json!({"order": state["order"], "correlation_id": state["correlation_id"],
                "task_token": "bench-task-token", "timeout_seconds": 60}),
            )
        }),
        Subject::from_state("approve-order", "saga step", approval),
        Subject::step("reserve-inventory", Some("$.reservation")),
        Subject::step("take-payment", Some("$.payment")),
        Subject::step("create-shipment", Some("$.shipment")),
        Subject::step("post-invoice", Some("$.invoice")),
        // The compensations undo the order the steps above made.
        Subject::step("cancel-shipment", None),
        Subject::step("refund-payment", None),
        Subject::step("release-inventory", None),
        Subject::from_state("order-status", "connector", |state, _| {
            let order_id = state["order"]["order_id"].as_str().context("no order id")?;
            Ok(webhook_event(
                "GET",
                &format!("/orders/{order_id}"),
                "",
                &Vec::new(),
            ))
        }),
    ])
}

/// An EventBridge event (as a rule delivers it) with a new event id and a new envelope id, so a
/// deduplicating consumer takes it as a new event.
fn with_new_ids(event: &Value) -> Value {
    let mut event = event.clone();
    event["id"] = json!(uuid::Uuid::new_v4().to_string());
    if event["detail"].get("id").is_some() {
        event["detail"]["id"] = json!(uuid::Uuid::new_v4().to_string());
    }
    event
}

/// Clears the batch sync's checkpoint (`SYNC_NAME` in `CHECKPOINT_TABLE`, from the function's
/// environment), so that its next run syncs every record again rather than the few at the
/// watermark.
async fn forget_sync(aws: &aws_config::SdkConfig, env: &[(String, String)]) -> Result<()> {
    let var = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .with_context(|| format!("batch-sync has no {name}"))
    };
    aws_sdk_dynamodb::Client::new(aws)
        .delete_item()
        .table_name(var("CHECKPOINT_TABLE")?)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(var("SYNC_NAME")?),
        )
        .send()
        .await?;
    Ok(())
}

/// Keeps a saga step's `answer` at `path` (`$.name`) in `state`, as the state machine's
/// `ResultPath` does.
fn keep(state: &mut SagaState, path: &str, answer: Value) -> Result<()> {
    let name = path
        .strip_prefix("$.")
        .filter(|name| !name.contains('.'))
        .with_context(|| format!("{path} is not a top-level result path"))?;
    state[name] = answer;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let aws = localstack().await?;
    let stack = DeployedStack::read(&aws).await?;
    let lambda = aws_sdk_lambda::Client::new(&aws);
    let _outside = outside_systems().await?;
    // Deliveries that found no one listening earlier may have opened the warehouse's circuit.
    stack.close_circuit(&aws, "warehouse").await?;
    // One order for each of the three requests a saga step serves: LocalStack's warm-up, then the
    // measured process's first and second.
    let mut states = Vec::new();
    for _ in 0..3 {
        let scenario = Scenario::seeded(&aws, 1_000_000, false, 0).await?;
        states.push(json!({
            "order": serde_json::to_value(&scenario.order)?,
            "customer": {"status": "known", "tier": "gold", "credit_limit": 10000, "looked_up_at": "2026-11-24T10:15:31Z"},
            "correlation_id": format!("cold-{}", scenario.order.order_id),
            "placed_event_id": format!("cold-{}", scenario.order.order_id),
        }));
    }

    let subjects = subjects(&aws, &stack).await?;
    let missing: Vec<String> = function_names()?
        .into_iter()
        .filter(|name| subjects.iter().all(|s| s.name != name))
        .collect();
    if !missing.is_empty() {
        bail!("no cold-start subject for {missing:?}: add each with a representative event");
    }

    let lambda_layout = lambda_certificate_layout()?;
    let mut results = Vec::new();
    for subject in subjects {
        let binary = release_binary(subject.name)?;
        let bytes = std::fs::metadata(&binary)?.len();
        let arm64_bytes = match arm64_release_binary(subject.name) {
            Some(arm64) => Some(std::fs::metadata(arm64)?.len()),
            None => None,
        };
        let env = match subject.name {
            "hello-lambda" | "hello-traced" => Vec::new(),
            name => deployed_env(&lambda, name).await?,
        };
        let first = (subject.event)(&states[0], 0)?.to_string();
        let second = (subject.event)(&states[1], 1)?.to_string();
        let warm_up = (subject.event)(&states[2], 2)?.to_string();
        let mut bundle_env = env.clone();
        bundle_env.extend(lambda_layout.iter().cloned());
        let mut bundle_ms = Vec::new();
        for run in 0..RUNS {
            let (mut process, init) = FunctionProcess::start(&binary, &bundle_env).await?;
            bundle_ms.push(init.as_secs_f64() * 1000.0);
            // The last of these serves a request of the same shape first, so that what LocalStack
            // does the first time (DynamoDB Local's first query of a table, a queue's first
            // message) is behind it: the measured process's first request then shows its own
            // deferred work alone.
            if run + 1 == RUNS {
                let warmed = process.invoke(&warm_up).await?;
                if let (Some(path), None) = (subject.result_path, &warmed.error)
                    && let Some(state) = states.get_mut(2)
                {
                    keep(state, path, warmed.answer)?;
                }
                if subject.name == "batch-sync" {
                    forget_sync(&aws, &env).await?;
                }
            }
            process.kill().await?;
        }
        let mut cold_ms = Vec::new();
        for _ in 1..RUNS {
            let (process, init) = FunctionProcess::start(&binary, &env).await?;
            cold_ms.push(init.as_secs_f64() * 1000.0);
            process.kill().await?;
        }
        // The last run also serves the representative invocation, and a second of its shape.
        let (mut process, init) = FunctionProcess::start(&binary, &env).await?;
        cold_ms.push(init.as_secs_f64() * 1000.0);
        let invoked = process.invoke(&first).await?;
        if subject.name == "batch-sync" {
            forget_sync(&aws, &env).await?;
        }
        let again = process.invoke(&second).await?;
        let peak_rss_kb = process.peak_rss_kb()?;
        process.kill().await?;
        let (first_ms, second_ms) = (
            invoked.took.as_secs_f64() * 1000.0,
            again.took.as_secs_f64() * 1000.0,
        );
        let outcome = match (&invoked.error, &again.error) {
            (None, None) => "answered".to_owned(),
            (Some(error_type), _) => format!("error: {error_type}"),
            (None, Some(error_type)) => format!("second: error: {error_type}"),
        };
        if let Some(path) = subject.result_path {
            for (state, answered) in states.iter_mut().zip([invoked, again]) {
                if answered.error.is_none() {
                    keep(state, path, answered.answer)?;
                }
            }
        }
        results.push(Measured {
            name: subject.name,
            kind: subject.kind,
            cold_ms,
            bundle_ms,
            first_ms,
            second_ms,
            peak_rss_kb,
            outcome,
            bytes,
            arm64_bytes,
        });
    }
    let warm = warm_invokes(&aws, &release_binary("hello-lambda")?).await?;
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

    let (mut process, _) = FunctionProcess::start(hello, &[]).await?;
    let mut direct = Vec::with_capacity(WARM_INVOKES);
    for _ in 0..WARM_INVOKES {
        let invoked = process.invoke(r#"{"hello":"world"}"#).await?;
        if let Some(error) = invoked.error {
            bail!("hello-lambda failed: {error}");
        }
        direct.push(invoked.took.as_secs_f64() * 1000.0);
    }
    process.kill().await?;
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

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn report(results: &[Measured], (through, direct): &(Vec<f64>, Vec<f64>)) -> Result<()> {
    let baseline = median(&results[0].cold_ms);
    let bundle_baseline = median(&results[0].bundle_ms);
    let mut section = Section::new(
        10,
        "Cold start, memory and size of every function",
        &format!(
            "Release builds (LTO, `opt-level = \"z\"`, stripped). Cold start: spawn to the first \
             `GET /invocation/next` on a Runtime API served in-process, with the environment the \
             deployed stack gives the function; median and max of {RUNS} spawns, beside a bare \
             `lambda_runtime` hello world built with the same profile in the same run; again with \
             the certificate store as on Lambda's `provided.al2023` (one bundle in `SSL_CERT_FILE`). \
             First invocation: the representative invocation's duration, beside the next request \
             of the same shape sent to the same process (new ids, so a deduplicating function does \
             the same work again; the saga's steps on a second order), both after an earlier \
             spawn served a third, so LocalStack's first time on the function's tables is not \
             counted as the function's. Peak RSS: `VmHWM` after the representative invocations against the deployed stack on LocalStack \
             (the saga's steps in the state machine's order on one order; stubs of the email API, \
             the sync source and the warehouse). `tests/benches/cold_start.rs`."
        ),
    );
    let mut table = Table::new(
        "",
        vec![
            Column::text("function"),
            Column::text("kind"),
            Column::number("cold start median", "ms", 2),
            Column::number("max", "ms", 2),
            Column::number("× hello world", "×", 2).at_most(1.25),
            Column::number("one bundle (Lambda's layout)", "ms", 2),
            Column::number("× hello world, one bundle", "×", 2).at_most(1.25),
            Column::number("first invocation", "ms", 2),
            Column::number("second", "ms", 2),
            Column::number("first × second", "×", 2).at_most(1.25),
            Column::number("peak RSS", "MB", 1).at_most(32.0),
            Column::number("binary, x86_64", "MB", 2).at_most(8.0),
            Column::number("binary, arm64", "MB", 2).at_most(8.0),
            Column::text("invocation"),
        ],
    );
    for r in results {
        let max = r.cold_ms.iter().copied().fold(0.0, f64::max);
        table.row(vec![
            json!(r.name),
            json!(r.kind),
            json!(median(&r.cold_ms)),
            json!(max),
            // The goal is the functions'; hello-traced has its own table below.
            if r.name == "hello-traced" {
                json!(null)
            } else {
                json!(median(&r.cold_ms) / baseline)
            },
            json!(median(&r.bundle_ms)),
            if r.name == "hello-traced" {
                json!(null)
            } else {
                json!(median(&r.bundle_ms) / bundle_baseline)
            },
            json!(r.first_ms),
            json!(r.second_ms),
            json!(r.first_ms / r.second_ms),
            json!(r.peak_rss_kb as f64 / 1024.0),
            json!(r.bytes as f64 / 1_000_000.0),
            json!(r.arm64_bytes.map(|b| b as f64 / 1_000_000.0)),
            json!(r.outcome),
        ]);
    }
    section.tables.push(table);
    if results.iter().any(|r| r.arm64_bytes.is_none()) {
        section.notes.push(
            "Some functions have no arm64 build in this run (`make release-arm64` makes them, \
             with cargo-lambda; `make bench` runs it): their arm64 size is blank."
                .to_owned(),
        );
    }

    // What busline's telemetry (the JSON log subscriber, and the hop around each invocation) adds
    // to a cold start: the hello world with it, less the hello world.
    let traced = results
        .iter()
        .find(|r| r.name == "hello-traced")
        .context("no hello-traced measurement")?;
    let mut telemetry = Table::new(
        "What telemetry adds to a cold start (`hello-traced`, the hello world with busline's \
         subscriber and a hop per invocation, less the hello world; same run):",
        vec![
            Column::text("measure"),
            Column::number("hello", "ms", 2),
            Column::number("hello + telemetry", "ms", 2),
            Column::number("added", "ms", 2).at_most(1.0),
        ],
    );
    telemetry.row(vec![
        json!("cold start, median"),
        json!(baseline),
        json!(median(&traced.cold_ms)),
        json!(median(&traced.cold_ms) - baseline),
    ]);
    section.tables.push(telemetry);

    let mut warm = Table::new(
        &format!("Warm invokes of the hello world, {WARM_INVOKES} each:"),
        vec![
            Column::text("path"),
            Column::number("p50", "ms", 2),
            Column::number("p99", "ms", 2),
        ],
    );
    for (path, samples) in [
        (
            "through LocalStack `Invoke` (API + process executor)",
            through,
        ),
        ("straight over the Runtime API", direct),
    ] {
        warm.row(vec![
            json!(path),
            json!(percentile(samples, 0.5)),
            json!(percentile(samples, 0.99)),
        ]);
    }
    section.tables.push(warm);
    section.notes.push(format!(
        "LocalStack and its executor add {:.2} ms p50 to each invoke ({:.1}× the Runtime API round trip).",
        percentile(through, 0.5) - percentile(direct, 0.5),
        percentile(through, 0.5) / percentile(direct, 0.5)
    ));
    section.publish("cold-start")
}
