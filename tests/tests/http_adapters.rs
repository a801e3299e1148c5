//! The fulfillment systems' HTTP adapters against a stub HTTP server (`wiremock`): the
//! `Idempotency-Key` each change carries, retries on 5xx and 429 within the toolkit's policy, and
//! business refusals mapped to the saga's error types.

use std::time::Duration;

use busline::Classify;
use busline::retry::Backoff;
use busline_fulfillment::http::{HttpSystem, IDEMPOTENCY_KEY_HEADER};
use busline_fulfillment::{
    CustomerAccounts, CustomerNotifications, FulfilledNotice, Inventory, Invoicing, Order,
    Payments, Shipping,
};
use busline_tests::SAMPLE_SHOP_ORDER;
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn order() -> Order {
    serde_json::from_str(SAMPLE_SHOP_ORDER).unwrap()
}

fn system(server: &MockServer, name: &'static str) -> HttpSystem {
    HttpSystem::new(server.uri(), name, Duration::from_secs(2))
        .unwrap()
        .with_backoff(Backoff {
            max_attempts: 3,
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(10),
        })
}

#[tokio::test]
async fn a_payment_carries_its_idempotency_key_and_survives_a_503() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/payments"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/payments"))
        .and(header(IDEMPOTENCY_KEY_HEADER, "SO-1001:take-payment"))
        .and(body_partial_json(
            json!({"order_id": "SO-1001", "total_cents": 4598}),
        ))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(
                json!({"payment_id": "pay-1", "amount_cents": 4598, "currency": "EUR"}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let payment = system(&server, "PaymentsUnavailable")
        .capture(&order())
        .await
        .unwrap();
    assert_eq!(payment.payment_id, "pay-1");
}

#[tokio::test]
async fn business_refusals_become_the_saga_error_types() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/payments"))
        .respond_with(
            ResponseTemplate::new(402).set_body_json(json!({"reason": "insufficient funds"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(
            ResponseTemplate::new(409).set_body_json(json!({"sku": "KB-RED-01", "available": 1})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/shipments"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(json!({"reason": "no carrier to AQ"})),
        )
        .mount(&server)
        .await;
    let declined = system(&server, "PaymentsUnavailable")
        .capture(&order())
        .await
        .unwrap_err();
    assert_eq!(declined.error_type(), "PaymentDeclined");
    assert!(
        declined.to_string().contains("insufficient funds"),
        "{declined}"
    );
    let out = system(&server, "InventoryUnavailable")
        .reserve(&order())
        .await
        .unwrap_err();
    assert_eq!(
        out.to_string(),
        "SKU KB-RED-01 is out of stock: 2 requested, 1 available"
    );
    let rejected = system(&server, "ShippingUnavailable")
        .create(&order())
        .await
        .unwrap_err();
    assert_eq!(rejected.error_type(), "ShipmentRejected");
}

#[tokio::test]
async fn an_outage_that_outlasts_the_retries_is_retryable_for_the_state_machine() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/invoices"))
        .respond_with(ResponseTemplate::new(500).set_body_string("ledger locked"))
        .expect(3)
        .mount(&server)
        .await;
    let error = system(&server, "InvoicingUnavailable")
        .post(&order())
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "InvoicingUnavailable");
    assert_eq!(error.class(), busline::ErrorClass::Retryable);
}

#[tokio::test]
async fn compensations_with_nothing_to_undo_succeed_and_carry_their_keys() {
    let server = MockServer::start().await;
    for (verb, route, key) in [
        (
            "DELETE",
            "/reservations/SO-1001",
            "SO-1001:release-inventory",
        ),
        ("POST", "/payments/SO-1001/refund", "SO-1001:refund-payment"),
        (
            "POST",
            "/shipments/SO-1001/cancel",
            "SO-1001:cancel-shipment",
        ),
    ] {
        Mock::given(method(verb))
            .and(path(route))
            .and(header(IDEMPOTENCY_KEY_HEADER, key))
            .respond_with(ResponseTemplate::new(404))
            .expect(1)
            .mount(&server)
            .await;
    }
    system(&server, "InventoryUnavailable")
        .release("SO-1001")
        .await
        .unwrap();
    system(&server, "PaymentsUnavailable")
        .refund("SO-1001")
        .await
        .unwrap();
    system(&server, "ShippingUnavailable")
        .cancel("SO-1001")
        .await
        .unwrap();
}

#[tokio::test]
async fn credit_and_invoices_are_read_from_their_systems() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/customers/C-42/credit"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"limit_cents": 5000, "owed_cents": 1000})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/invoices"))
        .and(header(IDEMPOTENCY_KEY_HEADER, "SO-1001:post-invoice"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"invoice_id": "INV-9", "amount_cents": 4598})),
        )
        .mount(&server)
        .await;
    let accounts = system(&server, "CustomerAccountsUnavailable");
    let standing = accounts.credit("C-42").await.unwrap();
    assert_eq!(
        standing.check("C-42", 4598).unwrap_err().error_type(),
        "CreditLimitExceeded"
    );
    let unknown = accounts.credit("C-NOBODY").await.unwrap();
    assert_eq!((unknown.limit_cents, unknown.owed_cents), (0, 0));
    let invoice = system(&server, "InvoicingUnavailable")
        .post(&order())
        .await
        .unwrap();
    assert_eq!(invoice.invoice_id, "INV-9");
}

#[tokio::test]
async fn a_fulfilled_notice_is_one_email_with_its_key_and_a_refused_one_says_why() {
    let server = MockServer::start().await;
    let order = order();
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header(IDEMPOTENCY_KEY_HEADER, "SO-1001:notify-fulfilled"))
        .and(body_partial_json(json!({
            "to": order.customer.email,
            "template": "order-fulfilled",
            "tracking_number": "TRK-42",
        })))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let notice = FulfilledNotice {
        order_id: order.order_id.clone(),
        customer: order.customer.clone(),
        tracking_number: "TRK-42".to_owned(),
    };
    let emails = system(&server, "EmailUnavailable");
    emails.order_fulfilled(&notice).await.unwrap();

    let refused = FulfilledNotice {
        order_id: "SO-2".to_owned(),
        ..notice
    };
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header(IDEMPOTENCY_KEY_HEADER, "SO-2:notify-fulfilled"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(json!({"reason": "mailbox does not exist"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let error = emails.order_fulfilled(&refused).await.unwrap_err();
    assert_eq!(error.error_type(), "NotificationRejected");
    assert!(
        error.to_string().contains("mailbox does not exist"),
        "{error}"
    );
}
