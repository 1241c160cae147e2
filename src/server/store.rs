//! The cache itself: an LRU map with per-entry TTL, byte accounting and the
//! counters behind `Stats`, plus the key and namespace rules every RPC applies.
//!
//! Everything here is synchronous and free of I/O so that the rules can be
//! tested without a socket and without sleeping: every time-dependent
//! operation has a crate-private `*_at(now)` twin that the public method calls
//! with `Instant::now()`.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;

use crate::proto::cache::ConditionalCacheStatus;

/// What the reference server charges for an entry on top of its value bytes.
///
/// The reference server measures an entry with Python's `sys.getsizeof(bytes)`,
/// which is the value length plus 33 bytes of object header. Matching it keeps
/// the same values fitting (and failing) against both servers.
///
/// ```
/// use tiny_cache_client::server::{Server, ENTRY_OVERHEAD_BYTES};
/// use tiny_cache_client::Client;
///
/// let server = Server::local()?;
/// let client = Client::new(&server.address())?;
/// client.set("k", [0u8; 10])?;
/// assert_eq!(client.stats()?.memory_usage_bytes, 10 + ENTRY_OVERHEAD_BYTES);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const ENTRY_OVERHEAD_BYTES: u64 = 33;

/// Limits of the embedded server's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Most live entries at once; inserting one more evicts the least recently
    /// used. Default 1,000,000: large enough that benchmarks measure the
    /// client, not the eviction path, while bounding the map's own overhead.
    pub max_items: usize,
    /// Most bytes accounted to entries (value length + [`ENTRY_OVERHEAD_BYTES`]
    /// each). Default 1 GiB: a benchmark's working set fits on a developer
    /// machine without the server being able to eat all of its memory.
    pub max_memory_bytes: u64,
    /// Largest single entry, counted like `max_memory_bytes`; a bigger one is
    /// refused as resource-exhausted. Default 4 MiB + [`ENTRY_OVERHEAD_BYTES`]:
    /// any value that fits in a 4 MiB gRPC request (the reference server's
    /// message limit) is smaller than 4 MiB, so its entry fits this limit and
    /// the transport, not the store, is what refuses larger ones.
    pub max_value_bytes: u64,
}

/// How many entries the embedded server holds by default, as the
/// reference server.
///
/// ```
/// assert_eq!(tiny_cache_client::server::DEFAULT_MAX_ITEMS, 1_000_000);
/// ```
pub const DEFAULT_MAX_ITEMS: usize = 1_000_000;

/// How many bytes of entries (keys, values and
/// [`ENTRY_OVERHEAD_BYTES`] each) the embedded server holds by default: 1 GiB.
///
/// ```
/// assert_eq!(tiny_cache_client::server::DEFAULT_MAX_MEMORY_BYTES, 1 << 30);
/// ```
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 1024 * 1024 * 1024;

/// The largest entry the embedded server accepts by default: a 4 MiB value
/// and its overhead.
///
/// ```
/// use tiny_cache_client::server::{DEFAULT_MAX_VALUE_BYTES, ENTRY_OVERHEAD_BYTES};
/// assert_eq!(DEFAULT_MAX_VALUE_BYTES, 4 * 1024 * 1024 + ENTRY_OVERHEAD_BYTES);
/// ```
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 4 * 1024 * 1024 + ENTRY_OVERHEAD_BYTES;

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_items: DEFAULT_MAX_ITEMS,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// A point-in-time copy of the store's counters and limits.
///
/// Counters are kept as `u64` here; the proto's narrower fields saturate when
/// the service converts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Live entries (expired ones are removed before counting).
    pub size: u64,
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found nothing (missing or expired).
    pub misses: u64,
    /// Bytes accounted to live entries.
    pub memory_usage_bytes: u64,
    /// The configured memory limit.
    pub max_memory_bytes: u64,
    /// The configured item limit.
    pub max_items: u64,
    /// The configured per-entry limit.
    pub max_value_bytes: u64,
    /// Entries evicted as least recently used to make room.
    pub lru_evictions: u64,
    /// Entries removed because their TTL ran out.
    pub expired_removals: u64,
    /// Writes refused because the entry exceeded `max_value_bytes`.
    pub rejected_oversize: u64,
    /// Writes refused because the entry could not fit under the limits even
    /// with the cache emptied.
    pub rejected_capacity: u64,
    /// Time since the store was created (for a server: since it started).
    pub uptime: Duration,
}

