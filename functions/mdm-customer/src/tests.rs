use busline::bus::InMemoryBus;
use serde_json::json;

use super::*;
use crate::store::InMemoryMasterStore;

fn master() -> CustomerMaster<InMemoryMasterStore, InMemoryBus> {
    CustomerMaster {
        store: InMemoryMasterStore::new(),
        publisher: InMemoryBus::new(),
        rules: Rules::default(),
    }
}

fn update(source: &str, ts_ms: i64, fields: Value) -> CustomerUpdate {
    CustomerUpdate {
        customer_id: "C-1".to_owned(),
        source: source.to_owned(),
        ts_ms,
        fields: serde_json::from_value(fields).unwrap(),
    }
}

#[tokio::test]
async fn a_change_is_written_and_published_with_only_the_changed_fields() {
    let m = master();
    m.apply(&update("crm", 10, json!({"phone": "+1", "email": "a@x"})))
        .await
        .unwrap();
    let applied = m
        .apply(&update("shop", 20, json!({"phone": "+2", "email": "b@x"})))
        .await
        .unwrap();
    assert_eq!(
        applied,
        Applied::Changed {
            version: 2,
            changed: BTreeMap::from([("email".to_owned(), json!("b@x"))])
        }
    );
    let published = m.publisher.published();
    assert_eq!(published.len(), 2);
    assert_eq!(published[1]["type"], MASTER_CHANGED);
    assert_eq!(published[1]["id"], "customer-master/C-1/v2");
    assert_eq!(published[1]["data"]["changed"], json!({"email": "b@x"}));
    assert_eq!(
        published[1]["data"]["provenance"],
        json!({"email": {"source": "shop", "ts_ms": 20}})
    );
    let record = &m.store.records()["C-1"];
    assert_eq!(
        record.fields["phone"].source, "crm",
        "the CRM keeps the phone"
    );
    assert_eq!(record.published_version, 2);
}

#[tokio::test]
async fn a_duplicate_or_a_losing_value_publishes_nothing_and_writes_nothing() {
    let m = master();
    let u = update("crm", 10, json!({"phone": "+1"}));
    m.apply(&u).await.unwrap();
    assert_eq!(m.apply(&u).await.unwrap(), Applied::Unchanged);
    assert_eq!(
        m.apply(&update("shop", 99, json!({"phone": "+9"})))
            .await
            .unwrap(),
        Applied::Unchanged
    );
    assert_eq!(m.publisher.published().len(), 1);
    assert_eq!(m.store.writes.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_conflicting_writer_makes_it_re_read_and_re_merge_not_overwrite() {
    let m = master();
    m.apply(&update("crm", 10, json!({"phone": "+1"})))
        .await
        .unwrap();
    m.store.interleave_writers(2);
    let applied = m
        .apply(&update("shop", 20, json!({"email": "b@x"})))
        .await
        .unwrap();
    assert!(
        matches!(applied, Applied::Changed { version: 4, .. }),
        "{applied:?}"
    );
    m.store.interleave_writers(MAX_MERGES);
    let error = m
        .apply(&update("shop", 30, json!({"email": "c@x"})))
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "MasterContended");
    assert_eq!(error.class(), ErrorClass::Retryable);
}

#[tokio::test]
async fn a_change_the_bus_missed_is_published_by_the_next_delivery() {
    let m = master();
    m.publisher.set_unavailable(true);
    let error = m
        .apply(&update("crm", 10, json!({"phone": "+1"})))
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "BusUnavailable");
    assert_eq!(
        m.store.records()["C-1"].published_version,
        0,
        "written, not published"
    );
    m.publisher.set_unavailable(false);
    // The redelivery merges nothing new, but the change goes out.
    assert_eq!(
        m.apply(&update("crm", 10, json!({"phone": "+1"})))
            .await
            .unwrap(),
        Applied::Unchanged
    );
    let published = m.publisher.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["data"]["changed"], json!({"phone": "+1"}));
    assert_eq!(m.store.records()["C-1"].published_version, 1);
}

#[tokio::test]
async fn what_the_master_cannot_take_is_a_permanent_error() {
    let m = master();
    let envelope = Envelope::new(
        "e-1",
        "test",
        EventType::parse(sources::CUSTOMER_UPDATED).unwrap(),
        json!({"customer_id": "C-1", "source": "crm", "changes": {"phone": "+1"}}),
    );
    let error = m.apply_envelope(&envelope).await.unwrap_err();
    assert_eq!(error.error_type(), "MalformedCustomerChange");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(error.to_string().contains("/updated_at"));
}

/// An update dated a year ahead used to win every "latest" field for ever. Now it is refused
/// (permanent, so the dead-letter queue gets it with the reason) and changes nothing; one within
/// the skew bound is merged.
#[tokio::test]
async fn a_far_future_update_is_refused_and_changes_nothing() {
    let m = master();
    let now = chrono::Utc::now().timestamp_millis();
    m.apply(&update("crm", now - 1_000, json!({"email": "a@x"})))
        .await
        .unwrap();
    let year_ahead = now + 365 * 24 * 3600 * 1000;
    let error = m
        .apply(&update("shop", year_ahead, json!({"email": "attacker@x"})))
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "FutureDatedChange");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(error.to_string().contains("skew bound"), "{error}");
    assert_eq!(m.store.records()["C-1"].fields["email"].value, json!("a@x"));
    assert_eq!(m.publisher.published().len(), 1);

    let slightly_ahead = now + MAX_FUTURE_SKEW_MS / 2;
    assert!(matches!(
        m.apply(&update("shop", slightly_ahead, json!({"email": "b@x"})))
            .await
            .unwrap(),
        Applied::Changed { .. }
    ));
}

#[test]
fn rules_come_from_the_environment() {
    assert_eq!(rules_from_env(&[("X", "y")]).unwrap(), Rules::default());
    let rules = rules_from_env(&[("MDM_RULES", r#"{"default": "latest"}"#)]).unwrap();
    assert!(rules.fields.is_empty());
    assert!(
        rules_from_env(&[("MDM_RULES", "{")])
            .unwrap_err()
            .to_string()
            .contains("MDM_RULES")
    );
}
