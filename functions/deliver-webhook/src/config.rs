//! What the function is told: the subscriptions with their endpoints and secrets, the retry policy,
//! and the HTTP client deliveries go out on.

use std::collections::HashMap;
use std::time::Duration;

use busline::config::{ConfigError, Env};
use busline::retry::Backoff;
use busline::signature::SigningKey;
use serde::Deserialize;

use crate::circuit::Policy;
use crate::endpoints;

/// One subscriber endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    /// A name for logs and the circuit (defaults to the URL's host).
    #[serde(default)]
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// The Secrets Manager id of the endpoint's own Standard Webhooks secret (`whsec_...`).
    pub secret: String,
}

/// What the sink is told.
#[derive(Clone, Debug)]
pub struct Config {
    /// Subscribers per event type.
    pub subscriptions: HashMap<String, Vec<Subscription>>,
    /// Each request's timeout, at most.
    pub request_timeout: Duration,
    /// The backoff between attempts of one message.
    pub backoff: Backoff,
    /// When a destination's circuit opens.
    pub circuit: Policy,
    /// How long an event is retried for one endpoint before it is dead-lettered
    /// (`RETRY_HORIZON_SECONDS`, default 24 h, as EventBridge API destinations retry).
    pub retry_horizon: Duration,
    /// Whether endpoints may be plain `http` or on local addresses (`ALLOW_LOCAL_ENDPOINTS`,
    /// default false): for local development only ([`endpoints`]).
    pub allow_local_endpoints: bool,
}

impl Config {
    /// Each endpoint's name and the Secrets Manager id of its signing secret, once each.
    pub fn endpoint_secrets(&self) -> Vec<(String, String)> {
        let mut secrets: Vec<(String, String)> = self
            .subscriptions
            .values()
            .flatten()
            .map(|s| (s.name.clone(), s.secret.clone()))
            .collect();
        secrets.sort();
        secrets.dedup();
        secrets
    }

    /// Reads `SUBSCRIPTIONS`, `REQUEST_TIMEOUT_MS` (5000), `RETRY_BASE_SECONDS` (2),
    /// `RETRY_MAX_SECONDS` (900), `CIRCUIT_THRESHOLD` (5), `CIRCUIT_OPEN_SECONDS` (30) and
    /// `RETRY_HORIZON_SECONDS` (86400).
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let raw = env.require("SUBSCRIPTIONS", "subscribers per event type, as JSON")?;
        let invalid = || ConfigError::Invalid {
            name: "SUBSCRIPTIONS",
            value: raw.clone(),
            expected: r#"{"<event type>": [{"name": "...", "url": "http(s)://...", "secret": "<Secrets Manager id>"}]}, one secret per endpoint name"#,
        };
        let allow_local_endpoints: bool = env.parse_or(
            "ALLOW_LOCAL_ENDPOINTS",
            false,
            "true or false: whether endpoints may be plain http or local addresses",
        )?;
        let mut subscriptions: HashMap<String, Vec<Subscription>> =
            serde_json::from_str(&raw).map_err(|_| invalid())?;
        for subscription in subscriptions.values().flatten() {
            if let Some(why) = endpoints::refusal(&subscription.url, allow_local_endpoints) {
                tracing::error!(endpoint = %subscription.name, "{why}");
                return Err(ConfigError::Invalid {
                    name: "SUBSCRIPTIONS",
                    value: raw.clone(),
                    expected: "https endpoints on public hosts (set ALLOW_LOCAL_ENDPOINTS=true for local development)",
                });
            }
        }
        for subscription in subscriptions.values_mut().flatten() {
            let host = subscription
                .url
                .strip_prefix("https://")
                .or_else(|| subscription.url.strip_prefix("http://"))
                .and_then(|rest| rest.split('/').next())
                .filter(|host| !host.is_empty())
                .ok_or_else(invalid)?;
            if subscription.name.is_empty() {
                subscription.name = host.to_owned();
            }
            if subscription.secret.trim().is_empty() {
                return Err(invalid());
            }
        }
        // An endpoint name is one endpoint: its URL and secret are the same wherever it appears.
        let all: Vec<&Subscription> = subscriptions.values().flatten().collect();
        for (i, a) in all.iter().enumerate() {
            if all
                .iter()
                .take(i)
                .any(|b| b.name == a.name && (b.url != a.url || b.secret != a.secret))
            {
                return Err(invalid());
            }
        }
        let seconds = |name, default, expected| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(env.parse_or(name, default, expected)?))
        };
        Ok(Self {
            subscriptions,
            request_timeout: Duration::from_millis(env.parse_or(
                "REQUEST_TIMEOUT_MS",
                5000,
                "milliseconds a request may take",
            )?),
            backoff: Backoff {
                max_attempts: u32::MAX,
                base: seconds("RETRY_BASE_SECONDS", 2, "seconds before the first retry")?,
                max_delay: seconds(
                    "RETRY_MAX_SECONDS",
                    900,
                    "the longest wait between attempts",
                )?,
            },
            circuit: Policy {
                threshold: env.parse_or(
                    "CIRCUIT_THRESHOLD",
                    5,
                    "failures in a row that open a circuit",
                )?,
                open_for: seconds("CIRCUIT_OPEN_SECONDS", 30, "seconds a circuit stays open")?,
            },
            allow_local_endpoints,
            retry_horizon: seconds(
                "RETRY_HORIZON_SECONDS",
                24 * 3600,
                "seconds an event is retried for one endpoint",
            )?,
        })
    }
}