impl StoreStats {
    /// All removals the store made on its own, as the proto's `evictions`
    /// reports them: LRU evictions plus expired removals.
    pub fn evictions(&self) -> u64 {
        self.lru_evictions.saturating_add(self.expired_removals)
    }

    /// `hits / (hits + misses)`, or 0 before the first read.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits.saturating_add(self.misses);
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// The LRU + TTL cache behind the embedded server. `Send + Sync`; share it by
/// reference or `Arc`.
///
/// Keys here are storage keys: namespacing and key validation happen before
/// (see [`crate::rules::storage_key`]), so the store accepts any string.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    created: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    /// `None` never expires. A deadline rather than (created, ttl) so the hot
    /// read path is one comparison.
    expires_at: Option<Instant>,
}

impl Entry {
    fn cost(&self) -> u64 {
        entry_cost(&self.value)
    }

    fn is_expired(&self, now: Instant) -> bool {
        // elapsed >= ttl  <=>  now >= created + ttl
        self.expires_at.is_some_and(|deadline| now >= deadline)
    }
}

#[derive(Debug)]
struct Inner {
    /// Unbounded: the item limit is enforced by hand so that replacing a key
    /// never evicts another one and so that evictions are counted.
    map: LruCache<String, Entry>,
    memory_bytes: u64,
    /// No entry expires before this instant. A lower bound (removing entries
    /// does not raise it), so it may trigger a needless scan, never miss one;
    /// it lets `stats` skip the O(n) expiry sweep almost always.
    next_expiry: Option<Instant>,
    hits: u64,
    misses: u64,
    lru_evictions: u64,
    expired_removals: u64,
    rejected_oversize: u64,
    rejected_capacity: u64,
}

/// Why the store refused a write. Plain numbers, so nothing is formatted
/// inside the critical section; the service turns it into the reference
/// server's `RESOURCE_EXHAUSTED` text.
///
/// ```
/// use tiny_cache_client::{server::Server, Client, Error};
///
/// // 8 bytes + 33 of overhead is over a per-entry limit of 40: `Oversize`.
/// let server = Server::builder().max_value_bytes(40).start()?;
/// let client = Client::new(&server.address())?;
/// match client.set("k", [0u8; 8]) {
///     Err(Error::ResourceExhausted(text)) => {
///         assert_eq!(text.text(), "Value exceeds maximum allowed cache entry size")
///     }
///     other => panic!("expected an oversize refusal, got {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The entry (value length + [`ENTRY_OVERHEAD_BYTES`]) is over the
    /// per-entry limit.
    #[error("the entry needs {cost} bytes (value + {ENTRY_OVERHEAD_BYTES} bytes overhead) and the per-entry limit is {limit} bytes")]
    Oversize {
        /// What the entry would be charged, in bytes.
        cost: u64,
        /// The configured per-entry limit, in bytes.
        limit: u64,
    },
    /// The entry could not fit under the item and memory limits even with
    /// the cache emptied.
    #[error("an entry of {cost} bytes cannot fit under the item and memory limits")]
    NoRoom {
        /// What the entry would be charged, in bytes.
        cost: u64,
    },
}

/// Entries removed during a write, dropped once the lock is released so that
/// freeing large values does not lengthen the critical section.
#[derive(Default)]
struct Garbage {
    replaced: Option<Entry>,
    evicted: Vec<Entry>,
}

fn entry_cost(value: &[u8]) -> u64 {
    (value.len() as u64).saturating_add(ENTRY_OVERHEAD_BYTES)
}

fn deadline(now: Instant, ttl_secs: i32) -> Option<Instant> {
    if ttl_secs <= 0 {
        return None;
    }
    // An instant too far away to represent is as good as never.
    now.checked_add(Duration::from_secs(u64::from(ttl_secs.unsigned_abs())))
}

