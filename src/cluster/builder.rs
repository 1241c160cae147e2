//! `ClusterBuilder`: the servers, the replication and the failure knobs,
//! each default written next to it.

use std::sync::Arc;
use std::time::Duration;

use super::discovery::{system_resolver, Resolver, Source};
use super::hedging::Hedging;
use super::Cluster;
use crate::{Address, ClientBuilder, Error, Result, Ttl, DEFAULT_TIMEOUT, DEFAULT_TTL};

/// Worker threads (HTTP/2 connections) per server. One connection carries
/// hundreds of concurrent calls, and a cluster of N servers already has N
/// of them: more would only add threads competing for the same cores.
pub const DEFAULT_POOL_SIZE_PER_SERVER: usize = 1;
/// Extra attempts a call makes on the same server. One, not the client's
/// three: a cluster has a better next step than insisting on a failing
/// server, namely its next replica or, once it is marked down, its
/// next-ranked server.
pub const DEFAULT_CLUSTER_MAX_RETRIES: u32 = 1;
/// Consecutive failed calls (unreachable, deadline passed, broken
/// protocol) after which a server is marked down and its keys go to the
/// next-ranked server. Three, as a single lost connection costs at most
/// the calls in flight on it.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// How long a server marked down is skipped before the first probe.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(5);
/// How often the background thread probes servers marked down (once
/// their cool-down is over), and the longest a probe waits for an answer.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How often names given to [`ClusterBuilder::discover`] are resolved
/// again. Kubernetes updates a headless service's records within seconds
/// of a pod becoming ready; 10 s bounds how long a new server waits.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(10);

/// Keys whose missed writes a cluster remembers per server (hinted
/// handoff): a key takes one entry however often it is written, so this
/// bounds memory at about this many keys and their last values per server
/// that is down. Past it, the server's keys are read from every replica
/// for [`DEFAULT_RECOVERY_WINDOW`] once it is back.
pub const DEFAULT_HINT_CAPACITY: usize = 100_000;
/// How long a server that missed writes no hint recorded (its hint log was
/// full) has its keys read from every replica once it is back, so the
/// newest copy wins and read repair rewrites its old ones.
pub const DEFAULT_RECOVERY_WINDOW: Duration = Duration::from_secs(60);

/// Changes every server's [`ClientBuilder`] after the cluster's own
/// settings are applied (for TLS, metadata, windows...).
pub type ConfigureClient = Arc<dyn Fn(ClientBuilder) -> ClientBuilder + Send + Sync>;

/// Builds a [`Cluster`]. Every setting has a default; only the servers are
/// required.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::cluster::Cluster;
///
/// let cluster = Cluster::builder()
///     .server("10.0.0.1:50051")
///     .server_weighted("10.0.0.2:50051", 2.0) // owns twice the keys
///     .discover("cache.prod.svc.cluster.local:50051") // every A/AAAA record
///     .replicas(2)
///     .timeout(Duration::from_millis(500))
///     .cool_down(Duration::from_secs(10));
/// # drop(cluster);
/// ```
#[derive(Clone)]
pub struct ClusterBuilder {
    pub(crate) sources: Vec<(String, f64, bool)>,
    pub(crate) settings: Settings,
    pub(crate) namespace: Option<String>,
    pub(crate) pool_size: usize,
    pub(crate) max_retries: u32,
    pub(crate) configure: Option<ConfigureClient>,
    pub(crate) resolver: Resolver,
}

/// What every call of a cluster reads.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) replicas: usize,
    pub(crate) read_quorum: usize,
    pub(crate) failure_threshold: u32,
    pub(crate) cool_down: Duration,
    pub(crate) probe_interval: Duration,
    pub(crate) resolve_interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) default_ttl: Ttl,
    /// Keys a server's hint log holds at most.
    pub(crate) hint_capacity: usize,
    /// How long a server that missed unhinted writes has its keys read
    /// from every replica.
    pub(crate) recovery_window: Duration,
    /// How reads with a replica to spare are hedged.
    pub(crate) hedging: Hedging,
    /// Runs before a read's repairs (tests hold a repair back with it).
    pub(crate) before_repair: Option<Hook>,
}

