//! Per-layer counters and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of one layer's counters, in mtaio's terms.
///
/// Each layer counts what it can know: a [`ReadThrough`](crate::cache::ReadThrough)
/// counts hits, misses, loads, load errors, coalesced waits and store
/// failures; a near cache counts its local hits, misses, evictions and
/// expirations. What a layer cannot know stays zero (the remote server's
/// own evictions are in [`Client::stats`](crate::Client::stats)).
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use std::time::Duration;
/// use tiny_cache_client::cache::ReadThrough;
///
/// let cache = ReadThrough::new(client);
/// cache.get_with("answer", Duration::from_secs(60), || "42")?;
/// cache.get_with("answer", Duration::from_secs(60), || "never runs")?;
/// let stats = cache.local_stats();
/// assert_eq!((stats.hits, stats.misses, stats.loads), (1, 1, 1));
/// assert_eq!(stats.hit_rate(), 0.5);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from this layer.
    pub hits: u64,
    /// Lookups this layer could not answer.
    pub misses: u64,
    /// Entries removed to stay within the size bound.
    pub evictions: u64,
    /// Entries removed because their TTL passed.
    pub expirations: u64,
    /// Loader runs (closures called on a miss).
    pub loads: u64,
    /// Loader runs that returned an error.
    pub load_errors: u64,
    /// Callers that waited for another thread's load of the same key
    /// instead of loading it themselves.
    pub coalesced_waits: u64,
    /// Store failures absorbed by failing open (the value was computed or
    /// the read reported a miss instead of failing the caller).
    pub store_failures: u64,
    /// Background refreshes that stored a new value (refresh-ahead).
    pub refreshes: u64,
    /// Background refreshes whose loader or write failed: the old value
    /// stays until it expires.
    pub refresh_failures: u64,
    /// Refreshes skipped: the refresh queue was full, or (with leases)
    /// another process held the key's lease and was refreshing it.
    pub refreshes_skipped: u64,
}

impl CacheStats {
    /// Hits over lookups, 0 when nothing was looked up.
    ///
    /// ```
    /// use tiny_cache_client::cache::CacheStats;
    ///
    /// assert_eq!(CacheStats::default().hit_rate(), 0.0);
    /// ```
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

/// Live counters and their snapshot: one `AtomicU64` per field of the
/// snapshot type (each field named as there), and `snapshot()` reading
/// them all. Statistics need no ordering with anything else.
macro_rules! live_counters {
    ($(#[$doc:meta])* $name:ident => $snapshot:ident { $($field:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub(crate) struct $name {
            $(pub(crate) $field: AtomicU64,)+
        }

        impl $name {
            pub(crate) fn snapshot(&self) -> $snapshot {
                $snapshot {
                    $($field: self.$field.load(Ordering::Relaxed),)+
                }
            }
        }
    };
}

live_counters! {
    /// The live counters behind a [`CacheStats`].
    Counters => CacheStats {
        hits, misses, evictions, expirations, loads, load_errors, coalesced_waits, store_failures,
        refreshes, refresh_failures, refreshes_skipped,
    }
}

/// Adds one; statistics need no ordering with anything else.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
