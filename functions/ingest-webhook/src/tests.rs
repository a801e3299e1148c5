//! The handler against the in-memory bus and idempotency store: every answer it can give, and what
//! it publishes.

use super::*;
use busline::bus::InMemoryBus;
use busline::config::ConfigError;
use busline::idempotency::{IdempotencyRecord, InMemoryIdempotencyStore};
use busline_tests::{
    Headers, SAMPLE_CRM_CUSTOMER, SAMPLE_SHOP_ORDER, signed_headers, webhook_request,
};

const SHOP_SECRET: &str = "whsec_shop";

type TestDeps = Deps<InMemoryBus, InMemoryIdempotencyStore>;

fn deps() -> TestDeps {
    deps_on(InMemoryIdempotencyStore::new())
}

/// A warm environment of its own, sharing `store` with others.
fn deps_on(store: InMemoryIdempotencyStore) -> TestDeps {
    let config = Config {
        bus_name: "bus".into(),
        idempotency_table: "idempotency".into(),
        sources: vec![],
        tolerance_secs: 300,
        idempotency_ttl_secs: 3600,
    };
    let secrets = vec![
        ("shop".to_owned(), SHOP_SECRET.into()),
        ("crm".to_owned(), b"whsec_crm".to_vec()),
    ];
    Deps::new(InMemoryBus::new(), store, &config, secrets).unwrap()
}

async fn post(deps: &TestDeps, path: &str, body: &str, headers: Headers) -> (StatusCode, Value) {
    let response = handle(webhook_request("POST", path, body, &headers), deps).await;
    let status = response.status();
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    (
        status,
        serde_json::from_slice(response.body().as_ref()).unwrap(),
    )
}

async fn post_signed(deps: &TestDeps, body: &str, delivery_id: &str) -> (StatusCode, Value) {
    post(
        deps,
        "/webhooks/shop",
        body,
        signed_headers(SHOP_SECRET, body, delivery_id),
    )
    .await
}

#[tokio::test]
async fn a_signed_valid_order_is_published_in_an_envelope_and_answered_202() {
    let deps = deps();
    let (status, body) = post_signed(&deps, SAMPLE_SHOP_ORDER, "dlv-1").await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body,
        json!({"eventId": event_id("shop", "dlv-1"), "duplicate": false})
    );
    let published = deps.publisher.published();
    assert_eq!(published.len(), 1);
    let envelope: Envelope<Value> = serde_json::from_value(published[0].clone()).unwrap();
    assert_eq!(envelope.id, event_id("shop", "dlv-1"));
    assert_eq!(envelope.source, "busline.webhook.shop");
    assert_eq!(
        envelope.event_type.as_str(),
        "io.busline.shop.order.placed.v1"
    );
    assert_eq!(envelope.subject.as_deref(), Some("SO-1001"));
    assert_eq!(
        envelope.dataschema.as_deref(),
        Some("urn:busline:schema:webhook:shop:order:v1")
    );
    assert_eq!(envelope.causationid.as_deref(), Some("dlv-1"));
    assert_eq!(
        envelope.correlationid.as_deref(),
        Some(envelope.id.as_str())
    );
    assert!(
        envelope
            .traceparent
            .as_deref()
            .is_some_and(|t| TraceContext::parse(t).is_some())
    );
    assert_eq!(
        envelope.data,
        serde_json::from_str::<Value>(SAMPLE_SHOP_ORDER).unwrap()
    );
}

#[tokio::test]
async fn the_senders_correlation_id_and_trace_context_are_kept() {
    let deps = deps();
    let mut headers = signed_headers(SHOP_SECRET, SAMPLE_SHOP_ORDER, "dlv-2");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    headers.push(("X-Correlation-Id".into(), "checkout-77".into()));
    headers.push(("traceparent".into(), traceparent.into()));
    let (status, _) = post(&deps, "/webhooks/shop", SAMPLE_SHOP_ORDER, headers).await;

    assert_eq!(status, StatusCode::ACCEPTED);
    let envelope = &deps.publisher.published()[0];
    assert_eq!(envelope["correlationid"], "checkout-77");
    // The event continues the sender's trace from the ingest's own span, whose parent is the
    // sender's.
    let published = TraceContext::parse(envelope["traceparent"].as_str().unwrap()).unwrap();
    let sender = TraceContext::parse(traceparent).unwrap();
    assert_eq!(published.trace_id, sender.trace_id);
    assert_ne!(published.span_id, sender.span_id);
}

