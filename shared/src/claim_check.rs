//! The claim-check pattern, for payloads too large for the bus.
//!
//! EventBridge takes entries of at most 256 KB. A change to a 400 KB DynamoDB item, with both its
//! images, is larger. Rather than refuse it, [`check_in`] puts the payload in a [`PayloadStore`]
//! (S3, under a key derived from the event's source and id, so a redelivered event overwrites its
//! own object), and the event travels with `data: null` and the CloudEvents `dataref` extension
//! naming the object. [`resolve`] is the consumer's side: an event with a `dataref` gets its payload
//! back, and its size and digest checked, before anything reads it. The bucket keeps objects for a
//! set time (a lifecycle rule in the template), longer than any redelivery or replay takes.

#[cfg(any(test, feature = "test-util"))]
use std::sync::PoisonError;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::envelope::{Envelope, EnvelopeError};
use crate::error::{Classify, ErrorClass};

/// Why a payload could not be checked in or resolved.
#[derive(Debug, thiserror::Error)]
pub enum ClaimCheckError {
    /// The store could not be reached, or failed for now. Retryable.
    #[error("the claim-check store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store refused for good, or the object is gone (past the bucket's lifecycle). Permanent.
    #[error("the claim-check store refused: {0}")]
    Refused(String),
    /// The object is not what the event says it is (size or digest). Permanent.
    #[error("the payload at {dataref} does not match its event: {why}")]
    Mismatch {
        /// The event's `dataref`, such as `s3://<bucket>/<key>`.
        dataref: String,
        /// Why the object fails its receipt: no receipt in `data`, another size or SHA-256 digest,
        /// or bytes that are not JSON.
        why: String,
    },
    /// The envelope cannot travel even without its payload. Permanent.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

impl Classify for ClaimCheckError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable(_) => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "ClaimCheckUnavailable",
            Self::Refused(_) => "ClaimCheckRefused",
            Self::Mismatch { .. } => "ClaimCheckMismatch",
            Self::Envelope(_) => "EventUnpublishable",
        }
    }
}

/// Where checked-in payloads are kept: the port, with [`S3PayloadStore`] (feature `claim-check`)
/// and [`InMemoryPayloadStore`].
pub trait PayloadStore: Send + Sync {
    /// Keeps `bytes` under `key` and answers the reference (`s3://<bucket>/<key>`).
    fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<String, ClaimCheckError>> + Send;

    /// The bytes a reference names.
    fn get(&self, dataref: &str) -> impl Future<Output = Result<Vec<u8>, ClaimCheckError>> + Send;
}

/// What the event says about its checked-in payload, kept in `data` beside the reference.
#[derive(Debug, serde::Deserialize, Serialize)]
struct Receipt {
    bytes: usize,
    sha256: String,
}

/// `envelope` as it can travel: unchanged when it fits one EventBridge entry; otherwise with its
/// payload checked in to `store` and `data` replaced by a receipt (size and digest), `dataref`
/// naming the object.
pub async fn check_in<T: Serialize + Sync, S: PayloadStore>(
    envelope: Envelope<T>,
    store: &S,
) -> Result<Envelope<Value>, ClaimCheckError> {
    let data = serde_json::to_value(&envelope.data).map_err(EnvelopeError::Encode)?;
    let envelope = envelope.map_data(|_| data);
    match envelope.to_eventbridge_entry("size-check") {
        Ok(_) => return Ok(envelope),
        Err(EnvelopeError::TooLarge { .. }) => {}
        Err(other) => return Err(other.into()),
    }
    let bytes = serde_json::to_vec(&envelope.data).map_err(EnvelopeError::Encode)?;
    let receipt = Receipt {
        bytes: bytes.len(),
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    let key = format!(
        "{}/{}",
        envelope.source.replace('/', "_"),
        hex::encode(Sha256::digest(envelope.id.as_bytes()))
    );
    let dataref = store.put(&key, bytes).await?;
    tracing::info!(event_id = %envelope.id, %dataref, bytes = receipt.bytes, "payload checked in: too large for the bus");
    let receipt = serde_json::to_value(&receipt).map_err(EnvelopeError::Encode)?;
    let mut envelope = envelope.map_data(|_| receipt);
    envelope.dataref = Some(dataref);
    envelope.to_eventbridge_entry("size-check")?;
    Ok(envelope)
}

/// `envelope` with its payload: fetched from `store` and checked against its receipt when the event
/// carries a `dataref`, as it is otherwise.
pub async fn resolve<S: PayloadStore>(
    mut envelope: Envelope<Value>,
    store: &S,
) -> Result<Envelope<Value>, ClaimCheckError> {
    let Some(dataref) = envelope.dataref.take() else {
        return Ok(envelope);
    };
    let mismatch = |why: String| ClaimCheckError::Mismatch {
        dataref: dataref.clone(),
        why,
    };
    let receipt: Receipt = serde_json::from_value(envelope.data.clone())
        .map_err(|e| mismatch(format!("the event carries no receipt: {e}")))?;
    let bytes = store.get(&dataref).await?;
    if bytes.len() != receipt.bytes || hex::encode(Sha256::digest(&bytes)) != receipt.sha256 {
        return Err(mismatch(format!(
            "{} bytes where the event says {}, or another digest",
            bytes.len(),
            receipt.bytes
        )));
    }
    envelope.data = serde_json::from_slice(&bytes)
        .map_err(|e| mismatch(format!("the object is not JSON: {e}")))?;
    Ok(envelope)
}

/// Payloads in memory, under `mem://<key>`.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct InMemoryPayloadStore {
    objects: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
}

