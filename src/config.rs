//! Client configuration: the server address, timeouts, retries, TTLs, the
//! pool, and how each default was chosen.

use std::path::Path;
use std::time::Duration;

use http::uri::{Authority, Scheme};

use crate::codec::{Metadata, DEFAULT_MAX_MESSAGE_BYTES};
use crate::error::{Error, Result};
use crate::pool::ReplyWait;
use crate::retry::RetryThrottle;
use crate::rules;
use crate::tls::{ClientTls, Pem, TlsOptions};

/// Server address used when neither the builder nor `CACHE_SERVER_ADDRESS`
/// names one: the reference server's default port on this host.
pub const DEFAULT_ADDRESS: &str = "localhost:50051";

/// Per-call deadline, spanning every retry: the Python client's default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Extra attempts after the first for a retryable failure: the Python
/// client's default.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// TTL of writes that do not name one: the Python client's default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Longest wait to establish one connection (TCP, HTTP/2 preface, first
/// PING answered): the gRPC connection-backoff specification's minimum
/// connect timeout. A call never waits past its own deadline regardless.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Ping period while calls are in flight, to find a dead connection (a
/// half-open TCP connection, a wedged server) before the calls' deadlines:
/// the gRPC keepalive guidance's minimum of 10 s between pings.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a keepalive ping may stay unanswered before the connection is
/// dropped and its calls fail over to a fresh one.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// First pause between retries of a call; it doubles per attempt, with full
/// jitter, up to [`DEFAULT_RETRY_MAX_BACKOFF`].
pub const DEFAULT_RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(50);

/// Cap of the pause between retries of a call.
pub const DEFAULT_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// HTTP/2 stream receive window: a whole 4 MiB message fits in one window,
/// so large values arrive without waiting for WINDOW_UPDATE round trips
/// (the protocol default of 64 KiB would cap a stream at one window per RTT).
pub const DEFAULT_STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024 + 5;

/// HTTP/2 connection receive window: room for several large replies at once.
pub const DEFAULT_CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// The TTL of a write.
///
/// The Python client's convention is "`None` means the default TTL, `0`
/// means never expire". In Rust that is spelled out: methods without a TTL
/// use the client's default TTL, and a TTL is either [`Ttl::Never`] or a
/// positive duration. A `Duration` converts into a `Ttl`, so
/// `client.set_with_ttl(key, value, Duration::from_secs(60))` reads naturally.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::Ttl;
///
/// assert_eq!(Ttl::from(Duration::from_secs(60)), Ttl::After(Duration::from_secs(60)));
/// assert_eq!(Ttl::After(Duration::from_millis(1500)).wire_seconds().unwrap(), 2);
/// assert_eq!(Ttl::Never.wire_seconds().unwrap(), 0);
/// assert!(Ttl::After(Duration::ZERO).wire_seconds().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ttl {
    /// The entry never expires.
    Never,
    /// The entry expires this long after the write. The server counts whole
    /// seconds, so a fraction is rounded up (an entry never expires earlier
    /// than asked); zero is refused: say [`Ttl::Never`] to mean "no expiry".
    After(Duration),
}

impl Ttl {
    /// The TTL as the wire's `int32` seconds, validated.
    ///
    /// Errors with [`Error::Validation`] for a zero duration (ambiguous: the
    /// wire would read it as "never") or one beyond `i32::MAX` seconds.
    pub fn wire_seconds(self) -> Result<i32> {
        match self {
            Ttl::Never => Ok(0),
            Ttl::After(duration) if duration.is_zero() => Err(Error::Validation(
                "a TTL of zero is ambiguous: use Ttl::Never for no expiry".into(),
            )),
            Ttl::After(duration) => {
                let rounded_up = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
                i32::try_from(rounded_up).map_err(|_| {
                    Error::Validation(format!(
                        "TTL of {rounded_up} s is longer than the wire allows ({} s)",
                        i32::MAX
                    ))
                })
            }
        }
    }
}

impl From<Duration> for Ttl {
    fn from(duration: Duration) -> Ttl {
        Ttl::After(duration)
    }
}

