//! The one trait of a key-value store with TTLs: what [`Client`](crate::Client),
//! `Cluster` and the caching layers have in common, so that a program, a
//! layer or a tool can take any of them.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::ttl::Ttl;
use crate::ttl::DEFAULT_TTL;

/// How many read-then-compare-and-set rounds a touch makes (the
/// client's, and the trait's provided one) before giving up to concurrent
/// writers.
///
/// ```
/// use tiny_cache_client::TOUCH_ATTEMPTS;
///
/// // Eight lost races in a row before `touch` gives up with `ABORTED`.
/// assert_eq!(TOUCH_ATTEMPTS, 8);
/// ```
pub const TOUCH_ATTEMPTS: u32 = 8;

/// One key's result inside a multi-key call: the key as given, and either
/// its value/outcome or the reason the server gave for this key alone.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// let results = client.set_many([("a", "1"), ("", "2")])?;
/// assert_eq!(results[0].key, "a");
/// assert_eq!(results[0].result, Ok(()));
/// // The empty key failed alone; the call as a whole succeeded.
/// assert_eq!(results[1].key, "");
/// assert!(results[1].result.is_err());
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult<T> {
    /// The key, as it was asked for.
    pub key: String,
    /// The outcome for this key.
    pub result: Result<T>,
}

impl<T> ItemResult<T> {
    /// One key's outcome.
    ///
    /// ```
    /// use tiny_cache_client::ItemResult;
    ///
    /// let found = ItemResult::new("k", Ok(Some(7)));
    /// assert_eq!((found.key.as_str(), found.result), ("k", Ok(Some(7))));
    /// ```
    pub fn new(key: &str, result: Result<T>) -> ItemResult<T> {
        ItemResult {
            key: key.to_owned(),
            result,
        }
    }
}

/// What [`Client::compare_and_set`](crate::Client::compare_and_set) did.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use tiny_cache_client::CasOutcome;
///
/// client.set("stock", "5")?;
/// // An optimistic decrement: read, compute, write only if unchanged.
/// loop {
///     let current = client.get_string("stock")?.unwrap_or_default();
///     let next = (current.parse::<u32>()? - 1).to_string();
///     match client.compare_and_set("stock", &current, &next)? {
///         CasOutcome::Stored => break,
///         CasOutcome::Mismatch => continue, // another writer got in between
///         CasOutcome::NotFound => panic!("the stock entry vanished"),
///     }
/// }
/// assert_eq!(client.get_string("stock")?.as_deref(), Some("4"));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CasOutcome {
    /// The current value matched and the new value was written.
    Stored,
    /// The key is missing or expired; nothing was written.
    NotFound,
    /// The current value differs from the expected one; nothing was written.
    Mismatch,
}

/// `stored`, `not found` or `mismatch`.
///
/// ```
/// assert_eq!(tiny_cache_client::CasOutcome::Mismatch.to_string(), "mismatch");
/// ```
impl std::fmt::Display for CasOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CasOutcome::Stored => "stored",
            CasOutcome::NotFound => "not found",
            CasOutcome::Mismatch => "mismatch",
        })
    }
}

