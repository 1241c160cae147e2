//! Helpers shared by integration tests. Each test file uses a different
//! subset, so items unused by one of them are expected.
#![allow(dead_code)]

// The chaos suite's layers, traffic and checker, also run by the soak
// benchmark (`benches/soak.rs`).
#[cfg(all(feature = "cluster", feature = "entity-cache"))]
pub mod chaos_workload;
// `tiny-cache bench` as a process (the binary needs the `cli` feature).
#[cfg(feature = "cli")]
pub mod bench_run;
pub mod fault_proxy;
pub mod load;
pub mod net;
pub mod pings;
pub mod rogue;
