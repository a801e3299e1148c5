use std::sync::Mutex;

use busline::batch::InMemoryDeadLetterQueue;

use super::*;

const FULFILLED: &str = include_str!("../../../tests/fixtures/eventbridge-order-fulfilled.json");

/// The email API in memory: what it was asked to send, and how it answers.
#[derive(Default)]
struct Emails {
    sent: Mutex<Vec<FulfilledNotice>>,
    answer: Option<fn(&FulfilledNotice) -> FulfillmentError>,
}

impl CustomerNotifications for Emails {
    async fn order_fulfilled(&self, notice: &FulfilledNotice) -> Result<(), FulfillmentError> {
        if let Some(answer) = self.answer {
            return Err(answer(notice));
        }
        self.sent.lock().unwrap().push(notice.clone());
        Ok(())
    }
}

fn event() -> EventBridgeEvent<Value> {
    serde_json::from_str(FULFILLED).unwrap()
}

#[tokio::test]
async fn a_fulfilled_order_becomes_one_email_with_its_tracking_number() {
    let (emails, dlq) = (Emails::default(), InMemoryDeadLetterQueue::new());
    assert_eq!(
        handle(event(), &emails, &dlq).await.unwrap(),
        Outcome::Notified
    );
    let sent = emails.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].order_id, "SO-1001");
    assert_eq!(sent[0].customer.email, "ada@example.com");
    assert_eq!(sent[0].tracking_number, "BL1Z7K3Q9P");
    assert!(dlq.letters().is_empty());
}

#[tokio::test]
async fn an_unreachable_email_api_fails_the_invocation_so_lambda_retries() {
    let emails = Emails {
        answer: Some(|_| FulfillmentError::Unavailable {
            system: "EmailUnavailable",
            source: "connection refused".into(),
        }),
        ..Emails::default()
    };
    let dlq = InMemoryDeadLetterQueue::new();
    let error = handle(event(), &emails, &dlq).await.unwrap_err();
    assert_eq!(error.error_type(), "EmailUnavailable");
    assert!(
        dlq.letters().is_empty(),
        "Lambda's own retries and destination take it from here"
    );
}

#[tokio::test]
async fn a_refused_notice_and_a_malformed_event_are_dead_lettered_with_the_reason() {
    let emails = Emails {
        answer: Some(|notice| FulfillmentError::NotificationRejected {
            order_id: notice.order_id.clone(),
            reason: "mailbox does not exist".to_owned(),
        }),
        ..Emails::default()
    };
    let dlq = InMemoryDeadLetterQueue::new();
    assert_eq!(
        handle(event(), &emails, &dlq).await.unwrap(),
        Outcome::DeadLettered("NotificationRejected".to_owned())
    );

    let mut malformed = event();
    malformed.detail["data"]
        .as_object_mut()
        .unwrap()
        .remove("tracking_number");
    assert_eq!(
        handle(malformed, &emails, &dlq).await.unwrap(),
        Outcome::DeadLettered("MalformedEvent".to_owned())
    );
    let letters = dlq.letters();
    assert_eq!(letters.len(), 2);
    assert!(letters[0].reason.contains("mailbox does not exist"));
    assert!(
        letters[1].reason.contains("tracking_number"),
        "{}",
        letters[1].reason
    );
    let body: Value = serde_json::from_str(&letters[1].body).unwrap();
    assert_eq!(
        body["detail"]["subject"], "SO-1001",
        "the whole event is kept for redrive"
    );
}

#[tokio::test]
async fn a_dead_letter_queue_that_cannot_be_reached_fails_the_invocation() {
    let emails = Emails {
        answer: Some(|notice| FulfillmentError::NotificationRejected {
            order_id: notice.order_id.clone(),
            reason: "bad address".to_owned(),
        }),
        ..Emails::default()
    };
    let dlq = InMemoryDeadLetterQueue::new();
    dlq.set_unavailable(true);
    let error = handle(event(), &emails, &dlq).await.unwrap_err();
    assert_eq!(error.error_type(), "DeadLetterUnavailable");
}
