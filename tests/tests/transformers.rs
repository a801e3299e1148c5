//! The transformers on the deployed stack: a marketplace order, POSTed as the marketplace's signed
//! webhook, is translated to the canonical `order.placed.v2`, enriched from the customer master,
//! split per warehouse, and fulfilled by the saga; a v1 canonical order is upcast by its consumers;
//! a help-desk change reaches the customer master; what cannot be translated lands in the
//! transformers' dead-letter queue with the reason, and nothing half-translated goes out.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use busline::bus::{EventBridgePublisher, EventPublisher};
use busline::{Envelope, EventType};
use busline_fulfillment::CreditStanding;
use busline_fulfillment::dynamodb::DynamoDbFulfillment;
use busline_tests::{DeployedStack, PATIENCE, find_letter, localstack, receive, watch_bus};
use serde_json::{Value, json};

const SAMPLE: &str = include_str!("../../infra/events/marketplace-order.json");

/// The sample marketplace order with ids of its own: `(order number, customer id, body)`.
fn marketplace_order(tag: &str) -> (String, String, Value) {
    let mut body: Value = serde_json::from_str(SAMPLE).unwrap();
    let number = format!("402-{tag}");
    let customer = format!("C-mkt-{tag}");
    body["payload"]["orderNumber"] = json!(number);
    body["payload"]["buyer"]["buyerId"] = json!(customer);
    for item in body["payload"]["orderItems"].as_array_mut().unwrap() {
        item["sellerSku"] = json!(format!("{}-{tag}", item["sellerSku"].as_str().unwrap()));
    }
    (number, customer, body)
}

/// Events about `subject` of the transformers' types, routed to a queue of the test's own.
async fn watch(
    aws: &aws_config::SdkConfig,
    stack: &DeployedStack,
    subject: &str,
    tag: &str,
) -> String {
    watch_bus(
        aws,
        stack.output("EventBusName").unwrap(),
        &format!("transformers-{tag}"),
        &json!({"detail-type": ["io.busline.order.placed.v2", "io.busline.order.enriched.v1", "io.busline.fulfillment.requested.v1"],
                "detail": {"subject": [subject]}}),
    )
    .await
    .unwrap()
}

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .map(|e| &e["detail"])
        .filter(|d| d["type"] == event_type)
        .collect()
}

