//! The projection on DynamoDB: one item per order, keyed by `order_id`.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    HISTORY_PREFIX, HistoryEntry, OrderTracker, OrderView, Status, StatusError, Transition,
    timestamp,
};

/// The projection on DynamoDB: one item per order, key `order_id`.
#[derive(Clone, Debug)]
pub struct DynamoDbOrderTracker {
    client: Client,
    table: String,
}

#[derive(Deserialize)]
struct StoredStatus {
    order_id: String,
    status: String,
    current_step: String,
    updated_at: String,
    tracking_number: Option<String>,
    failure_reason: Option<String>,
    approval_token: Option<String>,
}

impl DynamoDbOrderTracker {
    /// The projection on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The projection on the table named by `ORDER_STATUS_TABLE`, with a client from `aws`.
    pub fn from_env(
        env: &impl busline::config::Env,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, busline::config::ConfigError> {
        let table = env.require(
            "ORDER_STATUS_TABLE",
            "the name of the order status DynamoDB table",
        )?;
        Ok(Self::new(Client::new(aws), table))
    }
}

impl DynamoDbOrderTracker {
    /// The `UpdateItem` for `transition`. With `latest`, it also sets the status, the current step,
    /// `updated_at` and the approval token, on the condition that no later transition is recorded
    /// (`updated_at`, RFC 3339 in UTC, compared as a string); without, it adds only the history
    /// entry, the tracking number and a first failure reason.
    fn update(&self, transition: &Transition, latest: bool) -> UpdateItemFluentBuilder {
        let entry = transition.entry();
        let mut set = vec!["#entry = if_not_exists(#entry, :entry)"];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("order_id", string_attribute(&transition.order_id))
            .expression_attribute_names("#entry", format!("{HISTORY_PREFIX}{}", transition.name))
            .expression_attribute_values(
                ":entry",
                AttributeValue::M(HashMap::from([
                    ("at".to_owned(), string_attribute(&entry.at)),
                    ("step".to_owned(), string_attribute(&entry.step)),
                    (
                        "description".to_owned(),
                        string_attribute(&entry.description),
                    ),
                ])),
            );
        if latest {
            set.extend([
                "#status = :status",
                "current_step = :step",
                "updated_at = :at",
            ]);
            request = request
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(
                    ":status",
                    string_attribute(transition.status.as_str()),
                )
                .expression_attribute_values(":step", string_attribute(&transition.step))
                .expression_attribute_values(":at", string_attribute(&entry.at))
                .condition_expression("attribute_not_exists(updated_at) OR updated_at <= :at");
        }
        if let Some(tracking_number) = &transition.tracking_number {
            set.push("tracking_number = :tracking_number");
            request = request
                .expression_attribute_values(":tracking_number", string_attribute(tracking_number));
        }
        if let Some(reason) = &transition.failure_reason {
            set.push("failure_reason = if_not_exists(failure_reason, :reason)");
            request = request.expression_attribute_values(":reason", string_attribute(reason));
        }
        let mut expression = format!("SET {}", set.join(", "));
        if latest {
            match (&transition.approval_token, transition.status) {
                (Some(token), Status::AwaitingApproval) => {
                    expression.push_str(", approval_token = :token");
                    request =
                        request.expression_attribute_values(":token", string_attribute(token));
                }
                _ => expression.push_str(" REMOVE approval_token"),
            }
        }
        request.update_expression(expression)
    }
}

fn string_attribute(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

impl OrderTracker for DynamoDbOrderTracker {
    async fn record(&self, transition: &Transition) -> Result<(), StatusError> {
        match self.update(transition, true).send().await {
            Err(e)
                if e.as_service_error()
                    .is_some_and(UpdateItemError::is_conditional_check_failed_exception) =>
            {
                // Overtaken: a later transition is already recorded. What this one knows (its
                // history entry, a tracking number, a first failure reason) still goes in.
                self.update(transition, false)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| StatusError::Unavailable(Box::new(e)))
            }
            other => other
                .map(|_| ())
                .map_err(|e| StatusError::Unavailable(Box::new(e))),
        }
    }

    async fn get(&self, order_id: &str) -> Result<Option<OrderView>, StatusError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("order_id", string_attribute(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StatusError::Unavailable(Box::new(e)))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let unreadable = |why: String| StatusError::Unreadable {
            order_id: order_id.to_owned(),
            why,
        };
        let mut history = Vec::new();
        for (attribute, value) in &item {
            if let Some(name) = attribute.strip_prefix(HISTORY_PREFIX) {
                let mut entry: HistoryEntry = serde_dynamo::from_attribute_value(value.clone())
                    .map_err(|e| unreadable(format!("history entry {name}: {e}")))?;
                entry.name = name.to_owned();
                history.push(entry);
            }
        }
        let stored: StoredStatus =
            serde_dynamo::from_item(item).map_err(|e| unreadable(e.to_string()))?;
        let status = Status::parse(&stored.status)
            .ok_or_else(|| unreadable(format!("unknown status {:?}", stored.status)))?;
        Ok(Some(view(stored, status, history)))
    }
}

/// `at` in one form, UTC to the microsecond, so entries from busline's functions and from Step
/// Functions (whose `EnteredTime` comes as `…Z` or `…+00:00`) sort by time; anything else is kept.
pub(super) fn normalized(at: &str) -> String {
    DateTime::parse_from_rfc3339(at)
        .map(|t| timestamp(t.with_timezone(&Utc)))
        .unwrap_or_else(|_| at.to_owned())
}

fn view(stored: StoredStatus, status: Status, mut history: Vec<HistoryEntry>) -> OrderView {
    for entry in &mut history {
        entry.at = normalized(&entry.at);
    }
    history.sort_by(|a, b| a.at.cmp(&b.at));
    OrderView {
        order_id: stored.order_id,
        status,
        current_step: stored.current_step,
        tracking_number: stored.tracking_number,
        failure_reason: stored.failure_reason,
        updated_at: normalized(&stored.updated_at),
        history,
        approval_token: stored.approval_token,
    }
}
