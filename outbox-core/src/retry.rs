//! Retry policy: exponential backoff with jitter, then the dead-letter state.

use std::time::Duration;

use crate::error::{Error, Result};

/// How failed publishes are retried.
///
/// Attempt `n` (1-based) waits `min(initial * multiplier^(n-1), max)` scaled by a random factor in
/// `[1 - jitter, 1]`, so retries of many messages spread out instead of arriving together, and
/// the wait still grows from one attempt to the next. After `max_attempts` failures the message
/// is dead.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
    max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 1 s, doubling, capped at 10 min, 20% jitter, 12 attempts (about 35 minutes in all).
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(600),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: 12,
        }
    }
}

/// What to do with a message after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Give up: move the message to the dead state.
    Dead,
}

impl RetryPolicy {
    /// A policy with the given bounds.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] unless `0 < initial <= max`, `multiplier >= 1`, `0 <= jitter < 1` and
    /// `max_attempts >= 1`.
    pub fn new(
        initial: Duration,
        max: Duration,
        multiplier: f64,
        jitter: f64,
        max_attempts: u32,
    ) -> Result<Self> {
        if initial.is_zero() || initial > max {
            return Err(Error::Config(format!(
                "retry delays must satisfy 0 < initial ({initial:?}) <= max ({max:?})"
            )));
        }
        if !(multiplier >= 1.0 && multiplier.is_finite()) {
            return Err(Error::Config(format!(
                "retry multiplier must be a finite number >= 1, got {multiplier}"
            )));
        }
        if !(0.0..1.0).contains(&jitter) {
            return Err(Error::Config(format!(
                "retry jitter must be in [0, 1), got {jitter}"
            )));
        }
        if max_attempts == 0 {
            return Err(Error::Config("max_attempts must be at least 1".into()));
        }
        Ok(Self {
            initial,
            max,
            multiplier,
            jitter,
            max_attempts,
        })
    }

    /// The same policy with a different attempt limit (at least 1).
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Attempts allowed before a message is dead.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay before attempt `failed + 1`, without jitter.
    pub fn base_delay(&self, failed: u32) -> Duration {
        let exp = failed.saturating_sub(1).min(64) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        Duration::from_secs_f64(secs.min(self.max.as_secs_f64()))
    }

    /// Decides what follows the `failed`-th failed attempt of a message.
    pub fn decide(&self, failed: u32) -> RetryDecision {
        if failed >= self.max_attempts {
            return RetryDecision::Dead;
        }
        let base = self.base_delay(failed);
        let factor = 1.0 - self.jitter * fastrand::f64();
        RetryDecision::RetryAfter(base.mul_f64(factor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            2.0,
            0.2,
            10,
        )
        .unwrap();
        for failed in 1..=4 {
            let base = p.base_delay(failed);
            assert_eq!(base, Duration::from_millis(100 * (1 << (failed - 1))));
            for _ in 0..50 {
                let RetryDecision::RetryAfter(d) = p.decide(failed) else {
                    panic!("not dead yet")
                };
                assert!(d <= base && d >= base.mul_f64(0.8), "{d:?} vs {base:?}");
            }
            // The shortest wait of the next attempt is longer than the longest of this one.
            assert!(p.base_delay(failed + 1).mul_f64(0.8) > base || failed >= 4);
        }
        assert_eq!(p.base_delay(9), Duration::from_secs(1));
        assert_eq!(p.decide(10), RetryDecision::Dead);
    }

    #[test]
    fn rejects_nonsense() {
        let s = Duration::from_secs(1);
        assert!(RetryPolicy::new(Duration::ZERO, s, 2.0, 0.1, 3).is_err());
        assert!(RetryPolicy::new(s, s, 0.5, 0.1, 3).is_err());
        assert!(RetryPolicy::new(s, s, 2.0, 1.0, 3).is_err());
        assert!(RetryPolicy::new(s, s, 2.0, 0.1, 0).is_err());
    }
}
