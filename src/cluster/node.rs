//! One server of a cluster: its client, its health and its load counters.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::discovery::Wanted;
use super::hedging::Latencies;
use super::hints::HintLog;
use super::placement::Slot;
use crate::{Client, Error, TlsFailure};

/// A server, shared by every topology that lists it, so its health and
/// counters survive a re-resolution that keeps it.
#[derive(Debug)]
pub(crate) struct Node {
    /// Where it came from: its name (`host:port`, what places keys on it)
    /// and weight, and what a fresh client connects to.
    pub(crate) origin: Wanted,
    pub(crate) slot: Slot,
    pub(crate) client: Client,
    failures_in_a_row: AtomicU32,
    down: AtomicBool,
    /// When it was marked down; read by the prober for the cool-down.
    down_since: Mutex<Option<Instant>>,
    calls: AtomicU64,
    failed_calls: AtomicU64,
    /// What it missed while unreachable; kept across a renewal.
    pub(crate) hints: Arc<HintLog>,
    /// Set when a hint for it had to be dropped: it may hold old copies
    /// that no hint will fix, so on its return its keys are read from all
    /// their replicas until this time.
    recovering_until: Mutex<Option<Instant>>,
    /// Whether `recovering_until` may be in the future: every read asks,
    /// and this keeps the lock and the clock off its path when not.
    recovery_open: AtomicBool,
    /// A hint was dropped since it last came back.
    missed_unhinted: AtomicBool,
    /// Its recent read latencies and probation, for hedged reads.
    pub(crate) latencies: Latencies,
}

impl Node {
    pub(crate) fn new(origin: Wanted, client: Client) -> Node {
        Node {
            slot: Slot::new(&origin.name, origin.weight),
            client,
            origin,
            failures_in_a_row: AtomicU32::new(0),
            down: AtomicBool::new(false),
            down_since: Mutex::new(None),
            calls: AtomicU64::new(0),
            failed_calls: AtomicU64::new(0),
            hints: Arc::default(),
            recovering_until: Mutex::new(None),
            recovery_open: AtomicBool::new(false),
            missed_unhinted: AtomicBool::new(false),
            latencies: Latencies::default(),
        }
    }

    /// Notes that a hint for this server could not be kept: from now, and
    /// again when it comes back if it is down, its keys are read from all
    /// their replicas for `recovery_window`.
    pub(crate) fn missed_a_hint(&self, recovery_window: std::time::Duration) {
        self.missed_unhinted.store(true, Ordering::Relaxed);
        self.open_recovery_window(recovery_window);
    }

    /// Whether reads of its keys must ask every replica: it came back
    /// after missing writes that no hint recorded.
    pub(crate) fn is_recovering(&self) -> bool {
        if !self.recovery_open.load(Ordering::Acquire) {
            return false;
        }
        let Ok(until) = self.recovering_until.lock() else {
            return false;
        };
        let open = until.is_some_and(|until| Instant::now() < until);
        if !open {
            // Cleared under the lock, so a window opened meanwhile (which
            // sets the flag under it too) is never lost.
            self.recovery_open.store(false, Ordering::Release);
        }
        open
    }

    /// Opens (or extends) the window of all-replica reads.
    fn open_recovery_window(&self, recovery_window: std::time::Duration) {
        if let Ok(mut until) = self.recovering_until.lock() {
            *until = Some(Instant::now() + recovery_window);
            self.recovery_open.store(true, Ordering::Release);
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub(crate) fn failed_calls(&self) -> u64 {
        self.failed_calls.load(Ordering::Relaxed)
    }

    /// Counts one call and what it says about the server's health.
    /// Returns the outcome unchanged.
    pub(crate) fn record<T>(&self, outcome: &Result<T, Error>, failure_threshold: u32) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Err(error) if is_server_failure(error) => {
                self.failed_calls.fetch_add(1, Ordering::Relaxed);
                let in_a_row = self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                if in_a_row >= failure_threshold && !self.down.swap(true, Ordering::Relaxed) {
                    if let Ok(mut since) = self.down_since.lock() {
                        *since = Some(Instant::now());
                    }
                }
            }
            // An answer, even a refusal of the request, proves it is alive.
            _ => self.failures_in_a_row.store(0, Ordering::Relaxed),
        }
    }

    /// Since when the server has been down, if it is.
    pub(crate) fn down_since(&self) -> Option<Instant> {
        if self.is_up() {
            return None;
        }
        self.down_since.lock().ok().and_then(|since| *since)
    }

    /// The same server, up, with a fresh `client` and this one's counters.
    pub(crate) fn renewed(&self, client: Client) -> Node {
        let mut node = Node::new(self.origin.clone(), client);
        node.calls.store(self.calls(), Ordering::Relaxed);
        node.failed_calls
            .store(self.failed_calls(), Ordering::Relaxed);
        node.hints = Arc::clone(&self.hints);
        node.missed_unhinted.store(
            self.missed_unhinted.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        node
    }

    /// A probe answered and its hints were delivered: the server takes
    /// its keys back, for a recovery window of all-replica reads if it
    /// missed writes no hint recorded.
    pub(crate) fn bring_back(&self, recovery_window: std::time::Duration) {
        if self.missed_unhinted.swap(false, Ordering::Relaxed) {
            self.open_recovery_window(recovery_window);
        }
        self.failures_in_a_row.store(0, Ordering::Relaxed);
        if let Ok(mut since) = self.down_since.lock() {
            *since = None;
        }
        self.down.store(false, Ordering::Relaxed);
    }
}

/// Whether an error says the server (or the way to it) is unwell, rather
/// than that the request was refused: only these count towards marking a
/// server down and send a key to its next replica.
pub(crate) fn is_server_failure(error: &Error) -> bool {
    match error {
        Error::Unavailable(_) | Error::DeadlineExceeded(_) | Error::Protocol { .. } => true,
        Error::Tls { kind, .. } => *kind != TlsFailure::InvalidConfiguration,
        _ => false,
    }
}
