//! Why a message was not delivered, and which of those reasons are worth another try.

use std::time::Duration;

use busline::{Classify, ErrorClass};

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Not an envelope. Permanent.
    #[error("not an event: {0}")]
    NotAnEvent(String),
    /// No endpoint subscribes to the type. Permanent (the rule and the configuration disagree).
    #[error("no subscriber for {0}")]
    NoSubscriber(String),
    /// The endpoint has no signing key: the function started without its secret. Permanent.
    #[error("no signing secret for {0}")]
    NoSecret(String),
    /// The destination answered with a redirect, which is never followed. Permanent.
    #[error(
        "{destination} answered {status}, a redirect to {location:?}; redirects are not followed: update the subscription's URL"
    )]
    Redirected {
        /// The subscription's name (by default its URL's host), which keys its circuit.
        destination: String,
        /// The HTTP status.
        status: u16,
        /// The `Location` header, at most 300 bytes of it; empty when there is none.
        location: String,
    },
    /// The destination is disabled (it answered `410 Gone`). Permanent.
    #[error("{destination} is disabled ({reason}); enable it by deleting its circuit item")]
    Disabled {
        /// The subscription's name (by default its URL's host), which keys its circuit.
        destination: String,
        /// What disabled it, as its circuit records it (a `410 Gone`, with the start of the body).
        reason: String,
    },
    /// The destination refused it. Permanent.
    #[error("{destination} refused the event with {status}: {excerpt}")]
    Refused {
        /// The subscription's name (by default its URL's host), which keys its circuit.
        destination: String,
        /// The HTTP status.
        status: u16,
        /// The start of its answer.
        excerpt: String,
    },
    /// The destination failed; the message is tried again in `retry_in`.
    #[error("{destination} failed ({why}); retrying in {} s", retry_in.as_secs())]
    Failed {
        /// The subscription's name, or `every endpoint` when fanning the message out failed.
        destination: String,
        /// Why this try failed, in words, such as `answered 503 Service Unavailable: …`.
        why: String,
        /// When the message comes back.
        retry_in: Duration,
    },
    /// The endpoint kept failing past the retry horizon. Permanent.
    #[error(
        "{destination} was tried {attempts} times over {hours:.1} h, past the retry horizon; last: {last}"
    )]
    GaveUp {
        /// The subscription's name (by default its URL's host), which keys its circuit.
        destination: String,
        /// The last attempt's number, counted from 1 across the message's redeliveries.
        attempts: u32,
        /// Hours from the first attempt to the one that failed last.
        hours: f64,
        /// The last failure.
        last: String,
    },
    /// The record of the delivery cannot be kept: the idempotency table refused the call for
    /// good (its name, its permissions). Permanent; nothing was sent.
    #[error("the delivery to {destination} cannot be recorded, so it was not sent: {why}")]
    Unrecorded {
        /// The subscription's name (by default its URL's host), which keys its circuit.
        destination: String,
        /// The store's error.
        why: String,
    },
    /// The destination's circuit is open; the message waits until it may close.
    #[error("the circuit to {destination} is open; retrying in {} s", retry_in.as_secs())]
    CircuitOpen {
        /// The subscription's name (by default its URL's host), which keys its circuit.
        destination: String,
        /// When the message comes back.
        retry_in: Duration,
    },
}

impl Classify for DeliveryError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Failed { .. } | Self::CircuitOpen { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::NotAnEvent(_) => "NotAnEvent",
            Self::NoSubscriber(_) => "NoSubscriber",
            Self::NoSecret(_) => "NoSigningSecret",
            Self::Refused { .. } => "DeliveryRefused",
            Self::Redirected { .. } => "DeliveryRedirected",
            Self::Disabled { .. } => "EndpointDisabled",
            Self::GaveUp { .. } => "DeliveryGaveUp",
            Self::Failed { .. } => "DeliveryFailed",
            Self::CircuitOpen { .. } => "CircuitOpen",
            Self::Unrecorded { .. } => "DeliveryUnrecorded",
        }
    }
}
