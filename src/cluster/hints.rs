//! Hinted handoff: what a replica missed while it could not be reached.
//!
//! When a write or delete is acknowledged without one of the key's home
//! replicas (it was marked down and a stand-in took its place, or its part
//! failed), the cluster keeps a hint for that replica: the key and the
//! last operation it missed. Until the hint is delivered, a read treats the
//! hint as that replica's answer instead of asking it, so a replica that
//! comes back with old data (it hung, was cut off, or restarted from a
//! snapshot) cannot hide the acknowledged write. Hints are delivered from
//! the background thread once the server answers again; it takes its keys
//! back at once, since reads of its hinted keys keep answering from the
//! hints until then. This is Dynamo's hinted handoff, kept in the writing
//! process.
//!
//! The log is bounded per server ([`ClusterBuilder::hint_capacity`]); a
//! key already hinted takes no new room (only its last operation is kept).
//! Past the bound, new hints are dropped and counted, and the server is
//! marked as having missed writes it cannot replay: when it comes back, its
//! keys are read from all their replicas for a recovery window, so the
//! newest copy still wins for R > 1 (see the module docs for R = 1).
//!
//! [`ClusterBuilder::hint_capacity`]: super::ClusterBuilder::hint_capacity

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::Ttl;

/// The last operation a replica missed for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hint {
    /// It missed this write: the stored bytes (envelope included), the
    /// TTL, and the servers that stood in for it (their copies are deleted
    /// once it has the write, so a later outage cannot bring them back).
    Set {
        raw: Bytes,
        ttl: Ttl,
        stand_ins: Vec<String>,
    },
    /// It missed a delete.
    Delete,
}

/// Locks that order a hint's delivery against writes of the same key to
/// the same server, by key hash: a write holds its key's stripe shared
/// from before it is sent until the server's hint for the key is
/// forgotten; a delivery holds it exclusively from checking that the hint
/// is still the newest to recording it delivered. Without this, with
/// R = 1 (no write times to compare), a delivery could overwrite a write
/// that landed just before it.
const STRIPES: usize = 64;

/// One replica's hints.
#[derive(Debug, Default)]
pub(crate) struct HintLog {
    stripes: Stripes,
    entries: Mutex<HashMap<String, Hint>>,
    /// Keys in `entries`, readable without the lock: the read path's test
    /// for "nothing hinted here" is one atomic load.
    len: AtomicUsize,
    /// Hints refused because the log was full, ever.
    dropped: AtomicU64,
    /// Hints delivered to the replica, ever.
    delivered: AtomicU64,
}

impl HintLog {
    /// Whether any hint waits for delivery.
    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// Hints waiting for delivery.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Hints dropped because the log was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Hints delivered.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Records that the replica missed `hint` for `key`, replacing an older
    /// hint for the key. Returns false when the log is full (the hint is
    /// dropped and counted).
    pub(crate) fn record(&self, key: &str, hint: Hint, capacity: usize) -> bool {
        let mut entries = self.lock();
        if let Some(slot) = entries.get_mut(key) {
            *slot = hint;
            return true;
        }
        if entries.len() >= capacity {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        entries.insert(key.to_owned(), hint);
        self.len.store(entries.len(), Ordering::Release);
        true
    }

    /// The hint for `key`, if one waits.
    pub(crate) fn get(&self, key: &str) -> Option<Hint> {
        if self.is_empty() {
            return None;
        }
        self.lock().get(key).cloned()
    }

    /// Whether a hint for `key` waits.
    pub(crate) fn contains(&self, key: &str) -> bool {
        !self.is_empty() && self.lock().contains_key(key)
    }

    /// Whether `hint` is still the one waiting for `key`.
    pub(crate) fn holds(&self, key: &str, hint: &Hint) -> bool {
        !self.is_empty() && self.lock().get(key) == Some(hint)
    }

    /// What the server should hold for `key`, when a hint says: the
    /// stored bytes of the write it missed, or `None` for a delete. What a
    /// read uses as the server's answer.
    pub(crate) fn missed(&self, key: &str) -> Option<Option<Bytes>> {
        if self.is_empty() {
            return None;
        }
        self.lock().get(key).map(|hint| match hint {
            Hint::Set { raw, .. } => Some(raw.clone()),
            Hint::Delete => None,
        })
    }

    /// The replica now holds what was written after `hint` was recorded
    /// (a later write reached it): the hint is void.
    pub(crate) fn forget(&self, key: &str) {
        if self.is_empty() {
            return;
        }
        let mut entries = self.lock();
        if entries.remove(key).is_some() {
            self.len.store(entries.len(), Ordering::Release);
        }
    }

    /// Every waiting hint, for delivery.
    pub(crate) fn snapshot(&self) -> Vec<(String, Hint)> {
        self.lock()
            .iter()
            .map(|(key, hint)| (key.clone(), hint.clone()))
            .collect()
    }

    /// `hint` for `key` was delivered: removes it unless a newer one
    /// replaced it meanwhile. Returns whether it was removed.
    pub(crate) fn delivered_one(&self, key: &str, hint: &Hint) -> bool {
        let mut entries = self.lock();
        if entries.get(key) != Some(hint) {
            return false;
        }
        entries.remove(key);
        self.len.store(entries.len(), Ordering::Release);
        self.delivered.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Which stripe orders `key`'s writes and deliveries.
    pub(crate) fn stripe_of(&self, key: &str) -> usize {
        (self.stripes.hasher.hash_one(key) as usize) % STRIPES
    }

    /// Held by a write to this server while it may race a delivery. A
    /// delivery holds its stripe across calls to the server, so a caller
    /// waits for it no later than its own `deadline`: `None` then.
    pub(crate) fn writing_by(
        &self,
        stripe: usize,
        deadline: Instant,
    ) -> Option<RwLockReadGuard<'_, ()>> {
        let lock = &self.stripes.locks[stripe];
        wait_by(deadline, || match lock.try_read() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        })
    }

