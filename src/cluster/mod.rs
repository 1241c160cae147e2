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
//! write from a faster clock. A delete removes every live replica; a
//! replica that was unreachable during the delete and comes back with its
//! data can bring the value back through read repair (there are no
//! tombstones). Copies written to a stand-in while a server was down stay
//! there, unread once it is back, until they expire.
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
mod envelope;
mod fanout;
mod node;
mod placement;
// The read-through layer's `CacheStore` for `Cluster` (cluster → cache,
// never back).
#[cfg(feature = "cache")]
mod cache_store;

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

pub use builder::{
    ClusterBuilder, ConfigureClient, DEFAULT_CLUSTER_MAX_RETRIES, DEFAULT_COOL_DOWN,
    DEFAULT_FAILURE_THRESHOLD, DEFAULT_POOL_SIZE_PER_SERVER, DEFAULT_PROBE_INTERVAL,
    DEFAULT_RESOLVE_INTERVAL,
};
pub use discovery::Resolver;

use builder::Settings;
use discovery::{Source, Wanted};
use envelope::Copy;
use fanout::in_parallel;
use node::{is_server_failure, Node};

use crate::{CasOutcome, Client, Error, ItemError, ItemResult, Result, Stats, Ttl, TOUCH_ATTEMPTS};

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
}

struct Inner {
    shared: Arc<Shared>,
    watcher: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let watcher = self.watcher.get_mut().ok().and_then(Option::take);
        if let Some((stop, thread)) = watcher {
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
}

/// What a call does on one server for some of its keys. Owned (cheap to
/// clone) so a part can go to a helper thread.
#[derive(Clone)]
enum Op {
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
        self.shared().read(&[key]).pop().unwrap_or(Ok(None))
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
        let outcomes = self.shared().read(&keys);
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
        self.shared().on_primary(key, "set_if_absent", |client| {
            client.set_if_absent_with_ttl(key, value.as_ref(), ttl)
        })
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
        self.shared().on_primary(key, "compare_and_set", |client| {
            client.compare_and_set_with_ttl(key, expected.as_ref(), value.as_ref(), ttl)
        })
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
    next: usize,
    answers: Vec<(usize, Option<Copy>)>,
    error: Option<Error>,
    refused: Option<Error>,
}

/// Per key: which servers to write, and how many stored it.
struct Write {
    candidates: Vec<usize>,
    next: usize,
    stored: usize,
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
    /// outcome. Parts after the first round get what is left of the
    /// deadline.
    fn dispatch(
        &self,
        topology: &Arc<Topology>,
        op: &Op,
        keys: &[&str],
        plan: BTreeMap<usize, Vec<usize>>,
        deadline: Instant,
        first_round: bool,
    ) -> Vec<(usize, Vec<usize>, Result<Vec<KeyOutcome>>)> {
        let (threshold, timeout) = (self.threshold(), self.settings.timeout);
        if plan.len() == 1 {
            return plan
                .into_iter()
                .map(|(index, part)| {
                    let node = &topology.nodes[index];
                    let outcome = send_part(node, op, keys, &part, deadline, timeout, first_round);
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
                    let outcome =
                        send_part(node, &op, &keys, &part, deadline, timeout, first_round);
                    if let Some(outcome) = &outcome {
                        node.record(outcome, threshold);
                    }
                    (index, part, outcome.unwrap_or_else(|| Err(late(timeout))))
                }) as Box<dyn FnOnce() -> Part + Send>
            })
            .collect();
        self.helpers.run_all(jobs)
    }

