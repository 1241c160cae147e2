//! One client over many servers (feature `cluster`).
//!
//! [`Cluster`] spreads keys over N tiny-cache servers, each reached by its
//! own [`Client`], with the same operations and the same [`Error`]s.
//!
//! # Placement
//!
//! Rendezvous (highest random weight) hashing: each server scores each key
//! with xxh3-64 (seeded by the server's `host:port`), weighted as
//! `-weight / ln(u)` with `u` the hash mapped to (0, 1); the key lives on
//! the best-scoring servers. Placement depends on the key and the server
//! names only, so it is the same in every process and build, and adding or
//! removing one of N servers moves about 1/N of the keys, all to or from
//! that server. [`Cluster::owners`] tells where a key lives.
//!
//! # Replication and what a reader sees
//!
//! With R replicas ([`ClusterBuilder::replicas`], default 1), a key lives on
//! the R best-ranked live servers. A write goes to all of them at once and
//! succeeds when at least one stored it (a replica it missed is repaired by
//! later reads); a delete succeeds only when every one of them answered,
//! since a replica that missed it may still hold the value.
//!
//! A read asks Q of them at once ([`ClusterBuilder::read_quorum`], default
//! 1), then the others of the R in place of any that fail; fewer than Q
//! answers fail the read. When all the answers are misses, the remaining
//! replicas are asked before reporting a miss, so a value survives a
//! replica that restarted empty. The newest answer wins (**last writer
//! wins** by the writer's clock), and replicas that answered with an older
//! copy or none are rewritten with it before the read returns (**read
//! repair**). With R = 1 a key has one server: while it fails, its keys
//! fail; once it is marked down they go to the next-ranked server, where
//! they start as misses.
//!
//! With R > 1, every value carries a 20-byte envelope so replicas can be
//! compared: magic `74 63 E7`, version `01`, the write time in
//! microseconds since the Unix epoch and the expiry in seconds since the
//! epoch (0 = never), both u64 big-endian, then the value. The cluster
//! strips it; a plain [`Client`] reading one server directly sees those 20
//! bytes before the value. A value without an envelope (written by a plain
//! client) counts as older than any enveloped one. With R = 1 values are
//! stored as given, readable by any client.
//!
//! Clocks decide: a writer whose clock runs behind loses to an earlier
//! write from a faster clock. Read repair never overwrites a copy newer
//! than the one it repairs with: it is a compare-and-set against the copy
//! the replica answered, so a write landing between the read and the
//! repair stays.
//!
//! While replicas remain to be asked, no single attempt may use the whole
//! deadline: each round of a read gets an equal share of what is left for
//! it and every round that may follow, so with R = 2 a replica that hangs
//! costs a read half its deadline, not an error.
//!
//! # Hinted handoff
//!
//! A write or delete (or, with R = 1, a conditional write that stored)
//! acknowledged without one of the key's home servers
//! (the R best-ranked, whatever their health: one was marked down and a
//! stand-in took its place, or its part failed) leaves a *hint* for that
//! server in this process: the key and the last operation it missed.
//! Until the hint is delivered:
//!
//! - a read uses the hint as that server's answer instead of asking it,
//!   so a server that comes back with old data (it hung, was cut off by a
//!   partition, or restarted from a snapshot) cannot hide the write;
//! - a server marked down comes back at its first answer to a probe, and
//!   its hints are then delivered from the background thread (a write only
//!   if the server holds no newer copy, by compare-and-set; then the
//!   stand-ins' copies are deleted, so a later outage cannot serve them).
//!   Each delivery is ordered against writes of the same key to that
//!   server, so a delivery never overwrites a write that reached it first.
//! - a conditional write on a server with a hint for the key delivers the
//!   hint first, so its condition is judged against the newest value.
//! - with both of a key's home servers down, their hints still answer
//!   reads; a read that reaches neither, nor a hint, and finds only
//!   stand-ins' misses fails with [`Error::Unavailable`] (R > 1) rather
//!   than report a miss that may hide a value.
//!
//! What this guarantees, for the writes of this process: once acknowledged,
//! a write is never hidden by a server that missed it, with R = 1 as with
//! R > 1, provided the hint log had room ([`ClusterBuilder::hint_capacity`],
//! [`DEFAULT_HINT_CAPACITY`] keys per server). When it had not, the server
//! is marked as having missed writes: for [`DEFAULT_RECOVERY_WINDOW`] from
//! then, and again from its return, reads of its keys ask every replica
//! and the newest copy wins (R > 1); with R = 1 there is nothing to
//! compare, and a key past the log may read its old copy until it expires.
//! Hints live in memory: writes of another process, or of one that died
//! before delivering them, are covered for R > 1 only as far as a read
//! that reaches a replica with the newer copy (Q = R always does) and read
//! repair go. [`Cluster::servers`] counts pending, delivered and dropped
//! hints per server.
//!
//! A delete removes every live replica; a replica that was unreachable
//! during a delete that failed (not acknowledged) can bring the value back
//! through read repair (there are no tombstones).
//!
//! Conditional writes ([`Cluster::set_if_absent`],
//! [`Cluster::compare_and_set`]) need one server to decide, so with R > 1
//! they fail with [`Error::Validation`]; with R = 1 they run on the key's
//! server. [`Cluster::touch`] works with any R: each replica's copy gets the
//! new TTL by compare-and-set, keeping its write time.
//!
//! # Dead servers
//!
//! A server that fails [`failure_threshold`](ClusterBuilder::failure_threshold)
//! calls in a row (unreachable, deadline passed, broken protocol; not a
//! refused request) is marked down: its keys go to the next-ranked server.
//! After the [`cool_down`](ClusterBuilder::cool_down) a background thread
//! pings it every [`probe_interval`](ClusterBuilder::probe_interval), also
//! over a fresh connection (so the client's reconnect backoff, which grows
//! to minutes, does not delay the return), and brings it back at the
//! first answer. Every call has one deadline
//! ([`ClusterBuilder::timeout`]) covering its fallbacks, and a call's parts
//! for different servers run in parallel, so a dead server delays only the
//! calls that reach it, and those no later than their deadline.
//!
//! # Parallel parts
//!
//! A call's parts for several servers (R > 1 writes, quorum reads,
//! multi-key calls) run at once: the first on the caller's thread, the
//! others on helper threads the cluster keeps (a thread spawn per call
//! measured slower than the call itself, see `benches/cluster.rs`). A
//! helper is used only when idle or newly started, never queued behind a
//! busy one, so a part stuck on a dead server delays no other call. A part
//! for one server touches no other thread.
//!
//! ```
//! # #[cfg(feature = "server")] {
//! use tiny_cache_client::cluster::Cluster;
//! use tiny_cache_client::server::Server;
//!
//! let servers = [Server::local()?, Server::local()?, Server::local()?];
//! let cluster = servers
//!     .iter()
//!     .fold(Cluster::builder(), |builder, server| builder.server(&server.address()))
//!     .replicas(2)
//!     .build()?;
//! cluster.set("greeting", "hello")?;
//! assert_eq!(cluster.get("greeting")?.as_deref(), Some(&b"hello"[..]));
//! assert_eq!(cluster.owners("greeting").len(), 2);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
mod discovery;
pub(crate) mod envelope;
mod fanout;
mod hints;
mod node;
mod placement;
// `Cluster` as the crate's one store trait.
mod cache_store;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

pub use builder::{
    ClusterBuilder, ConfigureClient, DEFAULT_CLUSTER_MAX_RETRIES, DEFAULT_COOL_DOWN,
    DEFAULT_FAILURE_THRESHOLD, DEFAULT_HINT_CAPACITY, DEFAULT_POOL_SIZE_PER_SERVER,
    DEFAULT_PROBE_INTERVAL, DEFAULT_RECOVERY_WINDOW, DEFAULT_RESOLVE_INTERVAL,
};
pub use discovery::Resolver;

use builder::Settings;
use discovery::{Source, Wanted};
use envelope::Copy;
use fanout::in_parallel;
use hints::Hint;
use node::{is_server_failure, Node};

