//! busline's AWS adapters against LocalStack: the same contracts their in-memory twins keep. The
//! reliability toolkit's adapters have theirs in `reliability.rs`.

use std::time::Duration;

use busline::bus::{EventBridgePublisher, EventPublisher};
use busline::{Envelope, EventType};
use busline_tests::{IngestStack, PATIENCE, SHOP_ORDER_PLACED, create_table, localstack, receive};
use serde_json::json;

#[tokio::test]
async fn the_eventbridge_publisher_batches_and_delivers_every_event() {
    let aws = localstack().await.unwrap();
    let prefix = format!("bus-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let stack = IngestStack::create(&aws, &prefix).await.unwrap();
    let publisher =
        EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&aws), &stack.bus_name);

    // 23 events: three PutEvents calls of at most ten entries.
    let events: Vec<Envelope<_>> = (0..23)
        .map(|i| {
            Envelope::new(
                format!("evt-{i}"),
                "busline.test",
                EventType::parse(SHOP_ORDER_PLACED).unwrap(),
                json!({"n": i}),
            )
            .with_subject(format!("order-{i}"))
        })
        .collect();
    publisher.publish(&events).await.unwrap();

    let messages = receive(&aws, &stack.queue_url, 23, Duration::from_secs(2), PATIENCE)
        .await
        .unwrap();
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| m["detail"]["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort_by_key(|id| id[4..].parse::<u32>().unwrap());
    assert_eq!(ids, (0..23).map(|i| format!("evt-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_dynamodb_audit_trail_keeps_the_audit_contract() {
    let aws = localstack().await.unwrap();
    let table = format!("audit-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    create_table(&aws, &table, "pk", Some("sk")).await.unwrap();
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    busline::audit::contract(
        &busline::audit::DynamoDbAuditTrail::new(dynamodb, &table),
        "",
    )
    .await;
}

#[tokio::test]
async fn the_dynamodb_order_tracker_keeps_the_status_contract() {
    let aws = localstack().await.unwrap();
    let table = format!(
        "status-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    create_table(&aws, &table, "order_id", None).await.unwrap();
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    busline_fulfillment::status::contract(
        &busline_fulfillment::status::DynamoDbOrderTracker::new(dynamodb, &table),
        "",
    )
    .await;
}

#[tokio::test]
async fn the_s3_claim_check_store_keeps_the_contract() {
    let aws = localstack().await.unwrap();
    let bucket = format!(
        "claims-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    busline::claim_check::contract(&busline::claim_check::S3PayloadStore::new(&aws, &bucket)).await;
}

/// The two DynamoDB idioms every store builds on, as DynamoDB (LocalStack) answers them: a failed
/// condition is an answer carrying the item in the way, and a cancelled transaction is an answer
/// with one reason per item, in order.
#[tokio::test]
async fn the_conditional_put_and_transaction_answer_with_what_stood_in_the_way() {
    use aws_sdk_dynamodb::types::{
        AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    };
    use busline::dynamodb::{Conditional, Transacted, is_condition_failure, put_if, transact_if};

    let aws = localstack().await.unwrap();
    let table = format!("cond-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    create_table(&aws, &table, "pk", None).await.unwrap();
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let put = |pk: &str, value: &str| {
        dynamodb
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(pk.to_owned()))
            .item("value", AttributeValue::S(value.to_owned()))
            .condition_expression("attribute_not_exists(pk)")
    };

    assert!(matches!(
        put_if(put("a", "first")).await.unwrap(),
        Conditional::Written
    ));
    match put_if(put("a", "second")).await.unwrap() {
        Conditional::ConditionFailed(Some(item)) => {
            assert_eq!(item["value"], AttributeValue::S("first".into()));
        }
        other => panic!("expected the first item in the way, got {other:?}"),
    }

    let item = |pk: &str| {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&table)
                    .item("pk", AttributeValue::S(pk.to_owned()))
                    .item("value", AttributeValue::S("in a transaction".into()))
                    .condition_expression("attribute_not_exists(pk)")
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .unwrap(),
            )
            .build()
    };
    let transact = |pks: &[&str]| {
        dynamodb
            .transact_write_items()
            .set_transact_items(Some(pks.iter().map(|pk| item(pk)).collect()))
    };
    match transact_if(transact(&["b", "a", "c"])).await.unwrap() {
        Transacted::Cancelled(reasons) => {
            assert_eq!(reasons.len(), 3, "{reasons:?}");
            assert!(!is_condition_failure(&reasons[0]), "{reasons:?}");
            assert!(is_condition_failure(&reasons[1]), "{reasons:?}");
            assert_eq!(
                reasons[1].item().map(|i| i["value"].clone()),
                Some(AttributeValue::S("first".into()))
            );
            assert!(!is_condition_failure(&reasons[2]), "{reasons:?}");
        }
        Transacted::Written => panic!("a transaction over an existing item was written"),
    }
    // Nothing of the cancelled transaction was written; without the item in the way, all of it is.
    let get = |pk: &str| {
        dynamodb
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .send()
    };
    assert!(get("b").await.unwrap().item.is_none());
    assert!(matches!(
        transact_if(transact(&["b", "c"])).await.unwrap(),
        Transacted::Written
    ));
    assert!(get("c").await.unwrap().item.is_some());
}

#[tokio::test]
async fn secrets_are_read_in_one_batch_in_the_order_asked_and_each_failure_named() {
    let aws = localstack().await.unwrap();
    let client = aws_sdk_secretsmanager::Client::new(&aws);
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let mut arns = Vec::new();
    for (name, value) in [
        ("a", "first "),
        ("b", "second"),
        ("c", "third"),
        ("blank", "  "),
    ] {
        let created = client
            .create_secret()
            .name(format!("busline/{tag}/{name}"))
            .secret_string(value)
            .send()
            .await
            .unwrap();
        arns.push(created.arn().unwrap().to_owned());
    }
    // By ARN, by name, and by ARN without Secrets Manager's suffix; asked in another order.
    let by_name = format!("busline/{tag}/a");
    let partial = arns[1][..arns[1].len() - 7].to_owned();
    let ids = [arns[2].as_str(), by_name.as_str(), partial.as_str()];
    let values = busline::aws::secret_strings(&client, &ids).await.unwrap();
    assert_eq!(values, ["third", "first", "second"]);

    let missing = format!("busline/{tag}/missing");
    let error = busline::aws::secret_strings(&client, &[arns[0].as_str(), missing.as_str()])
        .await
        .unwrap_err();
    let why = format!("{error}: {:?}", std::error::Error::source(&error));
    assert!(why.contains(&missing), "{why}");
    assert!(why.contains("ResourceNotFound"), "{why}");

    let error = busline::aws::secret_strings(&client, &[arns[3].as_str()])
        .await
        .unwrap_err();
    assert!(
        matches!(error, busline::aws::SecretError::Empty { ref secret_id } if *secret_id == arns[3]),
        "{error}"
    );
}
