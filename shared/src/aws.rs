//! AWS SDK configuration, loaded once per cold start.
//!
//! `aws-config` honours `AWS_ENDPOINT_URL` (and the per-service `AWS_ENDPOINT_URL_<SERVICE>`), so the
//! same binary talks to AWS in a deployed stack and to LocalStack on a laptop with no code change.
//! Build every client from the one [`aws_config::SdkConfig`] this returns; clients are cheap to clone
//! and share a connection pool.

/// Loads the SDK configuration from the environment: region, credentials, endpoint overrides.
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
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
