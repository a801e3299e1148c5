//! Dunning's schedule: when a declined renewal is charged again, and when dunning gives up.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When dunning retries a declined charge, each retry an offset from the decline, strictly
/// increasing: by default days 1, 3 and 7 ([`DunningSchedule::default`]). Written as a list of
/// offsets with units (`1d,3d,7d`; `5s,10s,15s` for a local run), as the `DUNNING_SCHEDULE`
/// parameter takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DunningSchedule {
    retries: Vec<Duration>,
}

/// The most retries a schedule may hold.
const MAX_RETRIES: usize = 10;

/// The latest a retry may come after the decline.
const MAX_OFFSET: Duration = Duration::from_secs(60 * 24 * 3600);

/// Why a text is not a dunning schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "dunning schedule {text:?}: {why}; write 1 to {MAX_RETRIES} increasing offsets after the \
     decline, each a number and a unit (s, m, h or d), such as 1d,3d,7d"
)]
pub struct ScheduleError {
    /// The schedule as given.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

/// One retry of a declined charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DunningAttempt {
    /// 1 for the first retry.
    pub attempt: u32,
    /// How long after the decline it comes.
    pub after: Duration,
}

/// What dunning does after a charge was declined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "next", rename_all = "snake_case")]
pub enum DunningNext {
    /// Wait, then charge again (sooner if the customer updates their card).
    Retry {
        /// The retry's number.
        attempt: u32,
        /// How long to wait from now, in whole seconds.
        wait_seconds: u64,
    },
    /// That was the last retry: suspend the subscription.
    Suspend,
}

impl Default for DunningSchedule {
    fn default() -> Self {
        let day = |n: u64| Duration::from_secs(n * 24 * 3600);
        Self {
            retries: vec![day(1), day(3), day(7)],
        }
    }
}

impl DunningSchedule {
    /// The retries, in order.
    pub fn attempts(&self) -> impl Iterator<Item = DunningAttempt> + '_ {
        self.retries
            .iter()
            .zip(1..)
            .map(|(&after, attempt)| DunningAttempt { attempt, after })
    }

    /// What follows the decline of `attempt` (0: the renewal run's charge): the next retry and the
    /// wait until it, measured between the two attempts' offsets, or suspension after the last.
    pub fn after_decline(&self, attempt: u32) -> DunningNext {
        let offset = |n: u32| match n {
            0 => Some(Duration::ZERO),
            n => self.retries.get(n as usize - 1).copied(),
        };
        match (offset(attempt), offset(attempt + 1)) {
            (Some(now), Some(next)) => DunningNext::Retry {
                attempt: attempt + 1,
                wait_seconds: next.saturating_sub(now).as_secs(),
            },
            _ => DunningNext::Suspend,
        }
    }
}

impl std::str::FromStr for DunningSchedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |why: String| ScheduleError {
            text: text.to_owned(),
            why,
        };
        let mut retries: Vec<Duration> = Vec::new();
        for item in text.split(',').map(str::trim) {
            let offset = offset(item).ok_or_else(|| error(format!("{item:?} is not an offset")))?;
            if offset.is_zero() || offset > MAX_OFFSET {
                return Err(error(format!("{item} is not within 1 s and 60 d")));
            }
            if retries.last().is_some_and(|&last| offset <= last) {
                return Err(error(format!(
                    "{item} does not come after the retry before it"
                )));
            }
            retries.push(offset);
        }
        if retries.len() > MAX_RETRIES {
            return Err(error(format!("{} retries", retries.len())));
        }
        Ok(Self { retries })
    }
}

/// `<number><unit>`, the unit one of s, m, h and d.
fn offset(item: &str) -> Option<Duration> {
    let unit_at = item.len().checked_sub(1)?;
    let (number, unit) = (item.get(..unit_at)?, item.get(unit_at..)?);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || number.len() > 9 {
        return None;
    }
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        _ => return None,
    };
    Some(Duration::from_secs(number.checked_mul(seconds)?))
}
