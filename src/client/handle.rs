//! The blocking [`Client`]: validates a call, hands it to a pool worker, and
//! waits for the reply on a crossbeam channel, never past the deadline
//! (plus a 10 ms grace for the worker's own verdict);
//! retries transient failures with jittered exponential backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Scheme;
use prost::Message;

use crate::client::config::{CallOptions, ClientBuilder, ClientConfig, PingMethod, MAX_TIMEOUT};
use crate::client::requests::{CompareAndSetRef, ItemRef, ItemsRef, KeyRef, KeysRef};
use crate::client::response::{self, Response};
use crate::client::retry::{CallRetries, NextStep, TokenBucket};
use crate::client::stats::Stats;
use crate::client::telemetry::{Observation, Telemetry};
use crate::codec::{decode_message, encode_message, request_head, Method};
use crate::error::{Error, Result};
use crate::pool::{reply_channel, Call, Pool, PoolConfig, WaitError};
use crate::proto::cache::{
    CacheResponse, CacheStats, CacheStatus, CacheValue, ConditionalCacheResponse,
    ConditionalCacheStatus, Empty, MultiCacheResponse, MultiCacheValueResponse,
};
use crate::proto::health::{HealthCheckRequest, HealthCheckResponse};
use crate::rules;
use crate::store::{touch_by_cas, CasOutcome, ItemResult};
use crate::ttl::Ttl;

pub use super::serving::ServingStatus;

/// The service name the health check asks about by default.
pub use crate::codec::CACHE_SERVICE_NAME;

/// How long a caller waits past its deadline for the worker's own verdict,
/// which names the phase the call was in; the caller still gives up on its
/// own right after.
pub(super) const REPLY_GRACE: Duration = Duration::from_millis(10);

/// A blocking, thread-safe client of a tiny-cache server.
///
/// `Client` is a cheap handle (`Clone + Send + Sync`): clone it into every
/// thread. All clones share one pool of worker threads and their HTTP/2
/// connections; when the last clone is dropped, the workers stop and are
/// joined.
///
/// Every call blocks the calling thread until the server answers, the
/// call's deadline passes (default 30 s, spanning every retry), or the
/// client is closed; it then returns a typed [`Error`].
///
/// Calling from inside an async runtime works (the workers run their own
/// runtime, so nothing deadlocks) but blocks that runtime's thread for the
/// call's duration, as any blocking I/O would: from async code, wrap calls
/// in `tokio::task::spawn_blocking`. Never host the server on the same
/// single-threaded runtime you block: the call would wait for its deadline.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let address = server.address();
/// use tiny_cache_client::Client;
///
/// let client = Client::new(&address)?;
/// client.set("greeting", "hello")?;
/// assert_eq!(client.get_string("greeting")?.as_deref(), Some("hello"));
/// client.delete("greeting")?;
/// assert_eq!(client.get("greeting")?, None);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    options: Arc<CallOptions>,
}

/// What every clone of a client shares.
struct Shared {
    pool: Pool,
    config: ClientConfig,
    telemetry: Telemetry,
    scheme: Scheme,
    /// None when the builder turned the retry budget off.
    retry_budget: Option<TokenBucket>,
}

