//! Leases: one fill per key across processes (memcache's leases, Scaling
//! Memcache at Facebook, NSDI 2013).
//!
//! Single flight stops a stampede inside one process; a lease stops it
//! across the fleet. On a miss, the process's one loader for the key asks
//! the server for the key's lease: a `SetIfAbsent` of `lease:{<key>}` (on
//! a `Cluster`, the key's own servers, by its [hash tag](crate::hash_tag)) holding a random
//! token, for the lease TTL. The winner computes and stores. Every other
//! process waits, polling with backoff up to its own wait timeout, for the
//! value to appear; if the holder dies, its lease expires and the next
//! poll takes it.
//!
//! A delete of the key through the layer also deletes its lease, and the
//! holder stores its value only if the lease is still its own (a
//! `CompareAndSet` of the lease against its token), so a fill that began
//! before a delete does not land after it. A delete that lands between
//! that check and the value's write can still be undone by it: the window
//! is one round trip. The lease TTL must outlast the load: a load that
//! takes longer finds its lease gone, cannot tell that from a delete, and
//! does not store its value. A load that fails gives its lease back; one
//! that panics leaves it to expire. A lease given back holds `released`
//! (for a second: there is no delete-if-equal) and is free to take at once.
//!
//! A store that takes no conditional writes (a `Cluster` with R > 1)
//! refuses the lease: the layer then fills with single flight alone. A
//! store of the user's with `SetIfAbsent` but no compare-and-set has
//! leases that stop stampedes, but a delete cannot void a fill under way,
//! and a lease given back is taken again only once it expires.
//!
//! With refresh-ahead, a refresh takes the key's lease too, without
//! waiting: a process that finds it taken skips its refresh (counted in
//! `refreshes_skipped`), since the holder's will replace the entry.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::memo_key;
use crate::store::companion_key;
use crate::{CacheStore, CasOutcome, Error, Ttl};

/// The default lease TTL: long enough for a slow load, short enough that
/// a dead holder delays its key's next fill by little.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// Longest pause between polls of a waiting process.
const MAX_POLL: Duration = Duration::from_millis(100);

/// Longest lease key: the server takes 256 characters, less a namespace.
const MAX_LEASE_KEY_CHARS: usize = 180;

/// The key a key's lease is stored under: one with the key's
/// [hash tag](crate::hash_tag), so a `Cluster` keeps the lease on the
/// key's own servers (`lease:{<key>}`, or `lease:=<key>` for a tagged key).
/// A key that cannot lend its tag (too long, or braced without a tag)
/// gets `lease:<key>` through [`memo_key`], placed on its own.
pub(crate) fn lease_key(key: &str) -> String {
    companion_key("lease", key, MAX_LEASE_KEY_CHARS).unwrap_or_else(|| memo_key("lease", key))
}

/// What asking for a lease gave.
pub(crate) enum Asked {
    /// This process holds the lease: it computes and stores.
    Held(Lease),
    /// Another process filled the key meanwhile: its stored bytes.
    Filled(Bytes),
    /// The wait timeout passed with neither.
    TimedOut,
}

/// A lease this process holds.
pub(crate) struct Lease {
    key: String,
    token: String,
    ttl: Ttl,
}

/// Asks for `key`'s lease until `deadline`; while another process holds
/// it, polls `key` with backoff for the value it will store. `filled`
/// says whether stored bytes count as the value (a remembered miss or an
/// entry due for recompute may not).
pub(crate) fn ask(
    store: &dyn CacheStore,
    key: &str,
    ttl: Duration,
    deadline: Instant,
    filled: &dyn Fn(&Bytes) -> bool,
) -> Result<Asked, Error> {
    let lease = Lease {
        key: lease_key(key),
        token: token(),
        ttl: Ttl::After(ttl),
    };
    let mut pause = Duration::from_millis(2);
    loop {
        if Instant::now() >= deadline {
            return Ok(Asked::TimedOut);
        }
        if lease.take(store)? {
            // The last holder may have stored the value and given the
            // lease back between this process's miss and now.
            if let Some(stored) = store.get(key)? {
                if filled(&stored) {
                    lease.release(store);
                    return Ok(Asked::Filled(stored));
                }
            }
            return Ok(Asked::Held(lease));
        }
        if let Some(stored) = store.get(key)? {
            if filled(&stored) {
                return Ok(Asked::Filled(stored));
            }
        }
        // The last pause ends at the deadline, whose check opens the loop.
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Takes `key`'s lease if nobody holds it, without waiting: for a
/// refresh, which another process's holder makes needless.
pub(crate) fn try_take(
    store: &dyn CacheStore,
    key: &str,
    ttl: Duration,
) -> Result<Option<Lease>, Error> {
    let lease = Lease {
        key: lease_key(key),
        token: token(),
        ttl: Ttl::After(ttl),
    };
    Ok(lease.take(store)?.then_some(lease))
}

impl Lease {
    /// Takes the lease if it is free: absent, or given back by its last
    /// holder (which leaves [`RELEASED`] for a second, there being no
    /// delete-if-equal). One taker wins either way: the server judges
    /// both conditions.
    fn take(&self, store: &dyn CacheStore) -> Result<bool, Error> {
        let token = self.token.as_bytes();
        if store.set_if_absent_with_ttl(&self.key, token, self.ttl)? {
            return Ok(true);
        }
        match store.compare_and_set_with_ttl(&self.key, RELEASED, token, self.ttl) {
            Ok(outcome) => Ok(outcome == CasOutcome::Stored),
            // Without compare-and-set a released lease is taken only once
            // it expires.
            Err(Error::Unsupported { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Whether the lease is still this process's: nobody deleted the key
    /// (which deletes its lease) since it was taken.
    pub(crate) fn still_held(&self, store: &dyn CacheStore) -> bool {
        let token = self.token.as_bytes();
        match store.compare_and_set_with_ttl(&self.key, token, token, self.ttl) {
            Ok(outcome) => outcome == CasOutcome::Stored,
            // A store without compare-and-set cannot tell: its leases
            // stop stampedes but cannot void a fill (documented).
            Err(Error::Unsupported { .. }) => true,
            Err(_) => false,
        }
    }

    /// Gives the lease back: if it is still this process's, it becomes
    /// [`RELEASED`], free for the next taker at once, for a second (there
    /// is no delete-if-equal; a lease taken over by another process, after
    /// this one's expired, is left alone).
    pub(crate) fn release(self, store: &dyn CacheStore) {
        let token = self.token.as_bytes();
        let _ =
            store.compare_and_set_with_ttl(&self.key, token, RELEASED, Ttl::After(RELEASED_FOR));
    }
}

/// What a given-back lease holds: free to take (by compare-and-set).
const RELEASED: &[u8] = b"released";

/// How long a given-back lease stays before the server drops it.
const RELEASED_FOR: Duration = Duration::from_secs(1);

/// A token no other holder will have: the process, the time and a
/// counter.
fn token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
