//! Client configuration: the server address, timeouts, retries, TTLs, the
//! pool, and how each default was chosen.

use std::path::Path;
use std::time::Duration;

use crate::address::Address;
use crate::client::retry::RetryThrottle;
use crate::codec::{
    Metadata, CONNECTION_WINDOW_BYTES, DEFAULT_MAX_MESSAGE_BYTES, STREAM_WINDOW_BYTES,
};
use crate::error::{Error, Result};
use crate::pool::{Backoff, PoolConfig, ReplyWait};
use crate::rules;
use crate::tls::{Pem, TlsOptions};
use crate::ttl::{Ttl, DEFAULT_TTL};

/// Server address used when neither the builder nor `CACHE_SERVER_ADDRESS`
/// names one: the reference server's default port on this host.
///
/// ```
/// use tiny_cache_client::{Address, DEFAULT_ADDRESS};
///
/// let address: Address = DEFAULT_ADDRESS.parse()?;
/// assert_eq!((address.host(), address.port()), ("localhost", 50051));
/// assert!(!address.is_tls());
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
pub const DEFAULT_ADDRESS: &str = "localhost:50051";

/// Per-call deadline, spanning every retry: the Python client's default.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::{Client, DEFAULT_TIMEOUT};
///
/// assert_eq!(DEFAULT_TIMEOUT, Duration::from_secs(30));
/// // An interactive caller would rather fail fast.
/// let client = Client::builder("127.0.0.1:50051")
///     .timeout(DEFAULT_TIMEOUT / 30)
///     .build()?;
/// # drop(client);
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Extra attempts after the first for a retryable failure: the Python
/// client's default.
///
/// ```
/// use tiny_cache_client::{Client, DEFAULT_MAX_RETRIES};
///
/// assert_eq!(DEFAULT_MAX_RETRIES, 3); // up to 4 attempts in all
/// let patient = Client::builder("127.0.0.1:50051")
///     .max_retries(2 * DEFAULT_MAX_RETRIES)
///     .build()?;
/// # drop(patient);
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// Longest wait to establish one connection (TCP, HTTP/2 preface, first
/// PING answered): the gRPC connection-backoff specification's minimum
/// connect timeout. A call never waits past its own deadline regardless.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::{Client, DEFAULT_CONNECT_TIMEOUT};
///
/// assert_eq!(DEFAULT_CONNECT_TIMEOUT, Duration::from_secs(20));
/// let client = Client::builder("127.0.0.1:50051")
///     .connect_timeout(DEFAULT_CONNECT_TIMEOUT / 4)
///     .build()?;
/// # drop(client);
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Ping period while calls are in flight, to find a dead connection (a
/// half-open TCP connection, a wedged server) before the calls' deadlines:
/// the gRPC keepalive guidance's minimum of 10 s between pings.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::{DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_TIMEOUT};
///
/// assert_eq!(DEFAULT_KEEPALIVE_INTERVAL, Duration::from_secs(10));
/// // A dead connection is found well within a call's default deadline.
/// assert!(DEFAULT_KEEPALIVE_INTERVAL < DEFAULT_TIMEOUT);
/// ```
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a keepalive ping may stay unanswered before the connection is
/// dropped and its calls fail over to a fresh one.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::{
///     Client, DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_TIMEOUT,
/// };
///
/// assert_eq!(DEFAULT_KEEPALIVE_TIMEOUT, Duration::from_secs(10));
/// // Ping interval plus ping timeout: still inside the default deadline.
/// assert!(DEFAULT_KEEPALIVE_INTERVAL + DEFAULT_KEEPALIVE_TIMEOUT < DEFAULT_TIMEOUT);
/// let client = Client::builder("127.0.0.1:50051")
///     .keepalive(Some(DEFAULT_KEEPALIVE_INTERVAL), DEFAULT_KEEPALIVE_TIMEOUT / 2)
///     .build()?;
/// # drop(client);
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the ping sent after a call timed out may stay unanswered
/// before the server counts as unresponsive (stopped, wedged, or cut off
/// without a reset): its connection is dropped and calls fail fast with
/// [`Error::Unavailable`](crate::Error::Unavailable) until a new connection
/// is up. A live server answers a ping in a round trip, whatever its load,
/// so one second is generous; reconnect attempts then get twice this,
/// doubling while they fail, up to the connect timeout.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::{Client, DEFAULT_PROBE_TIMEOUT};
///
/// assert_eq!(DEFAULT_PROBE_TIMEOUT, Duration::from_secs(1));
/// let client = Client::builder("127.0.0.1:50051")
///     .probe_timeout(DEFAULT_PROBE_TIMEOUT * 3)
///     .build()?;
/// # drop(client);
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// First pause between retries of a call; it doubles per attempt, with full
/// jitter, up to [`DEFAULT_RETRY_MAX_BACKOFF`].
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::{DEFAULT_RETRY_INITIAL_BACKOFF, DEFAULT_RETRY_MAX_BACKOFF};
///
/// assert_eq!(DEFAULT_RETRY_INITIAL_BACKOFF, Duration::from_millis(50));
/// // Doubling from 50 ms reaches the 2 s cap at the sixth retry.
/// assert_eq!(DEFAULT_RETRY_INITIAL_BACKOFF * 2u32.pow(5), Duration::from_millis(1600));
/// assert!(DEFAULT_RETRY_INITIAL_BACKOFF * 2u32.pow(6) > DEFAULT_RETRY_MAX_BACKOFF);
/// ```
pub const DEFAULT_RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(50);

/// Cap of the pause between retries of a call.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::{Client, DEFAULT_RETRY_INITIAL_BACKOFF, DEFAULT_RETRY_MAX_BACKOFF};
///
/// assert_eq!(DEFAULT_RETRY_MAX_BACKOFF, Duration::from_secs(2));
/// // Keep the first pause, allow longer ones for a server that restarts slowly.
/// let client = Client::builder("127.0.0.1:50051")
///     .retry_backoff(DEFAULT_RETRY_INITIAL_BACKOFF, 5 * DEFAULT_RETRY_MAX_BACKOFF)
///     .build()?;
/// # drop(client);
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
pub const DEFAULT_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// HTTP/2 stream receive window: a whole 4 MiB message fits in one window,
/// so large values arrive without waiting for WINDOW_UPDATE round trips
/// (the protocol default of 64 KiB would cap a stream at one window per RTT).
///
/// ```
/// use tiny_cache_client::DEFAULT_STREAM_WINDOW_BYTES;
///
/// // A whole 4 MiB message and its 5-byte gRPC prefix fit in one window.
/// assert_eq!(DEFAULT_STREAM_WINDOW_BYTES, 4 * 1024 * 1024 + 5);
/// ```
pub const DEFAULT_STREAM_WINDOW_BYTES: u32 = STREAM_WINDOW_BYTES;

/// HTTP/2 connection receive window: room for several large replies at once.
///
/// ```
/// use tiny_cache_client::{Client, DEFAULT_CONNECTION_WINDOW_BYTES, DEFAULT_STREAM_WINDOW_BYTES};
///
/// assert_eq!(DEFAULT_CONNECTION_WINDOW_BYTES, 16 * 1024 * 1024);
/// assert!(DEFAULT_CONNECTION_WINDOW_BYTES / DEFAULT_STREAM_WINDOW_BYTES >= 3);
/// // Room for more large replies at once on each connection.
/// let client = Client::builder("127.0.0.1:50051")
///     .http2_windows(DEFAULT_STREAM_WINDOW_BYTES, 2 * DEFAULT_CONNECTION_WINDOW_BYTES)
///     .build()?;
/// # drop(client);
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
pub const DEFAULT_CONNECTION_WINDOW_BYTES: u32 = CONNECTION_WINDOW_BYTES;

/// How [`Client::ping`](crate::Client::ping) asks whether the server answers.
///
/// Defaults to [`PingMethod::Stats`], because the reference server's health
/// service answers `UNKNOWN` to every check today.
///
/// ```
/// use tiny_cache_client::{Client, PingMethod};
///
/// assert_eq!(PingMethod::default(), PingMethod::Stats);
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let address = server.address();
/// for method in [PingMethod::Stats, PingMethod::Health] {
///     let client = Client::builder(&address).ping_method(method).build()?;
///     client.ping()?;
/// }
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PingMethod {
    /// A `Stats` call: cheap, and works against every server version.
    #[default]
    Stats,
    /// The standard `grpc.health.v1.Health/Check` for `cache.CacheService`.
    Health,
}

/// The worker count a pool gets unless told otherwise: half the machine's
/// cores, at least 1 and at most 4.
///
/// One worker drives one HTTP/2 connection, which carries hundreds of
/// concurrent calls; more workers only add thread switches until the
/// worker's own CPU is the bottleneck. On a 2-core machine one worker
/// measured as fast as two or faster at 4 to 256 callers against both the
/// embedded and a tonic server (see BENCHMARKS.md), and half the cores
/// leaves the rest to the callers.
///
/// ```
/// use tiny_cache_client::default_pool_size;
///
/// let workers = default_pool_size();
/// assert!((1..=4).contains(&workers));
/// let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
/// assert!(workers <= cores);
/// ```
pub fn default_pool_size() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 4)
}