#[tokio::test]
async fn a_resent_delivery_is_answered_with_the_same_event_and_published_once() {
    let deps = deps();
    let store = deps.idempotency.store().clone();
    let (_, first) = post_signed(&deps, SAMPLE_SHOP_ORDER, "dlv-3").await;
    assert_eq!(store.calls(), 2, "a first delivery: claim and complete");
    let (status, again) = post_signed(&deps, SAMPLE_SHOP_ORDER, "dlv-3").await;

    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        again,
        json!({"eventId": first["eventId"], "duplicate": true})
    );
    assert_eq!(deps.publisher.published().len(), 1);
    assert_eq!(
        store.calls(),
        2,
        "a duplicate in the same warm environment is answered from its cache"
    );

    let elsewhere = deps_on(store.clone());
    let (status, again) = post_signed(&elsewhere, SAMPLE_SHOP_ORDER, "dlv-3").await;
    assert_eq!(
        (status, again),
        (
            StatusCode::ACCEPTED,
            json!({"eventId": first["eventId"], "duplicate": true})
        )
    );
    assert!(elsewhere.publisher.published().is_empty());
    assert_eq!(store.calls(), 3, "a duplicate elsewhere costs one call");
}

#[tokio::test]
async fn a_delivery_id_resent_with_another_body_is_refused_422() {
    let deps = deps();
    post_signed(&deps, SAMPLE_SHOP_ORDER, "dlv-reused").await;
    let other = SAMPLE_SHOP_ORDER.replace("SO-1001", "SO-2002");
    let (status, body) = post_signed(&deps, &other, "dlv-reused").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("delivery_id_reused"))
    );
    assert_eq!(deps.publisher.published().len(), 1);
}

#[tokio::test]
async fn the_same_delivery_id_from_two_sources_is_two_deliveries() {
    let deps = deps();
    let crm = signed_headers("whsec_crm", SAMPLE_CRM_CUSTOMER, "dlv-4");
    assert_eq!(
        post(&deps, "/webhooks/crm", SAMPLE_CRM_CUSTOMER, crm)
            .await
            .0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post_signed(&deps, SAMPLE_SHOP_ORDER, "dlv-4").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(deps.publisher.published().len(), 2);
}

#[tokio::test]
async fn entries_the_bus_rejects_are_retried_by_the_publisher_not_the_sender() {
    // The in-memory bus answers one call at a time; EventBridgePublisher's retries are covered
    // against LocalStack. Here a rejection that outlives them must become a 503 and a released claim.
    let deps = deps();
    deps.publisher.reject_next(1);
    let (status, body) = post_signed(&deps, SAMPLE_SHOP_ORDER, "dlv-5").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "bus_unavailable");
    assert!(deps.publisher.published().is_empty());

    let (status, body) = post_signed(&deps, SAMPLE_SHOP_ORDER, "dlv-5").await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the released claim lets the resend through: {body}"
    );
    assert_eq!(deps.publisher.published().len(), 1);
}

#[tokio::test]
async fn an_unreachable_bus_answers_503_and_the_resend_goes_through() {
    let deps = deps();
    deps.publisher.set_unavailable(true);
    let (status, body) = post_signed(&deps, SAMPLE_SHOP_ORDER, "dlv-6").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("nothing was published"),
        "{body}"
    );

    deps.publisher.set_unavailable(false);
    assert_eq!(
        post_signed(&deps, SAMPLE_SHOP_ORDER, "dlv-6").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(deps.publisher.published().len(), 1);
}

#[tokio::test]
async fn an_unreachable_idempotency_store_answers_503_and_publishes_nothing() {
    let deps = deps();
    deps.idempotency.store().set_unavailable(true);
    let (status, body) = post_signed(&deps, SAMPLE_SHOP_ORDER, "dlv-7").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("idempotency_unavailable")
        )
    );
    assert!(deps.publisher.published().is_empty());
}