impl Store {
    /// An empty store with the given limits.
    pub fn new(config: StoreConfig) -> Self {
        Self {
            config,
            created: Instant::now(),
            inner: Mutex::new(Inner {
                map: LruCache::unbounded(),
                memory_bytes: 0,
                next_expiry: None,
                hits: 0,
                misses: 0,
                lru_evictions: 0,
                expired_removals: 0,
                rejected_oversize: 0,
                rejected_capacity: 0,
            }),
        }
    }

    /// A panic while the lock was held cannot leave the map half-updated in a
    /// way that breaks memory safety, and the server must keep answering, so
    /// a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live value of `key`, refreshing its recency; counts a hit or a miss.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.get_at(key, Instant::now())
    }

    pub(crate) fn get_at(&self, key: &str, now: Instant) -> Option<Bytes> {
        let expired;
        {
            let mut inner = self.lock();
            match inner.map.get(key) {
                Some(entry) if !entry.is_expired(now) => {
                    let value = entry.value.clone();
                    inner.hits += 1;
                    return Some(value);
                }
                Some(_) => {
                    inner.misses += 1;
                    expired = inner.remove_expired(key);
                }
                None => {
                    inner.misses += 1;
                    return None;
                }
            }
        }
        drop(expired);
        None
    }

    /// Stores `value` under `key` (replacing any previous entry) with a TTL in
    /// whole seconds, `<= 0` meaning never; evicts least-recently-used entries
    /// to make room.
    ///
    /// # Errors
    /// A [`Rejection`] when the entry is over the per-entry limit or cannot
    /// fit under the item/memory limits at all; the previous entry, if any,
    /// is then left untouched.
    pub fn set(&self, key: String, value: Bytes, ttl_secs: i32) -> Result<(), Rejection> {
        self.set_at(key, value, ttl_secs, Instant::now())
    }

    pub(crate) fn set_at(
        &self,
        key: String,
        value: Bytes,
        ttl_secs: i32,
        now: Instant,
    ) -> Result<(), Rejection> {
        self.write_at(key, value, ttl_secs, now, |_, _, _| None)
            .map(|_| ())
    }

    /// The write path of every setter: under the lock, `answer` looks at
    /// the key first and may answer instead of writing; otherwise the entry
    /// is inserted (`Stored`). What the write replaces or evicts is dropped
    /// once the lock is released, so freeing it lengthens no critical
    /// section.
    fn write_at(
        &self,
        key: String,
        value: Bytes,
        ttl_secs: i32,
        now: Instant,
        answer: impl FnOnce(&mut Inner, &str, &mut Garbage) -> Option<ConditionalCacheStatus>,
    ) -> Result<ConditionalCacheStatus, Rejection> {
        let entry = Entry {
            value,
            expires_at: deadline(now, ttl_secs),
        };
        let mut garbage = Garbage::default();
        let result = {
            let mut inner = self.lock();
            match answer(&mut inner, &key, &mut garbage) {
                Some(status) => Ok(status),
                None => inner
                    .insert(&self.config, key, entry, now, &mut garbage)
                    .map(|()| ConditionalCacheStatus::Stored),
            }
        };
        drop(garbage);
        result
    }

    /// Stores `value` only when `key` is missing or expired.
    ///
    /// Returns `Stored` or `Exists`. An existing entry is neither refreshed
    /// nor counted as a hit: this is a write, not a read.
    ///
    /// # Errors
    /// As [`Store::set`], only when the write would have happened.
    pub fn set_if_absent(
        &self,
        key: String,
        value: Bytes,
        ttl_secs: i32,
    ) -> Result<ConditionalCacheStatus, Rejection> {
        self.set_if_absent_at(key, value, ttl_secs, Instant::now())
    }

    pub(crate) fn set_if_absent_at(
        &self,
        key: String,
        value: Bytes,
        ttl_secs: i32,
        now: Instant,
    ) -> Result<ConditionalCacheStatus, Rejection> {
        self.write_at(key, value, ttl_secs, now, |inner, key, garbage| {
            inner
                .live(key, now, garbage)
                .map(|_| ConditionalCacheStatus::Exists)
        })
    }

    /// Replaces the value of `key` with `value` only when its live value
    /// equals `expected`.
    ///
    /// Returns `NotFound` (missing or expired), `Mismatch`, or `Stored`.
    ///
    /// # Errors
    /// As [`Store::set`], only when the write would have happened; the old
    /// entry then stays.
    pub fn compare_and_set(
        &self,
        key: String,
        expected: &[u8],
        value: Bytes,
        ttl_secs: i32,
    ) -> Result<ConditionalCacheStatus, Rejection> {
        self.compare_and_set_at(key, expected, value, ttl_secs, Instant::now())
    }

    pub(crate) fn compare_and_set_at(
        &self,
        key: String,
        expected: &[u8],
        value: Bytes,
        ttl_secs: i32,
        now: Instant,
    ) -> Result<ConditionalCacheStatus, Rejection> {
        self.write_at(key, value, ttl_secs, now, |inner, key, garbage| {
            let Some(current) = inner.live(key, now, garbage) else {
                return Some(ConditionalCacheStatus::NotFound);
            };
            (current.value.as_ref() != expected).then_some(ConditionalCacheStatus::Mismatch)
        })
    }

    /// Removes `key`; returns whether a live entry was there. Deleting a
    /// missing key is not an error (Delete is idempotent).
    pub fn delete(&self, key: &str) -> bool {
        self.delete_at(key, Instant::now())
    }

    pub(crate) fn delete_at(&self, key: &str, now: Instant) -> bool {
        let removed = {
            let mut inner = self.lock();
            let removed = inner.map.pop(key);
            if let Some(entry) = &removed {
                inner.memory_bytes = inner.memory_bytes.saturating_sub(entry.cost());
                if entry.is_expired(now) {
                    inner.expired_removals += 1;
                }
            }
            removed
        };
        removed.is_some_and(|entry| !entry.is_expired(now))
    }

    /// Removes every expired entry now and returns how many went. `stats`
    /// does this itself; a server may also call it periodically so expired
    /// entries do not hold memory until they are next touched.
    pub fn purge_expired(&self) -> usize {
        self.purge_expired_at(Instant::now())
    }

    pub(crate) fn purge_expired_at(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        // Nothing can have expired before the earliest expiry: skip the scan.
        if inner.next_expiry.is_some_and(|t| now >= t) {
            inner.purge_expired(now)
        } else {
            0
        }
    }

    /// A snapshot of counters and limits. Expired entries are removed first so
    /// that `size` and `memory_usage_bytes` describe live entries only.
    pub fn stats(&self) -> StoreStats {
        self.stats_at(Instant::now())
    }

    pub(crate) fn stats_at(&self, now: Instant) -> StoreStats {
        let mut inner = self.lock();
        if inner.next_expiry.is_some_and(|t| now >= t) {
            inner.purge_expired(now);
        }
        StoreStats {
            size: inner.map.len() as u64,
            hits: inner.hits,
            misses: inner.misses,
            memory_usage_bytes: inner.memory_bytes,
            max_memory_bytes: self.config.max_memory_bytes,
            max_items: self.config.max_items as u64,
            max_value_bytes: self.config.max_value_bytes,
            lru_evictions: inner.lru_evictions,
            expired_removals: inner.expired_removals,
            rejected_oversize: inner.rejected_oversize,
            rejected_capacity: inner.rejected_capacity,
            uptime: now.saturating_duration_since(self.created),
        }
    }
}

