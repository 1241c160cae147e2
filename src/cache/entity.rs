//! Caching in production: use cases keyed by entities, per-use-case
//! settings at run time, an enable scope, entity-scoped invalidation,
//! metrics, fail-open.

use std::any::type_name;
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use moka::Expiry;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::flight::{Flights, Outcome, Role};
use super::invalidation::{
    entry_key, generation_key, new_token, now_ms, Envelope, GLOBAL_GENERATION_KEY,
};
use super::metrics::{check_prefix, total, Meter, Names, DEFAULT_CACHE_METRICS_PREFIX};
use super::scope::is_enabled;
use super::use_case::{ConfigProvider, DisabledReason, LayerConfig, UseCaseConfig, UseCaseInfo};
use super::{CacheError, Codec, Json, UseCaseStats, DEFAULT_NEAR_MAX_ENTRIES};
use crate::CacheStore;
use crate::{Error, Result, Ttl, DEFAULT_TIMEOUT};

/// A caching layer for production code: **use cases** (a function of an
/// entity, cached), **entity-scoped invalidation**, settings per use case
/// changed at run time, caching only inside an [enable scope](super::enable),
/// metrics, and fail-open. GCache's ideas over tiny-cache.
///
/// Made over the remote store (usually the [`Client`](crate::Client)),
/// with an in-process layer (moka) of its own.
///
/// # Use cases
///
/// A use case is a function of an entity (a *key type* such as `user_id`
/// and an *id* such as `12345`) and optional arguments, made with
/// [`use_case`](Self::use_case). Its cache key folds in the use case's
/// name, the key type, the id (by `Display`) and the arguments (by serde,
/// through postcard, in base64): stable across processes and builds, never
/// a `std` hasher. Arguments must serialize the same way every time: use a
/// `BTreeMap`, not a `HashMap`, inside them. Keys longer than 180
/// characters are replaced by their SHA-256.
///
/// Every call asks the layer's [`ConfigProvider`] for the use case's
/// settings: a TTL and a ramp per layer, or `None` to disable it.
///
/// # Invalidation: what is guaranteed
///
/// Every entity has a generation token in the remote cache, and every
/// entry carries the tokens read *before* its value was computed (see
/// "Stored format" below). A read fetches the entry and the tokens in one
/// `MultiGet`; [`invalidate`](Self::invalidate) replaces the entity's token
/// with one `Set`, whatever the number of its entries.
///
/// - **Remote layer:** once `invalidate(key_type, id, buffer)` returns
///   `Ok`, no call of any process, through any use case, is answered by
///   the remote layer with an entry computed before the invalidation
///   started, nor with one whose compute started (read the generation)
///   before that. With a `buffer`, entries whose compute started up to
///   `buffer` after the invalidation are refused too, and none is stored
///   meanwhile: this covers the writer that invalidates before its write
///   is visible to readers (a replica lagging, a transaction committed
///   after the invalidation). The buffer is measured on wall clocks: skew
///   between hosts lengthens or shortens it.
/// - **Local layer, this process:** the same, at once (`invalidate`
///   replaces the token in the process's own record too).
/// - **Local layer, other processes:** an entry another process holds
///   locally can still be served there for at most the use case's local
///   TTL after that process read it, so at most the local TTL after the
///   invalidation returned. Keep local TTLs short.
/// - **Lost generations:** when the server evicts or expires a generation,
///   every entry of that entity reads as stale (a miss), never as fresh.
/// - [`flush_all`](Self::flush_all) does the same for every entity at
///   once, through a global token read with every entry (the server has no
///   FLUSH).
///
/// # Stored format
///
/// Keys: an entry is `c:<len>:<use case><len>:<key type><len>:<id><arguments>`
/// (lengths in bytes, arguments as postcard in unpadded URL-safe base64),
/// an entity's generation `g:<len>:<key type><id>`, the global generation
/// `g:*`; a key over 180 characters becomes `c:#` or `g:#` and its SHA-256
/// in hex. A generation is 16 hex digits, followed by `~` and Unix
/// milliseconds when the invalidation had a buffer. An entry's value is an
/// envelope (format 1):
///
/// | bytes | content |
/// | --- | --- |
/// | 1 | `0xE1`: the format and its version |
/// | 8 | when the generations were read, Unix milliseconds, little endian |
/// | 1 + g | the global generation: its length (0 to 255), then its bytes |
/// | 1 + e | the entity's generation, the same way |
/// | rest | the value, as the use case's codec wrote it |
///
/// Bytes of any other format under an entry key read as a miss.
///
/// # Fail-open
///
/// The cache never fails a call: when the remote store fails, or a value
/// does not encode or decode, the function runs and its value is returned;
/// the failure is counted in `errors`. Only the function's own errors
/// reach the caller ([`CacheError::Load`]). `invalidate` and `flush_all`
/// do fail, because the caller must know that they did not happen.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use tiny_cache_client::cache::{enabled, EntityCache, LayerConfig, UseCaseConfig, UseCaseInfo};
///
/// let cache = EntityCache::builder(client)
///     .config(|_: &UseCaseInfo<'_>| {
///         Some(UseCaseConfig::remote(Duration::from_secs(300))
///             .with_local(LayerConfig::new(Duration::from_secs(2))))
///     })
///     .build()?;
/// let user_name = cache.use_case_named("UserName", "user_id", |id: &u64, _: &()| {
///     Ok::<_, Infallible>(format!("user {id}")) // the database query
/// });
///
/// let name = enabled(|| user_name.get(&12345, &()))?;
/// assert_eq!(name, "user 12345");
/// cache.invalidate("user_id", &12345, Duration::ZERO)?; // every entry of user 12345
/// assert_eq!(user_name.local_stats().misses, 1);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EntityCache<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for EntityCache<S> {
    fn clone(&self) -> Self {
        EntityCache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> std::fmt::Debug for EntityCache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outside_scope: u64 = self
            .inner
            .meters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|meter| meter.snapshot().disabled_scope)
            .sum();
        f.debug_struct("EntityCache")
            .field("tracking", &self.inner.tracking)
            .field("generation_ttl", &self.inner.generation_ttl)
            .field("metrics", &self.inner.emit_metrics)
            // Calls that passed straight through because their thread had
            // no `enable()` scope: the usual mistake, visible here.
            .field("calls_outside_enabled_scope", &outside_scope)
            .finish_non_exhaustive()
    }
}

