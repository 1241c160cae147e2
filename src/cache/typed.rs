//! Typed values: any serde type in and out of the cache through a codec.

use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::depth_limit;
use super::memo::Memo;
use super::{CacheError, CacheStats, ReadThrough};
use crate::CacheStore;
use crate::Ttl;

/// What a codec's encoder or decoder can fail with.
pub type CodecError = Box<dyn std::error::Error + Send + Sync>;

/// A serialization format for cached values.
///
/// [`Json`] and [`Postcard`] come with the crate; implement it for any
/// other serde format. A worked example, MessagePack through `rmp-serde`:
///
/// ```
/// use serde::{de::DeserializeOwned, Serialize};
/// use tiny_cache_client::cache::{Codec, CodecError};
///
/// /// MessagePack, with struct fields by name so that adding a field
/// /// later still reads old entries.
/// #[derive(Debug, Clone, Copy, Default)]
/// struct MessagePack;
///
/// impl Codec for MessagePack {
///     fn name(&self) -> &'static str {
///         "messagepack"
///     }
///     fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
///         Ok(rmp_serde::to_vec_named(value)?)
///     }
///     fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
///         Ok(rmp_serde::from_slice(bytes)?)
///     }
/// }
///
/// let bytes = MessagePack.encode(&(1u8, "one"))?;
/// assert_eq!(MessagePack.decode::<(u8, String)>(&bytes)?, (1, "one".to_owned()));
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::time::Duration;
/// use tiny_cache_client::cache::{ReadThrough, TypedCache};
///
/// let cache = TypedCache::new(ReadThrough::new(client), MessagePack);
/// cache.set_with_ttl("pair", &(2u8, "two"), Duration::from_secs(60))?;
/// assert_eq!(cache.get::<(u8, String)>("pair")?, Some((2, "two".to_owned())));
/// # }
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub trait Codec: Clone + Send + Sync + 'static {
    /// The format's name, used in errors (`"json"`).
    fn name(&self) -> &'static str;
    /// `value` as bytes.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;
    /// A `T` from bytes this codec wrote.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// JSON through `serde_json`: readable by every other language's client,
/// tolerant of added fields.
///
/// ```
/// use tiny_cache_client::cache::{Codec, Json};
///
/// assert_eq!(Json.encode(&vec![1, 2])?, b"[1,2]");
/// assert_eq!(Json.decode::<Vec<u8>>(b"[1,2]")?, vec![1, 2]);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

impl Codec for Json {
    fn name(&self) -> &'static str {
        "json"
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        Ok(serde_json::to_vec(value)?)
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// postcard: a compact, stable binary format (varints, no field names).
/// Smaller and faster than JSON; the reading type must match the written
/// one field for field. Values nested deeper than 256 levels (each
/// struct, tuple, sequence, map, enum and option counts one) do not
/// decode, so that corrupt bytes read as a recursive type cannot overflow
/// the stack.
///
/// ```
/// use tiny_cache_client::cache::{Codec, Postcard};
///
/// let bytes = Postcard.encode(&(300u32, true))?;
/// assert_eq!(bytes.len(), 3); // a two-byte varint and a one-byte bool
/// assert_eq!(Postcard.decode::<(u32, bool)>(&bytes)?, (300, true));
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Postcard;

impl Codec for Postcard {
    fn name(&self) -> &'static str {
        "postcard"
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        Ok(postcard::to_stdvec(value)?)
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        // postcard follows any nesting: the limit keeps a recursive type
        // read from corrupt bytes from overflowing the stack.
        let mut deserializer = postcard::Deserializer::from_bytes(bytes);
        let value = depth_limit::deserialize(&mut deserializer)?;
        let rest = deserializer.finalize()?;
        // Trailing bytes mean the stored value is of another type.
        if !rest.is_empty() {
            return Err(format!("{} trailing bytes after the value", rest.len()).into());
        }
        Ok(value)
    }
}

