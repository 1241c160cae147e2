//! The embedded tiny-cache server (cargo feature `server`).
//!
//! It honours the same wire contract as the reference server (validation,
//! TTL, LRU eviction within item and memory limits, namespaces, multi-key
//! per-item results, conditional writes, stats, the health service,
//! `x-request-id`), with the reference server's own error texts word for
//! word, so a program tested against it behaves the same against the real
//! one. It runs h2 on its own multi-threaded tokio runtime in a background
//! thread, on the same codec as the client and nothing of the client; its
//! start-up failures are its own [`ServerError`]. Optionally it also serves
//! the reference server's HTTP/1.1 side port (`/health`, `/ready`, `/live`,
//! `/stats`, `/metrics`): see [`ServerBuilder::health_listen`].
//!
//! ```
//! use tiny_cache_client::server::Server;
//!
//! let server = Server::builder().listen("127.0.0.1:0").workers(1).start()?;
//! println!("serving on {}", server.address());
//! server.shutdown();
//! # Ok::<(), tiny_cache_client::server::ServerError>(())
//! ```

mod accept;
mod error;
mod handler;
mod service;
mod side_port;
mod store;
mod tls;

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use accept::{accept_until_stopped, Stop};

// The windows the server advertises are the client's: a whole largest
// message fits in one stream window.
use crate::codec::{CONNECTION_WINDOW_BYTES, DEFAULT_MAX_MESSAGE_BYTES, STREAM_WINDOW_BYTES};
pub use error::ServerError;
use service::CacheService;
use store::StoreConfig;
pub use store::{
    DEFAULT_MAX_ITEMS, DEFAULT_MAX_MEMORY_BYTES, DEFAULT_MAX_VALUE_BYTES, ENTRY_OVERHEAD_BYTES,
};

/// Largest request header block accepted (gRPC servers refuse header lists
/// beyond a few KiB; 16 KiB leaves room for the client's 8 KiB of metadata).
const MAX_REQUEST_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// How long shutdown waits for the runtime's tasks to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often expired entries are swept out, so they stop holding memory
/// even when nobody reads them: the reference server's cleanup period.
const EXPIRY_SWEEP_PERIOD: Duration = Duration::from_secs(10);

/// Configures and starts a [`Server`].
///
/// ```
/// use tiny_cache_client::server::Server;
///
/// let server = Server::builder()
///     .listen("127.0.0.1:0")
///     .workers(2)
///     .max_items(10_000)
///     .max_memory_bytes(64 << 20)
///     .max_value_bytes(1 << 20)
///     .start()?;
/// # drop(server);
/// # Ok::<(), tiny_cache_client::server::ServerError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until start() is called"]
pub struct ServerBuilder {
    listen: String,
    workers: usize,
    store: StoreConfig,
    max_receive_message_bytes: usize,
    max_concurrent_streams: Option<u32>,
    tls: Option<tls::TlsSettings>,
    client_ca: Option<Vec<u8>>,
    health_listen: Option<String>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            listen: "127.0.0.1:0".into(),
            workers: 1,
            store: StoreConfig::default(),
            max_receive_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_concurrent_streams: None,
            tls: None,
            client_ca: None,
            health_listen: None,
        }
    }
}

impl ServerBuilder {
    /// Address to listen on. Default `127.0.0.1:0`: loopback, on a free
    /// port (read it back with [`Server::address`]).
    ///
    /// ```
    /// use tiny_cache_client::server::{Server, ServerError};
    ///
    /// let server = Server::builder().listen("127.0.0.1:0").start()?;
    /// assert_ne!(server.local_addr().port(), 0); // a free port was picked
    /// // Only `ip:port`: no host names.
    /// let refused = Server::builder().listen("localhost:50051").start();
    /// assert!(matches!(refused, Err(ServerError::InvalidAddress { .. })));
    /// # Ok::<(), ServerError>(())
    /// ```
    pub fn listen(mut self, address: &str) -> Self {
        self.listen = address.to_owned();
        self
    }

