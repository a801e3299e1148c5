//! What a batch came to: each record's outcome, the partial batch response, and the error when
//! every record failed.

use lambda_runtime::Diagnostic;

use crate::error::{Classify, ErrorClass, diagnostic};

/// A record that did not succeed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFailure {
    /// The message id or sequence number.
    pub id: String,
    /// The error's stable name, or `Skipped` for a record not run because an earlier one failed.
    pub error_type: String,
    /// The error with its cause chain.
    pub reason: String,
}

/// What happened to one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The handler succeeded.
    Succeeded,
    /// The record had been handled before.
    Duplicate,
    /// The handler failed permanently and the record is in the dead-letter queue with the reason.
    DeadLettered(RecordFailure),
    /// The record goes back to the source for another try.
    Failed(RecordFailure),
}

impl RecordOutcome {
    /// Whether the source is done with the record (it is not coming back).
    pub(super) fn is_done(&self) -> bool {
        !matches!(self, Self::Failed(_))
    }
}

/// A processed batch: the response Lambda expects, and what happened to each record.
#[derive(Clone, Debug)]
pub struct BatchReport<Response> {
    /// The partial batch response.
    pub response: Response,
    /// Each record's outcome, in the batch's order.
    pub outcomes: Vec<RecordOutcome>,
}

impl<Response> BatchReport<Response> {
    /// How many records the batch had.
    pub fn total(&self) -> usize {
        self.outcomes.len()
    }

    /// How many records were handled now.
    pub fn succeeded(&self) -> usize {
        self.count(|o| matches!(o, RecordOutcome::Succeeded))
    }

    /// How many records had been handled before.
    pub fn duplicates(&self) -> usize {
        self.count(|o| matches!(o, RecordOutcome::Duplicate))
    }

    /// How many records went to the dead-letter queue.
    pub fn dead_lettered(&self) -> usize {
        self.count(|o| matches!(o, RecordOutcome::DeadLettered(_)))
    }

    /// The records that go back to the source.
    pub fn failures(&self) -> impl Iterator<Item = &RecordFailure> {
        self.outcomes.iter().filter_map(|o| match o {
            RecordOutcome::Failed(f) => Some(f),
            _ => None,
        })
    }

    fn count(&self, f: impl Fn(&RecordOutcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }

    /// The response, or [`BatchError::AllFailed`] when every record of a non-empty batch failed, so
    /// the invocation is reported as an error rather than a quiet partial response.
    pub fn into_result(self) -> Result<Response, BatchError> {
        if !self.outcomes.is_empty() && self.outcomes.iter().all(|o| !o.is_done()) {
            let failures: Vec<RecordFailure> = self.failures().cloned().collect();
            return Err(BatchError::AllFailed {
                total: failures.len(),
                failures,
            });
        }
        Ok(self.response)
    }
}

/// A batch that failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Every record failed; the source redelivers them all.
    #[error("all {total} records of the batch failed; {}", first_failure(failures))]
    AllFailed {
        /// The batch's size: every one of its records failed.
        total: usize,
        /// Each failure, in the batch's order.
        failures: Vec<RecordFailure>,
    },
}

fn first_failure(failures: &[RecordFailure]) -> String {
    failures.first().map_or_else(
        || "none was recorded".to_owned(),
        |f| format!("the first, {}, with {}: {}", f.id, f.error_type, f.reason),
    )
}

impl Classify for BatchError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Retryable
    }

    fn error_type(&self) -> &'static str {
        "BatchAllFailed"
    }
}

impl From<BatchError> for Diagnostic {
    fn from(error: BatchError) -> Self {
        diagnostic(&error)
    }
}
