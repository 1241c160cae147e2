//! The retry policy, all of it:
//!
//! - [`retry_method`]: what a failure allows, from the error's class
//!   ([`Error::is_retryable`](crate::Error::is_retryable)), how far the
//!   request got, whether the method is idempotent and the server's
//!   pushback. One exhaustive match, as redis-rs's `retry_method()`.
//! - [`CallRetries`]: what one call does next, spending its own allowance,
//!   transparent resends and the client-wide budget.
//! - [`TokenBucket`]: the client-wide retry budget: retries stop when most
//!   recent attempts failed, so a dead or overloaded server is not
//!   hammered by every caller's retries at once (the token bucket of the
//!   gRPC retry design, A6).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::codec::Pushback;
use crate::pool::{Backoff, Delivery, Failure};

/// Transparent resends per call: requests that never reached the server
/// because their connection was going away are sent again at once, without
/// counting against `max_retries`, at most this many times (gRPC's
/// transparent retry), so a server that refuses every stream still ends in
/// ordinary retries.
const MAX_TRANSPARENT_RESENDS: u32 = 2;

/// What a failure allows, before any allowance is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryMethod {
    /// The server never processed it: send it again at once.
    ResendNow,
    /// Trying again later could succeed and cannot apply the call twice.
    RetryWithBackoff,
    /// Report the failure: a retry cannot help, or could apply a
    /// non-idempotent call twice, or the server said stop.
    NoRetry,
}

/// Decides what a failed attempt allows.
pub(crate) fn retry_method(failure: &Failure, idempotent: bool) -> RetryMethod {
    let transient = failure.error.is_retryable();
    let stopped = failure.pushback == Some(Pushback::Stop);
    match (failure.delivery, transient, idempotent, stopped) {
        // Refused unprocessed because the connection was going away: safe
        // for every method, and not the server asking us to back off.
        (Delivery::Refused, _, _, _) => RetryMethod::ResendNow,
        // The server asked for no retries (negative or malformed pushback).
        (_, _, _, true) => RetryMethod::NoRetry,
        // The request or the server's data decided it: the same again fails
        // the same way.
        (_, false, _, false) => RetryMethod::NoRetry,
        (Delivery::Unsent, true, _, false) => RetryMethod::RetryWithBackoff,
        // A call the server may have processed is repeated only when
        // repeating it cannot change the outcome.
        (Delivery::MaybeProcessed, true, true, false) => RetryMethod::RetryWithBackoff,
        (Delivery::MaybeProcessed, true, false, false) => RetryMethod::NoRetry,
    }
}

/// What a call does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextStep {
    /// Send again at once: the server never saw the request.
    ResendNow,
    /// Try again after this pause (if the deadline leaves time for it).
    RetryAfter(Duration),
    /// Report the failure.
    GiveUp,
}

/// The retry policy as one call sees it: its own allowance, the client's
/// budget and backoff, and what the failure says about itself.
pub(crate) struct CallRetries<'a> {
    max_retries: u32,
    idempotent: bool,
    budget: Option<&'a TokenBucket>,
    backoff: &'a Backoff,
    retries: u32,
    resends: u32,
}

impl<'a> CallRetries<'a> {
    pub(crate) fn new(
        max_retries: u32,
        idempotent: bool,
        budget: Option<&'a TokenBucket>,
        backoff: &'a Backoff,
    ) -> Self {
        CallRetries {
            max_retries,
            idempotent,
            budget,
            backoff,
            retries: 0,
            resends: 0,
        }
    }

    /// An attempt succeeded.
    pub(crate) fn succeeded(&self) {
        if let Some(budget) = self.budget {
            budget.record_success();
        }
    }