    fn read(&self, keys: &[&str]) -> Vec<KeyOutcome> {
        let topology = self.topology();
        let deadline = Instant::now() + self.settings.timeout;
        let (replicas, quorum) = (self.settings.replicas, self.settings.read_quorum);
        let mut reads: Vec<Read> = keys
            .iter()
            .map(|key| Read {
                candidates: topology.replicas(key, replicas),
                next: 0,
                answers: Vec::new(),
                error: None,
                refused: None,
            })
            .collect();
        let mut first_round = true;
        loop {
            let mut plan: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (at, read) in reads.iter_mut().enumerate() {
                if read.refused.is_some() {
                    continue;
                }
                let answered = read.answers.len();
                let all_missed = read.answers.iter().all(|(_, copy)| copy.is_none());
                let want = if answered < quorum {
                    quorum - answered
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
            }
            if plan.is_empty() {
                break;
            }
            for (index, part, outcome) in
                self.dispatch(&topology, &Op::Get, keys, plan, deadline, first_round)
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
                if read.answers.len() < quorum {
                    return Err(Error::Unavailable(
                        format!(
                            "read quorum not met: {} of {quorum} replicas answered ({})",
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
                    return Ok(None);
                };
                if replicas > 1 {
                    if let Some(ttl) = newest.remaining_ttl(now) {
                        for (index, copy) in &read.answers {
                            if copy.as_ref().is_none_or(|copy| newest.is_newer_than(copy)) {
                                repairs.push((*index, at, newest.raw.clone(), ttl));
                            }
                        }
                    }
                }
                Ok(Some(self.decode(newest)))
            })
            .collect();
        self.repair(&topology, keys, repairs, deadline);
        outcomes
    }

    /// Rewrites stale replicas with the newest copy before the read
    /// returns, within its deadline. A failed repair only counts against
    /// its server: the read already has its answer.
    fn repair(
        &self,
        topology: &Topology,
        keys: &[&str],
        repairs: Vec<(usize, usize, Bytes, Ttl)>,
        deadline: Instant,
    ) {
        let jobs: Vec<_> = repairs
            .into_iter()
            .map(|(index, at, raw, ttl)| {
                move || {
                    let Ok(left) = remaining(deadline, self.settings.timeout) else {
                        return;
                    };
                    let node = &topology.nodes[index];
                    let outcome = node
                        .client
                        .with_timeout(left)
                        .and_then(|client| client.set_with_ttl(keys[at], &raw, ttl));
                    node.record(&outcome, self.threshold());
                }
            })
            .collect();
        in_parallel(jobs);
    }

    fn write(&self, keys: &[&str], op: &Op) -> Vec<Result<()>> {
        let topology = self.topology();
        let deadline = Instant::now() + self.settings.timeout;
        let replicas = self.settings.replicas;
        // A write stored anywhere is served (and repaired from); a delete
        // that missed a replica may leave the value there.
        let partial_ok = matches!(op, Op::Set { .. });
        let mut writes: Vec<Write> = keys
            .iter()
            .map(|key| Write {
                candidates: topology.replicas(key, replicas),
                next: 0,
                stored: 0,
                error: None,
                refused: None,
            })
            .collect();
        let mut first_round = true;
        loop {
            let mut plan: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (at, write) in writes.iter_mut().enumerate() {
                if write.refused.is_some() {
                    continue;
                }
                let want = replicas.saturating_sub(write.stored);
                let take = want.min(write.candidates.len() - write.next);
                for &index in &write.candidates[write.next..write.next + take] {
                    plan.entry(index).or_default().push(at);
                }
                write.next += take;
            }
            if plan.is_empty() {
                break;
            }
            for (_, part, outcome) in
                self.dispatch(&topology, op, keys, plan, deadline, first_round)
            {
                match outcome {
                    Err(error) => {
                        for at in part {
                            writes[at].error = Some(error.clone());
                        }
                    }
                    Ok(results) => {
                        for (at, result) in part.into_iter().zip(results) {
                            match result {
                                Ok(_) => writes[at].stored += 1,
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
            .map(|write| match (write.refused, write.error) {
                (Some(refused), _) => Err(refused),
                (None, Some(error)) if !partial_ok || write.stored == 0 => Err(error),
                (None, _) if write.stored == 0 => Err(no_servers()),
                _ => Ok(()),
            })
            .collect()
    }

    /// Runs a conditional call on the key's best live server.
    fn on_primary<T>(
        &self,
        key: &str,
        what: &str,
        call: impl FnOnce(&Client) -> Result<T>,
    ) -> Result<T> {
        if self.settings.replicas > 1 {
            return Err(Error::Validation(format!(
                "{what} needs a cluster with one replica: with {} no single server can decide it",
                self.settings.replicas
            )));
        }
        let topology = self.topology();
        let index = *topology.candidates(key).first().ok_or_else(no_servers)?;
        let node = &topology.nodes[index];
        let outcome = call(&node.client);
        node.record(&outcome, self.threshold());
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
            if ping(&node.client) {
                node.bring_back();
                continue;
            }
            let Ok(fresh) = make_node(&self.builder, node.origin.clone()) else {
                continue;
            };
            if ping(&fresh.client) {
                self.replace(node, node.renewed(fresh.client));
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
        Op::Get => client.get_many(chosen).map(|items| {
            items
                .into_iter()
                .map(|item| item.result.map_err(refusal))
                .collect()
        }),
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
        .map(|item| item.result.map(|()| None).map_err(refusal))
        .collect()
}

/// A key the server refused inside a multi-key call.
fn refusal(error: ItemError) -> Error {
    Error::InvalidArgument(error.0.into())
}

/// Back to the per-item form of the caller's multi-key call.
fn per_item(keys: &[&str], outcomes: Vec<KeyOutcome>) -> Vec<ItemResult<Option<Bytes>>> {
    keys.iter()
        .zip(outcomes)
        .map(|(key, outcome)| ItemResult {
            key: (*key).to_owned(),
            result: outcome.map_err(|error| {
                ItemError(match error {
                    Error::InvalidArgument(text) => text.text().to_owned(),
                    other => other.to_string(),
                })
            }),
        })
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

/// One server's part of a call: with the server's own deadline in the
/// first round, with what is left of the call's after. `None` when no time
/// was left to send it (which says nothing of the server's health).
fn send_part<K: AsRef<str>>(
    node: &Node,
    op: &Op,
    keys: &[K],
    part: &[usize],
    deadline: Instant,
    timeout: Duration,
    first_round: bool,
) -> Option<Result<Vec<KeyOutcome>>> {
    if first_round {
        return Some(run_part(&node.client, op, keys, part));
    }
    let left = remaining(deadline, timeout).ok()?;
    Some(
        node.client
            .with_timeout(left)
            .and_then(|client| run_part(&client, op, keys, part)),
    )
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
    Err(crate::client::touch_lost(key))
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
