use serde_json::{Value, json};

use super::contract::HandlerFailed;
use super::*;
use crate::envelope::Envelope;

#[tokio::test]
async fn the_in_memory_store_keeps_the_contract() {
    contract(&InMemoryIdempotencyStore::new(), "contract").await;
}

fn orders(store: &InMemoryIdempotencyStore) -> Idempotency<InMemoryIdempotencyStore, Value> {
    Idempotency::new(store.clone(), "orders", Selector::pointers(["/id"]))
}

async fn handle(
    idempotency: &Idempotency<InMemoryIdempotencyStore, Value>,
    event: &Value,
) -> Result<String, IdempotencyError<HandlerFailed>> {
    idempotency
        .run(event, None, || async {
            Ok(format!("done-{}", event["id"]))
        })
        .await
}

#[tokio::test]
async fn a_first_delivery_costs_two_calls_and_a_duplicate_one() {
    let store = InMemoryIdempotencyStore::new();
    let idempotency = orders(&store);
    handle(&idempotency, &json!({"id": 1})).await.unwrap();
    assert_eq!(store.calls(), 2);
    handle(&idempotency, &json!({"id": 1})).await.unwrap();
    assert_eq!(store.calls(), 3);
}

#[tokio::test]
async fn the_local_cache_answers_a_duplicate_without_a_call() {
    let store = InMemoryIdempotencyStore::new();
    let idempotency = orders(&store).local_cache(16);
    handle(&idempotency, &json!({"id": 1})).await.unwrap();
    let before = store.calls();
    assert_eq!(
        handle(&idempotency, &json!({"id": 1})).await.unwrap(),
        "done-1"
    );
    assert_eq!(store.calls(), before);
}

#[tokio::test]
async fn the_local_cache_forgets_expired_records() {
    let store = InMemoryIdempotencyStore::new();
    let clock = ManualClock::at(1_800_000_000_000);
    let idempotency = orders(&store).local_cache(16).with_clock(clock.clock());
    handle(&idempotency, &json!({"id": 1})).await.unwrap();
    clock.advance(DEFAULT_TTL);
    let runs = std::cell::Cell::new(0);
    let _: String = idempotency
        .run(&json!({"id": 1}), None, || async {
            runs.set(1);
            Ok::<_, HandlerFailed>("again".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(runs.get(), 1);
}

#[tokio::test]
async fn a_batch_of_ten_costs_two_calls() {
    let store = InMemoryIdempotencyStore::new();
    let idempotency = orders(&store);
    let batch: Vec<Value> = (0..10).map(|i| json!({"id": i})).collect();
    let results = idempotency
        .run_all(&batch, None, 10, async |e: &Value| {
            Ok::<_, HandlerFailed>(e["id"].to_string())
        })
        .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(store.calls(), 2);
}

#[tokio::test]
async fn an_event_without_a_key_is_refused_unless_told_otherwise() {
    let store = InMemoryIdempotencyStore::new();
    let refused = handle(&orders(&store), &json!({"other": 1}))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, IdempotencyError::MissingKey { selector } if selector == "/id"),
        "{refused:?}"
    );
    assert_eq!(refused.class(), ErrorClass::Permanent);
    let lenient = orders(&store).run_without_key();
    assert_eq!(
        handle(&lenient, &json!({"other": 1})).await.unwrap(),
        "done-null"
    );
    assert_eq!(store.calls(), 0);
}

#[tokio::test]
async fn an_unavailable_store_is_retryable_and_the_handler_does_not_run() {
    let store = InMemoryIdempotencyStore::new();
    store.set_unavailable(true);
    let error: IdempotencyError<HandlerFailed> = orders(&store)
        .run::<(), _, _, _>(&json!({"id": 1}), None, || async {
            panic!("must not run without a claim")
        })
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Retryable);
    assert_eq!(error.error_type(), "IdempotencyStoreUnavailable");
}

#[tokio::test]
async fn envelopes_are_keyed_by_source_and_id_and_must_repeat_their_data() {
    let store = InMemoryIdempotencyStore::new();
    let idempotency = Idempotency::for_envelopes(store.clone(), "audit");
    let event_type = crate::EventType::parse("io.busline.test.v1").unwrap();
    let envelope =
        |source: &str, data: Value| Envelope::new("evt-1", source, event_type.clone(), data);
    let run =
        async |e: &Envelope<Value>, answer: u32| -> Result<u32, IdempotencyError<HandlerFailed>> {
            idempotency.run(e, None, || async { Ok(answer) }).await
        };
    assert_eq!(run(&envelope("a", json!({"x": 1})), 1).await.unwrap(), 1);
    assert_eq!(run(&envelope("a", json!({"x": 1})), 2).await.unwrap(), 1);
    assert_eq!(
        run(&envelope("b", json!({"x": 1})), 3).await.unwrap(),
        3,
        "the same id from another source is another event"
    );
    assert!(matches!(
        run(&envelope("a", json!({"x": 2})), 4).await,
        Err(IdempotencyError::PayloadMismatch { .. })
    ));
}