/// A [`ReadThrough`] layer that stores typed values through a [`Codec`].
///
/// Stored bytes that do not decode are a [`CacheError::Decode`] naming the
/// key and the codec, never a silent miss; for a schema migration,
/// [`overwrite_undecodable`](Self::overwrite_undecodable) treats them as a
/// miss in read-through, so the new value replaces them. The codec is
/// chosen for the layer and can be changed per call with
/// [`with_codec`](Self::with_codec), which is cheap.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use tiny_cache_client::cache::{Json, ReadThrough, TypedCache};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct User { id: u64, name: String }
///
/// let users = TypedCache::new(ReadThrough::new(client), Json);
/// let user = users.get_with("user:7", Duration::from_secs(300), || {
///     User { id: 7, name: "Ann".into() } // the database query
/// })?;
/// assert_eq!(user.name, "Ann");
/// assert_eq!(users.get::<User>("user:7")?, Some(user));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedCache<S, C> {
    layer: ReadThrough<S>,
    codec: C,
    overwrite_undecodable: bool,
}

impl<S, C: std::fmt::Debug> std::fmt::Debug for TypedCache<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedCache")
            .field("codec", &self.codec)
            .field("overwrite_undecodable", &self.overwrite_undecodable)
            .field("layer", &self.layer)
            .finish()
    }
}

// By hand: a derive would ask `S: Clone`, and the layer is shared.
impl<S, C: Clone> Clone for TypedCache<S, C> {
    fn clone(&self) -> Self {
        TypedCache {
            layer: self.layer.clone(),
            codec: self.codec.clone(),
            overwrite_undecodable: self.overwrite_undecodable,
        }
    }
}

