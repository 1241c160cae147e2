//! The settings of an [`EntityCache`] and their defaults.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{EntityCache, Inner, Tokens};
use crate::cache::flight::Flights;
use crate::cache::metrics::{check_prefix, Names, DEFAULT_CACHE_METRICS_PREFIX};
use crate::cache::near::{Capacity, LocalCopies};
use crate::cache::use_case::{ConfigProvider, UseCaseConfig, UseCaseInfo};
use crate::cache::{NearPolicy, DEFAULT_NEAR_MAX_ENTRIES};
use crate::CacheStore;
use crate::{Result, Ttl, DEFAULT_TIMEOUT};

/// How long a process reuses the global generation it read, by default:
/// see [`EntityCacheBuilder::global_generation_max_age`].
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::cache::DEFAULT_GLOBAL_GENERATION_MAX_AGE;
///
/// assert_eq!(DEFAULT_GLOBAL_GENERATION_MAX_AGE, Duration::from_secs(1));
/// ```
pub const DEFAULT_GLOBAL_GENERATION_MAX_AGE: Duration = Duration::from_secs(1);

/// Settings of an [`EntityCache`], with their defaults.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::time::Duration;
/// use tiny_cache_client::cache::EntityCache;
///
/// let cache = EntityCache::builder(client)
///     .local_max_entries(50_000)
///     .wait_timeout(Duration::from_secs(2))
///     .metrics_prefix("shop")
///     .build()?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EntityCacheBuilder<S> {
    store: S,
    provider: Arc<dyn ConfigProvider>,
    tracking: bool,
    generation_ttl: Ttl,
    global_generation_max_age: Duration,
    wait_timeout: Duration,
    local_max_entries: u64,
    metrics: bool,
    prefix: String,
}

