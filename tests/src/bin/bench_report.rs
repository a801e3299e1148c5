//! `make bench`'s last step: gathers every benchmark's section (`target/bench/*.json`) and
//! criterion's estimates from this run into one report, with the goals met and missed first and
//! AWS's published figures beside ours last. Writes `target/bench/report.md` and `report.json`
//! and prints the Markdown.
//!
//! Criterion's in-process measurements are read from `target/criterion`: in each group, every
//! function is set beside the group's `baseline…` function (`serde_json` parsing and writing the
//! same payload) as a ratio of their median times. Only estimates written since `make bench`
//! started (`target/bench/.started`) count, so a benchmark that did not run this time is missing,
//! not stale.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use busline_tests::report::{self, Column, Section, Table};
use serde_json::{Value, json};

fn main() -> Result<()> {
    let dir = report::dir();
    let started = std::fs::metadata(dir.join(".started"))
        .and_then(|m| m.modified())
        .context("no target/bench/.started: run `make bench`, which marks its start")?;
    let mut sections = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        if path.extension().is_some_and(|e| e == "json") && name != "report" {
            let text = std::fs::read_to_string(&path)?;
            let section: Section = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a report section", path.display()))?;
            sections.push(section);
        }
    }
    let criterion = criterion_dir(&dir);
    sections.push(in_process(&criterion, started)?);
    sections.push(references());
    sections.sort_by_key(|s| s.rank);
    if sections.len() < 3 {
        bail!(
            "no benchmark sections in {}: did `make bench` run?",
            dir.display()
        );
    }

    let took = SystemTime::now()
        .duration_since(started)
        .unwrap_or_default();
    let mut markdown = format!(
        "# busline performance report\n\n{}, {}; `make bench` took {:.1} min (build included).\n\n\
         Every timing stands beside a baseline measured in the same run, as a ratio: these \
         machines are shared and their timings move with load. Counts (calls, bytes) are exact.\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        took.as_secs_f64() / 60.0
    );
    let goals = goals(&sections);
    markdown.push_str(&goals.markdown());
    markdown.push('\n');
    for section in &sections {
        markdown.push_str(&section.markdown());
    }
    std::fs::write(dir.join("report.md"), &markdown)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&json!({
            "generated_at": chrono::Utc::now().to_rfc3339(),
            "machine": machine(),
            "minutes": took.as_secs_f64() / 60.0,
            "goals": goals,
            "sections": sections,
        }))?,
    )?;
    println!("{markdown}");
    println!(
        "Written to {} and report.json",
        dir.join("report.md").display()
    );
    Ok(())
}

fn criterion_dir(bench_dir: &Path) -> PathBuf {
    bench_dir.parent().unwrap_or(bench_dir).join("criterion")
}

/// One line per goal: how many rows met it, and the worst.
fn goals(sections: &[Section]) -> Table {
    let mut table = Table::new(
        "## Goals\n\nEach goal, over the rows it applies to in this report:",
        vec![
            Column::text("goal"),
            Column::text("where"),
            Column::number("rows", "", 0),
            Column::number("missed", "", 0),
            Column::text("worst"),
        ],
    );
    for section in sections {
        for t in &section.tables {
            for (i, column) in t.columns.iter().enumerate() {
                let Some(goal) = column.goal() else {
                    continue;
                };
                let measured: Vec<(&Value, f64)> = t
                    .rows
                    .iter()
                    .filter_map(|row| Some((row.first()?, row.get(i)?.as_f64()?)))
                    .collect();
                let missed = measured
                    .iter()
                    .filter(|(_, n)| column.misses_number(*n))
                    .count();
                let worst = measured.iter().copied().reduce(|worst, next| {
                    if column.worse(next.1, worst.1) {
                        next
                    } else {
                        worst
                    }
                });
                table.row(vec![
                    json!(format!("{} {goal}", column.name)),
                    json!(section.title),
                    json!(measured.len()),
                    json!(missed),
                    json!(worst.map_or_else(
                        || "not measured in this run".to_owned(),
                        |(name, n)| format!(
                            "{}: {n:.2}{}",
                            name.as_str().unwrap_or_default(),
                            column.unit_suffix()
                        )
                    )),
                ]);
            }
        }
    }
    table
}

/// What each criterion group's elements are, and what its benchmark file is.
const GROUPS: &[(&str, &str, &str)] = &[
    (
        "translate/",
        "events",
        "`functions/translate/benches/translate.rs`: a webhook dialect's sample as EventBridge delivers it, through the whole translate handler to the serialised `PutEvents` entry",
    ),
    (
        "cdc",
        "records",
        "`functions/cdc-stream/benches/cdc.rs`: a DynamoDB Streams batch of 100 `MODIFY` records, each made a change, filtered and serialised as its EventBridge entry",
    ),
    (
        "mdm",
        "changes",
        "`functions/mdm-customer/benches/merge.rs`: 1,000 `customer.updated` changes over 50 customers, merged by the survivorship rules",
    ),
    (
        "idempotency",
        "messages",
        "`shared/benches/toolkit.rs`: one order envelope through the idempotency layer with the in-memory store",
    ),
    (
        "batch of 10",
        "messages",
        "`shared/benches/toolkit.rs`: an SQS batch of ten through the batch processor with idempotency per message, in-memory store",
    ),
    (
        "telemetry",
        "messages",
        "`shared/benches/toolkit.rs`: a handler that reads an order envelope, logs, publishes one event and answers, alone (the baseline here) and as a hop (its span, trace context, \"handled\" line and metrics record), logging to busline's JSON subscriber",
    ),
];

