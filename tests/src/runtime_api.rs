//! A function's release binary driven as Lambda drives it, over a Runtime API served in this
//! process: spawn it, time its init to the first `GET /invocation/next`, hand it invocations, read
//! its answers and its peak memory. The cold-start benchmark and the release-binary tests share it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::DeployedStack;

/// Where `cargo build --release` puts the binaries (`CARGO_TARGET_DIR` honoured).
pub fn release_dir() -> PathBuf {
    crate::target_dir().join("release")
}

/// Release binary `name` built for arm64, what SAM ships (`make release-arm64`, cargo-lambda), if
/// it has been built: cargo-lambda leaves it as `target/lambda/<name>/bootstrap` (Cargo's own
/// `aarch64-unknown-linux-gnu/release/<name>` is looked at too). Only an AArch64 ELF counts, so an
/// x86_64 `cargo lambda build` in the same folder is not taken for one.
pub fn arm64_release_binary(name: &str) -> Option<PathBuf> {
    let target = crate::target_dir();
    [
        target.join("lambda").join(name).join("bootstrap"),
        target.join("aarch64-unknown-linux-gnu/release").join(name),
    ]
    .into_iter()
    .find(|binary| is_aarch64_elf(binary))
}

/// Whether `path` is an ELF file for AArch64 (`e_machine` 183, little-endian, at byte 18).
fn is_aarch64_elf(path: &Path) -> bool {
    const EM_AARCH64: u16 = 183;
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut header))
        .is_ok_and(|()| {
            header.starts_with(b"\x7fELF")
                && u16::from_le_bytes([header[18], header[19]]) == EM_AARCH64
        })
}

/// Every function in `functions/`, by name, sorted: one package and one binary each.
pub fn function_names() -> Result<Vec<String>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");
    let mut names = std::fs::read_dir(dir)
        .with_context(|| format!("reading {dir}"))?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// Release binary `name`, failing with the command that builds it when it is missing.
pub fn release_binary(name: &str) -> Result<PathBuf> {
    built(release_dir().join(name), "make release")
}

/// Debug binary `name` (what `make test` deploys), failing with the command that builds it when it
/// is missing.
pub fn debug_binary(name: &str) -> Result<PathBuf> {
    built(crate::target_dir().join("debug").join(name), "make build")
}

fn built(binary: PathBuf, command: &str) -> Result<PathBuf> {
    anyhow::ensure!(
        binary.is_file(),
        "{} is not built: run `{command}`",
        binary.display()
    );
    Ok(binary)
}

/// The variables Lambda gives every function process, with its Runtime API at `runtime_api`
/// (`host:port`).
pub fn lambda_variables(runtime_api: &str) -> [(&'static str, String); 5] {
    [
        ("PATH", "/usr/bin:/bin".to_owned()),
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
    ]
}

/// The certificate store laid out as on Lambda's `provided.al2023`: `SSL_CERT_FILE` naming one CA
/// bundle (this host's), `SSL_CERT_DIR` an empty folder, nothing else.
pub fn lambda_certificate_layout() -> Result<Vec<(String, String)>> {
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    anyhow::ensure!(
        bundle.is_file(),
        "{} is missing: the Lambda layout needs a CA bundle (apt-get install ca-certificates)",
        bundle.display()
    );
    let empty = std::env::temp_dir().join("busline-bench-empty-cert-dir");
    std::fs::create_dir_all(&empty)?;
    Ok(vec![
        ("SSL_CERT_FILE".to_owned(), bundle.display().to_string()),
        ("SSL_CERT_DIR".to_owned(), empty.display().to_string()),
    ])
}

/// The environment the deployed stack gives function `name` (read back from LocalStack's Lambda),
/// and the SDK's for LocalStack.
pub async fn deployed_env(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
) -> Result<Vec<(String, String)>> {
    let config = lambda
        .get_function_configuration()
        .function_name(format!("{}-{name}", DeployedStack::NAME))
        .send()
        .await
        .with_context(|| format!("{name} is not deployed: run `make deploy-local`"))?;
    let mut env: Vec<(String, String)> = config
        .environment()
        .and_then(|e| e.variables())
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| crate::DEFAULT_ENDPOINT.into());
    env.extend([
        ("AWS_ENDPOINT_URL".into(), endpoint),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]);
    Ok(env)
}

