//! A caching layer on top of [`Client`](crate::Client): read-through with
//! single flight, typed values, a near cache and fail-open (feature
//! `cache`; typed values need `serde`, the near cache `near-cache`).
//!
//! Users rarely want raw bytes: they want "the value of this key, or
//! compute it once, store it, and give it to everyone who asked meanwhile".
//! The pieces stack, each a [`CacheStore`] or standing on one:
//!
//! - [`CacheStore`]: get / set with a TTL / delete of bytes. Implemented by
//!   [`Client`](crate::Client), by `NearCache`, and by your own stores.
//! - [`ReadThrough`]: [`get_with`](ReadThrough::get_with) and
//!   [`try_get_with`](ReadThrough::try_get_with) (moka's names), with one
//!   loader per key across the process, per-caller wait deadlines, loader
//!   errors shared and not cached, panics that neither poison a key nor
//!   hang a waiter, and opt-in [fail-open](ReadThroughBuilder::fail_open).
//! - [`memoize`]: a function whose results live in the cache.
//! - `TypedCache` (feature `serde`): any serde type through a `Codec`
//!   (`Json`, `Postcard`, or yours), with a typed error for bytes that do
//!   not decode.
//! - `NearCache` (feature `near-cache`): an in-process moka layer in front
//!   of any store, invalidated by its own writes.
//! - [`CacheStats`]: per-layer hits, misses, evictions, expirations,
//!   loads, load errors and coalesced waits.
//! - `EntityCache` (feature `entity-cache`): caching in production. Use
//!   cases keyed by an entity (key type and id) and their arguments,
//!   settings per use case from a provider asked on every call (a TTL and
//!   a ramp per layer, or disabled), caching only inside an enable scope
//!   (`enable`, `enabled`), invalidation of every entry of one entity in
//!   one server call (`invalidate`, with a future buffer) or of everything
//!   (`flush_all`), metrics labelled by use case and key type (with the
//!   `metrics` feature) and a `UseCaseStats` snapshot, fail-open.
//!
//! Dependencies point one way: this module uses the client's public API
//! and nothing else of the crate uses this module.
//!
//! ```
//! # #[cfg(all(feature = "server", feature = "serde", feature = "near-cache"))] {
//! # let server = tiny_cache_client::server::Server::local()?;
//! # let address = server.address();
//! use std::time::Duration;
//! use tiny_cache_client::cache::{Json, NearCache, ReadThrough, TypedCache};
//! use tiny_cache_client::Client;
//!
//! let client = Client::new(&address)?;
//! let near = NearCache::builder(client).max_entries(10_000).build();
//! let layer = ReadThrough::builder(near).fail_open(true).build();
//! let cache = TypedCache::new(layer, Json);
//!
//! // Computed once, even with many threads asking at the same time.
//! let prices: Vec<u32> = cache.get_with("prices", Duration::from_secs(60), || vec![3, 5, 8])?;
//! assert_eq!(prices, [3, 5, 8]);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "serde")]
mod depth_limit;
#[cfg(feature = "entity-cache")]
mod entity;
mod error;
mod flight;
#[cfg(feature = "entity-cache")]
pub(crate) mod invalidation;
mod layer;
mod memo;
#[cfg(feature = "entity-cache")]
mod metrics;
#[cfg(feature = "near-cache")]
mod near;
#[cfg(feature = "entity-cache")]
mod scope;
mod stats;
#[cfg(feature = "serde")]
mod typed;
#[cfg(feature = "entity-cache")]
mod use_case;

#[cfg(feature = "entity-cache")]
pub use entity::{EntityCache, EntityCacheBuilder};
#[cfg(feature = "entity-cache")]
pub use metrics::{UseCaseStats, DEFAULT_CACHE_METRICS_PREFIX};
#[cfg(feature = "entity-cache")]
pub use scope::{enable, enabled, is_enabled, EnabledScope};
#[cfg(feature = "entity-cache")]
pub use use_case::{
    ConfigProvider, DisabledReason, LayerConfig, UseCase, UseCaseConfig, UseCaseInfo,
    DEFAULT_REMOTE_TTL,
};

pub use error::CacheError;
pub use layer::{ReadThrough, ReadThroughBuilder};
pub use memo::{memo_key, memoize, Memoized};
#[cfg(feature = "near-cache")]
pub use near::{
    NearCache, NearCacheBuilder, NearPolicy, DEFAULT_NEAR_MAX_ENTRIES, DEFAULT_NEAR_TTL,
    NEAR_ENTRY_OVERHEAD_BYTES,
};
pub use stats::CacheStats;
#[cfg(feature = "serde")]
pub use typed::{Codec, CodecError, Json, Postcard, TypedCache, TypedMemoized};