#[test]
fn keys_are_hashed_and_unambiguous() {
    let key = IdempotencyKey::new("ns", &["card-4111", "x"]);
    assert!(key.as_str().starts_with("ns#"));
    assert!(!key.as_str().contains("4111"), "raw values are not stored");
    assert_eq!(key.as_str().len(), "ns#".len() + 64);
    assert_ne!(
        IdempotencyKey::new("ns", &["ab", "c"]),
        IdempotencyKey::new("ns", &["a", "bc"])
    );
    assert_ne!(
        IdempotencyKey::new("ns", &["a"]),
        IdempotencyKey::new("other", &["a"])
    );
}

/// Keys and payload hashes as the records already in a table were written, computed outside busline
/// (Python's `hashlib`: SHA-256 over each part's big-endian `u64` length and its bytes, in hex): a
/// faster way to compute them must keep these, or a redelivery across a deployment would run again
/// (a new key) or be refused as a different payload (a new hash).
#[test]
fn keys_and_payload_hashes_keep_the_form_the_store_holds() {
    let idempotency = Idempotency::for_envelopes(InMemoryIdempotencyStore::new(), "orders");
    let envelope = Envelope::new(
        "e-1",
        "busline.test",
        crate::EventType::parse("io.busline.order.placed.v1").unwrap(),
        json!({"order_id": "SO-2"}),
    );
    assert_eq!(
        idempotency
            .key_of::<HandlerFailed>(&envelope)
            .unwrap()
            .as_str(),
        "orders#37d7cf5c5f634c0bedd77c685468aa8d23ff5a2d953a2555c0a65d989fd41dd8"
    );
    assert_eq!(
        idempotency.payload_hash(&envelope).as_deref(),
        Some("0b1896ba0d7135275e7def6ee21d2f242a75b0bae10130ac758a17d235218c0b")
    );
    assert_eq!(
        IdempotencyKey::new("ns", &["ab", "c"]).as_str(),
        "ns#601d5476e2ccfe2c87a2bba7a322659734a05749d5b5aa781f513e4912db0d5f"
    );
    let formatted = Idempotency::<_, Envelope<Value>>::new(
        InMemoryIdempotencyStore::new(),
        "orders",
        Selector::function(|e: &Envelope<Value>| Some(format!("{}\u{1f}{}", e.source, e.id))),
    );
    assert_eq!(
        formatted.key_of::<HandlerFailed>(&envelope).unwrap(),
        idempotency.key_of::<HandlerFailed>(&envelope).unwrap(),
        "a pair is keyed as the function that joins it"
    );
}

#[test]
fn a_record_is_live_until_its_ttl_and_a_claim_until_its_lease() {
    let key = IdempotencyKey::new("ns", &["k"]);
    let claim = IdempotencyRecord::in_progress(&key, 10_500, None);
    assert_eq!(claim.expires_at, 11);
    assert!(claim.is_live(10_499));
    assert!(!claim.is_live(10_500));
    let done = IdempotencyRecord {
        status: RecordStatus::Completed,
        lease_until_ms: None,
        expires_at: 20,
        ..claim
    };
    assert!(done.is_live(19_999));
    assert!(!done.is_live(20_000));
}

/// An envelope's payload hash is the digest of its data's JSON text, as the records already in a
/// table were written with: a faster way to compute it must keep this, or a redelivery across a
/// deployment would be refused as a different payload.
#[test]
fn an_envelope_s_payload_hash_is_the_digest_of_its_data_s_json() {
    let idempotency = Idempotency::for_envelopes(InMemoryIdempotencyStore::new(), "orders");
    let big = "x".repeat(100 * 1024);
    for data in [
        json!({"order_id": "SO-1", "lines": [{"sku": "A", "quantity": 2}], "note": "é \"quoted\""}),
        json!({"blob": big}),
        json!(null),
        json!({"order_id": "SO-2"}),
    ] {
        let envelope = Envelope::new(
            "e-1",
            "busline.test",
            crate::EventType::parse("io.busline.order.placed.v1").unwrap(),
            data.clone(),
        );
        let text = serde_json::to_string(&data).unwrap();
        assert_eq!(
            idempotency.payload_hash(&envelope),
            Some(digest(&[text.as_str()])),
            "{}",
            &text[..text.len().min(60)]
        );
    }
}
