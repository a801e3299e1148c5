//! Redrive on LocalStack: letters parked by busline's dead-letter port (with their reason and
//! source) and a message SQS moved itself after `maxReceiveCount` are listed with their reasons,
//! and chosen ones go back to their source queue, without busline's diagnosis attributes; the rest
//! stay.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use busline::batch::{DeadLetter, DeadLetterQueue, SqsDeadLetterQueue};
use busline::redrive::{Selection, peek, redrive};
use busline_tests::{PATIENCE, create_queue, localstack, receive};
use serde_json::json;

#[tokio::test]
async fn chosen_letters_go_back_to_their_source_and_the_rest_stay() {
    let aws = localstack().await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (dlq, dlq_arn) = create_queue(&aws, &format!("redrive-dlq-{tag}"), &[])
        .await
        .unwrap();
    let policy = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1}).to_string();
    let (source, source_arn) = create_queue(
        &aws,
        &format!("redrive-source-{tag}"),
        &[(QueueAttributeName::RedrivePolicy, policy)],
    )
    .await
    .unwrap();

    let port = SqsDeadLetterQueue::new(sqs.clone(), &dlq);
    for (record, error_type) in [
        ("r-1", "NotAnEnvelope"),
        ("r-2", "TableUnavailable"),
        ("r-3", "NotAnEnvelope"),
    ] {
        port.send(&DeadLetter {
            body: format!("{{\"record\": \"{record}\"}}"),
            record_id: record.to_owned(),
            source: Some(source_arn.clone()),
            group: None,
            error_type: error_type.to_owned(),
            reason: format!("{record} failed: {error_type}"),
        })
        .await
        .unwrap();
    }
    // A letter from something that is not a queue, and one SQS moved on its own.
    port.send(&DeadLetter {
        body: "{\"record\": \"r-4\"}".to_owned(),
        record_id: "r-4".to_owned(),
        source: Some("arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/x".to_owned()),
        group: None,
        error_type: "MalformedStreamRecord".to_owned(),
        reason: "unknown eventName".to_owned(),
    })
    .await
    .unwrap();
    let native = sqs
        .send_message()
        .queue_url(&source)
        .message_body("{\"record\": \"r-5\"}")
        .send()
        .await
        .unwrap();
    for _ in 0..2 {
        // Received twice without being deleted: SQS moves it to the DLQ (maxReceiveCount 1).
        sqs.receive_message()
            .queue_url(&source)
            .visibility_timeout(1)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let native_id = native.message_id().unwrap().to_owned();

    let listed = peek(&sqs, &dlq, 10).await.unwrap();
    assert_eq!(listed.len(), 5, "{listed:?}");
    let r5 = listed.iter().find(|l| l.body.contains("r-5")).unwrap();
    assert_eq!(
        (r5.error_type.as_deref(), r5.message_id.as_str()),
        (None, native_id.as_str()),
        "SQS moved it, keeping its id"
    );
    let r2 = listed.iter().find(|l| l.body.contains("r-2")).unwrap();
    assert_eq!(r2.error_type.as_deref(), Some("TableUnavailable"));
    assert_eq!(r2.reason.as_deref(), Some("r-2 failed: TableUnavailable"));
    assert_eq!(r2.source.as_deref(), Some(source_arn.as_str()));

    let mut reports = 0;
    let done = redrive(
        &sqs,
        &dlq,
        &Selection {
            error_type: Some("NotAnEnvelope".to_owned()),
            ..Selection::default()
        },
        |_| reports += 1,
    )
    .await
    .unwrap();
    assert_eq!(done.moved, 2);
    assert!(reports >= 1, "progress is reported");
    let back = receive(&aws, &source, 2, Duration::from_secs(1), PATIENCE)
        .await
        .unwrap();
    let mut records: Vec<&str> = back.iter().map(|b| b["record"].as_str().unwrap()).collect();
    records.sort();
    assert_eq!(records, ["r-1", "r-3"]);

    assert_eq!(
        peek(&sqs, &dlq, 10).await.unwrap().len(),
        3,
        "what was passed over is visible again"
    );
    let done = redrive(
        &sqs,
        &dlq,
        &Selection {
            message_ids: vec![native_id.clone()],
            ..Selection::default()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        done.moved, 1,
        "the letter SQS moved goes back to the one queue that redrives to the DLQ: {done:?} {listed:?}"
    );

    let done = redrive(&sqs, &dlq, &Selection::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(done.moved, 1, "r-2");
    assert_eq!(done.skipped.len(), 1);
    assert!(
        done.skipped[0].1.contains("not a queue"),
        "{:?}",
        done.skipped
    );
}
