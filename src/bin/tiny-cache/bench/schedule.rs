//! The open loop's timetable (`--rate`): when each call is due, and which
//! thread makes it.
//!
//! Calls are numbered from 0 over the whole run, warm-up included; call k
//! is due k / rate seconds after the start, and thread t makes the calls
//! k ≡ t (mod threads). The threads thus share the rate evenly and their
//! calls interleave, so the server sees one evenly spaced stream rather than
//! bursts of `threads` calls. A call's latency is measured from when it was
//! due, not from when its thread got round to it: when the server stalls,
//! the calls that should have started meanwhile count the wait they suffered
//! (coordinated omission corrected, as wrk2 does).

use std::time::{Duration, Instant};

/// Most calls one thread is asked to start per second: one every 10 µs,
/// less than any round trip through a kernel's loopback takes, so a rate
/// needing more cannot be met whatever the server does.
pub const MAX_CALLS_PER_THREAD_PER_S: f64 = 100_000.0;

/// Lowest `--rate`: one call every 100 s. Slower still, a run's timetable
/// would reach past what a clock can count.
pub const MIN_RATE_PER_S: f64 = 0.01;

/// Highest `--rate`: with more than this, the schedule's float arithmetic
/// (call number / rate) would lose the nanosecond.
pub const MAX_RATE_PER_S: f64 = 1e9;

/// The timetable of an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate_per_s: f64,
    threads: usize,
}

impl Schedule {
    /// `rate_per_s` calls a second spread over `threads` threads, or why
    /// they cannot make it.
    pub fn new(rate_per_s: f64, threads: usize) -> Result<Schedule, String> {
        if !(MIN_RATE_PER_S..=MAX_RATE_PER_S).contains(&rate_per_s) {
            return Err(format!(
                "--rate must be a number of calls per second from {MIN_RATE_PER_S} to \
                 {MAX_RATE_PER_S}"
            ));
        }
        let threads = threads.max(1);
        if rate_per_s / threads as f64 > MAX_CALLS_PER_THREAD_PER_S {
            let needed = (rate_per_s / MAX_CALLS_PER_THREAD_PER_S).ceil();
            return Err(format!(
                "--rate {rate_per_s} cannot be reached by {threads} thread(s): each thread waits \
                 for its call's reply, and no reply comes back within \
                 {:.0} µs, so it takes at least {needed:.0} threads (--threads)",
                1e6 / MAX_CALLS_PER_THREAD_PER_S
            ));
        }
        Ok(Schedule {
            rate_per_s,
            threads,
        })
    }

    /// When call `call` is due, after the schedule's start (saturating: a
    /// call beyond any clock is due at the end of time).
    pub fn due(&self, call: u64) -> Duration {
        Duration::try_from_secs_f64(call as f64 / self.rate_per_s).unwrap_or(Duration::MAX)
    }

    /// When call `call` is due, or `None` when that is past what an
    /// `Instant` can hold.
    pub fn due_at(&self, start: Instant, call: u64) -> Option<Instant> {
        start.checked_add(self.due(call))
    }

    /// How many calls are due strictly before `offset`: the number of the
    /// first call due at or after it.
    pub fn calls_before(&self, offset: Duration) -> u64 {
        let exact = offset.as_secs_f64() * self.rate_per_s;
        let mut calls = exact.ceil() as u64;
        // Float rounding may put a call on the wrong side of the line:
        // settle it with `due`, which is what the threads follow.
        while calls > 0 && self.due(calls - 1) >= offset {
            calls -= 1;
        }
        while self.due(calls) < offset {
            calls += 1;
        }
        calls
    }

    /// The first call of thread `thread`.
    pub fn first_call_of(&self, thread: usize) -> u64 {
        thread as u64
    }

    /// The call thread makes after `call`.
    pub fn next_call_after(&self, call: u64) -> u64 {
        call + self.threads as u64
    }

    /// How many of the calls from `from` to `to` (excluded) are thread
    /// `thread`'s.
    pub fn calls_of_thread(&self, thread: usize, from: u64, to: u64) -> u64 {
        let threads = self.threads as u64;
        let thread = thread as u64 % threads;
        // Calls of the thread below n: ceil((n - thread) / threads).
        let below = |n: u64| n.saturating_sub(thread).div_ceil(threads);
        below(to).saturating_sub(below(from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_due_evenly_spaced_at_the_rate() {
        let schedule = Schedule::new(2000.0, 16).unwrap();
        assert_eq!(schedule.due(0), Duration::ZERO);
        assert_eq!(schedule.due(1), Duration::from_micros(500));
        assert_eq!(schedule.due(2000), Duration::from_secs(1));
        let late = schedule
            .due(6001)
            .abs_diff(Duration::from_micros(3_000_500));
        assert!(late <= Duration::from_nanos(1), "{late:?}");
    }

    #[test]
    fn calls_before_counts_the_calls_due_in_a_window() {
        let schedule = Schedule::new(2000.0, 16).unwrap();
        assert_eq!(schedule.calls_before(Duration::ZERO), 0);
        // Exactly on a due time: that call is not before it.
        assert_eq!(schedule.calls_before(Duration::from_micros(500)), 1);
        assert_eq!(schedule.calls_before(Duration::from_micros(501)), 2);
        let warmup = Duration::from_millis(500);
        let end = warmup + Duration::from_secs(3);
        assert_eq!(
            schedule.calls_before(end) - schedule.calls_before(warmup),
            6000
        );
        let odd = Schedule::new(3.0, 1).unwrap();
        assert_eq!(odd.calls_before(Duration::from_secs(1)), 3);
        assert_eq!(odd.calls_before(Duration::from_millis(1001)), 4);
    }

    #[test]
    fn threads_take_turns_so_every_call_has_one_thread() {
        let schedule = Schedule::new(100.0, 3).unwrap();
        let mut seen = vec![0; 30];
        for thread in 0..3 {
            let mut call = schedule.first_call_of(thread);
            while call < 30 {
                assert_eq!(call % 3, thread as u64);
                seen[call as usize] += 1;
                call = schedule.next_call_after(call);
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
    }

    #[test]
    fn calls_of_a_thread_in_a_range_are_counted_exactly() {
        let schedule = Schedule::new(100.0, 4).unwrap();
        for thread in 0..4 {
            for from in 0..12 {
                for to in from..20 {
                    let expected = (from..to).filter(|k| k % 4 == thread as u64).count() as u64;
                    assert_eq!(
                        schedule.calls_of_thread(thread, from, to),
                        expected,
                        "thread {thread}, {from}..{to}"
                    );
                }
            }
        }
    }

    #[test]
    fn rates_the_threads_cannot_reach_are_refused_with_the_threads_needed() {
        let refused = Schedule::new(1_000_000.0, 4).unwrap_err();
        assert!(refused.contains("at least 10 threads"), "{refused}");
        assert!(Schedule::new(1_000_000.0, 10).is_ok());
        for bad in [0.0, -5.0, f64::NAN, f64::INFINITY, 2e9, 1e-9] {
            assert!(Schedule::new(bad, 1).is_err(), "{bad}");
        }
    }
}
