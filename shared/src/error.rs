//! The error taxonomy every busline function shares.
//!
//! A failure is one of three things to whoever called the function:
//! - **retryable**: the same input may succeed later (throttling, a dependency down);
//! - **permanent**: the input can never succeed (bad data, a business rule says no); retrying wastes
//!   money and blocks the queue, so it belongs in a dead-letter queue with its reason;
//! - **duplicate**: the work was already done; treat it as success.
//!
//! Each crate keeps its own `thiserror` enum and implements [`Classify`] on it. At the Lambda boundary
//! [`diagnostic`] turns the error into a `Diagnostic` whose `error_type` is a stable name such as
//! `OutOfStock`, which Step Functions `Retry` and `Catch` clauses match on.

use lambda_runtime::Diagnostic;

/// What the caller can do about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later.
    Retryable,
    /// Give up: send to the dead-letter queue with the reason.
    Permanent,
    /// Already done: answer as if it succeeded.
    Duplicate,
}

/// Implemented by every busline error enum.
pub trait Classify: std::error::Error {
    /// Whether the failure is worth retrying.
    fn class(&self) -> ErrorClass;

    /// The stable name a state machine matches on, in `UpperCamelCase`.
    fn error_type(&self) -> &'static str;
}

/// The Lambda `Diagnostic` for an error: its stable type, and a message with its whole cause chain.
pub fn diagnostic<E: Classify + ?Sized>(error: &E) -> Diagnostic {
    Diagnostic {
        error_type: error.error_type().to_owned(),
        error_message: with_causes(error),
    }
}

/// The error's message followed by each of its causes', `: `-separated.
pub fn with_causes<E: std::error::Error + ?Sized>(error: &E) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum ReserveError {
        #[error("SKU {0} is out of stock")]
        OutOfStock(String),
        #[error("the inventory table is unavailable")]
        Store(#[source] std::io::Error),
    }

    impl Classify for ReserveError {
        fn class(&self) -> ErrorClass {
            match self {
                Self::OutOfStock(_) => ErrorClass::Permanent,
                Self::Store(_) => ErrorClass::Retryable,
            }
        }
        fn error_type(&self) -> &'static str {
            match self {
                Self::OutOfStock(_) => "OutOfStock",
                Self::Store(_) => "InventoryUnavailable",
            }
        }
    }

    #[test]
    fn a_diagnostic_carries_the_stable_type_and_the_whole_cause_chain() {
        let d = diagnostic(&ReserveError::OutOfStock("SKU-1".into()));
        assert_eq!(
            (d.error_type.as_str(), d.error_message.as_str()),
            ("OutOfStock", "SKU SKU-1 is out of stock")
        );

        let d = diagnostic(&ReserveError::Store(std::io::Error::other(
            "connection reset",
        )));
        assert_eq!(d.error_type, "InventoryUnavailable");
        assert_eq!(
            d.error_message,
            "the inventory table is unavailable: connection reset"
        );
    }
}