// `build` lives here rather than beside the builder so that the
// configuration never depends on the client it configures.
impl ClientBuilder {
    /// Starts the client's worker threads and returns it. Connections are
    /// made in the background, so this succeeds even while the server is
    /// down; calls report [`Error::Unavailable`] until it is up.
    ///
    /// Errors: [`Error::Validation`] for any invalid setting or address;
    /// [`Error::Tls`] with [`TlsFailure::InvalidConfiguration`](crate::TlsFailure::InvalidConfiguration)
    /// for TLS settings that cannot be used (an unreadable or malformed PEM
    /// file, a key that does not fit its certificate, an invalid server
    /// name).
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error, TlsFailure};
    ///
    /// // Building never connects: this succeeds with no server running.
    /// let client = Client::builder("127.0.0.1:50051").build()?;
    /// # drop(client);
    /// let port_zero = Client::builder("127.0.0.1:0").build();
    /// assert!(matches!(port_zero, Err(Error::Validation(_))));
    /// let unreadable = Client::builder("grpcs://cache.internal:50051")
    ///     .tls_ca_certificate_file("/nonexistent/ca.pem")
    ///     .build();
    /// assert!(matches!(
    ///     unreadable,
    ///     Err(Error::Tls { kind: TlsFailure::InvalidConfiguration, .. })
    /// ));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn build(self) -> Result<Client> {
        Client::from_config(self.into_config()?)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.shared.config.pool.address)
            .field("timeout", &self.options.timeout)
            .field("max_retries", &self.options.max_retries)
            .field("namespace", &self.options.namespace)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the server at `address` with every default (see
    /// [`ClientBuilder`]). Accepted forms: `host:port`, `[::1]:port`,
    /// `grpc://host:port`.
    ///
    /// Connecting happens in the background, so this succeeds while the
    /// server is down. Errors: [`Error::Validation`] for a malformed address.
    ///
    /// ```
    /// use tiny_cache_client::Client;
    ///
    /// let client = Client::new("127.0.0.1:50051")?;
    /// # drop(client);
    /// assert!(Client::new("no-port").is_err());
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn new(address: &str) -> Result<Client> {
        ClientBuilder::new(address).build()
    }

    /// A builder for a client of the server at `address`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::Client;
    ///
    /// let client = Client::builder("127.0.0.1:50051")
    ///     .timeout(Duration::from_millis(500))
    ///     .build()?;
    /// # drop(client);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn builder(address: &str) -> ClientBuilder {
        ClientBuilder::new(address)
    }

    /// A client configured from `CACHE_SERVER_ADDRESS` (default
    /// `localhost:50051`), `CACHE_MAX_RETRIES` (default 3) and
    /// `CACHE_TIMEOUT` (seconds, default 30). Use
    /// [`ClientBuilder::from_env`] to adjust more settings.
    ///
    /// ```
    /// let client = tiny_cache_client::Client::from_env()?;
    /// # drop(client);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn from_env() -> Result<Client> {
        ClientBuilder::from_env().build()
    }

    fn from_config(config: ClientConfig) -> Result<Client> {
        #[cfg(feature = "metrics")]
        let telemetry = Telemetry::new(&config.metrics_prefix);
        #[cfg(not(feature = "metrics"))]
        let telemetry = Telemetry::new();
        let pool = Pool::start(PoolConfig {
            on_reconnect: telemetry.reconnect_hook(),
            ..config.pool.clone()
        })?;
        Ok(Client {
            options: Arc::new(config.call.clone()),
            shared: Arc::new(Shared {
                pool,
                telemetry,
                scheme: config.pool.address.scheme(),
                retry_budget: config.retry_throttle.map(TokenBucket::new),
                config,
            }),
        })
    }

    // ----- per-call overrides -------------------------------------------

    fn with_options(&self, change: impl FnOnce(&mut CallOptions) -> Result<()>) -> Result<Client> {
        let mut options = CallOptions::clone(&self.options);
        change(&mut options)?;
        Ok(self.with_call_options(options))
    }

    fn with_call_options(&self, options: CallOptions) -> Client {
        Client {
            shared: Arc::clone(&self.shared),
            options: Arc::new(options),
        }
    }

    /// A handle whose calls use `timeout` as their deadline (spanning all
    /// retries). It shares this client's connections. Errors with
    /// [`Error::Validation`] for a zero timeout, as the builder does.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    ///
    /// let hurried = client.with_timeout(Duration::from_millis(200))?;
    /// hurried.set("k", "v")?;
    /// assert!(client.with_timeout(Duration::ZERO).is_err());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_timeout(&self, timeout: Duration) -> Result<Client> {
        self.with_options(|o| o.set_timeout(timeout))
    }

    /// A handle whose calls make at most `retries` extra attempts.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// let no_retries = client.with_max_retries(0);
    /// # drop(no_retries);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn with_max_retries(&self, retries: u32) -> Client {
        self.with_call_options(CallOptions {
            max_retries: retries,
            ..CallOptions::clone(&self.options)
        })
    }

    /// A handle that sends one more ASCII metadata header (replacing a
    /// default of the same name). Errors with [`Error::Validation`] for a
    /// reserved or malformed name, or a value outside printable ASCII.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// let tagged = client.with_metadata("x-caller", "billing")?;
    /// assert!(client.with_metadata("x-caller", "naïve").is_err());
    /// # drop(tagged);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn with_metadata(&self, name: &str, value: &str) -> Result<Client> {
        self.with_options(|o| Ok(o.metadata.insert(name, value)?))
    }

    /// A handle that sends one more binary metadata header (`name` must end
    /// in `-bin`).
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// let traced = client.with_metadata_bin("x-trace-bin", &[0, 1, 2])?;
    /// # drop(traced);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn with_metadata_bin(&self, name: &str, value: &[u8]) -> Result<Client> {
        self.with_options(|o| Ok(o.metadata.insert_bin(name, value)?))
    }

    /// A handle that sends `x-request-id: id`, which the server logs, echoes
    /// back and quotes in `INTERNAL` errors.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// let traced = client.with_request_id("req-7f3a")?;
    /// # drop(traced);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn with_request_id(&self, id: &str) -> Result<Client> {
        self.with_metadata(rules::REQUEST_ID_HEADER, id)
    }

    /// A handle working in another key space (`x-cache-namespace`); blank
    /// means the shared key space. Errors with [`Error::Validation`] for an
    /// invalid namespace.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let alice = client.with_namespace("alice")?;
    /// let bob = client.with_namespace("bob")?;
    /// alice.set("cart", "3 apples")?;
    /// assert_eq!(bob.get("cart")?, None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_namespace(&self, namespace: &str) -> Result<Client> {
        self.with_options(|o| o.set_namespace(namespace))
    }

    // ----- operations ---------------------------------------------------

    /// The TTL of the writes that name none (`set`, `set_many`,
    /// `set_if_absent`, `compare_and_set`): the builder's
    /// [`default_ttl`](ClientBuilder::default_ttl), one hour unless set.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// use std::time::Duration;
    /// use tiny_cache_client::{Client, Ttl};
    ///
    /// let client = Client::builder(&server.address()).default_ttl(Duration::from_secs(60)).build()?;
    /// assert_eq!(client.default_ttl(), Ttl::After(Duration::from_secs(60)));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn default_ttl(&self) -> Ttl {
        self.shared.config.default_ttl
    }

    /// Reads `key`: `Some(value)` when present and not expired.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// client.set("k", [1u8, 2, 3])?;
    /// assert_eq!(client.get("k")?.as_deref(), Some(&[1u8, 2, 3][..]));
    /// assert_eq!(client.get("missing")?, None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.check_key(key)?;
        let reply: CacheValue = self.call(Method::Get, &KeyRef { key })?;
        Ok(reply.found.then_some(reply.value))
    }

    /// Reads `key` as text. Errors with [`Error::NotUtf8`] when the stored
    /// value is not UTF-8.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// client.set("name", "Ada")?;
    /// assert_eq!(client.get_string("name")?.as_deref(), Some("Ada"));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_string(&self, key: &str) -> Result<Option<String>> {
        text_value(key, self.get(key)?)
    }

    /// Removes `key`; removing a missing key succeeds.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// client.delete("never-written")?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, key: &str) -> Result<()> {
        self.check_key(key)?;
        let reply: CacheResponse = self.call(Method::Delete, &KeyRef { key })?;
        expect_ok(reply.status, "Delete")
    }

    crate::store::store_methods! {
        /// Writes `key` with the client's default TTL (one hour unless
        /// configured otherwise).
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// client.set("session:42", b"{\"user\":7}")?;
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn set;

        /// Writes `key` with an explicit TTL: a [`Duration`] (rounded up to
        /// whole seconds) or [`Ttl::Never`].
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// use std::time::Duration;
        /// use tiny_cache_client::Ttl;
        ///
        /// client.set_with_ttl("otp", "123456", Duration::from_secs(60))?;
        /// client.set_with_ttl("config", "v1", Ttl::Never)?;
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn set_with_ttl(&self, key, value, ttl) {
            let reply: CacheResponse =
                self.write(Method::Set, key, ttl, |ttl| ItemRef { key, value, ttl })?;
            expect_ok(reply.status, "Set")
        }

        /// Reads many keys in one round trip. Results come in request order;
        /// a key the server refuses (for example an empty one) fails alone.
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// client.set("a", "1")?;
        /// let results = client.get_many(["a", "b", ""])?;
        /// assert_eq!(results[0].result.as_ref().unwrap().as_deref(), Some(&b"1"[..]));
        /// assert_eq!(results[1].result, Ok(None));
        /// assert!(results[2].result.is_err());
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn get_many(&self, keys) {
            let request = KeysRef { elements: keys };
            let reply: MultiCacheValueResponse = self.call(Method::MultiGet, &request)?;
            value_results(reply, keys.len())
        }

        /// Writes many entries in one round trip with the default TTL; one
        /// result per item, in request order.
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// let results = client.set_many([("a", "1"), ("b", "2")])?;
        /// assert!(results.iter().all(|r| r.result.is_ok()));
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn set_many;

        /// Writes many entries in one round trip, all with `ttl`.
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// use tiny_cache_client::Ttl;
        /// client.set_many_with_ttl([("a", "1")], Ttl::Never)?;
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn set_many_with_ttl(&self, items, ttl) {
            let ttl = ttl.wire_seconds()?;
            let items: Vec<ItemRef<'_>> = items
                .iter()
                .map(|&(key, value)| ItemRef { key, value, ttl })
                .collect();
            let reply: MultiCacheResponse =
                self.call(Method::MultiSet, &ItemsRef { elements: &items })?;
            operation_results(reply, items.len(), "MultiSet")
        }

        /// Removes many keys in one round trip; missing keys succeed.
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// let results = client.delete_many(["a", "b"])?;
        /// assert_eq!(results.len(), 2);
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn delete_many(&self, keys) {
            let request = KeysRef { elements: keys };
            let reply: MultiCacheResponse = self.call(Method::MultiDelete, &request)?;
            operation_results(reply, keys.len(), "MultiDelete")
        }

        /// Writes `key` only if it is missing or expired, with the default TTL.
        /// Returns whether it was written.
        ///
        /// Not idempotent: it is retried only when the server surely never saw
        /// the first attempt.
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// assert!(client.set_if_absent("lock", "me")?);
        /// assert!(!client.set_if_absent("lock", "you")?);
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn set_if_absent;

        /// [`set_if_absent`](Client::set_if_absent) with an explicit TTL.
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// use std::time::Duration;
        /// assert!(client.set_if_absent_with_ttl("lease", "w1", Duration::from_secs(10))?);
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn set_if_absent_with_ttl(&self, key, value, ttl) {
            let reply: ConditionalCacheResponse =
                self.write(Method::SetIfAbsent, key, ttl, |ttl| ItemRef { key, value, ttl })?;
            inserted(&reply)
        }

        /// Replaces `key`'s value with `value` only if it currently equals
        /// `expected`, with the default TTL.
        ///
        /// Not idempotent: it is retried only when the server surely never saw
        /// the first attempt.
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// use tiny_cache_client::CasOutcome;
        ///
        /// client.set("counter", "1")?;
        /// assert_eq!(client.compare_and_set("counter", "1", "2")?, CasOutcome::Stored);
        /// assert_eq!(client.compare_and_set("counter", "1", "3")?, CasOutcome::Mismatch);
        /// assert_eq!(client.compare_and_set("nothing", "1", "2")?, CasOutcome::NotFound);
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn compare_and_set;

        /// [`compare_and_set`](Client::compare_and_set) with an explicit TTL for
        /// the new value.
        ///
        /// ```
        /// # #[cfg(feature = "server")] {
        /// # let server = tiny_cache_client::server::Server::local()?;
        /// # let client = tiny_cache_client::Client::new(&server.address())?;
        /// use tiny_cache_client::{CasOutcome, Ttl};
        /// client.set("v", "a")?;
        /// assert_eq!(client.compare_and_set_with_ttl("v", "a", "b", Ttl::Never)?, CasOutcome::Stored);
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn compare_and_set_with_ttl(&self, key, expected, value, ttl) {
            let reply: ConditionalCacheResponse =
                self.write(Method::CompareAndSet, key, ttl, |ttl| CompareAndSetRef {
                    key,
                    expected,
                    value,
                    ttl,
                })?;
            swapped(&reply)
        }
    }

    /// Gives a present key a new TTL without changing its value; returns
    /// whether the key was there to touch (mtaio's `touch`).
    ///
    /// The wire has no TTL-only update, so this reads the value and writes
    /// it back with [`compare_and_set`](Client::compare_and_set): the write
    /// lands only if the value is still the one read, so a concurrent writer
    /// is never overwritten with an older value. When another writer wins
    /// in between, the new value is read and touched in turn, up to
    /// [`TOUCH_ATTEMPTS`](crate::TOUCH_ATTEMPTS) times, after which the call
    /// fails with `Error::Status { code: Aborted, .. }` (retryable). It costs
    /// two round trips and sends the value twice (as expected and new
    /// value), all within one deadline, the handle's timeout.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use std::time::Duration;
    /// use tiny_cache_client::Ttl;
    ///
    /// client.set_with_ttl("session", "alice", Duration::from_secs(30))?;
    /// assert!(client.touch("session", Duration::from_secs(3600))?);
    /// assert!(client.touch("session", Ttl::Never)?);
    /// assert!(!client.touch("gone", Duration::from_secs(60))?);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn touch(&self, key: &str, ttl: impl Into<Ttl>) -> Result<bool> {
        let ttl = ttl.into();
        ttl.wire_seconds()?;
        // One deadline for the whole touch, as for any other call.
        let deadline = Instant::now() + self.options.timeout.min(MAX_TIMEOUT);
        let within_deadline = || {
            self.with_timeout(deadline.saturating_duration_since(Instant::now()))
                .map_err(|_| Error::deadline(self.options.timeout, "touching the key"))
        };
        touch_by_cas(key, ttl, within_deadline, |value| Some(value.clone()))
    }

    /// The server's counters (entries, hits, misses, evictions, memory).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// client.set("k", "v")?;
    /// let stats = client.stats()?;
    /// assert_eq!(stats.size, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Result<Stats> {
        let wire: CacheStats = self.call(Method::Stats, &Empty {})?;
        Ok(Stats::from(wire))
    }

    /// Asks whether the server answers, and returns the round-trip time.
    /// Uses a `Stats` call unless the client was built with
    /// [`PingMethod::Health`].
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let round_trip = client.ping()?;
    /// println!("server answered in {round_trip:?}");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        match self.shared.config.ping_method {
            PingMethod::Stats => {
                self.stats()?;
            }
            PingMethod::Health => match self.health_check(CACHE_SERVICE_NAME)? {
                ServingStatus::Serving => {}
                other => {
                    return Err(Error::Unavailable(
                        format!("the health service reports {other}").into(),
                    ))
                }
            },
        }
        Ok(started.elapsed())
    }

    /// The standard gRPC health check (`grpc.health.v1.Health/Check`) for
    /// `service` (`""` for the whole server, or [`CACHE_SERVICE_NAME`]). An
    /// unknown service is an [`Error::Status`] with code `NOT_FOUND`.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// use tiny_cache_client::ServingStatus;
    /// assert_eq!(client.health_check("")?, ServingStatus::Serving);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn health_check(&self, service: &str) -> Result<ServingStatus> {
        let reply: HealthCheckResponse = self.call(
            Method::HealthCheck,
            &HealthCheckRequest {
                service: service.to_owned(),
            },
        )?;
        ServingStatus::from_wire(reply.status).ok_or_else(|| Error::Protocol {
            code: crate::Code::Internal,
            message: format!("health check answered an unknown status {}", reply.status),
        })
    }

    /// Runs `call` and returns its value with the server's response
    /// metadata (the `x-request-id` the server used, above all), the way a
    /// tonic `Response` carries it. Works with every operation; when the
    /// closure makes several calls, the metadata is the last one's.
    ///
    /// Only the calls made inside the closure, on this thread, copy their
    /// headers: the plain API pays nothing for this. A failed call needs no
    /// capture: its [`Error::request_id`] names the server's id already.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// client.set("k", "v")?;
    /// let response = client.call_with_metadata(|c| c.get("k"))?;
    /// let id = response.metadata().request_id().unwrap_or("-");
    /// println!("served as {id}");
    /// assert_eq!(response.into_inner().as_deref(), Some(&b"v"[..]));
    ///
    /// let tagged = client.with_request_id("req-9")?;
    /// let response = tagged.call_with_metadata(|c| c.delete("k"))?;
    /// assert_eq!(response.metadata().request_id(), Some("req-9"));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_with_metadata<T>(
        &self,
        call: impl FnOnce(&Client) -> Result<T>,
    ) -> Result<Response<T>> {
        response::capture(|| call(self))
    }

    /// A snapshot of this client's counters (feature `metrics`), shared by
    /// every clone: calls, errors by code, retries, reconnects, calls in
    /// flight. For a program without a metrics stack; with one, the same
    /// figures go to the `metrics` facade as they happen.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// let client = tiny_cache_client::Client::new(&server.address())?;
    /// client.get("k")?;
    /// assert_eq!(client.metrics().calls, 1);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics(&self) -> crate::ClientMetrics {
        self.shared.telemetry.snapshot()
    }

    /// Shuts the client down now, for every clone: calls in flight return
    /// [`Error::Closed`], later calls fail with it, and the worker threads
    /// are joined before this returns. Dropping the last clone does the same.
    ///
    /// ```
    /// use tiny_cache_client::{Client, Error};
    ///
    /// let client = Client::new("127.0.0.1:50051")?;
    /// client.close();
    /// assert_eq!(client.get("k"), Err(Error::Closed));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn close(&self) {
        self.shared.pool.shutdown();
    }

    /// A pipeline of operations on this client, sent all at once and
    /// waited for once (see [`pipeline`](crate::pipeline)).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let outcomes = client.pipeline().set("a", "1").get("a").run()?;
    /// assert_eq!(outcomes.len(), 2);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pipeline(&self) -> crate::pipeline::Pipeline<'_> {
        crate::pipeline::Pipeline::on(self)
    }

    // ----- the call path ------------------------------------------------

    /// The deadline of this handle's calls, from their start.
    pub(super) fn timeout(&self) -> Duration {
        self.options.timeout.min(MAX_TIMEOUT)
    }

    /// What a call started on this handle needs from the client, for
    /// `flight`: its timeout, retry policy and telemetry.
    pub(super) fn call_parts(&self, method: Method) -> CallParts<'_> {
        let shared = &*self.shared;
        let options = &*self.options;
        CallParts {
            timeout: self.timeout(),
            retries: CallRetries::new(
                options.max_retries,
                method.is_idempotent(),
                shared.retry_budget.as_ref(),
                &shared.config.retry_backoff,
            ),
            observation: shared.telemetry.start(method),
        }
    }

    /// `request` framed for the wire, within the client's size limit.
    pub(super) fn encode<Req: Message>(&self, request: &Req) -> Result<Bytes> {
        encode_message(request, self.shared.config.max_send_message_bytes)
            .map_err(|status| Error::ResourceExhausted(status.message().to_owned().into()))
    }

    /// Hands one attempt of a call to the pool, with `deadline - now` as
    /// its `grpc-timeout`.
    pub(super) fn submit(
        &self,
        method: Method,
        body: Bytes,
        deadline: Instant,
        reply: crate::pool::ReplySender,
        cancel: Option<crate::pool::CancelSignal>,
    ) -> Result<()> {
        let shared = &*self.shared;
        let head = request_head(
            &shared.scheme,
            shared.config.pool.address.authority(),
            method,
            Some(deadline.saturating_duration_since(Instant::now())),
            &self.options.metadata,
        );
        shared.pool.submit(Call {
            head,
            body,
            deadline,
            reply,
            keep_metadata: false,
            cancel,
        })
    }

    pub(super) fn check_key(&self, key: &str) -> Result<()> {
        Ok(rules::check_key(key, self.options.namespace.as_deref())?)
    }

    /// The single-key write path: the key and the TTL validated, then one
    /// call whose request is built around the TTL's wire value.
    fn write<Req: Message, Resp: Message + Default>(
        &self,
        method: Method,
        key: &str,
        ttl: Ttl,
        request: impl FnOnce(i32) -> Req,
    ) -> Result<Resp> {
        self.check_key(key)?;
        let ttl = ttl.wire_seconds()?;
        self.call(method, &request(ttl))
    }

    /// One unary call with retries, bounded by the handle's timeout, and
    /// observed by the client's telemetry.
    fn call<Req: Message, Resp: Message + Default>(
        &self,
        method: Method,
        request: &Req,
    ) -> Result<Resp> {
        let observation = self.shared.telemetry.start(method);
        let outcome = self.call_with_retries(method, request, &observation);
        observation.finish(&outcome);
        outcome
    }

    fn call_with_retries<Req: Message, Resp: Message + Default>(
        &self,
        method: Method,
        request: &Req,
        observation: &Observation<'_>,
    ) -> Result<Resp> {
        let shared = &*self.shared;
        let options = &*self.options;
        let timeout = self.timeout();
        let deadline = Instant::now() + timeout;
        let encode = || self.encode(request);
        // The first attempt sends this body; a retry encodes the request
        // again, which is cheaper for the common call than sharing one body
        // among attempts (sharing costs an allocation on every call).
        let mut first_body = Some(encode()?);
        let keep_metadata = response::capturing();
        let mut retries = CallRetries::new(
            options.max_retries,
            method.is_idempotent(),
            shared.retry_budget.as_ref(),
            &shared.config.retry_backoff,
        );
        for attempt in 1.. {
            observation.attempt(attempt);
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::deadline(timeout, "before the call could be sent"));
            }
            let head = request_head(
                &shared.scheme,
                shared.config.pool.address.authority(),
                method,
                Some(remaining),
                &options.metadata,
            );
            let body = match first_body.take() {
                Some(body) => body,
                None => encode()?,
            };
            let (reply_tx, mut reply_rx) = reply_channel(shared.config.reply_wait);
            shared.pool.submit(Call {
                head,
                body,
                deadline,
                reply: reply_tx,
                keep_metadata,
                cancel: None,
            })?;
            let failure = match reply_rx.wait_until(deadline + REPLY_GRACE) {
                Ok(Ok(answer)) => {
                    retries.succeeded();
                    observation.answered_as(answer.request_id.as_ref());
                    if let Some(headers) = answer.metadata {
                        response::record(*headers);
                    }
                    return decode_message(answer.message).map_err(|status| Error::Protocol {
                        code: status.code(),
                        message: status.message().to_owned(),
                    });
                }
                Ok(Err(failure)) => failure,
                Err(WaitError::Timeout) => {
                    return Err(Error::deadline(timeout, "waiting for the reply"))
                }
                Err(WaitError::Closed) => return Err(Error::Closed),
            };
            match retries.after(&failure) {
                NextStep::ResendNow => observation.retry(&failure.error, Duration::ZERO),
                NextStep::GiveUp => return Err(failure.error),
                NextStep::RetryAfter(pause) => {
                    if Instant::now() + pause >= deadline {
                        // No time for another attempt: the failure is the
                        // real cause.
                        return Err(failure.error);
                    }
                    observation.retry(&failure.error, pause);
                    std::thread::sleep(pause);
                }
            }
        }
        unreachable!("attempts are numbered without end")
    }
}