struct Inner<S> {
    store: S,
    provider: Arc<dyn ConfigProvider>,
    tracking: bool,
    generation_ttl: Ttl,
    wait_timeout: Duration,
    emit_metrics: bool,
    names: Names,
    flights: Flights,
    local: moka::sync::Cache<String, Local>,
    /// The generation tokens this process last knew, by generation key: a
    /// local entry is served only while they match its own.
    known: moka::sync::Cache<String, Bytes>,
    /// Bumped by every invalidation and flush of this process: a read that
    /// saw it move while it was out does not record what it read, which
    /// may predate them.
    epoch: AtomicU64,
    meters: Mutex<Vec<Arc<Meter>>>,
    invalidations: AtomicU64,
    flushes: AtomicU64,
    /// Set at the first call outside an enabled scope, which debug builds
    /// (and the `tracing` feature) report once.
    warned_outside_scope: AtomicBool,
}

/// An entry of the local layer.
#[derive(Clone)]
struct Local {
    value: Bytes,
    global: Bytes,
    entity: Bytes,
    expires_at: Instant,
}

/// Each local entry ends at its own instant, set before the read that
/// fetched it: the local TTL bounds staleness from the read on.
struct LocalExpiry;

impl Expiry<String, Local> for LocalExpiry {
    fn expire_after_create(&self, _: &String, local: &Local, now: Instant) -> Option<Duration> {
        Some(local.expires_at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        local: &Local,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(local.expires_at.saturating_duration_since(now))
    }
}

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
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

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
    pub fn local_max_entries(mut self, entries: u64) -> Self {
        self.local_max_entries = entries;
        self
    }