impl<S> std::fmt::Debug for EntityCacheBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityCacheBuilder")
            .field("tracking", &self.tracking)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<S: CacheStore> EntityCacheBuilder<S> {
    /// Where use cases' settings come from, asked on every call. Default:
    /// [`UseCaseConfig::default`] for every use case (the remote layer,
    /// five minutes, no local layer).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::{EntityCache, UseCaseConfig, UseCaseInfo};
    ///
    /// let cache = EntityCache::builder(client)
    ///     .config(|info: &UseCaseInfo<'_>| {
    ///         (info.key_type != "session").then(UseCaseConfig::default)
    ///     })
    ///     .build()?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn config(mut self, provider: impl ConfigProvider + 'static) -> Self {
        self.provider = Arc::new(provider);
        self
    }

    /// Whether entries carry generations (default: on). Off, a read is a
    /// plain `Get` instead of a three-key `MultiGet`, and
    /// [`invalidate`](EntityCache::invalidate) and
    /// [`flush_all`](EntityCache::flush_all) fail: for use cases that only
    /// ever expire. Every process sharing entries must agree.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client)
    ///     .invalidation_tracking(false)
    ///     .build()?;
    /// assert!(cache.invalidate("user_id", &1, std::time::Duration::ZERO).is_err());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn invalidation_tracking(mut self, on: bool) -> Self {
        self.tracking = on;
        self
    }

    /// How long a generation lives on the server (default: never expires;
    /// the server's LRU may still evict it). A lost generation makes its
    /// entity's entries stale, never fresh: a short one costs misses only.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client)
    ///     .generation_ttl(Duration::from_secs(86_400))
    ///     .build()?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn generation_ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.generation_ttl = ttl.into();
        self
    }

    /// How long this process reuses the global generation (the one
    /// [`flush_all`](EntityCache::flush_all) replaces) before reading it
    /// again with an entry. Default: [`DEFAULT_GLOBAL_GENERATION_MAX_AGE`]
    /// (1 s).
    ///
    /// Within that time a read fetches only the entry and its entity's
    /// generation, which share a server on a `Cluster`: one call to one
    /// server, and no server that every read of the fleet must reach. The
    /// price: another process's `flush_all` reaches this process's reads
    /// up to this long after it returned (this process's own, at once).
    /// `Duration::ZERO` reads the global generation with every entry, as
    /// a single server makes cheap.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client)
    ///     .global_generation_max_age(Duration::ZERO) // flushes seen at once
    ///     .build()?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn global_generation_max_age(mut self, max_age: Duration) -> Self {
        self.global_generation_max_age = max_age;
        self
    }

    crate::setters::setters! {
        /// How long a call waits for another thread computing the same entry
        /// (single flight) before computing it itself. Default:
        /// [`DEFAULT_TIMEOUT`] (30 s).
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// let cache = tiny_cache_client::cache::EntityCache::builder(client)
        ///     .wait_timeout(std::time::Duration::from_millis(500))
        ///     .build()?;
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        wait_timeout(timeout: Duration) => wait_timeout;

        /// Bound of the local layer in entries (default
        /// [`DEFAULT_NEAR_MAX_ENTRIES`]).
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// let cache = tiny_cache_client::cache::EntityCache::builder(client)
        ///     .local_max_entries(1_000)
        ///     .build()?;
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        local_max_entries(entries: u64) => local_max_entries;

        /// Whether use cases emit through the `metrics` facade (default: on
        /// with the `metrics` feature; without it there is nothing to emit).
        /// The [`UseCaseStats`](crate::cache::UseCaseStats) counters run either way.
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// let cache = tiny_cache_client::cache::EntityCache::builder(client).metrics(false).build()?;
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        metrics(on: bool) => metrics;
    }

    /// The first part of every metric name (default
    /// [`DEFAULT_CACHE_METRICS_PREFIX`]): `{prefix}_cache_requests_total`
    /// and so on. Must match `[a-zA-Z_][a-zA-Z0-9_]*`, checked by
    /// [`build`](Self::build).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::EntityCache;
    ///
    /// assert!(EntityCache::builder(client.clone()).metrics_prefix("shop").build().is_ok());
    /// assert!(EntityCache::builder(client).metrics_prefix("no-dash").build().is_err());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// The layer; [`Error::Validation`](crate::Error::Validation) for a bad metrics prefix or
    /// generation TTL.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client).build()?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<EntityCache<S>> {
        check_prefix(&self.prefix)?;
        self.generation_ttl.wire_seconds()?;
        Ok(EntityCache {
            inner: Arc::new(Inner {
                store: self.store,
                provider: self.provider,
                wait_timeout: self.wait_timeout,
                emit_metrics: self.metrics && cfg!(feature = "metrics"),
                names: Names::new(&self.prefix),
                flights: Flights::default(),
                local: LocalCopies::new(
                    Capacity::Entries(self.local_max_entries),
                    NearPolicy::TinyLfu,
                ),
                tokens: Tokens::new(
                    self.tracking,
                    self.generation_ttl,
                    self.global_generation_max_age,
                    self.local_max_entries,
                ),
                meters: Mutex::new(Vec::new()),
                invalidations: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
                warned_outside_scope: AtomicBool::new(false),
            }),
        })
    }
}

impl<S: CacheStore> EntityCache<S> {
    /// A builder over `store` (the remote layer).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client).build()?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(store: S) -> EntityCacheBuilder<S> {
        EntityCacheBuilder {
            store,
            provider: Arc::new(|_: &UseCaseInfo<'_>| Some(UseCaseConfig::default())),
            tracking: true,
            generation_ttl: Ttl::Never,
            global_generation_max_age: DEFAULT_GLOBAL_GENERATION_MAX_AGE,
            wait_timeout: DEFAULT_TIMEOUT,
            local_max_entries: DEFAULT_NEAR_MAX_ENTRIES,
            metrics: true,
            prefix: DEFAULT_CACHE_METRICS_PREFIX.to_owned(),
        }
    }
}