/// The HTTP client deliveries go out on: it never follows a redirect (a `3xx` is an answer; see the
/// module's notes), sends no `Referer`, and unless `allow_local` connects to public addresses only
/// ([`endpoints::PublicOnly`]). It trusts what the process's TLS configuration trusts
/// ([`busline::tls`]: the roots compiled in unless `BUSLINE_TLS_ROOTS=native`), and fails when that
/// configuration does, or when reqwest does not take it (a rustls of another version than busline's).
pub fn http_client(
    allow_local: bool,
) -> Result<reqwest::Client, Box<dyn std::error::Error + Send + Sync>> {
    let tls = busline::tls::client_config()?;
    let builder = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .redirect(reqwest::redirect::Policy::none())
        .referer(false);
    let builder = if allow_local {
        builder
    } else {
        builder.dns_resolver(endpoints::public_only())
    };
    Ok(builder.build()?)
}

/// Reads every endpoint's Standard Webhooks secret from Secrets Manager in one round trip
/// (`BatchGetSecretValue`: each read sits on the cold-start path), failing with the endpoint and
/// secret that are wrong.
pub async fn fetch_keys(
    client: &aws_sdk_secretsmanager::Client,
    config: &Config,
) -> Result<HashMap<String, SigningKey>, Box<dyn std::error::Error + Send + Sync>> {
    let endpoints = config.endpoint_secrets();
    let ids: Vec<&str> = endpoints.iter().map(|(_, id)| id.as_str()).collect();
    let secrets = busline::aws::secret_strings(client, &ids).await.map_err(|e| {
        let failed = match &e {
            busline::aws::SecretError::Unreadable { secret_id, .. }
            | busline::aws::SecretError::Empty { secret_id } => secret_id.clone(),
        };
        let endpoint = endpoints
            .iter()
            .find(|(_, id)| *id == failed)
            .map_or_else(|| "every endpoint".to_owned(), |(name, _)| format!("endpoint {name}"));
        format!("could not read the signing secret {failed} of {endpoint}; check that it exists and that the function may read it: {e}")
    })?;
    endpoints
        .iter()
        .zip(secrets)
        .map(|((name, secret_id), secret)| {
            let key = busline::signature::Scheme::StandardWebhooks
                .key(&secret)
                .map_err(|e| format!("the signing secret {secret_id} of endpoint {name} is not a Standard Webhooks secret: {e}"))?;
            Ok((name.clone(), key))
        })
        .collect::<Result<_, String>>()
        .map_err(Into::into)
}
