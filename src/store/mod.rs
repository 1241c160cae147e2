//! The one trait of a key-value store with TTLs: what [`Client`](crate::Client),
//! `Cluster` and the caching layers have in common, so that a program, a
//! layer or a tool can take any of them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::ttl::Ttl;
use crate::ttl::DEFAULT_TTL;

pub mod pipeline;
mod tag;

pub use tag::hash_tag;
#[cfg(feature = "cache")]
pub(crate) use tag::{companion_key, sha256_hex};

use pipeline::{Op, Pipeline, Started};

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
        touch_by_cas(key, ttl, || Ok(self), |value| Some(value.clone()))
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

    /// Whether one server decides each key's `set_if_absent` and
    /// `compare_and_set`, so that layers can build on them (leases, a
    /// refresh that replaces exactly what it read). `false` for a store
    /// that refuses them (a `Cluster` with several replicas of a key) or
    /// has none; layers then do without. The provided form says `true`: a
    /// store of your own that keeps the provided `compare_and_set` (which
    /// answers `Unsupported`) should say `false`.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::CacheStore;
    /// assert!(client.conditional_writes());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn conditional_writes(&self) -> bool {
        true
    }

    /// The value of `key` if this store holds it in process, without any
    /// I/O or waiting; `None` otherwise (always, for stores with nothing
    /// local). Layers ask this before anything that could block.
    fn peek(&self, key: &str) -> Option<Bytes> {
        let _ = key;
        None
    }

    /// A [`Pipeline`] on this store: operations sent together and waited
    /// for once. For a `&dyn CacheStore`, use [`Pipeline::on`].
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// use tiny_cache_client::{CacheStore, Client};
    ///
    /// fn warm(store: &impl CacheStore) -> tiny_cache_client::Result<()> {
    ///     store.pipeline().set("a", "1").set("b", "2").run()?;
    ///     Ok(())
    /// }
    /// warm(&Client::new(&server.address())?)?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn pipeline(&self) -> Pipeline<'_>
    where
        Self: Sized,
    {
        Pipeline::on(self)
    }

    /// Starts `ops` (within `timeout`, or the store's own deadline per
    /// call) and returns the handle their outcomes come in on; what
    /// [`Pipeline::start`] calls. The provided form runs them one after
    /// another before it returns, and can only stop starting them once
    /// `timeout` has passed: each one it starts keeps the store's own
    /// deadline. A store that can overlap calls (`Client`, `Cluster`)
    /// overrides it, and bounds every call by `timeout`.
    fn start_pipeline(&self, ops: Vec<Op>, timeout: Option<Duration>) -> Started<'_> {
        Started::finished(pipeline::run_in_turn(self, &ops, timeout))
    }
}

