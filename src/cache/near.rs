//! The near cache: an in-process layer (moka) in front of another store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::Expiry;

use super::stats::{bump, CacheStats, Counters};
use crate::CacheStore;
use crate::{CasOutcome, Code, Error, ItemResult, Result, Ttl};

/// Default bound of a near cache, in entries: enough for a service's hot
/// set, small enough (with values of a few KiB) to stay in the tens of MiB.
pub const DEFAULT_NEAR_MAX_ENTRIES: u64 = 10_000;

/// Default local TTL of a near cache: how long, at most, this process can
/// keep showing a value another process has changed or deleted.
pub const DEFAULT_NEAR_TTL: Duration = Duration::from_secs(5);

/// What one entry weighs beyond its key and value when the near cache is
/// bounded by bytes: moka's and our bookkeeping per entry, roughly.
pub const NEAR_ENTRY_OVERHEAD_BYTES: u32 = 96;

/// Which entries a full near cache gives up first.
///
/// ```
/// use tiny_cache_client::cache::NearPolicy;
///
/// assert_eq!(NearPolicy::default(), NearPolicy::TinyLfu);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NearPolicy {
    /// moka's TinyLFU: admits a new entry only when it is likely to be read
    /// more often than the one it would evict. Best for skewed traffic.
    #[default]
    TinyLfu,
    /// Least recently used: every new entry is admitted. Best when recent
    /// keys are the hot keys (a scan would flush TinyLFU's history anyway).
    Lru,
}

/// What bounds a local layer: entries, or bytes of keys, values and
/// [`NEAR_ENTRY_OVERHEAD_BYTES`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Capacity {
    Entries(u64),
    Bytes(u64),
}

/// Settings of a [`NearCache`], with their defaults.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::time::Duration;
/// use tiny_cache_client::cache::{NearCache, NearPolicy};
///
/// let near = NearCache::builder(client)
///     .max_bytes(64 << 20)
///     .local_ttl(Duration::from_secs(2))
///     .policy(NearPolicy::Lru)
///     .build();
/// assert_eq!(near.local_ttl(), Duration::from_secs(2));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct NearCacheBuilder<S> {
    inner: S,
    capacity: Capacity,
    local_ttl: Duration,
    policy: NearPolicy,
    on_evicted: Option<EvictionListener>,
}

/// Why a near cache dropped a local copy (see
/// [`NearCacheBuilder::on_evicted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvictionCause {
    /// Its local TTL passed.
    Expired,
    /// The size bound (entries or bytes) needed the room.
    Size,
    /// A newer copy of the key took its place.
    Replaced,
    /// A write or delete through the layer (or `forget`, `flush_local`)
    /// dropped it.
    Invalidated,
}

/// What [`NearCacheBuilder::on_evicted`] calls.
#[derive(Clone)]
pub(crate) struct EvictionListener(Arc<OnEvicted>);

/// The listener's call: a dropped copy's key and why it went.
type OnEvicted = dyn Fn(&str, EvictionCause) + Send + Sync;

impl std::fmt::Debug for EvictionListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvictionListener")
    }
}

