//! The read-through layer: look up, and on a miss compute once per key,
//! store and return.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;

use super::flight::{Flights, Joined, Lead, Outcome};
use super::fresh;
use super::lease::{self, Asked, DEFAULT_LEASE_TTL};
use super::refresh::{NotStarted, Refresher, DEFAULT_REFRESH_QUEUE, DEFAULT_REFRESH_THREADS};
use super::stats::{bump, CacheStats, Counters};
use super::CacheError;
use crate::CacheStore;
use crate::{CasOutcome, Error, ItemResult, Ttl, DEFAULT_TIMEOUT};

/// A read-through caching layer over any [`CacheStore`], with single
/// flight per key.
///
/// [`get_with`](Self::get_with) looks the key up and, on a miss, runs the
/// closure, stores its value for `ttl` and returns it. While one thread
/// runs the closure for a key, every other thread of the process asking for
/// that key through this layer (or a clone of it) waits for that result
/// instead of computing it again, at most until its own
/// [`wait_timeout`](Self::with_wait_timeout). The names follow moka's `get_with` and
/// `try_get_with`.
///
/// - A loader error reaches every waiter and is not cached: the next call
///   computes again.
/// - A loader that panics unwinds in its own thread; its waiters get
///   [`CacheError::LoaderPanicked`] and the key is free for the next call.
/// - A loader may read other keys through the same layer; asking for its
///   own key gives [`CacheError::Reentrant`] instead of a deadlock.
///   Two loaders in two threads that each wait for the other's key end at
///   their deadlines with [`CacheError::WaitTimeout`].
/// - With [`fail_open`](ReadThroughBuilder::fail_open), an unreachable,
///   slow or full store does not fail read-through: the value is computed
///   and returned anyway, and the failure counted.
///
/// Cloning is cheap and clones share the flights and the statistics.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let address = server.address();
/// use std::time::Duration;
/// use tiny_cache_client::cache::ReadThrough;
/// use tiny_cache_client::Client;
///
/// let cache = ReadThrough::new(Client::new(&address)?);
/// let page = cache.get_with("page:/home", Duration::from_secs(30), || {
///     "<h1>expensive to render</h1>"
/// })?;
/// assert_eq!(&page[..], b"<h1>expensive to render</h1>");
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReadThrough<S> {
    shared: Arc<Shared<S>>,
    /// How long a caller waits for another thread's load of the same key.
    timeout: Duration,
}

struct Shared<S> {
    store: S,
    flights: Flights,
    counters: Counters,
    fail_open: bool,
    fresh: Freshness,
    /// Refresh-ahead's threads, when `refresh_after` is set.
    refresher: Option<Refresher>,
    /// The lease TTL, when fills take a lease across processes.
    leases: Option<Duration>,
}

/// How entries are kept fresh (see [`fresh`](super::fresh)).
#[derive(Debug, Clone, Copy, Default)]
struct Freshness {
    /// Fraction by which written TTLs are spread; 0 for none.
    jitter: f64,
    /// XFetch's `beta`, when early expiry is on.
    early: Option<f64>,
    /// How long a loader's "not found" is remembered, when it is.
    misses_for: Option<Duration>,
    /// Entries older than this are refreshed in the background when read
    /// through a refreshing call.
    refresh_after: Option<Duration>,
    /// Refresh threads and queue length.
    refresh_pool: (usize, usize),
}

impl Freshness {
    /// Whether entries carry the envelope: early expiry needs their age,
    /// negative caching their kind.
    fn enveloped(&self) -> bool {
        self.early.is_some() || self.misses_for.is_some() || self.refresh_after.is_some()
    }

    /// What to store for `value` (`None`: a remembered miss), and for how
    /// long.
    fn seal(&self, value: Option<&[u8]>, compute: Duration, ttl: Ttl) -> (Bytes, Ttl) {
        let ttl = fresh::jitter(ttl, self.jitter);
        match value {
            Some(value) if !self.enveloped() => (Bytes::copy_from_slice(value), ttl),
            value => (fresh::seal(value, compute, ttl), ttl),
        }
    }
}

impl<S> Clone for ReadThrough<S> {
    fn clone(&self) -> Self {
        ReadThrough {
            shared: Arc::clone(&self.shared),
            timeout: self.timeout,
        }
    }
}

impl<S> std::fmt::Debug for ReadThrough<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadThrough")
            .field("timeout", &self.timeout)
            .field("fail_open", &self.shared.fail_open)
            .field("stats", &self.shared.counters.snapshot())
            .finish_non_exhaustive()
    }
}

/// Settings of a [`ReadThrough`] layer, with their defaults.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::time::Duration;
/// use tiny_cache_client::cache::ReadThrough;
///
/// let cache = ReadThrough::builder(client)
///     .wait_timeout(Duration::from_secs(2))
///     .fail_open(true)
///     .build();
/// assert_eq!(cache.wait_timeout(), Duration::from_secs(2));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReadThroughBuilder<S> {
    store: S,
    timeout: Duration,
    fail_open: bool,
    fresh: Freshness,
    leases: Option<Duration>,
}