/// How [`Client::ping`](crate::Client::ping) asks whether the server answers.
///
/// Defaults to [`PingMethod::Stats`], because the reference server's health
/// service answers `UNKNOWN` to every check today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PingMethod {
    /// A `Stats` call: cheap, and works against every server version.
    #[default]
    Stats,
    /// The standard `grpc.health.v1.Health/Check` for `cache.CacheService`.
    Health,
}

/// A parsed server address: where to connect and what to put in `:scheme`
/// and `:authority`.
///
/// Accepted forms: `host:port`, `[::1]:port`, `grpc://host:port` (plain
/// HTTP/2) and `grpcs://host:port` (TLS).
///
/// ```
/// use tiny_cache_client::Address;
///
/// let address: Address = "grpc://cache.internal:50051".parse()?;
/// assert_eq!(address.host(), "cache.internal");
/// assert_eq!(address.port(), 50051);
/// assert!(!address.is_tls());
/// assert_eq!("[::1]:7000".parse::<Address>()?.host(), "::1");
/// assert!("localhost".parse::<Address>().is_err()); // no port
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    tls: bool,
    host: String,
    port: u16,
    authority: Authority,
}

impl Address {
    /// The host name or IP address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the address asks for TLS (`grpcs://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `host:port` as sent in `:authority` (IPv6 hosts in brackets).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The `:scheme` of requests to this address.
    pub fn scheme(&self) -> Scheme {
        if self.tls {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        write!(f, "{scheme}://{}", self.authority)
    }
}

impl std::str::FromStr for Address {
    type Err = Error;

