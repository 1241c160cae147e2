//! The caching layer's error: the client's [`Error`] plus what only a
//! caching layer can go wrong with.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;

/// What went wrong in a call through a caching layer.
///
/// `E` is the error type of the caller's loader (the closure of
/// [`try_get_with`](crate::cache::ReadThrough::try_get_with)); it is
/// [`Infallible`] for calls whose loader cannot fail. A loader error is
/// shared by every caller that waited for it, so it comes in an [`Arc`].
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::time::Duration;
/// use tiny_cache_client::cache::{CacheError, ReadThrough};
///
/// let cache = ReadThrough::new(client);
/// let result = cache.try_get_with("user:7", Duration::from_secs(60), || {
///     Err::<Vec<u8>, _>("the database is down")
/// });
/// match result {
///     Err(CacheError::Load(why)) => assert_eq!(*why, "the database is down"),
///     other => panic!("unexpected: {other:?}"),
/// }
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError<E = Infallible> {
    /// The store (the remote cache, or the store under a near cache)
    /// failed, and the layer did not fail open.
    #[error("cache store failed: {0}")]
    Store(#[from] Error),

    /// The loader returned an error. It reached every caller waiting for
    /// the same key and was not cached: the next call loads again.
    #[error("loader failed: {0}")]
    Load(Arc<E>),

    /// The loader running in another thread for this key panicked. The key
    /// is free again: the next call loads it anew. (The panicking thread
    /// itself unwinds with its own panic.)
    #[error("the loader of key {key:?} panicked in another thread")]
    LoaderPanicked {
        /// The key whose loader panicked.
        key: String,
    },

    /// This caller's deadline passed while another thread was still loading
    /// the key.
    #[error("gave up waiting {waited:?} for another thread loading key {key:?} (the layer's wait_timeout)")]
    WaitTimeout {
        /// The key being loaded.
        key: String,
        /// How long this caller waited (its timeout).
        waited: Duration,
    },

    /// A loader asked the same layer for the key it is loading: waiting for
    /// itself would never end.
    #[error("key {key:?} was requested again from inside its own loader")]
    Reentrant {
        /// The key being loaded.
        key: String,
    },

    /// The stored bytes of `key` do not decode with `codec`.
    #[error("the value of key {key:?} does not decode as {codec}: {message}")]
    Decode {
        /// The key whose value does not decode.
        key: String,
        /// The codec's name (`"json"`, `"postcard"`, ...).
        codec: &'static str,
        /// Why the codec refused the bytes.
        message: String,
    },

    /// A value could not be encoded with `codec` (a map with non-string
    /// keys in JSON, for example).
    #[error("the value for key {key:?} does not encode as {codec}: {message}")]
    Encode {
        /// The key the value was for.
        key: String,
        /// The codec's name.
        codec: &'static str,
        /// Why the codec refused the value.
        message: String,
    },
}

// By hand: a derive would ask `E: Clone`, and the loader's error is shared
// through its `Arc` instead.
impl<E> Clone for CacheError<E> {
    fn clone(&self) -> Self {
        match self {
            CacheError::Store(error) => CacheError::Store(error.clone()),
            CacheError::Load(error) => CacheError::Load(Arc::clone(error)),
            CacheError::LoaderPanicked { key } => CacheError::LoaderPanicked { key: key.clone() },
            CacheError::WaitTimeout { key, waited } => CacheError::WaitTimeout {
                key: key.clone(),
                waited: *waited,
            },
            CacheError::Reentrant { key } => CacheError::Reentrant { key: key.clone() },
            CacheError::Decode {
                key,
                codec,
                message,
            } => CacheError::Decode {
                key: key.clone(),
                codec,
                message: message.clone(),
            },
            CacheError::Encode {
                key,
                codec,
                message,
            } => CacheError::Encode {
                key: key.clone(),
                codec,
                message: message.clone(),
            },
        }
    }
}

impl<E> CacheError<E> {
    /// The store's error, when the store is what failed.
    ///
    /// ```
    /// use tiny_cache_client::cache::CacheError;
    /// use tiny_cache_client::Error;
    ///
    /// let error: CacheError = Error::Unavailable("down".into()).into();
    /// assert_eq!(error.store_error(), Some(&Error::Unavailable("down".into())));
    /// ```
    pub fn store_error(&self) -> Option<&Error> {
        match self {
            CacheError::Store(error) => Some(error),
            _ => None,
        }
    }
}