use crate::{CasOutcome, Client, Error, ItemResult, Result, Stats, Ttl, TOUCH_ATTEMPTS};

/// A client of many tiny-cache servers: keys placed by rendezvous hashing,
/// optionally replicated, dead servers skipped and probed back. A cheap
/// `Clone + Send + Sync` handle, like [`Client`]; dropping the last handle
/// stops its background thread and every server's client.
///
/// ```
/// # #[cfg(feature = "server")] {
/// use tiny_cache_client::cluster::Cluster;
/// use tiny_cache_client::server::Server;
///
/// let (a, b) = (Server::local()?, Server::local()?);
/// let cluster = Cluster::builder().server(&a.address()).server(&b.address()).build()?;
/// cluster.set("k", "v")?;
/// assert_eq!(cluster.get_string("k")?.as_deref(), Some("v"));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

/// One server's answer to a per-server call ([`Cluster::stats`],
/// [`Cluster::ping`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerResult<T> {
    /// The server, `host:port`.
    pub server: String,
    /// Its answer.
    pub result: Result<T>,
}

/// A server as the cluster sees it now: for dashboards and `bench`'s
/// per-server load.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerState {
    /// The server, `host:port`.
    pub server: String,
    /// Its placement weight.
    pub weight: f64,
    /// False while marked down (skipped, probed in the background).
    pub up: bool,
    /// Calls sent to it (a multi-key part counts once), probes excluded.
    pub calls: u64,
    /// Of those, the ones that failed for the server's sake (unreachable,
    /// deadline, protocol).
    pub failed_calls: u64,
    /// Writes and deletes it missed, waiting to be handed to it (see
    /// [hinted handoff](self#hinted-handoff)).
    pub pending_hints: usize,
    /// Hints handed to it since the cluster started.
    pub delivered_hints: u64,
    /// Hints it could not be given because its log was full.
    pub dropped_hints: u64,
}

struct Inner {
    shared: Arc<Shared>,
    watcher: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let watcher = self.watcher.get_mut().ok().and_then(Option::take);
        if let Some((stop, thread)) = watcher {
            // A delivery under way stops at its next hint instead of
            // holding the join for the rest of the log.
            self.shared.closing.store(true, Ordering::Relaxed);
            drop(stop);
            let _ = thread.join();
        }
    }
}

/// The servers as one call sees them: a snapshot, swapped whole when
/// discovery changes the set.
struct Topology {
    nodes: Vec<Arc<Node>>,
    slots: Vec<placement::Slot>,
}

struct Shared {
    settings: Settings,
    helpers: fanout::Helpers,
    topology: RwLock<Arc<Topology>>,
    sources: Vec<Source>,
    /// What each source gave last time it resolved.
    last_seen: Mutex<Vec<Vec<Wanted>>>,
    builder: ClusterBuilder,
    /// Set when the last handle is dropped: background work winds down.
    closing: AtomicBool,
}

/// What a call does on one server for some of its keys. Owned (cheap to
/// clone) so a part can go to a helper thread.
#[derive(Clone)]
pub(crate) enum Op {
    Get,
    Set { values: Arc<[Bytes]>, ttl: Ttl },
    Delete,
}

type KeyOutcome = std::result::Result<Option<Bytes>, Error>;

