//! Code busline did not write, as the other side of its signatures: the official `standardwebhooks`
//! package and Stripe's own library, both from PyPI, in the venv `make tools` builds
//! (`.state/tools/interop`). A missing venv fails the test with the command that builds it.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The interop venv's Python.
pub fn python() -> Result<std::path::PathBuf> {
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.state/tools/interop/bin/python");
    if !python.exists() {
        bail!(
            "{} is missing: `make tools` installs the official standardwebhooks and stripe packages",
            python.display()
        );
    }
    Ok(python)
}

/// Runs `script` with `input` as JSON on its standard input, and returns what it prints as JSON.
fn run(script: &str, input: &Value) -> Result<Value> {
    let mut child = Command::new(python()?)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start the interop Python")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "the interop script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("the interop script's answer")
}

const VERIFY: &str = r#"
import json, sys
from standardwebhooks import Webhook, WebhookVerificationError
args = json.load(sys.stdin)
try:
    Webhook(args["secret"]).verify(args["body"], args["headers"])
    print(json.dumps({"ok": True}))
except WebhookVerificationError as e:
    print(json.dumps({"ok": False, "error": str(e)}))
"#;

const SIGN: &str = r#"
import json, sys
from datetime import datetime, timezone
from standardwebhooks import Webhook
args = json.load(sys.stdin)
at = datetime.fromtimestamp(args["timestamp"], tz=timezone.utc)
print(json.dumps(Webhook(args["secret"]).sign(args["id"], at, args["body"])))
"#;

const STRIPE_VERIFY: &str = r#"
import json, sys
import stripe
args = json.load(sys.stdin)
try:
    stripe.WebhookSignature.verify_header(args["body"], args["header"], args["secret"], tolerance=300)
    print(json.dumps({"ok": True}))
except stripe.SignatureVerificationError as e:
    print(json.dumps({"ok": False, "error": str(e)}))
"#;

/// Whether the official `standardwebhooks` package, as a receiver, accepts `body` with `headers`
/// (any case) signed with `secret`; its refusal is the error.
pub fn standard_webhooks_verifies(
    secret: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<()> {
    let headers: serde_json::Map<String, Value> =
        headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let body = std::str::from_utf8(body).context("a text body")?;
    let answer = run(
        VERIFY,
        &json!({"secret": secret, "headers": headers, "body": body}),
    )?;
    match answer["ok"].as_bool() {
        Some(true) => Ok(()),
        _ => bail!("standardwebhooks refused it: {}", answer["error"]),
    }
}

/// The `webhook-signature` the official `standardwebhooks` package makes for message `id` at
/// `timestamp`.
pub fn standard_webhooks_signs(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &str,
) -> Result<String> {
    let answer = run(
        SIGN,
        &json!({"secret": secret, "id": id, "timestamp": timestamp, "body": body}),
    )?;
    answer
        .as_str()
        .map(str::to_owned)
        .context("a signature string")
}

/// Whether Stripe's own library accepts `header` (`Stripe-Signature`) on `body` with `secret`.
pub fn stripe_verifies(secret: &str, header: &str, body: &str) -> Result<()> {
    let answer = run(
        STRIPE_VERIFY,
        &json!({"secret": secret, "header": header, "body": body}),
    )?;
    match answer["ok"].as_bool() {
        Some(true) => Ok(()),
        _ => bail!("stripe refused it: {}", answer["error"]),
    }
}