impl<S: CacheStore> ReadThroughBuilder<S> {
    crate::setters::setters! {
        /// How long a caller waits for another thread loading the same key
        /// before [`CacheError::WaitTimeout`]. Default: [`DEFAULT_TIMEOUT`]
        /// (30 s, the client's default deadline).
        ///
        /// ```
        /// # use tiny_cache_client::cache::ReadThrough;
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// let cache = ReadThrough::builder(client)
        ///     .wait_timeout(std::time::Duration::from_millis(500))
        ///     .build();
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        wait_timeout(timeout: Duration) => timeout;

        /// Whether read-through survives an outage of the store. Default: off.
        ///
        /// When on, and the store fails with [`Error::Unavailable`],
        /// [`Error::DeadlineExceeded`] or [`Error::ResourceExhausted`]:
        /// [`get_with`](ReadThrough::get_with) computes and returns the value
        /// anyway, [`get`](ReadThrough::get) reports a miss, writes after a
        /// compute are best effort, and each failure is counted in
        /// [`CacheStats::store_failures`]. Any other error (a validation error
        /// is a bug, not an outage) still fails the call, and so do explicit
        /// [`set`](ReadThrough::set) and [`delete`](ReadThrough::delete): a
        /// caller invalidating an entry needs to know it did not happen.
        ///
        /// ```
        /// # use tiny_cache_client::cache::ReadThrough;
        /// use std::time::Duration;
        /// use tiny_cache_client::Client;
        ///
        /// // Nothing listens on port 1: the cache is "down".
        /// let down = Client::builder("127.0.0.1:1").max_retries(0).build()?;
        /// let cache = ReadThrough::builder(down).fail_open(true).build();
        /// let value = cache.get_with("k", Duration::from_secs(60), || "computed anyway")?;
        /// assert_eq!(&value[..], b"computed anyway");
        /// assert_eq!(cache.local_stats().store_failures, 1);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fail_open(enabled: bool) => fail_open;
    }

    /// Spreads the TTL of every entry the layer writes by up to ±
    /// `fraction` of itself (0.1: ±10 %, never below one second), so keys
    /// filled together do not all expire together. Default: 0, off.
    /// Clamped to 0..=0.9.
    ///
    /// ```
    /// # use tiny_cache_client::cache::ReadThrough;
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// let cache = ReadThrough::builder(client).ttl_jitter(0.1).build();
    /// # drop(cache);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.fresh.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 0.9)
        };
        self
    }

    /// Probabilistic early expiration (XFetch, Vattani et al., VLDB 2015)
    /// with this `beta` (1.0 is the paper's choice; larger recomputes
    /// earlier): a reader of an entry near its expiry recomputes it, with
    /// a probability that grows as the expiry nears and with how long the
    /// value took to compute, while the other readers keep the current
    /// value. No background thread is involved: the reader that draws the
    /// early expiry pays for the load. Entries then carry a 19-byte
    /// envelope (see [`fresh`](super::fresh)): the layer's reads, `set`
    /// and `set_with_ttl` read and write it; its other writes
    /// (`set_many`, the conditional writes, `touch`) pass to the store
    /// unwrapped and read back as plain values.
    ///
    /// ```
    /// # use tiny_cache_client::cache::ReadThrough;
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// let cache = ReadThrough::builder(client).early_expiry(1.0).build();
    /// # drop(cache);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn early_expiry(mut self, beta: f64) -> Self {
        self.fresh.early = (beta.is_finite() && beta > 0.0).then_some(beta);
        self
    }

    /// Remembers a loader's "not found" ([`ReadThrough::get_or_load`]'s
    /// `Ok(None)`) for `ttl`, so a missing row is not looked up on every
    /// read. The miss is stored as a marker no value can be mistaken for:
    /// entries then carry a 19-byte envelope (see [`fresh`](super::fresh)).
    ///
    /// ```
    /// # use tiny_cache_client::cache::ReadThrough;
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// use std::time::Duration;
    /// let cache = ReadThrough::builder(client).cache_misses_for(Duration::from_secs(30)).build();
    /// # drop(cache);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn cache_misses_for(mut self, ttl: Duration) -> Self {
        // The server keeps whole seconds, from one up.
        self.fresh.misses_for = Some(ttl.clamp(Duration::from_secs(1), YEAR));
        self
    }

    /// Refresh-ahead (Caffeine's `refreshAfterWrite`): a read through
    /// [`get_with_refresh`](ReadThrough::get_with_refresh) of an entry
    /// older than `age` (and not expired) returns the entry at once and
    /// hands one refresh of the key to the layer's refresh threads;
    /// concurrent readers never wait for it. A refresh that fails keeps
    /// the old value until it expires; one that finds the queue full is
    /// skipped; both are counted ([`CacheStats::refresh_failures`],
    /// [`CacheStats::refreshes_skipped`]). Entries carry a 19-byte envelope
    /// with their write time (see [`fresh`](super::fresh)).
    ///
    /// ```
    /// # use tiny_cache_client::cache::ReadThrough;
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// use std::time::Duration;
    /// let cache = ReadThrough::builder(client).refresh_after(Duration::from_secs(60)).build();
    /// # drop(cache);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn refresh_after(mut self, age: Duration) -> Self {
        self.fresh.refresh_after = Some(age);
        self
    }

    /// Leases: one fill per key across processes (see
    /// [`cache::lease`](super::lease)). On a miss, this process's loader for
    /// the key first takes the key's lease on the server; while another
    /// process holds it, this one waits (polling with backoff, up to
    /// [`wait_timeout`](Self::wait_timeout)) for the value it stores.
    /// Default: off.
    ///
    /// ```
    /// # use tiny_cache_client::cache::ReadThrough;
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// let cache = ReadThrough::builder(client).leases(true).build();
    /// # drop(cache);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn leases(mut self, enabled: bool) -> Self {
        self.leases = enabled.then_some(self.leases.unwrap_or(DEFAULT_LEASE_TTL));
        self
    }

    /// The TTL of a lease (default [`DEFAULT_LEASE_TTL`], 10 s): how long a
    /// dead holder delays its key's next fill. Turns leases on.
    ///
    /// ```
    /// # use tiny_cache_client::cache::ReadThrough;
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// use std::time::Duration;
    /// let cache = ReadThrough::builder(client).lease_ttl(Duration::from_secs(3)).build();
    /// # drop(cache);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.leases = Some(ttl.max(Duration::from_secs(1)));
        self
    }

    /// Refresh-ahead's threads (default 2) and how many refreshes may wait
    /// for one (default 256); at least one of each.
    ///
    /// ```
    /// # use tiny_cache_client::cache::ReadThrough;
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// use std::time::Duration;
    /// let cache = ReadThrough::builder(client)
    ///     .refresh_after(Duration::from_secs(60))
    ///     .refresh_pool(4, 1024)
    ///     .build();
    /// # drop(cache);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn refresh_pool(mut self, threads: usize, queue: usize) -> Self {
        self.fresh.refresh_pool = (threads.max(1), queue.max(1));
        self
    }

    /// The layer.
    ///
    /// ```
    /// # use tiny_cache_client::cache::ReadThrough;
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let cache = ReadThrough::builder(client).build();
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> ReadThrough<S> {
        ReadThrough {
            shared: Arc::new(Shared {
                store: self.store,
                flights: Flights::default(),
                counters: Counters::default(),
                fail_open: self.fail_open,
                refresher: self.fresh.refresh_after.map(|_| {
                    let (threads, queue) = self.fresh.refresh_pool;
                    Refresher::start(threads, queue)
                }),
                fresh: self.fresh,
                leases: self.leases,
            }),
            timeout: self.timeout,
        }
    }
}