impl Cluster {
    /// A builder with no servers and every default.
    ///
    /// ```
    /// let builder = tiny_cache_client::cluster::Cluster::builder().server("127.0.0.1:50051");
    /// # drop(builder);
    /// ```
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::new()
    }

    pub(crate) fn start(builder: ClusterBuilder, sources: Vec<Source>) -> Result<Cluster> {
        let mut last_seen = Vec::with_capacity(sources.len());
        let mut wanted = Vec::new();
        for source in &sources {
            let found = discovery::expand(source, &builder.resolver).unwrap_or_default();
            wanted.extend(found.iter().cloned());
            last_seen.push(found);
        }
        let mut nodes = Vec::new();
        for server in dedup(wanted) {
            nodes.push(Arc::new(make_node(&builder, server)?));
        }
        let shared = Arc::new(Shared {
            settings: builder.settings.clone(),
            helpers: fanout::Helpers::new(),
            topology: RwLock::new(Arc::new(Topology::new(nodes))),
            sources,
            last_seen: Mutex::new(last_seen),
            builder,
            closing: AtomicBool::new(false),
        });
        let (stop, stopped) = mpsc::channel();
        let watched = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tiny-cache-cluster".into())
            .spawn(move || watch(&watched, &stopped))
            .map_err(|e| Error::Validation(format!("cannot start the cluster's thread: {e}")))?;
        Ok(Cluster {
            inner: Arc::new(Inner {
                shared,
                watcher: Mutex::new(Some((stop, thread))),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The TTL of the writes that name none (`set`, `set_many`, ...): the
    /// builder's `default_ttl`, one hour unless set.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// use tiny_cache_client::{cluster::Cluster, Ttl};
    ///
    /// let cluster = Cluster::builder().server(&server.address()).default_ttl(Ttl::Never).build()?;
    /// assert_eq!(cluster.default_ttl(), Ttl::Never);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn default_ttl(&self) -> Ttl {
        self.shared().settings.default_ttl
    }

    /// Reads `key` from its replicas (see the [module docs](self) for
    /// quorum, newest-wins and read repair). `Ok(None)` when missing.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// assert_eq!(cluster.get("missing")?, None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.shared().read(&[key], None).pop().unwrap_or(Ok(None))
    }

    /// Reads `key` as text; [`Error::NotUtf8`] when it is not UTF-8.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// cluster.set("name", "Ada")?;
    /// assert_eq!(cluster.get_string("name")?.as_deref(), Some("Ada"));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_string(&self, key: &str) -> Result<Option<String>> {
        crate::client::text_value(key, self.get(key)?)
    }

    /// Writes `key` to its R replicas with the default TTL.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// cluster.set("session:42", "{\"user\":7}")?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<()> {
        self.set_with_ttl(key, value, self.shared().settings.default_ttl)
    }

    /// Writes `key` to its R replicas with `ttl`.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// cluster.set_with_ttl("otp", "123456", std::time::Duration::from_secs(60))?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_with_ttl(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: impl Into<Ttl>,
    ) -> Result<()> {
        let ttl = ttl.into();
        ttl.wire_seconds()?;
        let values = [self.shared().encode(value.as_ref(), ttl, SystemTime::now())];
        let op = Op::Set {
            values: values.into(),
            ttl,
        };
        self.shared().write(&[key], &op).pop().unwrap_or(Ok(()))
    }

    /// Removes `key` from every live replica; a missing key succeeds.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// cluster.delete("never-written")?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, key: &str) -> Result<()> {
        self.shared()
            .write(&[key], &Op::Delete)
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Reads many keys: one call per server, all servers at once, results
    /// in the caller's order. A server that fails fails only its own keys.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let (a, b) = (tiny_cache_client::server::Server::local()?, tiny_cache_client::server::Server::local()?);
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&a.address()).server(&b.address()).build()?;
    /// cluster.set("a", "1")?;
    /// let found = cluster.get_many(["a", "b"])?;
    /// assert_eq!(found[0].result.as_ref().unwrap().as_deref(), Some(&b"1"[..]));
    /// assert_eq!(found[1].result, Ok(None));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_many<I>(&self, keys: I) -> Result<Vec<ItemResult<Option<Bytes>>>>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let keys: Vec<I::Item> = keys.into_iter().collect();
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        let outcomes = self.shared().read(&keys, None);
        Ok(per_item(&keys, outcomes))
    }

    /// Writes many entries with the default TTL; see
    /// [`set_many_with_ttl`](Self::set_many_with_ttl).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// let results = cluster.set_many([("a", "1"), ("b", "2")])?;
    /// assert!(results.iter().all(|r| r.result.is_ok()));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_many<I, K, V>(&self, items: I) -> Result<Vec<ItemResult<()>>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        self.set_many_with_ttl(items, self.shared().settings.default_ttl)
    }

    /// Writes many entries, all with `ttl`: one call per server, all
    /// servers at once, results in the caller's order.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// cluster.set_many_with_ttl([("a", "1")], tiny_cache_client::Ttl::Never)?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_many_with_ttl<I, K, V>(
        &self,
        items: I,
        ttl: impl Into<Ttl>,
    ) -> Result<Vec<ItemResult<()>>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let ttl = ttl.into();
        ttl.wire_seconds()?;
        let owned: Vec<(K, V)> = items.into_iter().collect();
        let keys: Vec<&str> = owned.iter().map(|(key, _)| key.as_ref()).collect();
        let now = SystemTime::now();
        let values: Vec<Bytes> = owned
            .iter()
            .map(|(_, value)| self.shared().encode(value.as_ref(), ttl, now))
            .collect();
        let outcomes = self.shared().write(
            &keys,
            &Op::Set {
                values: values.into(),
                ttl,
            },
        );
        Ok(per_item(
            &keys,
            outcomes.into_iter().map(|o| o.map(|()| None)).collect(),
        )
        .into_iter()
        .map(|item| ItemResult {
            key: item.key,
            result: item.result.map(|_| ()),
        })
        .collect())
    }

    /// Removes many keys from every live replica, results in the caller's
    /// order.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// assert_eq!(cluster.delete_many(["a", "b"])?.len(), 2);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_many<I>(&self, keys: I) -> Result<Vec<ItemResult<()>>>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let keys: Vec<I::Item> = keys.into_iter().collect();
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        let outcomes = self.shared().write(&keys, &Op::Delete);
        Ok(per_item(
            &keys,
            outcomes.into_iter().map(|o| o.map(|()| None)).collect(),
        )
        .into_iter()
        .map(|item| ItemResult {
            key: item.key,
            result: item.result.map(|_| ()),
        })
        .collect())
    }

    /// Writes `key` only if it is missing, on the key's server, with the
    /// default TTL; returns whether it was written. Only with R = 1: with
    /// more replicas no single server can decide, and the call fails with
    /// [`Error::Validation`].
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// assert!(cluster.set_if_absent("lock", "me")?);
    /// assert!(!cluster.set_if_absent("lock", "you")?);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_if_absent(&self, key: &str, value: impl AsRef<[u8]>) -> Result<bool> {
        self.set_if_absent_with_ttl(key, value, self.shared().settings.default_ttl)
    }

    /// [`set_if_absent`](Self::set_if_absent) with an explicit TTL.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// assert!(cluster.set_if_absent_with_ttl("lease", "w1", std::time::Duration::from_secs(10))?);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_if_absent_with_ttl(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: impl Into<Ttl>,
    ) -> Result<bool> {
        let ttl = ttl.into();
        let value = value.as_ref();
        self.shared().on_primary(
            key,
            "set_if_absent",
            (value, ttl),
            |stored| *stored,
            |client| client.set_if_absent_with_ttl(key, value, ttl),
        )
    }

    /// Replaces `key`'s value only if it equals `expected`, on the key's
    /// server, with the default TTL. Only with R = 1, like
    /// [`set_if_absent`](Self::set_if_absent).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// use tiny_cache_client::CasOutcome;
    /// cluster.set("n", "1")?;
    /// assert_eq!(cluster.compare_and_set("n", "1", "2")?, CasOutcome::Stored);
    /// assert_eq!(cluster.compare_and_set("n", "1", "3")?, CasOutcome::Mismatch);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compare_and_set(
        &self,
        key: &str,
        expected: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<CasOutcome> {
        self.compare_and_set_with_ttl(key, expected, value, self.shared().settings.default_ttl)
    }

    /// [`compare_and_set`](Self::compare_and_set) with an explicit TTL for
    /// the new value.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// use tiny_cache_client::{CasOutcome, Ttl};
    /// cluster.set("v", "a")?;
    /// assert_eq!(cluster.compare_and_set_with_ttl("v", "a", "b", Ttl::Never)?, CasOutcome::Stored);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compare_and_set_with_ttl(
        &self,
        key: &str,
        expected: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: impl Into<Ttl>,
    ) -> Result<CasOutcome> {
        let ttl = ttl.into();
        let value = value.as_ref();
        self.shared().on_primary(
            key,
            "compare_and_set",
            (value, ttl),
            |outcome| *outcome == CasOutcome::Stored,
            |client| client.compare_and_set_with_ttl(key, expected.as_ref(), value, ttl),
        )
    }

    /// Gives a present key a new TTL on every live replica without changing
    /// its value or its write time; returns whether any replica had it.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// use tiny_cache_client::Ttl;
    /// cluster.set("session", "alice")?;
    /// assert!(cluster.touch("session", Ttl::Never)?);
    /// assert!(!cluster.touch("gone", Ttl::Never)?);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn touch(&self, key: &str, ttl: impl Into<Ttl>) -> Result<bool> {
        self.shared().touch(key, ttl.into())
    }

    /// Every server's counters, asked in parallel.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// for answer in cluster.stats() {
    ///     println!("{}: {} entries", answer.server, answer.result?.size);
    /// }
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Vec<ServerResult<Stats>> {
        self.shared().per_server(|client| client.stats())
    }

    /// Pings every server in parallel (marked down or not), with each
    /// round-trip time.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// assert!(cluster.ping().iter().all(|answer| answer.result.is_ok()));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ping(&self) -> Vec<ServerResult<Duration>> {
        self.shared().per_server(|client| client.ping())
    }

    /// The servers now, in placement order of their names, with their
    /// health and load counters.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&server.address()).build()?;
    /// cluster.set("k", "v")?;
    /// let servers = cluster.servers();
    /// assert!(servers[0].up);
    /// assert_eq!(servers[0].calls, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn servers(&self) -> Vec<ServerState> {
        self.shared()
            .topology()
            .nodes
            .iter()
            .map(|node| ServerState {
                server: node.name.clone(),
                weight: node.weight,
                up: node.is_up(),
                calls: node.calls(),
                failed_calls: node.failed_calls(),
                pending_hints: node.hints.len(),
                delivered_hints: node.hints.delivered(),
                dropped_hints: node.hints.dropped(),
            })
            .collect()
    }

    /// The servers `key` is written to now: the R best-ranked live ones,
    /// best first.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let (a, b) = (tiny_cache_client::server::Server::local()?, tiny_cache_client::server::Server::local()?);
    /// # let cluster = tiny_cache_client::cluster::Cluster::builder().server(&a.address()).server(&b.address()).build()?;
    /// let owner = &cluster.owners("user:7")[0];
    /// assert!(*owner == a.address() || *owner == b.address());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn owners(&self, key: &str) -> Vec<String> {
        let shared = self.shared();
        let topology = shared.topology();
        topology
            .replicas(key, shared.settings.replicas)
            .into_iter()
            .map(|index| topology.nodes[index].name.clone())
            .collect()
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = self.shared();
        let topology = shared.topology();
        let names: Vec<&str> = topology.nodes.iter().map(|n| n.name.as_str()).collect();
        f.debug_struct("Cluster")
            .field("servers", &names)
            .field("replicas", &shared.settings.replicas)
            .field("read_quorum", &shared.settings.read_quorum)
            .finish_non_exhaustive()
    }
}

impl Topology {
    fn new(mut nodes: Vec<Arc<Node>>) -> Topology {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let slots = nodes.iter().map(|node| node.slot).collect();
        Topology { nodes, slots }
    }

    /// The key's first `replicas` live servers, best first.
    fn replicas(&self, key: &str, replicas: usize) -> Vec<usize> {
        let mut candidates = self.candidates(key);
        candidates.truncate(replicas);
        candidates
    }

    /// The key's first `replicas` live servers, best first, and its home:
    /// the first `replicas` servers whatever their health, the ones that
    /// must end up with every acknowledged write (a home server missing
    /// from the live ones gets a hint).
    fn placement(&self, key: &str, replicas: usize) -> (Vec<usize>, Vec<usize>) {
        let ranked = placement::rank(key, &self.slots);
        let mut live: Vec<usize> = ranked
            .iter()
            .copied()
            .filter(|&index| self.nodes[index].is_up())
            .take(replicas)
            .collect();
        let mut home = ranked;
        home.truncate(replicas);
        if live.is_empty() {
            live.clone_from(&home);
        }
        (live, home)
    }

