//! A circuit breaker per destination, shared by every concurrent environment through DynamoDB.
//!
//! Closed, it counts consecutive failures; at `threshold` it opens for `open_for`: deliveries to
//! the destination are not attempted, and their messages wait (requeued with a delay) until it may
//! close.
//! After that, the next delivery is a trial: a success closes the circuit (the count is reset), a
//! failure opens it again at once.
//!
//! An endpoint that answers `410 Gone` is **disabled**: it said it will never take events again,
//! so none is sent to it until an operator enables it (deletes its item, `circuit#<name>`); each
//! event for it goes to the dead-letter queue with the reason instead.

use std::collections::HashMap;
#[cfg(any(test, feature = "test-util"))]
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

/// A destination's circuit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Circuit {
    /// Consecutive failures since the last success; the circuit opens when they reach the policy's
    /// `threshold`.
    pub failures: u32,
    /// Open until this time (Unix ms), if open.
    pub open_until_ms: Option<i64>,
    /// Why the endpoint is disabled, if it is (it answered `410 Gone`).
    pub disabled: Option<String>,
}

impl Circuit {
    /// Whether deliveries must wait, and for how long, at `now_ms`.
    pub fn wait(&self, now_ms: i64) -> Option<Duration> {
        self.open_until_ms
            .filter(|until| *until > now_ms)
            .map(|until| Duration::from_millis((until - now_ms) as u64))
    }
}

/// When a circuit opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failures that open it.
    pub threshold: u32,
    /// How long it stays open.
    pub open_for: Duration,
}