/// A callback the cluster runs at a fixed point, for tests.
#[derive(Clone)]
pub(crate) struct Hook(pub(crate) Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

impl std::fmt::Debug for ClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBuilder")
            .field("sources", &self.sources)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            sources: Vec::new(),
            settings: Settings {
                replicas: 1,
                read_quorum: 1,
                failure_threshold: DEFAULT_FAILURE_THRESHOLD,
                cool_down: DEFAULT_COOL_DOWN,
                probe_interval: DEFAULT_PROBE_INTERVAL,
                resolve_interval: DEFAULT_RESOLVE_INTERVAL,
                timeout: DEFAULT_TIMEOUT,
                default_ttl: Ttl::After(DEFAULT_TTL),
                hint_capacity: DEFAULT_HINT_CAPACITY,
                recovery_window: DEFAULT_RECOVERY_WINDOW,
                hedging: Hedging::default(),
                before_repair: None,
            },
            namespace: None,
            pool_size: DEFAULT_POOL_SIZE_PER_SERVER,
            max_retries: DEFAULT_CLUSTER_MAX_RETRIES,
            configure: None,
            resolver: system_resolver(),
        }
    }
}

impl ClusterBuilder {
    /// A builder with no servers and every default.
    ///
    /// ```
    /// let builder = tiny_cache_client::cluster::ClusterBuilder::new().server("127.0.0.1:50051");
    /// # drop(builder);
    /// ```
    pub fn new() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Adds one server, weight 1, in any form [`Client::new`](crate::Client::new)
    /// accepts. A host name is resolved by the server's client when it
    /// connects; its name in placement is `host:port`.
    ///
    /// ```
    /// let builder = tiny_cache_client::cluster::Cluster::builder().server("cache-0:50051");
    /// # drop(builder);
    /// ```
    pub fn server(self, address: &str) -> Self {
        self.server_weighted(address, 1.0)
    }

    /// Adds one server with a weight: a server of weight 2 owns about twice
    /// the keys of one of weight 1. Weights must be positive and finite.
    ///
    /// ```
    /// let builder = tiny_cache_client::cluster::Cluster::builder()
    ///     .server_weighted("big:50051", 3.0)
    ///     .server_weighted("small:50051", 1.0);
    /// # drop(builder);
    /// ```
    pub fn server_weighted(mut self, address: &str, weight: f64) -> Self {
        self.sources.push((address.to_owned(), weight, false));
        self
    }

    /// Adds every address a DNS name resolves to, each a server of weight
    /// 1 named by its `ip:port`, and resolves it again every
    /// [`resolve_interval`](Self::resolve_interval): for a Kubernetes
    /// headless service, whose A/AAAA records are its ready pods. A lookup
    /// that fails or comes back empty keeps the servers the name had.
    ///
    /// ```
    /// let builder = tiny_cache_client::cluster::Cluster::builder()
    ///     .discover("tiny-cache.default.svc.cluster.local:50051");
    /// # drop(builder);
    /// ```
    pub fn discover(self, address: &str) -> Self {
        self.discover_weighted(address, 1.0)
    }

    /// [`discover`](Self::discover) with a weight for every server found.
    ///
    /// ```
    /// let builder = tiny_cache_client::cluster::Cluster::builder().discover_weighted("pool:50051", 2.0);
    /// # drop(builder);
    /// ```
    pub fn discover_weighted(mut self, address: &str, weight: f64) -> Self {
        self.sources.push((address.to_owned(), weight, true));
        self
    }

