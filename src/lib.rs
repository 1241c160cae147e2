//! A fast, blocking, thread-safe client for the tiny-cache gRPC cache
//! service.
//!
//! [`Client`] is made for synchronous Rust: thread-per-request servers,
//! plain programs and command-line tools. It is a cheap `Clone + Send +
//! Sync` handle; share it between every thread. Behind it, a small fixed
//! pool of worker threads each drive one HTTP/2 connection and carry many
//! concurrent calls on it. Every call is bounded by a deadline, retried with
//! jittered backoff when that is safe, and fails with one typed [`Error`]
//! instead of hanging or panicking.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use tiny_cache_client::{CasOutcome, Client, Ttl};
//!
//! # #[cfg(feature = "server")] {
//! # let server = tiny_cache_client::server::Server::local()?;
//! # let address = server.address();
//! // `address` is "host:port" of a tiny-cache server, for example
//! // "localhost:50051"; `Client::from_env()` reads CACHE_SERVER_ADDRESS.
//! let client = Client::builder(&address)
//!     .timeout(Duration::from_secs(2))
//!     .namespace("docs")
//!     .build()?;
//!
//! client.set("greeting", "hello")?;                                  // default TTL (1 h)
//! client.set_with_ttl("otp", "123456", Duration::from_secs(30))?;    // explicit TTL
//! client.set_with_ttl("motd", "be kind", Ttl::Never)?;               // no expiry
//! assert_eq!(client.get_string("greeting")?.as_deref(), Some("hello"));
//!
//! assert!(client.set_if_absent("lock", "worker-1")?);
//! assert_eq!(client.compare_and_set("lock", "worker-1", "worker-2")?, CasOutcome::Stored);
//!
//! let found = client.get_many(["greeting", "nope"])?;
//! assert_eq!(found[1].result, Ok(None));
//!
//! // Per-call overrides share the same connections.
//! client.with_request_id("req-42")?.with_timeout(Duration::from_millis(200))?.delete("otp")?;
//! println!("{} entries", client.stats()?.size);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # One store, many front doors
//!
//! [`CacheStore`] is the one trait of a key-value store with TTLs: get,
//! set with or without a TTL, delete, the `*_many` calls, `set_if_absent`,
//! `compare_and_set` and `touch`, with per-item results as the crate's
//! [`Error`]. [`Client`] implements it, and so do `cluster::Cluster`, the
//! caching layers that are stores themselves (`cache::NearCache`,
//! `cache::ReadThrough`), references, `Arc`s and boxes of any of them:
//! write `fn warm(store: &impl CacheStore)` once and pass any of them. The
//! concrete types have the same methods under the same names, taking
//! `impl AsRef<[u8]>` values and `impl Into<Ttl>` TTLs, so they need no
//! import.
//!
//! # Layout
//!
//! Each room is a folder (or a file) of `src/`, and arrows point down only
//! (`tests/architecture.rs` checks it from the source):
//!
//! - `error`: [`Error`] and [`Code`], the bottom; they name nothing else.
//! - `ttl`, `rules`, `address`, `proto`: [`Ttl`], the key and namespace
//!   rules, server addresses, the generated messages (public only with
//!   `unstable-internals`).
//! - `codec`: gRPC over HTTP/2 as bytes and headers: framing, status,
//!   `grpc-timeout`, metadata. No threads, no sockets. Public only with the
//!   `unstable-internals` feature, for the fuzz targets and benchmarks:
//!   nothing in it is covered by semantic versioning.
//! - `pool` (private): worker threads, one HTTP/2 connection each,
//!   reconnecting with backoff.
//! - `store`: the [`CacheStore`] trait and the results of its operations.
//! - `client`: [`Client`], the blocking API (validation, deadlines,
//!   retries), its builder, statistics and telemetry.
//! - `cluster` (feature `cluster`): `Cluster`, one client over many servers:
//!   rendezvous placement, replicas with a read quorum, dead-server
//!   handling, hinted handoff and DNS discovery, built on the public
//!   [`Client`].
//! - `cache` (feature `cache`): the caching layers over any store:
//!   read-through with single flight, typed values, a near cache,
//!   fail-open, caching in production.
//! - `server` (feature `server`): an embedded server honouring the same
//!   contract as the reference server, for tests, examples and
//!   benchmarks; it uses the codec and nothing of the client.
//!
//! So: cache → store and cluster → store (never each other), client →
//! store, client → pool → codec → error.
//!
//! # Cargo features
//!
//! None is on by default: a plain user compiles the client alone.
//!
//! - `server`: the embedded server (module `server`), for tests, examples and
//!   benchmarks.
//! - `cli`: the `tiny-cache` command-line tool (implies `server` and
//!   `cluster`).
//! - `cache`: the caching layer (module `cache`): `ReadThrough` with
//!   single flight per key, the `CacheStore` trait, statistics, opt-in
//!   fail-open and `memoize`.
//! - `serde` (implies `cache`): typed values through codecs, JSON
//!   (serde_json) and postcard, and the `Codec` trait for your own format.
//! - `near-cache` (implies `cache`): an in-process layer on moka in front
//!   of any store, bounded by entries or bytes, TinyLFU or LRU, its TTL
//!   capped by the remote one.
//! - `entity-cache` (implies `serde` and `near-cache`): caching in
//!   production, `cache::EntityCache`: use cases keyed by entity, settings
//!   per use case from a provider asked on every call, an enable scope,
//!   entity-scoped invalidation and `flush_all`, fail-open.
//! - `cluster`: `cluster::Cluster`, a client of many servers (adds the
//!   `xxhash-rust` dependency for its placement hash).
//! - `metrics`: every call's metrics through the `metrics` facade, and
//!   `Client::metrics()`, a snapshot of the client's own counters; with
//!   `entity-cache`, the use cases' metrics too.
//! - `tracing`: a `tracing` span per call, events for retries, reconnects
//!   and GOAWAY; nothing at all when off.
//! - `unstable-internals`: the codec and reply-wait internals, and the
//!   parsers of the replica and entity-cache envelopes, for fuzzing and
//!   benchmarks; not covered by semantic versioning.
#![warn(missing_docs)]

