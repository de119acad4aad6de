//! Retry policies: when the next attempt is due after a failure, and when to give up.
//!
//! Randomness for jitter is an argument ([`Jitter`]), never drawn here, so every schedule is
//! reproducible in tests.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;

use crate::add_saturating;

/// Most attempts any policy may allow.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// Longest single wait between two attempts.
pub const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest time a delivery may keep being retried.
pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(30 * 24 * 3600);

/// A random value in `[0, 1]` supplied by the caller, used for full jitter.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Jitter(f64);

impl Jitter {
    /// No randomness: full jitter then waits the whole computed delay.
    pub const MAX: Jitter = Jitter(1.0);

    /// Clamps `value` into `[0, 1]`; NaN counts as 1.
    pub fn new(value: f64) -> Self {
        if value.is_nan() {
            Self::MAX
        } else {
            Self(value.clamp(0.0, 1.0))
        }
    }

    /// Maps 64 random bits evenly onto `[0, 1)`.
    pub fn from_bits(bits: u64) -> Self {
        // The top 53 bits fill an f64 mantissa exactly.
        Self((bits >> 11) as f64 / (1u64 << 53) as f64)
    }

    pub fn value(self) -> f64 {
        self.0
    }
}

/// How long to wait after the n-th failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backoff {
    /// The same wait after every failure.
    Fixed { interval: Duration },
    /// `initial * 2^(n-1)`, capped at `cap`, then "full jitter": a uniform wait in `[0, that]`.
    Exponential { initial: Duration, cap: Duration },
    /// Explicit waits: the n-th failure waits `delays[n-1]`; past the end, the last one repeats.
    Schedule { delays: Vec<Duration> },
}

/// When to retry and when to give up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RetryPolicyRepr", into = "RetryPolicyRepr")]
pub struct RetryPolicy {
    backoff: Backoff,
    max_attempts: u32,
    max_age: Option<Duration>,
}

/// Why a retry policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RetryPolicyError {
    #[error("retryPolicy.maxAttempts: must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {0}")]
    MaxAttempts(u32),
    #[error("retryPolicy.{field}: must be at most {} seconds", MAX_INTERVAL.as_secs())]
    IntervalTooLong { field: &'static str },
    #[error("retryPolicy.capMs: must not be less than initialMs")]
    CapBelowInitial,
    #[error("retryPolicy.delaysMs: must list between 1 and {MAX_ATTEMPTS_LIMIT} delays")]
    ScheduleLength,
    #[error("retryPolicy.maxAgeMs: must be between 1 ms and {} seconds", MAX_AGE_LIMIT.as_secs())]
    MaxAge,
    #[error("retryPolicy.name: unknown preset {0:?}; use identus or standard-webhooks")]
    UnknownPreset(String),
}

impl RetryPolicy {
    /// Validates a policy.
    ///
    /// # Errors
    /// A [`RetryPolicyError`] naming the field out of bounds.
    pub fn new(
        backoff: Backoff,
        max_attempts: u32,
        max_age: Option<Duration>,
    ) -> Result<Self, RetryPolicyError> {
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
            return Err(RetryPolicyError::MaxAttempts(max_attempts));
        }
        match &backoff {
            Backoff::Fixed { interval } => check_interval(*interval, "intervalMs")?,
            Backoff::Exponential { initial, cap } => {
                check_interval(*initial, "initialMs")?;
                check_interval(*cap, "capMs")?;
                if cap < initial {
                    return Err(RetryPolicyError::CapBelowInitial);
                }
            }
            Backoff::Schedule { delays } => {
                if delays.is_empty() || delays.len() > MAX_ATTEMPTS_LIMIT as usize {
                    return Err(RetryPolicyError::ScheduleLength);
                }
                for delay in delays {
                    check_interval(*delay, "delaysMs")?;
                }
            }
        }
        if let Some(age) = max_age
            && (age.is_zero() || age > MAX_AGE_LIMIT)
        {
            return Err(RetryPolicyError::MaxAge);
        }
        Ok(Self {
            backoff,
            max_attempts,
            max_age,
        })
    }

    /// The Identus agent's fixed behaviour: 3 attempts in total, 5 seconds apart. The default.
    pub fn identus() -> Self {
        Self {
            backoff: Backoff::Fixed {
                interval: Duration::from_secs(5),
            },
            max_attempts: 3,
            max_age: None,
        }
    }

    /// The schedule the Standard Webhooks specification recommends: at once, then after 5 s,
    /// 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (8 attempts over about 27.6 hours).
    pub fn standard_webhooks() -> Self {
        let secs = [5, 300, 1800, 7200, 18000, 36000, 36000];
        Self {
            backoff: Backoff::Schedule {
                delays: secs.iter().map(|s| Duration::from_secs(*s)).collect(),
            },
            max_attempts: 8,
            max_age: None,
        }
    }

    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// The wait after `failed_attempts` failures (counting from 1).
    pub fn delay_after(&self, failed_attempts: u32, jitter: Jitter) -> Duration {
        let n = failed_attempts.max(1);
        match &self.backoff {
            Backoff::Fixed { interval } => *interval,
            Backoff::Exponential { initial, cap } => {
                let factor = 2u32.saturating_pow(n - 1);
                let ceiling = initial.saturating_mul(factor).min(*cap);
                ceiling.mul_f64(jitter.value())
            }
            Backoff::Schedule { delays } => {
                let index = (n as usize - 1).min(delays.len() - 1);
                delays[index]
            }
        }
    }

    /// When the next attempt is due after `attempts_made` attempts have all failed, the last one
    /// ending at `now`; `None` when the policy gives up. `first_due` is when the delivery was
    /// first due: `max_age` counts from it. A server's `Retry-After` (already bounded by the
    /// caller) can push the next attempt later than the policy would, never earlier.
    pub fn next_attempt(
        &self,
        attempts_made: u32,
        first_due: OffsetDateTime,
        now: OffsetDateTime,
        retry_after: Option<Duration>,
        jitter: Jitter,
    ) -> Option<OffsetDateTime> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let wait = self
            .delay_after(attempts_made, jitter)
            .max(retry_after.unwrap_or_default());
        let next = add_saturating(now, wait);
        match self.max_age {
            Some(age) if next > add_saturating(first_due, age) => None,
            _ => Some(next),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::identus()
    }
}

