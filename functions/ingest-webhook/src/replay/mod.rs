//! Single-use signatures, for sources on a scheme that does not sign the delivery id (busline-v1).
//!
//! A busline-v1 signature covers `<t>.<body>` and not `X-Delivery-Id`, the idempotency key. Left
//! alone, a captured request could be sent again within the tolerance window under a fresh delivery
//! id and published a second time. So each accepted signature is remembered, with the delivery id it
//! came with, until its timestamp leaves the window: the same signature under the same id goes on to
//! deduplication (a sender's retry of the very same request), and under another id it is refused.
//!
//! On DynamoDB that is one conditional put ([`DynamoDbReplayGuard`]); [`InMemoryReplayGuard`] is the
//! twin for fast tests, and [`contract`] holds the tests both must pass.

mod dynamodb;
#[cfg(any(test, feature = "test-util"))]
mod memory;

#[cfg(any(test, feature = "test-util"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code, which fails by panicking"
)]
pub mod contract;

use busline::signature::SingleUse;

pub use dynamodb::DynamoDbReplayGuard;
#[cfg(any(test, feature = "test-util"))]
pub use memory::InMemoryReplayGuard;

/// Why a signature was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The signature was admitted before for another delivery id: a replay.
    #[error("this signature was already used for another delivery")]
    Replayed,
    /// The store could not be reached. Retryable.
    #[error("the signature store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Remembers which delivery id each single-use signature was first accepted with.
pub trait ReplayGuard: Send + Sync {
    /// Admits `signature` for `delivery_id`: `Ok` the first time, and again for the same id;
    /// [`ReplayError::Replayed`] for any other id until the signature expires.
    fn admit(
        &self,
        signature: &SingleUse,
        delivery_id: &str,
    ) -> impl Future<Output = Result<(), ReplayError>> + Send;
}