impl Default for Policy {
    /// Five failures in a row open it for 30 s.
    fn default() -> Self {
        Self {
            threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

impl Policy {
    /// Until when `circuit`, after a failure at `now_ms`, must be open: when the failures reach the
    /// threshold and it is not open already (a failed trial after it lapsed opens it again).
    pub fn opens(&self, circuit: &Circuit, now_ms: i64) -> Option<i64> {
        (circuit.failures >= self.threshold && circuit.wait(now_ms).is_none())
            .then(|| now_ms + self.open_for.as_millis() as i64)
    }
}

/// The circuit store could not be reached. Delivery goes on without it (fail open): a broken
/// breaker must not stop deliveries.
#[derive(Debug, thiserror::Error)]
#[error("the circuit store is unavailable")]
pub struct CircuitError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Where circuits live.
pub trait CircuitStore: Send + Sync {
    /// The destination's circuit.
    fn get(&self, destination: &str) -> impl Future<Output = Result<Circuit, CircuitError>> + Send;

    /// Counts a failure at `now_ms`, opening the circuit when the count reaches the threshold.
    fn failed(
        &self,
        destination: &str,
        now_ms: i64,
        policy: Policy,
    ) -> impl Future<Output = Result<Circuit, CircuitError>> + Send;

    /// Closes the circuit.
    fn succeeded(&self, destination: &str)
    -> impl Future<Output = Result<(), CircuitError>> + Send;

    /// Disables the destination for good, with the reason, until an operator enables it.
    fn disable(
        &self,
        destination: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), CircuitError>> + Send;
}

/// Circuits on DynamoDB: item `circuit#<destination>` in a table keyed by `pk`.
#[derive(Clone, Debug)]
pub struct DynamoDbCircuitStore {
    client: Client,
    table: String,
}

impl DynamoDbCircuitStore {
    /// The store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn key(destination: &str) -> AttributeValue {
    AttributeValue::S(format!("circuit#{destination}"))
}

fn circuit(item: Option<&HashMap<String, AttributeValue>>) -> Circuit {
    let number = |name: &str| {
        item.and_then(|i| i.get(name))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
    };
    Circuit {
        failures: number("failures").unwrap_or(0).max(0) as u32,
        open_until_ms: number("open_until_ms"),
        disabled: item
            .and_then(|i| i.get("disabled"))
            .and_then(|v| v.as_s().ok())
            .cloned(),
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> CircuitError {
    CircuitError(Box::new(e))
}

impl CircuitStore for DynamoDbCircuitStore {
    async fn get(&self, destination: &str) -> Result<Circuit, CircuitError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", key(destination))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(circuit(out.item.as_ref()))
    }

    async fn failed(
        &self,
        destination: &str,
        now_ms: i64,
        policy: Policy,
    ) -> Result<Circuit, CircuitError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", key(destination))
            .update_expression("ADD failures :one SET last_failure_ms = :now")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(unavailable)?;
        let mut current = circuit(out.attributes.as_ref());
        if let Some(until) = policy.opens(&current, now_ms) {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", key(destination))
                .update_expression("SET open_until_ms = :until")
                .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
                .send()
                .await
                .map_err(unavailable)?;
            current.open_until_ms = Some(until);
        }
        Ok(current)
    }

    async fn succeeded(&self, destination: &str) -> Result<(), CircuitError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", key(destination))
            .update_expression("SET failures = :zero REMOVE open_until_ms")
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn disable(&self, destination: &str, reason: &str) -> Result<(), CircuitError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", key(destination))
            .update_expression("SET disabled = :reason")
            .expression_attribute_values(":reason", AttributeValue::S(reason.to_owned()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Circuits in memory, with the same rules.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct InMemoryCircuitStore {
    circuits: Mutex<HashMap<String, Circuit>>,
}

#[cfg(any(test, feature = "test-util"))]
impl InMemoryCircuitStore {
    /// No circuits yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg(any(test, feature = "test-util"))]
impl CircuitStore for InMemoryCircuitStore {
    async fn get(&self, destination: &str) -> Result<Circuit, CircuitError> {
        Ok(self
            .circuits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(destination)
            .cloned()
            .unwrap_or_default())
    }

    async fn failed(
        &self,
        destination: &str,
        now_ms: i64,
        policy: Policy,
    ) -> Result<Circuit, CircuitError> {
        let mut circuits = self.circuits.lock().unwrap_or_else(PoisonError::into_inner);
        let circuit = circuits.entry(destination.to_owned()).or_default();
        circuit.failures += 1;
        if let Some(until) = policy.opens(circuit, now_ms) {
            circuit.open_until_ms = Some(until);
        }
        Ok(circuit.clone())
    }

    async fn succeeded(&self, destination: &str) -> Result<(), CircuitError> {
        self.circuits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(destination.to_owned(), Circuit::default());
        Ok(())
    }

    async fn disable(&self, destination: &str, reason: &str) -> Result<(), CircuitError> {
        self.circuits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(destination.to_owned())
            .or_default()
            .disabled = Some(reason.to_owned());
        Ok(())
    }
}

/// The contract every [`CircuitStore`] keeps; `prefix` keeps runs on a shared table apart.
#[cfg(any(test, feature = "test-util"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code, which fails by panicking"
)]
#[cfg(any(test, feature = "test-util"))]
pub async fn contract<S: CircuitStore>(store: &S, prefix: &str) {
    let destination = format!("{prefix}receiver.example");
    let policy = Policy {
        threshold: 3,
        open_for: Duration::from_secs(10),
    };
    assert_eq!(store.get(&destination).await.unwrap(), Circuit::default());
    for n in 1..3 {
        let c = store.failed(&destination, 1_000, policy).await.unwrap();
        assert_eq!((c.failures, c.open_until_ms), (n, None));
    }
    let opened = store.failed(&destination, 1_000, policy).await.unwrap();
    assert_eq!(opened.open_until_ms, Some(11_000));
    assert_eq!(opened.wait(1_000), Some(Duration::from_secs(10)));
    assert_eq!(
        store.get(&destination).await.unwrap().wait(5_000),
        Some(Duration::from_secs(6))
    );
    // After it lapses, a failed trial opens it again at once.
    let reopened = store.failed(&destination, 12_000, policy).await.unwrap();
    assert_eq!(reopened.open_until_ms, Some(22_000));
    store.succeeded(&destination).await.unwrap();
    assert_eq!(store.get(&destination).await.unwrap(), Circuit::default());

    let gone = format!("{prefix}gone.example");
    store.disable(&gone, "answered 410 Gone").await.unwrap();
    assert_eq!(
        store.get(&gone).await.unwrap().disabled.as_deref(),
        Some("answered 410 Gone")
    );
    assert_eq!(store.get(&destination).await.unwrap().disabled, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_in_memory_store_keeps_the_contract() {
        contract(&InMemoryCircuitStore::new(), "").await;
    }
}