    /// Decides what follows a failed attempt, and counts it.
    pub(crate) fn after(&mut self, failure: &Failure) -> NextStep {
        let method = match retry_method(failure, self.idempotent) {
            // A transparent resend is not a failure of the server's: it
            // leaves the budget alone.
            RetryMethod::ResendNow if self.resends < MAX_TRANSPARENT_RESENDS => {
                self.resends += 1;
                return NextStep::ResendNow;
            }
            // Refused too often: the server surely never saw it, so it may
            // still be retried as an ordinary retry.
            RetryMethod::ResendNow => RetryMethod::RetryWithBackoff,
            method => method,
        };
        if failure.error.is_retryable() {
            if let Some(budget) = self.budget {
                budget.record_failure();
            }
        }
        let allowed = method == RetryMethod::RetryWithBackoff
            && self.retries < self.max_retries
            && self.budget.is_none_or(TokenBucket::allows_retry);
        if !allowed {
            return NextStep::GiveUp;
        }
        let pause = match failure.pushback {
            Some(Pushback::After(pause)) => pause,
            _ => self.backoff.full_jitter_delay(self.retries),
        };
        self.retries += 1;
        NextStep::RetryAfter(pause)
    }
}

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
    use crate::error::Error;

    const BACKOFF: Backoff = Backoff {
        initial: Duration::from_millis(10),
        multiplier: 2.0,
        max: Duration::from_millis(40),
        jitter: 0.0,
    };

    fn unavailable(maybe_processed: bool) -> Failure {
        let error = Error::Unavailable("down".into());
        if maybe_processed {
            Failure::after_send(error)
        } else {
            Failure::unsent(error)
        }
    }

    #[test]
    fn idempotent_calls_retry_up_to_their_allowance_with_capped_backoff() {
        let mut retries = CallRetries::new(3, true, None, &BACKOFF);
        for n in 0..3 {
            match retries.after(&unavailable(true)) {
                NextStep::RetryAfter(pause) => assert!(pause <= BACKOFF.base_delay(n)),
                other => panic!("attempt {n}: {other:?}"),
            }
        }
        assert_eq!(retries.after(&unavailable(true)), NextStep::GiveUp);
    }

    #[test]
    fn a_maybe_processed_non_idempotent_call_is_never_retried() {
        let mut retries = CallRetries::new(3, false, None, &BACKOFF);
        assert_eq!(retries.after(&unavailable(true)), NextStep::GiveUp);
        let mut retries = CallRetries::new(3, false, None, &BACKOFF);
        assert!(matches!(
            retries.after(&unavailable(false)),
            NextStep::RetryAfter(_)
        ));
    }

    #[test]
    fn non_retryable_errors_give_up_at_once() {
        let mut retries = CallRetries::new(3, true, None, &BACKOFF);
        let failure = Failure::after_send(Error::InvalidArgument("bad key".into()));
        assert_eq!(retries.after(&failure), NextStep::GiveUp);
    }

    #[test]
    fn never_processed_calls_are_resent_twice_without_spending_retries() {
        let mut retries = CallRetries::new(0, false, None, &BACKOFF);
        let refused = Failure::refused(Error::Unavailable("GOAWAY".into()));
        assert_eq!(retries.after(&refused), NextStep::ResendNow);
        assert_eq!(retries.after(&refused), NextStep::ResendNow);
        assert_eq!(
            retries.after(&refused),
            NextStep::GiveUp,
            "no retries were allowed"
        );
    }

    #[test]
    fn pushback_sets_the_pause_or_stops_retries() {
        let mut retries = CallRetries::new(3, true, None, &BACKOFF);
        let after = Failure {
            pushback: Some(Pushback::After(Duration::from_millis(750))),
            ..unavailable(true)
        };
        assert_eq!(
            retries.after(&after),
            NextStep::RetryAfter(Duration::from_millis(750))
        );
        let stop = Failure {
            pushback: Some(Pushback::Stop),
            ..unavailable(true)
        };
        assert_eq!(retries.after(&stop), NextStep::GiveUp);
    }

    #[test]
    fn the_policy_table_covers_every_delivery_and_error_class() {
        use RetryMethod::*;
        let transient = || Error::Unavailable("down".into());
        let permanent = || Error::InvalidArgument("bad key".into());
        let cases = [
            (Failure::unsent(transient()), false, RetryWithBackoff),
            (Failure::unsent(permanent()), true, NoRetry),
            (Failure::after_send(transient()), true, RetryWithBackoff),
            (Failure::after_send(transient()), false, NoRetry),
            (Failure::after_send(permanent()), true, NoRetry),
            (Failure::refused(transient()), false, ResendNow),
            (
                Failure {
                    pushback: Some(Pushback::Stop),
                    ..Failure::unsent(transient())
                },
                true,
                NoRetry,
            ),
            (
                Failure::after_send(Error::Status {
                    code: crate::Code::Aborted,
                    message: "conflict".into(),
                    details: None,
                }),
                true,
                RetryWithBackoff,
            ),
        ];
        for (failure, idempotent, expected) in cases {
            assert_eq!(
                retry_method(&failure, idempotent),
                expected,
                "{failure:?} idempotent={idempotent}"
            );
        }
    }

    /// A bucket with the default throttle after `failures` failed calls.
    fn after_failures(failures: usize) -> TokenBucket {
        let bucket = TokenBucket::new(RetryThrottle::default());
        for _ in 0..failures {
            bucket.record_failure();
        }
        bucket
    }

    #[test]
    fn an_exhausted_budget_stops_retries_for_every_call() {
        let budget = after_failures(5);
        let mut retries = CallRetries::new(3, true, Some(&budget), &BACKOFF);
        assert_eq!(retries.after(&unavailable(true)), NextStep::GiveUp);
    }

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
        let bucket = after_failures(10);
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
        let bucket = after_failures(100);
        assert_eq!(bucket.milli_tokens.load(Ordering::Relaxed), 0);
    }
}
