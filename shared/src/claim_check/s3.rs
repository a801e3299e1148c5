//! The claim-check store on S3 (feature `claim-check`): one object per checked-in payload.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use super::{ClaimCheckError, PayloadStore};

/// Objects in `bucket`, referenced as `s3://<bucket>/<key>`.
#[derive(Clone, Debug)]
pub struct S3PayloadStore {
    client: Client,
    bucket: String,
}

impl S3PayloadStore {
    /// The store on `bucket`. With an endpoint override (LocalStack), requests are path-style, as
    /// a bucket's own host name would not resolve there.
    pub fn new(config: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Self {
            client: Client::from_conf(s3),
            bucket: bucket.into(),
        }
    }
}

fn failure<E>(
    e: aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> ClaimCheckError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    crate::sdk_error::sort(
        e,
        |e| ClaimCheckError::Refused(crate::error::with_causes(&*e)),
        ClaimCheckError::Unavailable,
    )
}

impl PayloadStore for S3PayloadStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<String, ClaimCheckError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(failure)?;
        Ok(format!("s3://{}/{key}", self.bucket))
    }

    async fn get(&self, dataref: &str) -> Result<Vec<u8>, ClaimCheckError> {
        let (bucket, key) = dataref
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(|| {
                ClaimCheckError::Refused(format!("{dataref} is not an s3:// reference"))
            })?;
        if bucket != self.bucket {
            return Err(ClaimCheckError::Refused(format!(
                "{dataref} is not in this stack's claim-check bucket {}",
                self.bucket
            )));
        }
        let object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(failure)?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| ClaimCheckError::Unavailable(Box::new(e)))?;
        Ok(bytes.into_bytes().to_vec())
    }
}
