//! What the SDK's client from `busline::aws::load_config` trusts, against a real TLS server whose
//! certificate a private CA signed: the roots compiled in refuse it, and `BUSLINE_TLS_ROOTS=native`
//! with the CA in `SSL_CERT_FILE` trusts it, as a deployment behind a private CA would set it.
//!
//! The TLS configuration is read from the environment once per process, so each case runs the
//! ignored `client` test below (its reason says so) in a child process of this binary, with its own
//! environment.
#![allow(
    clippy::unwrap_used,
    reason = "the helpers are the tests' own: a failure panics and fails the test, as in the tests"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The child's directory: the server's certificate and key, and what the child should see.
const CHILD_DIR: &str = "BUSLINE_TLS_TEST_DIR";

/// SQS's answer to `ListQueues` (AWS JSON 1.0).
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: 16\r\n\r\n{\"QueueUrls\":[]}";

/// A private CA, and a certificate for `localhost` it signed, written to a fresh directory:
/// `ca.pem`, `server.der`, `server.key.der`.
fn private_ca() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("busline-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.der"), server.der()).unwrap();
    std::fs::write(dir.join("server.key.der"), server_key.serialize_der()).unwrap();
    dir
}

/// Runs the `client` test in a child with `env`, and says whether it passed, with its output.
fn child(dir: &Path, expect: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "client", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir)
        .env("BUSLINE_TLS_TEST_EXPECT", expect)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("BUSLINE_TLS_ROOTS")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // `--exact client` that matched nothing would pass too: check that it ran.
    assert!(
        text.contains("1 passed") || text.contains("1 failed"),
        "{text}"
    );
    (output.status.success(), text)
}

#[test]
fn the_compiled_roots_refuse_a_private_ca() {
    let dir = private_ca();
    let (passed, output) = child(&dir, "refused", &[]);
    assert!(passed, "{output}");
}

#[test]
fn native_roots_trust_the_private_ca_in_ssl_cert_file() {
    let dir = private_ca();
    let ca = dir.join("ca.pem");
    let empty = dir.join("empty");
    let native = [
        ("BUSLINE_TLS_ROOTS", "native"),
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
        ("SSL_CERT_DIR", empty.to_str().unwrap()),
    ];
    let (passed, output) = child(&dir, "trusted", &native);
    assert!(passed, "{output}");
    // The child's check can fail: told to expect a refusal, the same set-up fails it.
    let (passed, output) = child(&dir, "refused", &native);
    assert!(!passed, "{output}");
}

#[test]
fn native_roots_from_an_empty_store_fail_the_start_with_what_to_set() {
    let dir = private_ca();
    let empty = dir.join("empty");
    let missing = empty.join("none.pem");
    let nothing = [
        ("BUSLINE_TLS_ROOTS", "native"),
        ("SSL_CERT_DIR", empty.to_str().unwrap()),
        ("SSL_CERT_FILE", missing.to_str().unwrap()),
    ];
    let (passed, output) = child(&dir, "no-roots", &nothing);
    assert!(passed, "{output}");
}

/// The child: serves `ListQueues` over TLS with the directory's certificate, and calls it through
/// the SDK configured by `busline::aws::load_config`.
#[tokio::test]
#[ignore = "run by the tests above in a child process, with its own environment"]
async fn client() {
    let dir = PathBuf::from(std::env::var(CHILD_DIR).unwrap());
    let expect = std::env::var("BUSLINE_TLS_TEST_EXPECT").unwrap();
    let config = match busline::aws::load_config().await {
        Ok(config) => config,
        Err(error) => {
            let message = error.to_string();
            assert_eq!(expect, "no-roots", "{message}");
            assert!(message.contains("SSL_CERT_FILE"), "{message}");
            return;
        }
    };
    assert_ne!(expect, "no-roots", "the start should have failed");

    let certificate =
        rustls::pki_types::CertificateDer::from(std::fs::read(dir.join("server.der")).unwrap());
    let key = rustls::pki_types::PrivateKeyDer::try_from(
        std::fs::read(dir.join("server.key.der")).unwrap(),
    )
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certificate], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = stream.write_all(ANSWER).await;
                let _ = stream.shutdown().await;
            });
        }
    });

    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&config)
            .endpoint_url(&endpoint)
            .build(),
    );
    let result = sqs.list_queues().send().await;
    match expect.as_str() {
        "trusted" => {
            result.unwrap();
        }
        "refused" => {
            let error = format!("{:?}", result.unwrap_err());
            assert!(error.contains("UnknownIssuer"), "{error}");
        }
        other => panic!("unknown expectation {other}"),
    }
}