/// Longest deadline a call can have: a longer timeout is accepted and
/// treated as this, since an `Instant` cannot reach arbitrarily far ahead
/// (a century is "no deadline" for any caller).
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The largest HTTP/2 flow-control window the protocol allows (2³¹ − 1).
const MAX_WINDOW_BYTES: u32 = (1 << 31) - 1;

/// The smallest receive window accepted: the protocol's initial window.
/// Anything smaller only slows every reply down.
const MIN_WINDOW_BYTES: u32 = 65_535;

/// The settings a handle can change per call (`Client::with_timeout` and
/// the other `with_*` methods). The builder fills the client's defaults;
/// every derived handle starts from a clone of its parent's.
#[derive(Debug, Clone)]
pub(crate) struct CallOptions {
    /// Deadline of a call, spanning every retry. [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Extra attempts after a retryable failure. [`DEFAULT_MAX_RETRIES`].
    pub max_retries: u32,
    /// Metadata sent with every call, the namespace header included.
    /// Default: none.
    pub metadata: Metadata,
    /// Key space of every call. Default: the shared key space (`None`).
    pub namespace: Option<String>,
}

impl CallOptions {
    /// Sets the deadline; zero is refused (a call that may not take any
    /// time cannot succeed).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        if timeout.is_zero() {
            return Err(Error::Validation("the timeout must be positive".into()));
        }
        self.timeout = timeout;
        Ok(())
    }

    /// Sets the key space, as `x-cache-namespace`; blank means the shared
    /// key space.
    pub fn set_namespace(&mut self, raw: &str) -> Result<()> {
        let namespace = rules::parse_namespace(raw)?.map(str::to_owned);
        match &namespace {
            Some(namespace) => self.metadata.insert(rules::NAMESPACE_HEADER, namespace)?,
            None => self.metadata.remove(rules::NAMESPACE_HEADER),
        }
        self.namespace = namespace;
        Ok(())
    }
}

/// Everything a [`Client`](crate::Client) is built from: the builder fills
/// it, the client keeps it, and the pool is started from its `pool` part.
/// Every field's default is written next to it.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    /// Per-call settings a handle can override.
    pub call: CallOptions,
    /// [`DEFAULT_RETRY_INITIAL_BACKOFF`] doubling up to
    /// [`DEFAULT_RETRY_MAX_BACKOFF`]; the pause is drawn with full jitter.
    pub retry_backoff: Backoff,
    /// [`RetryThrottle::default`]; `None` turns the budget off.
    pub retry_throttle: Option<RetryThrottle>,
    /// One hour, [`DEFAULT_TTL`].
    pub default_ttl: Ttl,
    /// 4 MiB, the reference server's own limit.
    pub max_send_message_bytes: usize,
    /// [`PingMethod::Stats`].
    pub ping_method: PingMethod,
    /// [`ReplyWait::Park`].
    pub reply_wait: ReplyWait,
    /// TLS options as given: off unless the address is `grpcs://`;
    /// webpki-roots; no client certificate. `build` resolves them into
    /// `pool.tls`.
    pub tls: TlsOptions,
    /// The address and the connections' settings (see [`PoolConfig`]).
    pub pool: PoolConfig,
    /// Prefix of every metric name. `tiny_cache_client`.
    #[cfg(feature = "metrics")]
    pub metrics_prefix: String,
}