    /// Runtime worker threads. Default 1: the server shares the machine
    /// with the clients it is used to benchmark.
    ///
    /// ```
    /// use tiny_cache_client::{server::Server, Client};
    ///
    /// let server = Server::builder().workers(2).start()?;
    /// Client::new(&server.address())?.set("k", "v")?;
    /// // Zero counts as one: a server always has a thread to run on.
    /// let server = Server::builder().workers(0).start()?;
    /// Client::new(&server.address())?.set("k", "v")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Most entries kept before least-recently-used ones are evicted.
    /// Default: [`DEFAULT_MAX_ITEMS`].
    ///
    /// ```
    /// use tiny_cache_client::{server::Server, Client};
    ///
    /// let server = Server::builder().max_items(2).start()?;
    /// let client = Client::new(&server.address())?;
    /// client.set("a", "1")?;
    /// client.set("b", "2")?;
    /// client.set("c", "3")?; // evicts "a", the least recently used
    /// assert_eq!(client.get("a")?, None);
    /// let stats = client.stats()?;
    /// assert_eq!((stats.size, stats.max_items, stats.lru_evictions), (2, 2, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_items(mut self, items: usize) -> Self {
        self.store.max_items = items;
        self
    }

    /// Most bytes of entries kept (value length + 33 each) before
    /// least-recently-used ones are evicted. Default: [`DEFAULT_MAX_MEMORY_BYTES`].
    ///
    /// ```
    /// use tiny_cache_client::{server::Server, Client};
    ///
    /// // Room for two 100-byte values (133 bytes each), not three.
    /// let server = Server::builder().max_memory_bytes(300).start()?;
    /// let client = Client::new(&server.address())?;
    /// for key in ["a", "b", "c"] {
    ///     client.set(key, [0u8; 100])?;
    /// }
    /// assert_eq!(client.get("a")?, None); // evicted to make room for "c"
    /// assert_eq!(client.stats()?.memory_usage_bytes, 2 * 133);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_memory_bytes(mut self, bytes: u64) -> Self {
        self.store.max_memory_bytes = bytes;
        self
    }

    /// Largest entry (value length + 33) accepted; a larger one is
    /// `RESOURCE_EXHAUSTED`. Default: [`DEFAULT_MAX_VALUE_BYTES`].
    ///
    /// ```
    /// use tiny_cache_client::server::{Server, ENTRY_OVERHEAD_BYTES};
    /// use tiny_cache_client::{Client, Error};
    ///
    /// // Values of up to 64 bytes.
    /// let server = Server::builder().max_value_bytes(64 + ENTRY_OVERHEAD_BYTES).start()?;
    /// let client = Client::new(&server.address())?;
    /// client.set("fits", [0u8; 64])?;
    /// assert!(matches!(client.set("too-big", [0u8; 65]), Err(Error::ResourceExhausted(_))));
    /// assert_eq!(client.stats()?.rejected_oversize, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_value_bytes(mut self, bytes: u64) -> Self {
        self.store.max_value_bytes = bytes;
        self
    }

    /// Largest request message accepted; a larger one is refused with
    /// `RESOURCE_EXHAUSTED` before the handler runs. Default 4 MiB, as the
    /// reference server.
    ///
    /// ```
    /// use tiny_cache_client::{server::Server, Client, Error};
    ///
    /// let server = Server::builder().max_receive_message_bytes(1024).start()?;
    /// let client = Client::new(&server.address())?;
    /// client.set("small", [0u8; 512])?;
    /// // The client may send it; the server refuses it before any handler runs.
    /// assert!(matches!(client.set("big", [0u8; 4096]), Err(Error::ResourceExhausted(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_receive_message_bytes(mut self, bytes: usize) -> Self {
        self.max_receive_message_bytes = bytes;
        self
    }

    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` advertised to clients.
    /// Default: no limit.
    ///
    /// ```
    /// use tiny_cache_client::{server::Server, Client};
    ///
    /// let server = Server::builder().max_concurrent_streams(1).start()?;
    /// let client = Client::new(&server.address())?;
    /// // Four callers, one stream: the calls queue for it instead of failing.
    /// let callers: Vec<_> = (0..4)
    ///     .map(|i| {
    ///         let client = client.clone();
    ///         std::thread::spawn(move || client.set(&format!("k{i}"), "v"))
    ///     })
    ///     .collect();
    /// for caller in callers {
    ///     caller.join().expect("caller panicked")?;
    /// }
    /// assert_eq!(client.stats()?.size, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.max_concurrent_streams = Some(streams);
        self
    }

    /// Serves TLS (ALPN h2) with this certificate chain and private key,
    /// both PEM text (the key PKCS#8, PKCS#1 or SEC1). Default: plain
    /// HTTP/2. Clients then connect to `grpcs://` + [`Server::address`].
    ///
    /// ```
    /// use tiny_cache_client::server::{Server, ServerError};
    /// use tiny_cache_client::Client;
    ///
    /// let dev = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    /// let server = Server::builder()
    ///     .tls(dev.cert.pem(), dev.signing_key.serialize_pem())
    ///     .start()?;
    /// assert!(server.url().starts_with("grpcs://127.0.0.1:"));
    /// let client = Client::builder(&server.url())
    ///     .tls_ca_certificate_pem(dev.cert.pem())
    ///     .build()?;
    /// client.set("k", "over TLS")?;
    /// // A key that does not parse is refused at start.
    /// let refused = Server::builder().tls(dev.cert.pem(), "not a key").start();
    /// assert!(matches!(refused, Err(ServerError::Tls(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls(
        mut self,
        certificate_chain: impl AsRef<[u8]>,
        private_key: impl AsRef<[u8]>,
    ) -> Self {
        self.tls = Some(tls::TlsSettings {
            certificate_chain: certificate_chain.as_ref().to_vec(),
            private_key: private_key.as_ref().to_vec(),
            client_ca: None,
        });
        self
    }

    /// Requires every client to present a certificate issued by this CA
    /// (PEM text): mutual TLS. Needs [`tls`](Self::tls). Default: no
    /// client certificate asked for.
    ///
    /// ```
    /// use rcgen::{CertificateParams, CertifiedIssuer, IsCa, BasicConstraints, KeyPair};
    /// use tiny_cache_client::server::Server;
    /// use tiny_cache_client::Client;
    ///
    /// // A private CA issuing one server and one client certificate.
    /// let mut ca = CertificateParams::new(Vec::<String>::new())?;
    /// ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    /// let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    /// let issue = |name: &str| -> Result<(String, String), rcgen::Error> {
    ///     let key = KeyPair::generate()?;
    ///     let cert = CertificateParams::new(vec![name.to_owned()])?.signed_by(&key, &ca)?;
    ///     Ok((cert.pem(), key.serialize_pem()))
    /// };
    /// let (server_cert, server_key) = issue("127.0.0.1")?;
    /// let (client_cert, client_key) = issue("client")?;
    ///
    /// let server = Server::builder()
    ///     .tls(&server_cert, &server_key)
    ///     .client_ca(ca.pem())
    ///     .start()?;
    /// let client = Client::builder(&server.url()) // grpcs://127.0.0.1:port
    ///     .tls_ca_certificate_pem(ca.pem())
    ///     .tls_client_identity_pem(&client_cert, &client_key)
    ///     .build()?;
    /// client.set("greeting", "hello over mTLS")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_ca(mut self, ca_certificates: impl AsRef<[u8]>) -> Self {
        self.client_ca = Some(ca_certificates.as_ref().to_vec());
        self
    }

    /// Also serves the reference server's HTTP/1.1 side port on this
    /// address (`ip:port`; port 0 picks a free one, read back with
    /// [`Server::health_local_addr`]). Every answer is `200` (but `/ready`
    /// while draining) with an `x-request-id` header:
    ///
    /// - `/health` and `/ready`: JSON `status` (`"healthy"`),
    ///   `uptime_seconds`, `cache_size`, `cache_hits`, `cache_misses`,
    ///   `active_requests` (gRPC calls in progress), `timestamp` (Unix
    ///   seconds, fractional); once a shutdown began, `/ready` answers 503
    ///   with `"draining"` until the calls in flight are done, while
    ///   `/health` stays the liveness answer;
    /// - `/live`: JSON `status` (`"alive"`), `uptime_seconds`, `timestamp`;
    /// - `/stats`: JSON with every `Stats` counter and limit, plus
    ///   `memory_usage_mb`, `max_memory_mb`, `uptime_seconds`,
    ///   `active_requests` and `timestamp`;
    /// - `/metrics`: Prometheus text (`tiny_cache_hits_total`,
    ///   `tiny_cache_entries`, ...).
    ///
    /// Default: no side port.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use tiny_cache_client::server::Server;
    ///
    /// let server = Server::builder().health_listen("127.0.0.1:0").start()?;
    /// let side_port = server.health_local_addr().expect("side port enabled");
    /// let mut http = std::net::TcpStream::connect(side_port)?;
    /// http.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    /// let mut answer = String::new();
    /// http.read_to_string(&mut answer)?;
    /// assert!(answer.starts_with("HTTP/1.1 200 OK"));
    /// assert!(answer.contains(r#""status":"alive""#));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn health_listen(mut self, address: &str) -> Self {
        self.health_listen = Some(address.to_owned());
        self
    }

    /// Binds the listener and starts serving in a background thread.
    ///
    /// Errors: [`ServerError::InvalidAddress`] for an address that does not
    /// parse, [`ServerError::Bind`] when it cannot be bound,
    /// [`ServerError::Tls`] for a certificate, key or client CA that cannot
    /// be used (or a client CA without a certificate), [`ServerError::Io`]
    /// when the runtime or its threads cannot start.
    ///
    /// ```
    /// use tiny_cache_client::server::{Server, ServerError};
    ///
    /// let first = Server::builder().listen("127.0.0.1:0").start()?;
    /// // Its address is taken now.
    /// let taken = Server::builder().listen(&first.address()).start();
    /// assert!(matches!(taken, Err(ServerError::Bind { .. })));
    /// // A client CA needs a certificate to go with it.
    /// let no_certificate = Server::builder().client_ca("a CA").start();
    /// assert!(matches!(no_certificate, Err(ServerError::Tls(_))));
    /// # Ok::<(), ServerError>(())
    /// ```
    pub fn start(self) -> Result<Server, ServerError> {
        let listen = parse_address(&self.listen)?;
        let health_listen = self
            .health_listen
            .as_deref()
            .map(parse_address)
            .transpose()?;
        let acceptor = match (self.tls, self.client_ca) {
            (Some(settings), client_ca) => Some(
                tls::TlsSettings {
                    client_ca,
                    ..settings
                }
                .acceptor()?,
            ),
            (None, Some(_)) => {
                return Err(ServerError::Tls(
                    "a client CA needs a server certificate and key (tls)".into(),
                ))
            }
            (None, None) => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.workers)
            .thread_name("tiny-cache-server")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(bind(listen))?;
        let address = listener.local_addr()?;
        let health_listener = health_listen
            .map(|at| runtime.block_on(bind(at)))
            .transpose()?;
        let health_address = health_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let (stop_tx, stop_rx) = watch::channel(Stop::Running);
        // The side port outlives the gRPC side's drain, so that `/ready`
        // answers "draining" while it lasts; it stops after.
        let (drained_tx, drained_rx) = watch::channel(Stop::Running);
        let context = Arc::new(handler::Context {
            service: CacheService::new(self.store),
            max_receive_message_bytes: self.max_receive_message_bytes,
            active_requests: AtomicU64::new(0),
        });
        let settings = Settings {
            max_concurrent_streams: self.max_concurrent_streams,
        };
        let tls = acceptor.is_some();
        let thread = std::thread::Builder::new()
            .name("tiny-cache-server-main".into())
            .spawn(move || {
                runtime.spawn(sweep_expired(Arc::clone(&context)));
                if let Some(listener) = health_listener {
                    runtime.spawn(side_port::serve(
                        listener,
                        Arc::clone(&context),
                        drained_rx,
                        stop_rx.clone(),
                    ));
                }
                runtime.block_on(accept_loop(listener, context, settings, acceptor, stop_rx));
                let _ = drained_tx.send(Stop::Abrupt);
                runtime.shutdown_timeout(SHUTDOWN_GRACE);
            })?;
        Ok(Server {
            address,
            health_address,
            tls,
            stop: stop_tx,
            thread: Some(thread),
        })
    }
}