/// A call's deadline, retry policy and observation, as the client's
/// handle sets them.
pub(super) struct CallParts<'a> {
    pub(super) timeout: Duration,
    pub(super) retries: CallRetries<'a>,
    pub(super) observation: Observation<'a>,
}

/// A value read through a text accessor: [`Error::NotUtf8`] when it is not
/// UTF-8.
pub(crate) fn text_value(key: &str, value: Option<Bytes>) -> Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(value) => String::from_utf8(value.into())
            .map(Some)
            .map_err(|_| Error::NotUtf8 {
                key: key.to_owned(),
            }),
    }
}

pub(super) fn expect_ok(status: i32, method: &str) -> Result<()> {
    match CacheStatus::try_from(status) {
        Ok(CacheStatus::Ok) => Ok(()),
        Ok(CacheStatus::Error) => Err(Error::Status {
            code: crate::Code::Unknown,
            message: format!("{method} reported ERROR").into(),
            details: None,
        }),
        _ => Err(unexpected_status(method, status)),
    }
}

/// A `MultiGet` reply as one result per key, in request order.
pub(super) fn value_results(
    reply: MultiCacheValueResponse,
    expected: usize,
) -> Result<Vec<ItemResult<Option<Bytes>>>> {
    check_item_count(reply.items.len(), expected, "MultiGet")?;
    Ok(reply
        .items
        .into_iter()
        .map(|item| ItemResult {
            key: item.key,
            result: if !item.error.is_empty() {
                Err(item_error(item.error))
            } else {
                Ok(item.found.then_some(item.value))
            },
        })
        .collect())
}