/// A function process and the Runtime API it talks to.
pub struct FunctionProcess {
    child: tokio::process::Child,
    pid: u32,
    api: RuntimeApiStub,
    /// Where to hand over the next invocation: the process's pending `/next`.
    pending_next: Option<oneshot::Sender<Vec<u8>>>,
    invocations: usize,
}

/// One invocation's result.
#[derive(Debug)]
pub struct Invoked {
    /// The answer, or the error's body (`errorType`, `errorMessage`).
    pub answer: Value,
    /// The `errorType` the function reported, if it failed.
    pub error: Option<String>,
    /// Time from handing the event over to the answer.
    pub took: Duration,
}

impl FunctionProcess {
    /// Spawns `binary` with only `env` (and Lambda's own variables), and waits for its first call:
    /// returns the process and its init time, spawn to the first `/invocation/next`. An init
    /// error (a call to `/init/error`, or an exit) fails, with what the function said.
    pub async fn start(binary: &Path, env: &[(String, String)]) -> Result<(Self, Duration)> {
        let mut api = RuntimeApiStub::start().await?;
        let started = Instant::now();
        let mut child = tokio::process::Command::new(binary)
            .env_clear()
            .envs(lambda_variables(&api.address))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let pid = child.id().context("no pid")?;
        let (path, body, pending_next) = tokio::select! {
            call = api.next() => call?,
            exit = child.wait() => bail!("{} exited during init: {}", binary.display(), exit?),
        };
        let init = started.elapsed();
        if !path.ends_with("/invocation/next") {
            bail!(
                "{}: its first call was {path}, not /invocation/next: {}",
                binary.display(),
                String::from_utf8_lossy(&body)
            );
        }
        let process = Self {
            child,
            pid,
            api,
            pending_next: Some(pending_next),
            invocations: 0,
        };
        Ok((process, init))
    }

    /// Hands `event` over and waits for the answer (a response or an error).
    pub async fn invoke(&mut self, event: &str) -> Result<Invoked> {
        self.invocations += 1;
        let request_id = format!("invocation-{}", self.invocations);
        let pending_next = self
            .pending_next
            .take()
            .context("the process is not waiting for an invocation")?;
        let started = Instant::now();
        let _ = pending_next.send(invocation(&request_id, event));
        let (path, body, answer) = self.api.next().await?;
        let took = started.elapsed();
        let _ = answer.send(ACCEPTED.to_vec());
        let answer: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        let error = (!path.ends_with(&format!("/{request_id}/response"))).then(|| {
            answer["errorType"]
                .as_str()
                .map_or_else(|| format!("{path}?"), str::to_owned)
        });
        let (next, _, pending_next) = self.api.next().await?;
        anyhow::ensure!(
            next.ends_with("/invocation/next"),
            "after answering, the function called {next}"
        );
        self.pending_next = Some(pending_next);
        Ok(Invoked {
            answer,
            error,
            took,
        })
    }

    /// The process's peak resident set so far (`VmHWM`), in KiB.
    pub fn peak_rss_kb(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmHWM")
    }

    /// Stops the process.
    pub async fn kill(mut self) -> Result<()> {
        Ok(self.child.kill().await?)
    }
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

/// A request to the Runtime API: its path, its body, and where to answer it.
type Request = (String, Vec<u8>, oneshot::Sender<Vec<u8>>);

/// A Lambda Runtime API on loopback that hands each request over in arrival order, with a channel
/// to answer it on. The runtime's HTTP client may use any number of connections.
struct RuntimeApiStub {
    address: String,
    requests: mpsc::Receiver<Request>,
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
                    while let Ok((path, body)) = read_request(&mut conn).await {
                        let (answer, answered) = oneshot::channel::<Vec<u8>>();
                        if path.is_empty() || tx.send((path, body, answer)).await.is_err() {
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

    /// The next request.
    async fn next(&mut self) -> Result<Request> {
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