    /// The key's live servers, best first; every server when none is live
    /// (trying a server marked down beats refusing outright).
    fn candidates(&self, key: &str) -> Vec<usize> {
        let ranked = placement::rank(key, &self.slots);
        let live: Vec<usize> = ranked
            .iter()
            .copied()
            .filter(|&index| self.nodes[index].is_up())
            .collect();
        if live.is_empty() {
            ranked
        } else {
            live
        }
    }
}

/// Per key: which servers to ask, and what they said.
struct Read {
    candidates: Vec<usize>,
    /// The key's home servers, whatever their health.
    home: Vec<usize>,
    next: usize,
    /// Answers, a server's hint standing in for asking it.
    answers: Vec<(usize, Option<Copy>)>,
    /// Answers needed: the read quorum, or every replica while one of the
    /// key's servers is recovering from missed writes.
    quorum: usize,
    error: Option<Error>,
    refused: Option<Error>,
}

/// Per key: which servers to write, and which stored it.
struct Write {
    candidates: Vec<usize>,
    /// The servers that must end up with the write (hinted if they miss it).
    home: Vec<usize>,
    next: usize,
    stored_on: Vec<usize>,
    error: Option<Error>,
    refused: Option<Error>,
}

impl Shared {
    fn topology(&self) -> Arc<Topology> {
        match self.topology.read() {
            Ok(topology) => Arc::clone(&topology),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn threshold(&self) -> u32 {
        self.settings.failure_threshold
    }

    fn encode(&self, value: &[u8], ttl: Ttl, now: SystemTime) -> Bytes {
        if self.settings.replicas > 1 {
            envelope::seal(value, ttl, now)
        } else {
            Bytes::copy_from_slice(value)
        }
    }

    fn decode(&self, copy: &Copy) -> Bytes {
        if self.settings.replicas > 1 {
            copy.value()
        } else {
            copy.raw.clone()
        }
    }

    /// Sends every server its part of a call, all at once (the first part
    /// on this thread, the others on helpers), and returns each part's
    /// outcome. Each part must end by `part_deadline` (no later than the
    /// call's), so that a server that does not answer leaves time to ask
    /// the next one.
    fn dispatch(
        &self,
        topology: &Arc<Topology>,
        op: &Op,
        keys: &[&str],
        plan: BTreeMap<usize, Vec<usize>>,
        part_deadline: PartDeadline,
    ) -> Vec<(usize, Vec<usize>, Result<Vec<KeyOutcome>>)> {
        let (threshold, timeout) = (self.threshold(), self.settings.timeout);
        if plan.len() == 1 {
            return plan
                .into_iter()
                .map(|(index, part)| {
                    let node = &topology.nodes[index];
                    let outcome = send_part(node, op, keys, &part, part_deadline);
                    if let Some(outcome) = &outcome {
                        node.record(outcome, threshold);
                    }
                    (index, part, outcome.unwrap_or_else(|| Err(late(timeout))))
                })
                .collect();
        }
        let owned: Arc<[String]> = keys.iter().map(|&key| key.to_owned()).collect();
        type Part = (usize, Vec<usize>, Result<Vec<KeyOutcome>>);
        let jobs: Vec<Box<dyn FnOnce() -> Part + Send>> = plan
            .into_iter()
            .map(|(index, part)| {
                let (topology, op, keys) = (Arc::clone(topology), op.clone(), Arc::clone(&owned));
                Box::new(move || {
                    let node = &topology.nodes[index];
                    let outcome = send_part(node, &op, &keys, &part, part_deadline);
                    if let Some(outcome) = &outcome {
                        node.record(outcome, threshold);
                    }
                    (index, part, outcome.unwrap_or_else(|| Err(late(timeout))))
                }) as Box<dyn FnOnce() -> Part + Send>
            })
            .collect();
        self.helpers.run_all(jobs)
    }

    /// Reads `keys`; a key flagged in `latest` asks every replica (newest
    /// wins) rather than the read quorum.
    fn read(&self, keys: &[&str], latest: Option<&[bool]>) -> Vec<KeyOutcome> {
        let topology = self.topology();
        let deadline = Instant::now() + self.settings.timeout;
        let (replicas, quorum) = (self.settings.replicas, self.settings.read_quorum);
        let mut reads: Vec<Read> = keys
            .iter()
            .enumerate()
            .map(|(at, key)| {
                let all = latest.is_some_and(|latest| latest.get(at) == Some(&true));
                let (candidates, home) = topology.placement(key, replicas);
                let mut read = Read {
                    candidates,
                    home,
                    next: 0,
                    answers: Vec::new(),
                    quorum: if all { replicas } else { quorum },
                    error: None,
                    refused: None,
                };
                self.answer_from_hints(&topology, key, &mut read);
                read
            })
            .collect();
        let mut first_round = true;
        loop {
            let mut plan: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            let mut spare = 0;
            for (at, read) in reads.iter_mut().enumerate() {
                if read.refused.is_some() {
                    continue;
                }
                let answered = read.answers.len();
                let all_missed = read.answers.iter().all(|(_, copy)| copy.is_none());
                let want = if answered < read.quorum {
                    read.quorum - answered
                } else if replicas > 1 && all_missed && answered < replicas {
                    // Confirm a miss with the other replicas: one of them
                    // may hold what a restarted replica lost.
                    replicas - answered
                } else {
                    0
                };
                let take = want.min(read.candidates.len() - read.next);
                for &index in &read.candidates[read.next..read.next + take] {
                    plan.entry(index).or_default().push(at);
                }
                read.next += take;
                spare = spare.max(read.candidates.len() - read.next);
            }
            if plan.is_empty() {
                break;
            }
            // With replicas left to ask, no server may take the whole
            // deadline: a hung one would leave nothing for the next.
            let part_deadline =
                PartDeadline::share(deadline, spare, first_round, self.settings.timeout);
            for (index, part, outcome) in
                self.dispatch(&topology, &Op::Get, keys, plan, part_deadline)
            {
                match outcome {
                    Err(error) => {
                        for at in part {
                            reads[at].error = Some(error.clone());
                        }
                    }
                    Ok(results) => {
                        for (at, result) in part.into_iter().zip(results) {
                            match result {
                                Ok(value) => {
                                    reads[at].answers.push((index, value.map(Copy::parse)))
                                }
                                Err(refused) => reads[at].refused = Some(refused),
                            }
                        }
                    }
                }
            }
            first_round = false;
        }

        let now = SystemTime::now();
        let mut repairs = Vec::new();
        let outcomes = reads
            .into_iter()
            .enumerate()
            .map(|(at, read)| {
                if let Some(refused) = read.refused {
                    return Err(refused);
                }
                if read.answers.is_empty() {
                    return Err(read.error.unwrap_or_else(no_servers));
                }
                // Recovering keys ask every replica but, as any read, need
                // only the read quorum to answer.
                let needed = quorum;
                if read.answers.len() < needed {
                    return Err(Error::Unavailable(
                        format!(
                            "read quorum not met for key {:?}: {} of {needed} replicas answered ({})",
                            keys[at],
                            read.answers.len(),
                            read.error.map_or_else(String::new, |e| e.to_string())
                        )
                        .into(),
                    ));
                }
                let newest = read
                    .answers
                    .iter()
                    .filter_map(|(_, copy)| copy.as_ref())
                    .fold(None::<&Copy>, |best, copy| match best {
                        Some(best) if !copy.is_newer_than(best) => Some(best),
                        _ => Some(copy),
                    });
                let Some(newest) = newest else {
                    // Only stand-ins answered, with misses: the value may
                    // be on a home server that failed or is down, and a
                    // miss would hide it. With R > 1 that is reported; with
                    // R = 1 a down server's keys start as misses on the
                    // next one (documented).
                    let home_answered = read.answers.iter().any(|(i, _)| read.home.contains(i));
                    return match read.error {
                        _ if home_answered => Ok(None),
                        Some(error) => Err(error),
                        None if replicas > 1 => Err(Error::Unavailable(
                            format!(
                                "no replica of key {:?} is reachable: its servers are marked \
                                 down and the stand-ins have no copy",
                                keys[at]
                            )
                            .into(),
                        )),
                        None => Ok(None),
                    };
                };
                if replicas > 1 && newest.remaining_ttl(now).is_some() {
                    for (index, copy) in &read.answers {
                        let stale = copy.as_ref().is_none_or(|copy| newest.is_newer_than(copy));
                        // A hinted server was not asked: its hint delivers.
                        if stale && !topology.nodes[*index].hints.contains(keys[at]) {
                            repairs.push(Repair {
                                index: *index,
                                at,
                                seen: copy.clone(),
                                newest: newest.clone(),
                            });
                        }
                    }
                }
                Ok(Some(self.decode(newest)))
            })
            .collect();
        self.repair(&topology, keys, repairs, deadline);
        outcomes
    }

    /// Puts what the key's hinted servers missed in their place as answers
    /// (so a server back with old data cannot hide an acknowledged write),
    /// and asks every replica while one of them is recovering from writes
    /// it missed unhinted.
    fn answer_from_hints(&self, topology: &Topology, key: &str, read: &mut Read) {
        let nodes = &topology.nodes;
        if read
            .candidates
            .iter()
            .any(|&index| nodes[index].is_recovering())
        {
            read.quorum = read.candidates.len().max(read.quorum);
        }
        let hinted = |index: &usize| !nodes[*index].hints.is_empty();
        if !read.candidates.iter().any(hinted) && !read.home.iter().any(hinted) {
            return;
        }
        let answer = |index: usize| {
            nodes[index]
                .hints
                .missed(key)
                .map(|raw| raw.map(Copy::parse))
        };
        let answers = &mut read.answers;
        read.candidates.retain(|&index| match answer(index) {
            Some(copy) => {
                answers.push((index, copy));
                false
            }
            None => true,
        });
        // A home server that is down is not asked, but what it missed
        // still counts: with both of a key's replicas down, its hint may
        // be the only record of the newest write.
        for &index in &read.home {
            if !nodes[index].is_up() && !answers.iter().any(|(i, _)| *i == index) {
                if let Some(copy) = answer(index) {
                    answers.push((index, copy));
                }
            }
        }
    }

    /// Rewrites stale replicas with the newest copy before the read
    /// returns, within its deadline. Never overwrites a copy newer than
    /// the one it is repairing with: each write is a compare-and-set
    /// against what the replica answered, so a write that lands between
    /// the read and the repair stays. A failed repair only counts against
    /// its server: the read already has its answer.
    fn repair(&self, topology: &Topology, keys: &[&str], repairs: Vec<Repair>, deadline: Instant) {
        if repairs.is_empty() {
            return;
        }
        if let Some(hook) = &self.settings.before_repair {
            (hook.0)();
        }
        let jobs: Vec<_> = repairs
            .into_iter()
            .map(|repair| {
                move || {
                    let Ok(left) = remaining(deadline, self.settings.timeout) else {
                        return;
                    };
                    let Some(ttl) = repair.newest.remaining_ttl(SystemTime::now()) else {
                        return;
                    };
                    let node = &topology.nodes[repair.index];
                    let outcome = node.client.with_timeout(left).and_then(|client| {
                        store_if_newer(&client, keys[repair.at], &repair.newest, repair.seen, ttl)
                    });
                    node.record(&outcome, self.threshold());
                }
            })
            .collect();
        in_parallel(jobs);
    }

    fn write(&self, keys: &[&str], op: &Op) -> Vec<Result<()>> {
        self.write_with(keys, op, false)
    }

    /// Writes `keys`; with `everywhere`, a write is acknowledged only when
    /// every replica stored it (as a delete always is).
    fn write_with(&self, keys: &[&str], op: &Op, everywhere: bool) -> Vec<Result<()>> {
        let topology = self.topology();
        let deadline = Instant::now() + self.settings.timeout;
        let replicas = self.settings.replicas;
        // A write stored anywhere is served (and repaired from); a delete
        // that missed a replica may leave the value there.
        let partial_ok = matches!(op, Op::Set { .. }) && !everywhere;
        let mut writes: Vec<Write> = keys
            .iter()
            .map(|key| {
                let (candidates, home) = topology.placement(key, replicas);
                Write {
                    candidates,
                    home,
                    next: 0,
                    stored_on: Vec::new(),
                    error: None,
                    refused: None,
                }
            })
            .collect();
        // Writes to a server with hints waiting are ordered against their
        // delivery (see `hints`): held until the hints are settled below.
        let mut stripes: Vec<(usize, usize)> = Vec::new();
        for (write, key) in writes.iter().zip(keys) {
            for &index in &write.candidates {
                let hints = &topology.nodes[index].hints;
                if !hints.is_empty() {
                    stripes.push((index, hints.stripe_of(key)));
                }
            }
        }
        stripes.sort_unstable();
        stripes.dedup();
        let mut _writing = Vec::with_capacity(stripes.len());
        for &(index, stripe) in &stripes {
            match topology.nodes[index].hints.writing_by(stripe, deadline) {
                Some(guard) => _writing.push(guard),
                // A delivery held it past this call's deadline: nothing
                // was sent.
                None => {
                    return keys
                        .iter()
                        .map(|_| Err(late(self.settings.timeout)))
                        .collect()
                }
            }
        }
        let mut first_round = true;
        loop {
            let mut plan: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (at, write) in writes.iter_mut().enumerate() {
                if write.refused.is_some() {
                    continue;
                }
                let want = replicas.saturating_sub(write.stored_on.len());
                let take = want.min(write.candidates.len() - write.next);
                for &index in &write.candidates[write.next..write.next + take] {
                    plan.entry(index).or_default().push(at);
                }
                write.next += take;
            }
            if plan.is_empty() {
                break;
            }
            // Every replica is written at once, so each part may use what
            // is left of the deadline.
            let part_deadline =
                PartDeadline::share(deadline, 0, first_round, self.settings.timeout);
            for (index, part, outcome) in self.dispatch(&topology, op, keys, plan, part_deadline) {
                match outcome {
                    Err(error) => {
                        for at in part {
                            writes[at].error = Some(error.clone());
                        }
                    }
                    Ok(results) => {
                        for (at, result) in part.into_iter().zip(results) {
                            match result {
                                Ok(_) => writes[at].stored_on.push(index),
                                Err(refused) => writes[at].refused = Some(refused),
                            }
                        }
                    }
                }
            }
            first_round = false;
        }
        writes
            .into_iter()
            .enumerate()
            .map(|(at, write)| {
                let outcome = match (&write.refused, &write.error) {
                    (Some(refused), _) => Err(refused.clone()),
                    (None, Some(error)) if !partial_ok || write.stored_on.is_empty() => {
                        Err(error.clone())
                    }
                    (None, _) if write.stored_on.is_empty() => Err(no_servers()),
                    _ => Ok(()),
                };
                // A server that stored it holds something newer than any
                // hint for the key, acknowledged or not.
                for &index in &write.stored_on {
                    topology.nodes[index].hints.forget(keys[at]);
                }
                if outcome.is_ok() {
                    self.hint_missed(&topology, keys[at], op, at, &write);
                }
                outcome
            })
            .collect()
    }

    /// After an acknowledged write: every home server of the key that did
    /// not store it gets a hint.
    fn hint_missed(&self, topology: &Topology, key: &str, op: &Op, at: usize, write: &Write) {
        let nodes = &topology.nodes;
        for &index in &write.home {
            if write.stored_on.contains(&index) {
                continue;
            }
            let hint = match op {
                Op::Set { values, ttl } => Hint::Set {
                    raw: values[at].clone(),
                    ttl: *ttl,
                    stand_ins: write
                        .stored_on
                        .iter()
                        .filter(|index| !write.home.contains(index))
                        .map(|&index| nodes[index].name.clone())
                        .collect(),
                },
                Op::Delete => Hint::Delete,
                Op::Get => continue,
            };
            let node = &nodes[index];
            if !node.hints.record(key, hint, self.settings.hint_capacity) {
                node.missed_a_hint(self.settings.recovery_window);
            }
        }
    }

    /// Delivers `node`'s hints through `client`: each write the server
    /// missed, unless it now holds a newer copy; each delete. Each under
    /// its key's stripe, checked still to be the key's hint first (a write
    /// that reached the server since made it void). Returns whether every
    /// hint waiting when it began was delivered (a server failure stops
    /// delivery; the rest waits for the next try). The stand-ins' copies
    /// of the delivered writes are collected for `clear_stand_ins`.
    fn deliver_hints(
        &self,
        node: &Node,
        client: &Client,
        delivered: &mut Vec<(String, Vec<String>)>,
    ) -> bool {
        if node.hints.is_empty() {
            return true;
        }
        let client = match client.with_timeout(self.settings.timeout) {
            Ok(client) => client.with_max_retries(0),
            Err(_) => return false,
        };
        for (key, hint) in node.hints.snapshot() {
            if self.closing.load(Ordering::Relaxed) {
                return false;
            }
            let _delivering = node.hints.delivering(&key);
            if !node.hints.holds(&key, &hint) {
                continue;
            }
            if self
                .deliver_one(node, &client, &key, hint, delivered)
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Delivers `hint` for `key` to `node` through `client`, the caller
    /// holding the key's stripe: `Err` only for a server failure (the hint
    /// stays). A write the server missed is stored unless it now holds a
    /// newer copy; the stand-ins of a delivered write go to `delivered`.
    fn deliver_one(
        &self,
        node: &Node,
        client: &Client,
        key: &str,
        hint: Hint,
        delivered: &mut Vec<(String, Vec<String>)>,
    ) -> Result<()> {
        let outcome = match &hint {
            Hint::Set { raw, .. } if self.settings.replicas > 1 => {
                let copy = Copy::parse(raw.clone());
                match copy.remaining_ttl(SystemTime::now()) {
                    // Expired meanwhile: nothing to deliver.
                    None => Ok(()),
                    Some(left) => store_if_newer(client, key, &copy, None, left),
                }
            }
            Hint::Set { raw, ttl, .. } => client.set_with_ttl(key, raw, *ttl),
            Hint::Delete => client.delete(key),
        };
        if let Err(error) = outcome {
            if is_server_failure(&error) {
                return Err(error);
            }
        }
        // Delivered, or refused for the key's own sake (a value the server
        // no longer takes): either way it is done.
        if node.hints.delivered_one(key, &hint) {
            if let Hint::Set { stand_ins, .. } = hint {
                if !stand_ins.is_empty() {
                    delivered.push((key.to_owned(), stand_ins));
                }
            }
        }
        Ok(())
    }

    /// Deletes a key's copies from the servers that stood in for its home
    /// server, now that the home server has it, unless a server is home
    /// to the key itself by now. Best effort: a copy left behind is only
    /// read while the home server is down again.
    fn clear_stand_ins(&self, delivered: Vec<(String, Vec<String>)>) {
        if delivered.is_empty() {
            return;
        }
        let topology = self.topology();
        for (key, stand_ins) in delivered {
            let (_, home) = topology.placement(&key, self.settings.replicas);
            for (index, node) in topology.nodes.iter().enumerate() {
                if !stand_ins.contains(&node.name) || home.contains(&index) {
                    continue;
                }
                let outcome = node
                    .client
                    .with_timeout(self.settings.timeout)
                    .and_then(|client| client.delete(&key));
                node.record(&outcome, self.threshold());
            }
        }
    }

    /// `SetIfAbsent` on each of the key's replicas at once: `true` only
    /// when every one stored it.
    #[cfg(feature = "cache")]
    fn set_if_absent_everywhere(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<bool> {
        ttl.wire_seconds()?;
        let topology = self.topology();
        let raw = self.encode(value, ttl, SystemTime::now());
        let jobs: Vec<_> = topology
            .replicas(key, self.settings.replicas)
            .into_iter()
            .map(|index| {
                let (topology, raw) = (&topology, &raw);
                move || {
                    let node = &topology.nodes[index];
                    let outcome = node.client.set_if_absent_with_ttl(key, raw, ttl);
                    node.record(&outcome, self.threshold());
                    outcome
                }
            })
            .collect();
        let mut stored_everywhere = true;
        for outcome in in_parallel(jobs) {
            stored_everywhere &= outcome?;
        }
        Ok(stored_everywhere)
    }

    /// Runs a conditional call on the key's best live server. A hint that
    /// server has for the key is delivered first (the condition must be
    /// judged against the newest value, not the copy it missed a write
    /// on); a write the call `stored` on a stand-in leaves a hint for the
    /// key's home server, as any write does.
    fn on_primary<T>(
        &self,
        key: &str,
        what: &str,
        written: (&[u8], Ttl),
        stored: impl Fn(&T) -> bool,
        call: impl FnOnce(&Client) -> Result<T>,
    ) -> Result<T> {
        if self.settings.replicas > 1 {
            return Err(Error::Validation(format!(
                "{what} needs a cluster with one replica: with {} no single server can decide it",
                self.settings.replicas
            )));
        }
        let topology = self.topology();
        let (live, home) = topology.placement(key, 1);
        let index = *live.first().ok_or_else(no_servers)?;
        let node = &topology.nodes[index];
        let timeout = self.settings.timeout;
        let deadline = Instant::now() + timeout;
        // Only with hints waiting does the call share its deadline with a
        // delivery; otherwise the server's own client and timeout serve.
        let hinted = !node.hints.is_empty();
        if node.hints.contains(key) {
            let mut delivered = Vec::new();
            let _delivering = node
                .hints
                .delivering_by(key, deadline)
                .ok_or_else(|| late(timeout))?;
            if let Some(hint) = node.hints.get(key) {
                let client = node.client.with_timeout(remaining(deadline, timeout)?)?;
                let outcome = self.deliver_one(node, &client, key, hint, &mut delivered);
                node.record(&outcome, self.threshold());
                outcome?;
            }
        }
        let (mut _writing, mut bounded) = (None, None);
        if hinted {
            let stripe = node.hints.stripe_of(key);
            _writing = Some(
                node.hints
                    .writing_by(stripe, deadline)
                    .ok_or_else(|| late(timeout))?,
            );
            bounded = Some(node.client.with_timeout(remaining(deadline, timeout)?)?);
        }
        let outcome = call(bounded.as_ref().unwrap_or(&node.client));
        node.record(&outcome, self.threshold());
        if outcome.as_ref().is_ok_and(stored) {
            node.hints.forget(key);
            if let Some(&owner) = home.first().filter(|&&owner| owner != index) {
                let hint = Hint::Set {
                    raw: Bytes::copy_from_slice(written.0),
                    ttl: written.1,
                    stand_ins: vec![node.name.clone()],
                };
                let owner = &topology.nodes[owner];
                if !owner.hints.record(key, hint, self.settings.hint_capacity) {
                    owner.missed_a_hint(self.settings.recovery_window);
                }
            }
        }
        outcome
    }

    fn touch(&self, key: &str, ttl: Ttl) -> Result<bool> {
        ttl.wire_seconds()?;
        let topology = self.topology();
        let deadline = Instant::now() + self.settings.timeout;
        let replicas = self.settings.replicas;
        let jobs: Vec<_> = topology
            .replicas(key, replicas)
            .into_iter()
            .map(|index| {
                let topology = &topology;
                move || {
                    let node = &topology.nodes[index];
                    let outcome = if replicas == 1 {
                        node.client.touch(key, ttl)
                    } else {
                        touch_copy(&node.client, key, ttl, deadline, self.settings.timeout)
                    };
                    node.record(&outcome, self.threshold());
                    outcome
                }
            })
            .collect();
        let mut touched = false;
        let mut last_error = None;
        for outcome in in_parallel(jobs) {
            match outcome {
                Ok(found) => touched |= found,
                Err(error) => last_error = Some(error),
            }
        }
        match last_error {
            Some(error) if !touched => Err(error),
            _ => Ok(touched),
        }
    }

    fn per_server<T: Send>(
        &self,
        call: impl Fn(&Client) -> Result<T> + Sync,
    ) -> Vec<ServerResult<T>> {
        let topology = self.topology();
        let call = &call;
        let jobs: Vec<_> = topology
            .nodes
            .iter()
            .map(|node| {
                move || ServerResult {
                    server: node.name.clone(),
                    result: call(&node.client),
                }
            })
            .collect();
        in_parallel(jobs)
    }

    /// Pings the servers marked down whose cool-down is over; the first
    /// answer brings a server back. A server whose client does not answer
    /// is also asked over a fresh connection: the client's own reconnect
    /// backoff grows to minutes for a server long gone, and must not delay
    /// its return. When only the fresh client answers, the server comes
    /// back with it.
    fn probe(&self) {
        let topology = self.topology();
        let ping = |client: &Client| {
            client
                .with_timeout(self.settings.probe_interval)
                .map(|client| client.with_max_retries(0))
                .and_then(|client| client.ping())
                .is_ok()
        };
        for node in &topology.nodes {
            let due = node
                .down_since()
                .is_some_and(|since| since.elapsed() >= self.settings.cool_down);
            if !due {
                continue;
            }
            // Back at the first answer, even with hints still waiting:
            // reads answer those keys from the hints, never from its old
            // copies, and the loop below delivers them.
            if ping(&node.client) {
                node.bring_back(self.settings.recovery_window);
                continue;
            }
            let Ok(fresh) = make_node(&self.builder, node.origin.clone()) else {
                continue;
            };
            if ping(&fresh.client) {
                let renewed = node.renewed(fresh.client);
                renewed.bring_back(self.settings.recovery_window);
                self.replace(node, renewed);
            }
        }
        // Servers up with hints waiting (back from an outage, or a part
        // that failed before they were marked down) get them now.
        let topology = self.topology();
        for node in &topology.nodes {
            if node.is_up() && !node.hints.is_empty() {
                let mut delivered = Vec::new();
                self.deliver_hints(node, &node.client, &mut delivered);
                self.clear_stand_ins(delivered);
            }
        }
    }

    /// Swaps `old` for `new` in the current topology, if it is still there.
    fn replace(&self, old: &Arc<Node>, new: Node) {
        let mut topology = match self.topology.write() {
            Ok(topology) => topology,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut nodes = topology.nodes.clone();
        if let Some(slot) = nodes.iter_mut().find(|node| Arc::ptr_eq(node, old)) {
            *slot = Arc::new(new);
            *topology = Arc::new(Topology::new(nodes));
        }
    }

    /// Resolves the discovered names again and swaps in the new server
    /// set if it changed. Servers that stay keep their client, health and
    /// counters; only keys placed on added or removed servers move.
    fn refresh(&self) {
        let mut wanted = Vec::new();
        {
            let Ok(mut last_seen) = self.last_seen.lock() else {
                return;
            };
            for (source, seen) in self.sources.iter().zip(last_seen.iter_mut()) {
                if let Some(found) = discovery::expand(source, &self.builder.resolver) {
                    *seen = found;
                }
                wanted.extend(seen.iter().cloned());
            }
        }
        let wanted = dedup(wanted);
        let current = self.topology();
        let mut names: Vec<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
        names.sort_unstable();
        let current_names: Vec<&str> = current.nodes.iter().map(|n| n.name.as_str()).collect();
        if names == current_names {
            return;
        }
        let existing: HashMap<&str, &Arc<Node>> =
            current.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let nodes: Vec<Arc<Node>> = wanted
            .into_iter()
            .filter_map(|server| match existing.get(server.name.as_str()) {
                Some(node) => Some(Arc::clone(node)),
                // A client that cannot be made (a TLS file gone) leaves
                // the server out until the next resolution.
                None => make_node(&self.builder, server).ok().map(Arc::new),
            })
            .collect();
        let next = Arc::new(Topology::new(nodes));
        match self.topology.write() {
            Ok(mut topology) => *topology = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }
}

/// The background thread: probes, and re-resolution when names are
/// discovered. Ends when the last cluster handle drops the sender.
fn watch(shared: &Shared, stop: &mpsc::Receiver<()>) {
    let discovers = shared
        .sources
        .iter()
        .any(|source| matches!(source, Source::Discovered { .. }));
    let settings = &shared.settings;
    let tick = if discovers {
        settings.probe_interval.min(settings.resolve_interval)
    } else {
        settings.probe_interval
    };
    let mut next_resolution = Instant::now() + settings.resolve_interval;
    loop {
        match stop.recv_timeout(tick) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        shared.probe();
        if discovers && Instant::now() >= next_resolution {
            shared.refresh();
            next_resolution = Instant::now() + settings.resolve_interval;
        }
    }
}

/// One server's client for `server`, with the cluster's settings.
fn make_node(builder: &ClusterBuilder, server: Wanted) -> Result<Node> {
    let mut client = Client::builder(&server.connect)
        .timeout(builder.settings.timeout)
        .max_retries(builder.max_retries)
        .pool_size(builder.pool_size)
        .default_ttl(builder.settings.default_ttl);
    if let Some(namespace) = &builder.namespace {
        client = client.namespace(namespace);
    }
    if let Some(name) = &server.tls_name {
        client = client.tls_server_name(name);
    }
    if let Some(configure) = &builder.configure {
        client = configure(client);
    }
    Ok(Node::new(server, client.build()?))
}

/// The first of each name wins: a server listed twice is one server.
fn dedup(wanted: Vec<Wanted>) -> Vec<Wanted> {
    let mut seen = std::collections::HashSet::new();
    wanted
        .into_iter()
        .filter(|server| seen.insert(server.name.clone()))
        .collect()
}

/// Runs `op` for the keys at `part` on one server: a single-key call for
/// one key, a multi-key call otherwise. `Err` when the server failed as a
/// whole; a key it refused is an `Err` inside.
fn run_part<K: AsRef<str>>(
    client: &Client,
    op: &Op,
    keys: &[K],
    part: &[usize],
) -> Result<Vec<KeyOutcome>> {
    if let [at] = part {
        let key: &str = keys[*at].as_ref();
        let outcome = match op {
            Op::Get => client.get(key),
            Op::Set { values, ttl } => client.set_with_ttl(key, &values[*at], *ttl).map(|()| None),
            Op::Delete => client.delete(key).map(|()| None),
        };
        return match outcome {
            Err(error) if is_server_failure(&error) => Err(error),
            other => Ok(vec![other]),
        };
    }
    let chosen = part.iter().map(|&at| -> &str { keys[at].as_ref() });
    let outcome = match op {
        Op::Get => client
            .get_many(chosen)
            .map(|items| items.into_iter().map(|item| item.result).collect()),
        Op::Set { values, ttl } => client
            .set_many_with_ttl(
                part.iter()
                    .map(|&at| -> (&str, &Bytes) { (keys[at].as_ref(), &values[at]) }),
                *ttl,
            )
            .map(done),
        Op::Delete => client.delete_many(chosen).map(done),
    };
    match outcome {
        Err(error) if is_server_failure(&error) => Err(error),
        // The whole part refused (too many keys, say): each key fails.
        Err(refused) => Ok(part.iter().map(|_| Err(refused.clone())).collect()),
        Ok(outcomes) => Ok(outcomes),
    }
}

fn done(items: Vec<ItemResult<()>>) -> Vec<KeyOutcome> {
    items
        .into_iter()
        .map(|item| item.result.map(|()| None))
        .collect()
}

/// Back to the per-item form of the caller's multi-key call.
fn per_item(keys: &[&str], outcomes: Vec<KeyOutcome>) -> Vec<ItemResult<Option<Bytes>>> {
    keys.iter()
        .zip(outcomes)
        .map(|(key, outcome)| ItemResult::new(key, outcome))
        .collect()
}

fn no_servers() -> Error {
    Error::Unavailable("no server of the cluster is reachable".into())
}

/// What is left of the deadline, or the error a call that ran out gets.
fn remaining(deadline: Instant, timeout: Duration) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(late(timeout))
    } else {
        Ok(left)
    }
}

fn late(timeout: Duration) -> Error {
    Error::DeadlineExceeded(
        format!("the cluster call's {timeout:?} ran out before every replica was asked").into(),
    )
}

/// When one server's part of a call must end.
#[derive(Debug, Clone, Copy)]
enum PartDeadline {
    /// The first round with nothing left to fall back on: the server's
    /// client uses its own timeout (the cluster's), no per-call handle.
    Own,
    /// No later than this.
    By(Instant),
    /// The call's deadline has passed.
    Passed,
}

impl PartDeadline {
    /// The part's share of what is left before `deadline`, when `spare`
    /// more servers may still have to be asked after this round: an equal
    /// share for this round and each of those.
    fn share(
        deadline: Instant,
        spare: usize,
        first_round: bool,
        timeout: Duration,
    ) -> PartDeadline {
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return PartDeadline::Passed;
        }
        if spare == 0 {
            // The server's own timeout is the cluster's: in the first round
            // it ends with the call.
            return if first_round && left + Duration::from_millis(1) >= timeout {
                PartDeadline::Own
            } else {
                PartDeadline::By(deadline)
            };
        }
        let rounds = u32::try_from(spare + 1).unwrap_or(u32::MAX);
        PartDeadline::By(now + left / rounds)
    }
}

/// One server's part of a call, by `deadline`. `None` when no time was
/// left to send it (which says nothing of the server's health).
fn send_part<K: AsRef<str>>(
    node: &Node,
    op: &Op,
    keys: &[K],
    part: &[usize],
    deadline: PartDeadline,
) -> Option<Result<Vec<KeyOutcome>>> {
    let by = match deadline {
        PartDeadline::Own => return Some(run_part(&node.client, op, keys, part)),
        PartDeadline::Passed => return None,
        PartDeadline::By(by) => by,
    };
    let left = by.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    Some(
        node.client
            .with_timeout(left)
            .and_then(|client| run_part(&client, op, keys, part)),
    )
}

/// A stale replica to rewrite after a read.
struct Repair {
    /// The server.
    index: usize,
    /// The key's position in the call.
    at: usize,
    /// What the server answered: the repair replaces exactly this.
    seen: Option<Copy>,
    /// The newest copy the read found.
    newest: Copy,
}

/// Stores `newest` for `key` unless the server holds a copy at least as
/// new: a compare-and-set against the copy believed to be there (`seen`,
/// or read first when `None` is not known to be a miss), read again after
/// each lost race, at most [`TOUCH_ATTEMPTS`] times. Another writer that
/// keeps winning the race is newer, so giving up then loses nothing.
fn store_if_newer(
    client: &Client,
    key: &str,
    newest: &Copy,
    seen: Option<Copy>,
    ttl: Ttl,
) -> Result<()> {
    let mut current = match seen {
        Some(copy) => Some(copy),
        None => client.get(key)?.map(Copy::parse),
    };
    for _ in 0..TOUCH_ATTEMPTS {
        let stored = match &current {
            Some(copy) if !newest.is_newer_than(copy) => return Ok(()),
            Some(copy) => {
                client.compare_and_set_with_ttl(key, &copy.raw, &newest.raw, ttl)?
                    == CasOutcome::Stored
            }
            None => client.set_if_absent_with_ttl(key, &newest.raw, ttl)?,
        };
        if stored {
            return Ok(());
        }
        current = client.get(key)?.map(Copy::parse);
    }
    Ok(())
}

/// A touch of one replica's enveloped copy: a new expiry, the same write
/// time, by compare-and-set so a concurrent write is never undone.
fn touch_copy(
    client: &Client,
    key: &str,
    ttl: Ttl,
    deadline: Instant,
    timeout: Duration,
) -> Result<bool> {
    for _ in 0..TOUCH_ATTEMPTS {
        let within = client.with_timeout(remaining(deadline, timeout)?)?;
        let Some(raw) = within.get(key)? else {
            return Ok(false);
        };
        let copy = Copy::parse(raw.clone());
        let touched = envelope::reseal(&copy, ttl, SystemTime::now());
        match within.compare_and_set_with_ttl(key, &raw, &touched, ttl)? {
            CasOutcome::Stored => return Ok(true),
            CasOutcome::NotFound => return Ok(false),
            CasOutcome::Mismatch => {}
        }
    }
    Err(crate::store::touch_lost(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_a_handle_to_share_between_threads() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Cluster>();
    }

    #[test]
    fn the_builder_refuses_what_cannot_work() {
        let one = || Cluster::builder().server("127.0.0.1:1");
        assert!(matches!(
            Cluster::builder().build(),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            one().replicas(0).build(),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            one().read_quorum(2).build(),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            one().failure_threshold(0).build(),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            one().server_weighted("127.0.0.1:2", 0.0).build(),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            one().server_weighted("127.0.0.1:2", f64::NAN).build(),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            one().probe_interval(Duration::ZERO).build(),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            Cluster::builder().server("no-port").build(),
            Err(Error::Validation(_))
        ));
    }

    #[cfg(feature = "server")]
    #[test]
    fn read_repair_never_overwrites_a_write_that_landed_after_the_read() {
        use std::sync::atomic::{AtomicBool, Ordering};

        use crate::server::Server;

        let (a, b) = (Server::local().unwrap(), Server::local().unwrap());
        let (direct_a, direct_b) = (
            Client::new(&a.address()).unwrap(),
            Client::new(&b.address()).unwrap(),
        );
        let sealed = |value: &str, micros: u64| {
            let at = std::time::UNIX_EPOCH + Duration::from_micros(micros);
            envelope::seal(value.as_bytes(), Ttl::Never, at)
        };
        let now_micros = || {
            SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64
        };
        // Both replicas hold "old"; A then gets "new" behind the cluster's
        // back, so a quorum read finds B stale and repairs it.
        direct_a.set("k", sealed("old", 1)).unwrap();
        direct_b.set("k", sealed("old", 1)).unwrap();
        direct_a.set("k", sealed("new", now_micros())).unwrap();

        // Between the read and the repair, a newer write lands on B (it
        // was acknowledged there alone: the only copy of it).
        let landed = Arc::new(AtomicBool::new(false));
        let (writer, done) = (direct_b.clone(), Arc::clone(&landed));
        let newest = sealed("newest", now_micros() + 1_000_000);
        let mut builder = Cluster::builder()
            .server(&a.address())
            .server(&b.address())
            .replicas(2)
            .read_quorum(2);
        builder.settings.before_repair = Some(builder::Hook(Arc::new(move || {
            if !done.swap(true, Ordering::SeqCst) {
                writer.set("k", &newest).unwrap();
            }
        })));
        let cluster = builder.build().unwrap();

        assert_eq!(cluster.get("k").unwrap().as_deref(), Some(&b"new"[..]));
        assert!(landed.load(Ordering::SeqCst), "the repair never ran");
        let on_b = Copy::parse(direct_b.get("k").unwrap().unwrap());
        assert_eq!(
            &on_b.value()[..],
            b"newest",
            "the repair undid a newer write"
        );
        // A stale replica with nothing newer is still repaired.
        direct_b.set("k", sealed("old", 1)).unwrap();
        cluster.get("k").unwrap();
        let on_b = Copy::parse(direct_b.get("k").unwrap().unwrap());
        assert_eq!(&on_b.value()[..], b"new");
    }

    #[test]
    fn the_same_server_listed_twice_is_one_server() {
        let cluster = Cluster::builder()
            .server("127.0.0.1:1")
            .server("grpc://127.0.0.1:1")
            .replicas(2)
            .build()
            .unwrap();
        assert_eq!(cluster.servers().len(), 1);
        assert_eq!(cluster.owners("k"), ["127.0.0.1:1"]);
    }
}
