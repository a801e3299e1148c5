//! The projection in memory: the DynamoDB adapter's twin, for tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{OrderTracker, OrderView, Status, StatusError, Transition};

/// The projection in memory, for tests: the same rules as the DynamoDB one.
#[derive(Debug, Default)]
pub struct InMemoryOrderTracker {
    orders: Mutex<HashMap<String, OrderView>>,
    unavailable: AtomicBool,
}

impl InMemoryOrderTracker {
    /// An empty projection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail as an outage would (or stop failing).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StatusError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StatusError::Unavailable(
                "the in-memory tracker is set unavailable".into(),
            ));
        }
        Ok(())
    }
}

impl OrderTracker for InMemoryOrderTracker {
    async fn record(&self, transition: &Transition) -> Result<(), StatusError> {
        self.check()?;
        let entry = transition.entry();
        let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        let order = orders
            .entry(transition.order_id.clone())
            .or_insert_with(|| OrderView {
                order_id: transition.order_id.clone(),
                status: transition.status,
                current_step: transition.step.clone(),
                tracking_number: None,
                failure_reason: None,
                updated_at: entry.at.clone(),
                history: Vec::new(),
                approval_token: None,
            });
        // As on DynamoDB: the RFC 3339 strings compared as strings.
        let overtaken = entry.at < order.updated_at;
        if !overtaken {
            order.status = transition.status;
            order.current_step = transition.step.clone();
            order.updated_at = entry.at.clone();
            order.approval_token = match transition.status {
                Status::AwaitingApproval => transition.approval_token.clone(),
                _ => None,
            };
        }
        if transition.tracking_number.is_some() {
            order.tracking_number = transition.tracking_number.clone();
        }
        if order.failure_reason.is_none() {
            order.failure_reason = transition.failure_reason.clone();
        }
        if !order.has(&transition.name) {
            order.history.push(entry);
            order.history.sort_by(|a, b| a.at.cmp(&b.at));
        }
        Ok(())
    }

    async fn get(&self, order_id: &str) -> Result<Option<OrderView>, StatusError> {
        self.check()?;
        Ok(self
            .orders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(order_id)
            .cloned())
    }
}