impl<S: CacheStore> NearCacheBuilder<S> {
    /// Bounds the local layer to `entries` entries (default
    /// [`DEFAULT_NEAR_MAX_ENTRIES`]).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let near = tiny_cache_client::cache::NearCache::builder(client).max_entries(100).build();
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.capacity = Capacity::Entries(entries);
        self
    }

    /// Bounds the local layer to about `bytes` bytes: keys plus values plus
    /// [`NEAR_ENTRY_OVERHEAD_BYTES`] per entry.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let near = tiny_cache_client::cache::NearCache::builder(client).max_bytes(1 << 20).build();
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.capacity = Capacity::Bytes(bytes);
        self
    }

    crate::setters::setters! {
        /// How long an entry lives locally at most (default
        /// [`DEFAULT_NEAR_TTL`]). An entry this layer writes lives no longer
        /// than the TTL it was written with.
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// use std::time::Duration;
        /// let near = tiny_cache_client::cache::NearCache::builder(client)
        ///     .local_ttl(Duration::from_millis(500))
        ///     .build();
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        local_ttl(ttl: Duration) => local_ttl;

        /// Which entries go first when the layer is full (default
        /// [`NearPolicy::TinyLfu`]).
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// use tiny_cache_client::cache::{NearCache, NearPolicy};
        /// let near = NearCache::builder(client).policy(NearPolicy::Lru).build();
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        policy(policy: NearPolicy) => policy;
    }

    /// Calls `listener` with the key and the cause of every local copy
    /// the layer drops (mtaio's `on_evicted`, moka's eviction listener).
    /// It runs on a thread of the layer's own, off every caller's path, in
    /// the order the copies were dropped.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::{EvictionCause, NearCache};
    ///
    /// let near = NearCache::builder(client)
    ///     .on_evicted(|key, cause| {
    ///         if cause == EvictionCause::Size {
    ///             eprintln!("{key} made room for another");
    ///         }
    ///     })
    ///     .build();
    /// # drop(near);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_evicted(
        mut self,
        listener: impl Fn(&str, EvictionCause) + Send + Sync + 'static,
    ) -> Self {
        self.on_evicted = Some(EvictionListener(Arc::new(listener)));
        self
    }

    /// The near cache.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let near = tiny_cache_client::cache::NearCache::builder(client).build();
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> NearCache<S> {
        NearCache {
            inner: self.inner,
            local: LocalCopies::with_listener(self.capacity, self.policy, self.on_evicted),
            local_ttl: self.local_ttl,
        }
    }
}

/// An entry held locally, with the instant it must be gone by.
#[derive(Clone)]
struct Local {
    value: Bytes,
    expires_at: Instant,
}

/// Per-entry expiry: each entry carries its own end, computed before the
/// remote call that wrote or read it, so the local copy never outlives the
/// remote entry this layer wrote.
struct LocalExpiry;

impl Expiry<String, Local> for LocalExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        local: &Local,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(local.expires_at.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _: &String,
        local: &Local,
        updated_at: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(local.expires_at.saturating_duration_since(updated_at))
    }
}

/// The in-process half of a near layer: entries that each end at their own
/// instant, bounded by entries or bytes, counted, and a write counter (the
/// epoch) that keeps a read which raced a write from putting an old value
/// back. [`NearCache`] is this in front of a store; an
/// [`EntityCache`](crate::cache::EntityCache)'s local layer is this too,
/// with an expiry per use case and its own invalidations as the writes.
pub(crate) struct LocalCopies {
    entries: moka::sync::Cache<String, Local>,
    /// Bumped by every write this layer learns of: a read that saw it
    /// change while it was out fetching does not keep what it fetched,
    /// which might predate the write.
    writes: AtomicU64,
    counters: Arc<Counters>,
    /// Bounded by bytes (entries weigh their bytes) rather than entries.
    weighed: bool,
    /// The way to the eviction listener's thread, shared with moka's
    /// listener, and the thread.
    told: Option<Tell>,
    listening: Option<std::thread::JoinHandle<()>>,
}

/// The way to the eviction listener's thread: `None` once the layer has
/// closed it.
type Tell = Arc<Mutex<Option<crossbeam_channel::Sender<(String, EvictionCause)>>>>;