    fn from_str(raw: &str) -> Result<Address> {
        let invalid = |why: &str| Error::Validation(format!("invalid address {raw:?}: {why}"));
        let trimmed = raw.trim();
        let (tls, rest) = if let Some(rest) = trimmed.strip_prefix("grpcs://") {
            (true, rest)
        } else if let Some(rest) = trimmed.strip_prefix("grpc://") {
            (false, rest)
        } else if trimmed.contains("://") {
            return Err(invalid("the scheme must be grpc:// or grpcs://"));
        } else {
            (false, trimmed)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '['"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| invalid("expected [host]:port"))?;
            (host, port)
        } else {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| invalid("expected host:port"))?;
            if host.contains(':') {
                return Err(invalid("an IPv6 host must be in brackets: [::1]:port"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("the port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(invalid("the port must be a number from 1 to 65535"));
        }
        let authority_text = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let authority: Authority = authority_text
            .parse()
            .map_err(|_| invalid("the host is not a valid name or IP address"))?;
        Ok(Address {
            tls,
            host: host.to_owned(),
            port,
            authority,
        })
    }
}

/// The worker count a pool gets unless told otherwise: half the machine's
/// cores, at least 1 and at most 4.
///
/// One worker drives one HTTP/2 connection, which carries hundreds of
/// concurrent calls; more workers only add thread switches until the
/// worker's own CPU is the bottleneck. On a 2-core machine one worker
/// measured faster than two (see BENCHMARKS.md), and half the cores leaves
/// the rest to the callers.
pub fn default_pool_size() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 4)
}

/// Everything a [`Client`](crate::Client) is built from. Made by
/// [`ClientBuilder`]; every field's default is written next to it.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    /// Where to connect. No default for the builder; `from_env` reads
    /// `CACHE_SERVER_ADDRESS`, else [`DEFAULT_ADDRESS`].
    pub address: Address,
    /// [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// [`DEFAULT_MAX_RETRIES`].
    pub max_retries: u32,
    /// [`DEFAULT_RETRY_INITIAL_BACKOFF`].
    pub retry_initial_backoff: Duration,
    /// [`DEFAULT_RETRY_MAX_BACKOFF`].
    pub retry_max_backoff: Duration,
    /// [`DEFAULT_TTL`].
    pub default_ttl: Ttl,
    /// None: the shared key space.
    pub namespace: Option<String>,
    /// Empty.
    pub metadata: Metadata,
    /// [`default_pool_size`].
    pub pool_size: usize,
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// 4 MiB, the gRPC default.
    pub max_send_message_bytes: usize,
    /// 4 MiB, the gRPC default.
    pub max_receive_message_bytes: usize,
    /// [`DEFAULT_STREAM_WINDOW_BYTES`].
    pub stream_window_bytes: u32,
    /// [`DEFAULT_CONNECTION_WINDOW_BYTES`].
    pub connection_window_bytes: u32,
    /// [`PingMethod::Stats`].
    pub ping_method: PingMethod,
    /// [`DEFAULT_KEEPALIVE_INTERVAL`].
    pub keepalive_interval: Option<Duration>,
    /// [`DEFAULT_KEEPALIVE_TIMEOUT`].
    pub keepalive_timeout: Duration,
    /// [`RetryThrottle::default`].
    pub retry_throttle: Option<RetryThrottle>,
    /// [`ReplyWait::Park`].
    pub reply_wait: ReplyWait,
    /// None (plain HTTP/2), unless the address is `grpcs://` or TLS was
    /// turned on: then webpki-roots, ALPN h2, no client certificate.
    pub tls: Option<ClientTls>,
}

/// Builds a [`Client`](crate::Client); every setting has a documented
/// default, so `Client::builder(addr).build()` is a complete client.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::{Client, Ttl};
///
/// let client = Client::builder("127.0.0.1:50051")
///     .timeout(Duration::from_secs(2))
///     .max_retries(2)
///     .default_ttl(Ttl::After(Duration::from_secs(600)))
///     .namespace("checkout")
///     .metadata("x-team", "payments")
///     .build()?;
/// # drop(client);
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct ClientBuilder {
    address: Result<Address>,
    config: Result<PartialConfig>,
}

/// The settings other than the address, gathered until `build`.
#[derive(Debug, Clone)]
struct PartialConfig {
    timeout: Duration,
    max_retries: u32,
    retry_initial_backoff: Duration,
    retry_max_backoff: Duration,
    default_ttl: Ttl,
    namespace: Option<String>,
    metadata: Metadata,
    pool_size: usize,
    connect_timeout: Duration,
    max_send_message_bytes: usize,
    max_receive_message_bytes: usize,
    stream_window_bytes: u32,
    connection_window_bytes: u32,
    ping_method: PingMethod,
    keepalive_interval: Option<Duration>,
    keepalive_timeout: Duration,
    retry_throttle: Option<RetryThrottle>,
    reply_wait: ReplyWait,
    tls: TlsOptions,
}

impl ClientBuilder {
    /// A builder for a client of the server at `address` (see [`Address`]
    /// for the accepted forms). A malformed address is reported by `build`.
    pub fn new(address: &str) -> ClientBuilder {
        ClientBuilder {
            address: address.parse(),
            config: Ok(PartialConfig {
                timeout: DEFAULT_TIMEOUT,
                max_retries: DEFAULT_MAX_RETRIES,
                retry_initial_backoff: DEFAULT_RETRY_INITIAL_BACKOFF,
                retry_max_backoff: DEFAULT_RETRY_MAX_BACKOFF,
                default_ttl: Ttl::After(DEFAULT_TTL),
                namespace: None,
                metadata: Metadata::new(),
                pool_size: default_pool_size(),
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                max_send_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
                max_receive_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
                stream_window_bytes: DEFAULT_STREAM_WINDOW_BYTES,
                connection_window_bytes: DEFAULT_CONNECTION_WINDOW_BYTES,
                ping_method: PingMethod::Stats,
                keepalive_interval: Some(DEFAULT_KEEPALIVE_INTERVAL),
                keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
                retry_throttle: Some(RetryThrottle::default()),
                reply_wait: ReplyWait::Park,
                tls: TlsOptions::default(),
            }),
        }
    }

    /// A builder configured from the environment, as the Python client is:
    /// `CACHE_SERVER_ADDRESS` (default [`DEFAULT_ADDRESS`]),
    /// `CACHE_MAX_RETRIES` (default 3) and `CACHE_TIMEOUT` (seconds, may be
    /// fractional; default 30). A malformed value is reported by `build`.
    pub fn from_env() -> ClientBuilder {
        let address =
            std::env::var("CACHE_SERVER_ADDRESS").unwrap_or_else(|_| DEFAULT_ADDRESS.into());
        let mut builder = ClientBuilder::new(&address);
        if let Ok(raw) = std::env::var("CACHE_MAX_RETRIES") {
            match raw.trim().parse::<u32>() {
                Ok(retries) => builder = builder.max_retries(retries),
                Err(_) => {
                    builder.config = Err(Error::Validation(format!(
                        "CACHE_MAX_RETRIES must be a whole number, got {raw:?}"
                    )))
                }
            }
        }
        if let Ok(raw) = std::env::var("CACHE_TIMEOUT") {
            match parse_seconds(&raw) {
                Some(timeout) => builder = builder.timeout(timeout),
                None => {
                    builder.config = Err(Error::Validation(format!(
                        "CACHE_TIMEOUT must be a positive number of seconds, got {raw:?}"
                    )))
                }
            }
        }
        builder
    }

