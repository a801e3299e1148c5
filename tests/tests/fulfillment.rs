//! The fulfillment systems' reference implementation on LocalStack's DynamoDB: each step is
//! idempotent on the order, reservations are all or nothing, and every compensation succeeds when
//! there is nothing (left) to undo.

use busline::Classify;
use busline_fulfillment::dynamodb::DynamoDbFulfillment;
use busline_fulfillment::{
    CreditStanding, CustomerAccounts, FulfillmentError, Inventory, Invoicing, Order, Payments,
    Shipping,
};
use busline_tests::{SAMPLE_SHOP_ORDER, create_key_table, localstack};

async fn systems() -> (DynamoDbFulfillment, Order) {
    let aws = localstack().await.unwrap();
    let table = format!(
        "fulfillment-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    create_key_table(&aws, &table, None).await.unwrap();
    let systems = DynamoDbFulfillment::new(aws_sdk_dynamodb::Client::new(&aws), &table);
    systems.put_stock("KB-RED-01", 5, 4).await.unwrap();
    systems.put_stock("MS-BLK-07", 10, 2).await.unwrap();
    let standing = CreditStanding {
        limit_cents: 100_000,
        owed_cents: 0,
    };
    systems.put_customer("C-42", standing, false).await.unwrap();
    (systems, serde_json::from_str(SAMPLE_SHOP_ORDER).unwrap())
}

#[tokio::test]
async fn a_reservation_is_all_or_nothing_idempotent_and_released_once() {
    let (systems, order) = systems().await;

    let reservation = systems.reserve(&order).await.unwrap();
    assert_eq!(
        reservation.below_reorder_point,
        ["KB-RED-01"],
        "5 - 2 = 3 is under 4"
    );
    assert_eq!(systems.stock("KB-RED-01").await.unwrap(), Some(3));
    // A retried step answers as the first time and takes nothing more.
    assert_eq!(systems.reserve(&order).await.unwrap(), reservation);
    assert_eq!(systems.stock("KB-RED-01").await.unwrap(), Some(3));
    assert_eq!(systems.stock("MS-BLK-07").await.unwrap(), Some(9));

    // Not enough keyboards for another order: nothing at all is reserved for it.
    let mut big = order.clone();
    big.order_id = "SO-BIG".into();
    big.lines[0].quantity = 10;
    big.total_cents = 10 * 1999 + 600;
    let error = systems.reserve(&big).await.unwrap_err();
    assert!(
        matches!(&error, FulfillmentError::OutOfStock { sku, requested: 10, available: 3 } if sku == "KB-RED-01"),
        "{error}"
    );
    assert_eq!(error.error_type(), "OutOfStock");
    assert_eq!(systems.stock("MS-BLK-07").await.unwrap(), Some(9));
    assert_eq!(systems.reservation("SO-BIG").await.unwrap(), None);

    // An unknown SKU is out of stock too.
    let mut unknown = order.clone();
    unknown.order_id = "SO-UNKNOWN".into();
    unknown.lines[1].sku = "NOPE".into();
    assert!(matches!(
        systems.reserve(&unknown).await,
        Err(FulfillmentError::OutOfStock { available: 0, .. })
    ));

    systems.release(&order.order_id).await.unwrap();
    systems.release(&order.order_id).await.unwrap();
    systems.release("SO-NEVER-RESERVED").await.unwrap();
    assert_eq!(systems.stock("KB-RED-01").await.unwrap(), Some(5));
    assert_eq!(systems.stock("MS-BLK-07").await.unwrap(), Some(10));
}

#[tokio::test]
async fn a_payment_is_captured_once_and_refunded_once() {
    let (systems, order) = systems().await;
    let payment = systems.capture(&order).await.unwrap();
    assert_eq!(payment.amount_cents, 4598);
    assert_eq!(systems.capture(&order).await.unwrap(), payment);
    assert_eq!(
        systems
            .payment(&order.order_id)
            .await
            .unwrap()
            .unwrap()
            .net_cents(),
        4598
    );

    systems.refund(&order.order_id).await.unwrap();
    systems.refund(&order.order_id).await.unwrap();
    systems.refund("SO-NEVER-PAID").await.unwrap();
    assert_eq!(
        systems
            .payment(&order.order_id)
            .await
            .unwrap()
            .unwrap()
            .net_cents(),
        0
    );
    let after_refund = systems.capture(&order).await.unwrap_err();
    assert_eq!(after_refund.error_type(), "FulfillmentConflict");

    let mut declined = order.clone();
    declined.order_id = "SO-DECLINED".into();
    declined.customer.id = "C-BROKE".into();
    let standing = CreditStanding {
        limit_cents: 100_000,
        owed_cents: 0,
    };
    systems
        .put_customer("C-BROKE", standing, true)
        .await
        .unwrap();
    let error = systems.capture(&declined).await.unwrap_err();
    assert_eq!(error.error_type(), "PaymentDeclined");
    assert_eq!(systems.payment("SO-DECLINED").await.unwrap(), None);
}

#[tokio::test]
async fn a_shipment_is_created_once_cancelled_once_and_refused_where_the_carrier_does_not_go() {
    let (systems, order) = systems().await;
    let shipment = systems.create(&order).await.unwrap();
    assert!(shipment.tracking_number.starts_with("BL"));
    assert_eq!(shipment.picking_slip, ["2 x KB-RED-01", "1 x MS-BLK-07"]);
    assert_eq!(systems.create(&order).await.unwrap(), shipment);

    systems.cancel(&order.order_id).await.unwrap();
    systems.cancel(&order.order_id).await.unwrap();
    systems.cancel("SO-NEVER-SHIPPED").await.unwrap();
    assert_eq!(
        systems
            .shipment(&order.order_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        "CANCELLED"
    );

    let mut antarctica = order.clone();
    antarctica.order_id = "SO-AQ".into();
    antarctica.shipping_address.as_mut().unwrap().country = "AQ".into();
    let error = systems.create(&antarctica).await.unwrap_err();
    assert_eq!(error.error_type(), "ShipmentRejected");
    assert_eq!(systems.shipment("SO-AQ").await.unwrap(), None);
}

#[tokio::test]
async fn an_invoice_is_posted_once_and_credit_is_read() {
    let (systems, order) = systems().await;
    let invoice = systems.post(&order).await.unwrap();
    assert_eq!(systems.post(&order).await.unwrap(), invoice);
    assert_eq!(
        systems.invoice(&order.order_id).await.unwrap(),
        Some(invoice.invoice_id)
    );

    let standing = systems.credit("C-42").await.unwrap();
    standing.check("C-42", order.total_cents).unwrap();
    let nobody = systems.credit("C-UNKNOWN").await.unwrap();
    assert_eq!(
        nobody.check("C-UNKNOWN", 1).unwrap_err().error_type(),
        "CreditLimitExceeded"
    );
}
