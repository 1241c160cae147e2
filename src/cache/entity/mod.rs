//! Caching in production: use cases keyed by entities, per-use-case
//! settings at run time, an enable scope, entity-scoped invalidation,
//! metrics, fail-open.
//!
//! The facade is here; [`builder`] holds its settings, [`tokens`] the
//! generations this process knows, [`lookup`] the engine a use case's call
//! runs through. The use case handle lives with its settings, in
//! `cache::use_case`.

mod builder;
mod lookup;
mod tokens;

use std::any::type_name;
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::flight::Flights;
use super::invalidation::{generation_key, GLOBAL_GENERATION_KEY};
use super::metrics::{total, Meter, Names};
use super::near::LocalCopies;
use super::use_case::{ConfigProvider, UseCase};
use super::{Json, UseCaseStats};
use crate::CacheStore;
use crate::Result;

pub use builder::{EntityCacheBuilder, DEFAULT_GLOBAL_GENERATION_MAX_AGE};
use tokens::Tokens;

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
/// "Stored format" below). A read fetches the entry and its entity's token
/// in one `MultiGet`; [`invalidate`](Self::invalidate) replaces the
/// entity's token with one `Set`, whatever the number of its entries. The
/// global token of [`flush_all`](Self::flush_all) is read with them once
/// per [`global_generation_max_age`](EntityCacheBuilder::global_generation_max_age)
/// (1 s by default) and reused in between.
///
/// An entity's entries and its token share a [hash tag](crate::hash_tag),
/// so over a [`Cluster`](crate::cluster::Cluster) they live on the same
/// servers: a tracked read is one call to the entity's server (with
/// replicas, to its R servers), and no server is on every read's path.
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
///   once, through a global token (the server has no FLUSH): at once in
///   the flushing process, and in every other process within its
///   [`global_generation_max_age`](EntityCacheBuilder::global_generation_max_age)
///   after `flush_all` returned (1 s by default; zero makes it at once, at
///   the cost of reading the global token with every entry). Likewise a
///   global token the server lost is noticed within that time.
///
/// # Stored format
///
/// Keys: an entity's tag is `<len>:<key type><id>` (length in bytes), or
/// `#` and its SHA-256 in hex when over 64 characters or holding a brace.
/// An entry is `c:{<tag>}<len>:<use case><arguments>` (arguments as
/// postcard in unpadded URL-safe base64), or `c:{<tag>}#` and the SHA-256
/// of that when over 180 characters; an entity's generation is
/// `g:{<tag>}`, the global generation `g:*`. A generation is 16 hex digits, followed by `~` and Unix
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
/// reach the caller ([`CacheError::Load`](crate::cache::CacheError::Load)).
/// `invalidate` and `flush_all` do fail, because the caller must know that
/// they did not happen.
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
    pub(in crate::cache) inner: Arc<Inner<S>>,
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
            .field("tracking", &self.inner.tokens.tracking())
            .field("generation_ttl", &self.inner.tokens.ttl())
            .field("metrics", &self.inner.emit_metrics)
            // Calls that passed straight through because their thread had
            // no `enable()` scope: the usual mistake, visible here.
            .field("calls_outside_enabled_scope", &outside_scope)
            .finish_non_exhaustive()
    }
}

/// What every clone of an [`EntityCache`] and every use case made from it
/// share.
pub(in crate::cache) struct Inner<S> {
    store: S,
    provider: Arc<dyn ConfigProvider>,
    wait_timeout: Duration,
    emit_metrics: bool,
    names: Names,
    flights: Flights,
    /// The local layer, holding entries as the remote one does (in their
    /// envelopes); this process's invalidations and flushes count as its
    /// writes, so a read that raced one does not record what it read.
    local: LocalCopies,
    tokens: Tokens,
    meters: Mutex<Vec<Arc<Meter>>>,
    invalidations: AtomicU64,
    flushes: AtomicU64,
    /// Set at the first call outside an enabled scope, which debug builds
    /// (and the `tracing` feature) report once.
    warned_outside_scope: AtomicBool,
}

impl<S: CacheStore> EntityCache<S> {
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
        UseCase::new(self.clone(), name, key_type, function, meter)
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
        inner.tokens.check_tracking("invalidate")?;
        let generation = generation_key(key_type, &id.to_string());
        let token = inner.tokens.replace(&inner.store, &generation, buffer)?;
        inner.local.written();
        inner.tokens.know(generation, token);
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
        inner.tokens.check_tracking("flush_all")?;
        let token = inner
            .tokens
            .replace(&inner.store, GLOBAL_GENERATION_KEY, buffer)?;
        inner.local.flush();
        inner.tokens.saw_global(&token, std::time::Instant::now());
        inner.tokens.know(GLOBAL_GENERATION_KEY.to_owned(), token);
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

impl<S> Inner<S> {
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
             reported once, counted in local_stats().disabled_scope"
        );
        #[cfg(feature = "tracing")]
        tracing::warn!(
            use_case,
            "tiny-cache: use case called outside an enabled scope: passed through uncached"
        );
        let _ = use_case;
    }
}