fn check_interval(interval: Duration, field: &'static str) -> Result<(), RetryPolicyError> {
    if interval > MAX_INTERVAL {
        Err(RetryPolicyError::IntervalTooLong { field })
    } else {
        Ok(())
    }
}

/// The JSON form, used by the API and by storage:
/// `{"kind":"fixed","intervalMs":5000,"maxAttempts":3}`,
/// `{"kind":"exponential","initialMs":1000,"capMs":3600000,"maxAttempts":10}`,
/// `{"kind":"schedule","delaysMs":[5000,300000],"maxAttempts":3}`,
/// `{"kind":"preset","name":"identus"}`; each may add `"maxAgeMs"`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
enum RetryPolicyRepr {
    #[serde(rename_all = "camelCase")]
    Fixed {
        interval_ms: u64,
        max_attempts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_age_ms: Option<u64>,
    },
    #[serde(rename_all = "camelCase")]
    Exponential {
        initial_ms: u64,
        cap_ms: u64,
        max_attempts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_age_ms: Option<u64>,
    },
    #[serde(rename_all = "camelCase")]
    Schedule {
        delays_ms: Vec<u64>,
        max_attempts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_age_ms: Option<u64>,
    },
    Preset {
        name: String,
    },
}

impl TryFrom<RetryPolicyRepr> for RetryPolicy {
    type Error = RetryPolicyError;

    fn try_from(repr: RetryPolicyRepr) -> Result<Self, Self::Error> {
        let ms = Duration::from_millis;
        match repr {
            RetryPolicyRepr::Fixed {
                interval_ms,
                max_attempts,
                max_age_ms,
            } => RetryPolicy::new(
                Backoff::Fixed {
                    interval: ms(interval_ms),
                },
                max_attempts,
                max_age_ms.map(ms),
            ),
            RetryPolicyRepr::Exponential {
                initial_ms,
                cap_ms,
                max_attempts,
                max_age_ms,
            } => RetryPolicy::new(
                Backoff::Exponential {
                    initial: ms(initial_ms),
                    cap: ms(cap_ms),
                },
                max_attempts,
                max_age_ms.map(ms),
            ),
            RetryPolicyRepr::Schedule {
                delays_ms,
                max_attempts,
                max_age_ms,
            } => RetryPolicy::new(
                Backoff::Schedule {
                    delays: delays_ms.into_iter().map(ms).collect(),
                },
                max_attempts,
                max_age_ms.map(ms),
            ),
            RetryPolicyRepr::Preset { name } => match name.as_str() {
                "identus" => Ok(RetryPolicy::identus()),
                "standard-webhooks" => Ok(RetryPolicy::standard_webhooks()),
                _ => Err(RetryPolicyError::UnknownPreset(
                    name.chars().take(64).collect(),
                )),
            },
        }
    }
}