fn parse_address(address: &str) -> Result<SocketAddr, ServerError> {
    address.parse().map_err(|_| ServerError::InvalidAddress {
        address: address.to_owned(),
    })
}

async fn bind(address: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind {
            address: address.to_string(),
            source,
        })
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    max_concurrent_streams: Option<u32>,
}

/// A running embedded server. Dropping it (or [`Server::shutdown`]) stops
/// it: the listener closes and open connections are dropped.
///
/// ```
/// use tiny_cache_client::{server::Server, Client};
///
/// let server = Server::local()?;
/// let client = Client::new(&server.address())?;
/// client.set("greeting", "hello")?;
/// assert_eq!(client.get_string("greeting")?.as_deref(), Some("hello"));
/// drop(server); // stops it: the listener closes, connections get GOAWAY
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Server {
    address: SocketAddr,
    health_address: Option<SocketAddr>,
    tls: bool,
    stop: watch::Sender<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// A builder with every default.
    ///
    /// ```
    /// use tiny_cache_client::{server::Server, Client};
    ///
    /// let server = Server::builder().max_items(100).start()?;
    /// let client = Client::new(&server.address())?;
    /// assert_eq!(client.stats()?.max_items, 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// A server with every default on a free loopback port: what tests,
    /// examples and benchmarks use.
    ///
    /// ```
    /// let server = tiny_cache_client::server::Server::local()?;
    /// assert!(server.address().starts_with("127.0.0.1:"));
    /// # Ok::<(), tiny_cache_client::server::ServerError>(())
    /// ```
    pub fn local() -> Result<Server, ServerError> {
        ServerBuilder::default().start()
    }

    /// The bound socket address.
    ///
    /// ```
    /// let server = tiny_cache_client::server::Server::local()?;
    /// let at = server.local_addr();
    /// assert!(at.ip().is_loopback());
    /// assert_ne!(at.port(), 0);
    /// assert_eq!(at.to_string(), server.address());
    /// # Ok::<(), tiny_cache_client::server::ServerError>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The bound address as `host:port`, ready for
    /// [`Client::new`](crate::Client::new).
    ///
    /// ```
    /// use tiny_cache_client::{server::Server, Client};
    ///
    /// let server = Server::local()?;
    /// assert!(server.address().starts_with("127.0.0.1:"));
    /// let client = Client::new(&server.address())?;
    /// client.set("k", "v")?;
    /// assert_eq!(client.get_string("k")?.as_deref(), Some("v"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The address as a client URL: `grpcs://host:port` when serving TLS,
    /// `grpc://host:port` otherwise.
    ///
    /// ```
    /// let server = tiny_cache_client::server::Server::local()?;
    /// assert!(server.url().starts_with("grpc://127.0.0.1:"));
    /// # Ok::<(), tiny_cache_client::server::ServerError>(())
    /// ```
    pub fn url(&self) -> String {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        format!("{scheme}://{}", self.address)
    }

    /// The bound address of the HTTP side port, when
    /// [`ServerBuilder::health_listen`] enabled it.
    ///
    /// ```
    /// use tiny_cache_client::server::Server;
    ///
    /// assert_eq!(Server::local()?.health_local_addr(), None);
    /// let server = Server::builder().health_listen("127.0.0.1:0").start()?;
    /// assert!(server.health_local_addr().is_some_and(|at| at.port() != 0));
    /// # Ok::<(), tiny_cache_client::server::ServerError>(())
    /// ```
    pub fn health_local_addr(&self) -> Option<SocketAddr> {
        self.health_address
    }

    /// The side port as a URL prefix, `http://host:port`, when enabled.
    ///
    /// ```
    /// use tiny_cache_client::server::Server;
    ///
    /// let server = Server::builder().health_listen("127.0.0.1:0").start()?;
    /// let metrics = format!("{}/metrics", server.health_url().unwrap());
    /// assert!(metrics.starts_with("http://127.0.0.1:"));
    /// # Ok::<(), tiny_cache_client::server::ServerError>(())
    /// ```
    pub fn health_url(&self) -> Option<String> {
        self.health_address.map(|at| format!("http://{at}"))
    }

    /// Whether the server speaks TLS.
    ///
    /// ```
    /// use tiny_cache_client::server::Server;
    ///
    /// assert!(!Server::local()?.is_tls());
    /// let dev = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    /// let server = Server::builder()
    ///     .tls(dev.cert.pem(), dev.signing_key.serialize_pem())
    ///     .start()?;
    /// assert!(server.is_tls());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Stops the server gracefully, as the reference server does: the
    /// listener closes, every connection gets a GOAWAY, calls already
    /// received finish (for up to 2 s), then the threads end. Dropping the
    /// server does the same.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::{server::Server, Client};
    ///
    /// let server = Server::local()?;
    /// let address = server.address();
    /// let client = Client::builder(&address)
    ///     .max_retries(0)
    ///     .timeout(Duration::from_secs(5))
    ///     .build()?;
    /// client.set("k", "v")?;
    /// server.shutdown();
    /// assert!(client.get("k").is_err()); // nobody answers any more
    /// // The threads are joined and the port released: it can be bound again.
    /// let again = Server::builder().listen(&address).start()?;
    /// # drop(again);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(mut self) {
        self.stop_and_join(Stop::Graceful);
    }

    /// Stops the server at once, like a crash: connections are dropped
    /// without GOAWAY and calls in flight get no answer. For fault tests.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::{server::Server, Client};
    ///
    /// let server = Server::local()?;
    /// let client = Client::builder(&server.address())
    ///     .max_retries(0)
    ///     .timeout(Duration::from_secs(5))
    ///     .build()?;
    /// client.set("k", "v")?;
    /// server.kill();
    /// // A crashed server: the failure is one a later retry could fix.
    /// let error = client.get("k").unwrap_err();
    /// assert!(error.is_retryable(), "{error:?}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kill(mut self) {
        self.stop_and_join(Stop::Abrupt);
    }

    fn stop_and_join(&mut self, how: Stop) {
        let _ = self.stop.send(how);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_and_join(Stop::Graceful);
    }
}

