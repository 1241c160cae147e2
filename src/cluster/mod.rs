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
//! A delete with R = 1 removes the key. With R > 1 it writes a
//! *tombstone* on every replica (the 20-byte envelope with version `02`
//! and no value, living 60 s or twice the timeout, whichever is longer)
//! and is acknowledged once every replica has it. A tombstone is newer than
//! every copy the delete replaced, so a read that raced the delete cannot
//! repair the old value back over it, and a replica that missed the delete
//! is repaired with it; it reads as a miss, and a later write replaces it
//! (later by the writers' clocks, as for any two writes: a writer whose
//! clock runs behind the deleter's loses to the tombstone while it lives).
//! A replica that was unreachable during a delete that failed (not
//! acknowledged), and came back after the tombstones expired, can still
//! bring the value back through read repair.
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
//! A call's parts for several servers (R > 1 writes, quorum reads, read
//! repair, multi-key calls) all start at once from the caller's thread,
//! which then sleeps once for every reply: each server's client carries
//! its part on its own connection, and no helper thread is involved. Each
//! part ends by its own deadline, so a part stuck on a dead server delays
//! no other call. A part for one server is a plain call.
//!
//! # Hedged reads
//!
//! A read of one key with Q = 1 and another replica to spare (R > 1),
//! whose first replica has not answered within the lower of the two
//! replicas' recent p95, asks the next home replica too and takes the
//! first copy; the other call's stream is reset. A budget (5 % of reads)
//! caps hedges, and a replica that lost two races in a row is asked
//! second until a probe finds it prompt again. See [`Hedging`].
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
mod hedging;
mod hints;
mod node;
mod placement;
// `Cluster` as the crate's one store trait.
mod cache_store;
mod engine;
mod membership;
mod policy;
mod topology;

#[cfg(feature = "metrics")]
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

pub use builder::{
    ClusterBuilder, ConfigureClient, DEFAULT_CLUSTER_MAX_RETRIES, DEFAULT_COOL_DOWN,
    DEFAULT_FAILURE_THRESHOLD, DEFAULT_HINT_CAPACITY, DEFAULT_POOL_SIZE_PER_SERVER,
    DEFAULT_PROBE_INTERVAL, DEFAULT_RECOVERY_WINDOW, DEFAULT_RESOLVE_INTERVAL,
};
pub use discovery::Resolver;
pub use hedging::{HedgeCounts, HedgeDelay, Hedging, MIN_HEDGE_DELAY, UNMEASURED_HEDGE_DELAY};

use builder::Settings;
use discovery::{Source, Wanted};
use engine::per_item;
use membership::{dedup, make_node, watch};
use topology::Topology;

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
    /// This handle's deadline per call (`with_timeout`).
    timeout: Duration,
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

