//! The AWS SDK's HTTP client: hyper over rustls with the process's one TLS configuration
//! ([`crate::tls::client_config`]), in place of the SDK's default client, which reads the system's
//! certificate store when the SDK configuration is loaded.
//!
//! What it keeps of the default client: plain `http://` as well as `https://` (LocalStack), a
//! connection pool whose idle connections close after [`POOL_IDLE_TIMEOUT`], the connect and read
//! timeouts the SDK's configuration asks for, and the SDK's view of what went wrong, which decides
//! what it retries: a connection that could not be made, was closed or was cut off is `io` (retried),
//! a timeout is `timeout` (retried), a request the client refused is `user` (not retried).
//! HTTP/1.1 only: AWS's JSON and query APIs answer on it. No proxy: Lambda has none.

use std::error::Error as StdError;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// How long an idle pooled connection is kept (the SDK's default client keeps them 90 s too).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The timeouts one connector applies; the SDK asks for a connector per set it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timeouts {
    connect: Option<Duration>,
    read: Option<Duration>,
}

impl Timeouts {
    fn of(settings: &HttpConnectorSettings) -> Self {
        Self {
            connect: settings.connect_timeout(),
            read: settings.read_timeout(),
        }
    }
}

/// An HTTP client for the SDK (`aws_config::ConfigLoader::http_client`) that trusts what `tls`
/// trusts. Nothing is connected until the first request; a connector is built per set of timeouts
/// the SDK asks for (in practice one), and kept.
pub fn http_client(tls: Arc<rustls::ClientConfig>) -> SharedHttpClient {
    let connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>> = Mutex::new(Vec::new());
    http_client_fn(move |settings, _components| {
        let timeouts = Timeouts::of(settings);
        // A panic while holding the lock leaves the list whole: a push is the only change.
        let mut connectors = connectors.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, connector)) = connectors.iter().find(|(t, _)| *t == timeouts) {
            return connector.clone();
        }
        let connector = SharedHttpConnector::new(Connector::new(&tls, timeouts));
        connectors.push((timeouts, connector.clone()));
        connector
    })
}

/// One pool of connections, with its timeouts.
#[derive(Debug, Clone)]
struct Connector {
    client: Client<hyper_rustls::HttpsConnector<TcpConnector>, SdkBody>,
    read_timeout: Option<Duration>,
}

impl Connector {
    fn new(tls: &rustls::ClientConfig, timeouts: Timeouts) -> Self {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(timeouts.connect);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            // The pool needs a timer for its idle timeout to be enforced.
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        Self {
            client,
            read_timeout: timeouts.read,
        }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let response = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                None => response.await,
                Some(limit) => tokio::time::timeout(limit, response)
                    .await
                    .map_err(|_| ConnectorError::timeout(Box::new(ReadTimeout(limit))))?,
            }
            .map_err(connector_error)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// No response within the read timeout the SDK set.
#[derive(Debug, thiserror::Error)]
#[error("no response within the read timeout of {0:?}")]
struct ReadTimeout(Duration);

/// What the SDK should make of a failed request: the classification its own client makes.
fn connector_error(error: hyper_util::client::legacy::Error) -> ConnectorError {
    let has_io = find::<std::io::Error>(&error).is_some();
    if error.is_connect() {
        // Refused, unreachable, not resolved, timed out or a failed handshake: before the request.
        return ConnectorError::io(error.into());
    }
    if let Some(hyper_error) = find::<hyper::Error>(&error) {
        if hyper_error.is_timeout() {
            return ConnectorError::timeout(error.into());
        }
        if hyper_error.is_user() {
            return ConnectorError::user(error.into());
        }
        if hyper_error.is_closed() || hyper_error.is_canceled() || has_io {
            return ConnectorError::io(error.into());
        }
        if hyper_error.is_incomplete_message() {
            // The connection closed before the whole answer came: a pooled connection the server
            // had dropped; worth another try.
            return ConnectorError::other(error.into(), Some(ErrorKind::TransientError));
        }
    }
    if has_io {
        return ConnectorError::io(error.into());
    }
    ConnectorError::other(error.into(), None)
}

/// The first error of type `E` in `error`'s chain.
fn find<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<E>() {
            return Some(found);
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::tls::{Roots, build_client_config};

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-answered: yes\r\n\r\n{}";

    fn connector(tls: &rustls::ClientConfig, read: Option<Duration>) -> Connector {
        let timeouts = Timeouts {
            connect: Some(Duration::from_secs(2)),
            read,
        };
        Connector::new(tls, timeouts)
    }

    fn compiled() -> rustls::ClientConfig {
        build_client_config(Roots::Compiled).unwrap()
    }

    async fn get(connector: &Connector, url: &str) -> Result<HttpResponse, ConnectorError> {
        connector.call(HttpRequest::get(url).unwrap()).await
    }

    /// Reads a request's head, then answers `answer` (nothing: closes at once).
    async fn answer_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        mut stream: S,
        answer: &[u8],
    ) {
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buffer[..n]),
            }
        }
        let _ = stream.write_all(answer).await;
        let _ = stream.shutdown().await;
    }

    #[tokio::test]
    async fn a_plain_http_endpoint_answers_as_localstack_does() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            answer_on(stream, ANSWER).await;
        });
        let response = get(&connector(&compiled(), None), &url).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers().get("x-answered"), Some("yes"));
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_io_error_which_the_sdk_retries() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let error = get(&connector(&compiled(), None), &url).await.unwrap_err();
        assert!(error.is_io(), "{error:?}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_timeout_after_the_read_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
        let started = std::time::Instant::now();
        let error = get(
            &connector(&compiled(), Some(Duration::from_millis(200))),
            &url,
        )
        .await
        .unwrap_err();
        assert!(error.is_timeout(), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(30));
        held.abort();
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_retryable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            answer_on(stream, b"").await;
        });
        let error = get(&connector(&compiled(), None), &url).await.unwrap_err();
        assert!(
            error.is_io() || error.as_other() == Some(ErrorKind::TransientError),
            "{error:?}"
        );
    }
}
