//! tiny-cache-client (work in progress)
#![warn(missing_docs)]

pub mod codec;
#[cfg(feature = "server")]
pub mod server;

/// Messages of the tiny-cache and health services, generated from `proto/`.
pub mod proto {
    /// `package cache`.
    pub mod cache {
        include!(concat!(env!("OUT_DIR"), "/cache.rs"));
    }
    /// `package grpc.health.v1`.
    pub mod health {
        include!(concat!(env!("OUT_DIR"), "/grpc.health.v1.rs"));
    }
}
