//! AWS SDK configuration, loaded once per cold start.
//!
//! `aws-config` honours `AWS_ENDPOINT_URL` (and the per-service `AWS_ENDPOINT_URL_<SERVICE>`), so the
//! same binary talks to AWS in a deployed stack and to LocalStack on a laptop with no code change.
//! Build every client from the one [`aws_config::SdkConfig`] this returns; clients are cheap to clone
//! and share a connection pool.
//!
//! The SDK's requests go out on busline's own HTTP client ([`http_client`]), which trusts what
//! [`crate::tls`] configures: the roots compiled into the binary unless `BUSLINE_TLS_ROOTS=native`.
//! The SDK crates are built without an HTTPS client of their own, so there is no second TLS stack
//! and no certificate store read at start.

mod https;

pub use https::{POOL_IDLE_TIMEOUT, http_client};

/// Loads the SDK configuration from the environment: region, credentials, endpoint overrides, on
/// [`http_client`] with the process's TLS configuration. Fails only when that configuration does
/// (an unknown `BUSLINE_TLS_ROOTS`, or `native` with an empty store).
///
/// Where the environment holds the credentials, as Lambda's does, they are read from it and the
/// default chain is not built: the chain would pick the same ones first, but building it builds an
/// STS client for its web-identity provider, a fifth of a function's init. Elsewhere (a profile, SSO,
/// a container's role) the default chain finds them.
pub async fn load_config() -> Result<aws_config::SdkConfig, crate::tls::TlsError> {
    let tls = crate::tls::client_config()?;
    let loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client(tls));
    let loader = if credentials_in(&crate::config::ProcessEnv) {
        loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        )
    } else {
        loader
    };
    Ok(loader.load().await)
}

/// Whether `env` holds an access key and its secret (`AWS_SESSION_TOKEN` goes with them if set).
fn credentials_in(env: &impl crate::config::Env) -> bool {
    ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .into_iter()
        .all(|name| env.get(name).is_some_and(|value| !value.trim().is_empty()))
}

/// Why a secret could not be read.
#[cfg(feature = "secrets")]
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager refused or could not be reached.
    #[error("secret {secret_id} could not be read")]
    Unreadable {
        /// The secret's name or ARN, as passed to [`secret_string`].
        secret_id: String,
        /// Secrets Manager's error, or why the value is not a usable string.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The secret has no string value (or only whitespace).
    #[error("secret {secret_id} has no string value")]
    Empty {
        /// The secret's name or ARN, as passed to [`secret_string`].
        secret_id: String,
    },
}

/// A secret's string value, trimmed (feature `secrets`): for signing secrets read once at cold
/// start.
#[cfg(feature = "secrets")]
pub async fn secret_string(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<String, SecretError> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| SecretError::Unreadable {
            secret_id: secret_id.to_owned(),
            source: Box::new(e),
        })?;
    output
        .secret_string()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| SecretError::Empty {
            secret_id: secret_id.to_owned(),
        })
}

/// The string values of `secret_ids`, trimmed, in their order (feature `secrets`): for a function
/// that reads several signing secrets at cold start. One `BatchGetSecretValue` round trip per 20
/// secrets instead of one `GetSecretValue` each (the role needs `secretsmanager:BatchGetSecretValue`,
/// which takes no resource, beside `GetSecretValue` on each secret). Fails on the first secret, in
/// the given order, that is missing, unreadable or empty.
#[cfg(feature = "secrets")]
pub async fn secret_strings(
    client: &aws_sdk_secretsmanager::Client,
    secret_ids: &[&str],
) -> Result<Vec<String>, SecretError> {
    let mut found = Vec::with_capacity(secret_ids.len());
    let mut refused = Vec::new();
    for chunk in secret_ids.chunks(BATCH_GET_SECRETS) {
        let mut next_token = None;
        loop {
            let output = client
                .batch_get_secret_value()
                .set_secret_id_list(Some(chunk.iter().map(|id| (*id).to_owned()).collect()))
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| SecretError::Unreadable {
                    secret_id: chunk.join(", "),
                    source: Box::new(e),
                })?;
            found.extend(output.secret_values().iter().cloned());
            refused.extend(output.errors().iter().cloned());
            match output.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => break,
            }
        }
    }
    secret_ids
        .iter()
        .map(|id| {
            let Some(entry) = found.iter().find(|e| names(id, e.arn(), e.name())) else {
                let why = refused
                    .iter()
                    .find(|e| e.secret_id() == Some(id))
                    .map_or_else(
                        || "Secrets Manager's answer did not hold it".to_owned(),
                        |e| {
                            format!(
                                "{}: {}",
                                e.error_code().unwrap_or("error"),
                                e.message().unwrap_or_default()
                            )
                        },
                    );
                return Err(SecretError::Unreadable {
                    secret_id: (*id).to_owned(),
                    source: why.into(),
                });
            };
            entry
                .secret_string()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| SecretError::Empty {
                    secret_id: (*id).to_owned(),
                })
        })
        .collect()
}

/// The most secrets one `BatchGetSecretValue` call takes by id.
#[cfg(feature = "secrets")]
const BATCH_GET_SECRETS: usize = 20;

/// Whether `id`, as a caller names a secret (its name, its ARN, or its ARN without the six random
/// characters Secrets Manager appends), is the secret with `arn` and `name`.
#[cfg(feature = "secrets")]
fn names(id: &str, arn: Option<&str>, name: Option<&str>) -> bool {
    Some(id) == arn
        || Some(id) == name
        || (id.starts_with("arn:")
            && arn.is_some_and(|arn| {
                arn.strip_prefix(id)
                    .is_some_and(|rest| rest.len() == 7 && rest.starts_with('-'))
            }))
}

#[cfg(test)]
mod tests {
    use super::credentials_in;

    #[cfg(feature = "secrets")]
    #[test]
    fn a_secret_is_named_by_its_name_its_arn_or_its_arn_without_the_suffix() {
        let arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:busline/shop-AbC123";
        let named = |id| super::names(id, Some(arn), Some("busline/shop"));
        assert!(named(arn));
        assert!(named("busline/shop"));
        assert!(named(
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:busline/shop"
        ));
        assert!(!named(
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:busline/sho"
        ));
        assert!(!named("busline/shop-AbC123"));
        assert!(!named("busline/crm"));
    }

    #[test]
    fn credentials_come_from_the_environment_only_when_both_halves_are_there() {
        let lambda = [
            ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ];
        assert!(credentials_in(&lambda));
        assert!(!credentials_in(&[("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE")]));
        assert!(!credentials_in(&[
            ("AWS_ACCESS_KEY_ID", " "),
            ("AWS_SECRET_ACCESS_KEY", "secret")
        ]));
        assert!(!credentials_in(&[("AWS_PROFILE", "dev")]));
    }
}