impl<S: CacheStore, C: Codec> TypedCache<S, C> {
    /// Typed access to `layer` through `codec`.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::{Postcard, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Postcard);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(layer: ReadThrough<S>, codec: C) -> Self {
        TypedCache {
            layer,
            codec,
            overwrite_undecodable: false,
        }
    }

    /// The same layer through another codec (for one call, or for good).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{Json, Postcard, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Json);
    /// // A Vec, not an array: serde writes arrays as tuples (no length),
    /// // and postcard, unlike JSON, cannot read one as the other.
    /// cache.with_codec(Postcard).set_with_ttl("compact", &vec![1u32, 2, 3], Duration::from_secs(60))?;
    /// assert_eq!(cache.with_codec(Postcard).get::<Vec<u32>>("compact")?, Some(vec![1, 2, 3]));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_codec<D: Codec>(&self, codec: D) -> TypedCache<S, D> {
        TypedCache {
            layer: self.layer.clone(),
            codec,
            overwrite_undecodable: self.overwrite_undecodable,
        }
    }

    /// Whether read-through treats stored bytes that do not decode as a
    /// miss, computing and overwriting them (default: off, they are a
    /// [`CacheError::Decode`]). Meant for a schema migration; plain
    /// [`get`](Self::get) still reports them.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{Json, ReadThrough, TypedCache};
    ///
    /// let layer = ReadThrough::new(client);
    /// layer.set_with_ttl("count", "not json", Duration::from_secs(60))?;
    /// let cache = TypedCache::new(layer, Json).overwrite_undecodable(true);
    /// assert_eq!(cache.get_with("count", Duration::from_secs(60), || 5u32)?, 5);
    /// assert_eq!(cache.get::<u32>("count")?, Some(5));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn overwrite_undecodable(mut self, enabled: bool) -> Self {
        self.overwrite_undecodable = enabled;
        self
    }

    /// The untyped layer underneath.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::{Json, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Json);
    /// assert_eq!(cache.store().get("raw")?, None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store(&self) -> &ReadThrough<S> {
        &self.layer
    }

    /// The layer's counters (the same as [`ReadThrough::local_stats`]).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::{Json, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Json);
    /// cache.get::<u8>("nothing")?;
    /// assert_eq!(cache.local_stats().misses, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_stats(&self) -> CacheStats {
        self.layer.local_stats()
    }

    fn decode<T: DeserializeOwned, E>(&self, key: &str, bytes: &[u8]) -> Result<T, CacheError<E>> {
        self.codec
            .decode(bytes)
            .map_err(|error| CacheError::Decode {
                key: key.to_owned(),
                codec: self.codec.name(),
                message: error.to_string(),
            })
    }

    fn encode<T: Serialize + ?Sized, E>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<Bytes, CacheError<E>> {
        self.codec
            .encode(value)
            .map(Bytes::from)
            .map_err(|error| CacheError::Encode {
                key: key.to_owned(),
                codec: self.codec.name(),
                message: error.to_string(),
            })
    }

    /// The value of `key` decoded as a `T`, `None` when missing.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{CacheError, Json, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Json);
    /// cache.set_with_ttl("n", &7u32, Duration::from_secs(60))?;
    /// assert_eq!(cache.get::<u32>("n")?, Some(7));
    /// assert!(matches!(cache.get::<String>("n"), Err(CacheError::Decode { codec: "json", .. })));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CacheError> {
        match self.layer.get(key)? {
            Some(bytes) => self.decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key` for the store's default TTL.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::{Json, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Json);
    /// cache.set("n", &7u32)?;
    /// assert_eq!(cache.get::<u32>("n")?, Some(7));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), CacheError> {
        let bytes = self.encode(key, value)?;
        Ok(self.layer.set(key, bytes)?)
    }

    /// Stores `value` under `key` for `ttl`.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::cache::{Json, ReadThrough, TypedCache};
    /// use tiny_cache_client::Ttl;
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Json);
    /// cache.set_with_ttl("tags", &["a", "b"], Ttl::Never)?;
    /// assert_eq!(cache.get::<Vec<String>>("tags")?, Some(vec!["a".into(), "b".into()]));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_with_ttl<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: impl Into<Ttl>,
    ) -> Result<(), CacheError> {
        let bytes = self.encode(key, value)?;
        Ok(self.layer.set_with_ttl(key, bytes, ttl)?)
    }

    /// Removes `key`.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{Json, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Json);
    /// cache.set_with_ttl("n", &1u8, Duration::from_secs(60))?;
    /// cache.delete("n")?;
    /// assert_eq!(cache.get::<u8>("n")?, None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, key: &str) -> Result<(), CacheError> {
        Ok(self.layer.delete(key)?)
    }

    /// The value of `key`; on a miss, `load`'s value, encoded and stored for
    /// `ttl`, with single flight per key (see [`ReadThrough::get_with`]).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{Postcard, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Postcard);
    /// let primes = cache.get_with("primes", Duration::from_secs(60), || vec![2u32, 3, 5, 7])?;
    /// assert_eq!(primes.len(), 4);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_with<T>(
        &self,
        key: &str,
        ttl: impl Into<Ttl>,
        load: impl FnOnce() -> T,
    ) -> Result<T, CacheError>
    where
        T: Serialize + DeserializeOwned,
    {
        self.try_get_with(key, ttl, || Ok::<T, std::convert::Infallible>(load()))
    }

    /// Like [`get_with`](Self::get_with) with a loader that can fail: its
    /// error reaches every waiter as [`CacheError::Load`] and is not cached.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{Json, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Json);
    /// let port: u16 = cache.try_get_with("port", Duration::from_secs(60), || "8080".parse())?;
    /// assert_eq!(port, 8080);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get_with<T, E>(
        &self,
        key: &str,
        ttl: impl Into<Ttl>,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, CacheError<E>>
    where
        T: Serialize + DeserializeOwned,
        E: Send + Sync + 'static,
    {
        let decode = |bytes: &Bytes| self.decode(key, bytes);
        self.layer
            .read_through(key, ttl.into(), &decode, self.overwrite_undecodable, || {
                let value = load().map_err(|e| CacheError::Load(Arc::new(e)))?;
                let bytes = self.encode(key, &value)?;
                Ok((value, bytes))
            })
    }

    /// Wraps `function` so that its results are cached for `ttl`, keyed by
    /// [`memo_key`](super::memo_key)`(prefix, JSON of the argument)`: any
    /// serde type is an argument, and the key is stable across processes.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{Json, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Json);
    /// let area = cache.memoize("area", Duration::from_secs(60), |&(w, h): &(u32, u32)| w * h);
    /// assert_eq!(area.call(&(3, 4))?, 12);
    /// assert_eq!(area.call(&(3, 4))?, 12);
    /// assert_eq!(cache.local_stats().loads, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn memoize<F>(
        &self,
        prefix: &str,
        ttl: impl Into<Ttl>,
        function: F,
    ) -> TypedMemoized<S, C, F> {
        TypedMemoized(Memo::new(self.clone(), prefix, ttl.into(), function))
    }
}

/// A function whose typed results are cached: made by
/// [`TypedCache::memoize`].
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::time::Duration;
/// use tiny_cache_client::cache::{Postcard, ReadThrough, TypedCache};
///
/// let cache = TypedCache::new(ReadThrough::new(client), Postcard);
/// let words = cache.memoize("words", Duration::from_secs(60), |text: &String| {
///     text.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
/// });
/// assert_eq!(words.call(&"a b".to_owned())?, ["a", "b"]);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedMemoized<S, C, F>(Memo<TypedCache<S, C>, F>);

impl<S, C: std::fmt::Debug, F> std::fmt::Debug for TypedMemoized<S, C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0
            .debug(f, "TypedMemoized", ("codec", &self.0.cache.codec))
    }
}

impl<S, C: Clone, F: Clone> Clone for TypedMemoized<S, C, F> {
    fn clone(&self) -> Self {
        TypedMemoized(self.0.clone())
    }
}

impl<S: CacheStore, C: Codec, F> TypedMemoized<S, C, F> {
    /// The argument as the JSON its key is made of.
    fn render<A: Serialize + ?Sized, E>(&self, argument: &A) -> Result<String, CacheError<E>> {
        serde_json::to_string(argument).map_err(|error| CacheError::Encode {
            key: self.0.prefix.clone(),
            codec: "json",
            message: format!("the argument does not render as a key: {error}"),
        })
    }

    /// The function's value for `argument`, from the cache or computed and
    /// stored.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{Json, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Json);
    /// let len = cache.memoize("len", Duration::from_secs(60), |s: &str| s.len());
    /// assert_eq!(len.call("four")?, 4);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call<A, T>(&self, argument: &A) -> Result<T, CacheError>
    where
        A: Serialize + ?Sized,
        F: Fn(&A) -> T,
        T: Serialize + DeserializeOwned,
    {
        let rendered = self.render(argument)?;
        self.0.read_through(&rendered, |cache, key, ttl, function| {
            cache.get_with(key, ttl, || function(argument))
        })
    }

    /// For a fallible function: its error reaches the caller (and every
    /// concurrent caller with the same argument) and is not cached.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{CacheError, Json, ReadThrough, TypedCache};
    ///
    /// let cache = TypedCache::new(ReadThrough::new(client), Json);
    /// let parse = cache.memoize("parse", Duration::from_secs(60), |s: &str| s.parse::<i64>());
    /// assert_eq!(parse.try_call("-3")?, -3);
    /// assert!(matches!(parse.try_call("x"), Err(CacheError::Load(_))));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_call<A, T, E>(&self, argument: &A) -> Result<T, CacheError<E>>
    where
        A: Serialize + ?Sized,
        F: Fn(&A) -> Result<T, E>,
        T: Serialize + DeserializeOwned,
        E: Send + Sync + 'static,
    {
        let rendered = self.render(argument)?;
        self.0.read_through(&rendered, |cache, key, ttl, function| {
            cache.try_get_with(key, ttl, || function(argument))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_reads_back_every_finite_float_bit_for_bit() {
        // Found by the `typed_codecs` fuzz target: serde_json's default
        // float parsing is off by one ulp on this value.
        for number in [3.617_216_910_665_700_6e-196, 5e-324, f64::MAX, -0.0, 0.1] {
            let bytes = Json.encode(&number).unwrap();
            let back: f64 = Json.decode(&bytes).unwrap();
            assert_eq!(back.to_bits(), number.to_bits(), "{number:e}");
        }
    }
}
