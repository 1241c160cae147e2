//! The caching layer: a near-cache hit against a remote get, read-through
//! with single flight against a naive get-then-set under a stampede, and
//! refresh-ahead: reads of a hot key whose loader takes 200 ms, against
//! plain hits of the same key.
//!
//! Runs `tiny-cache serve --workers 1` as its own process. Server calls are
//! counted by a store wrapper around the client (every Get and Set sent).
//!
//! Run with: `cargo bench --bench cache --features cli,near-cache` (about
//! 30 seconds); `-- --quick` for a short pass.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tiny_cache_client::cache::{NearCache, ReadThrough};
use tiny_cache_client::CacheStore;
use tiny_cache_client::{Client, Result, Ttl};

mod common;
use common::median;

const STAMPEDE_THREADS: usize = 64;
const LOADER_TIME: Duration = Duration::from_millis(50);
const TTL: Duration = Duration::from_secs(300);

/// The client, counting the calls that reach the server.
struct Counted {
    client: Client,
    calls: AtomicU64,
}

impl CacheStore for Counted {
    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.client.get(key)
    }
    fn set_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.client.set_with_ttl(key, value, ttl)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.client.delete(key)
    }
}

/// Nanoseconds per call of `op`, run for about `seconds`.
fn per_call_ns(seconds: f64, mut op: impl FnMut()) -> f64 {
    for _ in 0..100 {
        op();
    }
    let budget = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < budget {
        for _ in 0..100 {
            op();
        }
        calls += 100;
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

struct Stampede {
    loader_runs: usize,
    wall: Duration,
    server_calls: u64,
}

/// `STAMPEDE_THREADS` threads released together on one cold key, each
/// running `read` once.
fn stampede(read: impl Fn(&AtomicUsize) + Send + Sync + 'static) -> (usize, Duration) {
    let read = Arc::new(read);
    let runs = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(STAMPEDE_THREADS + 1));
    let threads: Vec<_> = (0..STAMPEDE_THREADS)
        .map(|_| {
            let (read, runs, start) = (Arc::clone(&read), Arc::clone(&runs), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                read(&runs);
            })
        })
        .collect();
    start.wait();
    let started = Instant::now();
    for thread in threads {
        thread.join().expect("stampede thread");
    }
    (runs.load(Ordering::SeqCst), started.elapsed())
}

fn loader(runs: &AtomicUsize) -> &'static str {
    runs.fetch_add(1, Ordering::SeqCst);
    thread::sleep(LOADER_TIME);
    "rendered page"
}

fn single_flight(client: &Client, key: String) -> Stampede {
    let store = Arc::new(Counted {
        client: client.clone(),
        calls: AtomicU64::new(0),
    });
    let cache = ReadThrough::new(Arc::clone(&store));
    let (loader_runs, wall) = stampede(move |runs| {
        cache
            .get_with(&key, TTL, || loader(runs))
            .expect("get_with");
    });
    Stampede {
        loader_runs,
        wall,
        server_calls: store.calls.load(Ordering::Relaxed),
    }
}