    /// Whether use cases emit through the `metrics` facade (default: on
    /// with the `metrics` feature; without it there is nothing to emit).
    /// The [`UseCaseStats`] counters run either way.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client).metrics(false).build()?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
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

    /// The layer; [`Error::Validation`] for a bad metrics prefix or
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
        let local = moka::sync::Cache::builder()
            .max_capacity(self.local_max_entries)
            .expire_after(LocalExpiry)
            .build();
        let known = moka::sync::Cache::builder()
            .max_capacity(self.local_max_entries.max(1))
            .build();
        Ok(EntityCache {
            inner: Arc::new(Inner {
                store: self.store,
                provider: self.provider,
                tracking: self.tracking,
                generation_ttl: self.generation_ttl,
                wait_timeout: self.wait_timeout,
                emit_metrics: self.metrics && cfg!(feature = "metrics"),
                names: Names::new(&self.prefix),
                flights: Flights::default(),
                local,
                known,
                epoch: AtomicU64::new(0),
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
            wait_timeout: DEFAULT_TIMEOUT,
            local_max_entries: DEFAULT_NEAR_MAX_ENTRIES,
            metrics: true,
            prefix: DEFAULT_CACHE_METRICS_PREFIX.to_owned(),
        }
    }

    /// The remote store.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client).build()?;
    /// cache.store().ping()?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// A use case of `function`, named by its type
    /// (`std::any::type_name`): `my_crate::users::load_user` for a function
    /// item. Every closure of one function has that function's name plus
    /// `::{{closure}}`, and a name may change with the compiler: name use
    /// cases with [`use_case_named`](Self::use_case_named) in production.
    ///
    /// The value is stored as JSON; [`UseCase::with_codec`] picks another
    /// codec. Metric handles are registered now, with the recorder
    /// installed now.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::convert::Infallible;
    /// use tiny_cache_client::cache::EntityCache;
    ///
    /// fn load_user(id: &u64, _: &()) -> Result<String, Infallible> {
    ///     Ok(format!("user {id}"))
    /// }
    ///
    /// let cache = EntityCache::builder(client).build()?;
    /// let users = cache.use_case("user_id", load_user);
    /// assert!(users.name().ends_with("load_user"));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn use_case<F>(&self, key_type: &str, function: F) -> UseCase<S, Json, F> {
        self.use_case_named(type_name::<F>(), key_type, function)
    }

    /// A use case of `function` named `name`. `function` gets the id and
    /// the arguments (`&()` for none) and returns the value or an error.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::convert::Infallible;
    /// use tiny_cache_client::cache::{enabled, EntityCache};
    ///
    /// let cache = EntityCache::builder(client).build()?;
    /// let posts = cache.use_case_named("UserPosts", "user_id", |id: &u64, page: &(u32, u32)| {
    ///     Ok::<_, Infallible>(vec![format!("post of {id}, page {}", page.0)])
    /// });
    /// assert_eq!(enabled(|| posts.get(&7, &(1, 20)))?, ["post of 7, page 1"]);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn use_case_named<F>(
        &self,
        name: &str,
        key_type: &str,
        function: F,
    ) -> UseCase<S, Json, F> {
        let meter = Arc::new(Meter::new(
            &self.inner.names,
            self.inner.emit_metrics,
            name,
            key_type,
        ));
        self.inner
            .meters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&meter));
        UseCase {
            cache: self.clone(),
            name: name.into(),
            key_type: key_type.into(),
            codec: Json,
            function,
            meter,
        }
    }

    /// Invalidates every entry about one entity, in every use case and for
    /// every argument, with one `Set` (see the type's documentation for the
    /// guarantee). With a non-zero `buffer`, entries computed during the
    /// next `buffer` are refused too, and not stored.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client).build()?;
    /// cache.invalidate("user_id", &12345, Duration::from_millis(500))?;
    /// assert_eq!(cache.local_stats().invalidations, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn invalidate(
        &self,
        key_type: &str,
        id: &(impl Display + ?Sized),
        buffer: Duration,
    ) -> Result<()> {
        let inner = &*self.inner;
        inner.check_tracking("invalidate")?;
        let generation = generation_key(key_type, &id.to_string());
        let token = new_token(buffer);
        // Acknowledged only once every copy has it (every replica of a
        // replicated cluster), so no reader of any copy keeps the old one.
        inner
            .store
            .set_everywhere(&generation, &token, inner.generation_ttl)?;
        inner.epoch.fetch_add(1, Ordering::SeqCst);
        inner.known.insert(generation, token);
        inner.invalidations.fetch_add(1, Ordering::Relaxed);
        inner.names.invalidated(inner.emit_metrics, key_type);
        Ok(())
    }

    /// Invalidates every entry of every entity at once, for tests and
    /// emergencies, with one `Set` of the global generation that every read
    /// fetches (the server has no FLUSH). The entries stay on the server
    /// until their TTLs or its LRU remove them.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client).build()?;
    /// cache.flush_all(Duration::ZERO)?;
    /// assert_eq!(cache.local_stats().flushes, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush_all(&self, buffer: Duration) -> Result<()> {
        let inner = &*self.inner;
        inner.check_tracking("flush_all")?;
        let token = new_token(buffer);
        inner
            .store
            .set_everywhere(GLOBAL_GENERATION_KEY, &token, inner.generation_ttl)?;
        inner.epoch.fetch_add(1, Ordering::SeqCst);
        inner.known.insert(GLOBAL_GENERATION_KEY.to_owned(), token);
        inner.local.invalidate_all();
        inner.flushes.fetch_add(1, Ordering::Relaxed);
        inner.names.flushed(inner.emit_metrics);
        Ok(())
    }

    /// The counters of every use case of this layer, summed, with its
    /// invalidations and flushes.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client).build()?;
    /// assert_eq!(cache.local_stats().requests, 0);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_stats(&self) -> UseCaseStats {
        let snapshots: Vec<UseCaseStats> = self
            .inner
            .meters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|meter| meter.snapshot())
            .collect();
        let mut stats = total(&snapshots);
        stats.invalidations = self.inner.invalidations.load(Ordering::Relaxed);
        stats.flushes = self.inner.flushes.load(Ordering::Relaxed);
        stats
    }
}