/// The failures fail-open absorbs: the store being away, slow or full.
/// Everything else says the request itself is wrong.
pub(crate) fn is_outage(error: &Error) -> bool {
    matches!(
        error,
        Error::Unavailable(_) | Error::DeadlineExceeded(_) | Error::ResourceExhausted(_)
    )
}

/// The latest deadline a wait is given (a longer timeout is this).
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Decodes stored bytes into the caller's type.
pub(crate) type Decode<'a, T, E> = &'a dyn Fn(&Bytes) -> Result<T, CacheError<E>>;

/// How a read-through call reads what the store holds.
struct Reading<'a, T, E> {
    decode: Decode<'a, T, E>,
    /// Whether an undecodable entry counts as a miss (else it fails the
    /// call).
    miss_on_undecodable: bool,
    /// What a remembered miss reads as, for callers that take one.
    remembered: Option<&'a dyn Fn() -> T>,
    /// What a hit does next (refresh-ahead), for callers that refresh.
    ahead: Option<Ahead<'a>>,
}

/// Called with every entry a refreshing read hits.
/// Called with every entry a refreshing read hits, and its stored bytes.
type Ahead<'a> = &'a dyn Fn(&fresh::Entry, &Bytes);

impl<S: CacheStore> ReadThrough<S> {
    /// A layer over `store` with the default settings (see
    /// [`ReadThroughBuilder`]).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::new(client);
    /// assert_eq!(cache.get("nothing here")?, None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(store: S) -> Self {
        Self::builder(store).build()
    }

    /// A builder for a layer over `store`.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::builder(client).fail_open(true).build();
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(store: S) -> ReadThroughBuilder<S> {
        ReadThroughBuilder {
            store,
            timeout: DEFAULT_TIMEOUT,
            fail_open: false,
            fresh: Freshness {
                refresh_pool: (DEFAULT_REFRESH_THREADS, DEFAULT_REFRESH_QUEUE),
                ..Freshness::default()
            },
            leases: None,
        }
    }

    /// The store under this layer.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::new(client);
    /// println!("{} entries on the server", cache.store().stats()?.size);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// How long this handle waits for another thread's load of the same key.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// assert_eq!(ReadThrough::new(client).wait_timeout(), tiny_cache_client::DEFAULT_TIMEOUT);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&self) -> Duration {
        self.timeout
    }

    /// A handle on the same layer (same flights, same statistics) whose
    /// callers wait at most `timeout` for another thread's load.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::new(client);
    /// let hurried = cache.with_wait_timeout(Duration::from_millis(100));
    /// hurried.get_with("k", Duration::from_secs(60), || "v")?;
    /// assert_eq!(cache.local_stats().loads, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_wait_timeout(&self, timeout: Duration) -> Self {
        ReadThrough {
            shared: Arc::clone(&self.shared),
            timeout,
        }
    }

    /// This layer's counters.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::new(client);
    /// cache.get("k")?;
    /// assert_eq!(cache.local_stats().misses, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_stats(&self) -> CacheStats {
        self.shared.counters.snapshot()
    }

    /// The value of `key`, `None` when missing. No loader, no single
    /// flight; with fail-open, an outage of the store reads as a miss.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::new(client);
    /// cache.set_with_ttl("k", "v", Duration::from_secs(60))?;
    /// assert_eq!(cache.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: &str) -> crate::Result<Option<Bytes>> {
        let counters = &self.shared.counters;
        if let Some(stored) = self.shared.store.peek(key) {
            if let Some(value) = self.open(&stored).value {
                bump(&counters.hits);
                return Ok(Some(value));
            }
        }
        let found = self.shared.store.get(key);
        self.count_read(found.map(|stored| stored.and_then(|stored| self.open(&stored).value)))
    }

    /// Stored bytes as an entry: through the envelope when the layer
    /// writes one, as a plain value otherwise.
    fn open(&self, stored: &Bytes) -> fresh::Entry {
        if self.shared.fresh.enveloped() {
            fresh::open(stored)
        } else {
            fresh::Entry {
                value: Some(stored.clone()),
                age: None,
            }
        }
    }

    /// What the layer stores for `value` (`None`: a remembered miss), and
    /// for how long.
    fn seal(&self, value: Option<&[u8]>, compute: Duration, ttl: Ttl) -> (Bytes, Ttl) {
        self.shared.fresh.seal(value, compute, ttl)
    }

    /// Whether this reader should treat `entry` as expired already
    /// (early expiry, when on).
    fn due(&self, entry: &fresh::Entry) -> bool {
        match (self.shared.fresh.early, &entry.age) {
            (Some(beta), Some(age)) => fresh::expires_early(age, beta),
            _ => false,
        }
    }

    /// Stores `value` under `key` for the store's default TTL.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::new(client);
    /// cache.set("motd", "be kind")?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> crate::Result<()> {
        self.shared.store.set(key, value.as_ref())
    }

    /// Stores `value` under `key` for `ttl`.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::ReadThrough;
    /// use tiny_cache_client::Ttl;
    ///
    /// let cache = ReadThrough::new(client);
    /// cache.set_with_ttl("motd", "be kind", Ttl::Never)?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_with_ttl(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: impl Into<Ttl>,
    ) -> crate::Result<()> {
        let ttl = ttl.into();
        ttl.wire_seconds()?;
        let (stored, ttl) = self.seal(Some(value.as_ref()), Duration::ZERO, ttl);
        self.shared.store.set_with_ttl(key, &stored, ttl)
    }

    /// Removes `key` (removing a missing key succeeds).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::new(client);
    /// cache.set_with_ttl("k", "v", Duration::from_secs(60))?;
    /// cache.delete("k")?;
    /// assert_eq!(cache.get("k")?, None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, key: &str) -> crate::Result<()> {
        self.shared.store.delete(key)?;
        if self.shared.leases.is_some() {
            // A fill under way must not land after this delete: its lease
            // goes too (see `lease`).
            self.shared.store.delete(&lease::lease_key(key))?;
        }
        Ok(())
    }

    /// Counts a read of the store as a hit or a miss; with fail-open, an
    /// outage is a miss.
    fn count_read(&self, found: crate::Result<Option<Bytes>>) -> crate::Result<Option<Bytes>> {
        let counters = &self.shared.counters;
        match found {
            Ok(Some(value)) => {
                bump(&counters.hits);
                Ok(Some(value))
            }
            Ok(None) => {
                bump(&counters.misses);
                Ok(None)
            }
            Err(error) if self.shared.fail_open && is_outage(&error) => {
                bump(&counters.store_failures);
                bump(&counters.misses);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// The value of `key`; on a miss, `load`'s value, stored for `ttl`.
    /// One `load` runs per key at a time across the process (see the type's
    /// documentation for errors, panics and re-entrance).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::new(client);
    /// let first = cache.get_with("k", Duration::from_secs(60), || "first")?;
    /// let second = cache.get_with("k", Duration::from_secs(60), || "second")?;
    /// assert_eq!((&first[..], &second[..]), (&b"first"[..], &b"first"[..]));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_with<V: Into<Bytes>>(
        &self,
        key: &str,
        ttl: impl Into<Ttl>,
        load: impl FnOnce() -> V,
    ) -> Result<Bytes, CacheError> {
        // `CacheError` is `CacheError<Infallible>`: the same error type.
        self.try_get_with(key, ttl, || Ok::<V, std::convert::Infallible>(load()))
    }

    /// Like [`get_with`](Self::get_with) with a loader that can fail: its
    /// error reaches this caller and every caller waiting for the same key
    /// as [`CacheError::Load`], and nothing is stored.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{CacheError, ReadThrough};
    ///
    /// let cache = ReadThrough::new(client);
    /// let ttl = Duration::from_secs(60);
    /// let failed = cache.try_get_with("k", ttl, || "12x".parse::<u32>().map(|n| n.to_string()));
    /// assert!(matches!(failed, Err(CacheError::Load(_))));
    /// let ok = cache.try_get_with("k", ttl, || "12".parse::<u32>().map(|n| n.to_string()))?;
    /// assert_eq!(&ok[..], b"12");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get_with<V, E>(
        &self,
        key: &str,
        ttl: impl Into<Ttl>,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<Bytes, CacheError<E>>
    where
        V: Into<Bytes>,
        E: Send + Sync + 'static,
    {
        self.read_through(key, ttl.into(), &|bytes| Ok(bytes.clone()), false, || {
            let value: Bytes = load().map_err(|e| CacheError::Load(Arc::new(e)))?.into();
            Ok((value.clone(), value))
        })
    }

    /// The value of `key`, or `None` when `load` finds nothing: on a miss,
    /// `load` runs (one at a time per key, as for
    /// [`get_with`](Self::get_with)); `Ok(Some(value))` is stored for
    /// `ttl`, and `Ok(None)` is remembered for the
    /// [`cache_misses_for`](ReadThroughBuilder::cache_misses_for) TTL when
    /// the layer has one, so the next reads answer `None` without loading.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::builder(client)
    ///     .cache_misses_for(Duration::from_secs(30))
    ///     .build();
    /// let ttl = Duration::from_secs(600);
    /// let lookups = std::cell::Cell::new(0);
    /// let find = || {
    ///     lookups.set(lookups.get() + 1);
    ///     Ok::<Option<&str>, std::io::Error>(None) // no such row
    /// };
    /// assert_eq!(cache.get_or_load("user:404", ttl, find)?, None);
    /// assert_eq!(cache.get_or_load("user:404", ttl, find)?, None);
    /// assert_eq!(lookups.get(), 1, "the miss was remembered");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_or_load<V, E>(
        &self,
        key: &str,
        ttl: impl Into<Ttl>,
        load: impl FnOnce() -> Result<Option<V>, E>,
    ) -> Result<Option<Bytes>, CacheError<E>>
    where
        V: Into<Bytes>,
        E: Send + Sync + 'static,
    {
        let not_found = || None;
        let decode: Decode<'_, Option<Bytes>, E> = &|bytes| Ok(Some(bytes.clone()));
        self.read_entry(
            key,
            ttl.into(),
            decode,
            false,
            (Some(&not_found), None),
            || {
                let found: Option<Bytes> = load()
                    .map_err(|e| CacheError::Load(Arc::new(e)))?
                    .map(Into::into);
                Ok((found.clone(), found))
            },
        )
    }

    /// The engine under every read-through call: `decode` turns stored
    /// bytes into a `T` (an error fails the call unless
    /// `miss_on_undecodable`), `compute` makes a `T` and its bytes.
    pub(crate) fn read_through<T, E>(
        &self,
        key: &str,
        ttl: Ttl,
        decode: Decode<'_, T, E>,
        miss_on_undecodable: bool,
        compute: impl FnOnce() -> Result<(T, Bytes), CacheError<E>>,
    ) -> Result<T, CacheError<E>>
    where
        E: Send + Sync + 'static,
    {
        self.read_entry(key, ttl, decode, miss_on_undecodable, (None, None), || {
            compute().map(|(value, bytes)| (value, Some(bytes)))
        })
    }

    /// [`read_through`](Self::read_through) for loaders that may find
    /// nothing: `compute` gives `None` bytes for "not found", remembered
    /// (with negative caching on) as a marker; `remembered` is what a
    /// remembered miss reads as.
    fn read_entry<T, E>(
        &self,
        key: &str,
        ttl: Ttl,
        decode: Decode<'_, T, E>,
        miss_on_undecodable: bool,
        (remembered, ahead): (Option<&dyn Fn() -> T>, Option<Ahead<'_>>),
        compute: impl FnOnce() -> Result<(T, Option<Bytes>), CacheError<E>>,
    ) -> Result<T, CacheError<E>>
    where
        E: Send + Sync + 'static,
    {
        // A TTL the store would refuse is a bug: fail before computing.
        ttl.wire_seconds()?;
        let mut refresh = false;
        if let Some(stored) = self.shared.store.peek(key) {
            let entry = self.open(&stored);
            if self.due(&entry) {
                refresh = true;
            } else {
                match self.hit(&entry, decode, remembered) {
                    Some(Ok(value)) => {
                        bump(&self.shared.counters.hits);
                        if let Some(ahead) = ahead {
                            ahead(&entry, &stored);
                        }
                        return Ok(value);
                    }
                    Some(Err(error)) if !miss_on_undecodable => return Err(error),
                    _ => {}
                }
            }
        }
        let counters = &self.shared.counters;
        let waited = || bump(&counters.coalesced_waits);
        match self.shared.flights.lead_or_wait(key, self.timeout, waited) {
            Joined::Lead(lead) => {
                let reading = Reading {
                    decode,
                    miss_on_undecodable,
                    remembered,
                    ahead,
                };
                self.lead(lead, key, ttl, (&reading, refresh), compute)
            }
            Joined::Value(stored) => {
                let entry = self.open(&stored);
                match self.hit(&entry, decode, remembered) {
                    Some(outcome) => outcome,
                    // A remembered miss, for a caller that needs a value:
                    // it loads for itself.
                    None => self.read_entry(
                        key,
                        ttl,
                        decode,
                        miss_on_undecodable,
                        (None, None),
                        compute,
                    ),
                }
            }
            Joined::Missing => match remembered {
                Some(remembered) => Ok(remembered()),
                None => {
                    self.read_entry(key, ttl, decode, miss_on_undecodable, (None, None), compute)
                }
            },
            Joined::Failed(error) => Err(error),
        }
    }

    /// An entry read as a hit: its value decoded, or `remembered` for a
    /// remembered miss; `None` when this caller cannot use it (a
    /// remembered miss without `remembered`).
    fn hit<T, E>(
        &self,
        entry: &fresh::Entry,
        decode: Decode<'_, T, E>,
        remembered: Option<&dyn Fn() -> T>,
    ) -> Option<Result<T, CacheError<E>>> {
        match &entry.value {
            Some(value) => Some(decode(value)),
            None => remembered.map(|remembered| Ok(remembered())),
        }
    }

    fn lead<T, E>(
        &self,
        lead: Lead<'_>,
        key: &str,
        ttl: Ttl,
        (reading, refresh): (&Reading<'_, T, E>, bool),
        compute: impl FnOnce() -> Result<(T, Option<Bytes>), CacheError<E>>,
    ) -> Result<T, CacheError<E>>
    where
        E: Send + Sync + 'static,
    {
        let shared = &*self.shared;
        let counters = &shared.counters;
        let mut store_down = false;
        // A reader that drew an early expiry recomputes without asking.
        let found = if refresh {
            Ok(None)
        } else {
            shared.store.get(key)
        };
        match found {
            Ok(Some(stored)) => {
                let entry = self.open(&stored);
                if !self.due(&entry) {
                    match self.hit(&entry, reading.decode, reading.remembered) {
                        Some(Ok(value)) => {
                            bump(&counters.hits);
                            if let Some(ahead) = reading.ahead {
                                ahead(&entry, &stored);
                            }
                            lead.publish(Outcome::Value(stored));
                            return Ok(value);
                        }
                        Some(Err(error)) if !reading.miss_on_undecodable => {
                            // Waiters decode for themselves (they may want
                            // another type); this caller's type does not fit.
                            lead.publish(Outcome::Value(stored));
                            return Err(error);
                        }
                        _ => {}
                    }
                }
            }
            Ok(None) => {}
            Err(error) if shared.fail_open && is_outage(&error) => {
                bump(&counters.store_failures);
                store_down = true;
            }
            Err(error) => return lead.fail(CacheError::Store(error)),
        }
        // Across processes, one fill per key: ask for the key's lease.
        let mut lease = None;
        // A store that takes no conditional writes (a cluster with R > 1)
        // has no leases: single flight alone.
        let leases = shared.leases.filter(|_| shared.store.conditional_writes());
        if let (Some(lease_ttl), false) = (leases, store_down) {
            let now = std::time::Instant::now();
            let deadline = now.checked_add(self.timeout).unwrap_or(now + YEAR);
            let filled = |stored: &Bytes| {
                let entry = self.open(stored);
                !self.due(&entry) && (entry.value.is_some() || reading.remembered.is_some())
            };
            match lease::ask(&shared.store, key, lease_ttl, deadline, &filled) {
                Ok(Asked::Held(held)) => lease = Some(held),
                Ok(Asked::Filled(stored)) => {
                    let entry = self.open(&stored);
                    if let Some(Ok(value)) = self.hit(&entry, reading.decode, reading.remembered) {
                        bump(&counters.hits);
                        lead.publish(Outcome::Value(stored));
                        return Ok(value);
                    }
                }
                Ok(Asked::TimedOut) => {
                    return lead.fail(CacheError::WaitTimeout {
                        key: key.to_owned(),
                        waited: self.timeout,
                    })
                }
                Err(error) if shared.fail_open && is_outage(&error) => {
                    bump(&counters.store_failures);
                    store_down = true;
                }
                Err(error) => return lead.fail(CacheError::Store(error)),
            }
        }
        bump(&counters.misses);
        bump(&counters.loads);
        let started = std::time::Instant::now();
        let (value, bytes) = match compute() {
            Ok(computed) => computed,
            Err(error) => {
                bump(&counters.load_errors);
                // Another process may fill at once, not a lease TTL later.
                if let Some(lease) = lease {
                    lease.release(&shared.store);
                }
                return lead.fail(error);
            }
        };
        let remember = match (&bytes, shared.fresh.misses_for) {
            (Some(_), _) => Some(ttl),
            (None, Some(misses_for)) => Some(Ttl::After(misses_for)),
            (None, None) => None,
        };
        let Some(ttl) = remember else {
            // Not found, and misses are not remembered: nothing to store.
            if let Some(lease) = lease {
                lease.release(&shared.store);
            }
            lead.publish(Outcome::Missing);
            return Ok(value);
        };
        let (stored, ttl) = self.seal(bytes.as_deref(), started.elapsed(), ttl);
        // A lease voided meanwhile (the key was deleted) means this fill
        // began before a write that must win: it is not stored.
        let voided = lease
            .as_ref()
            .is_some_and(|lease| !lease.still_held(&shared.store));
        // With the store just found down, writing would only spend another
        // deadline on it.
        if !store_down && !voided {
            match shared.store.set_with_ttl(key, &stored, ttl) {
                Ok(()) => {}
                Err(error) if shared.fail_open && is_outage(&error) => {
                    bump(&counters.store_failures);
                }
                Err(error) => return lead.fail(CacheError::Store(error)),
            }
        }
        if let Some(lease) = lease.filter(|_| !voided) {
            lease.release(&shared.store);
        }
        lead.publish(Outcome::Value(stored));
        Ok(value)
    }
}

impl<S: CacheStore + 'static> ReadThrough<S> {
    /// [`get_with`](Self::get_with) with refresh-ahead (see
    /// [`ReadThroughBuilder::refresh_after`]): a hit on an entry older
    /// than `refresh_after` returns it at once and hands `load` to the
    /// layer's refresh threads, which store what it returns. On a miss,
    /// `load` runs here, as for `get_with`. Without `refresh_after` it is
    /// `get_with`.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::builder(client)
    ///     .refresh_after(Duration::from_secs(30))
    ///     .build();
    /// let price = cache.get_with_refresh("price:7", Duration::from_secs(300), || "9.99")?;
    /// assert_eq!(&price[..], b"9.99");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_with_refresh<V>(
        &self,
        key: &str,
        ttl: impl Into<Ttl>,
        load: impl FnOnce() -> V + Send + 'static,
    ) -> Result<Bytes, CacheError>
    where
        V: Into<Bytes>,
    {
        self.try_get_with_refresh(key, ttl, move || Ok::<V, std::convert::Infallible>(load()))
    }

    /// [`get_with_refresh`](Self::get_with_refresh) with a loader that can
    /// fail: on a miss its error reaches the caller as
    /// [`CacheError::Load`]; in a background refresh it is counted in
    /// [`CacheStats::refresh_failures`] and the old value stays.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::ReadThrough;
    ///
    /// let cache = ReadThrough::builder(client).refresh_after(Duration::from_secs(30)).build();
    /// let ttl = Duration::from_secs(300);
    /// let rate = cache.try_get_with_refresh("rate", ttl, || "1.08".parse::<f64>().map(|r| r.to_string()))?;
    /// assert_eq!(&rate[..], b"1.08");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get_with_refresh<V, E, F>(
        &self,
        key: &str,
        ttl: impl Into<Ttl>,
        load: F,
    ) -> Result<Bytes, CacheError<E>>
    where
        V: Into<Bytes>,
        E: Send + Sync + 'static,
        F: FnOnce() -> Result<V, E> + Send + 'static,
    {
        let ttl = ttl.into();
        // The loader runs once: here on a miss, or in a refresh.
        let load = Mutex::new(Some(load));
        let take = || load.lock().unwrap_or_else(PoisonError::into_inner).take();
        let ahead = |entry: &fresh::Entry, seen: &Bytes| {
            self.refresh_if_old(key, ttl, (entry, seen), &take)
        };
        let decode: Decode<'_, Bytes, E> = &|bytes| Ok(bytes.clone());
        self.read_entry(key, ttl, decode, false, (None, Some(&ahead)), || {
            let load = take().ok_or(CacheError::Reentrant {
                key: key.to_owned(),
            })?;
            let value: Bytes = load().map_err(|e| CacheError::Load(Arc::new(e)))?.into();
            Ok((value.clone(), Some(value)))
        })
    }

    /// Hands a refresh of `key` to the refresh threads when `entry` is
    /// older than `refresh_after`. The refresh replaces exactly the bytes
    /// `seen` (a compare-and-set): a write or delete that lands meanwhile
    /// wins over it. A store without conditional writes (a cluster with
    /// R > 1, see [`CacheStore::conditional_writes`]) is read just before
    /// a plain set instead, which leaves a window of one round trip.
    fn refresh_if_old<V, E, F>(
        &self,
        key: &str,
        ttl: Ttl,
        (entry, seen): (&fresh::Entry, &Bytes),
        take: &dyn Fn() -> Option<F>,
    ) where
        V: Into<Bytes>,
        F: FnOnce() -> Result<V, E> + Send + 'static,
    {
        let shared = &self.shared;
        let (Some(after), Some(refresher), Some(age)) =
            (shared.fresh.refresh_after, &shared.refresher, &entry.age)
        else {
            return;
        };
        if age.elapsed() < after {
            return;
        }
        let Some(load) = take() else {
            return;
        };
        let (owner, owned_key, seen) = (Arc::clone(shared), key.to_owned(), seen.clone());
        let refresh = move || {
            let counters = &owner.counters;
            let conditional = owner.store.conditional_writes();
            // With leases, one process refreshes a key: one that finds the
            // lease taken leaves the refresh to its holder.
            let lease = match owner.leases.filter(|_| conditional) {
                None => None,
                Some(lease_ttl) => match lease::try_take(&owner.store, &owned_key, lease_ttl) {
                    Ok(Some(lease)) => Some(lease),
                    Ok(None) => {
                        bump(&counters.refreshes_skipped);
                        return;
                    }
                    Err(_) => {
                        bump(&counters.refresh_failures);
                        return;
                    }
                },
            };
            let held = lease.is_some();
            let give_back = || {
                if let Some(lease) = lease {
                    lease.release(&owner.store);
                }
            };
            // Whether the entry is still the one this refresh began from.
            let unchanged = || matches!(owner.store.get(&owned_key), Ok(Some(now)) if now == seen);
            // A holder that finished just before this process took the
            // lease has replaced the entry already: nothing to refresh.
            if held && !unchanged() {
                bump(&counters.refreshes_skipped);
                give_back();
                return;
            }
            let started = std::time::Instant::now();
            let Ok(value) = load() else {
                bump(&counters.refresh_failures);
                give_back();
                return;
            };
            let value: Bytes = value.into();
            let (stored, ttl) = owner.fresh.seal(Some(&value), started.elapsed(), ttl);
            let written = if conditional {
                owner
                    .store
                    .compare_and_set_with_ttl(&owned_key, &seen, &stored, ttl)
                    .map(|outcome| outcome == CasOutcome::Stored)
            } else if unchanged() {
                // No compare-and-set (a cluster with R > 1): a read just
                // before a plain set; a write landing between the two can
                // still be overwritten (one round trip, as for a fill).
                owner
                    .store
                    .set_with_ttl(&owned_key, &stored, ttl)
                    .map(|()| true)
            } else {
                Ok(false)
            };
            match written {
                Ok(true) => bump(&counters.refreshes),
                // Written or deleted meanwhile: that write stands.
                Ok(false) => {}
                Err(_) => bump(&counters.refresh_failures),
            }
            give_back();
        };
        if refresher.start_one(key, refresh) == Err(NotStarted::QueueFull) {
            bump(&shared.counters.refreshes_skipped);
        }
    }
}