impl Inner {
    /// The live entry of `key` without touching recency; an expired one is
    /// removed on the way and handed to `garbage` (a write that follows finds
    /// no old entry, so the `replaced` slot is free).
    fn live(&mut self, key: &str, now: Instant, garbage: &mut Garbage) -> Option<&Entry> {
        let expired = self.map.peek(key)?.is_expired(now);
        if expired {
            garbage.replaced = self.remove_expired(key);
            return None;
        }
        self.map.peek(key)
    }

    fn remove_expired(&mut self, key: &str) -> Option<Entry> {
        let entry = self.map.pop(key)?;
        self.memory_bytes = self.memory_bytes.saturating_sub(entry.cost());
        self.expired_removals += 1;
        Some(entry)
    }

    fn insert(
        &mut self,
        config: &StoreConfig,
        key: String,
        entry: Entry,
        now: Instant,
        garbage: &mut Garbage,
    ) -> Result<(), Rejection> {
        let cost = entry.cost();
        if cost > config.max_value_bytes {
            self.rejected_oversize += 1;
            return Err(Rejection::Oversize {
                cost,
                limit: config.max_value_bytes,
            });
        }
        // Checked before anything is evicted: evicting entries for a write
        // that then fails anyway would lose data for nothing.
        if cost > config.max_memory_bytes || config.max_items == 0 {
            self.rejected_capacity += 1;
            return Err(Rejection::NoRoom { cost });
        }

        // Replacing a key releases the old entry first, so the replacement
        // never evicts another key just to make room for its own old value.
        if let Some(old) = self.map.pop(&key) {
            self.memory_bytes = self.memory_bytes.saturating_sub(old.cost());
            garbage.replaced = Some(old);
        }

        // Both loops end: the checks above guarantee the entry fits an empty
        // cache, and an empty cache accounts zero bytes.
        while self.memory_bytes.saturating_add(cost) > config.max_memory_bytes
            || self.map.len() >= config.max_items
        {
            let Some((_, victim)) = self.map.pop_lru() else {
                break;
            };
            self.memory_bytes = self.memory_bytes.saturating_sub(victim.cost());
            // A victim that had already expired was removed for its TTL, not
            // for lack of room; counting it so keeps lru_evictions honest.
            if victim.is_expired(now) {
                self.expired_removals += 1;
            } else {
                self.lru_evictions += 1;
            }
            garbage.evicted.push(victim);
        }

        if let Some(at) = entry.expires_at {
            self.next_expiry = Some(self.next_expiry.map_or(at, |t| t.min(at)));
        }
        self.memory_bytes = self.memory_bytes.saturating_add(cost);
        self.map.put(key, entry);
        Ok(())
    }