/// Benchmarks by (group prefix, function).
type Paths = &'static [(&'static str, &'static str)];

/// The in-process paths held to a goal against their group's baseline: (caption, at least, the
/// (group prefix, function) of each path). A path this run did not measure shows as a blank row.
const IN_PROCESS_GOALS: &[(&str, f64, Paths)] = &[
    (
        "The toolkit's batch layer with idempotency, against the same messages parsed and \
         serialised:",
        0.5,
        &[
            ("batch of 10", "batch processor + idempotency per message"),
            ("batch of 10", "batch processor, claimed mode"),
        ],
    ),
    (
        "The handlers with telemetry on, against their payloads parsed and serialised:",
        0.6,
        &[
            ("translate/", "translate"),
            ("cdc", "cdc handler"),
            ("mdm", "through the customer master (in-memory store)"),
        ],
    ),
];

/// Criterion's estimates from this run, each beside its group's baseline.
fn in_process(criterion: &Path, since: SystemTime) -> Result<Section> {
    let mut section = Section::new(
        40,
        "In-process handler throughput (criterion)",
        "One core, no network: the handlers' own work per message. In each group the baseline is \
         `serde_json` parsing the same payload into a `Value` and writing it back out, the least any \
         handler of that payload does; `× baseline` is the baseline's median time over the \
         function's, so 0.5× means half the speed of bare parse-and-serialise.",
    );
    let mut found = Vec::new();
    collect_benchmarks(criterion, since, &mut found)?;
    found.sort_by_key(|b| {
        let baseline_first = !b.function.starts_with("baseline");
        (b.group.clone(), baseline_first, b.function.clone())
    });
    let mut table = Table::new(
        "",
        vec![
            Column::text("group"),
            Column::text("function"),
            Column::number("median / iteration", "µs", 2),
            Column::number("per second", "", 0),
            Column::number("× baseline", "×", 2),
        ],
    );
    for (prefix, _, about) in GROUPS {
        if found.iter().any(|b| b.group.starts_with(prefix)) {
            section
                .about
                .push_str(&format!("\n- `{prefix}…`: {about}."));
        } else {
            section
                .notes
                .push(format!("No `{prefix}` estimates from this run."));
        }
    }
    for bench in &found {
        let unit = GROUPS
            .iter()
            .find(|(prefix, _, _)| bench.group.starts_with(prefix))
            .map_or("items", |(_, unit, _)| unit);
        let baseline = found
            .iter()
            .find(|b| b.group == bench.group && b.function.starts_with("baseline"));
        table.row(vec![
            json!(format!("{} ({unit})", bench.group)),
            json!(bench.function),
            json!(bench.median_ns / 1000.0),
            json!(bench.elements.map(|n| n * 1e9 / bench.median_ns)),
            json!(baseline.map(|b| b.median_ns / bench.median_ns)),
        ]);
    }
    section.tables.push(table);
    for (caption, goal, paths) in IN_PROCESS_GOALS {
        let mut goals = Table::new(
            caption,
            vec![
                Column::text("path"),
                Column::number("× baseline", "×", 2).at_least(*goal),
            ],
        );
        for (group, function) in *paths {
            let ratios = found
                .iter()
                .filter(|b| b.group.starts_with(group) && b.function == *function)
                .filter_map(|bench| {
                    let baseline = found
                        .iter()
                        .find(|b| b.group == bench.group && b.function.starts_with("baseline"))?;
                    Some((bench, baseline.median_ns / bench.median_ns))
                });
            let mut any = false;
            for (bench, ratio) in ratios {
                any = true;
                goals.row(vec![
                    json!(format!("{}: {}", bench.group, bench.function)),
                    json!(ratio),
                ]);
            }
            if !any {
                goals.row(vec![json!(format!("{group}: {function}")), Value::Null]);
            }
        }
        section.tables.push(goals);
    }
    let time_of = |function: &str| {
        found
            .iter()
            .find(|b| b.group == "telemetry" && b.function.starts_with(function))
            .map(|b| b.median_ns)
    };
    if let (Some(alone), Some(hop)) = (time_of("baseline"), time_of("the handler in a hop")) {
        section.notes.push(format!(
            "Telemetry's cost per invocation: a hop adds {:.1} µs to the handler ({:.2} µs alone, \
             {:.2} µs in a hop). A warm invocation's handler on AWS spends milliseconds in its \
             calls to DynamoDB, EventBridge or HTTP (the end-to-end sections' handler times on \
             LocalStack); 5% of 1 ms is 50 µs.",
            (hop - alone) / 1000.0,
            alone / 1000.0,
            hop / 1000.0
        ));
    }
    Ok(section)
}

