//! busline's shared core.
//!
//! Every busline Lambda is a thin `main.rs` over a handler that depends on the pieces in this crate:
//!
//! - [`envelope`]: the CloudEvents 1.0 envelope every event travels in, and its lossless mapping to and
//!   from EventBridge;
//! - [`bus`], [`dedupe`] and [`audit`]: ports (traits) for publishing events, recording deliveries
//!   and keeping the audit trail, each with an AWS adapter and an in-memory twin for fast tests;
//! - [`config`] and [`aws`]: configuration read once at cold start, and SDK clients built once;
//! - [`telemetry`]: JSON logs and CloudWatch Embedded Metric Format metrics;
//! - [`error`]: the retryable / permanent / duplicate taxonomy that becomes a Lambda `Diagnostic`;
//! - [`signature`], [`schema`] and [`retry`]: webhook signatures, JSON Schema validation and backoff.
#![warn(missing_docs)]

pub mod audit;
pub mod aws;
pub mod batch;
pub mod bus;
pub mod checkpoint;
pub mod config;
pub mod dedupe;
pub mod envelope;
pub mod error;
pub mod idempotency;
pub mod retry;
pub mod schema;
pub mod signature;
pub mod telemetry;

pub use envelope::{Envelope, EventType};
pub use error::{Classify, ErrorClass};