/// Whether a `SetIfAbsent` stored its value.
pub(super) fn inserted(reply: &ConditionalCacheResponse) -> Result<bool> {
    match ConditionalCacheStatus::try_from(reply.status) {
        Ok(ConditionalCacheStatus::Stored) => Ok(true),
        Ok(ConditionalCacheStatus::Exists) => Ok(false),
        _ => Err(unexpected_status("SetIfAbsent", reply.status)),
    }
}

/// What a `CompareAndSet` did.
pub(super) fn swapped(reply: &ConditionalCacheResponse) -> Result<CasOutcome> {
    match ConditionalCacheStatus::try_from(reply.status) {
        Ok(ConditionalCacheStatus::Stored) => Ok(CasOutcome::Stored),
        Ok(ConditionalCacheStatus::NotFound) => Ok(CasOutcome::NotFound),
        Ok(ConditionalCacheStatus::Mismatch) => Ok(CasOutcome::Mismatch),
        _ => Err(unexpected_status("CompareAndSet", reply.status)),
    }
}

fn unexpected_status(method: &str, status: i32) -> Error {
    Error::Protocol {
        code: crate::Code::Internal,
        message: format!("{method} answered an unexpected status {status}"),
    }
}

/// One item's refusal inside a multi-key call, as the error the same
/// refusal of a single-key call would be: a value too large or a full
/// cache is `ResourceExhausted`, anything else (an invalid key) is
/// `InvalidArgument`, each with the server's own text.
fn item_error(text: String) -> Error {
    if text == rules::OVERSIZE_TEXT || text == rules::NO_ROOM_TEXT {
        Error::ResourceExhausted(text.into())
    } else {
        Error::InvalidArgument(text.into())
    }
}

