//! The client-wide retry budget: retries stop when most recent attempts
//! failed, so a dead or overloaded server is not hammered by every caller's
//! retries at once (the token bucket of the gRPC retry design, A6).

use std::sync::atomic::{AtomicU32, Ordering};

/// Settings of the retry budget, shared by every clone of a client.
///
/// The bucket holds up to `max_tokens`. Each retryable failure takes one
/// token, each success gives back `token_ratio`; calls retry only while
/// more than half the tokens are left. With the defaults (10, 0.1), five
/// failures in a row stop retries until about fifty successes refill it.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::{Client, RetryThrottle};
///
/// let client = Client::builder("127.0.0.1:50051")
///     .retry_throttle(Some(RetryThrottle { max_tokens: 20, token_ratio: 0.5 }))
///     .build()?;
/// # drop(client);
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryThrottle {
    /// Capacity of the bucket, in failures. Default 10.
    pub max_tokens: u32,
    /// Tokens a success gives back. Default 0.1.
    pub token_ratio: f64,
}

impl Default for RetryThrottle {
    fn default() -> Self {
        RetryThrottle {
            max_tokens: 10,
            token_ratio: 0.1,
        }
    }
}

/// Thousandths of a token, so the bucket is one lock-free integer.
const MILLI: u32 = 1000;

/// The live bucket behind a [`RetryThrottle`].
#[derive(Debug)]
pub(crate) struct TokenBucket {
    milli_tokens: AtomicU32,
    max_milli_tokens: u32,
    milli_per_success: u32,
}

impl TokenBucket {
    pub(crate) fn new(settings: RetryThrottle) -> TokenBucket {
        let max_milli_tokens = settings.max_tokens.saturating_mul(MILLI);
        let ratio = settings
            .token_ratio
            .clamp(0.0, f64::from(settings.max_tokens));
        TokenBucket {
            milli_tokens: AtomicU32::new(max_milli_tokens),
            max_milli_tokens,
            milli_per_success: (ratio * f64::from(MILLI)).round() as u32,
        }
    }

    /// A retryable attempt failed.
    pub(crate) fn record_failure(&self) {
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(MILLI))
            });
    }

    /// An attempt succeeded.
    pub(crate) fn record_success(&self) {
        if self.milli_tokens.load(Ordering::Relaxed) >= self.max_milli_tokens {
            return; // the common case: skip the atomic write
        }
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(
                    t.saturating_add(self.milli_per_success)
                        .min(self.max_milli_tokens),
                )
            });
    }

    /// Whether a retry may be made now.
    pub(crate) fn allows_retry(&self) -> bool {
        self.milli_tokens.load(Ordering::Relaxed) > self.max_milli_tokens / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_in_a_row_stop_retries_with_the_defaults() {
        let bucket = TokenBucket::new(RetryThrottle::default());
        for _ in 0..4 {
            bucket.record_failure();
            assert!(bucket.allows_retry());
        }
        bucket.record_failure();
        assert!(
            !bucket.allows_retry(),
            "5 tokens left is not more than half"
        );
    }

    #[test]
    fn successes_refill_the_bucket_slowly_and_never_past_its_size() {
        let bucket = TokenBucket::new(RetryThrottle::default());
        for _ in 0..10 {
            bucket.record_failure();
        }
        for _ in 0..50 {
            bucket.record_success();
        }
        assert!(
            !bucket.allows_retry(),
            "5.0 tokens: still not more than half"
        );
        bucket.record_success();
        assert!(bucket.allows_retry());
        for _ in 0..1000 {
            bucket.record_success();
        }
        for _ in 0..4 {
            bucket.record_failure();
        }
        assert!(
            bucket.allows_retry(),
            "the bucket must not have grown past 10"
        );
        bucket.record_failure();
        assert!(!bucket.allows_retry());
    }

    #[test]
    fn an_empty_bucket_stays_at_zero() {
        let bucket = TokenBucket::new(RetryThrottle::default());
        for _ in 0..100 {
            bucket.record_failure();
        }
        assert_eq!(bucket.milli_tokens.load(Ordering::Relaxed), 0);
    }
}