async fn accept_loop(
    listener: TcpListener,
    context: Arc<handler::Context>,
    settings: Settings,
    acceptor: Option<TlsAcceptor>,
    mut stop: watch::Receiver<Stop>,
) {
    let told = stop.clone();
    let mut connections = accept_until_stopped(listener, &mut stop, |socket| {
        serve_connection(
            socket,
            Arc::clone(&context),
            settings,
            acceptor.clone(),
            told.clone(),
        )
    })
    .await;
    if *stop.borrow() == Stop::Graceful {
        let drained = async { while connections.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, drained).await;
    }
    // Whatever is left is aborted with the set.
}

async fn sweep_expired(context: Arc<handler::Context>) {
    let mut ticks = tokio::time::interval(EXPIRY_SWEEP_PERIOD);
    loop {
        ticks.tick().await;
        context.service.store().purge_expired();
    }
}

async fn serve_connection(
    socket: TcpStream,
    context: Arc<handler::Context>,
    settings: Settings,
    acceptor: Option<TlsAcceptor>,
    stop: watch::Receiver<Stop>,
) {
    let _ = socket.set_nodelay(true);
    match acceptor {
        None => serve_h2(socket, context, settings, stop).await,
        Some(acceptor) => {
            if let Some(stream) = tls::accept(&acceptor, socket).await {
                serve_h2(stream, context, settings, stop).await;
            }
        }
    }
}

