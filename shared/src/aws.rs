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

#[cfg(test)]
mod tests {
    use super::credentials_in;

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
