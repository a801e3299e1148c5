//! The order saga's test kit: an isolated scenario on the deployed stack (its own order id, SKUs and
//! customer), a watch on the events the saga publishes for that order, and the invariant checker
//! every saga test runs after its order has finished.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use aws_config::SdkConfig;
use busline::bus::{EventBridgePublisher, EventPublisher};
use busline::{Envelope, EventType};
use busline_fulfillment::dynamodb::DynamoDbFulfillment;
use busline_fulfillment::{CreditStanding, Order};
use serde_json::{Value, json};

use crate::{DeployedStack, SAMPLE_SHOP_ORDER, SHOP_ORDER_PLACED, receive, watch_bus};

/// Stock each scenario starts with, per SKU.
pub const INITIAL_STOCK: i64 = 10;

/// The saga's forward steps for an order that needs no approval, in the order they run: each is a
/// function of the stack.
pub const FORWARD_STEPS: &[&str] = &[
    "validate-order",
    "check-credit",
    "reserve-inventory",
    "take-payment",
    "create-shipment",
    "post-invoice",
];

/// One order on the deployed stack, with systems seeded for it alone.
pub struct Scenario {
    /// The order placed.
    pub order: Order,
    /// The fulfillment systems (the stack's reference implementation).
    pub systems: DynamoDbFulfillment,
    aws: SdkConfig,
    stack: DeployedStack,
    events_queue: Option<String>,
}

/// How an order's saga ended.
#[derive(Debug)]
pub struct Finished {
    /// The execution's status (`SUCCEEDED`, `FAILED`).
    pub status: String,
    /// Its output, for a succeeded one.
    pub output: Value,
    /// The states it entered, in order.
    pub states: Vec<String>,
    /// How many Lambda invocations failed along the way (retried or caught).
    pub failed_invocations: usize,
    /// When the execution started and stopped, Unix ms (Step Functions' clock).
    pub started_ms: f64,
    /// See `started_ms`.
    pub stopped_ms: f64,
    /// Time the Lambda tasks took as Step Functions saw them (scheduled → succeeded), ms.
    pub lambda_task_ms: f64,
}

/// The Lambda tasks' time in an execution's history, scheduled → succeeded, ms.
fn lambda_task_ms(events: &[aws_sdk_sfn::types::HistoryEvent]) -> f64 {
    use aws_sdk_sfn::types::HistoryEventType;
    let millis =
        |e: &aws_sdk_sfn::types::HistoryEvent| e.timestamp().to_millis().unwrap_or_default() as f64;
    let mut scheduled = None;
    let mut total = 0.0;
    for event in events {
        match event.r#type() {
            HistoryEventType::LambdaFunctionScheduled | HistoryEventType::TaskScheduled
                if event
                    .task_scheduled_event_details()
                    .is_none_or(|d| d.resource_type() == "lambda") =>
            {
                scheduled = Some(millis(event));
            }
            HistoryEventType::LambdaFunctionSucceeded | HistoryEventType::TaskSucceeded => {
                if let Some(at) = scheduled.take() {
                    total += millis(event) - at;
                }
            }
            _ => {}
        }
    }
    total
}

impl Scenario {
    /// Seeds stock (10 of each SKU, reorder point `reorder_point`) and a customer with
    /// `credit_limit_cents` whose card declines if `declines` is set, for a fresh copy of the sample
    /// order; and watches the saga's events for it.
    pub async fn new(
        aws: &SdkConfig,
        credit_limit_cents: i64,
        declines: bool,
        reorder_point: i64,
    ) -> Result<Self> {
        let mut scenario = Self::seeded(aws, credit_limit_cents, declines, reorder_point).await?;
        scenario.watch().await?;
        Ok(scenario)
    }

