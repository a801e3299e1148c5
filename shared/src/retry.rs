//! Retries for calls that may succeed on a later attempt: exponential backoff with full jitter, a cap,
//! and the invocation's deadline.
//!
//! Full jitter (a random delay between zero and the exponential cap) keeps many Lambda instances
//! that failed together from retrying together. [`retry`] only retries errors whose
//! [`ErrorClass`](crate::ErrorClass) is `Retryable`: a permanent error goes straight to the caller's
//! failure path, and a duplicate is the caller's to treat as done. It never sleeps past the
//! [`Deadline`]: when the next delay would not leave [`DEADLINE_RESERVE`] for the attempt after it,
//! it gives up early and returns the last error, so the function still answers in time.
//!
//! ```
//! # use busline::retry::{retry, Backoff, Deadline};
//! # use busline::error::{Classify, ErrorClass};
//! # #[derive(Debug, thiserror::Error)] #[error("throttled")] struct Throttled;
//! # impl Classify for Throttled {
//! #     fn class(&self) -> ErrorClass { ErrorClass::Retryable }
//! #     fn error_type(&self) -> &'static str { "Throttled" }
//! # }
//! # async fn example() -> Result<u32, Throttled> {
//! let deadline = Deadline::after(std::time::Duration::from_secs(3)); // Deadline::of(&context) in a handler
//! retry(&Backoff::default(), Some(deadline), |attempt| async move {
//!     if attempt < 2 { Err(Throttled) } else { Ok(attempt) }
//! })
//! .await
//! # }
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Classify, ErrorClass};

/// Time [`retry`] keeps back before the deadline for the last attempt and the function's answer.
pub const DEADLINE_RESERVE: Duration = Duration::from_millis(200);

/// How many times to try, and how long to wait between tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Total attempts, the first included. At least 1.
    pub max_attempts: u32,
    /// The cap on the first retry's delay; it doubles on each further retry.
    pub base: Duration,
    /// The cap on any single delay.
    pub max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The upper bound of the delay before retry number `retry` (1 for the first retry).
    pub fn cap(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.max_delay)
    }

    /// A random delay in `0..=cap(retry)`.
    pub fn delay(&self, retry: u32) -> Duration {
        let cap = self.cap(retry).as_millis() as u64;
        Duration::from_millis(fastrand::u64(0..=cap))
    }
}

/// The moment an invocation must have answered by: Lambda's deadline for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    epoch_millis: i64,
}

impl Deadline {
    /// The deadline Lambda gave this invocation.
    pub fn of(context: &lambda_runtime::Context) -> Self {
        Self::from_epoch_millis(context.deadline as i64)
    }

    /// A deadline in milliseconds since the Unix epoch, as Lambda's Runtime API reports it.
    pub fn from_epoch_millis(epoch_millis: i64) -> Self {
        Self { epoch_millis }
    }

    /// A deadline `duration` from now, for code that runs outside Lambda.
    pub fn after(duration: Duration) -> Self {
        Self::from_epoch_millis(now_millis().saturating_add(duration.as_millis() as i64))
    }

    /// Milliseconds since the Unix epoch.
    pub fn epoch_millis(&self) -> i64 {
        self.epoch_millis
    }

    /// The deadline `margin` earlier: for the part of the work that must end first, such as the
    /// calls to a dependency before the answer.
    pub fn less(&self, margin: Duration) -> Self {
        let margin_ms = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX);
        Self::from_epoch_millis(self.epoch_millis.saturating_sub(margin_ms))
    }

    /// The time left, zero once it has passed.
    pub fn remaining(&self) -> Duration {
        Duration::from_millis(self.epoch_millis.saturating_sub(now_millis()).max(0) as u64)
    }
}

/// Milliseconds since the Unix epoch, by the system clock.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Calls `attempt` (with the attempt number, from 1) until it succeeds, fails with an error that is
/// not retryable, runs out of attempts, or would have to sleep past `deadline`. Returns the last
/// result.
pub async fn retry<T, E, F, Fut>(
    backoff: &Backoff,
    deadline: Option<Deadline>,
    mut attempt: F,
) -> Result<T, E>
where
    E: Classify,
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut number = 1;
    loop {
        let error = match attempt(number).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if error.class() != ErrorClass::Retryable || number >= backoff.max_attempts {
            return Err(error);
        }
        let delay = backoff.delay(number);
        if let Some(deadline) = deadline
            && delay + DEADLINE_RESERVE >= deadline.remaining()
        {
            tracing::warn!(attempt = number, error = %error, "not retrying: the invocation's deadline is too close");
            return Err(error);
        }
        tracing::debug!(attempt = number, delay_ms = delay.as_millis() as u64, error = %error, "retrying");
        tokio::time::sleep(delay).await;
        number += 1;
    }
}

/// Paces units of work (a batch's records, a sync's pages) against a deadline: the next one starts
/// only while the time left holds the stop margin and the slowest unit so far, so a slow
/// dependency makes the work stop cleanly between units instead of Lambda killing it in the middle
/// of one. Workers running at once share one pacer.
#[derive(Debug)]
pub struct Pacer {
    deadline: Deadline,
    margin: Duration,
    slowest: Mutex<Duration>,
}

