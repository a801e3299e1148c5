//! The customer is told, on the deployed stack: a rule on `order.fulfilled` invokes notify-customer,
//! which sends one email through the email API (a stub HTTP server on 127.0.0.1:8025, where the
//! LocalStack deployment points `EmailApiUrl`); a notice the API refuses lands in the notifications
//! dead-letter queue with the reason. One test, as the stub holds the port.

use std::time::{Duration, Instant};

use busline_tests::saga::Scenario;
use busline_tests::{find_letter, localstack};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FINISH: Duration = Duration::from_secs(90);
const EMAIL_API: &str = "127.0.0.1:8025";

/// The requests the stub got for `order_id`'s notice.
async fn emails_for(server: &MockServer, order_id: &str) -> Vec<Value> {
    let key = format!("{order_id}:notify-fulfilled");
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            r.headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                == Some(key.as_str())
        })
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_fulfilled_order_is_emailed_once_and_a_refused_notice_is_dead_lettered() {
    let aws = localstack().await.unwrap();
    let listener =
        std::net::TcpListener::bind(EMAIL_API).expect("port 8025 is free for the stub email API");
    let server = MockServer::builder().listener(listener).start().await;

    let told = Scenario::new(&aws, 1_000_000, false, 0).await.unwrap();
    let refused = Scenario::new(&aws, 1_000_000, false, 0).await.unwrap();
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header(
            "idempotency-key",
            format!("{}:notify-fulfilled", refused.order.order_id),
        ))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(json!({"reason": "mailbox does not exist"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;

    told.place().await.unwrap();
    refused.place().await.unwrap();
    for scenario in [&told, &refused] {
        let finished = scenario.finished(FINISH).await.unwrap();
        assert_eq!(finished.output["status"], "FULFILLED", "{finished:?}");
    }

    let started = Instant::now();
    while emails_for(&server, &told.order.order_id).await.is_empty() && started.elapsed() < FINISH {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Time for a duplicate to show, were there one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let emails = emails_for(&server, &told.order.order_id).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    let shipment = told
        .systems
        .shipment(&told.order.order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(emails[0]["to"], told.order.customer.email.as_str());
    assert_eq!(
        emails[0]["tracking_number"],
        shipment.tracking_number.as_str()
    );
    assert_eq!(emails[0]["template"], "order-fulfilled");

    // The refused notice: in the dead-letter queue, the whole event with the reason beside it.
    let dlq = told
        .stack()
        .output("NotificationsDeadLetterQueueUrl")
        .unwrap()
        .to_owned();
    let order = format!("\"{}\"", refused.order.order_id);
    let letter = find_letter(&aws, &dlq, |body| body.contains(&order), FINISH)
        .await
        .expect("the refused notice reaches the dead-letter queue");
    let attribute = |name: &str| letter.attribute(name).to_owned();
    assert_eq!(attribute("busline.error_type"), "NotificationRejected");
    assert!(
        attribute("busline.reason").contains("mailbox does not exist"),
        "{}",
        attribute("busline.reason")
    );
    let body: Value = serde_json::from_str(&letter.body).unwrap();
    assert_eq!(body["detail-type"], "io.busline.order.fulfilled.v1");
    assert_eq!(
        emails_for(&server, &refused.order.order_id).await.len(),
        1,
        "refused once, not retried"
    );
}
