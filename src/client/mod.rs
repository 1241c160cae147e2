//! The blocking client: what a call is before it reaches the pool.
//!
//! [`Client`] (in `handle`) validates a call, hands it to a pool worker and
//! waits for the reply within its deadline; `config` builds it, `requests`
//! encodes its messages without copying, `retry` decides whether a failed
//! call goes again, `response` captures the server's headers for a caller
//! who asks, `stats` is the server's answer to `Stats`, and `telemetry`
//! records every call (feature `metrics`). Arrows point down: this room
//! uses the pool and the codec, never the layers above it.

mod as_store;
pub(crate) mod config;
pub(crate) mod flight;
mod from_wire;
mod handle;
pub(crate) mod requests;
pub(crate) mod response;
pub(crate) mod retry;
mod serving;
pub(crate) mod stats;
pub(crate) mod telemetry;

#[cfg(feature = "cluster")]
pub(crate) use handle::text_value;
pub use handle::{Client, ServingStatus, CACHE_SERVICE_NAME};