struct Benchmark {
    group: String,
    function: String,
    median_ns: f64,
    elements: Option<f64>,
}

/// Every `new/benchmark.json` under `dir` written since `since`, with its median.
fn collect_benchmarks(dir: &Path, since: SystemTime, found: &mut Vec<Benchmark>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let estimates = path.join("new/estimates.json");
        let fresh = std::fs::metadata(&estimates)
            .and_then(|m| m.modified())
            .is_ok_and(|at| at >= since);
        if fresh {
            let read = |name: &str| -> Result<Value> {
                Ok(serde_json::from_str(&std::fs::read_to_string(
                    path.join("new").join(name),
                )?)?)
            };
            let (benchmark, estimates) = (read("benchmark.json")?, read("estimates.json")?);
            found.push(Benchmark {
                group: benchmark["group_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                function: benchmark["function_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                median_ns: estimates["median"]["point_estimate"]
                    .as_f64()
                    .context("an estimate without a median")?,
                elements: benchmark["throughput"]["Elements"].as_f64(),
            });
        } else if path.file_name().is_some_and(|n| n != "report") {
            collect_benchmarks(&path, since, found)?;
        }
    }
    Ok(())
}

/// AWS's published figures, for scale: not measured here.
fn references() -> Section {
    let mut section = Section::new(
        90,
        "For scale: AWS's published figures (not measured here)",
        "Where busline stands against what the same work costs on AWS. LocalStack on one host is \
         not AWS: its service hops are a different size (often smaller, sometimes larger), so \
         compare shares and ratios, not absolute milliseconds.",
    );
    let mut cold = Table::new(
        "Cold start (init duration) of a minimal function, 128 MB, zip, from \
         [lambda-perf](https://maxday.github.io/lambda-perf/) (daily: each runtime deployed \
         fresh and invoked 10 times as a cold start; figures from `data/2026-08-22.json` in \
         [maxday/lambda-perf](https://github.com/maxday/lambda-perf), and the 30 days before it):",
        vec![
            Column::text("runtime"),
            Column::number("arm64, 2026-08-22", "ms", 2),
            Column::number("x86_64, 2026-08-22", "ms", 2),
            Column::number("arm64, 30-day mean", "ms", 1),
            Column::number("x86_64, 30-day mean", "ms", 1),
        ],
    );
    for (runtime, a, x, a30, x30) in [
        ("Rust (provided.al2023)", 13.87, 15.53, 14.7, 17.4),
        ("Python 3.12", 72.82, 85.23, 77.2, 86.0),
        ("Python 3.13", 80.57, 91.07, 78.2, 87.2),
        ("Node.js 20", 122.85, 138.47, 125.6, 143.3),
        ("Node.js 22", 124.27, 137.09, 124.6, 142.9),
    ] {
        cold.row(vec![
            json!(runtime),
            json!(a),
            json!(x),
            json!(a30),
            json!(x30),
        ]);
    }
    section.tables.push(cold);
    let mut services = Table::new(
        "The services between busline's functions:",
        vec![
            Column::text("service"),
            Column::text("published figure"),
            Column::text("source"),
        ],
    );
    for (service, figure, source) in [
        (
            "EventBridge event bus",
            "end-to-end latency (ingestion to first delivery attempt) 129.33 ms at p99, down from 2,235 ms",
            "[Serverless ICYMI Q4 2024](https://aws.amazon.com/blogs/compute/serverless-icymi-q4-2024/), on the [Nov 2024 announcement](https://aws.amazon.com/about-aws/whats-new/2024/11/amazon-eventbridge-improvement-latency-event-buses/)",
        ),
        (
            "SQS",
            "\"Typical latencies for SendMessage, ReceiveMessage, and DeleteMessage API requests are in the tens or low hundreds of milliseconds\"",
            "[Amazon SQS FAQs](https://aws.amazon.com/sqs/faqs/)",
        ),
        (
            "Lambda SQS event source mapping",
            "long polling; five concurrent batches to start, scaling out while messages remain (LocalStack: one poller, one batch at a time)",
            "[Lambda: scaling with SQS](https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html)",
        ),
        (
            "Lambda DynamoDB Streams event source mapping",
            "\"Lambda polls shards in your DynamoDB stream for records at a base rate of 4 times per second\"",
            "[Lambda with DynamoDB](https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html)",
        ),
        (
            "DynamoDB",
            "\"single-digit millisecond performance at any scale\"",
            "[What is Amazon DynamoDB?](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Introduction.html)",
        ),
        (
            "Step Functions",
            "no published latency per state transition or task; Express runs up to 100,000 state transitions per second, Standard starts over 2,000 executions per second",
            "[cost-effective workflows](https://aws.amazon.com/blogs/compute/building-cost-effective-aws-step-functions-workflows/), [Serverless Lens](https://docs.aws.amazon.com/wellarchitected/latest/serverless-applications-lens/step-functions-workflows.html)",
        ),
    ] {
        services.row(vec![json!(service), json!(figure), json!(source)]);
    }
    section.tables.push(services);
    section
}

/// The CPU and core count, for the report's header.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, m)| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores of {cpu}")
}
