//! Memoized functions: a function whose results live in the cache, keyed by
//! its argument.

use std::fmt::{self, Debug, Display};

use bytes::Bytes;

use super::{CacheError, ReadThrough};
use crate::store::sha256_hex;
use crate::CacheStore;
use crate::Ttl;

/// Argument renderings longer than this are hashed: the server refuses keys
/// over 256 characters, and a namespace makes the storage key longer still.
pub(crate) const MAX_VERBATIM_ARGUMENT_CHARS: usize = 128;

/// The cache key of a memoized call: `prefix:argument` when the rendered
/// argument is short, `prefix:#<SHA-256 of it in hex>` when it is not.
/// Stable across processes, builds and Rust versions (no `std` hasher).
///
/// ```
/// use tiny_cache_client::cache::memo_key;
///
/// assert_eq!(memo_key("square", "12"), "square:12");
/// let long = memo_key("search", &"x".repeat(1000));
/// assert!(long.starts_with("search:#") && long.len() == "search:#".len() + 64);
/// ```
pub fn memo_key(prefix: &str, argument: &str) -> String {
    if argument.chars().count() <= MAX_VERBATIM_ARGUMENT_CHARS {
        return format!("{prefix}:{argument}");
    }
    format!("{prefix}:#{}", sha256_hex(argument))
}

/// A function whose results are cached through a [`ReadThrough`] layer,
/// keyed by [`memo_key`]`(prefix, argument)`: the `cached` crate's idea as
/// a plain wrapper. Concurrent calls with the same argument run the
/// function once (single flight).
///
/// Made by [`memoize`]; typed values (any serde type) come from
/// `TypedCache::memoize` with the `serde` feature.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::time::Duration;
/// use tiny_cache_client::cache::{memoize, ReadThrough};
///
/// let cache = ReadThrough::new(client);
/// let square = memoize(&cache, "square", Duration::from_secs(60), |n: &u64| (n * n).to_string());
/// assert_eq!(&square.call(&12)?[..], b"144");
/// assert_eq!(&square.call(&12)?[..], b"144"); // from the cache
/// assert_eq!(cache.local_stats().loads, 1);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Memoized<S, F>(Memo<ReadThrough<S>, F>);

impl<S, F> Debug for Memoized<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug(f, "Memoized", ("layer", &self.0.cache))
    }
}

// By hand: a derive would ask `S: Clone`, and the layer is shared.
impl<S, F: Clone> Clone for Memoized<S, F> {
    fn clone(&self) -> Self {
        Memoized(self.0.clone())
    }
}

/// What a memoized function holds, whichever cache its results go
/// through ([`Memoized`]: bytes through a [`ReadThrough`];
/// `TypedMemoized`: typed values through a `TypedCache`).
#[derive(Clone)]
pub(crate) struct Memo<C, F> {
    pub(crate) cache: C,
    pub(crate) prefix: String,
    ttl: Ttl,
    function: F,
}

impl<C, F> Memo<C, F> {
    pub(crate) fn new(cache: C, prefix: &str, ttl: Ttl, function: F) -> Self {
        Memo {
            cache,
            prefix: prefix.to_owned(),
            ttl,
            function,
        }
    }

    /// Runs `read` (a read-through of the cache) with the cache, the key
    /// of the call whose argument renders as `rendered`, the TTL and the
    /// function.
    pub(crate) fn read_through<R>(
        &self,
        rendered: &str,
        read: impl FnOnce(&C, &str, Ttl, &F) -> R,
    ) -> R {
        let key = memo_key(&self.prefix, rendered);
        read(&self.cache, &key, self.ttl, &self.function)
    }

    /// `name { prefix, ttl, <what>: cache, .. }`: the function is opaque.
    pub(crate) fn debug(
        &self,
        f: &mut fmt::Formatter<'_>,
        name: &str,
        (what, cache): (&str, &dyn Debug),
    ) -> fmt::Result {
        f.debug_struct(name)
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field(what, cache)
            .finish_non_exhaustive()
    }
}

/// Wraps `function` so that its results are cached for `ttl` under
/// `prefix:argument` (see [`Memoized`]). The argument is rendered with
/// `Display`; give each function its own prefix.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::time::Duration;
/// use tiny_cache_client::cache::{memoize, ReadThrough};
///
/// let cache = ReadThrough::new(client);
/// let greet = memoize(&cache, "greet", Duration::from_secs(60), |name: &str| format!("hello {name}"));
/// assert_eq!(&greet.call("ann")?[..], b"hello ann");
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn memoize<S, F>(
    layer: &ReadThrough<S>,
    prefix: &str,
    ttl: impl Into<Ttl>,
    function: F,
) -> Memoized<S, F>
where
    S: CacheStore,
{
    Memoized(Memo::new(layer.clone(), prefix, ttl.into(), function))
}

impl<S: CacheStore, F> Memoized<S, F> {
    /// The function's value for `argument`, from the cache or computed and
    /// stored.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{memoize, ReadThrough};
    ///
    /// let cache = ReadThrough::new(client);
    /// let double = memoize(&cache, "double", Duration::from_secs(60), |n: &i32| (n * 2).to_string());
    /// assert_eq!(&double.call(&21)?[..], b"42");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call<A, V>(&self, argument: &A) -> Result<Bytes, CacheError>
    where
        A: Display + ?Sized,
        F: Fn(&A) -> V,
        V: Into<Bytes>,
    {
        self.0
            .read_through(&argument.to_string(), |layer, key, ttl, function| {
                layer.get_with(key, ttl, || function(argument))
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
    /// use tiny_cache_client::cache::{memoize, CacheError, ReadThrough};
    ///
    /// let cache = ReadThrough::new(client);
    /// let parse = memoize(&cache, "parse", Duration::from_secs(60), |text: &str| {
    ///     text.parse::<u8>().map(|n| vec![n])
    /// });
    /// assert_eq!(&parse.try_call("7")?[..], [7]);
    /// assert!(matches!(parse.try_call("x"), Err(CacheError::Load(_))));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_call<A, V, E>(&self, argument: &A) -> Result<Bytes, CacheError<E>>
    where
        A: Display + ?Sized,
        F: Fn(&A) -> Result<V, E>,
        V: Into<Bytes>,
        E: Send + Sync + 'static,
    {
        self.0
            .read_through(&argument.to_string(), |layer, key, ttl, function| {
                layer.try_get_with(key, ttl, || function(argument))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_arguments_are_verbatim_and_long_ones_hashed_stably() {
        assert_eq!(memo_key("f", "(1, 2)"), "f:(1, 2)");
        let at_limit = "é".repeat(MAX_VERBATIM_ARGUMENT_CHARS);
        assert_eq!(memo_key("f", &at_limit), format!("f:{at_limit}"));
        // SHA-256 of 129 'a's, fixed so that a change of hashing shows.
        let hashed = memo_key("f", &"a".repeat(MAX_VERBATIM_ARGUMENT_CHARS + 1));
        assert_eq!(
            hashed,
            "f:#c12cb024a2e5551cca0e08fce8f1c5e314555cc3fef6329ee994a3db752166ae"
        );
        assert_eq!(
            hashed,
            memo_key("f", &"a".repeat(MAX_VERBATIM_ARGUMENT_CHARS + 1))
        );
        assert_ne!(
            hashed,
            memo_key("f", &"a".repeat(MAX_VERBATIM_ARGUMENT_CHARS + 2))
        );
    }
}
