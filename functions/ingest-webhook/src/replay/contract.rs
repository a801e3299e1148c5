//! What every [`ReplayGuard`] must do, run against the twin here and against DynamoDB on
//! LocalStack (`tests/tests/ingest_webhook.rs`). Each check uses tokens of its own, so the checks
//! can share a store.

use busline::signature::SingleUse;

use super::{ReplayError, ReplayGuard};

fn signature(tag: &str) -> SingleUse {
    SingleUse {
        token: format!("{tag}-{}", uuid::Uuid::new_v4().simple()),
        expires_at: u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default() + 300,
    }
}

/// A signature is admitted for the delivery id it came with, again for that id, and never for
/// another; other signatures are unaffected.
pub async fn admits_a_signature_for_one_delivery_id_only(guard: &impl ReplayGuard) {
    let first = signature("first");
    guard.admit(&first, "dlv-1").await.unwrap();
    guard
        .admit(&first, "dlv-1")
        .await
        .expect("the same request again goes on to deduplication");
    assert!(matches!(
        guard.admit(&first, "dlv-2").await,
        Err(ReplayError::Replayed)
    ));
    assert!(matches!(
        guard.admit(&first, "dlv-1 ").await,
        Err(ReplayError::Replayed)
    ));
    let other = signature("other");
    guard
        .admit(&other, "dlv-2")
        .await
        .expect("another signature is its own");
}

/// Of many concurrent admissions of one signature under different ids, exactly one wins.
pub async fn one_of_concurrent_replays_wins(guard: &impl ReplayGuard) {
    let contested = signature("contested");
    let attempts = (0..20).map(|i| {
        let contested = &contested;
        async move { guard.admit(contested, &format!("dlv-{i}")).await.is_ok() }
    });
    let admitted = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    assert_eq!(admitted, 1);
}