impl Inner {
    /// Stops the background thread and waits for it, once.
    fn stop_watching(&self) {
        let watcher = match self.watcher.lock() {
            Ok(mut watcher) => watcher.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some((stop, thread)) = watcher {
            // A delivery under way stops at its next hint instead of
            // holding the join for the rest of the log.
            self.shared.closing.store(true, Ordering::Relaxed);
            drop(stop);
            let _ = thread.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_watching();
    }
}

struct Shared {
    settings: Settings,
    hedger: hedging::Hedger,
    topology: RwLock<Arc<Topology>>,
    sources: Vec<Source>,
    /// What each source gave last time it resolved.
    last_seen: Mutex<Vec<Vec<Wanted>>>,
    builder: ClusterBuilder,
    /// Set when the last handle is dropped: background work winds down.
    closing: AtomicBool,
}

/// What a call does on one server for some of its keys.
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
            hedger: hedging::Hedger::new(builder.settings.hedging),
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
        let timeout = shared.settings.timeout;
        Ok(Cluster {
            timeout,
            inner: Arc::new(Inner {
                shared,
                watcher: Mutex::new(Some((stop, thread))),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// A handle on the same servers whose calls each end within `timeout`
    /// (the builder's `timeout` otherwise), as [`Client::with_timeout`]:
    /// cheap, made per call if need be. A read with replicas left to ask
    /// shares it between them as any read shares the cluster's.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// use std::time::Duration;
    /// use tiny_cache_client::cluster::Cluster;
    ///
    /// let cluster = Cluster::builder().server(&server.address()).build()?;
    /// let quick = cluster.with_timeout(Duration::from_millis(200))?;
    /// quick.set("k", "v")?;
    /// assert!(cluster.with_timeout(Duration::ZERO).is_err());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_timeout(&self, timeout: Duration) -> Result<Cluster> {
        if timeout.is_zero() {
            return Err(Error::Validation("the timeout must be positive".into()));
        }
        Ok(Cluster {
            inner: Arc::clone(&self.inner),
            timeout,
        })
    }

    /// A pipeline of operations on this cluster (see
    /// [`pipeline`](crate::pipeline)): every get goes out in one fan-out,
    /// then every write, then every delete, within one deadline.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let (a, b) = (tiny_cache_client::server::Server::local()?, tiny_cache_client::server::Server::local()?);
    /// use tiny_cache_client::cluster::Cluster;
    ///
    /// let cluster = Cluster::builder().server(&a.address()).server(&b.address()).build()?;
    /// let outcomes = cluster.pipeline().set("x", "1").set("y", "2").get("z").run()?;
    /// assert_eq!(outcomes.len(), 3);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pipeline(&self) -> crate::pipeline::Pipeline<'_> {
        crate::pipeline::Pipeline::on(self)
    }

    /// A cluster of the same servers and settings in another key space
    /// (`x-cache-namespace`), as [`Client::with_namespace`]; blank means
    /// the shared key space.
    ///
    /// Unlike the client's, it opens its own connections, background
    /// thread and hint logs: hints are kept per key space, so a server
    /// that missed writes in two of them is caught up in each. Make it
    /// once per namespace and keep it, not per call.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// use tiny_cache_client::cluster::Cluster;
    ///
    /// let shared = Cluster::builder().server(&server.address()).build()?;
    /// let billing = shared.with_namespace("billing")?;
    /// billing.set("k", "invoice")?;
    /// assert_eq!(shared.get("k")?, None); // another key space
    /// assert!(shared.with_namespace("-bad").is_err());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_namespace(&self, namespace: &str) -> Result<Cluster> {
        crate::rules::parse_namespace(namespace)?;
        let cluster = self.shared().builder.clone().namespace(namespace).build()?;
        cluster.with_timeout(self.timeout)
    }

    /// Shuts the cluster down now, for every clone: its background thread
    /// stops (a hint delivery under way stops at its next hint) and every
    /// server's client closes, so calls in flight and later calls fail
    /// with [`Error::Closed`]. Dropping the last clone does the same.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// use tiny_cache_client::{cluster::Cluster, Error};
    ///
    /// let cluster = Cluster::builder().server(&server.address()).build()?;
    /// cluster.close();
    /// assert_eq!(cluster.get("k"), Err(Error::Closed));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        self.inner.stop_watching();
        for node in &self.shared().topology().nodes {
            node.client.close();
        }
    }

    /// The hedged reads this cluster sent, won and was refused by the
    /// budget (see [`Hedging`]), for every clone.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let (a, b) = (tiny_cache_client::server::Server::local()?, tiny_cache_client::server::Server::local()?);
    /// use tiny_cache_client::cluster::Cluster;
    ///
    /// let cluster = Cluster::builder().server(&a.address()).server(&b.address()).replicas(2).build()?;
    /// cluster.get("k")?;
    /// let hedges = cluster.hedges();
    /// assert!(hedges.won <= hedges.sent);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hedges(&self) -> HedgeCounts {
        self.shared().hedger.counts()
    }

