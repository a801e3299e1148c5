//! busline's shared core.
//!
//! Every busline Lambda is a thin `main.rs` over a handler that depends on the pieces in this crate:
//!
//! - [`envelope`]: the CloudEvents 1.0 envelope every event travels in, and its lossless mapping to and
//!   from EventBridge; [`claim_check`]: payloads too large for the bus, kept in S3 and resolved;
//! - [`bus`] and [`audit`]: ports (traits) for publishing events and keeping the audit trail, each
//!   with an AWS adapter and an in-memory twin for fast tests;
//! - the reliability toolkit: [`idempotency`] (run a handler once per request however often it is
//!   delivered), [`batch`] (partial batch responses for SQS, DynamoDB Streams and Kinesis, with
//!   dead letters), [`checkpoint`] (a connector's cursor with optimistic concurrency) and [`retry`]
//!   (backoff with full jitter that respects the invocation's deadline);
//! - [`config`] and [`aws`]: configuration read once at cold start, and SDK clients built once;
//! - [`tls`]: the trust every HTTPS client starts from (the roots compiled in, or the system's store);
//! - [`telemetry`]: JSON logs and CloudWatch Embedded Metric Format metrics;
//! - [`error`]: the retryable / permanent / duplicate taxonomy that becomes a Lambda `Diagnostic`,
//!   and [`sdk_error`]: every AWS SDK error classified once into it;
//! - [`time`]: RFC 3339 times written and read fast, exactly as chrono does;
//! - [`signature`] and [`schema`]: webhook signatures, JSON Schema validation, and the schema
//!   compatibility rules ([`schema::compat`]);
//! - [`canonical`]: the canonical model every dialect is translated into, with its versioned
//!   schemas and upcasting; [`transform`]: the runtime of the transformers (translate, enrich, split);
//! - `api` (feature `api`): JSON answers and refusals for functions behind an HTTP endpoint;
//! - [`redrive`]: what sits in a dead-letter queue, and moving chosen letters back (`make redrive`).
#![warn(missing_docs)]

#[cfg(feature = "api")]
pub mod api;
pub mod audit;
pub mod aws;
pub mod batch;
pub mod bus;
pub mod canonical;
pub mod checkpoint;
pub mod claim_check;
pub mod config;
pub mod dynamodb;
pub mod envelope;
pub mod error;
pub mod idempotency;
pub mod redrive;
pub mod retry;
pub mod schema;
pub mod sdk_error;
pub mod signature;
pub mod telemetry;
pub mod text;
pub mod time;
pub mod tls;
pub mod transform;

pub use envelope::{Envelope, EventType};
pub use error::{Classify, ErrorClass};
