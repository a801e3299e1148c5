//! The contract every [`IdempotencyStore`] keeps, run through [`Idempotency`] so it checks what users
//! rely on. Test tooling: only built for tests or with the `test-util` feature.

use std::cell::Cell;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::retry::now_millis;

/// A handler error for the contract.
#[derive(Debug, thiserror::Error)]
#[error("the handler failed")]
pub struct HandlerFailed;

impl Classify for HandlerFailed {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }
    fn error_type(&self) -> &'static str {
        "HandlerFailed"
    }
}

type Outcome = Result<String, IdempotencyError<HandlerFailed>>;

/// Runs the contract against `store`. `namespace` keeps runs on a shared table apart.
pub async fn contract<S: IdempotencyStore + Clone>(store: &S, namespace: &str) {
    // Near the real time, so a store with a TTL sweeper does not remove the records under test.
    let clock = ManualClock::at(now_millis());
    let idempotency = Idempotency::new(store.clone(), namespace, Selector::pointers(["/id"]))
        .validate_payload(Selector::pointers(["/amount"]))
        .with_clock(clock.clock());
    let runs = Cell::new(0);
    let run = async |event: &Value, response: &str| -> Outcome {
        idempotency
            .run(event, None, || async {
                runs.set(runs.get() + 1);
                Ok(response.to_owned())
            })
            .await
    };
    let order = |id: &str, amount: u32| json!({"id": id, "amount": amount});

    // First call: the handler runs and its response comes back.
    assert_eq!(
        run(&order("a", 10), "receipt-a").await.unwrap(),
        "receipt-a"
    );
    assert_eq!(runs.get(), 1);

    // Duplicate: the first response comes back and the handler does not run.
    assert_eq!(run(&order("a", 10), "other").await.unwrap(), "receipt-a");
    assert_eq!(runs.get(), 1, "a duplicate must not run the handler");

    // Payload tampering: same key, different content, refused without running.
    let tampered = run(&order("a", 99), "other").await.unwrap_err();
    assert!(
        matches!(tampered, IdempotencyError::PayloadMismatch { .. }),
        "{tampered:?}"
    );
    assert_eq!(tampered.class(), ErrorClass::Permanent);
    assert_eq!(runs.get(), 1);

    // Expiry of a completed record: after the TTL the handler runs again.
    clock.advance(DEFAULT_TTL);
    assert_eq!(
        run(&order("a", 10), "receipt-a2").await.unwrap(),
        "receipt-a2"
    );
    assert_eq!(runs.get(), 2);

    // Concurrent duplicate: while the first run is inside its handler, a second is refused with a
    // retryable AlreadyInProgress.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let concurrent = order("b", 5);
    let first = idempotency.run(&concurrent, None, || async {
        started_tx.send(()).unwrap();
        release_rx.await.unwrap();
        Ok::<_, HandlerFailed>("receipt-b".to_owned())
    });
    let second = async {
        started_rx.await.unwrap();
        let outcome: Outcome = idempotency
            .run(&concurrent, None, || async {
                panic!("the concurrent duplicate must not run")
            })
            .await;
        release_tx.send(()).unwrap();
        outcome
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.unwrap(), "receipt-b");
    let second = second.unwrap_err();
    assert!(
        matches!(second, IdempotencyError::AlreadyInProgress { .. }),
        "{second:?}"
    );
    assert_eq!(second.class(), ErrorClass::Retryable);

    // Expiry of a claim: a run that died holding a claim blocks until the claim's deadline, then
    // the next delivery runs at once.
    let crashed = order("c", 1);
    let key = idempotency.key_of::<HandlerFailed>(&crashed).unwrap();
    let deadline = clock.now() + 3_000;
    let claim = IdempotencyRecord::in_progress(&key, deadline, idempotency.payload_hash(&crashed));
    assert_eq!(store.claim(&claim, clock.now()).await.unwrap(), None);
    let blocked = run(&crashed, "receipt-c").await.unwrap_err();
    assert!(
        matches!(blocked, IdempotencyError::AlreadyInProgress { lease_until_ms, .. } if lease_until_ms == deadline),
        "{blocked:?}"
    );
    clock.advance(Duration::from_millis(3_000));
    assert_eq!(run(&crashed, "receipt-c").await.unwrap(), "receipt-c");

    // Handler failure clears the record, so the retry runs.
    let failing = order("d", 1);
    let failed: Outcome = idempotency
        .run(&failing, None, || async { Err(HandlerFailed) })
        .await;
    assert!(matches!(
        failed,
        Err(IdempotencyError::Handler(HandlerFailed))
    ));
    let before = runs.get();
    assert_eq!(run(&failing, "receipt-d").await.unwrap(), "receipt-d");
    assert_eq!(runs.get(), before + 1, "the retry after a failure runs");

    // Oversized response: the operation succeeds, the response is not kept, and a duplicate is told
    // the request was handled (a duplicate, not a failure) without running again.
    let big = "x".repeat(MAX_ITEM_BYTES);
    let large = order("e", 1);
    assert_eq!(run(&large, &big).await.unwrap().len(), big.len());
    let before = runs.get();
    let duplicate = run(&large, &big).await.unwrap_err();
    assert!(
        matches!(duplicate, IdempotencyError::AlreadyCompleted { .. }),
        "{duplicate:?}"
    );
    assert_eq!(duplicate.class(), ErrorClass::Duplicate);
    assert_eq!(runs.get(), before);

    // A batch: new keys run once, completed ones replay, a key repeated inside the batch runs once,
    // and a failure is cleared for its retry.
    let batch: Vec<Value> = ["f1", "f2", "a", "f3", "f1", "fail"]
        .iter()
        .map(|id| order(id, if *id == "a" { 10 } else { 1 }))
        .collect();
    let handled = Cell::new(0);
    let results = idempotency
        .run_all(&batch, None, 4, async |event: &Value| {
            handled.set(handled.get() + 1);
            match event["id"].as_str().unwrap() {
                "fail" => Err(HandlerFailed),
                id => Ok(format!("receipt-{id}")),
            }
        })
        .await;
    assert_eq!(
        handled.get(),
        4,
        "f1, f2, f3 and fail run; a replays; the second f1 gets the first's response"
    );
    let summary: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(handled) => handled.response.clone(),
            Err(e) => e.error_type().to_owned(),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "receipt-f1",
            "receipt-f2",
            "receipt-a2",
            "receipt-f3",
            "receipt-f1",
            "HandlerFailed"
        ]
    );
    let again = idempotency
        .run_all(&batch, None, 4, async |event: &Value| {
            Ok::<_, HandlerFailed>(format!("rerun-{}", event["id"].as_str().unwrap()))
        })
        .await;
    let again: Vec<(String, bool)> = again
        .into_iter()
        .map(|r| r.map(|h| (h.response, h.replayed)).unwrap())
        .collect();
    let replayed = |r: &str| (r.to_owned(), true);
    assert_eq!(
        again,
        [
            replayed("receipt-f1"),
            replayed("receipt-f2"),
            replayed("receipt-a2"),
            replayed("receipt-f3"),
            replayed("receipt-f1"),
            ("rerun-fail".to_owned(), false)
        ]
    );
}
