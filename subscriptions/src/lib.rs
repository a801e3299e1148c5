//! Subscriptions: the domain of the monthly renewal and of dunning.
//!
//! A [`Subscription`] is charged once per [`Period`] (a calendar month), on its anchor day. The
//! renewal run for a period asks each subscription what to do ([`Subscription::renewal`]): charge it
//! (a [`Charge`] whose idempotency key is `<subscription>:<period>`, so a run started twice, a
//! redriven Map item or a step that crashed after the charge cannot charge it twice), or skip it,
//! with the reason. The charge's outcome moves the subscription on: renewed (the next renewal a
//! month on), or declined (`PAST_DUE`, and dunning starts).
//!
//! Dunning ([`DunningSchedule`]) retries the charge on a schedule (by default days 1, 3 and 7 after
//! the decline), each attempt with a key of its own (`<subscription>:<period>:<attempt>`): a payment
//! gateway answers a repeated key with its first answer, so a retry under the renewal's key would
//! only hear the decline again. Attempts are sequential within one dunning run per (subscription,
//! period), so at most one of them can succeed. After the last declined attempt the subscription is
//! `SUSPENDED`.
//!
//! Nothing here does I/O: the store, the payment gateway and the workflows are the functions' and
//! the state machines' business.

mod dunning;
mod period;
mod report;
mod subscription;

pub use dunning::{DunningAttempt, DunningNext, DunningSchedule, ScheduleError};
pub use period::{Period, PeriodError};
pub use report::{ItemOutcome, RunReport};
pub use subscription::{
    Change, Charge, MAX_ID_LEN, NewSubscription, Renewal, Skip, Status, Subscription,
    SubscriptionError,
};

#[cfg(test)]
mod tests;