impl From<RetryPolicy> for RetryPolicyRepr {
    fn from(policy: RetryPolicy) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let max_attempts = policy.max_attempts;
        let max_age_ms = policy.max_age.map(ms);
        match policy.backoff {
            Backoff::Fixed { interval } => RetryPolicyRepr::Fixed {
                interval_ms: ms(interval),
                max_attempts,
                max_age_ms,
            },
            Backoff::Exponential { initial, cap } => RetryPolicyRepr::Exponential {
                initial_ms: ms(initial),
                cap_ms: ms(cap),
                max_attempts,
                max_age_ms,
            },
            Backoff::Schedule { delays } => RetryPolicyRepr::Schedule {
                delays_ms: delays.into_iter().map(ms).collect(),
                max_attempts,
                max_age_ms,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    #[test]
    fn identus_preset_is_three_attempts_five_seconds_apart() {
        let p = RetryPolicy::identus();
        assert_eq!(p.max_attempts(), 3);
        let second = p.next_attempt(1, T0, T0, None, Jitter::MAX).unwrap();
        assert_eq!(second - T0, time::Duration::seconds(5));
        let third = p.next_attempt(2, T0, second, None, Jitter::MAX).unwrap();
        assert_eq!(third - second, time::Duration::seconds(5));
        assert_eq!(p.next_attempt(3, T0, third, None, Jitter::MAX), None);
        assert_eq!(RetryPolicy::default(), p);
    }

    #[test]
    fn standard_webhooks_preset_follows_the_published_schedule() {
        let p = RetryPolicy::standard_webhooks();
        let waits: Vec<u64> = (1..p.max_attempts())
            .map(|n| p.delay_after(n, Jitter::MAX).as_secs())
            .collect();
        assert_eq!(waits, [5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(p.next_attempt(8, T0, T0, None, Jitter::MAX), None);
    }

    #[test]
    fn exponential_doubles_up_to_the_cap_and_applies_full_jitter() {
        let p = RetryPolicy::new(
            Backoff::Exponential {
                initial: Duration::from_secs(1),
                cap: Duration::from_secs(10),
            },
            10,
            None,
        )
        .unwrap();
        let full: Vec<u64> = (1..=6)
            .map(|n| p.delay_after(n, Jitter::MAX).as_secs())
            .collect();
        assert_eq!(full, [1, 2, 4, 8, 10, 10]);
        assert_eq!(p.delay_after(4, Jitter::new(0.5)), Duration::from_secs(4));
        assert_eq!(p.delay_after(4, Jitter::new(0.0)), Duration::ZERO);
    }

    #[test]
    fn retry_after_only_ever_delays() {
        let p = RetryPolicy::identus();
        let later = p
            .next_attempt(1, T0, T0, Some(Duration::from_secs(60)), Jitter::MAX)
            .unwrap();
        assert_eq!(later - T0, time::Duration::seconds(60));
        let sooner = p
            .next_attempt(1, T0, T0, Some(Duration::from_secs(1)), Jitter::MAX)
            .unwrap();
        assert_eq!(sooner - T0, time::Duration::seconds(5));
    }

    #[test]
    fn max_age_stops_retries_that_would_start_too_late() {
        let p = RetryPolicy::new(
            Backoff::Fixed {
                interval: Duration::from_secs(10),
            },
            100,
            Some(Duration::from_secs(25)),
        )
        .unwrap();
        assert!(
            p.next_attempt(1, T0, T0 + time::Duration::seconds(10), None, Jitter::MAX)
                .is_some()
        );
        assert_eq!(
            p.next_attempt(2, T0, T0 + time::Duration::seconds(20), None, Jitter::MAX),
            None
        );
    }

    #[test]
    fn json_forms_round_trip_and_bad_ones_are_refused() {
        for json in [
            r#"{"kind":"fixed","intervalMs":5000,"maxAttempts":3}"#,
            r#"{"kind":"exponential","initialMs":1000,"capMs":60000,"maxAttempts":10,"maxAgeMs":86400000}"#,
            r#"{"kind":"schedule","delaysMs":[5000,300000],"maxAttempts":3}"#,
        ] {
            let p: RetryPolicy = serde_json::from_str(json).unwrap();
            assert_eq!(serde_json::to_string(&p).unwrap(), json);
        }
        let preset: RetryPolicy =
            serde_json::from_str(r#"{"kind":"preset","name":"identus"}"#).unwrap();
        assert_eq!(preset, RetryPolicy::identus());
        for bad in [
            r#"{"kind":"fixed","intervalMs":5000,"maxAttempts":0}"#,
            r#"{"kind":"fixed","intervalMs":5000,"maxAttempts":101}"#,
            r#"{"kind":"fixed","intervalMs":999999999999,"maxAttempts":3}"#,
            r#"{"kind":"exponential","initialMs":10,"capMs":1,"maxAttempts":3}"#,
            r#"{"kind":"schedule","delaysMs":[],"maxAttempts":3}"#,
            r#"{"kind":"preset","name":"forever"}"#,
            r#"{"kind":"fixed","intervalMs":5000,"maxAttempts":3,"extra":1}"#,
        ] {
            assert!(serde_json::from_str::<RetryPolicy>(bad).is_err(), "{bad}");
        }
    }
}
