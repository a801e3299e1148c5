//! A saga step pointed at an external system: the deployed take-payment binary, as its own function
//! with `PAYMENTS_API_URL` set to a stub HTTP server, captures through the stub with the order's
//! `Idempotency-Key`, and a `402` comes back as `PaymentDeclined`, the errorType the state machine
//! matches. The real function process, invoked through LocalStack's Lambda API.

use busline_fulfillment::http::IDEMPOTENCY_KEY_HEADER;
use busline_tests::saga::Scenario;
use busline_tests::{DeployedStack, deploy_process_function, invoke, localstack};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The take-payment binary `make deploy-local` built for the stack.
fn take_payment_binary() -> String {
    format!(
        "{}/../.state/functions/take-payment/bootstrap",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test]
async fn take_payment_uses_the_payment_provider_its_url_names() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let server = MockServer::start().await;
    let paid = Scenario::new(&aws, 1_000_000, false, 0).await.unwrap();
    let declined = Scenario::new(&aws, 1_000_000, false, 0).await.unwrap();
    Mock::given(method("POST"))
        .and(path("/payments"))
        .and(header(
            IDEMPOTENCY_KEY_HEADER,
            format!("{}:take-payment", paid.order.order_id),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "payment_id": "psp-1", "amount_cents": paid.order.total_cents, "currency": "EUR"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/payments"))
        .and(header(
            IDEMPOTENCY_KEY_HEADER,
            format!("{}:take-payment", declined.order.order_id),
        ))
        .respond_with(
            ResponseTemplate::new(402).set_body_json(json!({"reason": "insufficient funds"})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let function = format!(
        "busline-external-take-payment-{}",
        &paid.order.order_id[3..]
    );
    let uri = server.uri();
    deploy_process_function(
        &aws,
        &function,
        &take_payment_binary(),
        10,
        &[
            ("PAYMENTS_API_URL", uri.as_str()),
            (
                "ORDER_STATUS_TABLE",
                stack.output("OrderStatusTableName").unwrap(),
            ),
        ],
    )
    .await
    .unwrap();

    let (error, answer) = invoke(&aws, &function, &json!({"order": paid.order}))
        .await
        .unwrap();
    assert_eq!(error, None, "{answer}");
    assert_eq!(answer["payment_id"], "psp-1");
    assert!(
        paid.systems
            .payment(&paid.order.order_id)
            .await
            .unwrap()
            .is_none(),
        "the reference ledger is not touched"
    );
    let (error, answer) = invoke(&aws, &function, &json!({"order": declined.order}))
        .await
        .unwrap();
    assert!(error.is_some());
    assert_eq!(answer["errorType"], "PaymentDeclined", "{answer}");
    assert!(
        answer["errorMessage"]
            .as_str()
            .unwrap()
            .contains("insufficient funds"),
        "{answer}"
    );
    let (_, status) = declined.status().await.unwrap();
    assert_eq!(
        status["status"], "FAILING",
        "the step recorded its failure: {status}"
    );
    aws_sdk_lambda::Client::new(&aws)
        .delete_function()
        .function_name(&function)
        .send()
        .await
        .unwrap();
}