fn naive(client: &Client, key: String) -> Stampede {
    let store = Arc::new(Counted {
        client: client.clone(),
        calls: AtomicU64::new(0),
    });
    let shared = Arc::clone(&store);
    let (loader_runs, wall) = stampede(move |runs| {
        if shared.get(&key).expect("get").is_none() {
            let value = loader(runs);
            shared
                .set_with_ttl(&key, value.as_bytes(), Ttl::After(TTL))
                .expect("set");
        }
    });
    Stampede {
        loader_runs,
        wall,
        server_calls: store.calls.load(Ordering::Relaxed),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, seconds) = if quick { (3, 0.5) } else { (5, 2.0) };
    let (_server, address) = common::start_embedded_server(false);
    let client = Client::builder(&address)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    client.set("hot", vec![b'v'; 100]).expect("set");

    let near = NearCache::builder(client.clone())
        .local_ttl(Duration::from_secs(600))
        .build();
    let layer = ReadThrough::new(NearCache::builder(client.clone()).build());
    let (mut remote, mut local, mut through) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        remote.push(per_call_ns(seconds, || {
            black_box(client.get(black_box("hot")).expect("get"));
        }));
        local.push(per_call_ns(seconds, || {
            black_box(near.get(black_box("hot")).expect("get"));
        }));
        through.push(per_call_ns(seconds, || {
            black_box(
                layer
                    .get_with(black_box("hot"), TTL, || "unused")
                    .expect("get_with"),
            );
        }));
    }
    let (remote, local, through) = (median(remote), median(local), median(through));
    println!("## near-cache hit vs remote get (1 thread, 100 B value, median of {rounds} rounds x {seconds} s)");
    println!("| path | ns/call | remote / path |");
    println!("| --- | ---: | ---: |");
    println!("| Client::get (remote) | {remote:.0} | 1.0 |");
    println!(
        "| NearCache::get (local hit) | {local:.0} | {:.0} |",
        remote / local
    );
    println!(
        "| ReadThrough<NearCache>::get_with (local hit) | {through:.0} | {:.0} |",
        remote / through
    );

    println!();
    println!(
        "## stampede: {STAMPEDE_THREADS} threads, one cold key, a {} ms loader ({rounds} rounds)",
        LOADER_TIME.as_millis()
    );
    println!("| path | round | loader runs | wall ms | server calls |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for round in 0..rounds {
        for (name, run) in [
            (
                "get_with (single flight)",
                single_flight as fn(&Client, String) -> Stampede,
            ),
            ("naive get, then set", naive),
        ] {
            let result = run(&client, format!("cold:{name}:{round}"));
            println!(
                "| {name} | {round} | {} | {:.1} | {} |",
                result.loader_runs,
                result.wall.as_secs_f64() * 1000.0,
                result.server_calls
            );
        }
    }
    refresh_ahead(&client, if quick { 3.0 } else { 6.0 });
}

/// Refresh-ahead's section: 8 threads read one hot key for `seconds`
/// through `get_with_refresh` (refresh after 1 s, a 200 ms loader), then
/// through plain `get_with` hits of a key that never needs a load; p50,
/// p99 and max of each, and how many refreshes ran.
fn refresh_ahead(client: &Client, seconds: f64) {
    const THREADS: usize = 8;
    let refreshing = ReadThrough::builder(client.clone())
        .refresh_after(Duration::from_secs(1))
        .build();
    let plain = ReadThrough::new(client.clone());
    let loads = Arc::new(AtomicUsize::new(0));
    let loader = |loads: &Arc<AtomicUsize>| {
        let loads = Arc::clone(loads);
        move || {
            loads.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(200));
            "fresh value"
        }
    };
    // Warm both keys before measuring: the first load is a miss.
    refreshing
        .get_with_refresh("refreshed", TTL, loader(&loads))
        .expect("warm");
    plain.get_with("plain", TTL, || "value").expect("warm");
    let measure = |read: &(dyn Fn() + Sync)| -> (u64, u64, u64, usize) {
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let mut all: Vec<u64> = thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    scope.spawn(|| {
                        let mut micros = Vec::new();
                        while Instant::now() < until {
                            let started = Instant::now();
                            read();
                            micros.push(started.elapsed().as_micros() as u64);
                        }
                        micros
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("reader"))
                .collect()
        });
        all.sort_unstable();
        let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
        (at(0.5), at(0.99), *all.last().unwrap_or(&0), all.len())
    };
    let refreshed = measure(&|| {
        black_box(
            refreshing
                .get_with_refresh("refreshed", TTL, loader(&loads))
                .expect("read"),
        );
    });
    let hits = measure(&|| {
        black_box(plain.get_with("plain", TTL, || "value").expect("read"));
    });
    println!();
    println!(
        "## refresh-ahead: {THREADS} threads, {seconds} s, refresh after 1 s, a 200 ms loader"
    );
    println!("| reads | count | p50 µs | p99 µs | max µs |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let (p50, p99, max, count) = refreshed;
    println!("| get_with_refresh, hot key being refreshed | {count} | {p50} | {p99} | {max} |");
    let (p50h, p99h, maxh, counth) = hits;
    println!("| get_with, plain hits | {counth} | {p50h} | {p99h} | {maxh} |");
    let stats = refreshing.local_stats();
    println!(
        "\nloader runs: {} (1 warm-up, the rest refreshes: {} stored, {} failed, {} skipped); \
         p99 ÷ plain hits' p99: {:.2} (goal ≤ 2)",
        loads.load(Ordering::Relaxed),
        stats.refreshes,
        stats.refresh_failures,
        stats.refreshes_skipped,
        p99 as f64 / p99h.max(1) as f64
    );
}