    fn purge_expired(&mut self, now: Instant) -> usize {
        let mut removed = 0usize;
        let mut freed = 0u64;
        let mut next: Option<Instant> = None;
        self.map.retain(|_, entry| match entry.expires_at {
            Some(at) if now >= at => {
                removed += 1;
                freed = freed.saturating_add(entry.cost());
                false
            }
            Some(at) => {
                next = Some(next.map_or(at, |t| t.min(at)));
                true
            }
            None => true,
        });
        self.memory_bytes = self.memory_bytes.saturating_sub(freed);
        self.expired_removals += removed as u64;
        self.next_expiry = next;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_items: usize, max_memory_bytes: u64, max_value_bytes: u64) -> StoreConfig {
        StoreConfig {
            max_items,
            max_memory_bytes,
            max_value_bytes,
        }
    }

    fn bytes_of(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    fn is_oversize<T: std::fmt::Debug>(result: Result<T, Rejection>) -> bool {
        matches!(result, Err(Rejection::Oversize { .. }))
    }

    fn is_no_room<T: std::fmt::Debug>(result: Result<T, Rejection>) -> bool {
        matches!(result, Err(Rejection::NoRoom { .. }))
    }

    /// A store with default limits holding `entries` (key, value, TTL in
    /// seconds), all written at the instant it returns.
    fn written(entries: &[(&str, &'static [u8], i32)]) -> (Store, Instant) {
        let store = Store::new(StoreConfig::default());
        let t0 = Instant::now();
        for &(key, value, ttl_secs) in entries {
            let value = Bytes::from_static(value);
            store.set_at(key.into(), value, ttl_secs, t0).unwrap();
        }
        (store, t0)
    }

    /// Which of `keys` the store still holds, read in order (each read
    /// counts, and refreshes recency).
    fn held<'k>(store: &Store, keys: &[&'k str]) -> Vec<&'k str> {
        keys.iter()
            .copied()
            .filter(|key| store.get(key).is_some())
            .collect()
    }

    #[test]
    fn default_config_lets_a_value_of_any_size_a_4_mib_message_carries_fit() {
        let config = StoreConfig::default();
        assert_eq!(config.max_items, 1_000_000);
        assert_eq!(config.max_memory_bytes, 1 << 30);
        assert_eq!(config.max_value_bytes, (4 << 20) + ENTRY_OVERHEAD_BYTES);
        let store = Store::new(config);
        assert!(store.set("k".into(), bytes_of(4 << 20), 0).is_ok());
    }