/// A key-value store of bytes with TTLs: the remote [`Client`](crate::Client),
/// a `Cluster` of servers, the caching layers over either (`NearCache`,
/// `ReadThrough`), `Arc`s, boxes and references of any of them (so
/// `&dyn CacheStore` and `Arc<dyn CacheStore>` work), and your own stores.
///
/// Three methods are required (`get`, `set_with_ttl`, `delete`); every other
/// operation has a provided form built on them, which a store with a
/// better one (a batch call, an atomic conditional write) overrides. Errors
/// are the crate's [`Error`], per item too, so a layer's fail-open can tell
/// an outage ([`Error::Unavailable`], [`Error::DeadlineExceeded`],
/// [`Error::ResourceExhausted`]) from a bug ([`Error::Validation`]).
///
/// The arguments are the object-safe types (`&[u8]`, [`Ttl`]); the concrete
/// types (`Client`, `Cluster`, the layers) also have the same methods under
/// the same names taking `impl AsRef<[u8]>` and `impl Into<Ttl>`, so
/// `client.set("k", "v")` needs no import and no conversion.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let address = server.address();
/// use std::time::Duration;
/// use tiny_cache_client::{CacheStore, Client, Ttl};
///
/// /// Fills any store: a client, a cluster, a near cache over either...
/// fn warm(store: &impl CacheStore) -> tiny_cache_client::Result<()> {
///     store.set_with_ttl("config", b"{}", Ttl::After(Duration::from_secs(60)))?;
///     store.set_many(&[("a", b"1"), ("b", b"2")])?;
///     Ok(())
/// }
///
/// let client = Client::new(&address)?;
/// warm(&client)?;
/// assert_eq!(client.get("a")?.as_deref(), Some(&b"1"[..]));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Your own store implements the three required methods:
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::Duration;
/// use bytes::Bytes;
/// use tiny_cache_client::{CacheStore, Result, Ttl};
///
/// /// A store that never expires anything, for a test.
/// #[derive(Default)]
/// struct MapStore(Mutex<HashMap<String, Bytes>>);
///
/// impl CacheStore for MapStore {
///     fn get(&self, key: &str) -> Result<Option<Bytes>> {
///         Ok(self.0.lock().unwrap().get(key).cloned())
///     }
///     fn set_with_ttl(&self, key: &str, value: &[u8], _ttl: Ttl) -> Result<()> {
///         self.0.lock().unwrap().insert(key.to_owned(), Bytes::copy_from_slice(value));
///         Ok(())
///     }
///     fn delete(&self, key: &str) -> Result<()> {
///         self.0.lock().unwrap().remove(key);
///         Ok(())
///     }
/// }
///
/// let store = MapStore::default();
/// store.set("k", b"v")?;
/// assert!(!store.set_if_absent("k", b"w")?);
/// assert_eq!(store.get_many(&["k", "x"])?[1].result, Ok(None));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait CacheStore: Send + Sync {
    /// The value of `key`, `None` when missing or expired.
    fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Stores `value` under `key` for `ttl`.
    fn set_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<()>;

    /// Removes `key`; removing a missing key succeeds.
    fn delete(&self, key: &str) -> Result<()>;

    /// The TTL of the forms without one ([`set`](Self::set),
    /// [`set_many`](Self::set_many), ...): the client's configured default
    /// TTL, [`DEFAULT_TTL`] for a store without a setting.
    fn default_ttl(&self) -> Ttl {
        Ttl::After(DEFAULT_TTL)
    }

    /// Stores `value` under `key` for the [default TTL](Self::default_ttl).
    fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.set_with_ttl(key, value, self.default_ttl())
    }

    /// The values of several keys, one result per key in order. The outer
    /// error fails the whole batch, an item's error that key alone. The
    /// provided form asks one key at a time; a store with a batch call (the
    /// client's `MultiGet`) overrides it.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<ItemResult<Option<Bytes>>>> {
        Ok(keys
            .iter()
            .map(|key| ItemResult::new(key, self.get(key)))
            .collect())
    }

    /// Writes several entries, all for `ttl`; one result per item in order.
    fn set_many_with_ttl(&self, items: &[(&str, &[u8])], ttl: Ttl) -> Result<Vec<ItemResult<()>>> {
        Ok(items
            .iter()
            .map(|(key, value)| ItemResult::new(key, self.set_with_ttl(key, value, ttl)))
            .collect())
    }

    /// [`set_many_with_ttl`](Self::set_many_with_ttl) with the default TTL.
    fn set_many(&self, items: &[(&str, &[u8])]) -> Result<Vec<ItemResult<()>>> {
        self.set_many_with_ttl(items, self.default_ttl())
    }

    /// Removes several keys; one result per key in order.
    fn delete_many(&self, keys: &[&str]) -> Result<Vec<ItemResult<()>>> {
        Ok(keys
            .iter()
            .map(|key| ItemResult::new(key, self.delete(key)))
            .collect())
    }

    /// Stores `value` under `key` for `ttl` unless `key` holds a value;
    /// `true` when it stored. The provided form reads, then writes: not
    /// atomic, which a caching layer tolerates (a lost race reads the
    /// winner again); the client's is the server's atomic `SetIfAbsent`.
    fn set_if_absent_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<bool> {
        if self.get(key)?.is_some() {
            return Ok(false);
        }
        self.set_with_ttl(key, value, ttl)?;
        Ok(true)
    }

    /// [`set_if_absent_with_ttl`](Self::set_if_absent_with_ttl) with the
    /// default TTL.
    fn set_if_absent(&self, key: &str, value: &[u8]) -> Result<bool> {
        self.set_if_absent_with_ttl(key, value, self.default_ttl())
    }

    /// Replaces the value of `key` with `value` (for `ttl`) only if it is
    /// `expected`. There is no correct provided form without an atomic
    /// store underneath, so the provided one refuses with
    /// [`Error::Unsupported`].
    fn compare_and_set_with_ttl(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Ttl,
    ) -> Result<CasOutcome> {
        let _ = (key, expected, value, ttl);
        Err(Error::Unsupported {
            operation: "compare_and_set",
        })
    }

    /// [`compare_and_set_with_ttl`](Self::compare_and_set_with_ttl) with
    /// the default TTL.
    fn compare_and_set(&self, key: &str, expected: &[u8], value: &[u8]) -> Result<CasOutcome> {
        self.compare_and_set_with_ttl(key, expected, value, self.default_ttl())
    }

    /// Gives `key` a new TTL without changing its value; `false` when the
    /// key is missing. The provided form reads the value and writes it
    /// back with [`compare_and_set_with_ttl`](Self::compare_and_set_with_ttl),
    /// up to [`TOUCH_ATTEMPTS`] times while other writers change it.
    fn touch(&self, key: &str, ttl: Ttl) -> Result<bool> {
        ttl.wire_seconds()?;
        for _ in 0..TOUCH_ATTEMPTS {
            let Some(value) = self.get(key)? else {
                return Ok(false);
            };
            match self.compare_and_set_with_ttl(key, &value, &value, ttl)? {
                CasOutcome::Stored => return Ok(true),
                CasOutcome::NotFound => return Ok(false),
                CasOutcome::Mismatch => {}
            }
        }
        Err(touch_lost(key))
    }

    /// Like [`get_many`](Self::get_many), but a key whose `latest` flag is
    /// set is read so that the newest copy wins where the store keeps
    /// several (a replicated `Cluster` asks every replica of it). The
    /// provided form, for stores with one copy of each key, is `get_many`.
    fn get_many_latest(
        &self,
        keys: &[&str],
        latest: &[bool],
    ) -> Result<Vec<ItemResult<Option<Bytes>>>> {
        let _ = latest;
        self.get_many(keys)
    }

    /// Like [`set_with_ttl`](Self::set_with_ttl), but acknowledged only once
    /// every copy the store keeps of `key` has the value (a replicated
    /// `Cluster` fails it when a replica missed it), so that no reader of
    /// any copy sees the old value after it returns. The provided form, for
    /// stores with one copy of each key, is `set_with_ttl`.
    fn set_everywhere(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<()> {
        self.set_with_ttl(key, value, ttl)
    }

    /// Like [`set_if_absent_with_ttl`](Self::set_if_absent_with_ttl), but
    /// on every copy the store keeps of `key`: `true` only when each copy
    /// was absent and now holds `value` (a replicated `Cluster` asks every
    /// replica, each atomically, where its own `set_if_absent` refuses to
    /// decide for several). A caller that gets `false` reads the newest
    /// copy with [`get_many_latest`](Self::get_many_latest). The provided
    /// form, for stores with one copy of each key, is
    /// `set_if_absent_with_ttl`.
    fn set_if_absent_everywhere(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<bool> {
        self.set_if_absent_with_ttl(key, value, ttl)
    }

    /// The value of `key` if this store holds it in process, without any
    /// I/O or waiting; `None` otherwise (always, for stores with nothing
    /// local). Layers ask this before anything that could block.
    fn peek(&self, key: &str) -> Option<Bytes> {
        let _ = key;
        None
    }
}

/// The error of a touch that lost every round to concurrent writers:
/// `ABORTED`, which [`Error::is_retryable`] reads as worth another try.
pub(crate) fn touch_lost(key: &str) -> Error {
    Error::Status {
        code: crate::Code::Aborted,
        message: format!(
            "touch of {key:?} lost to concurrent writers {TOUCH_ATTEMPTS} times in a row"
        )
        .into(),
        details: None,
    }
}

/// Trait methods that hand the call unchanged to another store, `$to` (an
/// expression over `self`): the one place each forwarding signature is
/// written, for every store that wraps another.
macro_rules! delegate_store {
    ($s:ident => $to:expr; $($method:ident),+ $(,)?) => {
        $( $crate::store::delegate_store!(@one $s => $to; $method); )+
    };
    (@one $s:ident => $to:expr; get) => {
        fn get(&$s, key: &str) -> $crate::Result<Option<bytes::Bytes>> {
            $to.get(key)
        }
    };
    (@one $s:ident => $to:expr; set_with_ttl) => {
        fn set_with_ttl(&$s, key: &str, value: &[u8], ttl: $crate::Ttl) -> $crate::Result<()> {
            $to.set_with_ttl(key, value, ttl)
        }
    };
    (@one $s:ident => $to:expr; delete) => {
        fn delete(&$s, key: &str) -> $crate::Result<()> {
            $to.delete(key)
        }
    };
    (@one $s:ident => $to:expr; default_ttl) => {
        fn default_ttl(&$s) -> $crate::Ttl {
            $to.default_ttl()
        }
    };
    (@one $s:ident => $to:expr; get_many) => {
        fn get_many(
            &$s,
            keys: &[&str],
        ) -> $crate::Result<Vec<$crate::ItemResult<Option<bytes::Bytes>>>> {
            $to.get_many(keys)
        }
    };
    (@one $s:ident => $to:expr; set_many_with_ttl) => {
        fn set_many_with_ttl(
            &$s,
            items: &[(&str, &[u8])],
            ttl: $crate::Ttl,
        ) -> $crate::Result<Vec<$crate::ItemResult<()>>> {
            $to.set_many_with_ttl(items, ttl)
        }
    };
    (@one $s:ident => $to:expr; delete_many) => {
        fn delete_many(&$s, keys: &[&str]) -> $crate::Result<Vec<$crate::ItemResult<()>>> {
            $to.delete_many(keys)
        }
    };
    (@one $s:ident => $to:expr; set_if_absent_with_ttl) => {
        fn set_if_absent_with_ttl(
            &$s,
            key: &str,
            value: &[u8],
            ttl: $crate::Ttl,
        ) -> $crate::Result<bool> {
            $to.set_if_absent_with_ttl(key, value, ttl)
        }
    };
    (@one $s:ident => $to:expr; compare_and_set_with_ttl) => {
        fn compare_and_set_with_ttl(
            &$s,
            key: &str,
            expected: &[u8],
            value: &[u8],
            ttl: $crate::Ttl,
        ) -> $crate::Result<$crate::CasOutcome> {
            $to.compare_and_set_with_ttl(key, expected, value, ttl)
        }
    };
    (@one $s:ident => $to:expr; touch) => {
        fn touch(&$s, key: &str, ttl: $crate::Ttl) -> $crate::Result<bool> {
            $to.touch(key, ttl)
        }
    };
    (@one $s:ident => $to:expr; get_many_latest) => {
        fn get_many_latest(
            &$s,
            keys: &[&str],
            latest: &[bool],
        ) -> $crate::Result<Vec<$crate::ItemResult<Option<bytes::Bytes>>>> {
            $to.get_many_latest(keys, latest)
        }
    };
    (@one $s:ident => $to:expr; set_everywhere) => {
        fn set_everywhere(&$s, key: &str, value: &[u8], ttl: $crate::Ttl) -> $crate::Result<()> {
            $to.set_everywhere(key, value, ttl)
        }
    };
    (@one $s:ident => $to:expr; set_if_absent_everywhere) => {
        fn set_if_absent_everywhere(
            &$s,
            key: &str,
            value: &[u8],
            ttl: $crate::Ttl,
        ) -> $crate::Result<bool> {
            $to.set_if_absent_everywhere(key, value, ttl)
        }
    };
    (@one $s:ident => $to:expr; peek) => {
        fn peek(&$s, key: &str) -> Option<bytes::Bytes> {
            $to.peek(key)
        }
    };
}
pub(crate) use delegate_store;

/// The trait for a type whose inherent methods already are the store's
/// operations under the same names (`Client`, `Cluster`): each trait
/// method calls the inherent one, the batch write passing its items on as
/// an iterator. `$extra` are the type's own overrides of the others.
macro_rules! store_from_inherent {
    ($ty:ty $(, { $($extra:item)* })?) => {
        impl $crate::CacheStore for $ty {
            fn get(&self, key: &str) -> $crate::Result<Option<bytes::Bytes>> {
                <$ty>::get(self, key)
            }
            fn set_with_ttl(&self, key: &str, value: &[u8], ttl: $crate::Ttl) -> $crate::Result<()> {
                <$ty>::set_with_ttl(self, key, value, ttl)
            }
            fn delete(&self, key: &str) -> $crate::Result<()> {
                <$ty>::delete(self, key)
            }
            fn default_ttl(&self) -> $crate::Ttl {
                <$ty>::default_ttl(self)
            }
            fn get_many(
                &self,
                keys: &[&str],
            ) -> $crate::Result<Vec<$crate::ItemResult<Option<bytes::Bytes>>>> {
                <$ty>::get_many(self, keys)
            }
            fn set_many_with_ttl(
                &self,
                items: &[(&str, &[u8])],
                ttl: $crate::Ttl,
            ) -> $crate::Result<Vec<$crate::ItemResult<()>>> {
                <$ty>::set_many_with_ttl(self, items.iter().copied(), ttl)
            }
            fn delete_many(&self, keys: &[&str]) -> $crate::Result<Vec<$crate::ItemResult<()>>> {
                <$ty>::delete_many(self, keys)
            }
            fn set_if_absent_with_ttl(
                &self,
                key: &str,
                value: &[u8],
                ttl: $crate::Ttl,
            ) -> $crate::Result<bool> {
                <$ty>::set_if_absent_with_ttl(self, key, value, ttl)
            }
            fn compare_and_set_with_ttl(
                &self,
                key: &str,
                expected: &[u8],
                value: &[u8],
                ttl: $crate::Ttl,
            ) -> $crate::Result<$crate::CasOutcome> {
                <$ty>::compare_and_set_with_ttl(self, key, expected, value, ttl)
            }
            fn touch(&self, key: &str, ttl: $crate::Ttl) -> $crate::Result<bool> {
                <$ty>::touch(self, key, ttl)
            }
            $($($extra)*)?
        }
    };
}
pub(crate) use store_from_inherent;

/// References, `Arc`s and boxes of a store are the store: `&client`,
/// `Arc<dyn CacheStore>` and `Box<dyn CacheStore>` go wherever a store does.
macro_rules! forward_store {
    ($([$($wrapper:tt)*]),*) => {$(
        impl<S: CacheStore + ?Sized> CacheStore for $($wrapper)* {
            delegate_store!(self => (**self);
                get, set_with_ttl, delete, default_ttl, get_many, set_many_with_ttl,
                delete_many, set_if_absent_with_ttl, compare_and_set_with_ttl, touch,
                get_many_latest, set_everywhere, set_if_absent_everywhere, peek,
            );
        }
    )*};
}

forward_store!([Arc<S>], [Box<S>], [&S]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: &dyn CacheStore) {}
        let _ = takes;
    }
}