async fn serve_h2<T>(
    io: T,
    context: Arc<handler::Context>,
    settings: Settings,
    mut stop: watch::Receiver<Stop>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_header_list_size(MAX_REQUEST_HEADER_LIST_BYTES);
    if let Some(streams) = settings.max_concurrent_streams {
        builder.max_concurrent_streams(streams);
    }
    let Ok(mut connection) = builder.handshake::<_, bytes::Bytes>(io).await else {
        return;
    };
    let mut draining = false;
    // Requests the connection has handed over but that are not handled yet.
    let mut arrived: Vec<Arrived> = Vec::new();
    loop {
        // Take up to HANDLE_BATCH of the requests the connection already
        // holds before handling any: each `accept` also flushes what is
        // queued, so handling them one at a time wrote one response per
        // write. Then handle half of them (see HANDLE_BATCH) and let the
        // connection write those before the rest.
        let next = std::future::poll_fn(|cx| match connection.poll_accept(cx) {
            Poll::Ready(Some(Ok(request))) => {
                arrived.push(request);
                Poll::Ready(Next::Took)
            }
            Poll::Ready(_) => Poll::Ready(Next::Closed),
            Poll::Pending if !arrived.is_empty() => Poll::Ready(Next::NoMoreForNow),
            Poll::Pending => Poll::Pending,
        });
        tokio::select! {
            next = next => match next {
                Next::Took if arrived.len() < HANDLE_BATCH => {}
                Next::Took | Next::NoMoreForNow => {
                    let half = arrived.len().div_ceil(2);
                    for (request, respond) in arrived.drain(..half) {
                        handle_inline(request, respond, &context).await;
                    }
                }
                Next::Closed => return,
            },
            changed = stop.changed(), if !draining => {
                if changed.is_err() || *stop.borrow() == Stop::Abrupt {
                    return;
                }
                // GOAWAY: no new streams; accept() keeps driving the ones
                // already open and ends once they are done.
                connection.graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// Most requests taken from a connection before any is handled.
///
/// Batching responses saves writes (h2load: 1.6–1.9× the requests/s of one
/// write per response), but a whole burst held back for one write measured
/// worse for clients that batch too (tonic on a current-thread runtime
/// lost a third of its throughput, and ours at 16 callers a quarter): both
/// sides then work in turns instead of at once. Hence a few per write, and
/// of a burst only half at a time, so the first responses leave while the
/// rest are handled.
const HANDLE_BATCH: usize = 16;

/// A request the connection handed over, with its way to answer.
type Arrived = (
    http::Request<h2::RecvStream>,
    h2::server::SendResponse<bytes::Bytes>,
);

/// What asking the connection for its next request gave.
enum Next {
    /// One more request joined the arrived ones.
    Took,
    /// None waiting right now, and some are waiting to be handled.
    NoMoreForNow,
    /// The connection ended.
    Closed,
}

/// Handles a request inside the connection's task when it arrived whole
/// (most do): no task of its own, and its response is queued before the
/// connection is next polled. One still waiting for body bytes becomes its
/// own task.
async fn handle_inline(
    request: http::Request<h2::RecvStream>,
    respond: h2::server::SendResponse<bytes::Bytes>,
    context: &Arc<handler::Context>,
) {
    let mut handling = Box::pin(handler::handle(request, respond, Arc::clone(context)));
    // A panic stays with its request, as it did in a task of its own: the
    // request is dropped (its stream reset) and the connection goes on.
    let done = std::future::poll_fn(|cx| {
        let polled = catch_unwind(AssertUnwindSafe(|| handling.as_mut().poll(cx).is_ready()));
        Poll::Ready(polled.unwrap_or(true))
    });
    if !done.await {
        tokio::spawn(handling);
    }
}