    /// A snapshot of the cluster's counters (feature `metrics`): the
    /// figures of [`Client::metrics`], summed over every server's client.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let (a, b) = (tiny_cache_client::server::Server::local()?, tiny_cache_client::server::Server::local()?);
    /// use tiny_cache_client::cluster::Cluster;
    ///
    /// let cluster = Cluster::builder().server(&a.address()).server(&b.address()).build()?;
    /// cluster.get_many(["a", "b", "c", "d"])?;
    /// let metrics = cluster.metrics();
    /// assert!(metrics.calls >= 1 && metrics.calls <= 2, "{metrics:?}"); // one call per server asked
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics(&self) -> crate::ClientMetrics {
        let mut total = crate::ClientMetrics::default();
        let mut by_code: BTreeMap<i32, (crate::Code, u64)> = BTreeMap::new();
        for node in &self.shared().topology().nodes {
            let one = node.client.metrics();
            total.calls += one.calls;
            total.errors += one.errors;
            total.retries += one.retries;
            total.reconnects += one.reconnects;
            total.in_flight += one.in_flight;
            for (code, count) in one.errors_by_code {
                by_code.entry(code.as_i32()).or_insert((code, 0)).1 += count;
            }
        }
        total.errors_by_code = by_code.into_values().collect();
        total
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
        let shared = self.shared();
        if let Some(outcome) =
            shared.on_sole_home(key, (self.timeout, false), |client| client.get(key))
        {
            return outcome;
        }
        shared
            .read(&[key], None, self.timeout)
            .pop()
            .unwrap_or(Ok(None))
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

    /// Deletes `key` on every live replica (with R > 1, by writing a
    /// tombstone there: see the module's docs); a missing key succeeds.
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
        let shared = self.shared();
        if let Some(outcome) =
            shared.on_sole_home(key, (self.timeout, true), |client| client.delete(key))
        {
            return outcome;
        }
        shared
            .write(&[key], &Op::Delete, self.timeout)
            .pop()
            .unwrap_or(Ok(()))
    }

