//! Messages of the tiny-cache and health services, generated from `proto/`
//! by prost. Public only with `unstable-internals` (for the fuzz targets and
//! the wire tests): the client's API speaks its own types.

/// `package cache`: the cache service's messages.
pub mod cache {
    #![allow(missing_docs)]
    // The client sends some messages as hand-encoded views; only the
    // embedded server and the wire tests use every generated type.
    #![cfg_attr(not(feature = "server"), allow(dead_code))]
    include!(concat!(env!("OUT_DIR"), "/cache.rs"));
}
/// `package grpc.health.v1`: the standard health service's messages.
pub mod health {
    #![allow(missing_docs)]
    #![cfg_attr(not(feature = "server"), allow(dead_code))]
    include!(concat!(env!("OUT_DIR"), "/grpc.health.v1.rs"));
}
