//! What a function does at init, counted rather than timed (timings belong to `make bench`): every
//! function's debug binary starts with the environment the deployed stack gives it, and its Runtime
//! API is a closed port, so the process runs its whole init, makes the runtime's first call, fails
//! and exits.
//!
//! - **No certificate store read**, under `strace`: every HTTPS client trusts the compiled-in roots
//!   (`busline::tls`), so no function opens a file of the system's store, as this host lays it out
//!   (`/etc/ssl/certs`, several hundred files) or as Lambda's `provided.al2023` does (one bundle,
//!   named by `SSL_CERT_FILE`). Reading them cost 73–81 % of each function's init.
//! - **An instruction ceiling**, under callgrind (instructions are counted, not timed, so the count
//!   is the same on a busy machine): a light function, the heaviest and the deliverer stay under a
//!   ceiling set about 1.5× what they cost when the ceiling was set, so a regression of the size of
//!   the certificate store's (4–6× the init) fails here long before it reaches a release.
//!
//! Each case first checks that the process reached the runtime's first call (its `connect` to the
//! closed port): a function that failed its init earlier would count little and pass for cheap.
//!
//! Needs LocalStack with the stack deployed (`make test` does both), `strace` and `valgrind`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use busline_tests::localstack;
use busline_tests::runtime_api::{
    debug_binary, deployed_env, function_names, lambda_certificate_layout, lambda_variables,
};

/// Instruction ceilings for debug builds' init (spawn to the runtime's first call and the exit
/// after it fails), about 1.5× the count when each was set (the comment).
const CEILINGS: &[(&str, u64)] = &[
    // 2026-12-03: 5.84 million. split, the shape every light function has (its EventBridge
    // client; the dead-letter queue's client waits for a letter). With the system's certificate
    // store read (`BUSLINE_TLS_ROOTS=native`) its debug init opens 147 files under /etc/ssl.
    ("split", 8_500_000),
    // 27.1 million: five secrets read from Secrets Manager (53 %), three SDK clients' endpoint
    // rules (8 % each); the five schemas are compiled into the binary.
    ("ingest-webhook", 40_000_000),
    // 14.9 million: the SDK and reqwest on one rustls configuration, the signing secret read.
    ("deliver-webhook", 22_000_000),
];

/// Paths where a system's certificate store lives, on Debian, on Amazon Linux and on Lambda.
const STORE_PATHS: &[&str] = &[
    "/etc/ssl",
    "/etc/pki",
    "/usr/lib/ssl",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
];

/// A port on loopback that nothing listens on (bound, then released).
fn closed_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `program` with `args` and the function's environment; the runtime API at `port`.
fn run(program: &str, args: &[&str], env: &[(String, String)], port: u16) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .env_clear()
        .envs(lambda_variables(&format!("127.0.0.1:{port}")))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {program} (is it installed?)"))?;
    // The function exits with an error (the runtime API is closed); the tool itself must have run.
    ensure!(status.code().is_some(), "{program} was killed: {status}");
    Ok(())
}

/// What `strace` saw the function do: the files it tried to open, and whether it called the
/// runtime API at `port`.
struct Trace {
    opened: Vec<String>,
    reached_runtime: bool,
}

fn trace(binary: &Path, env: &[(String, String)]) -> Result<Trace> {
    let out = tempfile::NamedTempFile::new()?;
    let port = closed_port()?;
    let out_path = out.path().to_string_lossy().into_owned();
    run(
        "strace",
        &[
            "-f",
            "-qq",
            "-e",
            "trace=open,openat,openat2,connect",
            "-o",
            &out_path,
            &binary.to_string_lossy(),
        ],
        env,
        port,
    )?;
    let text = std::fs::read_to_string(out.path())?;
    let opened = text
        .lines()
        .filter(|l| l.contains(" open(") || l.contains(" openat(") || l.contains(" openat2("))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    let reached_runtime = text
        .lines()
        .any(|l| l.contains(" connect(") && l.contains(&format!("sin_port=htons({port})")));
    Ok(Trace {
        opened,
        reached_runtime,
    })
}

/// The instructions the function ran, init to exit, under callgrind.
fn instructions(binary: &Path, env: &[(String, String)]) -> Result<u64> {
    let out = tempfile::NamedTempFile::new()?;
    let out_file = format!("--callgrind-out-file={}", out.path().display());
    run(
        "valgrind",
        &[
            "-q",
            "--tool=callgrind",
            &out_file,
            &binary.to_string_lossy(),
        ],
        env,
        closed_port()?,
    )?;
    let text = std::fs::read_to_string(out.path())?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .context("callgrind wrote no totals")
}

#[tokio::test]
async fn no_function_reads_a_certificate_store_at_init() {
    let aws = localstack().await.unwrap();
    let lambda = aws_sdk_lambda::Client::new(&aws);
    let lambda_layout = lambda_certificate_layout().unwrap();
    // Every path of either layout: the host's store, and the bundle and folder Lambda's names.
    let store_paths: Vec<&str> = STORE_PATHS
        .iter()
        .copied()
        .chain(lambda_layout.iter().map(|(_, path)| path.as_str()))
        .collect();
    let mut failures = Vec::new();
    for name in function_names().unwrap() {
        let binary = debug_binary(&name).unwrap();
        let deployed = deployed_env(&lambda, &name).await.unwrap();
        for (layout, extra) in [("this host's", &Vec::new()), ("Lambda's", &lambda_layout)] {
            let env: Vec<_> = deployed.iter().chain(extra).cloned().collect();
            let trace = trace(&binary, &env).unwrap();
            if !trace.reached_runtime {
                failures.push(format!(
                    "{name} ({layout} store): never called the runtime API; its init failed"
                ));
                continue;
            }
            let read: Vec<&String> = trace
                .opened
                .iter()
                .filter(|p| store_paths.iter().any(|s| p.starts_with(s)))
                .collect();
            if !read.is_empty() {
                failures.push(format!(
                    "{name} ({layout} store) opened {} certificate files at init: {:?}",
                    read.len(),
                    read.iter().take(5).collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn init_stays_under_its_instruction_ceiling() {
    let aws = localstack().await.unwrap();
    let lambda = aws_sdk_lambda::Client::new(&aws);
    let mut report = Vec::new();
    let mut over = Vec::new();
    for &(name, ceiling) in CEILINGS {
        let binary = debug_binary(name).unwrap();
        let env = deployed_env(&lambda, name).await.unwrap();
        let trace = trace(&binary, &env).unwrap();
        assert!(
            trace.reached_runtime,
            "{name} never called the runtime API: its init failed"
        );
        let count = instructions(&binary, &env).unwrap();
        report.push(format!("{name}: {count} instructions (ceiling {ceiling})"));
        if count > ceiling {
            over.push(format!("{name}: {count} > {ceiling}"));
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        over.is_empty(),
        "init over its ceiling:\n{}\n(all: {})",
        over.join("\n"),
        report.join("; ")
    );
}
