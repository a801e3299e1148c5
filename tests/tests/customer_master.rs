//! The customer master on the deployed stack: changes to one customer from the CRM (webhook events),
//! the web shop (placed orders) and the ERP (its table's CDC stream), delivered shuffled and
//! duplicated, converge to one golden record with the expected winner per field, and the changes it
//! published rebuild it. A change missing what the master needs goes to the dead-letter queue with
//! the reason.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use busline::bus::{EventBridgePublisher, EventPublisher};
use busline::{Envelope, EventType};
use busline_tests::{DeployedStack, PATIENCE, find_letter, localstack, receive, watch_bus};
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};

fn envelope(event_type: &str, source: &str, data: Value) -> Envelope<Value> {
    Envelope::new(
        uuid::Uuid::new_v4().to_string(),
        source,
        EventType::parse(event_type).unwrap(),
        data,
    )
}

#[tokio::test]
async fn three_sources_shuffled_and_duplicated_converge_to_one_golden_record() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let customer = format!("C-mdm-{tag}");
    let changes = watch_bus(
        &aws,
        stack.output("EventBusName").unwrap(),
        &format!("mdm-{tag}"),
        &json!({"detail-type": ["io.busline.customer-master.changed.v1"], "detail": {"subject": [customer]}}),
    )
    .await
    .unwrap();
    let bus = EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::new(&aws),
        stack.output("EventBusName").unwrap(),
    );
    let now = Utc::now();
    let at = |seconds: i64| (now + TimeDelta::seconds(seconds)).to_rfc3339();
    // The CRM is older than everyone, the shop newer than everyone (within the master's 5-minute
    // bound on a source clock ahead of ours); the ERP writes now.
    let crm = envelope(
        "io.busline.crm.customer.updated.v1",
        "busline.webhook.crm",
        json!({"customer_id": customer, "updated_at": at(-600),
               "changes": {"phone": "+353 1 555 0100", "email": "crm@example.com", "tier": "gold"}}),
    );
    let mut order: Value =
        serde_json::from_str(include_str!("../../infra/events/shop-order.json")).unwrap();
    order["order_id"] = json!(format!("SO-mdm-{tag}"));
    order["placed_at"] = json!(at(240));
    order["customer"] = json!({"id": customer, "email": "shop@example.com", "name": "Ada (shop)"});
    order["shipping_address"] =
        json!({"line1": "1 Shop St", "city": "Dublin", "postal_code": "D01", "country": "IE"});
    let shop = envelope(
        "io.busline.shop.order.placed.v1",
        "busline.webhook.shop",
        order,
    );

    bus.publish(std::slice::from_ref(&shop)).await.unwrap();
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let erp_table = stack.output("ErpCustomersTableName").unwrap();
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let erp_address = AttributeValue::M(
        [
            ("line1", "9 Ledger Rd"),
            ("city", "Cork"),
            ("postal_code", "T12"),
            ("country", "IE"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), s(v)))
        .collect(),
    );
    for _ in 0..2 {
        dynamodb
            .put_item()
            .table_name(erp_table)
            .item("customer_id", s(&customer))
            .item("phone", s("+353 21 555 0199"))
            .item("email", s("erp@example.com"))
            .item("address", erp_address.clone())
            .item("tax_id", s("IE1234567T"))
            .send()
            .await
            .unwrap();
    }
    bus.publish(&[crm.clone(), shop, crm]).await.unwrap();

    let expected = json!({
        "phone": "+353 1 555 0100",         // the CRM always wins the phone, however old
        "email": "shop@example.com",        // the latest source timestamp wins the email
        "tier": "gold",                     // only the CRM sends it
        "name": "Ada (shop)",
        "address": {"line1": "9 Ledger Rd", "city": "Cork", "postal_code": "T12", "country": "IE"}, // the ERP wins addresses
    });
    let table = stack.output("CustomerMasterTableName").unwrap();
    let started = Instant::now();
    let record = loop {
        let item = dynamodb
            .get_item()
            .table_name(table)
            .key("customer_id", s(&customer))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item;
        if let Some(item) = item {
            let record: Value = serde_dynamo::from_item(item).unwrap();
            let values: serde_json::Map<String, Value> = record["fields"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v["value"].clone()))
                .collect();
            if Value::Object(values) == expected {
                break record;
            }
        }
        assert!(started.elapsed() < PATIENCE, "the master did not converge");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(record["fields"]["phone"]["source"], "crm");
    assert_eq!(record["fields"]["email"]["source"], "shop");
    assert_eq!(record["fields"]["address"]["source"], "erp");
    assert!(
        record["fields"].get("tax_id").is_none(),
        "the CDC filter dropped it before the bus"
    );

    // Downstream: the published changes, in version order, rebuild the master.
    let mut events: Vec<Value> = receive(&aws, &changes, 1, Duration::from_secs(3), PATIENCE)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e["detail"]["data"].clone())
        .collect();
    events.sort_by_key(|e| e["version"].as_u64());
    events.dedup_by_key(|e| e["version"].as_u64());
    let mut downstream = serde_json::Map::new();
    for event in &events {
        for (field, value) in event["changed"].as_object().unwrap() {
            downstream.insert(field.clone(), value.clone());
        }
    }
    assert_eq!(Value::Object(downstream), expected, "{events:?}");
}

#[tokio::test]
async fn a_change_missing_its_timestamp_is_dead_lettered_with_the_reason() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let customer = format!("C-mdm-bad-{}", uuid::Uuid::new_v4().simple());
    // Canonical, as the translator would publish it, but without its time.
    let bad = envelope(
        "io.busline.customer.updated.v1",
        "busline.translate",
        json!({"customer_id": customer, "source": "crm", "changes": {"phone": "+1"}}),
    );
    EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::new(&aws),
        stack.output("EventBusName").unwrap(),
    )
    .publish(&[bad])
    .await
    .unwrap();
    let letter = find_letter(
        &aws,
        stack.output("CustomerChangesDeadLetterQueueUrl").unwrap(),
        |body| body.contains(&customer),
        PATIENCE,
    )
    .await
    .unwrap();
    assert_eq!(
        letter.attribute("busline.error_type"),
        "MalformedCustomerChange"
    );
    assert!(
        letter.attribute("busline.reason").contains("/updated_at"),
        "{}",
        letter.attribute("busline.reason")
    );
}
