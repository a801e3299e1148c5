//! The renewal run's report: what happened to each subscription, counted, and the money charged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::period::Period;
use crate::subscription::Skip;

/// What the renewal run did with one subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ItemOutcome {
    /// Charged and renewed.
    Renewed {
        /// The amount charged, in minor units.
        amount_cents: i64,
        /// ISO 4217 code.
        currency: String,
    },
    /// The charge was declined: dunning took it over.
    Declined,
    /// It could not be charged for a passing reason after its retries; the run's Map counts it
    /// against its tolerated failures, and the next run finds it due again.
    Failed {
        /// The error type, as the step's error says it (`PaymentsUnavailable`).
        error_type: String,
    },
    /// Left alone, and why.
    Skipped(Skip),
}

/// The run's counts and the total charged per currency: the body of
/// `subscription.renewal-run.completed.v1`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The period renewed.
    pub period: Option<Period>,
    /// Charged and renewed.
    pub renewed: u64,
    /// Declined, now in dunning.
    pub declined: u64,
    /// Not charged for a passing reason.
    pub failed: u64,
    /// Left alone (cancelled, suspended, past due, not due, already renewed).
    pub skipped: u64,
    /// The total charged, in minor units, per ISO 4217 code.
    pub charged_cents: BTreeMap<String, i64>,
}

impl RunReport {
    /// An empty report for `period`.
    pub fn new(period: Period) -> Self {
        Self {
            period: Some(period),
            ..Self::default()
        }
    }

    /// Counts one subscription's outcome.
    pub fn add(&mut self, outcome: &ItemOutcome) {
        match outcome {
            ItemOutcome::Renewed {
                amount_cents,
                currency,
            } => {
                self.renewed += 1;
                let total = self.charged_cents.entry(currency.clone()).or_default();
                *total = total.saturating_add(*amount_cents);
            }
            ItemOutcome::Declined => self.declined += 1,
            ItemOutcome::Failed { .. } => self.failed += 1,
            ItemOutcome::Skipped(_) => self.skipped += 1,
        }
    }

    /// Adds another part's counts (the Map's batches are reported apart).
    pub fn merge(&mut self, other: &RunReport) {
        self.renewed += other.renewed;
        self.declined += other.declined;
        self.failed += other.failed;
        self.skipped += other.skipped;
        for (currency, cents) in &other.charged_cents {
            let total = self.charged_cents.entry(currency.clone()).or_default();
            *total = total.saturating_add(*cents);
        }
    }

    /// How many subscriptions the report covers.
    pub fn total(&self) -> u64 {
        self.renewed + self.declined + self.failed + self.skipped
    }
}