    crate::setters::setters! {
        /// How many servers hold each key (R). Default 1. With more than one,
        /// values carry a 20-byte envelope (see the [module docs](super)).
        ///
        /// ```
        /// let builder = tiny_cache_client::cluster::Cluster::builder().replicas(2);
        /// # drop(builder);
        /// ```
        replicas(replicas: usize) => settings.replicas;

        /// Keys whose missed writes are remembered per server for hinted
        /// handoff (see the [module docs](super#hinted-handoff)). Default
        /// [`DEFAULT_HINT_CAPACITY`]; 0 keeps no hints, so a returning server's
        /// keys are always read from every replica for the recovery window.
        ///
        /// ```
        /// let builder = tiny_cache_client::cluster::Cluster::builder().replicas(2).hint_capacity(10_000);
        /// # drop(builder);
        /// ```
        hint_capacity(keys: usize) => settings.hint_capacity;

        /// How many replicas a read asks (Q, from 1 to R). Default 1.
        ///
        /// ```
        /// let builder = tiny_cache_client::cluster::Cluster::builder().replicas(3).read_quorum(2);
        /// # drop(builder);
        /// ```
        read_quorum(quorum: usize) => settings.read_quorum;

        /// How reads of one key with Q = 1 and a replica to spare are hedged:
        /// by default after the replicas' recent p95, within 5 % of
        /// reads (see [`Hedging`]). [`Hedging::off`] turns it off.
        ///
        /// ```
        /// use tiny_cache_client::cluster::{Cluster, Hedging};
        /// let builder = Cluster::builder().replicas(2).hedging(Hedging::off());
        /// # drop(builder);
        /// ```
        hedging(hedging: Hedging) => settings.hedging;

        /// Consecutive failed calls that mark a server down. Default
        /// [`DEFAULT_FAILURE_THRESHOLD`].
        ///
        /// ```
        /// let builder = tiny_cache_client::cluster::Cluster::builder().failure_threshold(5);
        /// # drop(builder);
        /// ```
        failure_threshold(failures: u32) => settings.failure_threshold;

        /// How long a server marked down is skipped before it is probed.
        /// Default [`DEFAULT_COOL_DOWN`].
        ///
        /// ```
        /// use std::time::Duration;
        /// let builder = tiny_cache_client::cluster::Cluster::builder().cool_down(Duration::from_secs(30));
        /// # drop(builder);
        /// ```
        cool_down(cool_down: Duration) => settings.cool_down;

        /// How often servers marked down are probed, and how long a probe
        /// waits. Default [`DEFAULT_PROBE_INTERVAL`].
        ///
        /// ```
        /// use std::time::Duration;
        /// let builder = tiny_cache_client::cluster::Cluster::builder().probe_interval(Duration::from_millis(250));
        /// # drop(builder);
        /// ```
        probe_interval(interval: Duration) => settings.probe_interval;

        /// How often discovered names are resolved again. Default
        /// [`DEFAULT_RESOLVE_INTERVAL`].
        ///
        /// ```
        /// use std::time::Duration;
        /// let builder = tiny_cache_client::cluster::Cluster::builder().resolve_interval(Duration::from_secs(30));
        /// # drop(builder);
        /// ```
        resolve_interval(interval: Duration) => settings.resolve_interval;

        /// The deadline of every cluster call, fallbacks and read repair
        /// included. Default [`DEFAULT_TIMEOUT`].
        ///
        /// ```
        /// use std::time::Duration;
        /// let builder = tiny_cache_client::cluster::Cluster::builder().timeout(Duration::from_millis(300));
        /// # drop(builder);
        /// ```
        timeout(timeout: Duration) => settings.timeout;

        /// Extra attempts per call on the same server. Default
        /// [`DEFAULT_CLUSTER_MAX_RETRIES`].
        ///
        /// ```
        /// let builder = tiny_cache_client::cluster::Cluster::builder().max_retries(0);
        /// # drop(builder);
        /// ```
        max_retries(retries: u32) => max_retries;

        /// Worker threads (connections) per server. Default
        /// [`DEFAULT_POOL_SIZE_PER_SERVER`].
        ///
        /// ```
        /// let builder = tiny_cache_client::cluster::Cluster::builder().pool_size_per_server(2);
        /// # drop(builder);
        /// ```
        pool_size_per_server(workers: usize) => pool_size;
    }

