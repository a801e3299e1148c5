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
