//! Hedged reads: when a key's first replica is slow to answer, ask the
//! next one too and take the first answer (The Tail at Scale, Dean and
//! Barroso 2013; gRPC's hedging policy).
//!
//! A read of one key with Q = 1 and another replica to spare (R > 1)
//! waits for its first replica for a delay: by default the recent 95th percentile of the
//! server's read latency, so about one read in twenty of a healthy server
//! would hedge. Of the two servers' percentiles the lower is used: a
//! replica that has turned slow has a percentile as slow as itself, and
//! the other replica's says how long an answer should take. Past it, the next replica is asked as well; the first copy
//! to arrive wins and the other call is cancelled (its stream reset, so
//! the server stops working on it). A miss does not win on its own: the
//! other replica may hold what this one lost, so the read waits for both,
//! as an unhedged read asks the other replica after a miss.
//!
//! Two things keep hedging from adding load where it hurts:
//! - a **budget**, a token bucket like the retry budget: each read earns
//!   a share of a token (5 % by default) and each hedge spends one, so
//!   hedges stay under that share of reads even when every server is slow,
//!   and never double the load of a struggling cluster;
//! - **probation**: a replica that lost two races in a row (with no answer
//!   within the hedge delay in between) is asked after the key's other
//!   replicas for a while (one second by default), so a server that is
//!   consistently slow, or hangs, stops being asked first instead of
//!   costing a hedge on every read. One lost race is what a healthy server
//!   suffers now and then against another healthy one. When probation ends
//!   one read probes the server first, hedged whatever the budget; the
//!   others keep asking it second until the probe answers within the hedge
//!   delay, or for another probation if it does not.
//!
//! [`Cluster::hedges`](super::Cluster::hedges) counts hedges sent, won and
//! refused by the budget; with feature `metrics` they also go to the
//! `metrics` facade as `tiny_cache_cluster_hedges_total{outcome}`.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Thousandths of a token: the budget's unit.
const MILLI: u64 = 1000;

/// The shortest hedge delay whatever the measured latency: below it a
/// hedge would race the first replica's ordinary answer.
pub const MIN_HEDGE_DELAY: Duration = Duration::from_micros(500);

/// The delay before a server has enough answered reads to measure its
/// 95th percentile.
pub const UNMEASURED_HEDGE_DELAY: Duration = Duration::from_millis(10);

/// Latencies kept per server for its percentile.
const SAMPLES: usize = 64;
/// Reads answered before a server's percentile is believed.
const MIN_SAMPLES: usize = 16;
/// The longest delay or probation a setting keeps (longer ones are cut to
/// it): a day, far past any call's deadline.
const LONGEST: Duration = Duration::from_secs(24 * 3600);
/// Races lost in a row that put a server on probation.
const LOSSES_FOR_PROBATION: u32 = 2;

/// When a hedged read asks its next replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeDelay {
    /// The recent 95th percentile of a server's read latency (its last 64
    /// answered reads), at least [`MIN_HEDGE_DELAY`];
    /// [`UNMEASURED_HEDGE_DELAY`] until 16 reads were answered. The lower
    /// of the first replica's and the next one's.
    RecentP95,
    /// A fixed delay.
    Fixed(Duration),
}

/// How a cluster hedges its reads (see "Hedged reads" in the
/// [cluster docs](super)).
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::cluster::{Cluster, Hedging};
///
/// let builder = Cluster::builder()
///     .replicas(2)
///     .hedging(Hedging::default().after(Duration::from_millis(5)).budget(0.02));
/// # drop(builder);
/// let without = Cluster::builder().replicas(2).hedging(Hedging::off());
/// # drop(without);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hedging {
    enabled: bool,
    delay: HedgeDelay,
    budget: f64,
    probation: Duration,
}

impl Default for Hedging {
    /// On, after the recent p95, within 5 % of reads, one second of
    /// probation.
    fn default() -> Self {
        Hedging {
            enabled: true,
            delay: HedgeDelay::RecentP95,
            budget: 0.05,
            probation: Duration::from_secs(1),
        }
    }
}

