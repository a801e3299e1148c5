//! The status projection's table is gone while an order runs, on the deployed stack. The projection
//! is a read model: its outage must not change the order's outcome. Before, every step that
//! succeeded failed with `OrderStatusUnavailable`, and past its retries the saga compensated: a
//! taken payment was refunded because a status table was down. Now the order is fulfilled, paid
//! once, and its steps count the missed writes (`StatusWriteFailed`). Its own test binary: it
//! deletes the stack's table (and creates it again), which the other saga tests read.

use std::time::Duration;

use busline_tests::saga::Scenario;
use busline_tests::{create_table, localstack};

#[tokio::test]
async fn an_order_is_fulfilled_and_paid_once_while_its_status_table_is_gone() {
    let aws = localstack().await.unwrap();
    let scenario = Scenario::new(&aws, 1_000_000, false, 0).await.unwrap();
    let table = scenario
        .stack()
        .output("OrderStatusTableName")
        .unwrap()
        .to_owned();
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    dynamodb
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();

    let placed = scenario.place().await;
    let finished = match placed {
        Ok(()) => scenario.finished(Duration::from_secs(120)).await,
        Err(e) => Err(e),
    };
    create_table(&aws, &table, "order_id", None)
        .await
        .expect("the status table is created again for the other tests");
    let finished = finished.unwrap();

    assert_eq!(finished.output["status"], "FULFILLED", "{finished:?}");
    assert!(
        !finished.states.iter().any(|s| s.starts_with("Refund")
            || s.starts_with("Release")
            || s.starts_with("Cancel")),
        "nothing was compensated: {:?}",
        finished.states
    );
    let payment = scenario
        .systems
        .payment(&scenario.order.order_id)
        .await
        .unwrap()
        .expect("the payment was taken");
    assert_eq!(
        payment.net_cents(),
        scenario.order.total_cents,
        "paid once, not refunded"
    );
    let events = scenario.events(Duration::from_secs(3)).await.unwrap();
    let fulfilled = events
        .iter()
        .filter(|e| e["type"] == "io.busline.order.fulfilled.v1")
        .count();
    assert_eq!(fulfilled, 1, "{events:?}");
}
