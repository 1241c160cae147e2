//! What a client costs in memory: heap allocations per steady-state call
//! (counted by a wrapping global allocator) and resident memory of a client
//! with its default pool, idle and under load.
//!
//! The server runs as its own process (`tiny-cache serve --workers 1`), so
//! every allocation counted here is the client's: the caller's thread and
//! the pool's worker thread together.
//!
//! Run with: `cargo bench --bench memory --features cli`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::Client;

mod common;

/// Counts every allocation (and reallocation) made through it.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Resident and peak resident memory of this process, in KiB.
fn resident_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Allocations and bytes per call over `calls` calls of `op`.
fn per_call(calls: u64, mut op: impl FnMut()) -> (f64, f64) {
    let (a0, b0) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..calls {
        op();
    }
    let (a1, b1) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    );
    (
        (a1 - a0) as f64 / calls as f64,
        (b1 - b0) as f64 / calls as f64,
    )
}

fn main() {
    let (server, address) = common::start_embedded_server(false);

    let (before_rss, _) = resident_kib();
    let client = Client::new(&address).expect("client");
    client.set("k", vec![7u8; 100]).expect("set");
    std::thread::sleep(Duration::from_millis(100));
    let (idle_rss, _) = resident_kib();

    // Warm up: connection buffers, HPACK tables, the runtime's slabs.
    for _ in 0..5_000 {
        let _ = client.get("k");
    }
    let calls = 20_000;
    let (get_allocs, get_bytes) = per_call(calls, || {
        client.get("k").expect("get");
    });
    let value = vec![7u8; 100];
    let (set_allocs, set_bytes) = per_call(calls, || {
        client.set("k", &value).expect("set");
    });

    // A cluster's own cost on top of its clients: one server (R = 1), and
    // two servers with every key on both (R = 2: envelopes, two parts per
    // write, a share of the deadline per read round).
    let (second_server, second) = common::start_embedded_server(false);
    let cluster_rows: Vec<(String, f64, f64)> = [
        (vec![address.clone()], 1),
        (vec![address.clone(), second], 2),
    ]
    .into_iter()
    .flat_map(|(servers, replicas)| {
        let cluster = servers
            .iter()
            .fold(Cluster::builder(), |builder, server| builder.server(server))
            .replicas(replicas)
            .build()
            .expect("cluster");
        cluster.set("k", &value).expect("set");
        for _ in 0..5_000 {
            let _ = cluster.get("k");
        }
        let (get_allocs, get_bytes) = per_call(calls, || {
            cluster.get("k").expect("get");
        });
        let (set_allocs, set_bytes) = per_call(calls, || {
            cluster.set("k", &value).expect("set");
        });
        let label = if replicas == 1 {
            "one server, R = 1"
        } else {
            "two servers, R = 2"
        };
        [
            (format!("cluster get, {label}"), get_allocs, get_bytes),
            (format!("cluster set, {label}"), set_allocs, set_bytes),
        ]
    })
    .collect();
    drop(second_server);

    // Under load from 64 threads, then the peak.
    std::thread::scope(|scope| {
        for _ in 0..64 {
            scope.spawn(|| {
                for _ in 0..2_000 {
                    let _ = client.get("k");
                }
            });
        }
    });
    let (loaded_rss, peak_rss) = resident_kib();
    drop(client);
    drop(server);

    println!("heap allocations per call (caller + worker), 100 B values, one thread:");
    println!("| call | allocations | bytes allocated |");
    println!("| --- | ---: | ---: |");
    println!("| get | {get_allocs:.1} | {get_bytes:.0} |");
    println!("| set | {set_allocs:.1} | {set_bytes:.0} |");
    for (call, allocs, bytes) in &cluster_rows {
        println!("| {call} | {allocs:.1} | {bytes:.0} |");
    }
    println!();
    println!("resident memory of this process (KiB):");
    println!("| before the client | client idle | after 64 threads × 2000 gets | peak |");
    println!("| ---: | ---: | ---: | ---: |");
    println!("| {before_rss} | {idle_rss} | {loaded_rss} | {peak_rss} |");
    println!(
        "client idle ≈ {} KiB; under load ≈ {} KiB more (64 caller threads' stacks included)",
        idle_rss.saturating_sub(before_rss),
        loaded_rss.saturating_sub(idle_rss)
    );
}