    #[test]
    fn value_of_991_bytes_fits_a_1024_byte_limit_and_992_does_not() {
        let store = Store::new(config(10, 1 << 20, 1024));
        assert!(store.set("fits".into(), bytes_of(991), 0).is_ok());
        assert_eq!(
            store.set("big".into(), bytes_of(992), 0),
            Err(Rejection::Oversize {
                cost: 1025,
                limit: 1024
            })
        );
        assert_eq!(store.get("fits").map(|v| v.len()), Some(991));
        assert_eq!(store.get("big"), None);
        let stats = store.stats();
        assert_eq!(stats.rejected_oversize, 1);
        assert_eq!(stats.memory_usage_bytes, 991 + ENTRY_OVERHEAD_BYTES);
    }

    #[test]
    fn oversize_replacement_leaves_the_old_value_in_place() {
        let store = Store::new(config(10, 1 << 20, 100));
        store
            .set("k".into(), Bytes::from_static(b"old"), 0)
            .unwrap();
        assert!(is_oversize(store.set("k".into(), bytes_of(100), 0)));
        assert_eq!(store.get("k"), Some(Bytes::from_static(b"old")));
        assert_eq!(store.stats().memory_usage_bytes, 3 + ENTRY_OVERHEAD_BYTES);
    }

    #[test]
    fn entry_larger_than_the_memory_limit_is_rejected_for_capacity_without_evicting() {
        let store = Store::new(config(10, 100, 1000));
        store.set("a".into(), bytes_of(10), 0).unwrap();
        assert_eq!(
            store.set("b".into(), bytes_of(68), 0),
            Err(Rejection::NoRoom { cost: 101 })
        );
        let stats = store.stats();
        assert_eq!(stats.rejected_capacity, 1);
        assert_eq!(stats.rejected_oversize, 0);
        assert_eq!(stats.lru_evictions, 0);
        assert!(store.get("a").is_some());
    }

    #[test]
    fn zero_item_limit_rejects_every_write_for_capacity() {
        let store = Store::new(config(0, 1 << 20, 1 << 20));
        assert!(is_no_room(store.set("a".into(), bytes_of(1), 0)));
        assert_eq!(store.stats().rejected_capacity, 1);
    }

    #[test]
    fn item_limit_evicts_the_least_recently_used_entry() {
        let store = Store::new(config(2, 1 << 20, 1 << 20));
        store.set("a".into(), bytes_of(1), 0).unwrap();
        store.set("b".into(), bytes_of(1), 0).unwrap();
        store.set("c".into(), bytes_of(1), 0).unwrap();
        assert_eq!(held(&store, &["a", "b", "c"]), ["b", "c"]);
        let stats = store.stats();
        assert_eq!(stats.size, 2);
        assert_eq!(stats.lru_evictions, 1);
        assert_eq!(stats.evictions(), 1);
    }

    #[test]
    fn a_get_refreshes_recency_so_the_other_entry_is_evicted() {
        let store = Store::new(config(2, 1 << 20, 1 << 20));
        store.set("a".into(), bytes_of(1), 0).unwrap();
        store.set("b".into(), bytes_of(1), 0).unwrap();
        assert!(store.get("a").is_some());
        store.set("c".into(), bytes_of(1), 0).unwrap();
        assert_eq!(held(&store, &["a", "b"]), ["a"]);
    }

    #[test]
    fn memory_limit_evicts_as_many_lru_entries_as_needed() {
        // Three 50-byte entries (17 + 33) fill 150 of 160 bytes.
        let store = Store::new(config(100, 160, 1000));
        for key in ["a", "b", "c"] {
            store.set(key.into(), bytes_of(17), 0).unwrap();
        }
        // 100 bytes needs two evictions: 150 - 100 + 100 = 150 <= 160.
        store.set("d".into(), bytes_of(67), 0).unwrap();
        assert_eq!(held(&store, &["a", "b", "c", "d"]), ["c", "d"]);
        let stats = store.stats();
        assert_eq!(stats.lru_evictions, 2);
        assert_eq!(stats.memory_usage_bytes, 150);
    }