#[tokio::test]
async fn a_marketplace_order_is_translated_enriched_split_and_fulfilled() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let (number, customer, body) = marketplace_order(&tag);
    let order_id = format!("mkt-{number}");

    // The systems the saga drives know the SKUs and the customer; the master knows the customer.
    let systems = DynamoDbFulfillment::new(
        aws_sdk_dynamodb::Client::new(&aws),
        stack.output("FulfillmentTableName").unwrap(),
    );
    for item in body["payload"]["orderItems"].as_array().unwrap() {
        systems
            .put_stock(item["sellerSku"].as_str().unwrap(), 10, 0)
            .await
            .unwrap();
    }
    let standing = CreditStanding {
        limit_cents: 1_000_000,
        owed_cents: 0,
    };
    systems
        .put_customer(&customer, standing, false)
        .await
        .unwrap();
    let record = json!({"customer_id": customer, "version": 1, "published_version": 1, "last_change": {},
        "fields": {"tier": {"value": "gold", "source": "crm", "ts_ms": 1},
                   "credit_limit": {"value": 5000, "source": "erp", "ts_ms": 1}}});
    aws_sdk_dynamodb::Client::new(&aws)
        .put_item()
        .table_name(stack.output("CustomerMasterTableName").unwrap())
        .set_item(Some(serde_dynamo::to_item(&record).unwrap()))
        .send()
        .await
        .unwrap();

    let queue = watch(&aws, &stack, &order_id, &tag).await;
    let (status, answer) = stack
        .post_signed(
            &aws,
            "marketplace",
            "MarketplaceWebhookSecretArn",
            &body,
            &format!("dlv-{tag}"),
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{answer}");

    // One canonical order, one enriched order, two parts.
    let events = receive(&aws, &queue, 4, Duration::from_secs(3), PATIENCE)
        .await
        .unwrap();
    let placed = of_type(&events, "io.busline.order.placed.v2");
    let enriched = of_type(&events, "io.busline.order.enriched.v1");
    let parts = of_type(&events, "io.busline.fulfillment.requested.v1");
    assert_eq!(
        (placed.len(), enriched.len(), parts.len()),
        (1, 1, 2),
        "{events:#?}"
    );

    let placed = placed[0];
    assert_eq!(placed["source"], "busline.translate");
    assert_eq!(placed["data"]["channel"], "marketplace");
    assert_eq!(placed["data"]["external_id"], json!(number));
    assert_eq!(placed["data"]["total_cents"], 6497);
    let correlation = placed["correlationid"].as_str().unwrap();

    let enriched = enriched[0];
    assert_eq!(enriched["causationid"], placed["id"]);
    assert_eq!(enriched["correlationid"], correlation);
    assert_eq!(enriched["data"]["customer"]["status"], "known");
    assert_eq!(enriched["data"]["customer"]["tier"], "gold");
    assert_eq!(enriched["data"]["customer"]["credit_limit"], 5000);

    let mut parts: Vec<(String, u64, u64, Vec<u64>, String)> = parts
        .iter()
        .map(|p| {
            let d = &p["data"];
            (
                d["warehouse"].as_str().unwrap().to_owned(),
                d["sequence"].as_u64().unwrap(),
                d["total"].as_u64().unwrap(),
                d["lines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["line_no"].as_u64().unwrap())
                    .collect(),
                d["correlation_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    parts.sort();
    assert_eq!(
        parts,
        [
            ("AMS-2".to_owned(), 1, 2, vec![2], correlation.to_owned()),
            ("DUB-1".to_owned(), 2, 2, vec![1, 3], correlation.to_owned()),
        ]
    );

    // The saga starts from the enriched order and fulfils it.
    let mut view = Value::Null;
    for _ in 0..90 {
        let (code, body) = stack
            .call(
                "OrderStatusUrl",
                reqwest::Method::GET,
                &format!("/orders/{order_id}"),
                None,
                &Vec::new(),
            )
            .await
            .unwrap();
        view = body;
        if code == 200 && view["status"] == "FULFILLED" {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(view["status"], "FULFILLED", "{view:#}");
}

#[tokio::test]
async fn a_v1_canonical_order_is_upcast_by_the_enricher_and_the_splitter() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let order_id = format!("SO-v1-{tag}");
    let mut order: Value =
        serde_json::from_str(include_str!("../../infra/events/shop-order.json")).unwrap();
    order["order_id"] = json!(order_id);
    order["customer"]["id"] = json!(format!("C-unknown-{tag}"));
    let queue = watch(&aws, &stack, &order_id, &tag).await;
    let v1 = Envelope::new(
        format!("v1-{tag}"),
        "busline.legacy",
        EventType::parse("io.busline.order.placed.v1").unwrap(),
        order,
    )
    .with_subject(&order_id);
    EventBridgePublisher::new(
        aws_sdk_eventbridge::Client::new(&aws),
        stack.output("EventBusName").unwrap(),
    )
    .publish(&[v1])
    .await
    .unwrap();

    let events = receive(&aws, &queue, 3, Duration::from_secs(3), PATIENCE)
        .await
        .unwrap();
    let enriched = of_type(&events, "io.busline.order.enriched.v1");
    let parts = of_type(&events, "io.busline.fulfillment.requested.v1");
    assert_eq!((enriched.len(), parts.len()), (1, 2), "{events:#?}");
    let order = &enriched[0]["data"]["order"];
    assert_eq!(order["channel"], "unknown");
    assert_eq!(order["lines"][1]["line_no"], 2);
    // A customer the master does not know: enriched as unknown, not refused.
    assert_eq!(enriched[0]["data"]["customer"]["status"], "unknown");
    assert_eq!(enriched[0]["data"]["customer"]["tier"], "unknown");
}

#[tokio::test]
async fn an_untranslatable_event_is_dead_lettered_with_its_reason_and_nothing_goes_out() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let (number, _, mut body) = marketplace_order(&tag);
    // Valid for the marketplace's schema (each amount is well formed), but one item is in dollars.
    body["payload"]["orderItems"][1]["unitPrice"]["currencyCode"] = json!("USD");
    let queue = watch(&aws, &stack, &format!("mkt-{number}"), &tag).await;
    let (status, answer) = stack
        .post_signed(
            &aws,
            "marketplace",
            "MarketplaceWebhookSecretArn",
            &body,
            &format!("dlv-{tag}"),
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "ingest accepts it: {answer}");

    let letter = find_letter(
        &aws,
        stack.output("TransformersDeadLetterQueueUrl").unwrap(),
        |body| body.contains(&number),
        PATIENCE,
    )
    .await
    .unwrap();
    assert_eq!(letter.attribute("busline.error_type"), "InvalidEvent");
    assert!(
        letter
            .attribute("busline.reason")
            .contains("item 2's unitPrice is in USD, the order in EUR"),
        "{}",
        letter.attribute("busline.reason")
    );
    assert!(
        letter
            .attribute("busline.source")
            .contains("io.busline.marketplace.order.placed.v1")
    );
    // The letter holds the whole event, to be redriven as it came.
    let event: Value = serde_json::from_str(&letter.body).unwrap();
    assert_eq!(event["detail"]["data"], body);
    let out = receive(
        &aws,
        &queue,
        0,
        Duration::from_secs(3),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(out.is_empty(), "{out:#?}");
}

#[tokio::test]
async fn a_help_desk_change_reaches_the_customer_master_through_the_translator() {
    let aws = localstack().await.unwrap();
    let stack = DeployedStack::read(&aws).await.unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let customer = format!("C-hd-{tag}");
    let mut body: Value =
        serde_json::from_str(include_str!("../../infra/events/helpdesk-user.json")).unwrap();
    body["detail"]["external_id"] = json!(customer);
    let (status, answer) = stack
        .post_signed(
            &aws,
            "helpdesk",
            "HelpdeskWebhookSecretArn",
            &body,
            &format!("dlv-{tag}"),
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{answer}");

    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let mut record = None;
    for _ in 0..60 {
        let item = dynamodb
            .get_item()
            .table_name(stack.output("CustomerMasterTableName").unwrap())
            .key("customer_id", AttributeValue::S(customer.clone()))
            .send()
            .await
            .unwrap()
            .item;
        if let Some(item) = item {
            record = Some(serde_dynamo::from_item::<_, Value>(item).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let record = record.expect("the master has the customer");
    assert_eq!(record["fields"]["phone"]["value"], "+353 1 555 0199");
    assert_eq!(record["fields"]["phone"]["source"], "helpdesk");
    assert_eq!(
        record["fields"]["email"]["value"],
        "ada.lovelace@example.com"
    );
}