    /// As [`Scenario::new`], without the watch on its events (no queue, no rule): for benchmarks,
    /// where fifty watch rules on the bus would slow every event down.
    pub async fn seeded(
        aws: &SdkConfig,
        credit_limit_cents: i64,
        declines: bool,
        reorder_point: i64,
    ) -> Result<Self> {
        let stack = DeployedStack::read(aws).await?;
        let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let mut order: Order = serde_json::from_str(SAMPLE_SHOP_ORDER)?;
        order.order_id = format!("SO-{tag}");
        order.customer.id = format!("C-{tag}");
        for line in &mut order.lines {
            line.sku = format!("{}-{tag}", line.sku);
        }
        let systems = DynamoDbFulfillment::new(
            aws_sdk_dynamodb::Client::new(aws),
            stack.output("FulfillmentTableName")?,
        );
        for line in &order.lines {
            systems
                .put_stock(&line.sku, INITIAL_STOCK, reorder_point)
                .await?;
        }
        let standing = CreditStanding {
            limit_cents: credit_limit_cents,
            owed_cents: 0,
        };
        systems
            .put_customer(&order.customer.id, standing, declines)
            .await?;
        Ok(Self {
            order,
            systems,
            aws: aws.clone(),
            stack,
            events_queue: None,
        })
    }

    /// Routes the saga's events for this order to a queue of its own, for [`Scenario::events`].
    async fn watch(&mut self) -> Result<()> {
        let order_id = &self.order.order_id;
        let pattern = json!({"$or": [
            {"source": ["busline.saga.order-fulfillment"], "detail": {"data": {"order_id": [order_id]}}},
            {"source": ["busline.saga.reserve-inventory"], "detail": {"data": {"triggered_by_order": [order_id]}}}
        ]});
        let name = format!("saga-events-{}", &order_id[3..]);
        let bus = self.stack.output("EventBusName")?;
        self.events_queue = Some(watch_bus(&self.aws, bus, &name, &pattern).await?);
        Ok(())
    }

