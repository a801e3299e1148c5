//! The senders' side: each delivery sent as its source would, signed, and sent again on a 5xx, a
//! 429 or no answer, with backoff.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use busline::signature::Scheme;
use serde_json::Value;

use super::deliveries::{Delivery, Kind};
use crate::{DeployedStack, Headers, signed_bytes_as};

/// How a delivery's sending ended.
#[derive(Clone, Debug, Default)]
pub(super) struct Sent {
    pub(super) status: u16,
    pub(super) body: Value,
    pub(super) attempts: usize,
    pub(super) first_ms: f64,
    pub(super) duplicates: usize,
    pub(super) answers_ms: Vec<f64>,
}

pub(super) fn now_ms() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1000.0
}

/// The senders' side: secrets per source and the stack's URL.
pub(super) struct Senders {
    pub(super) stack: DeployedStack,
    pub(super) secrets: HashMap<&'static str, String>,
    pub(super) http: reqwest::Client,
}

impl Senders {
    /// Sends `delivery` as its source would: signed now, again on a 5xx, 429 or no answer, with
    /// backoff, up to a minute; returns how it ended.
    pub(super) async fn send(&self, delivery: &Delivery) -> Sent {
        let scheme = self
            .stack
            .scheme_of(delivery.source)
            .unwrap_or(Scheme::StandardWebhooks);
        let secret = match delivery.kind {
            Kind::BadSignature => match scheme {
                Scheme::StandardWebhooks => crate::new_standard_webhooks_secret(),
                _ => "not-the-secret".to_owned(),
            },
            _ => self.secrets[delivery.source].clone(),
        };
        let url = self.stack.output("WebhookUrl").unwrap_or_default();
        let host = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .unwrap_or_else(|_| crate::DEFAULT_ENDPOINT.to_owned());
        let mut sent = Sent {
            first_ms: now_ms(),
            ..Sent::default()
        };
        let mut delay = Duration::from_millis(250);
        let started = Instant::now();
        loop {
            sent.attempts += 1;
            // Signed over the bytes as sent, a new signature for every attempt.
            let headers: Headers = signed_bytes_as(
                scheme,
                &secret,
                &delivery.body,
                &delivery.delivery_id,
                chrono::Utc::now().timestamp(),
            );
            let mut request = self
                .http
                .post(format!("{endpoint}/webhooks/{}", delivery.source))
                .header("host", &host)
                .header("content-type", "application/json")
                .header("x-correlation-id", &delivery.correlation_id)
                .timeout(Duration::from_secs(30))
                .body(delivery.body.clone());
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            let at = now_ms();
            let answer = request.send().await;
            let (status, body) = match answer {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    (
                        status,
                        serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    )
                }
                Err(_) => (0, Value::Null),
            };
            sent.answers_ms.push(now_ms() - at);
            sent.status = status;
            if (200..300).contains(&status) && body["duplicate"] == true {
                sent.duplicates += 1;
            }
            sent.body = body;
            let again = status == 0 || status == 429 || status >= 500;
            if !again || started.elapsed() > Duration::from_secs(60) {
                return sent;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(4));
        }
    }
}
