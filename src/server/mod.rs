//! The embedded tiny-cache server (being written).

pub mod service;
pub mod store;
