//! The cost of caching in production: a read-through hit of an
//! `EntityCache` use case with metrics on and off and with invalidation
//! tracking on and off, as ratios against a plain `Client::get` of the same
//! value; the local-layer hit; and the config provider's own cost.
//!
//! One thread, an embedded server in-process (one runtime worker), a
//! 100-character value. Rounds interleave the configurations; figures are
//! medians over rounds, ratios taken per round.
//!
//! Run with: `cargo bench --bench production --features server,entity-cache,metrics`
//! (about 40 s; `-- --quick` for ~12 s).

use std::collections::HashMap;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusBuilder;
use tiny_cache_client::cache::{
    enable, ConfigProvider, EntityCache, LayerConfig, ReadThrough, UseCaseConfig, UseCaseInfo,
};
use tiny_cache_client::server::Server;
use tiny_cache_client::CacheStore;
use tiny_cache_client::{Client, Result, Ttl};

const TTL: Duration = Duration::from_secs(300);

/// Nanoseconds per call of `op`, run for about `seconds`.
fn per_call_ns(seconds: f64, mut op: impl FnMut()) -> f64 {
    for _ in 0..50 {
        op();
    }
    let budget = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < budget {
        for _ in 0..20 {
            op();
        }
        calls += 20;
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// What a real provider looks like: settings in a map behind a lock.
fn provider(local: bool) -> impl ConfigProvider + Clone + 'static {
    let mut settings = HashMap::new();
    let mut config = UseCaseConfig::remote(TTL);
    if local {
        config = config.with_local(LayerConfig::new(TTL));
    }
    settings.insert("Bench".to_owned(), config);
    let settings = Arc::new(RwLock::new(settings));
    move |info: &UseCaseInfo<'_>| settings.read().ok()?.get(info.name).copied()
}

type Op = Box<dyn FnMut()>;

/// A store with no network: isolates the layer's own CPU cost.
#[derive(Default)]
struct InMemory(Mutex<HashMap<String, Bytes>>);

impl CacheStore for InMemory {
    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.0.lock().expect("store").get(key).cloned())
    }
    fn set_with_ttl(&self, key: &str, value: &[u8], _: Ttl) -> Result<()> {
        self.0
            .lock()
            .expect("store")
            .insert(key.to_owned(), Bytes::copy_from_slice(value));
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.0.lock().expect("store").remove(key);
        Ok(())
    }
}

fn use_case_op<S: CacheStore + Clone + 'static>(
    store: &S,
    tracking: bool,
    metrics: bool,
    local: bool,
) -> Op {
    let cache = EntityCache::builder(store.clone())
        .invalidation_tracking(tracking)
        .metrics(metrics)
        .config(provider(local))
        .build()
        .expect("layer");
    let value = "v".repeat(100);
    let use_case = cache.use_case_named("Bench", "user_id", move |_: &u64, _: &()| {
        Ok::<_, Infallible>(value.clone())
    });
    let _scope = enable();
    use_case.get(&1, &()).expect("first get stores");
    Box::new(move || {
        let _scope = enable();
        black_box(use_case.get(&1, &()).expect("hit"));
    })
}

/// Interleaved rounds over `rows`; prints medians and per-round ratios
/// against the first row.
fn table(rows: &mut [(&str, Op)], rounds: usize, seconds: f64) {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for _ in 0..rounds {
        let mut this_round = Vec::new();
        for (_, op) in rows.iter_mut() {
            this_round.push(per_call_ns(seconds, op));
        }
        for (row, ns) in this_round.iter().enumerate() {
            times[row].push(*ns);
            ratios[row].push(ns / this_round[0]);
        }
    }
    println!("| path | ns/call | ÷ first row |");
    println!("| --- | ---: | ---: |");
    for (row, (name, _)) in rows.iter().enumerate() {
        println!(
            "| {name} | {:.0} | {:.2} |",
            median(times[row].clone()),
            median(ratios[row].clone())
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, seconds) = if quick { (3, 0.3) } else { (5, 0.6) };
    // A real recorder: metrics "on" pays for Prometheus's handles.
    PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder");
    let server = Server::builder().workers(1).start().expect("server");
    let client = Client::new(&server.address()).expect("client");
    client.set("plain", "v".repeat(100)).expect("set");

    let plain = {
        let client = client.clone();
        Box::new(move || {
            black_box(client.get("plain").expect("get"));
        }) as Op
    };
    let read_through = {
        let layer = ReadThrough::new(client.clone());
        layer
            .get_with("rt", TTL, || "v".repeat(100))
            .expect("store");
        Box::new(move || {
            black_box(layer.get_with("rt", TTL, || "never").expect("hit"));
        }) as Op
    };
    let mut rows: Vec<(&str, Op)> = vec![
        ("`Client::get` (plain remote get)", plain),
        (
            "`ReadThrough::get_with` remote hit (for reference)",
            read_through,
        ),
        (
            "use case, remote hit: tracking on, metrics on",
            use_case_op(&client, true, true, false),
        ),
        (
            "use case, remote hit: tracking on, metrics off",
            use_case_op(&client, true, false, false),
        ),
        (
            "use case, remote hit: tracking off, metrics on",
            use_case_op(&client, false, true, false),
        ),
        (
            "use case, remote hit: tracking off, metrics off",
            use_case_op(&client, false, false, false),
        ),
        (
            "use case, local hit: tracking on, metrics on",
            use_case_op(&client, true, true, true),
        ),
        (
            "use case, local hit: tracking on, metrics off",
            use_case_op(&client, true, false, true),
        ),
    ];
    println!("Against the embedded server (loopback):\n");
    table(&mut rows, rounds, seconds);

    let memory = Arc::new(InMemory::default());
    memory
        .set_with_ttl("plain", "v".repeat(100).as_bytes(), Ttl::Never)
        .expect("set");
    let plain_memory = {
        let memory = Arc::clone(&memory);
        Box::new(move || {
            black_box(memory.get("plain").expect("get"));
        }) as Op
    };
    let mut rows: Vec<(&str, Op)> = vec![
        ("in-memory store `get`", plain_memory),
        (
            "use case, store hit: tracking on, metrics on",
            use_case_op(&memory, true, true, false),
        ),
        (
            "use case, store hit: tracking on, metrics off",
            use_case_op(&memory, true, false, false),
        ),
        (
            "use case, store hit: tracking off, metrics on",
            use_case_op(&memory, false, true, false),
        ),
        (
            "use case, store hit: tracking off, metrics off",
            use_case_op(&memory, false, false, false),
        ),
    ];
    println!("\nOver an in-memory store (the layer's own CPU cost):\n");
    table(&mut rows, rounds, seconds);

    let config = provider(false);
    let info = UseCaseInfo {
        name: "Bench",
        key_type: "user_id",
    };
    let boxed: Arc<dyn ConfigProvider> = Arc::new(config);
    let provider_ns = median(
        (0..rounds)
            .map(|_| {
                per_call_ns(seconds / 2.0, || {
                    black_box(boxed.config(black_box(&info)));
                })
            })
            .collect(),
    );
    println!("\nconfig provider call (RwLock<HashMap> behind Arc<dyn ConfigProvider>): {provider_ns:.0} ns");
}
