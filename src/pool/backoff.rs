//! Exponential backoff with jitter, for reconnects and for call retries.

use std::time::Duration;

/// An exponential backoff schedule: `initial × multiplier^n`, capped at
/// `max`, each delay spread by `jitter` (0.2 = ±20 %).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
    pub jitter: f64,
}

impl Backoff {
    /// The reconnect schedule of the gRPC connection-backoff specification:
    /// 1 s, ×1.6, ±20 %, at most 120 s.
    pub const RECONNECT: Backoff = Backoff {
        initial: Duration::from_secs(1),
        multiplier: 1.6,
        max: Duration::from_secs(120),
        jitter: 0.2,
    };

    /// The un-jittered delay before attempt `n` (0-based), capped at `max`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let growth = self.multiplier.powi(attempt.min(64) as i32);
        let seconds = self.initial.as_secs_f64() * growth;
        if !seconds.is_finite() || seconds >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(seconds)
        }
    }

    /// The delay before attempt `n`, spread by ±`jitter` so that clients
    /// that failed together do not come back together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let spread = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
        Duration::from_secs_f64((base * spread).max(0.0))
    }

    /// "Full jitter" for call retries (gRPC A6): uniformly random in
    /// `[0, base_delay(n)]`.
    pub fn full_jitter_delay(&self, attempt: u32) -> Duration {
        self.base_delay(attempt).mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_schedule_grows_by_1_6_and_caps_at_120_seconds() {
        let b = Backoff::RECONNECT;
        assert_eq!(b.base_delay(0), Duration::from_secs(1));
        assert_eq!(b.base_delay(1), Duration::from_millis(1600));
        assert!((b.base_delay(2).as_secs_f64() - 2.56).abs() < 1e-9);
        assert_eq!(b.base_delay(20), Duration::from_secs(120));
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(120));
    }

    #[test]
    fn reconnect_jitter_stays_within_twenty_percent() {
        let b = Backoff::RECONNECT;
        for attempt in 0..12 {
            let base = b.base_delay(attempt).as_secs_f64();
            for _ in 0..200 {
                let d = b.delay(attempt).as_secs_f64();
                assert!(
                    d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                    "{d} vs {base}"
                );
            }
        }
    }

    #[test]
    fn full_jitter_never_exceeds_the_capped_base() {
        let b = Backoff {
            initial: Duration::from_millis(50),
            multiplier: 2.0,
            max: Duration::from_secs(2),
            jitter: 0.0,
        };
        for attempt in 0..40 {
            assert!(b.full_jitter_delay(attempt) <= b.base_delay(attempt));
        }
    }
}