#[tokio::test]
async fn a_delivery_being_handled_elsewhere_answers_409() {
    let deps = deps();
    let elsewhere = Envelope::new(
        event_id("shop", "dlv-8"),
        "busline.webhook.shop",
        EventType::parse(SOURCES[0].event_type).unwrap(),
        Value::Null,
    );
    let key = deps.idempotency.key_of::<()>(&elsewhere).unwrap();
    let now = busline::retry::now_millis();
    let claim = IdempotencyRecord::in_progress(&key, now + 30_000, None);
    deps.idempotency.store().claim(&claim, now).await.unwrap();
    let response = handle(
        webhook_request(
            "POST",
            "/webhooks/shop",
            SAMPLE_SHOP_ORDER,
            &signed_headers(SHOP_SECRET, SAMPLE_SHOP_ORDER, "dlv-8"),
        ),
        &deps,
    )
    .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    assert!(deps.publisher.published().is_empty());
}

/// Each bad input, its status, its error code, and nothing published.
#[tokio::test]
async fn every_bad_input_gets_its_status_and_reason_and_publishes_nothing() {
    let deps = deps();
    let order = SAMPLE_SHOP_ORDER;
    let old = chrono::Utc::now().timestamp() as u64 - 301;
    let expired = vec![
        (
            "x-busline-signature".to_owned(),
            busline::signature::sign(SHOP_SECRET.as_bytes(), old, order.as_bytes()),
        ),
        ("x-delivery-id".to_owned(), "d".to_owned()),
    ];
    let tampered_body = order.replace("SO-1001", "SO-9999");
    let not_json = "{\"order_id\": ";
    let mut invalid: Value = serde_json::from_str(order).unwrap();
    invalid["lines"][0]["quantity"] = json!(0);
    invalid["currency"] = json!("euro");
    invalid.as_object_mut().unwrap().remove("customer");
    let invalid = invalid.to_string();
    let mut huge: Value = serde_json::from_str(order).unwrap();
    huge["customer"]["name"] = json!("x".repeat(MAX_ENTRY_BYTES));
    let huge = huge.to_string();
    let mut nearly: Value = serde_json::from_str(order).unwrap();
    nearly["customer"]["name"] = json!("x".repeat(MAX_ENTRY_BYTES - order.len()));
    let nearly = nearly.to_string();
    let no_delivery_id = vec![signed_headers(SHOP_SECRET, order, "x").remove(0)];
    let long_delivery_id = signed_headers(SHOP_SECRET, order, &"d".repeat(201));

    let cases: Vec<(&str, &str, &str, &str, Headers, StatusCode, &str)> = vec![
        (
            "unknown source",
            "POST",
            "/webhooks/erp",
            order,
            signed_headers(SHOP_SECRET, order, "d"),
            StatusCode::NOT_FOUND,
            "unknown_source",
        ),
        (
            "no source in path",
            "POST",
            "/webhooks/",
            order,
            signed_headers(SHOP_SECRET, order, "d"),
            StatusCode::NOT_FOUND,
            "unknown_route",
        ),
        (
            "other path",
            "POST",
            "/orders",
            order,
            signed_headers(SHOP_SECRET, order, "d"),
            StatusCode::NOT_FOUND,
            "unknown_route",
        ),
        (
            "GET",
            "GET",
            "/webhooks/shop",
            "",
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "missing signature",
            "POST",
            "/webhooks/shop",
            order,
            vec![("x-delivery-id".into(), "d".into())],
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "malformed signature",
            "POST",
            "/webhooks/shop",
            order,
            vec![("x-busline-signature".into(), "sha256=abc".into())],
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "expired signature",
            "POST",
            "/webhooks/shop",
            order,
            expired,
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "tampered body",
            "POST",
            "/webhooks/shop",
            &tampered_body,
            signed_headers(SHOP_SECRET, order, "d"),
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "another source's secret",
            "POST",
            "/webhooks/shop",
            order,
            signed_headers("whsec_crm", order, "d"),
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "no delivery id",
            "POST",
            "/webhooks/shop",
            order,
            no_delivery_id,
            StatusCode::BAD_REQUEST,
            "bad_delivery_id",
        ),
        (
            "delivery id too long",
            "POST",
            "/webhooks/shop",
            order,
            long_delivery_id,
            StatusCode::BAD_REQUEST,
            "bad_delivery_id",
        ),
        (
            "malformed JSON",
            "POST",
            "/webhooks/shop",
            not_json,
            signed_headers(SHOP_SECRET, not_json, "d"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "empty body",
            "POST",
            "/webhooks/shop",
            "",
            signed_headers(SHOP_SECRET, "", "d"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "schema violations",
            "POST",
            "/webhooks/shop",
            &invalid,
            signed_headers(SHOP_SECRET, &invalid, "d"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema_violation",
        ),
        (
            "JSON that is not an object",
            "POST",
            "/webhooks/shop",
            "[1,2]",
            signed_headers(SHOP_SECRET, "[1,2]", "d"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema_violation",
        ),
        (
            "body over 256 KB",
            "POST",
            "/webhooks/shop",
            &huge,
            signed_headers(SHOP_SECRET, &huge, "d"),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            "body that only overflows with its envelope",
            "POST",
            "/webhooks/shop",
            &nearly,
            signed_headers(SHOP_SECRET, &nearly, "d-nearly"),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    for (name, method, path, body, headers, status, code) in cases {
        let response = handle(webhook_request(method, path, body, &headers), &deps).await;
        let answer: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(
            (response.status(), answer["error"].as_str()),
            (status, Some(code)),
            "{name}: {answer}"
        );
        assert!(
            !answer["reason"].as_str().unwrap_or_default().is_empty(),
            "{name}: no reason given"
        );
    }
    assert!(deps.publisher.published().is_empty());

    // The oversized envelope was claimed before the bus refused it; the claim must be released so a
    // smaller resend under the same delivery id is not mistaken for a duplicate.
    assert_eq!(
        post_signed(&deps, order, "d-nearly").await.0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn schema_violations_are_listed_with_their_paths() {
    let deps = deps();
    let mut order: Value = serde_json::from_str(SAMPLE_SHOP_ORDER).unwrap();
    order["lines"][1]["quantity"] = json!(-1);
    order["currency"] = json!("eur");
    let body = order.to_string();
    let (status, answer) = post_signed(&deps, &body, "dlv-9").await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = answer["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 2, "{answer}");
    assert!(
        paths.contains(&"/lines/1/quantity") && paths.contains(&"/currency"),
        "{paths:?}"
    );
}

#[test]
fn config_names_the_missing_or_malformed_variable() {
    let full = [
        ("BUS_NAME", "b"),
        ("IDEMPOTENCY_TABLE", "t"),
        ("WEBHOOK_SOURCES", "shop=s1, crm=s2"),
    ];
    let config = Config::from_env(&full).unwrap();
    assert_eq!(
        config.sources,
        vec![("shop".into(), "s1".into()), ("crm".into(), "s2".into())]
    );
    assert_eq!(
        (config.tolerance_secs, config.idempotency_ttl_secs),
        (300, 72 * 3600)
    );

    let missing = Config::from_env(&[("IDEMPOTENCY_TABLE", "t"), ("WEBHOOK_SOURCES", "shop=s1")])
        .unwrap_err();
    assert!(
        matches!(
            missing,
            ConfigError::Missing {
                name: "BUS_NAME",
                ..
            }
        ),
        "{missing}"
    );

    for bad in ["shop", "shop=", "erp=s1", "shop=s1,,crm=s2"] {
        let err = Config::from_env(&[
            ("BUS_NAME", "b"),
            ("IDEMPOTENCY_TABLE", "t"),
            ("WEBHOOK_SOURCES", bad),
        ])
        .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    name: "WEBHOOK_SOURCES",
                    ..
                }
            ),
            "{bad}: {err}"
        );
    }
    let err = Config::from_env(&[
        ("BUS_NAME", "b"),
        ("IDEMPOTENCY_TABLE", "t"),
        ("WEBHOOK_SOURCES", "shop=s"),
        ("IDEMPOTENCY_TTL_SECONDS", "1h"),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable IDEMPOTENCY_TTL_SECONDS=\"1h\" is invalid; expected seconds, a whole number"
    );
}

#[test]
fn every_built_in_source_compiles() {
    for spec in SOURCES {
        Source::new(spec.name, b"s".to_vec()).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
    }
}
