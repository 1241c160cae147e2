//! The small trait every caching layer stands on.

use std::sync::Arc;

use bytes::Bytes;

use crate::{Client, Error, Result, Ttl};

/// A key-value store of bytes with TTLs: what a caching layer needs from
/// whatever is under it.
///
/// Implemented for the remote [`Client`], for the near cache (which wraps
/// another store), for `Arc`s and boxes of stores (so
/// `Arc<dyn CacheStore>` works), and open to your own stores (a file, a
/// test double, another service). Keys are the remote cache's keys; errors
/// are the crate's [`Error`], so a layer's fail-open can tell an outage
/// ([`Error::Unavailable`], [`Error::DeadlineExceeded`],
/// [`Error::ResourceExhausted`]) from a bug ([`Error::Validation`]).
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::Duration;
/// use bytes::Bytes;
/// use tiny_cache_client::cache::{CacheStore, ReadThrough};
/// use tiny_cache_client::{Result, Ttl};
///
/// /// A store that never expires anything, for a test.
/// #[derive(Default)]
/// struct MapStore(Mutex<HashMap<String, Bytes>>);
///
/// impl CacheStore for MapStore {
///     fn get(&self, key: &str) -> Result<Option<Bytes>> {
///         Ok(self.0.lock().unwrap().get(key).cloned())
///     }
///     fn set(&self, key: &str, value: Bytes, _ttl: Ttl) -> Result<()> {
///         self.0.lock().unwrap().insert(key.to_owned(), value);
///         Ok(())
///     }
///     fn delete(&self, key: &str) -> Result<()> {
///         self.0.lock().unwrap().remove(key);
///         Ok(())
///     }
/// }
///
/// let cache = ReadThrough::new(MapStore::default());
/// let value = cache.get_with("k", Duration::from_secs(5), || "computed")?;
/// assert_eq!(&value[..], b"computed");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait CacheStore: Send + Sync {
    /// The value of `key`, `None` when missing or expired.
    fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Stores `value` under `key` for `ttl`.
    fn set(&self, key: &str, value: Bytes, ttl: Ttl) -> Result<()>;

    /// Removes `key`; removing a missing key succeeds.
    fn delete(&self, key: &str) -> Result<()>;

    /// The values of several keys, in order. The default asks one key at a
    /// time; a store with a batch call (the client's `MultiGet`) overrides
    /// it. The outer error fails the whole batch, an inner one a single key.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Result<Option<Bytes>>>> {
        Ok(keys.iter().map(|key| self.get(key)).collect())
    }

    /// Like [`get_many`](Self::get_many), but a key whose `latest` flag is
    /// set is read so that the newest copy wins where the store keeps
    /// several (a replicated `Cluster` asks every replica of it). The
    /// default, for stores with one copy of each key, is `get_many`.
    fn get_many_latest(
        &self,
        keys: &[&str],
        latest: &[bool],
    ) -> Result<Vec<Result<Option<Bytes>>>> {
        let _ = latest;
        self.get_many(keys)
    }

    /// Like [`set`](Self::set), but acknowledged only once every copy the
    /// store keeps of `key` has the value (a replicated `Cluster` fails it
    /// when a replica missed it), so that no reader of any copy sees the
    /// old value after it returns. The default, for stores with one copy
    /// of each key, is `set`.
    fn set_everywhere(&self, key: &str, value: Bytes, ttl: Ttl) -> Result<()> {
        self.set(key, value, ttl)
    }

    /// Stores `value` under `key` for `ttl` unless `key` holds a value;
    /// `true` when it stored. The default reads, then writes: not atomic,
    /// which is only ever a lost race (a caching layer reads the winner
    /// again); the client's override is the server's atomic `SetIfAbsent`.
    fn set_if_absent(&self, key: &str, value: Bytes, ttl: Ttl) -> Result<bool> {
        if self.get(key)?.is_some() {
            return Ok(false);
        }
        self.set(key, value, ttl)?;
        Ok(true)
    }

    /// The value of `key` if this store holds it in process, without any
    /// I/O or waiting; `None` otherwise (always, for stores with nothing
    /// local). Layers ask this before anything that could block.
    fn peek(&self, _key: &str) -> Option<Bytes> {
        None
    }
}

impl CacheStore for Client {
    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Client::get(self, key)
    }

    fn set(&self, key: &str, value: Bytes, ttl: Ttl) -> Result<()> {
        Client::set_with_ttl(self, key, value, ttl)
    }

    fn delete(&self, key: &str) -> Result<()> {
        Client::delete(self, key)
    }

    fn set_if_absent(&self, key: &str, value: Bytes, ttl: Ttl) -> Result<bool> {
        Client::set_if_absent_with_ttl(self, key, value, ttl)
    }

    fn get_many(&self, keys: &[&str]) -> Result<Vec<Result<Option<Bytes>>>> {
        let items = Client::get_many(self, keys.iter().copied())?;
        Ok(items
            .into_iter()
            // A per-key failure of MultiGet is the server refusing that key
            // (too long once namespaced, for example).
            .map(|item| item.result.map_err(|e| Error::InvalidArgument(e.0.into())))
            .collect())
    }
}

macro_rules! forward_store {
    ($($wrapper:ident),*) => {$(
        impl<S: CacheStore + ?Sized> CacheStore for $wrapper<S> {
            fn get(&self, key: &str) -> Result<Option<Bytes>> {
                (**self).get(key)
            }
            fn set(&self, key: &str, value: Bytes, ttl: Ttl) -> Result<()> {
                (**self).set(key, value, ttl)
            }
            fn delete(&self, key: &str) -> Result<()> {
                (**self).delete(key)
            }
            fn get_many(&self, keys: &[&str]) -> Result<Vec<Result<Option<Bytes>>>> {
                (**self).get_many(keys)
            }
            fn set_if_absent(&self, key: &str, value: Bytes, ttl: Ttl) -> Result<bool> {
                (**self).set_if_absent(key, value, ttl)
            }
            fn get_many_latest(
                &self,
                keys: &[&str],
                latest: &[bool],
            ) -> Result<Vec<Result<Option<Bytes>>>> {
                (**self).get_many_latest(keys, latest)
            }
            fn set_everywhere(&self, key: &str, value: Bytes, ttl: Ttl) -> Result<()> {
                (**self).set_everywhere(key, value, ttl)
            }
            fn peek(&self, key: &str) -> Option<Bytes> {
                (**self).peek(key)
            }
        }
    )*};
}

forward_store!(Arc, Box);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: &dyn CacheStore) {}
        let _ = takes;
    }
}