    /// Publishes the order's `order.placed` event, as the ingest function does.
    pub async fn place(&self) -> Result<()> {
        let envelope = Envelope::new(
            uuid::Uuid::new_v4().to_string(),
            "busline.webhook.shop",
            EventType::parse(SHOP_ORDER_PLACED)?,
            serde_json::from_str::<Value>(&self.webhook_body()?)?,
        )
        .with_subject(self.order.order_id.clone())
        .with_correlation_id(format!("corr-{}", self.order.order_id));
        EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&self.aws),
            self.stack.output("EventBusName")?,
        )
        .publish(&[envelope])
        .await?;
        Ok(())
    }

    /// The ARN of the order's execution (named after the order).
    pub fn execution_arn(&self) -> Result<String> {
        execution_arn(&self.stack, &self.order.order_id)
    }

    /// Waits up to `within` for the order's execution to finish.
    pub async fn finished(&self, within: Duration) -> Result<Finished> {
        let sfn = aws_sdk_sfn::Client::new(&self.aws);
        let arn = self.execution_arn()?;
        let started = Instant::now();
        loop {
            if let Ok(execution) = sfn.describe_execution().execution_arn(&arn).send().await {
                let status = execution.status().as_str().to_owned();
                if status != "RUNNING" {
                    let history = execution_history(&sfn, &arn).await?;
                    let states = history
                        .iter()
                        .filter_map(|e| e.state_entered_event_details())
                        .map(|d| d.name().to_owned())
                        .collect();
                    let failed_invocations = history
                        .iter()
                        .filter(|e| {
                            matches!(
                                e.r#type(),
                                aws_sdk_sfn::types::HistoryEventType::LambdaFunctionFailed
                                    | aws_sdk_sfn::types::HistoryEventType::TaskFailed
                            )
                        })
                        .count();
                    let output = execution
                        .output()
                        .map(serde_json::from_str)
                        .transpose()?
                        .unwrap_or(Value::Null);
                    let millis =
                        |t: &aws_smithy_types::DateTime| t.to_millis().unwrap_or_default() as f64;
                    return Ok(Finished {
                        status,
                        output,
                        states,
                        failed_invocations,
                        started_ms: millis(execution.start_date()),
                        stopped_ms: execution.stop_date().map_or(0.0, millis),
                        lambda_task_ms: lambda_task_ms(&history),
                    });
                }
            }
            if started.elapsed() > within {
                bail!(
                    "order {} did not finish within {within:?}",
                    self.order.order_id
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// How many executions the order started.
    pub async fn executions(&self) -> Result<usize> {
        let sfn = aws_sdk_sfn::Client::new(&self.aws);
        let machine = self.stack.output("OrderFulfillmentStateMachineArn")?;
        let listed = sfn
            .list_executions()
            .state_machine_arn(machine)
            .max_results(1000)
            .send()
            .await?;
        Ok(listed
            .executions()
            .iter()
            .filter(|e| e.name() == self.order.order_id)
            .count())
    }

    /// The saga's events for this order so far, as envelopes, waiting `settle` after the last.
    pub async fn events(&self, settle: Duration) -> Result<Vec<Value>> {
        let queue = self
            .events_queue
            .as_deref()
            .context("this scenario does not watch its events (Scenario::seeded)")?;
        let events = receive(&self.aws, queue, 0, settle, settle * 10).await?;
        Ok(events.into_iter().map(|e| e["detail"].clone()).collect())
    }

    /// The invariants every finished order keeps, fulfilled or not: stock back where it was or
    /// reduced by exactly this order; the payment ledger at zero or at exactly the order total; no
    /// live shipment for a failed order; exactly one terminal event. Returns the terminal event.
    pub async fn check_consistent(&self, fulfilled: bool, events: &[Value]) -> Result<Value> {
        let id = &self.order.order_id;
        for (sku, quantity) in self.order.quantities() {
            let expected = if fulfilled {
                INITIAL_STOCK - quantity
            } else {
                INITIAL_STOCK
            };
            let stock = self.systems.stock(&sku).await?;
            ensure!(
                stock == Some(expected),
                "{id}: {sku} stock is {stock:?}, expected {expected}"
            );
        }
        let reservation = self.systems.reservation(id).await?;
        ensure!(
            reservation.is_some() == fulfilled,
            "{id}: reservation {reservation:?} for an order that is {}",
            if fulfilled { "fulfilled" } else { "failed" }
        );
        let net = self.systems.payment(id).await?.map_or(0, |p| p.net_cents());
        let expected = if fulfilled { self.order.total_cents } else { 0 };
        ensure!(
            net == expected,
            "{id}: payment ledger nets {net}, expected {expected}"
        );
        let shipment = self.systems.shipment(id).await?;
        let live = shipment.as_ref().is_some_and(|s| s.status == "CREATED");
        ensure!(live == fulfilled, "{id}: shipment {shipment:?}");
        let terminal: Vec<&Value> = events
            .iter()
            .filter(|e| {
                matches!(
                    e["type"].as_str(),
                    Some("io.busline.order.fulfilled.v1" | "io.busline.order.failed.v1")
                )
            })
            .collect();
        ensure!(terminal.len() == 1, "{id}: terminal events {terminal:?}");
        let expected_type = if fulfilled {
            "io.busline.order.fulfilled.v1"
        } else {
            "io.busline.order.failed.v1"
        };
        ensure!(
            terminal[0]["type"] == expected_type,
            "{id}: {}",
            terminal[0]
        );
        self.check_status(
            fulfilled,
            shipment.as_ref().map(|s| s.tracking_number.as_str()),
        )
        .await?;
        Ok(terminal[0].clone())
    }
}

impl Scenario {
    /// Where the order stands, as `GET /orders/{id}` on the deployed stack answers: the status and
    /// the body.
    pub async fn status(&self) -> Result<(u16, Value)> {
        let path = format!("/orders/{}", self.order.order_id);
        self.stack
            .call(
                "OrderStatusUrl",
                reqwest::Method::GET,
                &path,
                None,
                &Vec::new(),
            )
            .await
    }

    /// Polls `GET /orders/{id}` until the order's status is `status`, for up to `within`; returns
    /// the body.
    pub async fn wait_for_status(&self, status: &str, within: Duration) -> Result<Value> {
        let started = Instant::now();
        loop {
            let (code, view) = self.status().await?;
            if code == 200 && view["status"] == status {
                return Ok(view);
            }
            if started.elapsed() > within {
                bail!(
                    "order {} is not {status} after {within:?}: {code} {view}",
                    self.order.order_id
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The status API agrees with how the saga ended: the status, the tracking number or the
    /// failure reason, and a history that ends with the end.
    async fn check_status(&self, fulfilled: bool, tracking_number: Option<&str>) -> Result<()> {
        let id = &self.order.order_id;
        let (code, view) = self.status().await?;
        ensure!(
            code == 200,
            "{id}: GET /orders/{id} answered {code}: {view}"
        );
        let history: Vec<&str> = view["history"]
            .as_array()
            .context("a history")?
            .iter()
            .filter_map(|e| e["step"].as_str())
            .collect();
        if fulfilled {
            ensure!(view["status"] == "FULFILLED", "{id}: status {view}");
            ensure!(
                view["tracking_number"].as_str() == tracking_number,
                "{id}: tracking number {view}"
            );
            ensure!(
                history.last() == Some(&"order-fulfilled"),
                "{id}: history {history:?}"
            );
        } else {
            ensure!(view["status"] == "FAILED", "{id}: status {view}");
            ensure!(
                view["failure_reason"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty()),
                "{id}: no failure reason: {view}"
            );
            ensure!(
                history.last() == Some(&"order-failed"),
                "{id}: history {history:?}"
            );
        }
        let times: Vec<&str> = view["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["at"].as_str())
            .collect();
        ensure!(
            times.iter().all(|t| !t.is_empty()),
            "{id}: history without times: {view}"
        );
        Ok(())
    }

    /// The order as the web shop's webhook body: this scenario's order, with the sample's time and
    /// warehouses (which the saga's view of an order does not keep).
    pub fn webhook_body(&self) -> Result<String> {
        let sample: Value = serde_json::from_str(SAMPLE_SHOP_ORDER)?;
        let mut body = serde_json::to_value(&self.order)?;
        body["placed_at"] = sample["placed_at"].clone();
        for (i, line) in body["lines"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(warehouse) = sample["lines"].get(i).and_then(|l| l.get("warehouse")) {
                line["warehouse"] = warehouse.clone();
            }
        }
        Ok(body.to_string())
    }

    /// The deployed stack.
    pub fn stack(&self) -> &DeployedStack {
        &self.stack
    }
}

impl Scenario {
    /// How many messages the finance queue holds for this order (it takes them off the queue).
    pub async fn finance_flags(&self) -> Result<usize> {
        let sqs = aws_sdk_sqs::Client::new(&self.aws);
        let queue = self.stack.output("FinanceQueueUrl")?;
        let mut count = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            let out = sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .message_attribute_names("traceparent")
                .wait_time_seconds(1)
                .send()
                .await?;
            for message in out.messages() {
                let body: Value = serde_json::from_str(message.body().unwrap_or_default())?;
                if body["order_id"] == self.order.order_id.as_str() {
                    // The flag carries the saga's trace, for whoever picks it up.
                    let traceparent = message
                        .message_attributes()
                        .and_then(|a| a.get("traceparent"))
                        .and_then(|v| v.string_value());
                    anyhow::ensure!(
                        traceparent
                            .is_some_and(|t| busline::telemetry::TraceContext::parse(t).is_some()),
                        "the finance flag has no traceparent attribute: {message:?}"
                    );
                    count += 1;
                    sqs.delete_message()
                        .queue_url(queue)
                        .receipt_handle(message.receipt_handle().unwrap_or_default())
                        .send()
                        .await?;
                }
            }
        }
        Ok(count)
    }
}

/// The ARN of order `order_id`'s order-fulfillment execution on `stack` (executions are named after
/// their order).
pub fn execution_arn(stack: &DeployedStack, order_id: &str) -> Result<String> {
    let machine = stack.output("OrderFulfillmentStateMachineArn")?;
    Ok(format!(
        "{}:{order_id}",
        machine.replacen(":stateMachine:", ":execution:", 1)
    ))
}

/// Execution `arn`'s history, oldest event first (an order's saga has far fewer than 1,000).
pub async fn execution_history(
    sfn: &aws_sdk_sfn::Client,
    arn: &str,
) -> Result<Vec<aws_sdk_sfn::types::HistoryEvent>> {
    Ok(sfn
        .get_execution_history()
        .execution_arn(arn)
        .max_results(1000)
        .send()
        .await?
        .events)
}