impl ClientConfig {
    /// Every default, for the server at `address`.
    fn new(address: Address) -> ClientConfig {
        ClientConfig {
            call: CallOptions {
                timeout: DEFAULT_TIMEOUT,
                max_retries: DEFAULT_MAX_RETRIES,
                metadata: Metadata::new(),
                namespace: None,
            },
            retry_backoff: Backoff {
                initial: DEFAULT_RETRY_INITIAL_BACKOFF,
                multiplier: 2.0,
                max: DEFAULT_RETRY_MAX_BACKOFF,
                // The jitter of a retry pause is "full": drawn whole from
                // [0, delay] by `Backoff::full_jitter_delay`.
                jitter: 0.0,
            },
            retry_throttle: Some(RetryThrottle::default()),
            default_ttl: Ttl::After(DEFAULT_TTL),
            max_send_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            ping_method: PingMethod::Stats,
            reply_wait: ReplyWait::Park,
            tls: TlsOptions::default(),
            pool: PoolConfig {
                address,
                tls: None,
                size: default_pool_size(),
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                stream_window_bytes: DEFAULT_STREAM_WINDOW_BYTES,
                connection_window_bytes: DEFAULT_CONNECTION_WINDOW_BYTES,
                max_receive_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
                reconnect_backoff: Backoff::RECONNECT,
                keepalive_interval: Some(DEFAULT_KEEPALIVE_INTERVAL),
                keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
                probe_timeout: DEFAULT_PROBE_TIMEOUT,
                on_reconnect: None,
            },
            #[cfg(feature = "metrics")]
            metrics_prefix: crate::client::telemetry::DEFAULT_METRICS_PREFIX.to_owned(),
        }
    }
}

/// Builds a [`Client`](crate::Client); every setting has a documented
/// default, so `Client::builder(addr).build()` is a complete client.
///
/// One rule holds for every setter: a value outside the documented range
/// is never clamped or ignored; `build` reports the first one as
/// [`Error::Validation`]. The per-call overrides on
/// [`Client`](crate::Client) (`with_timeout`, `with_namespace`, ...) apply
/// the same checks and return the same error.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::{Client, Error, Ttl};
///
/// let client = Client::builder("127.0.0.1:50051")
///     .timeout(Duration::from_secs(2))
///     .max_retries(2)
///     .default_ttl(Ttl::After(Duration::from_secs(600)))
///     .namespace("checkout")
///     .metadata("x-team", "payments")
///     .build()?;
/// # drop(client);
///
/// let refused = Client::builder("127.0.0.1:50051")
///     .retry_backoff(Duration::from_secs(2), Duration::from_secs(1))
///     .build();
/// assert!(matches!(refused, Err(Error::Validation(_))));
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct ClientBuilder {
    /// The first invalid setting, once there is one: later setters are
    /// then ignored, and `build` reports it.
    config: Result<ClientConfig>,
}