impl<S: CacheStore> Inner<S> {
    /// A use case was called on a thread without an enabled scope: safe
    /// (it passes through), but usually a forgotten `enable()`, so the
    /// first time is reported in debug builds and through `tracing`.
    fn outside_scope(&self, use_case: &str) {
        if self.warned_outside_scope.swap(true, Ordering::Relaxed) {
            return;
        }
        #[cfg(debug_assertions)]
        eprintln!(
            "tiny-cache: use case {use_case:?} was called outside an enabled scope and went \
             straight to its function (wrap the request in cache::enable() or enabled(..)); \
             reported once, counted in stats().disabled_scope"
        );
        #[cfg(feature = "tracing")]
        tracing::warn!(
            use_case,
            "tiny-cache: use case called outside an enabled scope: passed through uncached"
        );
        let _ = use_case;
    }

    fn check_tracking(&self, what: &str) -> Result<()> {
        if self.tracking {
            Ok(())
        } else {
            Err(Error::Validation(format!(
                "{what} needs invalidation tracking, which this layer has off"
            )))
        }
    }

    /// The local entry of `key`, if its generations are still the ones
    /// this process knows.
    fn local_hit(&self, key: &str, generation: &str) -> Option<Bytes> {
        let local = self.local.get(key)?;
        if self.tracking {
            if self.known.get(GLOBAL_GENERATION_KEY)? != local.global {
                return None;
            }
            if self.known.get(generation)? != local.entity {
                return None;
            }
        }
        Some(local.value)
    }

    /// The generation this process knows for `key`, made up (a token of
    /// this process alone) when it knows none: for use cases with a local
    /// layer only.
    fn known_or_local(&self, key: &str) -> Bytes {
        self.known
            .get_with(key.to_owned(), || new_token(Duration::ZERO))
    }