/// Why the next unit was not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortfall {
    /// The time left before the deadline.
    pub left: Duration,
    /// The time kept in hand for answering.
    pub margin: Duration,
    /// The longest a unit has taken so far.
    pub slowest: Duration,
}

impl Pacer {
    /// A pacer for work that must be done, `margin` in hand, by `deadline`.
    pub fn new(deadline: Deadline, margin: Duration) -> Self {
        Self {
            deadline,
            margin,
            slowest: Mutex::new(Duration::ZERO),
        }
    }

    /// Whether another unit may start now.
    pub fn check(&self) -> Result<(), Shortfall> {
        let slowest = *self.slowest.lock().unwrap_or_else(PoisonError::into_inner);
        let left = self.deadline.remaining();
        if left <= self.margin + slowest {
            Err(Shortfall {
                left,
                margin: self.margin,
                slowest,
            })
        } else {
            Ok(())
        }
    }

    /// Records that a unit took `took`.
    pub fn took(&self, took: Duration) {
        let mut slowest = self.slowest.lock().unwrap_or_else(PoisonError::into_inner);
        *slowest = (*slowest).max(took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_less_a_margin_is_that_much_earlier_without_overflowing() {
        let deadline = Deadline::from_epoch_millis(10_000);
        assert_eq!(
            deadline.less(Duration::from_millis(1_500)).epoch_millis(),
            8_500
        );
        assert_eq!(
            deadline.less(Duration::MAX).epoch_millis(),
            10_000 - i64::MAX
        );
    }

    #[test]
    fn a_pacer_starts_no_unit_the_time_left_cannot_hold() {
        let pacer = Pacer::new(
            Deadline::after(Duration::from_secs(60)),
            Duration::from_secs(1),
        );
        assert_eq!(pacer.check(), Ok(()));
        // A unit as long as the time left: the next would outlive the deadline.
        pacer.took(Duration::from_secs(59));
        let short = pacer.check().unwrap_err();
        assert_eq!(
            (short.margin, short.slowest),
            (Duration::from_secs(1), Duration::from_secs(59))
        );
        assert!(short.left <= Duration::from_secs(60));
        // A shorter unit later does not lower the slowest.
        pacer.took(Duration::from_millis(1));
        assert!(pacer.check().is_err());
        let spent = Pacer::new(Deadline::after(Duration::ZERO), Duration::ZERO);
        assert!(spent.check().is_err(), "no time left holds nothing");
    }
    use std::cell::Cell;

    #[derive(Debug, thiserror::Error)]
    #[error("{0:?}")]
    struct Failure(ErrorClass);

    impl Classify for Failure {
        fn class(&self) -> ErrorClass {
            self.0
        }
        fn error_type(&self) -> &'static str {
            "Failure"
        }
    }

    fn fast() -> Backoff {
        Backoff {
            max_attempts: 5,
            base: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        }
    }

    #[test]
    fn the_cap_doubles_per_retry_up_to_the_maximum() {
        let b = Backoff {
            max_attempts: 10,
            base: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let caps: Vec<u128> = (1..=5).map(|r| b.cap(r).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 500, 500]);
        assert!((1..100).all(|r| b.delay(r) <= b.max_delay));
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_are_retried_until_success() {
        let calls = &Cell::new(0);
        let result = retry(&fast(), None, |n| async move {
            calls.set(n);
            if n < 3 {
                Err(Failure(ErrorClass::Retryable))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!((result.unwrap(), calls.get()), (3, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_and_duplicate_errors_are_not_retried() {
        for class in [ErrorClass::Permanent, ErrorClass::Duplicate] {
            let calls = &Cell::new(0);
            let result: Result<(), _> = retry(&fast(), None, |n| async move {
                calls.set(n);
                Err(Failure(class))
            })
            .await;
            assert_eq!((result.unwrap_err().0, calls.get()), (class, 1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_capped() {
        let calls = &Cell::new(0);
        let result: Result<(), _> = retry(&fast(), None, |n| async move {
            calls.set(n);
            Err(Failure(ErrorClass::Retryable))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.get(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn never_sleeps_past_the_deadline() {
        let calls = &Cell::new(0);
        let far = Deadline::after(Duration::from_secs(600));
        let _: Result<(), _> = retry(&fast(), Some(far), |n| async move {
            calls.set(n);
            Err(Failure(ErrorClass::Retryable))
        })
        .await;
        assert_eq!(
            calls.get(),
            5,
            "a distant deadline does not shorten the retries"
        );

        let past = Deadline::from_epoch_millis(now_millis() - 1);
        assert_eq!(past.remaining(), Duration::ZERO);
        let calls = &Cell::new(0);
        let _: Result<(), _> = retry(&fast(), Some(past), |n| async move {
            calls.set(n);
            Err(Failure(ErrorClass::Retryable))
        })
        .await;
        assert_eq!(
            calls.get(),
            1,
            "a passed deadline leaves no room for a retry"
        );

        let close = Deadline::after(DEADLINE_RESERVE);
        let calls = &Cell::new(0);
        let _: Result<(), _> = retry(&fast(), Some(close), |n| async move {
            calls.set(n);
            Err(Failure(ErrorClass::Retryable))
        })
        .await;
        assert_eq!(calls.get(), 1, "the reserve is kept for the answer");
    }
}
