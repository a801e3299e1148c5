//! CDC on the deployed stack: writes to the ERP customers table reach the bus through its stream and
//! the cdc-stream function (a real process, invoked by LocalStack's DynamoDB stream mapping) as
//! Debezium-style change events, in order, with `tax_id` (the stack's `CdcDropFields`) removed.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use busline_tests::{DeployedStack, PATIENCE, invoke, localstack, receive, watch_bus};
use serde_json::{Value, json};

#[tokio::test]
async fn writes_to_the_source_table_appear_on_the_bus_as_ordered_changes() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let customer = format!("C-cdc-{tag}");
    let queue = watch_bus(
        &aws,
        stack.output("EventBusName").unwrap(),
        &format!("cdc-{tag}"),
        &json!({"detail-type": ["io.busline.cdc.erp-customers.changed.v1"],
                "detail": {"subject": [format!("customer_id={customer}")]}}),
    )
    .await
    .unwrap();

    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let table = stack.output("ErpCustomersTableName").unwrap();
    let s = |v: &str| AttributeValue::S(v.to_owned());
    dynamodb
        .put_item()
        .table_name(table)
        .item("customer_id", s(&customer))
        .item("email", s("ada@example.com"))
        .item("tax_id", s("GB123456789"))
        .item("credit_limit", AttributeValue::N("5000".into()))
        .send()
        .await
        .unwrap();
    dynamodb
        .update_item()
        .table_name(table)
        .key("customer_id", s(&customer))
        .update_expression("SET email = :e")
        .expression_attribute_values(":e", s("ada@lovelace.dev"))
        .send()
        .await
        .unwrap();
    dynamodb
        .delete_item()
        .table_name(table)
        .key("customer_id", s(&customer))
        .send()
        .await
        .unwrap();

    let events = receive(&aws, &queue, 3, Duration::from_secs(2), PATIENCE)
        .await
        .unwrap();
    let mut changes: Vec<Value> = events.into_iter().map(|e| e["detail"].clone()).collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    // The bus does not promise order; the sequence number does (a decimal of up to 40 digits and
    // more: compared as a number, the longer is the later).
    changes.sort_by_key(|e| {
        let seq = e["data"]["source"]["sequence_number"]
            .as_str()
            .unwrap()
            .to_owned();
        (seq.len(), seq)
    });
    let ops: Vec<&str> = changes
        .iter()
        .map(|c| c["data"]["op"].as_str().unwrap())
        .collect();
    let sequence: Vec<&str> = changes
        .iter()
        .map(|c| c["data"]["source"]["sequence_number"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["c", "u", "d"], "sequence numbers {sequence:?}");
    let expected_after =
        json!({"customer_id": customer, "email": "ada@example.com", "credit_limit": 5000});
    assert_eq!(changes[0]["data"]["before"], Value::Null);
    assert_eq!(
        changes[0]["data"]["after"], expected_after,
        "tax_id is dropped"
    );
    assert_eq!(changes[1]["data"]["before"], expected_after);
    assert_eq!(changes[1]["data"]["after"]["email"], "ada@lovelace.dev");
    assert_eq!(changes[2]["data"]["before"]["email"], "ada@lovelace.dev");
    assert_eq!(changes[2]["data"]["after"], Value::Null);
    for change in &changes {
        assert_eq!(change["data"]["source"]["table"], table);
        assert_eq!(
            change["data"]["source"]["keys"],
            json!({"customer_id": customer})
        );
        assert!(change["data"]["ts_ms"].as_i64().is_some_and(|t| t > 0));
        assert!(!change.to_string().contains("GB123456789"), "{change}");
    }
}

#[tokio::test]
async fn a_malformed_stream_record_reaches_the_dead_letter_queue_with_its_reason() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/dynamodb-stream-event.json")).unwrap();
    let marker = format!("bad-{}", uuid::Uuid::new_v4().simple());
    event["Records"][1]["eventName"] = json!("TRUNCATE");
    event["Records"][1]["eventID"] = json!(marker);
    let (error, answer) = invoke(&aws, &format!("{}-cdc-stream", DeployedStack::NAME), &event)
        .await
        .unwrap();
    assert_eq!(error, None, "{answer}");
    assert_eq!(
        answer["batchItemFailures"],
        json!([]),
        "the rest of the batch went on: {answer}"
    );
    let letter = busline_tests::find_letter(
        &aws,
        stack.output("CdcDeadLetterQueueUrl").unwrap(),
        |body| body.contains(&marker),
        PATIENCE,
    )
    .await
    .unwrap();
    assert_eq!(
        letter.attribute("busline.error_type"),
        "MalformedStreamRecord"
    );
    assert!(
        letter
            .attribute("busline.reason")
            .contains("unknown eventName \"TRUNCATE\""),
        "{}",
        letter.attribute("busline.reason")
    );
    assert_eq!(letter.attribute("busline.record_id"), marker);
}

/// A change too large for the bus (a 300 KB attribute, in an item near DynamoDB's 400 KB limit)
/// flows end to end: cdc-stream checks its body in to the stack's claim-check bucket and publishes
/// the event with a `dataref`; the customer master resolves it and merges the ERP's email. Before,
/// it was resumed at until Lambda bisected and dropped it, with the records behind it.
#[tokio::test]
async fn a_300_kb_change_flows_end_to_end_by_claim_check() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let customer = format!("C-big-{tag}");
    let queue = watch_bus(
        &aws,
        stack.output("EventBusName").unwrap(),
        &format!("cdc-big-{tag}"),
        &json!({"detail-type": ["io.busline.cdc.erp-customers.changed.v1"],
                "detail": {"subject": [format!("customer_id={customer}")]}}),
    )
    .await
    .unwrap();
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let s = |v: &str| AttributeValue::S(v.to_owned());
    dynamodb
        .put_item()
        .table_name(stack.output("ErpCustomersTableName").unwrap())
        .item("customer_id", s(&customer))
        .item("email", s("big@example.com"))
        .item("notes", s(&"n".repeat(300 * 1024)))
        .send()
        .await
        .unwrap();

    let events = receive(&aws, &queue, 1, Duration::from_secs(2), PATIENCE)
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let detail = &events[0]["detail"];
    let dataref = detail["dataref"]
        .as_str()
        .expect("the event carries a dataref");
    let bucket = stack.output("ClaimCheckBucketName").unwrap();
    assert!(dataref.starts_with(&format!("s3://{bucket}/")), "{dataref}");
    assert!(detail["data"]["bytes"].as_u64().unwrap() > 300 * 1024);

    // The consumer's side: the master resolves the payload and merges the ERP's email.
    let started = std::time::Instant::now();
    loop {
        let item = dynamodb
            .get_item()
            .table_name(stack.output("CustomerMasterTableName").unwrap())
            .key("customer_id", s(&customer))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item;
        if let Some(item) = item {
            let record: Value = serde_dynamo::from_item(item).unwrap();
            assert_eq!(
                record["fields"]["email"]["value"], "big@example.com",
                "{record}"
            );
            assert_eq!(record["fields"]["email"]["source"], "erp");
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the master never merged the checked-in change"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