mod address;
#[cfg(feature = "cache")]
pub mod cache;
mod client;
#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(feature = "unstable-internals")]
pub mod codec;
#[cfg(not(feature = "unstable-internals"))]
mod codec;
mod error;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod fuzzing;
mod pool;
#[cfg(feature = "unstable-internals")]
pub mod proto;
#[cfg(not(feature = "unstable-internals"))]
pub(crate) mod proto;
pub mod rules;
#[cfg(feature = "server")]
pub mod server;
#[cfg(any(feature = "cache", feature = "cluster"))]
mod setters;
mod store;
mod tls;
mod ttl;

pub use address::Address;
pub use client::config::{
    default_pool_size, ClientBuilder, PingMethod, DEFAULT_ADDRESS, DEFAULT_CONNECTION_WINDOW_BYTES,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_RETRIES, DEFAULT_PROBE_TIMEOUT, DEFAULT_RETRY_INITIAL_BACKOFF,
    DEFAULT_RETRY_MAX_BACKOFF, DEFAULT_STREAM_WINDOW_BYTES, DEFAULT_TIMEOUT,
};
pub use client::response::{Response, ResponseMetadata};
pub use client::retry::RetryThrottle;
pub use client::stats::Stats;
#[cfg(feature = "metrics")]
pub use client::telemetry::{ClientMetrics, DEFAULT_METRICS_PREFIX};
pub use client::{Client, ServingStatus, CACHE_SERVICE_NAME};
pub use error::Code;
pub use error::{Error, Result, StatusText, TlsFailure};
#[cfg(feature = "unstable-internals")]
pub use pool::ReplyWait;
pub use store::pipeline;
pub use store::{hash_tag, CacheStore, CasOutcome, ItemResult, TOUCH_ATTEMPTS};
pub use ttl::{Ttl, DEFAULT_TTL};

// The README's code blocks, compiled and run as doctests: the first page a
// user reads cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
