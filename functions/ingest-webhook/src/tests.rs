//! The handler against the in-memory bus and idempotency store: every answer it can give, and what
//! it publishes.

use super::*;
use crate::replay::InMemoryReplayGuard;
use busline::EventType;
use busline::bus::InMemoryBus;
use busline::config::ConfigError;
use busline::idempotency::{IdempotencyRecord, InMemoryIdempotencyStore};
use busline_testkit::{
    Headers, SAMPLE_CRM_CUSTOMER, SAMPLE_SHOP_ORDER, signed_headers, signed_headers_as,
    webhook_request,
};
use lambda_http::http::header;

const SHOP_SECRET: &str = "whsec_c2hvcC1zZWNyZXQtb2YtdHdlbnR5LWZvdXItYnl0ZXM=";
const CRM_SECRET: &str = "whsec_Y3JtLXNlY3JldC1vZi10d2VudHktZm91ci1ieXRlcw==";
/// The sources on the other schemes, with their senders' secrets.
const LEGACY: (&str, Scheme, &str) = ("helpdesk", Scheme::BuslineV1, "legacy-helpdesk-secret");
const GITHUB: (&str, Scheme, &str) = ("marketplace", Scheme::GitHub, "github-style-secret");
const STRIPE: (&str, Scheme, &str) = ("payments", Scheme::Stripe, "whsec_stripe_style_secret");

const HELPDESK_USER: &str = include_str!("../../../infra/events/helpdesk-user.json");
const MARKETPLACE_ORDER: &str = include_str!("../../../infra/events/marketplace-order.json");
const PAYMENTS_EVENT: &str = include_str!("../../../infra/events/payments-event.json");

type TestDeps = Deps<InMemoryBus, InMemoryIdempotencyStore, InMemoryReplayGuard>;

fn deps() -> TestDeps {
    deps_on(InMemoryIdempotencyStore::new())
}

/// A warm environment of its own, sharing `store` with others.
fn deps_on(store: InMemoryIdempotencyStore) -> TestDeps {
    deps_with(InMemoryBus::new(), store)
}

