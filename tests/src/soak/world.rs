//! What the soak sets up around the stack: the outside systems' stubs, the saga's systems with
//! their stock and customers, the planned deliveries and its own watches on the bus.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use aws_config::SdkConfig;
use busline_fulfillment::CreditStanding;
use busline_fulfillment::dynamodb::DynamoDbFulfillment;
use serde_json::json;

use super::deliveries::{CUSTOMERS, Delivery, SKUS, deliveries};
use super::senders::Senders;
use super::stubs::{Email, Warehouse, stub_at};
use super::{Plan, Progress};
use crate::source_stub::SourceStub;
use crate::{DeployedStack, watch_bus};

/// What the soak set up around the stack: the outside systems' stubs, the saga's systems with
/// their stock and customers, the planned deliveries, and its own watches on the bus.
pub(super) struct World {
    pub(super) warehouse: Warehouse,
    pub(super) email: Email,
    /// The stub servers, kept listening until the soak ends.
    pub(super) _servers: Vec<wiremock::MockServer>,
    pub(super) _source: SourceStub,
    pub(super) systems: DynamoDbFulfillment,
    pub(super) planned: Vec<Delivery>,
    /// Each SKU's stock before the load.
    pub(super) initial: HashMap<String, i64>,
    pub(super) bus: String,
    /// The watch queues: saga outcomes, CDC changes and synced records of this run.
    pub(super) outcomes_queue: String,
    pub(super) cdc_queue: String,
    pub(super) sync_queue: String,
    pub(super) senders: Arc<Senders>,
}

impl World {
    pub(super) async fn set_up(
        aws: &SdkConfig,
        stack: &DeployedStack,
        plan: &Plan,
        tag: &str,
        progress: &Progress,
    ) -> Result<Self> {
        // The outside systems, where the LocalStack deployment points the stack.
        progress.enter("setting up the stubs, stock, customers and bus watches");
        let warehouse = Warehouse::default();
        let warehouse_server = stub_at("127.0.0.1:8027", Some(warehouse.clone())).await?;
        let email = Email::default();
        let email_server = stub_at("127.0.0.1:8025", Some(email.clone())).await?;
        let source_server = stub_at::<Email>("127.0.0.1:8026", None).await?;
        let source = SourceStub::default();
        let sync_start = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
        source.set_records(
            (0..plan.sync_records)
                .map(|i| {
                    json!({"id": format!("R-{tag}-{i}"),
                           "updated_at": (sync_start + chrono::TimeDelta::milliseconds(i as i64)).to_rfc3339(),
                           "name": format!("Contact {i}")})
                })
                .collect(),
        );
        source.mount(&source_server).await;
        stack.close_circuit(aws, "warehouse").await?;

        // The systems behind the saga: a shared pool of SKUs (stock for about nine orders in ten)
        // and customers (one in ten with a card that declines).
        let systems = DynamoDbFulfillment::new(
            aws_sdk_dynamodb::Client::new(aws),
            stack.output("FulfillmentTableName")?,
        );
        let planned = deliveries(plan, tag);
        let mut demand: HashMap<String, i64> = HashMap::new();
        for order in planned.iter().filter_map(|d| d.order.as_ref()) {
            for (sku, q) in &order.lines {
                *demand.entry(sku.clone()).or_default() += q;
            }
        }
        let mut initial: HashMap<String, i64> = HashMap::new();
        for k in 0..SKUS {
            let sku = format!("SK-{tag}-{k}");
            let stock = demand.get(&sku).copied().unwrap_or(0) * 9 / 10;
            systems.put_stock(&sku, stock, 0).await?;
            initial.insert(sku, stock);
        }
        for c in 0..CUSTOMERS {
            let standing = CreditStanding {
                limit_cents: 1_000_000_000,
                owed_cents: 0,
            };
            systems
                .put_customer(&format!("C-{tag}-{c}"), standing, c % 10 == 9)
                .await?;
        }

        // Windows onto the bus, independent of the stack's own consumers.
        let bus = stack.output("EventBusName")?.to_owned();
        let outcomes_queue = watch_bus(
            aws,
            &bus,
            &format!("soak-outcomes-{tag}"),
            &json!({"detail-type": ["io.busline.order.fulfilled.v1", "io.busline.order.failed.v1",
                                     "io.busline.order.compensation-failed.v1"],
                    "detail": {"data": {"order_id": [{"prefix": format!("SO-{tag}")}, {"prefix": format!("mkt-{tag}")}]}}}),
        )
        .await?;
        let cdc_queue = watch_bus(
            aws,
            &bus,
            &format!("soak-cdc-{tag}"),
            &json!({"detail-type": ["io.busline.cdc.erp-customers.changed.v1"],
                    "detail": {"subject": [{"prefix": format!("customer_id=E-{tag}")}]}}),
        )
        .await?;
        let sync_queue = watch_bus(
            aws,
            &bus,
            &format!("soak-sync-{tag}"),
            &json!({"detail-type": ["io.busline.sync.crm-contacts.changed.v1"],
                    "detail": {"subject": [{"prefix": format!("R-{tag}")}]}}),
        )
        .await?;
        let mut secrets = HashMap::new();
        for (source, output) in [
            ("shop", "ShopWebhookSecretArn"),
            ("crm", "CrmWebhookSecretArn"),
            ("marketplace", "MarketplaceWebhookSecretArn"),
            ("helpdesk", "HelpdeskWebhookSecretArn"),
            ("payments", "PaymentsWebhookSecretArn"),
        ] {
            secrets.insert(source, stack.secret(aws, output).await?);
        }
        let senders = Arc::new(Senders {
            stack: stack.clone(),
            secrets,
            http: reqwest::Client::new(),
        });
        Ok(Self {
            warehouse,
            email,
            _servers: vec![warehouse_server, email_server, source_server],
            _source: source,
            systems,
            planned,
            initial,
            bus,
            outcomes_queue,
            cdc_queue,
            sync_queue,
            senders,
        })
    }

    /// Removes the soak's watch queues and rules (best effort: a leftover only costs a queue).
    pub(super) async fn tear_down(self, aws: &SdkConfig, tag: &str) {
        for queue in [&self.outcomes_queue, &self.cdc_queue, &self.sync_queue] {
            let _ = aws_sdk_sqs::Client::new(aws)
                .delete_queue()
                .queue_url(queue)
                .send()
                .await;
        }
        let events = aws_sdk_eventbridge::Client::new(aws);
        for name in ["outcomes", "cdc", "sync"] {
            let rule = format!("soak-{name}-{tag}");
            let _ = events
                .remove_targets()
                .rule(&rule)
                .event_bus_name(&self.bus)
                .ids("watch")
                .send()
                .await;
            let _ = events
                .delete_rule()
                .name(&rule)
                .event_bus_name(&self.bus)
                .send()
                .await;
        }
    }
}
