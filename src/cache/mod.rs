//! A caching layer on top of [`Client`](crate::Client): read-through with
//! single flight, typed values, a near cache and fail-open (feature
//! `cache`; typed values need `serde`, the near cache `near-cache`).
//!
//! Users rarely want raw bytes: they want "the value of this key, or
//! compute it once, store it, and give it to everyone who asked meanwhile".
//! The pieces stack, each a [`CacheStore`](crate::CacheStore) or standing
//! on one, in three tiers ([`read_through`], `near_cache`, `production`;
//! every item is also here at `cache::`):
//!
//! - [`CacheStore`](crate::CacheStore): the crate's store trait, implemented
//!   by [`Client`](crate::Client), `Cluster`, `NearCache`, `ReadThrough`
//!   and your own stores.
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
//! Dependencies point one way: this module uses the store trait and the
//! client's public API, and nothing else of the crate uses this module.
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
pub mod fresh;
#[cfg(feature = "entity-cache")]
pub(crate) mod invalidation;
mod layer;
pub mod lease;
mod memo;
#[cfg(feature = "entity-cache")]
mod metrics;
#[cfg(feature = "near-cache")]
mod near;
mod refresh;
#[cfg(feature = "entity-cache")]
mod scope;
mod stats;
#[cfg(feature = "serde")]
mod typed;
#[cfg(feature = "entity-cache")]
mod use_case;

/// Read-through with single flight, typed values and memoized functions:
/// the first tier, over any [`CacheStore`](crate::CacheStore).
pub mod read_through {
    pub use super::error::CacheError;
    pub use super::layer::{ReadThrough, ReadThroughBuilder};
    pub use super::memo::{memo_key, memoize, Memoized};
    pub use super::stats::CacheStats;
    #[cfg(feature = "serde")]
    pub use super::typed::{Codec, CodecError, Json, Postcard, TypedCache, TypedMemoized};
}

/// The near cache (feature `near-cache`): an in-process layer in front of
/// any store, itself a store.
#[cfg(feature = "near-cache")]
pub mod near_cache {
    pub use super::near::{
        EvictionCause, NearCache, NearCacheBuilder, NearPolicy, DEFAULT_NEAR_MAX_ENTRIES,
        DEFAULT_NEAR_TTL, NEAR_ENTRY_OVERHEAD_BYTES,
    };
}

/// Caching in production (feature `entity-cache`): use cases keyed by
/// entity, settings from a provider, the enable scope, entity-scoped
/// invalidation, metrics.
#[cfg(feature = "entity-cache")]
pub mod production {
    pub use super::entity::{EntityCache, EntityCacheBuilder, DEFAULT_GLOBAL_GENERATION_MAX_AGE};
    pub use super::metrics::{UseCaseStats, DEFAULT_CACHE_METRICS_PREFIX};
    pub use super::scope::{enable, enabled, is_enabled, EnabledScope};
    pub use super::use_case::{
        ConfigProvider, DisabledReason, LayerConfig, UseCase, UseCaseConfig, UseCaseInfo,
        DEFAULT_REMOTE_TTL,
    };
}

// Every item is also at `cache::` itself, listed as a re-export so that
// the module's page shows the three tiers above rather than one flat list.
#[cfg(feature = "near-cache")]
#[doc(no_inline)]
pub use near_cache::*;
#[cfg(feature = "entity-cache")]
#[doc(no_inline)]
pub use production::*;
#[doc(no_inline)]
pub use read_through::*;