    /// Records what a read saw, locally, unless an invalidation of this
    /// process happened since `epoch` (it may have been read before it).
    fn record(
        &self,
        epoch: u64,
        key: &str,
        generation: &str,
        envelope: &Envelope,
        expires_at: Option<Instant>,
    ) {
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if self.tracking {
            self.known
                .insert(GLOBAL_GENERATION_KEY.to_owned(), envelope.global.clone());
            self.known
                .insert(generation.to_owned(), envelope.entity.clone());
        }
        if let Some(expires_at) = expires_at {
            self.local.insert(
                key.to_owned(),
                Local {
                    value: envelope.value.clone(),
                    global: envelope.global.clone(),
                    entity: envelope.entity.clone(),
                    expires_at,
                },
            );
        }
        // An invalidation that slipped in between the check and the
        // inserts recorded its own token; ours must not stay over it.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.known.invalidate(GLOBAL_GENERATION_KEY);
            self.known.invalidate(generation);
            self.local.invalidate(key);
        }
    }

    /// The generation in `current`, or a fresh one stored now when the
    /// server has none; `None` when that fails (the entry is then not
    /// stored).
    fn ensure_generation(&self, key: &str, current: Option<Bytes>) -> Result<Option<Bytes>> {
        if let Some(token) = current {
            return Ok(Some(token));
        }
        let token = new_token(Duration::ZERO);
        if self
            .store
            .set_if_absent_everywhere(key, &token, self.generation_ttl)?
        {
            return Ok(Some(token));
        }
        // Another process made it first: use theirs (the newest copy, where
        // two made one at once on different replicas).
        let mut found = self.store.get_many_latest(&[key], &[true])?;
        found.pop().map(|item| item.result).unwrap_or(Ok(None))
    }
}

/// What one read of the remote layer found.
struct Remote {
    entry: Option<Bytes>,
    entity: Option<Bytes>,
    global: Option<Bytes>,
}

/// A cached function of an entity: see [`EntityCache`]. Cloning is cheap
/// when the function is.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::convert::Infallible;
/// use tiny_cache_client::cache::{enable, EntityCache, Postcard};
///
/// let cache = EntityCache::builder(client).build()?;
/// let score = cache
///     .use_case_named("Score", "player", |id: &str, _: &()| Ok::<_, Infallible>(id.len() as u32))
///     .with_codec(Postcard);
/// let _scope = enable();
/// assert_eq!(score.get("ann", &())?, 3);
/// assert_eq!(score.get("ann", &())?, 3);
/// assert_eq!(score.local_stats().remote_hits, 1);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UseCase<S, C, F> {
    cache: EntityCache<S>,
    name: Arc<str>,
    key_type: Arc<str>,
    codec: C,
    function: F,
    meter: Arc<Meter>,
}

impl<S, C: Clone, F: Clone> Clone for UseCase<S, C, F> {
    fn clone(&self) -> Self {
        UseCase {
            cache: self.cache.clone(),
            name: Arc::clone(&self.name),
            key_type: Arc::clone(&self.key_type),
            codec: self.codec.clone(),
            function: self.function.clone(),
            meter: Arc::clone(&self.meter),
        }
    }
}

