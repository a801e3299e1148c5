//! The W3C trace context (`traceparent`) of a span: parsed, continued, and carried by the running
//! hop so that what it publishes continues its trace.

use std::future::Future;

use chrono::Utc;

/// The W3C trace context header, on HTTP requests in and out.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The W3C trace context of one span: `00-<trace id>-<span id>-<flags>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, shared by every span of the trace.
    pub trace_id: String,
    /// 16 lowercase hex digits, this span's own.
    pub span_id: String,
    /// The span this one continues, if any.
    pub parent_id: Option<String>,
    /// Whether the trace is sampled (the flags' low bit).
    pub sampled: bool,
}

impl TraceContext {
    /// The span a `traceparent` names, or `None` when it is malformed (version `00` only, ids of
    /// the right length in hex, not all zeros).
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes().all(|b| b.is_ascii_hexdigit())
                && s.bytes().any(|b| b != b'0')
        };
        if version != "00"
            || !hex(trace_id, 32)
            || !hex(span_id, 16)
            || flags.len() != 2
            || !flags.bytes().all(|b| b.is_ascii_hexdigit())
            || parts.next().is_some()
        {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: span_id.to_ascii_lowercase(),
            parent_id: None,
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace's first span. The trace id starts with the time in seconds, as X-Ray's do, so
    /// the same id works as an X-Ray trace id.
    pub fn root() -> Self {
        let seconds = u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX);
        Self {
            trace_id: format!(
                "{seconds:08x}{:08x}{:016x}",
                fastrand::u32(..),
                fastrand::u64(..)
            ),
            span_id: new_span_id(),
            parent_id: None,
            sampled: true,
        }
    }

    /// A new span continuing `parent`.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: new_span_id(),
            parent_id: Some(self.span_id.clone()),
            sampled: self.sampled,
        }
    }

    /// A child of the span `traceparent` names, or a new trace when there is none or it is
    /// malformed (logged: a broken trace should be visible, not silently restarted).
    pub fn continue_from(traceparent: Option<&str>) -> Self {
        match traceparent.map(|t| (t, Self::parse(t))) {
            Some((_, Some(parent))) => parent.child(),
            Some((malformed, None)) => {
                // A valid traceparent is 55 characters: more of the sender's text says nothing more.
                let shown: String = malformed.chars().take(64).collect();
                tracing::warn!(
                    traceparent = %shown.escape_debug(),
                    length = malformed.len(),
                    "malformed traceparent; starting a new trace"
                );
                Self::root()
            }
            None => Self::root(),
        }
    }

    /// This span as a `traceparent`, for what it publishes.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// This span as an X-Ray trace header (`Root=1-…-…;Parent=…;Sampled=…`).
    pub fn xray_header(&self) -> String {
        format!(
            "Root=1-{}-{};Parent={};Sampled={}",
            &self.trace_id[..8],
            &self.trace_id[8..],
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

fn new_span_id() -> String {
    format!("{:016x}", fastrand::u64(1..))
}

tokio::task_local! {
    pub(super) static CURRENT: TraceContext;
}

/// The `traceparent` for an event published now: the running hop's span, so the event's consumers
/// continue it. `None` outside a hop.
pub fn current_traceparent() -> Option<String> {
    CURRENT.try_with(TraceContext::traceparent).ok()
}

/// Runs `work` as the span `context`: what it publishes continues `context`.
pub async fn in_context<F: Future>(context: TraceContext, work: F) -> F::Output {
    CURRENT.scope(context, work).await
}