/// A read-through layer is itself a store: reads count in its statistics
/// and, with fail-open, an outage reads as a miss; writes go to the store
/// below as they are. So a layer stacks on a layer, and a program taking
/// `&impl CacheStore` takes it too.
impl<S: CacheStore> CacheStore for ReadThrough<S> {
    fn get(&self, key: &str) -> crate::Result<Option<Bytes>> {
        ReadThrough::get(self, key)
    }

    fn get_many(&self, keys: &[&str]) -> crate::Result<Vec<ItemResult<Option<Bytes>>>> {
        let items = match self.shared.store.get_many(keys) {
            Ok(items) => items,
            Err(error) if self.shared.fail_open && is_outage(&error) => keys
                .iter()
                .map(|key| ItemResult::new(key, Err(error.clone())))
                .collect(),
            Err(error) => return Err(error),
        };
        Ok(items
            .into_iter()
            .map(|item| {
                let opened = item
                    .result
                    .map(|stored| stored.and_then(|stored| self.open(&stored).value));
                ItemResult {
                    result: self.count_read(opened),
                    key: item.key,
                }
            })
            .collect())
    }

    /// Written as the layer writes (jittered, and in the envelope when
    /// the layer keeps one), so its reads see it as they see their own.
    fn set_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> crate::Result<()> {
        ReadThrough::set_with_ttl(self, key, value, ttl)
    }

    fn peek(&self, key: &str) -> Option<Bytes> {
        let stored = self.shared.store.peek(key)?;
        self.open(&stored).value
    }

    fn delete(&self, key: &str) -> crate::Result<()> {
        ReadThrough::delete(self, key)
    }

    crate::store::delegate_store!(self => self.shared.store;
        default_ttl, set_many_with_ttl, delete_many,
        set_if_absent_with_ttl, compare_and_set_with_ttl, touch, get_many_latest,
        set_everywhere, set_if_absent_everywhere, conditional_writes,
    );
}