    #[test]
    fn replacing_a_key_releases_its_old_cost_and_evicts_nothing_at_the_item_limit() {
        let store = Store::new(config(2, 200, 1000));
        store.set("a".into(), bytes_of(67), 0).unwrap(); // 100 bytes
        store.set("b".into(), bytes_of(17), 0).unwrap(); // 50 bytes
                                                         // Needs 150: fits only because a's 100 bytes are released first.
        store.set("a".into(), bytes_of(117), 0).unwrap();
        assert!(store.get("b").is_some());
        assert_eq!(store.get("a").map(|v| v.len()), Some(117));
        let stats = store.stats();
        assert_eq!(stats.lru_evictions, 0);
        assert_eq!(stats.size, 2);
        assert_eq!(stats.memory_usage_bytes, 200);
    }

    #[test]
    fn entry_expires_exactly_when_elapsed_equals_ttl() {
        let (store, t0) = written(&[("k", b"v", 5)]);
        let just_before = t0 + Duration::from_secs(5) - Duration::from_nanos(1);
        assert!(store.get_at("k", just_before).is_some());
        assert_eq!(store.get_at("k", t0 + Duration::from_secs(5)), None);
        let stats = store.stats_at(t0 + Duration::from_secs(5));
        assert_eq!(stats.expired_removals, 1);
        assert_eq!(stats.evictions(), 1);
        assert_eq!(stats.hits, 1);
        assert_eq!(stats.misses, 1);
        assert_eq!(stats.size, 0);
        assert_eq!(stats.memory_usage_bytes, 0);
    }

    #[test]
    fn ttl_zero_and_negative_never_expire() {
        let (store, t0) = written(&[("zero", b"x", 0), ("negative", b"x", -7)]);
        let much_later = t0 + Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(store.get_at("zero", much_later).is_some());
        assert!(store.get_at("negative", much_later).is_some());
        assert_eq!(store.purge_expired_at(much_later), 0);
    }

    #[test]
    fn stats_removes_expired_entries_before_counting() {
        let (store, t0) = written(&[("short", b"x", 1), ("long", b"x", 10), ("never", b"x", 0)]);
        assert_eq!(store.stats_at(t0).size, 3);
        let stats = store.stats_at(t0 + Duration::from_secs(1));
        assert_eq!(stats.size, 2);
        assert_eq!(stats.expired_removals, 1);
        assert_eq!(stats.memory_usage_bytes, 2 * (1 + ENTRY_OVERHEAD_BYTES));
        let stats = store.stats_at(t0 + Duration::from_secs(10));
        assert_eq!(stats.size, 1);
        assert_eq!(stats.expired_removals, 2);
        // Reads are not counted by stats.
        assert_eq!(stats.hits + stats.misses, 0);
    }

    #[test]
    fn set_if_absent_stores_when_missing_and_reports_exists_otherwise() {
        let store = Store::new(StoreConfig::default());
        let put = |value| store.set_if_absent("k".into(), Bytes::from_static(value), 0);
        assert_eq!(put(b"1"), Ok(ConditionalCacheStatus::Stored));
        assert_eq!(put(b"2"), Ok(ConditionalCacheStatus::Exists));
        assert_eq!(store.get("k"), Some(Bytes::from_static(b"1")));
    }

    #[test]
    fn compare_and_set_reports_not_found_mismatch_and_stored() {
        let store = Store::new(StoreConfig::default());
        // Each attempt replaces "k" with "b" if it holds `expected`.
        let replace =
            |expected| store.compare_and_set("k".into(), expected, Bytes::from_static(b"b"), 0);
        assert_eq!(replace(b"a"), Ok(ConditionalCacheStatus::NotFound));
        assert_eq!(store.get("k"), None);

        store.set("k".into(), Bytes::from_static(b"a"), 0).unwrap();
        assert_eq!(replace(b"x"), Ok(ConditionalCacheStatus::Mismatch));
        assert_eq!(store.get("k"), Some(Bytes::from_static(b"a")));

        assert_eq!(replace(b"a"), Ok(ConditionalCacheStatus::Stored));
        assert_eq!(store.get("k"), Some(Bytes::from_static(b"b")));
    }