impl Drop for LocalCopies {
    /// Closes the way to the listener's thread and waits for it to tell
    /// what it was told: a dropped layer leaves no thread behind (unless
    /// the listener itself dropped the layer, on that thread).
    fn drop(&mut self) {
        if let Some(told) = &self.told {
            told.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
        if let Some(handle) = self.listening.take() {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

/// What a copy weighs in a layer bounded by bytes: its key, its value and
/// [`NEAR_ENTRY_OVERHEAD_BYTES`].
fn weigh(key: &str, local: &Local) -> u32 {
    let weight = key.len() + local.value.len() + NEAR_ENTRY_OVERHEAD_BYTES as usize;
    u32::try_from(weight).unwrap_or(u32::MAX)
}

impl LocalCopies {
    // The entity cache's; the near cache passes its listener.
    #[cfg_attr(not(feature = "entity-cache"), allow(dead_code))]
    pub(crate) fn new(capacity: Capacity, policy: NearPolicy) -> LocalCopies {
        LocalCopies::with_listener(capacity, policy, None)
    }

    /// [`LocalCopies::new`], telling `listener` (on a thread of its own)
    /// of every copy dropped.
    pub(crate) fn with_listener(
        capacity: Capacity,
        policy: NearPolicy,
        listener: Option<EvictionListener>,
    ) -> LocalCopies {
        let counters = Arc::new(Counters::default());
        let listener_counters = Arc::clone(&counters);
        // The listener's thread and the way to it; closed and joined when
        // the layer goes (see `Drop`).
        let (told, listening) = match listener {
            None => (None, None),
            Some(listener) => {
                let (tell, news) = crossbeam_channel::unbounded::<(String, EvictionCause)>();
                let spawned = std::thread::Builder::new()
                    .name("tiny-cache-evictions".into())
                    .spawn(move || {
                        for (key, cause) in news {
                            let listener = &listener.0;
                            // A panicking listener must not end the thread.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                listener(&key, cause)
                            }));
                        }
                    });
                match spawned {
                    Ok(handle) => (Some(Arc::new(Mutex::new(Some(tell)))), Some(handle)),
                    Err(_) => (None, None),
                }
            }
        };
        let tell_listener = told.clone();
        let builder = moka::sync::Cache::builder()
            .eviction_policy(match policy {
                NearPolicy::TinyLfu => EvictionPolicy::tiny_lfu(),
                NearPolicy::Lru => EvictionPolicy::lru(),
            })
            .expire_after(LocalExpiry)
            .eviction_listener(move |key: Arc<String>, local: Local, cause| {
                // moka names a per-entry expiry only when its timer wheel
                // drops the copy (about a second late); a copy that had
                // reached its end before an overwrite or an invalidation
                // took it expired all the same.
                let ended = local.expires_at <= Instant::now();
                let cause = match cause {
                    RemovalCause::Size if !ended => {
                        bump(&listener_counters.evictions);
                        EvictionCause::Size
                    }
                    RemovalCause::Explicit if !ended => EvictionCause::Invalidated,
                    RemovalCause::Replaced if !ended => EvictionCause::Replaced,
                    _ => {
                        bump(&listener_counters.expirations);
                        EvictionCause::Expired
                    }
                };
                if let Some(tell) = &tell_listener {
                    let tell = tell.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(tell) = tell.as_ref() {
                        let _ = tell.send((key.as_ref().clone(), cause));
                    }
                }
            });
        let weighed = matches!(capacity, Capacity::Bytes(_));
        let entries = match capacity {
            Capacity::Entries(entries) => builder.max_capacity(entries).build(),
            Capacity::Bytes(bytes) => builder
                .max_capacity(bytes)
                .weigher(|key: &String, local: &Local| weigh(key, local))
                .build(),
        };
        LocalCopies {
            entries,
            weighed,
            writes: AtomicU64::new(0),
            counters,
            told,
            listening,
        }
    }

    /// The local copy of `key`, counted as a hit when there is one.
    pub(crate) fn get(&self, key: &str) -> Option<Bytes> {
        let local = self.entries.get(key)?;
        bump(&self.counters.hits);
        Some(local.value)
    }

    /// Counts `keys` lookups this layer could not answer.
    pub(crate) fn missed(&self, keys: usize) {
        self.counters
            .misses
            .fetch_add(keys as u64, Ordering::Relaxed);
    }

    /// The write counter now: taken before a read, handed back to
    /// [`keep_read`](Self::keep_read) or
    /// [`keep_unless_written`](Self::keep_unless_written) after it.
    pub(crate) fn epoch(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Runs `keep` (which records what a read saw) unless a write happened
    /// since `epoch`; when one slips in while `keep` runs, `undo` takes the
    /// record back, since the write has already put its own.
    pub(crate) fn keep_unless_written(&self, epoch: u64, keep: impl FnOnce(), undo: impl FnOnce()) {
        if self.epoch() != epoch {
            return;
        }
        keep();
        if self.epoch() != epoch {
            undo();
        }
    }

    /// Keeps `value` locally until `expires_at`, unless a write happened
    /// since `epoch` (the value may predate it).
    pub(crate) fn keep_read(&self, key: &str, value: &Bytes, epoch: u64, expires_at: Instant) {
        self.keep_unless_written(
            epoch,
            || self.insert(key, value.clone(), expires_at),
            || self.invalidate(key),
        );
    }

    /// Holds `value` under `key` until `expires_at`, whatever the epoch:
    /// for what this process itself wrote or decided.
    pub(crate) fn insert(&self, key: &str, value: Bytes, expires_at: Instant) {
        self.entries
            .insert(key.to_owned(), Local { value, expires_at });
    }

    /// Drops the local copy of `key` without counting a write: for a copy
    /// found unusable.
    pub(crate) fn invalidate(&self, key: &str) {
        self.entries.invalidate(key);
    }

    /// Counts a write: reads out at the time keep nothing.
    pub(crate) fn written(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    /// Drops the local copies of keys a write touched, after the write
    /// (even a failed one may have happened).
    pub(crate) fn forget(&self, keys: &[&str]) {
        self.written();
        for key in keys {
            self.entries.invalidate(*key);
        }
    }

    /// Drops every local copy, as a write of every key.
    pub(crate) fn flush(&self) {
        self.written();
        self.entries.invalidate_all();
    }

    /// How many entries are held. Settled, exactly the copies still
    /// current: moka's pending work is done and copies past their end that
    /// its timers have not dropped yet (they tick about once a second) are
    /// left out, at the cost of a walk over the entries. Unsettled, moka's
    /// count, which may lag by both.
    pub(crate) fn entry_count(&self, settle: bool) -> u64 {
        if !settle {
            return self.entries.entry_count();
        }
        self.entries.run_pending_tasks();
        // moka's iterator skips expired copies.
        self.entries.iter().count() as u64
    }

    /// What the current entries weigh, as [`entry_count`](Self::entry_count)
    /// settled: bytes when bounded by bytes, else entries.
    pub(crate) fn weight(&self) -> u64 {
        self.entries.run_pending_tasks();
        if !self.weighed {
            return self.entries.iter().count() as u64;
        }
        self.entries
            .iter()
            .map(|(key, local)| u64::from(weigh(&key, &local)))
            .sum()
    }

    /// The counters, exact when read: copies past their end that moka's
    /// timers have not dropped yet count as expired now (each is counted
    /// once: when moka drops it, it leaves this tally for the listener's).
    pub(crate) fn stats(&self) -> CacheStats {
        self.entries.run_pending_tasks();
        let held = self.entries.entry_count();
        let current = self.entries.iter().count() as u64;
        let mut stats = self.counters.snapshot();
        stats.expirations += held.saturating_sub(current);
        stats
    }
}

/// An in-process cache (moka) in front of another [`CacheStore`] (usually
/// the remote [`Client`](crate::Client)), itself a `CacheStore`: put a
/// [`ReadThrough`](crate::cache::ReadThrough) on top for single flight.
///
/// Reads are answered locally when possible, else from the store under it
/// and kept locally. Writes and deletes through this layer go to the store
/// first, then update or drop the local copy, so this process reads its own
/// writes.
///
/// What a reader can see, plainly: **an entry another process changed or
/// deleted stays visible here for at most the local TTL** (default
/// [`DEFAULT_NEAR_TTL`]). An entry this layer wrote lives locally no longer
/// than the TTL it was written with; an entry read from the store lives
/// locally for the local TTL, because the server does not tell how long
/// its entry has left, so keep the local TTL well under your remote TTLs.
/// [`flush_local`](Self::flush_local) drops everything local at once.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::time::Duration;
/// use tiny_cache_client::cache::{NearCache, ReadThrough};
///
/// let near = NearCache::builder(client).max_entries(10_000).build();
/// let cache = ReadThrough::new(near);
/// cache.get_with("config", Duration::from_secs(60), || "v1")?; // computed, stored in both
/// cache.get_with("config", Duration::from_secs(60), || "v1")?; // local hit, no network
/// assert_eq!(cache.store().local_stats().hits, 1);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct NearCache<S> {
    inner: S,
    /// Every write and delete through this layer counts as a write there.
    local: LocalCopies,
    local_ttl: Duration,
}

impl<S> std::fmt::Debug for NearCache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("local_ttl", &self.local_ttl)
            .field("local_entries", &self.local.entry_count(false))
            .finish_non_exhaustive()
    }
}