/// The rounds of a touch: each reads `key` from the store `each_round`
/// gives (the store itself, or a handle bounded by what is left of the
/// touch's deadline) and writes `rewrite(value)` back for `ttl` (none: the
/// value stands for a missing key, and the touch finds nothing) by
/// compare-and-set, so a concurrent writer is never overwritten with an
/// older value. A lost race reads the new value and touches it in turn, up
/// to [`TOUCH_ATTEMPTS`] rounds, then fails with [`touch_lost`].
pub(crate) fn touch_by_cas<S: CacheStore>(
    key: &str,
    ttl: Ttl,
    mut each_round: impl FnMut() -> Result<S>,
    rewrite: impl Fn(&Bytes) -> Option<Bytes>,
) -> Result<bool> {
    for _ in 0..TOUCH_ATTEMPTS {
        let store = each_round()?;
        // No value, or one that stands for none (a cluster's tombstone).
        let Some(value) = store.get(key)? else {
            return Ok(false);
        };
        let Some(rewritten) = rewrite(&value) else {
            return Ok(false);
        };
        match store.compare_and_set_with_ttl(key, &value, &rewritten, ttl)? {
            CasOutcome::Stored => return Ok(true),
            CasOutcome::NotFound => return Ok(false),
            // Changed between the read and the write: touch the new one.
            CasOutcome::Mismatch => {}
        }
    }
    Err(touch_lost(key))
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
        $crate::store::delegate_store!(@fn $s => $to; get(key: &str)
            -> $crate::Result<Option<bytes::Bytes>>);
    };
    (@one $s:ident => $to:expr; set_with_ttl) => {
        $crate::store::delegate_store!(@fn $s => $to; set_with_ttl(key: &str, value: &[u8],
            ttl: $crate::Ttl) -> $crate::Result<()>);
    };
    (@one $s:ident => $to:expr; delete) => {
        $crate::store::delegate_store!(@fn $s => $to; delete(key: &str) -> $crate::Result<()>);
    };
    (@one $s:ident => $to:expr; default_ttl) => {
        $crate::store::delegate_store!(@fn $s => $to; default_ttl() -> $crate::Ttl);
    };
    (@one $s:ident => $to:expr; get_many) => {
        $crate::store::delegate_store!(@fn $s => $to; get_many(keys: &[&str])
            -> $crate::Result<Vec<$crate::ItemResult<Option<bytes::Bytes>>>>);
    };
    (@one $s:ident => $to:expr; set_many_with_ttl) => {
        $crate::store::delegate_store!(@fn $s => $to; set_many_with_ttl(items: &[(&str, &[u8])],
            ttl: $crate::Ttl) -> $crate::Result<Vec<$crate::ItemResult<()>>>);
    };
    (@one $s:ident => $to:expr; delete_many) => {
        $crate::store::delegate_store!(@fn $s => $to; delete_many(keys: &[&str])
            -> $crate::Result<Vec<$crate::ItemResult<()>>>);
    };
    (@one $s:ident => $to:expr; set_if_absent_with_ttl) => {
        $crate::store::delegate_store!(@fn $s => $to; set_if_absent_with_ttl(key: &str,
            value: &[u8], ttl: $crate::Ttl) -> $crate::Result<bool>);
    };
    (@one $s:ident => $to:expr; compare_and_set_with_ttl) => {
        $crate::store::delegate_store!(@fn $s => $to; compare_and_set_with_ttl(key: &str,
            expected: &[u8], value: &[u8], ttl: $crate::Ttl) -> $crate::Result<$crate::CasOutcome>);
    };
    (@one $s:ident => $to:expr; touch) => {
        $crate::store::delegate_store!(@fn $s => $to; touch(key: &str, ttl: $crate::Ttl)
            -> $crate::Result<bool>);
    };
    (@one $s:ident => $to:expr; get_many_latest) => {
        $crate::store::delegate_store!(@fn $s => $to; get_many_latest(keys: &[&str],
            latest: &[bool]) -> $crate::Result<Vec<$crate::ItemResult<Option<bytes::Bytes>>>>);
    };
    (@one $s:ident => $to:expr; set_everywhere) => {
        $crate::store::delegate_store!(@fn $s => $to; set_everywhere(key: &str, value: &[u8],
            ttl: $crate::Ttl) -> $crate::Result<()>);
    };
    (@one $s:ident => $to:expr; set_if_absent_everywhere) => {
        $crate::store::delegate_store!(@fn $s => $to; set_if_absent_everywhere(key: &str,
            value: &[u8], ttl: $crate::Ttl) -> $crate::Result<bool>);
    };
    (@one $s:ident => $to:expr; start_pipeline) => {
        $crate::store::delegate_store!(@fn $s => $to; start_pipeline(
            ops: Vec<$crate::pipeline::Op>, timeout: Option<std::time::Duration>)
            -> $crate::pipeline::Started<'_>);
    };
    (@one $s:ident => $to:expr; conditional_writes) => {
        $crate::store::delegate_store!(@fn $s => $to; conditional_writes() -> bool);
    };
    (@one $s:ident => $to:expr; peek) => {
        $crate::store::delegate_store!(@fn $s => $to; peek(key: &str) -> Option<bytes::Bytes>);
    };
    (@fn $s:ident => $to:expr; $method:ident($($arg:ident: $ty:ty),*) -> $out:ty) => {
        fn $method(&$s, $($arg: $ty),*) -> $out {
            $to.$method($($arg),*)
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

/// The inherent operations of a type that is a store (`Client`, `Cluster`)
/// taking `impl AsRef<[u8]>`, `impl Into<Ttl>` and iterators of keys or
/// entries: the one place their signatures are written, as redis-rs's
/// `implement_commands!` writes every command's. Invoked inside the type's
/// `impl` block.
///
/// The type gives each method's doc comment (with its example) and:
/// - for a form with a TTL and the multi-key forms, its body, written over
///   the arguments already converted (`key: &str`, `value: &[u8]`,
///   `ttl: Ttl`, `keys: &[&str]`, `items: &[(&str, &[u8])]`) and named as
///   the caller likes: `fn set_with_ttl(&self, key, value, ttl) { ... }`;
/// - for a form without one (`fn set;`), nothing: it calls the form with
///   a TTL with the type's inherent `default_ttl()`.
macro_rules! store_methods {
    (@each) => {};
    (@each $(#[$doc:meta])* fn $name:ident; $($rest:tt)*) => {
        $crate::store::store_methods!(@default $name $(#[$doc])*);
        $crate::store::store_methods!(@each $($rest)*);
    };
    (@each $(#[$doc:meta])* fn $name:ident(&$s:ident $(, $arg:ident)*) $body:block
        $($rest:tt)*) => {
        $crate::store::store_methods!(@body $name ($s $(, $arg)*) $body $(#[$doc])*);
        $crate::store::store_methods!(@each $($rest)*);
    };

    // The forms without a TTL.
    (@default set $(#[$doc:meta])*) => {
        $crate::store::store_methods!(@entry_default set set_with_ttl (); $(#[$doc])*);
    };
    (@default set_if_absent $(#[$doc:meta])*) => {
        $crate::store::store_methods!(
            @entry_default set_if_absent set_if_absent_with_ttl bool; $(#[$doc])*
        );
    };
    (@default set_many $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn set_many<I, K, V>(&self, items: I) -> $crate::Result<Vec<$crate::ItemResult<()>>>
        where
            I: IntoIterator<Item = (K, V)>,
            K: AsRef<str>,
            V: AsRef<[u8]>,
        {
            self.set_many_with_ttl(items, self.default_ttl())
        }
    };
    (@default compare_and_set $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn compare_and_set(
            &self,
            key: &str,
            expected: impl AsRef<[u8]>,
            value: impl AsRef<[u8]>,
        ) -> $crate::Result<$crate::CasOutcome> {
            self.compare_and_set_with_ttl(key, expected, value, self.default_ttl())
        }
    };
    (@entry_default $name:ident $with_ttl:ident $out:ty; $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn $name(&self, key: &str, value: impl AsRef<[u8]>) -> $crate::Result<$out> {
            self.$with_ttl(key, value, self.default_ttl())
        }
    };

    // The forms with a TTL, and the multi-key forms.
    (@body set_with_ttl $($rest:tt)*) => {
        $crate::store::store_methods!(@entry set_with_ttl (), $($rest)*);
    };
    (@body set_if_absent_with_ttl $($rest:tt)*) => {
        $crate::store::store_methods!(@entry set_if_absent_with_ttl bool, $($rest)*);
    };
    (@body get_many $($rest:tt)*) => {
        $crate::store::store_methods!(@keys get_many Option<bytes::Bytes>, $($rest)*);
    };
    (@body delete_many $($rest:tt)*) => {
        $crate::store::store_methods!(@keys delete_many (), $($rest)*);
    };
    (@body compare_and_set_with_ttl
        ($s:ident, $key:ident, $expected:ident, $value:ident, $ttl:ident) $body:block
        $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn compare_and_set_with_ttl(
            &$s,
            $key: &str,
            $expected: impl AsRef<[u8]>,
            $value: impl AsRef<[u8]>,
            $ttl: impl Into<$crate::Ttl>,
        ) -> $crate::Result<$crate::CasOutcome> {
            let ($expected, $value): (&[u8], &[u8]) = ($expected.as_ref(), $value.as_ref());
            let $ttl: $crate::Ttl = $ttl.into();
            $body
        }
    };
    (@body set_many_with_ttl ($s:ident, $items:ident, $ttl:ident) $body:block
        $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn set_many_with_ttl<I, K, V>(
            &$s,
            $items: I,
            $ttl: impl Into<$crate::Ttl>,
        ) -> $crate::Result<Vec<$crate::ItemResult<()>>>
        where
            I: IntoIterator<Item = (K, V)>,
            K: AsRef<str>,
            V: AsRef<[u8]>,
        {
            let $ttl: $crate::Ttl = $ttl.into();
            let owned: Vec<(K, V)> = $items.into_iter().collect();
            let $items: &[(&str, &[u8])] = &owned
                .iter()
                .map(|(key, value)| (key.as_ref(), value.as_ref()))
                .collect::<Vec<_>>();
            $body
        }
    };
    (@entry $name:ident $out:ty, ($s:ident, $key:ident, $value:ident, $ttl:ident) $body:block
        $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn $name(
            &$s,
            $key: &str,
            $value: impl AsRef<[u8]>,
            $ttl: impl Into<$crate::Ttl>,
        ) -> $crate::Result<$out> {
            let ($value, $ttl): (&[u8], $crate::Ttl) = ($value.as_ref(), $ttl.into());
            $body
        }
    };
    (@keys $name:ident $item:ty, ($s:ident, $keys:ident) $body:block $(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn $name<I>(&$s, $keys: I) -> $crate::Result<Vec<$crate::ItemResult<$item>>>
        where
            I: IntoIterator,
            I::Item: AsRef<str>,
        {
            let owned: Vec<I::Item> = $keys.into_iter().collect();
            let $keys: &[&str] = &owned.iter().map(AsRef::as_ref).collect::<Vec<&str>>();
            $body
        }
    };
    ($($methods:tt)*) => {
        $crate::store::store_methods!(@each $($methods)*);
    };
}
pub(crate) use store_methods;

/// References, `Arc`s and boxes of a store are the store: `&client`,
/// `Arc<dyn CacheStore>` and `Box<dyn CacheStore>` go wherever a store does.
macro_rules! forward_store {
    ($([$($wrapper:tt)*]),*) => {$(
        impl<S: CacheStore + ?Sized> CacheStore for $($wrapper)* {
            delegate_store!(self => (**self);
                get, set_with_ttl, delete, default_ttl, get_many, set_many_with_ttl,
                delete_many, set_if_absent_with_ttl, compare_and_set_with_ttl, touch,
                get_many_latest, set_everywhere, set_if_absent_everywhere, peek,
                start_pipeline, conditional_writes,
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

    #[test]
    fn the_results_can_cross_threads() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Error>();
        shareable::<ItemResult<Option<Bytes>>>();
        shareable::<CasOutcome>();
    }
}