#[cfg(any(test, feature = "test-util"))]
impl InMemoryPayloadStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces an object's bytes, as a tampered or half-written object would read.
    pub fn corrupt(&self, dataref: &str, bytes: Vec<u8>) {
        self.objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dataref.to_owned(), bytes);
    }
}

#[cfg(any(test, feature = "test-util"))]
impl PayloadStore for InMemoryPayloadStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<String, ClaimCheckError> {
        let dataref = format!("mem://{key}");
        self.objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dataref.clone(), bytes);
        Ok(dataref)
    }

    async fn get(&self, dataref: &str) -> Result<Vec<u8>, ClaimCheckError> {
        self.objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(dataref)
            .cloned()
            .ok_or_else(|| ClaimCheckError::Refused(format!("no object at {dataref}")))
    }
}

#[cfg(feature = "claim-check")]
mod s3;
#[cfg(feature = "claim-check")]
pub use s3::S3PayloadStore;

/// What every [`PayloadStore`] must do, run against the twin here and against S3 on LocalStack.
#[cfg(any(test, feature = "test-util"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code, which fails by panicking"
)]
pub async fn contract<S: PayloadStore>(store: &S) {
    use crate::EventType;
    let big = "x".repeat(300 * 1024);
    let small = Envelope::new(
        "evt-small",
        "busline.test",
        EventType::parse("io.busline.test.changed.v1").unwrap(),
        serde_json::json!({"note": "fits"}),
    );
    let kept = check_in(small.clone(), store).await.unwrap();
    assert_eq!(kept, small, "an event that fits travels as it is");

    let large = Envelope::new(
        format!("evt-large-{}", uuid::Uuid::new_v4().simple()),
        "busline.test",
        EventType::parse("io.busline.test.changed.v1").unwrap(),
        serde_json::json!({"note": big}),
    );
    let travelling = check_in(large.clone(), store).await.unwrap();
    let dataref = travelling.dataref.clone().expect("a dataref");
    assert!(
        travelling.to_eventbridge_entry("bus").is_ok(),
        "it fits now"
    );
    assert_eq!(
        travelling.data["bytes"],
        serde_json::to_vec(&large.data).unwrap().len()
    );
    let again = check_in(large.clone(), store).await.unwrap();
    assert_eq!(
        again.dataref.as_deref(),
        Some(dataref.as_str()),
        "a redelivery reuses its object"
    );

    let resolved = resolve(travelling, store).await.unwrap();
    assert_eq!(resolved.data, large.data);
    assert_eq!(resolved.dataref, None);

    let mut missing = again.clone();
    missing.dataref = Some(format!("{dataref}-gone"));
    let error = resolve(missing, store).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_memory_store_keeps_the_contract() {
        contract(&InMemoryPayloadStore::new()).await;
    }

    #[tokio::test]
    async fn a_tampered_object_is_refused_not_read() {
        let store = InMemoryPayloadStore::new();
        let large = Envelope::new(
            "evt-1",
            "busline.test",
            crate::EventType::parse("io.busline.test.changed.v1").unwrap(),
            serde_json::json!({"note": "y".repeat(300 * 1024)}),
        );
        let travelling = check_in(large, &store).await.unwrap();
        store.corrupt(travelling.dataref.as_deref().unwrap(), b"{}".to_vec());
        let error = resolve(travelling, &store).await.unwrap_err();
        assert!(matches!(error, ClaimCheckError::Mismatch { .. }), "{error}");
    }
}