impl<S: CacheStore> NearCache<S> {
    /// A near cache over `inner` with the default settings.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let near = tiny_cache_client::cache::NearCache::new(client);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(inner: S) -> Self {
        Self::builder(inner).build()
    }

    /// A builder for a near cache over `inner`.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let near = tiny_cache_client::cache::NearCache::builder(client).max_entries(500).build();
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(inner: S) -> NearCacheBuilder<S> {
        NearCacheBuilder {
            inner,
            capacity: Capacity::Entries(DEFAULT_NEAR_MAX_ENTRIES),
            local_ttl: DEFAULT_NEAR_TTL,
            policy: NearPolicy::default(),
            on_evicted: None,
        }
    }

    /// The store under the local layer.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let near = tiny_cache_client::cache::NearCache::new(client);
    /// near.store().set("bypass", "the local layer")?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store(&self) -> &S {
        &self.inner
    }

    /// The longest an entry lives locally.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::{NearCache, DEFAULT_NEAR_TTL};
    /// assert_eq!(NearCache::new(client).local_ttl(), DEFAULT_NEAR_TTL);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_ttl(&self) -> Duration {
        self.local_ttl
    }

    /// Drops every local entry (the store under it keeps its entries).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::NearCache;
    /// use tiny_cache_client::CacheStore;
    /// use tiny_cache_client::Ttl;
    ///
    /// let near = NearCache::new(client);
    /// near.set_with_ttl("k", "v", Ttl::After(Duration::from_secs(60)))?;
    /// assert!(near.peek("k").is_some());
    /// near.flush_local();
    /// assert!(near.peek("k").is_none());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush_local(&self) {
        self.local.flush();
    }

    /// How many current copies are held locally: exact when no write of
    /// this layer runs at the same time (moka's pending work is done first,
    /// and copies past their TTL are left out even before moka's timers
    /// drop them). It walks the local
    /// entries: for a metrics scrape, not for every request.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let near = tiny_cache_client::cache::NearCache::new(client);
    /// assert_eq!(near.local_entries(), 0);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_entries(&self) -> u64 {
        self.local.entry_count(true)
    }

    /// What the local entries weigh: bytes with [`max_bytes`](NearCacheBuilder::max_bytes),
    /// entries with [`max_entries`](NearCacheBuilder::max_entries).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let near = tiny_cache_client::cache::NearCache::builder(client).max_bytes(1 << 20).build();
    /// assert_eq!(near.local_weight(), 0);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_weight(&self) -> u64 {
        self.local.weight()
    }

    /// The local layer's counters: hits, misses, evictions, expirations.
    /// Exact when read while no write of this layer runs at the same time:
    /// a copy past its TTL is counted expired at once, not when moka's
    /// timers drop it (up to about a second later); this walks the local
    /// entries.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::NearCache;
    /// use tiny_cache_client::CacheStore;
    ///
    /// let near = NearCache::new(client);
    /// near.get("k")?;
    /// assert_eq!(near.local_stats().misses, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_stats(&self) -> CacheStats {
        self.local.stats()
    }

    /// The value of `key`: the local copy when there is one, else the
    /// store's (kept locally for next time). The same as
    /// [`CacheStore::get`], without importing the trait.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::NearCache;
    ///
    /// let near = NearCache::new(client);
    /// near.set("k", "v")?;
    /// assert_eq!(near.get("k")?.as_deref(), Some(&b"v"[..]));
    /// assert_eq!(near.peek("k").as_deref(), Some(&b"v"[..])); // local, no I/O
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        CacheStore::get(self, key)
    }

    /// Stores `value` under `key` for the store's default TTL, here and
    /// below ([`CacheStore::set`]).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let near = tiny_cache_client::cache::NearCache::new(client.clone());
    /// near.set("k", "v")?;
    /// assert_eq!(client.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<()> {
        CacheStore::set(self, key, value.as_ref())
    }

    /// Stores `value` under `key` for `ttl`, here (for at most the local
    /// TTL) and below ([`CacheStore::set_with_ttl`]).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    ///
    /// let near = tiny_cache_client::cache::NearCache::new(client);
    /// near.set_with_ttl("k", "v", Duration::from_secs(60))?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_with_ttl(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: impl Into<Ttl>,
    ) -> Result<()> {
        CacheStore::set_with_ttl(self, key, value.as_ref(), ttl.into())
    }

    /// Removes `key` here and below ([`CacheStore::delete`]).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let near = tiny_cache_client::cache::NearCache::new(client);
    /// near.set("k", "v")?;
    /// near.delete("k")?;
    /// assert_eq!(near.peek("k"), None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, key: &str) -> Result<()> {
        CacheStore::delete(self, key)
    }

    /// The local copy of `key`, without any I/O ([`CacheStore::peek`]).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let near = tiny_cache_client::cache::NearCache::new(client);
    /// assert_eq!(near.peek("k"), None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peek(&self, key: &str) -> Option<Bytes> {
        CacheStore::peek(self, key)
    }
}