impl ClientBuilder {
    /// A builder for a client of the server at `address` (see [`Address`]
    /// for the accepted forms). A malformed address is reported by `build`.
    ///
    /// ```
    /// use tiny_cache_client::{ClientBuilder, Error};
    ///
    /// let client = ClientBuilder::new("grpc://127.0.0.1:50051").build()?;
    /// # drop(client);
    /// // A malformed address is reported by `build`, not here.
    /// let no_port = ClientBuilder::new("127.0.0.1");
    /// assert!(matches!(no_port.build(), Err(Error::Validation(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(address: &str) -> ClientBuilder {
        ClientBuilder {
            config: address.parse().map(ClientConfig::new),
        }
    }

    /// A builder configured from the environment, as the Python client is:
    /// `CACHE_SERVER_ADDRESS` (default [`DEFAULT_ADDRESS`]),
    /// `CACHE_MAX_RETRIES` (default 3) and `CACHE_TIMEOUT` (seconds, may be
    /// fractional; default 30). A malformed value is reported by `build`.
    ///
    /// ```standalone_crate
    /// use tiny_cache_client::{ClientBuilder, Error};
    ///
    /// // SAFETY (of every `set_var` here): this example runs as a process
    /// // of its own, with no other thread reading the environment.
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// unsafe { std::env::set_var("CACHE_SERVER_ADDRESS", server.address()) };
    /// unsafe { std::env::set_var("CACHE_TIMEOUT", "2.5") };
    /// let client = ClientBuilder::from_env().namespace("jobs").build()?;
    /// client.set("k", "v")?;
    /// # }
    /// unsafe { std::env::set_var("CACHE_MAX_RETRIES", "lots") };
    /// match ClientBuilder::from_env().build() {
    ///     Err(Error::Validation(message)) => assert!(message.contains("CACHE_MAX_RETRIES")),
    ///     other => panic!("expected a validation error, got {other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_env() -> ClientBuilder {
        let address =
            std::env::var("CACHE_SERVER_ADDRESS").unwrap_or_else(|_| DEFAULT_ADDRESS.into());
        let mut builder = ClientBuilder::new(&address);
        if let Ok(raw) = std::env::var("CACHE_MAX_RETRIES") {
            builder = builder.update(|c| {
                c.call.max_retries = raw.trim().parse().map_err(|_| {
                    Error::Validation(format!(
                        "CACHE_MAX_RETRIES must be a whole number, got {raw:?}"
                    ))
                })?;
                Ok(())
            });
        }
        if let Ok(raw) = std::env::var("CACHE_TIMEOUT") {
            builder = builder.update(|c| {
                let timeout = rules::parse_seconds(&raw).map_err(|_| {
                    Error::Validation(format!(
                        "CACHE_TIMEOUT must be a positive number of seconds, got {raw:?}"
                    ))
                })?;
                c.call.set_timeout(timeout)
            });
        }
        builder
    }

    fn update(mut self, change: impl FnOnce(&mut ClientConfig) -> Result<()>) -> Self {
        if let Ok(config) = &mut self.config {
            if let Err(error) = change(config) {
                self.config = Err(error);
            }
        }
        self
    }

    /// Deadline of each call, spanning all its retries. Default
    /// [`DEFAULT_TIMEOUT`]; must be positive.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tiny_cache_client::{Client, Error};
    ///
    /// // A listener that never answers: the call gives up at its deadline.
    /// let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let client = Client::builder(&silent.local_addr()?.to_string())
    ///     .timeout(Duration::from_millis(200))
    ///     .build()?;
    /// let started = Instant::now();
    /// assert!(matches!(client.get("k"), Err(Error::DeadlineExceeded(_))));
    /// assert!(started.elapsed() >= Duration::from_millis(200));
    ///
    /// let refused = Client::builder("127.0.0.1:50051").timeout(Duration::ZERO).build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timeout(self, timeout: Duration) -> Self {
        self.update(|c| c.call.set_timeout(timeout))
    }

    /// Extra attempts after a retryable failure. Default
    /// [`DEFAULT_MAX_RETRIES`]; 0 turns retries off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::{Client, Error};
    ///
    /// // Nothing listens on port 1: with retries off, the first refusal is the
    /// // answer, and the caller decides whether to try again later.
    /// let client = Client::builder("127.0.0.1:1")
    ///     .max_retries(0)
    ///     .timeout(Duration::from_secs(5))
    ///     .build()?;
    /// let error = client.get("k").unwrap_err();
    /// assert!(matches!(error, Error::Unavailable(_)));
    /// assert!(error.is_retryable());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn max_retries(self, retries: u32) -> Self {
        self.update(|c| {
            c.call.max_retries = retries;
            Ok(())
        })
    }

    /// Pause before the first retry and its cap; the pause doubles per
    /// attempt, drawn with full jitter from zero to that value. Defaults
    /// [`DEFAULT_RETRY_INITIAL_BACKOFF`] and [`DEFAULT_RETRY_MAX_BACKOFF`];
    /// `max` must be at least `initial`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::{Client, Error};
    ///
    /// let client = Client::builder("127.0.0.1:50051")
    ///     .retry_backoff(Duration::from_millis(10), Duration::from_millis(500))
    ///     .build()?;
    /// # drop(client);
    /// // A cap below the first pause is refused, not silently raised.
    /// let refused = Client::builder("127.0.0.1:50051")
    ///     .retry_backoff(Duration::from_secs(1), Duration::from_millis(100))
    ///     .build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn retry_backoff(self, initial: Duration, max: Duration) -> Self {
        self.update(|c| {
            if max < initial {
                return Err(Error::Validation(format!(
                    "the retry backoff cap ({max:?}) is below its initial pause ({initial:?})"
                )));
            }
            c.retry_backoff.initial = initial;
            c.retry_backoff.max = max;
            Ok(())
        })
    }

    /// TTL of writes that do not name one. Default one hour
    /// ([`DEFAULT_TTL`]); a zero duration is refused (say [`Ttl::Never`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::{Client, Error, Ttl};
    ///
    /// let sessions = Client::builder("127.0.0.1:50051")
    ///     .default_ttl(Duration::from_secs(15 * 60))
    ///     .build()?;
    /// let forever = Client::builder("127.0.0.1:50051")
    ///     .default_ttl(Ttl::Never)
    ///     .build()?;
    /// # drop((sessions, forever));
    /// // Zero is ambiguous (it means "never" on the wire): refused.
    /// let refused = Client::builder("127.0.0.1:50051")
    ///     .default_ttl(Duration::ZERO)
    ///     .build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn default_ttl(self, ttl: impl Into<Ttl>) -> Self {
        let ttl = ttl.into();
        self.update(|c| {
            ttl.wire_seconds()?;
            c.default_ttl = ttl;
            Ok(())
        })
    }

    /// Key space of every call (`x-cache-namespace`); keys in different
    /// namespaces never see each other. Default: the shared key space. Blank
    /// means the shared key space too.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error};
    ///
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let address = server.address();
    /// let alice = Client::builder(&address).namespace("alice").build()?;
    /// let shared = Client::builder(&address).namespace("  ").build()?;
    /// alice.set("cart", "3 apples")?;
    /// assert_eq!(shared.get("cart")?, None);
    /// # }
    /// let refused = Client::builder("127.0.0.1:50051").namespace("no spaces").build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn namespace(self, namespace: &str) -> Self {
        self.update(|c| c.call.set_namespace(namespace))
    }

    /// Adds an ASCII metadata header sent with every call (per-call
    /// metadata of the same name replaces it). Names are lower-case
    /// `[0-9a-z_.-]`; `grpc-` names are reserved.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error};
    ///
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let address = server.address();
    /// // Every call carries the header; the server echoes this one back.
    /// let client = Client::builder(&address)
    ///     .metadata("x-request-id", "batch-7")
    ///     .build()?;
    /// let response = client.call_with_metadata(|c| c.get("k"))?;
    /// assert_eq!(response.metadata().request_id(), Some("batch-7"));
    /// # }
    /// // `grpc-` names belong to the protocol.
    /// let refused = Client::builder("127.0.0.1:50051")
    ///     .metadata("grpc-timeout", "1S")
    ///     .build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metadata(self, name: &str, value: &str) -> Self {
        self.update(|c| Ok(c.call.metadata.insert(name, value)?))
    }

    /// Adds a binary metadata header (`name` must end in `-bin`) sent with
    /// every call.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error};
    ///
    /// let client = Client::builder("127.0.0.1:50051")
    ///     .metadata_bin("x-trace-bin", &[0xde, 0xad, 0xbe, 0xef])
    ///     .build()?;
    /// # drop(client);
    /// // A binary header's name must say so.
    /// let refused = Client::builder("127.0.0.1:50051")
    ///     .metadata_bin("x-trace", &[1])
    ///     .build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn metadata_bin(self, name: &str, value: &[u8]) -> Self {
        self.update(|c| Ok(c.call.metadata.insert_bin(name, value)?))
    }

    /// Number of worker threads, each owning one HTTP/2 connection.
    /// Default [`default_pool_size`]; must be at least 1.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error};
    ///
    /// let client = Client::builder("127.0.0.1:50051").pool_size(1).build()?;
    /// # drop(client);
    /// let refused = Client::builder("127.0.0.1:50051").pool_size(0).build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn pool_size(self, workers: usize) -> Self {
        self.update(|c| {
            if workers == 0 {
                return Err(Error::Validation(
                    "the pool needs at least one worker".into(),
                ));
            }
            c.pool.size = workers;
            Ok(())
        })
    }

    /// Longest wait to establish the first connection; a reconnect gets
    /// twice the [`probe_timeout`](Self::probe_timeout), doubling while
    /// attempts fail, up to this. Default [`DEFAULT_CONNECT_TIMEOUT`]; must
    /// be positive.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::{Client, Error};
    ///
    /// let client = Client::builder("127.0.0.1:50051")
    ///     .connect_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// # drop(client);
    /// let refused = Client::builder("127.0.0.1:50051")
    ///     .connect_timeout(Duration::ZERO)
    ///     .build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.update(|c| {
            if timeout.is_zero() {
                return Err(Error::Validation(
                    "the connect timeout must be positive".into(),
                ));
            }
            c.pool.connect_timeout = timeout;
            Ok(())
        })
    }

    /// Largest request message this client sends; a bigger one fails with
    /// [`Error::ResourceExhausted`] before any I/O. Default 4 MiB, the
    /// reference server's own limit; must be positive.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error};
    ///
    /// let client = Client::builder("127.0.0.1:50051")
    ///     .max_send_message_bytes(1024)
    ///     .build()?;
    /// // Refused before any I/O: no server is needed to see it.
    /// assert!(matches!(client.set("big", vec![0u8; 4096]), Err(Error::ResourceExhausted(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn max_send_message_bytes(self, bytes: usize) -> Self {
        self.update(|c| {
            c.max_send_message_bytes = positive_message_limit(bytes)?;
            Ok(())
        })
    }

    /// Largest reply message this client accepts; a bigger one fails with
    /// [`Error::ResourceExhausted`], decided from its length prefix before
    /// it is buffered. Default 4 MiB; must be positive.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error};
    ///
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let address = server.address();
    /// Client::new(&address)?.set("photo", vec![0u8; 64 * 1024])?;
    /// let small = Client::builder(&address)
    ///     .max_receive_message_bytes(1024)
    ///     .build()?;
    /// assert!(matches!(small.get("photo"), Err(Error::ResourceExhausted(_))));
    /// # }
    /// let refused = Client::builder("127.0.0.1:50051")
    ///     .max_receive_message_bytes(0)
    ///     .build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_receive_message_bytes(self, bytes: usize) -> Self {
        self.update(|c| {
            c.pool.max_receive_message_bytes = positive_message_limit(bytes)?;
            Ok(())
        })
    }

    /// HTTP/2 receive windows per stream and per connection. Defaults
    /// [`DEFAULT_STREAM_WINDOW_BYTES`] and
    /// [`DEFAULT_CONNECTION_WINDOW_BYTES`]. Each must lie between 65,535
    /// (the protocol's initial window) and 2³¹ − 1 (its maximum), and the
    /// connection's must hold at least one stream's.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error};
    ///
    /// let client = Client::builder("127.0.0.1:50051")
    ///     .http2_windows(1 << 20, 8 << 20)
    ///     .build()?;
    /// # drop(client);
    /// // The connection's window must hold at least one stream's.
    /// let inverted = Client::builder("127.0.0.1:50051").http2_windows(8 << 20, 1 << 20);
    /// assert!(matches!(inverted.build(), Err(Error::Validation(_))));
    /// // Below the protocol's initial window of 65,535 bytes.
    /// let tiny = Client::builder("127.0.0.1:50051").http2_windows(1024, 1 << 20);
    /// assert!(matches!(tiny.build(), Err(Error::Validation(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn http2_windows(self, stream_bytes: u32, connection_bytes: u32) -> Self {
        self.update(|c| {
            let range = MIN_WINDOW_BYTES..=MAX_WINDOW_BYTES;
            if !range.contains(&stream_bytes) || !range.contains(&connection_bytes) {
                return Err(Error::Validation(format!(
                    "HTTP/2 windows must be from {MIN_WINDOW_BYTES} to {MAX_WINDOW_BYTES} bytes, \
                     got {stream_bytes} (stream) and {connection_bytes} (connection)"
                )));
            }
            if connection_bytes < stream_bytes {
                return Err(Error::Validation(format!(
                    "the connection window ({connection_bytes} bytes) is smaller than \
                     the stream window ({stream_bytes} bytes)"
                )));
            }
            c.pool.stream_window_bytes = stream_bytes;
            c.pool.connection_window_bytes = connection_bytes;
            Ok(())
        })
    }

    /// How [`Client::ping`](crate::Client::ping) probes the server. Default
    /// [`PingMethod::Stats`].
    ///
    /// ```
    /// use tiny_cache_client::{Client, PingMethod};
    ///
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let address = server.address();
    /// // The embedded server's health service reports cache.CacheService as
    /// // SERVING, so a health-check ping succeeds.
    /// let client = Client::builder(&address)
    ///     .ping_method(PingMethod::Health)
    ///     .build()?;
    /// let round_trip = client.ping()?;
    /// println!("healthy, answered in {round_trip:?}");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ping_method(self, method: PingMethod) -> Self {
        self.update(|c| {
            c.ping_method = method;
            Ok(())
        })
    }

    /// The client-wide retry budget (see [`RetryThrottle`]); `None` lets
    /// every call use its whole retry allowance whatever the others see.
    /// Default: [`RetryThrottle::default`].
    ///
    /// ```
    /// use tiny_cache_client::{Client, RetryThrottle};
    ///
    /// assert_eq!(RetryThrottle::default(), RetryThrottle { max_tokens: 10, token_ratio: 0.1 });
    /// // A larger budget for a client that must ride out a server restart.
    /// let patient = Client::builder("127.0.0.1:50051")
    ///     .retry_throttle(Some(RetryThrottle { max_tokens: 100, ..RetryThrottle::default() }))
    ///     .build()?;
    /// // No shared budget at all: each call retries up to `max_retries`.
    /// let unthrottled = Client::builder("127.0.0.1:50051")
    ///     .retry_throttle(None)
    ///     .build()?;
    /// # drop((patient, unthrottled));
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn retry_throttle(self, throttle: Option<RetryThrottle>) -> Self {
        self.update(|c| {
            c.retry_throttle = throttle;
            Ok(())
        })
    }

    /// How a calling thread sleeps until its reply arrives. The default,
    /// [`ReplyWait::Park`], costs no CPU while waiting;
    /// [`ReplyWait::Channel`] is kept so benchmarks can measure the
    /// difference (see BENCHMARKS.md). Unstable: only with the
    /// `unstable-internals` feature.
    ///
    /// ```
    /// use tiny_cache_client::{Client, ReplyWait};
    ///
    /// let client = Client::builder("127.0.0.1:50051")
    ///     .reply_wait(ReplyWait::Channel)
    ///     .build()?;
    /// # drop(client);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    #[cfg(feature = "unstable-internals")]
    pub fn reply_wait(self, wait: ReplyWait) -> Self {
        self.update(|c| {
            c.reply_wait = wait;
            Ok(())
        })
    }

    /// The prefix of the client's metric names (feature `metrics`):
    /// `{prefix}_calls_total` and the others listed in the README. Default
    /// `tiny_cache_client`; must be `[a-zA-Z_][a-zA-Z0-9_]*`.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error};
    ///
    /// let client = Client::builder("127.0.0.1:50051").metrics_prefix("checkout_cache").build()?;
    /// # drop(client);
    /// let refused = Client::builder("127.0.0.1:50051").metrics_prefix("no-dashes").build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Error>(())
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics_prefix(self, prefix: &str) -> Self {
        self.update(|c| {
            crate::client::telemetry::check_prefix(prefix)?;
            c.metrics_prefix = prefix.to_owned();
            Ok(())
        })
    }

    /// Keepalive: while calls are in flight, ping each connection every
    /// `interval` (`None` turns periodic pings off) and drop it when a ping
    /// stays unanswered for `timeout`; its calls then fail over to a fresh
    /// connection instead of waiting for their deadlines. A call that times
    /// out after it was sent also triggers a ping (see
    /// [`probe_timeout`](Self::probe_timeout)). Defaults [`DEFAULT_KEEPALIVE_INTERVAL`] and
    /// [`DEFAULT_KEEPALIVE_TIMEOUT`]; both must be positive. Servers may
    /// refuse pings more often than every 10 s (GOAWAY `too_many_pings`);
    /// the interval then doubles.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::{Client, Error};
    ///
    /// let client = Client::builder("127.0.0.1:50051")
    ///     .keepalive(Some(Duration::from_secs(30)), Duration::from_secs(5))
    ///     .build()?;
    /// // No periodic pings; a call that times out still triggers one.
    /// let quiet = Client::builder("127.0.0.1:50051")
    ///     .keepalive(None, Duration::from_secs(5))
    ///     .build()?;
    /// # drop((client, quiet));
    /// let refused = Client::builder("127.0.0.1:50051")
    ///     .keepalive(Some(Duration::ZERO), Duration::from_secs(5))
    ///     .build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn keepalive(self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.update(|c| {
            if interval.is_some_and(|i| i.is_zero()) || timeout.is_zero() {
                return Err(Error::Validation(
                    "keepalive interval and timeout must be positive".into(),
                ));
            }
            c.pool.keepalive_interval = interval;
            c.pool.keepalive_timeout = timeout;
            Ok(())
        })
    }

    /// How long the ping sent after a timed-out call may stay unanswered
    /// before the server counts as unresponsive: the connection is dropped,
    /// calls fail fast with [`Error::Unavailable`] while a new one is
    /// made, and that attempt gets twice this long (doubling while attempts
    /// fail, up to the connect timeout). Capped by the keepalive timeout.
    /// Default [`DEFAULT_PROBE_TIMEOUT`]; must be positive.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::{Client, Error};
    ///
    /// // A server with long pauses (a stop-the-world collector, say).
    /// let patient = Client::builder("127.0.0.1:50051")
    ///     .probe_timeout(Duration::from_secs(5))
    ///     .build()?;
    /// # drop(patient);
    /// let refused = Client::builder("127.0.0.1:50051").probe_timeout(Duration::ZERO).build();
    /// assert!(matches!(refused, Err(Error::Validation(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn probe_timeout(self, timeout: Duration) -> Self {
        self.update(|c| {
            if timeout.is_zero() {
                return Err(Error::Validation(
                    "the probe timeout must be positive".into(),
                ));
            }
            c.pool.probe_timeout = timeout;
            Ok(())
        })
    }

    /// Speaks TLS even though the address has no `grpcs://` scheme
    /// (`grpcs://` turns TLS on by itself). Default: plain HTTP/2 unless the
    /// address says `grpcs://`; `tls(false)` with a `grpcs://` address is a
    /// contradiction that `build` reports.
    ///
    /// With TLS on, the client uses rustls, requires the server to agree to
    /// HTTP/2 by ALPN, and trusts the webpki-roots CAs (Mozilla's) unless
    /// told otherwise; a failed handshake is an [`Error::Tls`] whose
    /// [`TlsFailure`](crate::TlsFailure) names the case.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error, TlsFailure};
    ///
    /// // Building never connects: no server is needed to build a TLS client.
    /// let client = Client::builder("cache.internal:50051").tls(true).build()?;
    /// # drop(client);
    /// let contradiction = Client::builder("grpcs://cache.internal:50051").tls(false).build();
    /// assert!(matches!(contradiction, Err(Error::Validation(_))));
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// // A server speaking plain HTTP/2 is reported as such.
    /// let client = Client::builder(&server.address()).tls(true).build()?;
    /// let error = client.get("k").unwrap_err();
    /// assert!(matches!(error, Error::Tls { kind: TlsFailure::ServerNotTls, .. }));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls(self, enabled: bool) -> Self {
        self.update(|c| {
            c.tls.enabled = Some(enabled);
            Ok(())
        })
    }

    /// Trusts the CA certificate(s) in this PEM text, besides the built-in
    /// roots (turn those off with [`tls_built_in_roots`](Self::tls_built_in_roots)
    /// to trust only yours). May be called more than once. Needs TLS on.
    ///
    /// A server presenting exactly one of these certificates is accepted
    /// too (validity dates and name still checked): that is how the
    /// reference server's development certificate, its own CA, is used,
    /// as grpc clients do when given it as their root.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error, TlsFailure};
    ///
    /// # #[cfg(feature = "server")] {
    /// use tiny_cache_client::server::Server;
    ///
    /// // A self-signed certificate, as a development server would use.
    /// let dev = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    /// let server = Server::builder()
    ///     .tls(dev.cert.pem(), dev.signing_key.serialize_pem())
    ///     .start()?;
    /// let client = Client::builder(&server.url()) // grpcs://127.0.0.1:port
    ///     .tls_ca_certificate_pem(dev.cert.pem())
    ///     .build()?;
    /// client.set("k", "over TLS")?;
    /// # }
    /// let malformed = Client::builder("grpcs://cache.internal:50051")
    ///     .tls_ca_certificate_pem("not a certificate")
    ///     .build();
    /// assert!(matches!(
    ///     malformed,
    ///     Err(Error::Tls { kind: TlsFailure::InvalidConfiguration, .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls_ca_certificate_pem(self, pem: impl AsRef<[u8]>) -> Self {
        let pem = pem.as_ref().to_vec();
        self.update(|c| {
            c.tls.extra_roots.push(Pem::Bytes(pem));
            Ok(())
        })
    }

    /// Trusts the CA certificate(s) in this PEM file (read by `build`),
    /// like [`tls_ca_certificate_pem`](Self::tls_ca_certificate_pem).
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error, TlsFailure};
    ///
    /// // The file is read by `build`, which names it when it cannot.
    /// let missing = Client::builder("grpcs://cache.internal:50051")
    ///     .tls_ca_certificate_file("/nonexistent/ca.pem")
    ///     .build();
    /// match missing {
    ///     Err(Error::Tls { kind: TlsFailure::InvalidConfiguration, message }) => {
    ///         assert!(message.contains("/nonexistent/ca.pem"))
    ///     }
    ///     other => panic!("expected an invalid TLS configuration, got {other:?}"),
    /// }
    /// ```
    pub fn tls_ca_certificate_file(self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        self.update(|c| {
            c.tls.extra_roots.push(Pem::File(path));
            Ok(())
        })
    }

    /// Whether the built-in webpki-roots CAs are trusted. Default true;
    /// false trusts only the CAs given with the `tls_ca_certificate_*`
    /// options (a private CA, and no public one).
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error, TlsFailure};
    ///
    /// // Trust a private CA only.
    /// let private_ca = rcgen::generate_simple_self_signed(vec!["cache.internal".to_owned()])?;
    /// let client = Client::builder("grpcs://cache.internal:50051")
    ///     .tls_built_in_roots(false)
    ///     .tls_ca_certificate_pem(private_ca.cert.pem())
    ///     .build()?;
    /// # drop(client);
    /// // Trusting nothing at all is refused.
    /// let nothing = Client::builder("grpcs://cache.internal:50051")
    ///     .tls_built_in_roots(false)
    ///     .build();
    /// assert!(matches!(nothing, Err(Error::Tls { kind: TlsFailure::InvalidConfiguration, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls_built_in_roots(self, enabled: bool) -> Self {
        self.update(|c| {
            c.tls.built_in_roots = enabled;
            Ok(())
        })
    }

    /// Presents this certificate chain and private key (PEM text; PKCS#8,
    /// PKCS#1 or SEC1 key) to a server that asks for one: mutual TLS.
    /// Default: no client certificate.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error, TlsFailure};
    ///
    /// let identity = rcgen::generate_simple_self_signed(vec!["client".to_owned()])?;
    /// let client = Client::builder("grpcs://cache.internal:50051")
    ///     .tls_client_identity_pem(identity.cert.pem(), identity.signing_key.serialize_pem())
    ///     .build()?;
    /// # drop(client);
    /// let no_key = Client::builder("grpcs://cache.internal:50051")
    ///     .tls_client_identity_pem(identity.cert.pem(), "not a key")
    ///     .build();
    /// assert!(matches!(no_key, Err(Error::Tls { kind: TlsFailure::InvalidConfiguration, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls_client_identity_pem(
        self,
        certificate_chain: impl AsRef<[u8]>,
        private_key: impl AsRef<[u8]>,
    ) -> Self {
        let chain = Pem::Bytes(certificate_chain.as_ref().to_vec());
        let key = Pem::Bytes(private_key.as_ref().to_vec());
        self.update(|c| {
            c.tls.identity = Some((chain, key));
            Ok(())
        })
    }

    /// Like [`tls_client_identity_pem`](Self::tls_client_identity_pem),
    /// from PEM files read by `build`.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error, TlsFailure};
    ///
    /// // The files are read by `build`, which names the one it cannot read.
    /// let missing = Client::builder("grpcs://cache.internal:50051")
    ///     .tls_client_identity_files("/nonexistent/client.pem", "/nonexistent/client.key")
    ///     .build();
    /// match missing {
    ///     Err(Error::Tls { kind: TlsFailure::InvalidConfiguration, message }) => {
    ///         assert!(message.contains("/nonexistent/client.pem"))
    ///     }
    ///     other => panic!("expected an invalid TLS configuration, got {other:?}"),
    /// }
    /// ```
    pub fn tls_client_identity_files(
        self,
        certificate_chain: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
    ) -> Self {
        let chain = Pem::File(certificate_chain.as_ref().to_path_buf());
        let key = Pem::File(private_key.as_ref().to_path_buf());
        self.update(|c| {
            c.tls.identity = Some((chain, key));
            Ok(())
        })
    }

    /// The name sent by SNI and verified in the server's certificate, when
    /// it differs from the address's host (connecting by IP address or
    /// through a tunnel to a server whose certificate names it
    /// `cache.internal`). Default: the address's host.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error, TlsFailure};
    ///
    /// # #[cfg(feature = "server")] {
    /// use tiny_cache_client::server::Server;
    ///
    /// // A certificate for cache.internal, served on 127.0.0.1.
    /// let dev = rcgen::generate_simple_self_signed(vec!["cache.internal".to_owned()])?;
    /// let server = Server::builder()
    ///     .tls(dev.cert.pem(), dev.signing_key.serialize_pem())
    ///     .start()?;
    /// let by_ip = Client::builder(&server.url())
    ///     .tls_ca_certificate_pem(dev.cert.pem())
    ///     .build()?;
    /// let error = by_ip.get("k").unwrap_err();
    /// assert!(matches!(error, Error::Tls { kind: TlsFailure::HostnameMismatch, .. }));
    /// let by_name = Client::builder(&server.url())
    ///     .tls_ca_certificate_pem(dev.cert.pem())
    ///     .tls_server_name("cache.internal")
    ///     .build()?;
    /// by_name.set("k", "v")?;
    /// # }
    /// let invalid = Client::builder("grpcs://127.0.0.1:50051").tls_server_name("not a name!");
    /// assert!(matches!(
    ///     invalid.build(),
    ///     Err(Error::Tls { kind: TlsFailure::InvalidConfiguration, .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls_server_name(self, name: &str) -> Self {
        let name = name.trim().to_owned();
        self.update(|c| {
            c.tls.server_name = Some(name);
            Ok(())
        })
    }

    /// Accepts only this server certificate (PEM text; several may be
    /// given, in one document or by calling this again): pinning, for a
    /// server whose certificate comes from no CA. The certificate must be
    /// presented byte for byte; its validity dates and the server name are
    /// still checked, no CA is consulted, and any other certificate fails
    /// with [`TlsFailure::PinnedCertificateMismatch`](crate::TlsFailure::PinnedCertificateMismatch).
    /// Needs TLS on. Default: nothing pinned.
    ///
    /// A certificate given with [`tls_ca_certificate_pem`](Self::tls_ca_certificate_pem)
    /// is also accepted when the server presents exactly it (the
    /// reference server's self-signed development certificate), without
    /// pinning: other certificates are then still checked against the CAs.
    ///
    /// ```
    /// use tiny_cache_client::Client;
    ///
    /// # let certificate_pem = "";
    /// let builder = Client::builder("grpcs://cache.internal:50051")
    ///     .tls_pinned_certificate_pem(certificate_pem);
    /// # drop(builder);
    /// ```
    pub fn tls_pinned_certificate_pem(self, pem: impl AsRef<[u8]>) -> Self {
        let pem = pem.as_ref().to_vec();
        self.update(|c| {
            c.tls.pinned.push(Pem::Bytes(pem));
            Ok(())
        })
    }

    /// Like [`tls_pinned_certificate_pem`](Self::tls_pinned_certificate_pem),
    /// from a PEM file read by `build`.
    ///
    /// ```
    /// use tiny_cache_client::Client;
    ///
    /// let builder = Client::builder("grpcs://cache.internal:50051")
    ///     .tls_pinned_certificate_file("/etc/tiny-cache/server.pem");
    /// # drop(builder);
    /// ```
    pub fn tls_pinned_certificate_file(self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        self.update(|c| {
            c.tls.pinned.push(Pem::File(path));
            Ok(())
        })
    }

    /// The finished configuration: the settings as given, with TLS
    /// resolved against the address.
    pub(crate) fn into_config(self) -> Result<ClientConfig> {
        let mut c = self.config?;
        match (c.tls.enabled, c.pool.address.is_tls()) {
            (Some(false), true) => {
                return Err(Error::Validation(format!(
                    "{} asks for TLS (grpcs://) but TLS was turned off",
                    c.pool.address
                )))
            }
            (Some(true), _) | (None, true) => {
                c.pool.address = c.pool.address.with_tls();
                c.pool.tls = Some(c.tls.build(&c.pool.address)?);
            }
            _ if c.tls.has_settings() => {
                return Err(Error::Validation(format!(
                    "TLS options were given for the plain-text address {}: \
                     use a grpcs:// address (or turn TLS on)",
                    c.pool.address
                )))
            }
            (_, false) => {}
        }
        Ok(c)
    }
}