    crate::store::store_methods! {
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
        fn set;

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
        fn set_with_ttl(&self, key, value, ttl) {
            ttl.wire_seconds()?;
            let direct = |client: &Client| client.set_with_ttl(key, value, ttl);
            if let Some(outcome) = self.shared().on_sole_home(key, (self.timeout, true), direct) {
                return outcome;
            }
            let values = [self.shared().encode(value, ttl, SystemTime::now())];
            let op = Op::Set {
                values: values.into(),
                ttl,
            };
            self.shared()
                .write(&[key], &op, self.timeout)
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
        fn get_many(&self, keys) {
            Ok(per_item(keys, self.shared().read(keys, None, self.timeout)))
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
        fn set_many;

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
        fn set_many_with_ttl(&self, items, ttl) {
            ttl.wire_seconds()?;
            let keys: Vec<&str> = items.iter().map(|&(key, _)| key).collect();
            let now = SystemTime::now();
            let values: Vec<Bytes> = items
                .iter()
                .map(|&(_, value)| self.shared().encode(value, ttl, now))
                .collect();
            let op = Op::Set {
                values: values.into(),
                ttl,
            };
            Ok(per_item(&keys, self.shared().write(&keys, &op, self.timeout)))
        }

        /// Deletes many keys on every live replica (tombstones with R > 1),
        /// results in the caller's
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
        fn delete_many(&self, keys) {
            Ok(per_item(keys, self.shared().write(keys, &Op::Delete, self.timeout)))
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
        fn set_if_absent;

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
        fn set_if_absent_with_ttl(&self, key, value, ttl) {
            self.shared().on_primary(
                key,
                "set_if_absent",
                (value, ttl),
                |stored| *stored,
                |client| client.set_if_absent_with_ttl(key, value, ttl),
                self.timeout,
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
        fn compare_and_set;

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
        fn compare_and_set_with_ttl(&self, key, expected, value, ttl) {
            self.shared().on_primary(
                key,
                "compare_and_set",
                (value, ttl),
                |outcome| *outcome == CasOutcome::Stored,
                |client| client.compare_and_set_with_ttl(key, expected, value, ttl),
                self.timeout,
            )
        }
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
        self.shared().touch(key, ttl.into(), self.timeout)
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
        self.shared()
            .per_server(|client| client.stats(), self.timeout)
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
        self.shared()
            .per_server(|client| client.ping(), self.timeout)
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
                server: node.origin.name.clone(),
                weight: node.origin.weight,
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
            .map(|index| topology.nodes[index].origin.name.clone())
            .collect()
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = self.shared();
        let topology = shared.topology();
        let names: Vec<&str> = topology
            .nodes
            .iter()
            .map(|n| n.origin.name.as_str())
            .collect();
        f.debug_struct("Cluster")
            .field("servers", &names)
            .field("replicas", &shared.settings.replicas)
            .field("read_quorum", &shared.settings.read_quorum)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::envelope::Copy;
    use super::*;

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

    /// A read finds the key on B only and repairs A with it; between the
    /// read and the repair an acknowledged delete lands. The repair must
    /// not bring the deleted value back: the delete left tombstones, newer
    /// than the copy the repair carries.
    #[cfg(feature = "server")]
    #[test]
    fn a_delete_racing_read_repair_stays_deleted() {
        use std::sync::atomic::{AtomicBool, Ordering};

        use crate::server::Server;

        let (a, b) = (Server::local().unwrap(), Server::local().unwrap());
        let direct_b = Client::new(&b.address()).unwrap();
        let pair = || {
            Cluster::builder()
                .server(&a.address())
                .server(&b.address())
                .replicas(2)
                .read_quorum(2)
        };
        let deleter = pair().build().unwrap();
        direct_b
            .set("k", envelope::seal(b"old", Ttl::Never, SystemTime::now()))
            .unwrap();
        let deleted = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&deleted);
        let mut builder = pair();
        builder.settings.before_repair = Some(builder::Hook(Arc::new(move || {
            if !done.swap(true, Ordering::SeqCst) {
                deleter.delete("k").unwrap();
            }
        })));
        let reader = builder.build().unwrap();

        // The read overlapped the delete: either answer is right for it.
        reader.get("k").unwrap();
        assert!(deleted.load(Ordering::SeqCst), "the repair never ran");
        // After the acknowledged delete no read may see the value.
        assert_eq!(
            reader.get("k").unwrap(),
            None,
            "the repair undid the delete"
        );
        let on_a = Client::new(&a.address()).unwrap().get("k").unwrap();
        assert!(
            on_a.as_deref().is_none_or(envelope::is_tombstone),
            "A holds {on_a:?}"
        );
        // A tombstone reads as a miss and touches nothing; a write after
        // the delete wins over it.
        assert!(!reader.touch("k", Duration::from_secs(5)).unwrap());
        reader.set("k", "new").unwrap();
        assert_eq!(reader.get("k").unwrap().as_deref(), Some(&b"new"[..]));
    }

    /// A deleted key holds tombstones with R > 1; writing it on every
    /// replica "if absent" must see through them, as a read does.
    #[cfg(feature = "server")]
    #[test]
    fn set_if_absent_everywhere_writes_over_tombstones_but_not_values() {
        use crate::server::Server;
        use crate::CacheStore;

        let (a, b) = (Server::local().unwrap(), Server::local().unwrap());
        let cluster = Cluster::builder()
            .server(&a.address())
            .server(&b.address())
            .replicas(2)
            .build()
            .unwrap();
        assert!(!cluster.conditional_writes(), "no single server decides");
        cluster.set("g", "old").unwrap();
        cluster.delete("g").unwrap();
        assert!(cluster
            .set_if_absent_everywhere("g", b"new", Ttl::Never)
            .unwrap());
        assert_eq!(cluster.get("g").unwrap().as_deref(), Some(&b"new"[..]));
        assert!(!cluster
            .set_if_absent_everywhere("g", b"newer", Ttl::Never)
            .unwrap());
        assert_eq!(cluster.get("g").unwrap().as_deref(), Some(&b"new"[..]));
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