/// [`deps_on`] with another publisher.
fn deps_with<P: EventPublisher>(
    publisher: P,
    store: InMemoryIdempotencyStore,
) -> Deps<P, InMemoryIdempotencyStore, InMemoryReplayGuard> {
    let others = [LEGACY, GITHUB, STRIPE];
    let config = Config {
        bus_name: "bus".into(),
        idempotency_table: "idempotency".into(),
        sources: others
            .iter()
            .map(|(name, scheme, _)| SourceConfig {
                name: (*name).into(),
                secret_id: format!("{name}-secret"),
                scheme: *scheme,
            })
            .collect(),
        tolerance_secs: 300,
        idempotency_ttl_secs: 3600,
    };
    let mut secrets = vec![
        ("shop".to_owned(), SHOP_SECRET.to_owned()),
        ("crm".to_owned(), CRM_SECRET.to_owned()),
    ];
    secrets.extend(
        others
            .iter()
            .map(|(name, _, secret)| ((*name).to_owned(), (*secret).to_owned())),
    );
    Deps::new(
        publisher,
        store,
        InMemoryReplayGuard::new(),
        &config,
        secrets,
    )
    .unwrap()
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
    let crm = signed_headers(CRM_SECRET, SAMPLE_CRM_CUSTOMER, "dlv-4");
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
    let old = chrono::Utc::now().timestamp() - 301;
    let expired = signed_headers_as(Scheme::StandardWebhooks, SHOP_SECRET, order, "d", old);
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
    let no_delivery_id: Headers = signed_headers(SHOP_SECRET, order, "x")
        .into_iter()
        .filter(|(name, _)| name != "webhook-id")
        .collect();
    let no_legacy_delivery_id: Headers = signed_headers_as(
        LEGACY.1,
        LEGACY.2,
        HELPDESK_USER,
        "x",
        chrono::Utc::now().timestamp(),
    )
    .into_iter()
    .filter(|(name, _)| name != "x-delivery-id")
    .collect();
    let odd_delivery_id = signed_headers(SHOP_SECRET, order, "dlv 1;drop");
    let mut odd_correlation_id = signed_headers(SHOP_SECRET, order, "d-corr");
    odd_correlation_id.push(("x-correlation-id".into(), "c".repeat(129)));
    let mut not_a_business_key: Value = serde_json::from_str(order).unwrap();
    not_a_business_key["order_id"] = json!("SO-1#2");
    let not_a_business_key = not_a_business_key.to_string();
    let mut too_many_lines: Value = serde_json::from_str(order).unwrap();
    too_many_lines["lines"] = json!(
        (0..100)
            .map(|i| json!({"sku": format!("SKU-{i}"), "quantity": 1, "unit_price_cents": 1}))
            .collect::<Vec<_>>()
    );
    let too_many_lines = too_many_lines.to_string();
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
            vec![
                ("webhook-id".into(), "d".into()),
                (
                    "webhook-timestamp".into(),
                    chrono::Utc::now().timestamp().to_string(),
                ),
            ],
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "malformed signature",
            "POST",
            "/webhooks/shop",
            order,
            vec![
                ("webhook-id".into(), "d".into()),
                (
                    "webhook-timestamp".into(),
                    chrono::Utc::now().timestamp().to_string(),
                ),
                ("webhook-signature".into(), "sha256=abc".into()),
            ],
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "busline-v1's signature on a Standard Webhooks source",
            "POST",
            "/webhooks/shop",
            order,
            signed_headers_as(
                Scheme::BuslineV1,
                SHOP_SECRET,
                order,
                "d",
                chrono::Utc::now().timestamp(),
            ),
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
            signed_headers(CRM_SECRET, order, "d"),
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "no busline-v1 delivery id",
            "POST",
            "/webhooks/helpdesk",
            HELPDESK_USER,
            no_legacy_delivery_id,
            StatusCode::BAD_REQUEST,
            "bad_delivery_id",
        ),
        (
            "delivery id with a space and a semicolon",
            "POST",
            "/webhooks/shop",
            order,
            odd_delivery_id,
            StatusCode::BAD_REQUEST,
            "bad_delivery_id",
        ),
        (
            "correlation id over 128 characters",
            "POST",
            "/webhooks/shop",
            order,
            odd_correlation_id,
            StatusCode::BAD_REQUEST,
            "bad_correlation_id",
        ),
        (
            "an order id no saga can be named by",
            "POST",
            "/webhooks/shop",
            &not_a_business_key,
            signed_headers(SHOP_SECRET, &not_a_business_key, "d-key"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema_violation",
        ),
        (
            "more lines than one reservation holds",
            "POST",
            "/webhooks/shop",
            &too_many_lines,
            signed_headers(SHOP_SECRET, &too_many_lines, "d-lines"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema_violation",
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
        vec![
            SourceConfig {
                name: "shop".into(),
                secret_id: "s1".into(),
                scheme: Scheme::StandardWebhooks
            },
            SourceConfig {
                name: "crm".into(),
                secret_id: "s2".into(),
                scheme: Scheme::StandardWebhooks
            }
        ]
    );
    let with_schemes = Config::from_env(&[
        ("BUS_NAME", "b"),
        ("IDEMPOTENCY_TABLE", "t"),
        ("WEBHOOK_SOURCES", "shop=s1,crm=s2"),
        ("WEBHOOK_SCHEMES", "crm=busline-v1"),
    ])
    .unwrap();
    assert_eq!(with_schemes.sources[1].scheme, Scheme::BuslineV1);
    assert_eq!(with_schemes.sources[0].scheme, Scheme::StandardWebhooks);
    for bad in ["crm=hmac", "crm", "helpdesk=github", "erp=github"] {
        let err = Config::from_env(&[
            ("BUS_NAME", "b"),
            ("IDEMPOTENCY_TABLE", "t"),
            ("WEBHOOK_SOURCES", "shop=s1,crm=s2"),
            ("WEBHOOK_SCHEMES", bad),
        ])
        .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    name: "WEBHOOK_SCHEMES",
                    ..
                }
            ),
            "{bad}: {err}"
        );
    }
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
        Source::new(spec.name, Scheme::GitHub, "s")
            .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
    }
}