    /// Held by a delivery of `key`'s hint from the background thread,
    /// which may wait as long as it takes.
    pub(crate) fn delivering(&self, key: &str) -> RwLockWriteGuard<'_, ()> {
        self.stripes.locks[self.stripe_of(key)]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Held by a delivery a caller makes itself, waited for no later than
    /// its `deadline`: `None` then.
    pub(crate) fn delivering_by(
        &self,
        key: &str,
        deadline: Instant,
    ) -> Option<RwLockWriteGuard<'_, ()>> {
        let lock = &self.stripes.locks[self.stripe_of(key)];
        wait_by(deadline, || match lock.try_write() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hint>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How often a caller looks again at a stripe a delivery holds: rare (a
/// delivery to that server of a key in the same stripe), and short next to
/// any call's deadline.
const STRIPE_POLL: Duration = Duration::from_millis(1);

/// Tries `take` until it gives something or `deadline` passes.
fn wait_by<T>(deadline: Instant, mut take: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(taken) = take() {
            return Some(taken);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(STRIPE_POLL);
    }
}

#[derive(Debug)]
struct Stripes {
    locks: Vec<RwLock<()>>,
    hasher: RandomState,
}

impl Default for Stripes {
    fn default() -> Self {
        Stripes {
            locks: (0..STRIPES).map(|_| RwLock::new(())).collect(),
            hasher: RandomState::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(value: &'static [u8]) -> Hint {
        Hint::Set {
            raw: Bytes::from_static(value),
            ttl: Ttl::Never,
            stand_ins: Vec::new(),
        }
    }

    #[test]
    fn a_key_keeps_only_its_last_missed_operation() {
        let log = HintLog::default();
        assert!(log.record("k", set(b"1"), 10));
        assert!(log.record("k", Hint::Delete, 10));
        assert_eq!(log.len(), 1);
        assert_eq!(log.get("k"), Some(Hint::Delete));
    }

    #[test]
    fn a_full_log_drops_new_keys_and_counts_them_but_still_updates_old_ones() {
        let log = HintLog::default();
        assert!(log.record("a", set(b"1"), 1));
        assert!(!log.record("b", set(b"1"), 1));
        assert_eq!(log.dropped(), 1);
        assert!(log.record("a", set(b"2"), 1));
        assert_eq!(log.get("a"), Some(set(b"2")));
        assert_eq!(log.get("b"), None);
    }

    #[test]
    fn delivery_removes_a_hint_only_if_no_newer_one_replaced_it() {
        let log = HintLog::default();
        log.record("k", set(b"1"), 10);
        let (key, first) = log.snapshot().pop().unwrap();
        log.record("k", set(b"2"), 10);
        log.delivered_one(&key, &first);
        assert_eq!(log.get("k"), Some(set(b"2")));
        log.delivered_one("k", &set(b"2"));
        assert!(log.is_empty());
        assert_eq!(log.delivered(), 1);
    }

    #[test]
    fn a_hint_answers_for_the_server_without_being_cloned_whole() {
        let log = HintLog::default();
        assert_eq!((log.contains("k"), log.missed("k")), (false, None));
        log.record("k", set(b"1"), 10);
        log.record("gone", Hint::Delete, 10);
        assert!(log.contains("k") && log.holds("k", &set(b"1")));
        assert!(!log.holds("k", &set(b"2")));
        assert_eq!(log.missed("k"), Some(Some(Bytes::from_static(b"1"))));
        assert_eq!(log.missed("gone"), Some(None));
    }

    #[test]
    fn a_writer_waits_for_a_delivery_of_its_stripe_no_later_than_its_deadline() {
        let log = HintLog::default();
        let stripe = log.stripe_of("k");
        let delivering = log.delivering("k");
        let started = Instant::now();
        let deadline = started + Duration::from_millis(50);
        assert!(log.writing_by(stripe, deadline).is_none());
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(log.delivering_by("k", Instant::now()).is_none());
        drop(delivering);
        assert!(log.writing_by(stripe, Instant::now()).is_some());
        assert!(log.delivering_by("k", Instant::now()).is_some());
    }

    #[test]
    fn a_later_write_that_reached_the_replica_voids_its_hint() {
        let log = HintLog::default();
        log.record("k", set(b"1"), 10);
        log.forget("k");
        assert!(log.is_empty());
        assert_eq!(log.get("k"), None);
    }
}
