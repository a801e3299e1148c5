//! A stub of a source system's paginated HTTP API, for the batch-sync tests: `GET /records
//! ?changed_since=<RFC 3339>&limit=<n>[&cursor=<offset>]` answers the records with `updated_at` at
//! or after `changed_since`, oldest first, `limit` at a time, with `next_cursor` the offset of the
//! next page (or `null`). Faults are further mocks mounted in front (`wiremock` tries the most
//! recently mounted first among equal priorities).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The records the stub serves, how many pages it has served, and how long each page takes.
#[derive(Clone, Default)]
pub struct SourceStub {
    records: Arc<Mutex<Vec<Value>>>,
    served: Arc<Mutex<usize>>,
    page_delay: Arc<Mutex<Duration>>,
}

impl SourceStub {
    /// `n` records `R-0`... with `updated_at` one second apart from `start`.
    pub fn with_records(n: usize, start: DateTime<Utc>) -> Self {
        let records = (0..n)
            .map(|i| {
                json!({
                    "id": format!("R-{i}"),
                    "updated_at": (start + TimeDelta::seconds(i as i64)).to_rfc3339(),
                    "name": format!("Customer {i}"),
                })
            })
            .collect();
        Self {
            records: Arc::new(Mutex::new(records)),
            ..Self::default()
        }
    }

    /// Replaces the records.
    pub fn set_records(&self, records: Vec<Value>) {
        *self.records.lock().unwrap() = records;
    }

    /// Answers each page after `delay` from now on (a slow source), or at once for `Duration::ZERO`.
    pub fn set_page_delay(&self, delay: Duration) {
        *self.page_delay.lock().unwrap() = delay;
    }

    /// Pages served so far.
    pub fn pages_served(&self) -> usize {
        *self.served.lock().unwrap()
    }

    /// Mounts the stub on `server` at `/records`, behind any fault mounted later.
    pub async fn mount(&self, server: &MockServer) {
        Mock::given(method("GET"))
            .and(path("/records"))
            .respond_with(self.clone())
            .with_priority(10)
            .mount(server)
            .await;
    }
}

impl Respond for SourceStub {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let query: std::collections::HashMap<String, String> =
            request.url.query_pairs().into_owned().collect();
        let since = query
            .get("changed_since")
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
        let Some(since) = since else {
            return ResponseTemplate::new(400)
                .set_body_json(json!({"reason": "changed_since is required"}));
        };
        let limit: usize = query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100);
        let offset: usize = query
            .get("cursor")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let records = self.records.lock().unwrap();
        let mut changed: Vec<&Value> = records
            .iter()
            .filter(|r| {
                r["updated_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .is_none_or(|t| t >= since)
            })
            .collect();
        changed.sort_by_key(|r| r["updated_at"].as_str().unwrap_or_default().to_owned());
        let page: Vec<&Value> = changed.iter().skip(offset).take(limit).copied().collect();
        let next = (offset + limit < changed.len()).then(|| (offset + limit).to_string());
        *self.served.lock().unwrap() += 1;
        ResponseTemplate::new(200)
            .set_body_json(json!({"records": page, "next_cursor": next}))
            .set_delay(*self.page_delay.lock().unwrap())
    }
}