    fn update(mut self, change: impl FnOnce(&mut PartialConfig) -> Result<()>) -> Self {
        if let Ok(config) = &mut self.config {
            if let Err(error) = change(config) {
                self.config = Err(error);
            }
        }
        self
    }

    /// Deadline of each call, spanning all its retries. Default
    /// [`DEFAULT_TIMEOUT`]; must be positive.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.update(|c| {
            if timeout.is_zero() {
                return Err(Error::Validation("the timeout must be positive".into()));
            }
            c.timeout = timeout;
            Ok(())
        })
    }

    /// Extra attempts after a retryable failure. Default
    /// [`DEFAULT_MAX_RETRIES`]; 0 turns retries off.
    pub fn max_retries(self, retries: u32) -> Self {
        self.update(|c| {
            c.max_retries = retries;
            Ok(())
        })
    }

    /// Pause before the first retry and its cap; the pause doubles per
    /// attempt with full jitter. Defaults [`DEFAULT_RETRY_INITIAL_BACKOFF`]
    /// and [`DEFAULT_RETRY_MAX_BACKOFF`].
    pub fn retry_backoff(self, initial: Duration, max: Duration) -> Self {
        self.update(|c| {
            c.retry_initial_backoff = initial;
            c.retry_max_backoff = max.max(initial);
            Ok(())
        })
    }

    /// TTL of writes that do not name one. Default one hour
    /// ([`DEFAULT_TTL`]).
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
    pub fn namespace(self, namespace: &str) -> Self {
        self.update(|c| {
            c.namespace = rules::parse_namespace(namespace)
                .map_err(|v| Error::Validation(v.0))?
                .map(str::to_owned);
            Ok(())
        })
    }

    /// Adds an ASCII metadata header sent with every call (per-call
    /// metadata of the same name replaces it). Names are lower-case
    /// `[0-9a-z_.-]`; `grpc-` names are reserved.
    pub fn metadata(self, name: &str, value: &str) -> Self {
        self.update(|c| {
            c.metadata
                .insert(name, value)
                .map_err(|s| Error::Validation(s.message().to_owned()))
        })
    }

    /// Adds a binary metadata header (`name` must end in `-bin`) sent with
    /// every call.
    pub fn metadata_bin(self, name: &str, value: &[u8]) -> Self {
        self.update(|c| {
            c.metadata
                .insert_bin(name, value)
                .map_err(|s| Error::Validation(s.message().to_owned()))
        })
    }

    /// Number of worker threads, each owning one HTTP/2 connection.
    /// Default [`default_pool_size`]; must be at least 1.
    pub fn pool_size(self, workers: usize) -> Self {
        self.update(|c| {
            if workers == 0 {
                return Err(Error::Validation(
                    "the pool needs at least one worker".into(),
                ));
            }
            c.pool_size = workers;
            Ok(())
        })
    }

    /// Longest wait to establish a connection. Default
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.update(|c| {
            c.connect_timeout = timeout;
            Ok(())
        })
    }

    /// Largest request message this client sends; a bigger one fails with
    /// [`Error::ResourceExhausted`] before any I/O. Default 4 MiB, the
    /// reference server's own limit.
    pub fn max_send_message_bytes(self, bytes: usize) -> Self {
        self.update(|c| {
            c.max_send_message_bytes = bytes;
            Ok(())
        })
    }

    /// Largest reply message this client accepts; a bigger one fails with
    /// [`Error::ResourceExhausted`], decided from its length prefix before
    /// it is buffered. Default 4 MiB.
    pub fn max_receive_message_bytes(self, bytes: usize) -> Self {
        self.update(|c| {
            c.max_receive_message_bytes = bytes;
            Ok(())
        })
    }

    /// HTTP/2 receive windows per stream and per connection. Defaults
    /// [`DEFAULT_STREAM_WINDOW_BYTES`] and
    /// [`DEFAULT_CONNECTION_WINDOW_BYTES`].
    pub fn http2_windows(self, stream_bytes: u32, connection_bytes: u32) -> Self {
        self.update(|c| {
            c.stream_window_bytes = stream_bytes;
            c.connection_window_bytes = connection_bytes.max(stream_bytes);
            Ok(())
        })
    }

    /// How [`Client::ping`](crate::Client::ping) probes the server. Default
    /// [`PingMethod::Stats`].
    pub fn ping_method(self, method: PingMethod) -> Self {
        self.update(|c| {
            c.ping_method = method;
            Ok(())
        })
    }

    /// The client-wide retry budget (see [`RetryThrottle`]); `None` lets
    /// every call use its whole retry allowance whatever the others see.
    /// Default: [`RetryThrottle::default`].
    pub fn retry_throttle(self, throttle: Option<RetryThrottle>) -> Self {
        self.update(|c| {
            c.retry_throttle = throttle;
            Ok(())
        })
    }

    /// How a calling thread sleeps until its reply arrives. The default,
    /// [`ReplyWait::Park`], costs no CPU while waiting;
    /// [`ReplyWait::Channel`] is kept so benchmarks can measure the
    /// difference (see BENCHMARKS.md).
    #[doc(hidden)]
    pub fn reply_wait(self, wait: ReplyWait) -> Self {
        self.update(|c| {
            c.reply_wait = wait;
            Ok(())
        })
    }

    /// Keepalive: while calls are in flight, ping each connection every
    /// `interval` (`None` turns periodic pings off) and drop it when a ping
    /// stays unanswered for `timeout`; its calls then fail over to a fresh
    /// connection instead of waiting for their deadlines. A call that times
    /// out after it was sent also triggers a ping, at most one per
    /// interval. Defaults [`DEFAULT_KEEPALIVE_INTERVAL`] and
    /// [`DEFAULT_KEEPALIVE_TIMEOUT`]. Servers may refuse pings more often
    /// than every 10 s (GOAWAY `too_many_pings`); the interval then doubles.
    pub fn keepalive(self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.update(|c| {
            if interval.is_some_and(|i| i.is_zero()) || timeout.is_zero() {
                return Err(Error::Validation(
                    "keepalive interval and timeout must be positive".into(),
                ));
            }
            c.keepalive_interval = interval;
            c.keepalive_timeout = timeout;
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
    pub fn tls(self, enabled: bool) -> Self {
        self.update(|c| {
            c.tls.enabled = Some(enabled);
            Ok(())
        })
    }

    /// Trusts the CA certificate(s) in this PEM text, besides the built-in
    /// roots (turn those off with [`tls_built_in_roots`](Self::tls_built_in_roots)
    /// to trust only yours). May be called more than once. Needs TLS on.
    pub fn tls_ca_certificate_pem(self, pem: impl AsRef<[u8]>) -> Self {
        let pem = pem.as_ref().to_vec();
        self.update(|c| {
            c.tls.extra_roots.push(Pem::Bytes(pem));
            Ok(())
        })
    }

    /// Trusts the CA certificate(s) in this PEM file (read by `build`),
    /// like [`tls_ca_certificate_pem`](Self::tls_ca_certificate_pem).
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
    pub fn tls_built_in_roots(self, enabled: bool) -> Self {
        self.update(|c| {
            c.tls.built_in_roots = enabled;
            Ok(())
        })
    }

    /// Presents this certificate chain and private key (PEM text; PKCS#8,
    /// PKCS#1 or SEC1 key) to a server that asks for one: mutual TLS.
    /// Default: no client certificate.
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
    pub fn tls_server_name(self, name: &str) -> Self {
        let name = name.trim().to_owned();
        self.update(|c| {
            c.tls.server_name = Some(name);
            Ok(())
        })
    }

    /// Starts the client's worker threads and returns it. Connections are
    /// made in the background, so this succeeds even while the server is
    /// down; calls report [`Error::Unavailable`] until it is up.
    ///
    /// Errors: [`Error::Validation`] for any invalid setting or address;
    /// [`Error::Tls`] with [`TlsFailure::InvalidConfiguration`](crate::TlsFailure::InvalidConfiguration)
    /// for TLS settings that cannot be used (an unreadable or malformed PEM
    /// file, a key that does not fit its certificate, an invalid server
    /// name).
    pub fn build(self) -> Result<crate::Client> {
        crate::Client::from_config(self.into_config()?)
    }

    pub(crate) fn into_config(self) -> Result<ClientConfig> {
        let mut address = self.address?;
        let c = self.config?;
        let tls = match (c.tls.enabled, address.is_tls()) {
            (Some(false), true) => {
                return Err(Error::Validation(format!(
                    "{address} asks for TLS (grpcs://) but TLS was turned off"
                )))
            }
            (Some(true), _) | (None, true) => {
                // `:scheme` follows the transport.
                address.tls = true;
                Some(c.tls.build(&address)?)
            }
            _ if c.tls.has_settings() => {
                return Err(Error::Validation(format!(
                    "TLS options were given for the plain-text address {address}: \
                     use a grpcs:// address (or turn TLS on)"
                )))
            }
            _ => None,
        };
        let mut metadata = c.metadata;
        if let Some(namespace) = &c.namespace {
            metadata
                .insert(rules::NAMESPACE_HEADER, namespace)
                .map_err(|s| Error::Validation(s.message().to_owned()))?;
        }
        Ok(ClientConfig {
            address,
            timeout: c.timeout,
            max_retries: c.max_retries,
            retry_initial_backoff: c.retry_initial_backoff,
            retry_max_backoff: c.retry_max_backoff,
            default_ttl: c.default_ttl,
            namespace: c.namespace,
            metadata,
            pool_size: c.pool_size,
            connect_timeout: c.connect_timeout,
            max_send_message_bytes: c.max_send_message_bytes,
            max_receive_message_bytes: c.max_receive_message_bytes,
            stream_window_bytes: c.stream_window_bytes,
            connection_window_bytes: c.connection_window_bytes,
            ping_method: c.ping_method,
            keepalive_interval: c.keepalive_interval,
            keepalive_timeout: c.keepalive_timeout,
            retry_throttle: c.retry_throttle,
            reply_wait: c.reply_wait,
            tls,
        })
    }
}

/// Parses a positive number of seconds, fractions allowed ("0.5", "30").
pub(crate) fn parse_seconds(raw: &str) -> Option<Duration> {
    let seconds: f64 = raw.trim().parse().ok()?;
    if !(seconds.is_finite() && seconds > 0.0) {
        return None;
    }
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_address_form_parses() {
        let plain: Address = "localhost:50051".parse().unwrap();
        assert_eq!(
            (plain.host(), plain.port(), plain.is_tls()),
            ("localhost", 50051, false)
        );
        let v6: Address = "[::1]:7000".parse().unwrap();
        assert_eq!((v6.host(), v6.authority().as_str()), ("::1", "[::1]:7000"));
        let scheme: Address = "grpc://10.0.0.1:9".parse().unwrap();
        assert_eq!(scheme.authority().as_str(), "10.0.0.1:9");
        let tls: Address = "grpcs://cache.example:443".parse().unwrap();
        assert!(tls.is_tls());
        assert_eq!(tls.scheme(), Scheme::HTTPS);
    }

    #[test]
    fn malformed_addresses_are_validation_errors() {
        for bad in [
            "",
            "localhost",
            "host:",
            ":80",
            "host:0",
            "host:70000",
            "http://host:80",
            "::1:80",
            "[::1:80",
            "bad host:80",
        ] {
            match bad.parse::<Address>() {
                Err(Error::Validation(_)) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

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
        assert_eq!(config.namespace.as_deref(), Some("app"));
        assert_eq!(
            config
                .metadata
                .get(rules::NAMESPACE_HEADER)
                .map(|v| v.as_bytes()),
            Some(&b"app"[..])
        );
    }

    #[test]
    fn seconds_parse_with_fractions_and_refuse_nonsense() {
        assert_eq!(parse_seconds("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_seconds(" 0.25 "), Some(Duration::from_millis(250)));
        for bad in ["0", "-1", "abc", "NaN", "inf", ""] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
    }
}