/// Each source's validator, generated at build time, judges as its schema compiled at run time
/// does (the same verdict, at the same paths), and carries the schema's `$id`: on the sample of
/// every source, on the sample broken field by field, and on values of the wrong shape altogether.
#[test]
fn every_generated_validator_agrees_with_its_schema() {
    use busline::schema::Schema;
    for spec in SOURCES {
        let compiled = Schema::compile(spec.name, spec.schema).unwrap();
        assert_eq!(compiled.id(), Some(spec.schema_id), "{}", spec.name);
        let generated = Schema::generated(Some(spec.schema_id), spec.validator);
        let sample: Value = serde_json::from_str(match spec.name {
            "shop" => include_str!("../../../infra/events/shop-order.json"),
            "crm" => include_str!("../../../infra/events/crm-customer.json"),
            "marketplace" => include_str!("../../../infra/events/marketplace-order.json"),
            "helpdesk" => include_str!("../../../infra/events/helpdesk-user.json"),
            "payments" => include_str!("../../../infra/events/payments-event.json"),
            other => panic!("no sample event for source {other}"),
        })
        .unwrap();
        let mut instances = vec![
            sample.clone(),
            json!({}),
            json!([]),
            json!("text"),
            json!(null),
        ];
        if let Value::Object(fields) = &sample {
            for (name, value) in fields {
                let mut without = fields.clone();
                without.remove(name);
                instances.push(Value::Object(without));
                let mut wrong = fields.clone();
                let replacement = match value {
                    Value::String(_) => json!(7),
                    _ => json!("seven"),
                };
                wrong.insert(name.clone(), replacement);
                instances.push(Value::Object(wrong));
            }
        }
        assert!(
            generated.violations(&sample).is_empty(),
            "{}: {:?}",
            spec.name,
            generated.violations(&sample)
        );
        for instance in &instances {
            // The same verdict, at the same places. The words may differ: where an `enum` implies
            // the `type`, the generated validator reports the enum alone, the compiled one both.
            let paths = |violations: Vec<busline::schema::Violation>| {
                violations
                    .into_iter()
                    .map(|v| v.path)
                    .collect::<std::collections::BTreeSet<_>>()
            };
            assert_eq!(
                paths(generated.violations(instance)),
                paths(compiled.violations(instance)),
                "{}: {instance}",
                spec.name
            );
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn post_at(
    deps: &TestDeps,
    source: &str,
    body: &str,
    headers: Headers,
    at: i64,
) -> (StatusCode, Value) {
    let request = webhook_request("POST", &format!("/webhooks/{source}"), body, &headers);
    let response = handle_at(request, deps, DateTime::from_timestamp(at, 0).unwrap()).await;
    (
        response.status(),
        serde_json::from_slice(response.body().as_ref()).unwrap(),
    )
}

/// A captured request, sent again as it was and with a fresh delivery id, under every scheme: the
/// first is a duplicate, the second a duplicate or a refusal, and one event is published in all.
#[tokio::test]
async fn a_replay_under_any_scheme_publishes_nothing_more() {
    let standard = ("shop", Scheme::StandardWebhooks, SHOP_SECRET);
    for ((source, scheme, secret), body, fresh_id_answer) in [
        (standard, SAMPLE_SHOP_ORDER, Some("bad_signature")),
        (LEGACY, HELPDESK_USER, Some("signature_replayed")),
        (GITHUB, MARKETPLACE_ORDER, None),
        (STRIPE, PAYMENTS_EVENT, None),
    ] {
        let deps = deps();
        let headers = signed_headers_as(scheme, secret, body, "dlv-orig", now());
        let (status, first) = post_at(&deps, source, body, headers.clone(), now()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{scheme}: {first}");
        let (status, again) = post_at(&deps, source, body, headers.clone(), now()).await;
        assert_eq!(
            (status, &again["duplicate"], &again["eventId"]),
            (StatusCode::ACCEPTED, &json!(true), &first["eventId"]),
            "{scheme}: the same request again"
        );
        // The attacker swaps the id header for a new one and keeps the signature.
        let fresh: Headers = headers
            .iter()
            .map(|(name, value)| {
                let id_header =
                    name == "webhook-id" || Some(name.as_str()) == scheme.unsigned_id_header();
                (
                    name.clone(),
                    if id_header {
                        "dlv-fresh".into()
                    } else {
                        value.clone()
                    },
                )
            })
            .collect();
        let (status, replay) = post_at(&deps, source, body, fresh, now()).await;
        match fresh_id_answer {
            Some(code) => assert_eq!(
                (status, replay["error"].as_str()),
                (StatusCode::UNAUTHORIZED, Some(code)),
                "{scheme}: {replay}"
            ),
            None => assert_eq!(
                (status, &replay["duplicate"], &replay["eventId"]),
                (StatusCode::ACCEPTED, &json!(true), &first["eventId"]),
                "{scheme}: deduplicated on what the sender signed"
            ),
        }
        assert_eq!(deps.publisher.published().len(), 1, "{scheme}");
    }
}

#[tokio::test]
async fn a_busline_v1_sender_that_re_signs_its_retry_is_deduplicated_on_the_delivery_id() {
    let deps = deps();
    let (source, scheme, secret) = LEGACY;
    let first = signed_headers_as(scheme, secret, HELPDESK_USER, "dlv-retry", now() - 60);
    let retry = signed_headers_as(scheme, secret, HELPDESK_USER, "dlv-retry", now());
    assert_eq!(
        post_at(&deps, source, HELPDESK_USER, first, now()).await.0,
        StatusCode::ACCEPTED
    );
    let (status, again) = post_at(&deps, source, HELPDESK_USER, retry, now()).await;
    assert_eq!(
        (status, &again["duplicate"]),
        (StatusCode::ACCEPTED, &json!(true))
    );
    assert_eq!(deps.publisher.published().len(), 1);
    assert_eq!(deps.replay.len(), 2, "each signature admitted once");
}

#[tokio::test]
async fn a_signature_for_one_source_does_not_pass_for_another() {
    let deps = deps();
    // shop and crm are both on Standard Webhooks, each with its own secret.
    let headers = signed_headers(SHOP_SECRET, SAMPLE_CRM_CUSTOMER, "dlv-path");
    let (status, answer) = post_at(&deps, "crm", SAMPLE_CRM_CUSTOMER, headers, now()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad_signature"))
    );
    assert!(deps.publisher.published().is_empty());
}

#[test]
fn two_sources_with_one_secret_do_not_start() {
    let config = Config::from_env(&[
        ("BUS_NAME", "b"),
        ("IDEMPOTENCY_TABLE", "t"),
        ("WEBHOOK_SOURCES", "shop=s1,crm=s2"),
    ])
    .unwrap();
    let err = Deps::new(
        InMemoryBus::new(),
        InMemoryIdempotencyStore::new(),
        InMemoryReplayGuard::new(),
        &config,
        vec![
            ("shop".into(), SHOP_SECRET.into()),
            ("crm".into(), SHOP_SECRET.into()),
        ],
    )
    .unwrap_err();
    assert!(matches!(err, StartupError::SharedSecret(..)), "{err}");
    let err = Deps::new(
        InMemoryBus::new(),
        InMemoryIdempotencyStore::new(),
        InMemoryReplayGuard::new(),
        &config,
        vec![("shop".into(), "whsec_short".into())],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not a standard-webhooks secret"),
        "{err}"
    );
}

#[tokio::test]
async fn timestamps_one_second_inside_the_tolerance_pass_and_one_second_outside_fail() {
    let deps = deps();
    let at = now();
    for (offset, ok) in [(-301, false), (-299, true), (299, true), (301, false)] {
        let id = format!("dlv-edge{offset}");
        let headers = signed_headers_as(
            Scheme::StandardWebhooks,
            SHOP_SECRET,
            SAMPLE_SHOP_ORDER,
            &id,
            at + offset,
        );
        let (status, answer) = post_at(&deps, "shop", SAMPLE_SHOP_ORDER, headers, at).await;
        let expected = if ok {
            StatusCode::ACCEPTED
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(status, expected, "{offset}: {answer}");
    }
    assert_eq!(deps.publisher.published().len(), 2);
}

#[tokio::test]
async fn during_rotation_either_secret_signs() {
    let deps = deps();
    let at = now();
    let old_secret = busline_testkit::new_standard_webhooks_secret();
    let old = signed_headers_as(
        Scheme::StandardWebhooks,
        &old_secret,
        SAMPLE_SHOP_ORDER,
        "dlv-rot",
        at,
    );
    let new = signed_headers_as(
        Scheme::StandardWebhooks,
        SHOP_SECRET,
        SAMPLE_SHOP_ORDER,
        "dlv-rot",
        at,
    );
    let both = format!("{} {}", old[2].1, new[2].1);
    let mut headers = new.clone();
    headers[2].1 = both;
    assert_eq!(
        post_at(&deps, "shop", SAMPLE_SHOP_ORDER, headers, at)
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let (status, _) = post_at(&deps, "shop", SAMPLE_SHOP_ORDER, old, at).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old secret alone no longer signs"
    );
}

#[tokio::test]
async fn fifty_concurrent_copies_of_one_delivery_publish_one_event() {
    for (source, scheme, secret, body) in [
        (
            "shop",
            Scheme::StandardWebhooks,
            SHOP_SECRET,
            SAMPLE_SHOP_ORDER,
        ),
        (LEGACY.0, LEGACY.1, LEGACY.2, HELPDESK_USER),
    ] {
        let deps = deps();
        let headers = signed_headers_as(scheme, secret, body, "dlv-50", now());
        let copies = (0..50).map(|_| post_at(&deps, source, body, headers.clone(), now()));
        let answers = futures_util::future::join_all(copies).await;
        for (status, answer) in &answers {
            assert!(
                *status == StatusCode::ACCEPTED || *status == StatusCode::CONFLICT,
                "{scheme}: {status} {answer}"
            );
        }
        assert_eq!(deps.publisher.published().len(), 1, "{scheme}");
    }
}

#[tokio::test]
async fn schema_violations_are_capped_and_never_echo_a_value() {
    let deps = deps();
    let mut order: Value = serde_json::from_str(SAMPLE_SHOP_ORDER).unwrap();
    order["lines"] = json!(
        (0..30)
            .map(|_| json!({"sku": "S", "quantity": "PRIVATE-VALUE-4111", "unit_price_cents": 1}))
            .collect::<Vec<_>>()
    );
    let body = order.to_string();
    let (status, answer) = post_signed(&deps, &body, "dlv-cap").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["violations"].as_array().unwrap().len(),
        MAX_VIOLATIONS
    );
    assert_eq!(answer["violation_count"], 30);
    assert!(!answer.to_string().contains("PRIVATE-VALUE"), "{answer}");
}

#[tokio::test]
async fn a_stripe_event_without_an_event_id_is_refused_400() {
    let deps = deps();
    let (source, scheme, secret) = STRIPE;
    let body = r#"{"object":"event","type":"charge.refunded"}"#;
    let headers = signed_headers_as(scheme, secret, body, "ignored", now());
    let (status, answer) = post_at(&deps, source, body, headers, now()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_delivery_id"))
    );
    assert!(deps.publisher.published().is_empty());
}

/// A bus that never answers, as the EventBridge publisher meets one: `publish` gives up after its
/// own budget, `publish_until` at the deadline it is given.
struct HangingBus;

impl EventPublisher for HangingBus {
    async fn publish<T: serde::Serialize + Sync>(
        &self,
        _: &[Envelope<T>],
    ) -> Result<(), PublishError> {
        tokio::time::sleep(busline::bus::DEFAULT_PUBLISH_BUDGET).await;
        Err(PublishError::Unavailable(
            "no answer within the budget".into(),
        ))
    }

    async fn publish_until<T: serde::Serialize + Sync>(
        &self,
        _: &[Envelope<T>],
        deadline: Deadline,
    ) -> Result<(), PublishError> {
        tokio::time::sleep(deadline.remaining()).await;
        Err(PublishError::Unavailable(
            "no answer by the deadline".into(),
        ))
    }
}

/// Under overload ingest used to spend its fixed 5 s publish budget whatever was left of its
/// invocation, so Lambda killed it first: the sender got a 502 and the delivery's claim stayed in
/// progress until its lease ran out. Now the publish ends by the invocation's deadline less the
/// reserve, and the answer is a 503 with the reason, in time; the claim is released, so the
/// sender's retry is accepted at once.
#[tokio::test]
async fn a_bus_slower_than_the_invocations_time_is_a_503_before_the_deadline() {
    use lambda_http::RequestExt;
    let store = InMemoryIdempotencyStore::new();
    let hanging = deps_with(HangingBus, store.clone());
    let deadline = Deadline::after(std::time::Duration::from_millis(3_000));
    let mut context = lambda_http::Context::default();
    context.deadline = u64::try_from(deadline.epoch_millis()).unwrap();
    let headers = signed_headers(SHOP_SECRET, SAMPLE_SHOP_ORDER, "msg_hanging");
    let request = webhook_request("POST", "/webhooks/shop", SAMPLE_SHOP_ORDER, &headers)
        .with_lambda_context(context);
    let response = handle(request, &hanging).await;
    assert!(
        deadline.remaining() > std::time::Duration::ZERO,
        "answered before the invocation's deadline"
    );
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    assert_eq!(problem["error"], "bus_unavailable", "{problem}");

    // The claim was released: the sender's retry, once the bus answers, is published.
    let (status, answer) = post_signed(&deps_on(store), SAMPLE_SHOP_ORDER, "msg_hanging").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}