    /// The TTL of writes that do not give one. Default [`DEFAULT_TTL`].
    ///
    /// ```
    /// use tiny_cache_client::Ttl;
    /// let builder = tiny_cache_client::cluster::Cluster::builder().default_ttl(Ttl::Never);
    /// # drop(builder);
    /// ```
    pub fn default_ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.settings.default_ttl = ttl.into();
        self
    }

    /// The namespace every server's client prefixes keys with.
    ///
    /// ```
    /// let builder = tiny_cache_client::cluster::Cluster::builder().namespace("billing");
    /// # drop(builder);
    /// ```
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// Adjusts every server's [`ClientBuilder`] after the settings above
    /// are applied: TLS, metadata, windows, anything a single client takes.
    ///
    /// ```
    /// use tiny_cache_client::cluster::Cluster;
    /// let builder = Cluster::builder()
    ///     .server("cache-0:50051")
    ///     .configure_clients(|client| client.metadata("x-caller", "billing"));
    /// # drop(builder);
    /// ```
    pub fn configure_clients(
        mut self,
        configure: impl Fn(ClientBuilder) -> ClientBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configure = Some(Arc::new(configure));
        self
    }

    /// Replaces the system resolver used for [`discover`](Self::discover)
    /// names: for tests, or a service registry that is not DNS.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tiny_cache_client::cluster::Cluster;
    /// let builder = Cluster::builder().discover("pool:7000").resolver(|_host: &str, port: u16| {
    ///     Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    /// });
    /// # drop(builder);
    /// ```
    pub fn resolver(
        mut self,
        resolve: impl Fn(&str, u16) -> std::io::Result<Vec<std::net::SocketAddr>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.resolver = Arc::new(resolve);
        self
    }

    /// Checks the settings, makes every server's client and starts the
    /// background thread that probes servers marked down and re-resolves
    /// discovered names. Connections are made in the background, so this
    /// succeeds while servers are down.
    ///
    /// Errors: [`Error::Validation`] for no servers, an invalid address or
    /// weight, R = 0, a quorum outside 1..=R, a zero threshold or
    /// interval, or any setting a server's client refuses.
    ///
    /// ```
    /// use tiny_cache_client::cluster::Cluster;
    /// assert!(Cluster::builder().build().is_err()); // no servers
    /// assert!(Cluster::builder().server("a:1").replicas(2).read_quorum(3).build().is_err());
    /// ```
    pub fn build(self) -> Result<Cluster> {
        let invalid = |why: String| Err(Error::Validation(why));
        if self.sources.is_empty() {
            return invalid("a cluster needs at least one server".into());
        }
        let s = &self.settings;
        if s.replicas == 0 {
            return invalid("replicas must be at least 1".into());
        }
        if s.read_quorum == 0 || s.read_quorum > s.replicas {
            return invalid(format!(
                "the read quorum must be from 1 to the replicas ({}), not {}",
                s.replicas, s.read_quorum
            ));
        }
        if s.failure_threshold == 0 {
            return invalid("the failure threshold must be at least 1".into());
        }
        if s.probe_interval.is_zero() || s.resolve_interval.is_zero() || s.timeout.is_zero() {
            return invalid(
                "the probe and resolve intervals and the timeout must be positive".into(),
            );
        }
        s.default_ttl.wire_seconds()?;
        let mut sources = Vec::with_capacity(self.sources.len());
        for (text, weight, discovered) in &self.sources {
            if !(weight.is_finite() && *weight > 0.0) {
                return invalid(format!(
                    "the weight of {text:?} must be positive and finite"
                ));
            }
            let address: Address = text.parse()?;
            let weight = *weight;
            sources.push(if *discovered {
                Source::Discovered { address, weight }
            } else {
                Source::Fixed { address, weight }
            });
        }
        Cluster::start(self, sources)
    }
}
