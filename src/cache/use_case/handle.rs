//! The use case handle: a function of an entity, cached by an
//! [`EntityCache`].

use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::config::UseCaseInfo;
use crate::cache::metrics::Meter;
use crate::cache::{CacheError, Codec, EntityCache, UseCaseStats};
use crate::CacheStore;

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
        self.timed(
            || self.cache.inner.lookup(self, id, arguments),
            Meter::get_took,
        )
    }

    /// `work`'s result; its duration goes to `took` when the meter times
    /// (reading the clock costs, so only then).
    fn timed<R>(&self, work: impl FnOnce() -> R, took: fn(&Meter, Duration)) -> R {
        let started = self.meter.timed().then(Instant::now);
        let result = work();
        if let Some(started) = started {
            took(&self.meter, started.elapsed());
        }
        result
    }

    /// What the config provider is asked about.
    pub(in crate::cache) fn info(&self) -> UseCaseInfo<'_> {
        UseCaseInfo {
            name: &self.name,
            key_type: &self.key_type,
        }
    }

    pub(in crate::cache) fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Runs the function, timed.
    pub(in crate::cache) fn run<I, A, T, E>(
        &self,
        id: &I,
        arguments: &A,
    ) -> std::result::Result<T, CacheError<E>>
    where
        F: Fn(&I, &A) -> std::result::Result<T, E>,
        I: ?Sized,
        A: ?Sized,
    {
        let result = self.timed(|| (self.function)(id, arguments), Meter::function_took);
        result.map_err(|error| CacheError::Load(Arc::new(error)))
    }

    pub(in crate::cache) fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Option<T> {
        let value = self.timed(|| self.codec.decode(bytes), Meter::serialization_took);
        self.meter.value_size(bytes.len());
        match value {
            Ok(value) => Some(value),
            Err(_) => {
                self.meter.error();
                None
            }
        }
    }

    pub(in crate::cache) fn encode<T: Serialize>(&self, value: &T) -> Option<Bytes> {
        let bytes = self.timed(|| self.codec.encode(value), Meter::serialization_took);
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
}

impl<S, F> UseCase<S, crate::cache::Json, F> {
    /// A use case of `cache` storing its values as JSON, counted by `meter`.
    pub(in crate::cache) fn new(
        cache: EntityCache<S>,
        name: &str,
        key_type: &str,
        function: F,
        meter: Arc<Meter>,
    ) -> Self {
        UseCase {
            cache,
            name: name.into(),
            key_type: key_type.into(),
            codec: crate::cache::Json,
            function,
            meter,
        }
    }
}