impl<S: CacheStore> CacheStore for NearCache<S> {
    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        if let Some(value) = self.local.get(key) {
            return Ok(Some(value));
        }
        self.local.missed(1);
        let epoch = self.local.epoch();
        let expires_at = Instant::now() + self.local_ttl;
        let value = self.inner.get(key)?;
        if let Some(value) = &value {
            self.local.keep_read(key, value, epoch, expires_at);
        }
        Ok(value)
    }

    fn set_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<()> {
        let local_ttl = match ttl {
            Ttl::After(remote) => remote.min(self.local_ttl),
            Ttl::Never => self.local_ttl,
        };
        // Counted from before the write: the remote entry's clock starts
        // later, so the local copy ends first.
        let expires_at = Instant::now() + local_ttl;
        let written = self.inner.set_with_ttl(key, value, ttl);
        self.local.written();
        match written {
            Ok(()) => {
                self.local
                    .insert(key, Bytes::copy_from_slice(value), expires_at);
                Ok(())
            }
            Err(error) => {
                // The store may or may not hold the new value: hold nothing.
                self.local.invalidate(key);
                Err(error)
            }
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        let deleted = self.inner.delete(key);
        // Even a failed delete may have happened: drop the local copy.
        self.local.forget(&[key]);
        deleted
    }

    fn default_ttl(&self) -> Ttl {
        self.inner.default_ttl()
    }

    fn get_many(&self, keys: &[&str]) -> Result<Vec<ItemResult<Option<Bytes>>>> {
        let mut results: Vec<Option<ItemResult<Option<Bytes>>>> = keys
            .iter()
            .map(|key| {
                self.local
                    .get(key)
                    .map(|value| ItemResult::new(key, Ok(Some(value))))
            })
            .collect();
        let missing: Vec<&str> = keys
            .iter()
            .zip(&results)
            .filter(|(_, found)| found.is_none())
            .map(|(key, _)| *key)
            .collect();
        if !missing.is_empty() {
            self.local.missed(missing.len());
            let epoch = self.local.epoch();
            let expires_at = Instant::now() + self.local_ttl;
            let mut fetched = self.inner.get_many(&missing)?.into_iter();
            for (key, slot) in keys.iter().zip(results.iter_mut()) {
                if slot.is_some() {
                    continue;
                }
                let item = fetched.next().unwrap_or_else(|| {
                    ItemResult::new(
                        key,
                        Err(Error::Protocol {
                            code: Code::Internal,
                            message: format!(
                                "the store answered fewer than the {} keys asked",
                                missing.len()
                            ),
                        }),
                    )
                });
                if let Ok(Some(value)) = &item.result {
                    self.local.keep_read(key, value, epoch, expires_at);
                }
                *slot = Some(item);
            }
        }
        Ok(keys
            .iter()
            .zip(results)
            .map(|(key, item)| item.unwrap_or_else(|| ItemResult::new(key, Ok(None))))
            .collect())
    }

    fn set_many_with_ttl(&self, items: &[(&str, &[u8])], ttl: Ttl) -> Result<Vec<ItemResult<()>>> {
        let written = self.inner.set_many_with_ttl(items, ttl);
        let keys: Vec<&str> = items.iter().map(|(key, _)| *key).collect();
        self.local.forget(&keys);
        written
    }

    fn delete_many(&self, keys: &[&str]) -> Result<Vec<ItemResult<()>>> {
        let deleted = self.inner.delete_many(keys);
        self.local.forget(keys);
        deleted
    }

    fn set_if_absent_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<bool> {
        let stored = self.inner.set_if_absent_with_ttl(key, value, ttl);
        self.local.forget(&[key]);
        stored
    }

    fn compare_and_set_with_ttl(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Ttl,
    ) -> Result<CasOutcome> {
        let outcome = self
            .inner
            .compare_and_set_with_ttl(key, expected, value, ttl);
        self.local.forget(&[key]);
        outcome
    }

    /// The store's own touch; the local copy goes, so it cannot outlive a
    /// TTL the touch shortened.
    fn touch(&self, key: &str, ttl: Ttl) -> Result<bool> {
        let touched = self.inner.touch(key, ttl);
        self.local.forget(&[key]);
        touched
    }

    /// Straight to the store below: a key read for its newest copy must
    /// not be answered from a local one.
    fn get_many_latest(
        &self,
        keys: &[&str],
        latest: &[bool],
    ) -> Result<Vec<ItemResult<Option<Bytes>>>> {
        self.inner.get_many_latest(keys, latest)
    }

    fn set_everywhere(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<()> {
        let written = self.inner.set_everywhere(key, value, ttl);
        self.local.forget(&[key]);
        written
    }

    fn set_if_absent_everywhere(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<bool> {
        let stored = self.inner.set_if_absent_everywhere(key, value, ttl);
        self.local.forget(&[key]);
        stored
    }

    fn peek(&self, key: &str) -> Option<Bytes> {
        self.local.get(key)
    }

    fn conditional_writes(&self) -> bool {
        self.inner.conditional_writes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copies() -> LocalCopies {
        LocalCopies::new(Capacity::Entries(100), NearPolicy::Lru)
    }

    fn in_a_minute() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_read_that_raced_a_write_keeps_nothing() {
        let local = copies();
        let epoch = local.epoch();
        local.written();
        local.keep_read("k", &Bytes::from_static(b"old"), epoch, in_a_minute());
        assert_eq!(local.get("k"), None);
    }

    #[test]
    fn a_write_that_slips_in_while_keeping_takes_the_record_back() {
        let local = copies();
        let epoch = local.epoch();
        let mut undone = false;
        local.keep_unless_written(
            epoch,
            || {
                local.insert("k", Bytes::from_static(b"old"), in_a_minute());
                local.written();
            },
            || {
                local.invalidate("k");
                undone = true;
            },
        );
        assert!(undone);
        assert_eq!(local.get("k"), None);
    }

    #[test]
    fn each_entry_ends_at_its_own_instant() {
        let local = copies();
        let soon = Instant::now() + Duration::from_millis(20);
        local.insert("short", Bytes::from_static(b"v"), soon);
        local.insert("long", Bytes::from_static(b"v"), in_a_minute());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(local.get("short"), None);
        assert_eq!(local.get("long").as_deref(), Some(&b"v"[..]));
    }
}