    #[test]
    fn conditional_writes_treat_an_expired_entry_as_missing() {
        let (store, t0) = written(&[("absent", b"old", 1), ("swapped", b"a", 1)]);
        let later = t0 + Duration::from_secs(1);
        let new = Bytes::from_static(b"new");
        let put = store.set_if_absent_at("absent".into(), new.clone(), 0, later);
        assert_eq!(put, Ok(ConditionalCacheStatus::Stored));
        assert_eq!(store.get_at("absent", later), Some(new.clone()));
        let replaced = store.compare_and_set_at("swapped".into(), b"a", new, 0, later);
        assert_eq!(replaced, Ok(ConditionalCacheStatus::NotFound));
        assert_eq!(store.get_at("swapped", later), None);
        assert_eq!(store.stats_at(later).expired_removals, 2);
    }

    #[test]
    fn compare_and_set_with_an_oversize_value_fails_and_keeps_the_old_one() {
        let store = Store::new(config(10, 1 << 20, 100));
        store.set("k".into(), Bytes::from_static(b"a"), 0).unwrap();
        let result = store.compare_and_set("k".into(), b"a", bytes_of(100), 0);
        assert!(is_oversize(result));
        assert_eq!(store.get("k"), Some(Bytes::from_static(b"a")));
    }

    #[test]
    fn compare_and_set_with_a_new_ttl_applies_it() {
        let (store, t0) = written(&[("k", b"a", 0)]);
        let status = store.compare_and_set_at("k".into(), b"a", Bytes::from_static(b"b"), 3, t0);
        assert_eq!(status.unwrap(), ConditionalCacheStatus::Stored);
        assert_eq!(store.get_at("k", t0 + Duration::from_secs(3)), None);
    }

    #[test]
    fn delete_is_idempotent_and_releases_memory() {
        let store = Store::new(StoreConfig::default());
        store.set("k".into(), bytes_of(10), 0).unwrap();
        assert!(store.delete("k"));
        assert!(!store.delete("k"));
        let stats = store.stats();
        assert_eq!(stats.size, 0);
        assert_eq!(stats.memory_usage_bytes, 0);
    }

    #[test]
    fn deleting_an_expired_entry_reports_nothing_removed() {
        let (store, t0) = written(&[("k", b"ten bytes!", 1)]);
        assert!(!store.delete_at("k", t0 + Duration::from_secs(1)));
        assert_eq!(store.stats().memory_usage_bytes, 0);
    }

    #[test]
    fn hit_rate_is_hits_over_reads_and_zero_before_any_read() {
        let store = Store::new(StoreConfig::default());
        assert_eq!(store.stats().hit_rate(), 0.0);
        store.set("k".into(), bytes_of(1), 0).unwrap();
        store.get("k");
        store.get("k");
        store.get("k");
        store.get("missing");
        let stats = store.stats();
        assert_eq!((stats.hits, stats.misses), (3, 1));
        assert_eq!(stats.hit_rate(), 0.75);
    }

    #[test]
    fn store_survives_a_poisoned_lock() {
        let store = std::sync::Arc::new(Store::new(StoreConfig::default()));
        store.set("k".into(), bytes_of(1), 0).unwrap();
        let poisoner = std::sync::Arc::clone(&store);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(store.inner.is_poisoned());
        assert!(store.get("k").is_some());
        assert_eq!(store.stats().size, 1);
    }

    #[test]
    fn concurrent_writers_keep_memory_accounting_and_limits_exact() {
        let store = std::sync::Arc::new(Store::new(config(50, 4000, 1000)));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..2000usize {
                        let key = format!("k{}", (i * 7 + t) % 97);
                        match i % 4 {
                            0 => drop(store.delete(&key)),
                            1 => drop(store.get(&key)),
                            _ => drop(store.set(key, bytes_of(i % 120), 0)),
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let inner = store.lock();
        let live: u64 = inner.map.iter().map(|(_, e)| e.cost()).sum();
        assert_eq!(inner.memory_bytes, live);
        assert!(inner.memory_bytes <= 4000);
        assert!(inner.map.len() <= 50);
    }

    #[test]
    fn uptime_counts_from_the_stores_creation() {
        let store = Store::new(StoreConfig::default());
        let later = store.created + Duration::from_secs(90);
        assert_eq!(store.stats_at(later).uptime, Duration::from_secs(90));
        // A clock read before creation cannot make uptime negative.
        assert_eq!(store.stats_at(store.created).uptime, Duration::ZERO);
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }
}