/// A message size limit: positive, since even an empty message is framed.
fn positive_message_limit(bytes: usize) -> Result<usize> {
    if bytes == 0 {
        return Err(Error::Validation(
            "a message size limit must be positive".into(),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_fractions_up_and_refuses_zero_and_overflow() {
        assert_eq!(Ttl::After(Duration::from_millis(1)).wire_seconds(), Ok(1));
        assert_eq!(Ttl::After(Duration::from_secs(5)).wire_seconds(), Ok(5));
        assert!(Ttl::After(Duration::ZERO).wire_seconds().is_err());
        assert!(Ttl::After(Duration::from_secs(1 << 31))
            .wire_seconds()
            .is_err());
        assert_eq!(
            Ttl::After(Duration::from_secs(i32::MAX as u64)).wire_seconds(),
            Ok(i32::MAX)
        );
    }

    #[test]
    fn builder_reports_the_first_invalid_setting_at_build() {
        let error = ClientBuilder::new("localhost:1")
            .namespace("bad namespace")
            .timeout(Duration::from_secs(1))
            .into_config()
            .unwrap_err();
        assert!(
            matches!(error, Error::Validation(ref m) if m.starts_with("Namespace must")),
            "{error:?}"
        );
        assert!(ClientBuilder::new("localhost:1")
            .pool_size(0)
            .into_config()
            .is_err());
        assert!(ClientBuilder::new("localhost:1")
            .timeout(Duration::ZERO)
            .into_config()
            .is_err());
        assert!(ClientBuilder::new("localhost:1")
            .metadata("grpc-timeout", "1S")
            .into_config()
            .is_err());
    }

    #[test]
    fn namespace_becomes_a_request_header() {
        let config = ClientBuilder::new("localhost:1")
            .namespace(" app ")
            .into_config()
            .unwrap();
        assert_eq!(config.call.namespace.as_deref(), Some("app"));
        assert_eq!(
            config
                .call
                .metadata
                .get(rules::NAMESPACE_HEADER)
                .map(|v| v.as_bytes()),
            Some(&b"app"[..])
        );
    }

    #[test]
    fn seconds_parse_with_fractions_and_refuse_nonsense() {
        assert_eq!(rules::parse_seconds("30"), Ok(Duration::from_secs(30)));
        assert_eq!(
            rules::parse_seconds(" 0.25 "),
            Ok(Duration::from_millis(250))
        );
        for bad in ["0", "-1", "abc", "NaN", "inf", ""] {
            assert!(rules::parse_seconds(bad).is_err(), "{bad:?}");
        }
    }
}
