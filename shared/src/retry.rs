//! Exponential backoff with full jitter, for calls that may succeed on a later attempt.
//!
//! Full jitter (a random delay between zero and the exponential cap) keeps many Lambda instances
//! that failed together from retrying together.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