impl<S, C: std::fmt::Debug, F> std::fmt::Debug for UseCase<S, C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UseCase")
            .field("name", &self.name)
            .field("key_type", &self.key_type)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<S: CacheStore, C: Codec, F> UseCase<S, C, F> {
    /// The use case's name (a metric label, part of its keys).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client).build()?;
    /// let uc = cache.use_case_named("GetUser", "user_id", |_: &u64, _: &()| Ok::<u8, String>(1));
    /// assert_eq!(uc.name(), "GetUser");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The use case's key type.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client).build()?;
    /// let uc = cache.use_case_named("GetUser", "user_id", |_: &u64, _: &()| Ok::<u8, String>(1));
    /// assert_eq!(uc.key_type(), "user_id");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key_type(&self) -> &str {
        &self.key_type
    }

    /// The same use case storing its values with `codec` (same counters).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::{EntityCache, Postcard};
    /// let cache = EntityCache::builder(client).build()?;
    /// let uc = cache
    ///     .use_case_named("GetUser", "user_id", |_: &u64, _: &()| Ok::<u8, String>(1))
    ///     .with_codec(Postcard);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_codec<C2: Codec>(self, codec: C2) -> UseCase<S, C2, F> {
        UseCase {
            cache: self.cache,
            name: self.name,
            key_type: self.key_type,
            codec,
            function: self.function,
            meter: self.meter,
        }
    }

    /// This use case's counters.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let cache = tiny_cache_client::cache::EntityCache::builder(client).build()?;
    /// let uc = cache.use_case_named("GetUser", "user_id", |_: &u64, _: &()| Ok::<u8, String>(1));
    /// uc.get(&1, &())?; // outside an enable scope: straight to the function
    /// assert_eq!(uc.local_stats().disabled_scope, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_stats(&self) -> UseCaseStats {
        self.meter.snapshot()
    }

    /// The function's value for entity `id` and `arguments`: from the
    /// local layer, else the remote one, else computed (once per entry
    /// across the process's threads) and stored, as the use case's current
    /// settings say. Outside an enable scope, or when the use case is
    /// disabled or the call outside its ramps, the function runs directly.
    /// The cache never fails the call; the function's error comes back as
    /// [`CacheError::Load`].
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::{enabled, CacheError, EntityCache};
    ///
    /// let cache = EntityCache::builder(client).build()?;
    /// let parse = cache.use_case_named("Parse", "text", |text: &str, _: &()| text.parse::<u32>());
    /// assert_eq!(enabled(|| parse.get("12", &()))?, 12);
    /// assert!(matches!(enabled(|| parse.get("x", &())), Err(CacheError::Load(_))));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get<I, A, T, E>(&self, id: &I, arguments: &A) -> std::result::Result<T, CacheError<E>>
    where
        F: Fn(&I, &A) -> std::result::Result<T, E>,
        I: Display + ?Sized,
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        E: Send + Sync + 'static,
    {
        self.meter.request();
        let started = self.meter.timed().then(Instant::now);
        let result = self.lookup(id, arguments);
        if let Some(started) = started {
            self.meter.get_took(started.elapsed());
        }
        result
    }

    /// Runs the function, timed.
    fn run<I, A, T, E>(&self, id: &I, arguments: &A) -> std::result::Result<T, CacheError<E>>
    where
        F: Fn(&I, &A) -> std::result::Result<T, E>,
        I: ?Sized,
        A: ?Sized,
    {
        let started = self.meter.timed().then(Instant::now);
        let result = (self.function)(id, arguments);
        if let Some(started) = started {
            self.meter.function_took(started.elapsed());
        }
        result.map_err(|error| CacheError::Load(Arc::new(error)))
    }

    fn pass_through<I, A, T, E>(
        &self,
        reason: DisabledReason,
        id: &I,
        arguments: &A,
    ) -> std::result::Result<T, CacheError<E>>
    where
        F: Fn(&I, &A) -> std::result::Result<T, E>,
        I: ?Sized,
        A: ?Sized,
    {
        self.meter.disabled(reason);
        self.run(id, arguments)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Option<T> {
        let started = self.meter.timed().then(Instant::now);
        let value = self.codec.decode(bytes);
        if let Some(started) = started {
            self.meter.serialization_took(started.elapsed());
        }
        self.meter.value_size(bytes.len());
        match value {
            Ok(value) => Some(value),
            Err(_) => {
                self.meter.error();
                None
            }
        }
    }

    fn encode<T: Serialize>(&self, value: &T) -> Option<Bytes> {
        let started = self.meter.timed().then(Instant::now);
        let bytes = self.codec.encode(value);
        if let Some(started) = started {
            self.meter.serialization_took(started.elapsed());
        }
        match bytes {
            Ok(bytes) => {
                self.meter.value_size(bytes.len());
                Some(bytes.into())
            }
            Err(_) => {
                self.meter.error();
                None
            }
        }
    }

    fn lookup<I, A, T, E>(&self, id: &I, arguments: &A) -> std::result::Result<T, CacheError<E>>
    where
        F: Fn(&I, &A) -> std::result::Result<T, E>,
        I: Display + ?Sized,
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        E: Send + Sync + 'static,
    {
        let inner = &*self.cache.inner;
        if !is_enabled() {
            inner.outside_scope(&self.name);
            return self.pass_through(DisabledReason::Scope, id, arguments);
        }
        let info = UseCaseInfo {
            name: &self.name,
            key_type: &self.key_type,
        };
        let Some(config) = inner.provider.config(&info) else {
            return self.pass_through(DisabledReason::Config, id, arguments);
        };
        if config.local.is_none() && config.remote.is_none() {
            return self.pass_through(DisabledReason::Config, id, arguments);
        }
        // One draw for both layers: ramps nest.
        let draw = fastrand::u8(0..100);
        let in_ramp = |layer: Option<LayerConfig>| {
            layer.filter(|layer| draw < layer.ramp_percent && !layer.ttl.is_zero())
        };
        let (local, remote) = (in_ramp(config.local), in_ramp(config.remote));
        if local.is_none() && remote.is_none() {
            return self.pass_through(DisabledReason::Ramp, id, arguments);
        }

        let id_text = id.to_string();
        let Ok(encoded_arguments) = postcard::to_stdvec(arguments) else {
            self.meter.error();
            return self.run(id, arguments);
        };
        let key = entry_key(
            &self.name,
            &self.key_type,
            &id_text,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(encoded_arguments),
        );
        let generation = generation_key(&self.key_type, &id_text);

        if local.is_some() {
            if let Some(bytes) = inner.local_hit(&key, &generation) {
                if let Some(value) = self.decode(&bytes) {
                    self.meter.local_hit();
                    return Ok(value);
                }
                inner.local.invalidate(&key);
            }
        }

        // Taken before the read: staleness is bounded from here.
        let epoch = inner.epoch.load(Ordering::SeqCst);
        let read_at_ms = now_ms();
        let local_expires_at = local.map(|layer| Instant::now() + layer.ttl);

        let found = if remote.is_some() {
            match self.read_remote(&key, &generation) {
                Ok(found) => found,
                Err(_) => {
                    // Fail-open: the store is down or refused; the
                    // function answers.
                    self.meter.error();
                    self.meter.miss();
                    return self.run(id, arguments);
                }
            }
        } else if inner.tracking {
            Remote {
                entry: None,
                global: Some(inner.known_or_local(GLOBAL_GENERATION_KEY)),
                entity: Some(inner.known_or_local(&generation)),
            }
        } else {
            Remote {
                entry: None,
                global: Some(Bytes::new()),
                entity: Some(Bytes::new()),
            }
        };

        if let Some(bytes) = &found.entry {
            if let Some(envelope) = Envelope::decode(bytes) {
                let current = envelope.is_current(
                    found.global.as_deref().unwrap_or_default(),
                    found.entity.as_deref().unwrap_or_default(),
                );
                if current {
                    if let Some(value) = self.decode(&envelope.value) {
                        self.meter.remote_hit();
                        if local.is_some() {
                            inner.record(epoch, &key, &generation, &envelope, local_expires_at);
                        }
                        return Ok(value);
                    }
                }
            }
        }

        self.meter.miss();
        let flight = format!(
            "{key}\n{}\n{}",
            String::from_utf8_lossy(found.global.as_deref().unwrap_or_default()),
            String::from_utf8_lossy(found.entity.as_deref().unwrap_or_default()),
        );
        if inner.flights.is_loading_here(&flight) {
            // The function asks for its own entry: computing it again is
            // all that can be done without waiting for ourselves.
            return self.run(id, arguments);
        }
        let wait = match inner.flights.join(&flight) {
            Role::Leader(lead) => {
                let context = Miss {
                    key: &key,
                    generation: &generation,
                    found,
                    remote,
                    epoch,
                    read_at_ms,
                    local_expires_at,
                };
                return self.lead(lead, context, id, arguments);
            }
            Role::Waiter(wait) => wait,
        };
        let now = Instant::now();
        let deadline = now
            .checked_add(inner.wait_timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        match wait.until(deadline) {
            Some(Outcome::Value(bytes)) => match self.decode(&bytes) {
                Some(value) => Ok(value),
                None => self.run(id, arguments),
            },
            Some(Outcome::Failed(shared)) => match shared.downcast_ref::<CacheError<E>>() {
                Some(error) => Err(error.clone()),
                None => self.run(id, arguments),
            },
            // Fail-open: the leader panicked or is too slow.
            Some(Outcome::Panicked) | None => self.run(id, arguments),
        }
    }

    /// The entry and its generations, in one round trip when tracking.
    fn read_remote(&self, key: &str, generation: &str) -> Result<Remote> {
        let inner = &*self.cache.inner;
        if !inner.tracking {
            return Ok(Remote {
                entry: inner.store.get(key)?,
                global: Some(Bytes::new()),
                entity: Some(Bytes::new()),
            });
        }
        // The generations are read so the newest copy wins (every replica
        // of a replicated cluster): one replica that missed an
        // invalidation must not vouch for an entry it made stale.
        let mut found = inner
            .store
            .get_many_latest(
                &[key, generation, GLOBAL_GENERATION_KEY],
                &[false, true, true],
            )?
            .into_iter();
        let mut next = || {
            found
                .next()
                .map(|item| item.result)
                .transpose()
                .map(Option::flatten)
        };
        Ok(Remote {
            entry: next()?,
            entity: next()?,
            global: next()?,
        })
    }

    /// Computes, stores and hands the value to the waiters.
    fn lead<I, A, T, E>(
        &self,
        lead: super::flight::Lead<'_>,
        miss: Miss<'_>,
        id: &I,
        arguments: &A,
    ) -> std::result::Result<T, CacheError<E>>
    where
        F: Fn(&I, &A) -> std::result::Result<T, E>,
        I: ?Sized,
        A: ?Sized,
        T: Serialize,
        E: Send + Sync + 'static,
    {
        let inner = &*self.cache.inner;
        let Remote { global, entity, .. } = miss.found;
        // Entries are never stored under a missing generation: one that
        // the server lost must make them stale, not fresh again.
        let tokens = if inner.tracking && miss.remote.is_some() {
            let ensured = inner
                .ensure_generation(GLOBAL_GENERATION_KEY, global)
                .and_then(|global| {
                    Ok(global.zip(inner.ensure_generation(miss.generation, entity)?))
                });
            ensured.unwrap_or_else(|_| {
                self.meter.error();
                None
            })
        } else {
            global.zip(entity)
        };
        let value = match self.run(id, arguments) {
            Ok(value) => value,
            Err(error) => {
                lead.publish(Outcome::Failed(Arc::new(error.clone())));
                return Err(error);
            }
        };
        let Some(bytes) = self.encode(&value) else {
            // Dropping the lead sends the waiters to compute for themselves.
            drop(lead);
            return Ok(value);
        };
        if let Some((global, entity)) = tokens {
            let envelope = Envelope {
                read_at_ms: miss.read_at_ms,
                global,
                entity,
                value: bytes.clone(),
            };
            // Inside a future buffer the entry would read as stale: store
            // nothing, in either layer.
            if envelope.is_current(&envelope.global, &envelope.entity) {
                if let Some(remote) = miss.remote {
                    if let Some(stored) = envelope.encode() {
                        if inner
                            .store
                            .set_with_ttl(miss.key, &stored, Ttl::After(remote.ttl))
                            .is_err()
                        {
                            self.meter.error();
                        }
                    }
                }
                if miss.local_expires_at.is_some() {
                    inner.record(
                        miss.epoch,
                        miss.key,
                        miss.generation,
                        &envelope,
                        miss.local_expires_at,
                    );
                }
            }
        }
        lead.publish(Outcome::Value(bytes));
        Ok(value)
    }
}

/// What the leader of a miss needs from the lookup.
struct Miss<'a> {
    key: &'a str,
    generation: &'a str,
    found: Remote,
    remote: Option<LayerConfig>,
    epoch: u64,
    read_at_ms: u64,
    local_expires_at: Option<Instant>,
}