impl Hedging {
    /// No hedged reads: a read waits for its first replica until its
    /// share of the deadline.
    ///
    /// ```
    /// let off = tiny_cache_client::cluster::Hedging::off();
    /// assert!(!off.is_enabled());
    /// ```
    pub fn off() -> Hedging {
        Hedging {
            enabled: false,
            ..Hedging::default()
        }
    }

    /// Hedge after a fixed `delay` instead of the recent p95.
    ///
    /// ```
    /// use std::time::Duration;
    /// let fixed = tiny_cache_client::cluster::Hedging::default().after(Duration::from_millis(3));
    /// # drop(fixed);
    /// ```
    pub fn after(self, delay: Duration) -> Hedging {
        Hedging {
            delay: HedgeDelay::Fixed(delay.min(LONGEST)),
            ..self
        }
    }

    /// The most hedges as a share of reads (default 0.05); clamped to
    /// 0..=1. Zero sends none.
    ///
    /// ```
    /// let stingy = tiny_cache_client::cluster::Hedging::default().budget(0.01);
    /// # drop(stingy);
    /// ```
    pub fn budget(self, share_of_reads: f64) -> Hedging {
        let budget = if share_of_reads.is_nan() {
            0.0
        } else {
            share_of_reads.clamp(0.0, 1.0)
        };
        Hedging { budget, ..self }
    }

    /// How long a replica that lost two races in a row is asked after the others
    /// (default one second).
    ///
    /// ```
    /// use std::time::Duration;
    /// let longer = tiny_cache_client::cluster::Hedging::default().probation(Duration::from_secs(5));
    /// # drop(longer);
    /// ```
    pub fn probation(self, probation: Duration) -> Hedging {
        Hedging {
            probation: probation.min(LONGEST),
            ..self
        }
    }

    /// Whether reads are hedged at all.
    ///
    /// ```
    /// assert!(tiny_cache_client::cluster::Hedging::default().is_enabled());
    /// ```
    pub fn is_enabled(&self) -> bool {
        self.enabled && self.budget > 0.0
    }
}

/// Hedges a cluster sent, won and was refused, since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HedgeCounts {
    /// Reads that asked a second replica.
    pub sent: u64,
    /// Hedges whose replica answered first with a copy.
    pub won: u64,
    /// Reads that would have hedged but the budget had no token.
    pub refused: u64,
}

/// A cluster's hedging: its settings, its budget and its counters.
#[derive(Debug)]
pub(super) struct Hedger {
    pub(super) settings: Hedging,
    /// Thousandths of a token; starts empty, so a fresh cluster earns its
    /// first hedge with its first reads.
    tokens: AtomicU64,
    earn: u64,
    cap: u64,
    sent: AtomicU64,
    won: AtomicU64,
    refused: AtomicU64,
    /// Where probation instants are counted from.
    epoch: Instant,
}

impl Hedger {
    pub(super) fn new(settings: Hedging) -> Hedger {
        // The bucket holds ten hedges: a short burst of slow answers is
        // covered, a lasting one is capped at the budget's share.
        // A share too small for the unit still earns something.
        let earn = match (settings.budget * MILLI as f64).round() as u64 {
            0 if settings.budget > 0.0 => 1,
            earn => earn,
        };
        Hedger {
            settings,
            tokens: AtomicU64::new(0),
            earn,
            cap: 10 * MILLI,
            sent: AtomicU64::new(0),
            won: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.settings.is_enabled()
    }

    /// A hedgeable read began: it earns its share of a token.
    pub(super) fn earn(&self) {
        let (earn, cap) = (self.earn, self.cap);
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tokens| {
                (tokens < cap).then(|| (tokens + earn).min(cap))
            });
    }

