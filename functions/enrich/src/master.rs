//! The customer master, as the enricher reads it: a port with a DynamoDB adapter, an in-memory
//! twin, and a cache in front of either.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
#[cfg(any(test, feature = "test-util"))]
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use busline::{Classify, ErrorClass};
use serde_json::Number;

/// What the enricher takes from a master record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MasterProfile {
    /// The tier, when the master has one.
    pub tier: Option<String>,
    /// The credit limit, when the master has one.
    pub credit_limit: Option<Number>,
}

/// The master could not be read; the enricher fails the invocation and Lambda retries.
#[derive(Debug, thiserror::Error)]
#[error("the customer master could not be read")]
pub struct MasterUnavailable(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl Classify for MasterUnavailable {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }

    fn error_type(&self) -> &'static str {
        "CustomerMasterUnavailable"
    }
}

/// Reads customers from the master.
pub trait CustomerMaster: Send + Sync {
    /// The customer's profile, `None` when the master has no record.
    fn profile(
        &self,
        customer_id: &str,
    ) -> impl Future<Output = Result<Option<MasterProfile>, MasterUnavailable>> + Send;
}

/// The master's DynamoDB table, as `mdm-customer` writes it: key `customer_id`, and each field in
/// `fields.<name>.value` with its provenance beside it. Only the two values are read.
#[derive(Clone, Debug)]
pub struct DynamoDbCustomerMaster {
    client: Client,
    table: String,
}

impl DynamoDbCustomerMaster {
    /// The master on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn field<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a AttributeValue> {
    item.get("fields")?
        .as_m()
        .ok()?
        .get(name)?
        .as_m()
        .ok()?
        .get("value")
}

impl CustomerMaster for DynamoDbCustomerMaster {
    async fn profile(&self, customer_id: &str) -> Result<Option<MasterProfile>, MasterUnavailable> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("customer_id", AttributeValue::S(customer_id.to_owned()))
            .projection_expression("customer_id, #f.tier.#v, #f.credit_limit.#v")
            .expression_attribute_names("#f", "fields")
            .expression_attribute_names("#v", "value")
            .send()
            .await
            .map_err(|e| MasterUnavailable(Box::new(e)))?;
        Ok(output.item.map(|item| MasterProfile {
            tier: field(&item, "tier").and_then(|v| v.as_s().ok()).cloned(),
            credit_limit: field(&item, "credit_limit")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok()),
        }))
    }
}

/// The in-memory twin, for fast tests.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct InMemoryCustomerMaster {
    profiles: Mutex<HashMap<String, MasterProfile>>,
    unavailable: AtomicBool,
    reads: AtomicUsize,
}

#[cfg(any(test, feature = "test-util"))]
impl InMemoryCustomerMaster {
    /// An empty master.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts a customer in the master.
    pub fn insert(&self, customer_id: &str, profile: MasterProfile) {
        self.profiles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(customer_id.to_owned(), profile);
    }

    /// Makes every read fail (or not).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// How many reads reached the master.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

#[cfg(any(test, feature = "test-util"))]
impl CustomerMaster for InMemoryCustomerMaster {
    async fn profile(&self, customer_id: &str) -> Result<Option<MasterProfile>, MasterUnavailable> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(MasterUnavailable(
                "the in-memory master is set unavailable".into(),
            ));
        }
        Ok(self
            .profiles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(customer_id)
            .cloned())
    }
}

/// How many customers one warm environment keeps: enough for a burst of repeat customers, a few
/// hundred kilobytes at most.
pub const CACHE_ENTRIES: usize = 10_000;

/// A per-environment cache in front of a master: a lookup, including "no such customer", is kept
/// for `ttl`, least recently used entries go first. Within the TTL a tier or limit changed in the
/// master is not seen yet; that staleness is the price of one read per customer per TTL instead of
/// one per order. A failed read is not cached.
#[derive(Debug)]
pub struct CachedMaster<M> {
    inner: M,
    ttl: Duration,
    entries: Mutex<lru::LruCache<String, (Instant, Option<MasterProfile>)>>,
}

impl<M> CachedMaster<M> {
    /// `inner`, cached for `ttl`, at most `capacity` customers.
    pub fn new(inner: M, ttl: Duration, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner,
            ttl,
            entries: Mutex::new(lru::LruCache::new(capacity)),
        }
    }

    /// The master behind the cache.
    pub fn inner(&self) -> &M {
        &self.inner
    }
}

impl<M: CustomerMaster> CustomerMaster for CachedMaster<M> {
    async fn profile(&self, customer_id: &str) -> Result<Option<MasterProfile>, MasterUnavailable> {
        let now = Instant::now();
        if let Some((at, profile)) = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(customer_id)
            && now.duration_since(*at) < self.ttl
        {
            return Ok(profile.clone());
        }
        let profile = self.inner.profile(customer_id).await?;
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(customer_id.to_owned(), (now, profile.clone()));
        Ok(profile)
    }
}

/// The contract every [`CustomerMaster`] adapter keeps, given a master holding `C-gold` (tier gold,
/// credit limit 5000) and `C-bare` (a record with neither field), and no `C-none`.
#[cfg(any(test, feature = "test-util"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code, which fails by panicking"
)]
pub async fn contract(master: &impl CustomerMaster) {
    let gold = master.profile("C-gold").await.unwrap().unwrap();
    assert_eq!(gold.tier.as_deref(), Some("gold"));
    assert_eq!(gold.credit_limit, Some(Number::from(5000)));
    assert_eq!(
        master.profile("C-bare").await.unwrap(),
        Some(MasterProfile::default())
    );
    assert_eq!(master.profile("C-none").await.unwrap(), None);
}