fn check_item_count(got: usize, expected: usize, method: &str) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::Protocol {
            code: crate::Code::Internal,
            message: format!("{method} answered {got} results for {expected} items"),
        })
    }
}

pub(super) fn operation_results(
    reply: MultiCacheResponse,
    expected: usize,
    method: &str,
) -> Result<Vec<ItemResult<()>>> {
    check_item_count(reply.items.len(), expected, method)?;
    Ok(reply
        .items
        .into_iter()
        .map(|item| {
            let result = match CacheStatus::try_from(item.status) {
                Ok(CacheStatus::Ok) if item.error.is_empty() => Ok(()),
                _ if !item.error.is_empty() => Err(item_error(item.error)),
                _ => Err(Error::Protocol {
                    code: crate::Code::Internal,
                    message: format!("{method} answered item status {}", item.status),
                }),
            };
            ItemResult {
                key: item.key,
                result,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_options_derives_a_handle_without_touching_the_original() {
        let client = Client::builder("127.0.0.1:1").build().unwrap();
        let scoped = client
            .with_timeout(Duration::from_millis(5))
            .unwrap()
            .with_max_retries(0)
            .with_namespace("tenant")
            .unwrap();
        assert_eq!(scoped.options.timeout, Duration::from_millis(5));
        assert_eq!(scoped.options.namespace.as_deref(), Some("tenant"));
        assert_eq!(client.options.timeout, crate::DEFAULT_TIMEOUT);
        assert_eq!(client.options.namespace, None);
        let back = scoped.with_namespace("  ").unwrap();
        assert_eq!(back.options.namespace, None);
        assert!(back.options.metadata.get(rules::NAMESPACE_HEADER).is_none());
        assert!(Arc::ptr_eq(&client.shared, &back.shared));
    }

    #[test]
    fn a_namespaced_handle_validates_keys_against_the_namespaced_length() {
        let client = Client::builder("127.0.0.1:1").build().unwrap();
        let app = client.with_namespace("app").unwrap();
        let key = "k".repeat(251);
        assert!(client.check_key(&key).is_ok());
        assert!(matches!(app.check_key(&key), Err(Error::Validation(_))));
    }
}