    /// Takes a token for a hedge; false (and counted) when there is none.
    /// A probe's hedge (`probe`) needs no token.
    pub(super) fn spend(&self, probe: bool) -> bool {
        let spent = probe
            || self
                .tokens
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tokens| {
                    tokens.checked_sub(MILLI)
                })
                .is_ok();
        let counter = if spent { &self.sent } else { &self.refused };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "tiny_cache_cluster_hedges_total",
            "outcome" => if spent { "sent" } else { "refused" }
        )
        .increment(1);
        spent
    }

    /// The hedge's replica answered first with a copy.
    pub(super) fn won(&self) {
        self.won.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("tiny_cache_cluster_hedges_total", "outcome" => "won").increment(1);
    }

    pub(super) fn counts(&self) -> HedgeCounts {
        HedgeCounts {
            sent: self.sent.load(Ordering::Relaxed),
            won: self.won.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// How long to wait for `server` before hedging.
    pub(super) fn delay(&self, server: &Latencies) -> Duration {
        match self.settings.delay {
            HedgeDelay::Fixed(delay) => delay,
            HedgeDelay::RecentP95 => server
                .p95()
                .map_or(UNMEASURED_HEDGE_DELAY, |p95| p95.max(MIN_HEDGE_DELAY)),
        }
    }

    /// `server` was raced and lost: the second loss in a row (with no
    /// prompt answer in between) puts it on probation from now. One loss
    /// is what a healthy server suffers now and then against another
    /// healthy one; a slow one loses every race.
    pub(super) fn lost_a_race(&self, server: &Latencies) {
        if server.lost_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 < LOSSES_FOR_PROBATION {
            return;
        }
        let until = self.epoch.elapsed().saturating_add(self.settings.probation);
        // Never 0, which means no probation.
        let nanos = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX).max(1);
        server.probation_until.store(nanos, Ordering::Relaxed);
    }

    /// `server` answered within the hedge delay.
    /// It ends any probation: the server is asked first again.
    pub(super) fn answered_promptly(&self, server: &Latencies) {
        if server.lost_in_a_row.load(Ordering::Relaxed) != 0 {
            server.lost_in_a_row.store(0, Ordering::Relaxed);
        }
        if server.probation_until.load(Ordering::Relaxed) != 0 {
            server.probation_until.store(0, Ordering::Relaxed);
        }
    }

    /// Whether `server` is to be asked after the key's other home
    /// replicas: it lost two races in a row and has not answered within
    /// the hedge delay since. Its probation running out does not end this;
    /// a probe does (see [`Hedger::claim_probe`]).
    pub(super) fn on_probation(&self, server: &Latencies) -> bool {
        server.probation_until.load(Ordering::Relaxed) != 0
    }

    /// Where `server` goes among a key's home replicas: after those not on
    /// probation, and among those on probation, after the ones that lost
    /// fewer races in a row (a server still slow or hung keeps losing; one
    /// put on probation by a bad moment answers promptly again).
    pub(super) fn rank(&self, server: &Latencies) -> (bool, u32) {
        if !self.on_probation(server) {
            return (false, 0);
        }
        (true, server.lost_in_a_row.load(Ordering::Relaxed))
    }

    /// Whether a hedgeable read may probe `server` now: its probation has
    /// run out and no other read claimed the probe. The probe asks the
    /// server first and is hedged whatever the budget, so it never waits
    /// out a server that is still hung; a prompt answer ends the
    /// probation, anything else starts another. A server still slow or
    /// hung costs one read a probation, not a burst of every caller's.
    pub(super) fn claim_probe(&self, server: &Latencies) -> bool {
        let until = server.probation_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        let now = self.epoch.elapsed();
        if u128::from(until) > now.as_nanos() {
            return false;
        }
        let next = now.saturating_add(self.settings.probation);
        let next = u64::try_from(next.as_nanos()).unwrap_or(u64::MAX);
        server
            .probation_until
            .compare_exchange(until, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// One server's recent read latencies, and its probation.
#[derive(Debug)]
pub(crate) struct Latencies {
    /// The last [`SAMPLES`] answered reads, µs (0: no sample yet).
    recent: [AtomicU32; SAMPLES],
    recorded: AtomicUsize,
    /// The 95th percentile of `recent`, µs; 0 until measured.
    p95_us: AtomicU32,
    /// Nanoseconds since the hedger's epoch; 0 when never on probation.
    probation_until: AtomicU64,
    /// Races lost since it last answered within the hedge delay.
    lost_in_a_row: AtomicU32,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            recent: std::array::from_fn(|_| AtomicU32::new(0)),
            recorded: AtomicUsize::new(0),
            p95_us: AtomicU32::new(0),
            probation_until: AtomicU64::new(0),
            lost_in_a_row: AtomicU32::new(0),
        }
    }
}

impl Latencies {
    /// An answered read took `latency`.
    pub(super) fn record(&self, latency: Duration) {
        let micros = u32::try_from(latency.as_micros())
            .unwrap_or(u32::MAX)
            .max(1);
        let at = self.recorded.fetch_add(1, Ordering::Relaxed);
        self.recent[at % SAMPLES].store(micros, Ordering::Relaxed);
        // The percentile is worked out again every 8 reads: cheap, and
        // recent enough.
        if at + 1 >= MIN_SAMPLES && at % 8 == 7 {
            let mut sorted: Vec<u32> = self
                .recent
                .iter()
                .map(|sample| sample.load(Ordering::Relaxed))
                .filter(|&sample| sample > 0)
                .collect();
            let index = (sorted.len() * 95 / 100).min(sorted.len().saturating_sub(1));
            if !sorted.is_empty() {
                let (_, p95, _) = sorted.select_nth_unstable(index);
                self.p95_us.store(*p95, Ordering::Relaxed);
            }
        }
    }

    /// The recent 95th percentile, once measured.
    pub(super) fn p95(&self) -> Option<Duration> {
        match self.p95_us.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(u64::from(micros))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_its_share_of_reads_and_no_more() {
        let hedger = Hedger::new(Hedging::default());
        // Starts empty.
        assert!(!hedger.spend(false));
        let mut sent = 0;
        for _ in 0..1000 {
            hedger.earn();
            if hedger.spend(false) {
                sent += 1;
            }
        }
        assert!((49..=51).contains(&sent), "{sent}");
        assert_eq!(hedger.counts().sent, sent);
        assert_eq!(hedger.counts().refused, 1001 - sent);
        // Saved-up tokens stop at ten hedges.
        for _ in 0..10_000 {
            hedger.earn();
        }
        let burst = (0..100).filter(|_| hedger.spend(false)).count();
        assert_eq!(burst, 10);
        assert!(!Hedger::new(Hedging::default().budget(0.0)).enabled());
    }

    #[test]
    fn the_delay_is_the_recent_p95_once_measured() {
        let hedger = Hedger::new(Hedging::default());
        let server = Latencies::default();
        assert_eq!(hedger.delay(&server), UNMEASURED_HEDGE_DELAY);
        for i in 0..64u64 {
            // 61 fast answers and 3 slow ones: the p95 is a fast one.
            let micros = if i % 21 == 20 { 20_000 } else { 1000 + i };
            server.record(Duration::from_micros(micros));
        }
        let delay = hedger.delay(&server);
        assert!(
            delay >= Duration::from_micros(1000) && delay < Duration::from_millis(2),
            "{delay:?}"
        );
        for _ in 0..64 {
            server.record(Duration::from_micros(10));
        }
        assert_eq!(hedger.delay(&server), MIN_HEDGE_DELAY);
        let fixed = Hedger::new(Hedging::default().after(Duration::from_millis(7)));
        assert_eq!(fixed.delay(&server), Duration::from_millis(7));
    }

    #[test]
    fn probation_ends_with_a_prompt_answer_to_its_probe() {
        let hedger = Hedger::new(Hedging::default().probation(Duration::from_millis(30)));
        let server = Latencies::default();
        assert!(!hedger.on_probation(&server));
        hedger.lost_a_race(&server);
        assert!(!hedger.on_probation(&server), "one loss is bad luck");
        hedger.answered_promptly(&server);
        hedger.lost_a_race(&server);
        assert!(!hedger.on_probation(&server), "a prompt answer in between");
        hedger.lost_a_race(&server);
        assert!(hedger.on_probation(&server), "two in a row");
        assert!(!hedger.claim_probe(&server), "not over yet");
        std::thread::sleep(Duration::from_millis(40));
        // Over: one read claims the probe; the server stays second for the
        // others until the probe answers.
        assert!(hedger.claim_probe(&server));
        assert!(!hedger.claim_probe(&server), "one probe");
        assert!(hedger.on_probation(&server));
        // A prompt answer to the probe ends the probation for everyone.
        hedger.answered_promptly(&server);
        assert!(!hedger.on_probation(&server));
        assert!(!hedger.claim_probe(&server));
    }
}
