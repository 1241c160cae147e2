//! Helpers shared by integration tests. Each test file uses a different
//! subset, so items unused by one of them are expected.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod net;
pub mod pings;
pub mod rogue;
