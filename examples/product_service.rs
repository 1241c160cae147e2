//! A thread-per-request HTTP/1.1 JSON service with the cache in front of a
//! slow database: `GET /product/<id>` reads a product through a
//! `TypedCache` over read-through with single flight over a `NearCache`
//! over the `Client`; `GET /metrics` serves the process's metrics for
//! Prometheus (the client's calls, the cache layers' hits and misses, and
//! the database queries).
//!
//! Run with:
//! `cargo run --release --example product_service --features server,serde,near-cache,metrics`
//! then `curl localhost:8080/product/42` and `curl localhost:8080/metrics`.
//!
//! Options:
//! - `--server ADDR`: a tiny-cache server (default: an embedded one,
//!   started in-process, empty);
//! - `--listen ADDR`: where to serve HTTP (default `127.0.0.1:8080`; port 0
//!   picks a free one);
//! - `--cache none|remote|near`: no cache at all, the remote cache only, or
//!   the near cache in front of the remote one (default `near`);
//! - `--threads N`: the request threads (default 32).
//!
//! Threads: tiny_http reads each connection on a thread of its own and
//! queues the requests it parses; the `--threads` request threads take them
//! off that queue, each running one request from start to finish with
//! blocking calls (the cache, and on a miss the database).
//!
//! The first line on stdout is the address it listens on (`127.0.0.1:8080`),
//! for scripts and tests; it serves until killed.
//! `tests/product_service.rs` checks it; `benches/product_service.sh` loads it
//! with h2load.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use metrics::Counter;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use tiny_cache_client::cache::{CacheError, CacheStats, Json, NearCache, ReadThrough, TypedCache};
use tiny_cache_client::{CacheStore, Client};
use tiny_http::{Header, Method, Request, Response};

/// How long a product stays in the remote cache.
const PRODUCT_TTL: Duration = Duration::from_secs(300);
/// How long a product stays in this process without asking the server:
/// short, because another process's update is seen only after it.
const NEAR_TTL: Duration = Duration::from_secs(5);
/// Products kept in this process: the hot part of a Zipf catalogue.
const NEAR_MAX_ENTRIES: u64 = 10_000;
/// What one database query costs.
const DATABASE_LATENCY: Duration = Duration::from_millis(5);
/// How often the Prometheus recorder drains its histograms: with
/// `install_recorder` (no exporter task of its own) that is ours to do.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u32,
    name: String,
    price_cents: u64,
}

/// The slow thing the cache is in front of: every query sleeps, and counts.
#[derive(Default)]
struct Database {
    queries: AtomicU64,
}

impl Database {
    fn product(&self, id: u32) -> Product {
        self.queries.fetch_add(1, Ordering::Relaxed);
        thread::sleep(DATABASE_LATENCY);
        Product {
            id,
            name: format!("product {id}"),
            price_cents: 100 + u64::from(id % 100) * 25,
        }
    }
}

/// Everything a request thread needs, built once and shared by all of them.
struct Service {
    /// `None` with `--cache none`: every read goes to the database.
    products: Option<TypedCache<Box<dyn CacheStore>, Json>>,
    /// The near cache's own handle, for its statistics (`--cache near`).
    near: Option<Arc<NearCache<Client>>>,
    database: Database,
    metrics: PrometheusHandle,
    counters: Counters,
}

// The handler: what the README shows as "In a thread-per-request server".

impl Service {
    /// The product, from the cache; on a miss one thread per id asks the
    /// database while the others wanting it wait for its answer.
    fn product(&self, id: u32) -> Result<Product, CacheError> {
        let load = || self.database.product(id);
        match &self.products {
            Some(products) => products.get_with(&format!("product:{id}"), PRODUCT_TTL, load),
            None => Ok(load()),
        }
    }
}

/// One request thread: takes the next request off the server's queue and
/// answers it, until the server shuts down.
fn serve(http: &tiny_http::Server, service: &Service) {
    while let Ok(request) = http.recv() {
        let response = answer(service, &request);
        // A client that went away before its answer is not our failure.
        let _ = request.respond(response);
    }
}

fn answer(service: &Service, request: &Request) -> Response<Cursor<Vec<u8>>> {
    if *request.method() != Method::Get {
        return text(405, "only GET");
    }
    let url = request.url();
    match url.strip_prefix("/product/").map(str::parse::<u32>) {
        Some(Ok(id)) => match service.product(id) {
            Ok(product) => json(&product),
            Err(e) => text(503, &format!("product {id} is unavailable: {e}")),
        },
        Some(Err(_)) => text(400, "a product id is a number: /product/42"),
        None if url == "/metrics" => text(200, &service.render_metrics()),
        None => text(404, "not found: try /product/42 or /metrics"),
    }
}

// The rest: responses, metrics, options, start-up.

fn json(product: &Product) -> Response<Cursor<Vec<u8>>> {
    match serde_json::to_vec(product) {
        Ok(body) => Response::from_data(body).with_header(header("application/json")),
        Err(e) => text(500, &format!("cannot encode the product: {e}")),
    }
}

fn text(status: u16, body: &str) -> Response<Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header("text/plain; charset=utf-8"))
}

fn header(content_type: &'static str) -> Header {
    // Only ever called with the constant ASCII values above.
    Header::from_bytes("Content-Type", content_type).expect("an ASCII header")
}

/// The counters this example adds to the client's own metrics. Registered
/// once and kept; set from the sources of truth (the database's count, the
/// layers' statistics) each time Prometheus scrapes.
struct Counters {
    database_queries: Counter,
    /// The read-through layer's (absent with `--cache none`).
    read_through: Option<LayerCounters>,
    /// The near cache's (only with `--cache near`).
    near: Option<LayerCounters>,
}

/// One cache layer's statistics, labelled with the layer's name.
struct LayerCounters {
    hits: Counter,
    misses: Counter,
    coalesced_waits: Counter,
}

impl Counters {
    fn register(cache: CacheMode) -> Self {
        use metrics::{counter, describe_counter, Unit};
        describe_counter!(
            "product_service_database_queries_total",
            Unit::Count,
            "Queries that reached the (simulated, 5 ms) database."
        );
        describe_counter!(
            "product_service_cache_hits_total",
            Unit::Count,
            "Reads a cache layer answered, by layer (read_through, near)."
        );
        describe_counter!(
            "product_service_cache_misses_total",
            Unit::Count,
            "Reads a cache layer passed on, by layer."
        );
        describe_counter!(
            "product_service_cache_coalesced_waits_total",
            Unit::Count,
            "Reads that waited for another thread's load of the same key, by layer."
        );
        let layer = |name: &'static str| LayerCounters {
            hits: counter!("product_service_cache_hits_total", "layer" => name),
            misses: counter!("product_service_cache_misses_total", "layer" => name),
            coalesced_waits: counter!("product_service_cache_coalesced_waits_total", "layer" => name),
        };
        Counters {
            database_queries: counter!("product_service_database_queries_total"),
            read_through: (cache != CacheMode::None).then(|| layer("read_through")),
            near: (cache == CacheMode::Near).then(|| layer("near")),
        }
    }
}

impl LayerCounters {
    fn publish(&self, stats: &CacheStats) {
        self.hits.absolute(stats.hits);
        self.misses.absolute(stats.misses);
        self.coalesced_waits.absolute(stats.coalesced_waits);
    }
}

impl Service {
    fn render_metrics(&self) -> String {
        let counters = &self.counters;
        let queries = self.database.queries.load(Ordering::Relaxed);
        counters.database_queries.absolute(queries);
        if let (Some(products), Some(layer)) = (&self.products, &counters.read_through) {
            layer.publish(&products.local_stats());
        }
        if let (Some(near), Some(layer)) = (&self.near, &counters.near) {
            layer.publish(&near.local_stats());
        }
        self.metrics.render()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CacheMode {
    None,
    Remote,
    Near,
}

struct Options {
    server: Option<String>,
    listen: String,
    cache: CacheMode,
    threads: usize,
}

const USAGE: &str = "usage: product_service [--server ADDR] [--listen ADDR] \
                     [--cache none|remote|near] [--threads N]";

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            server: None,
            listen: "127.0.0.1:8080".into(),
            cache: CacheMode::Near,
            threads: 32,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
            match flag.as_str() {
                "--server" => options.server = Some(value()?),
                "--listen" => options.listen = value()?,
                "--cache" => {
                    options.cache = match value()?.as_str() {
                        "none" => CacheMode::None,
                        "remote" => CacheMode::Remote,
                        "near" => CacheMode::Near,
                        other => return Err(format!("--cache {other}: none, remote or near")),
                    }
                }
                "--threads" => {
                    options.threads = match value()?.parse() {
                        Ok(n) if n > 0 => n,
                        _ => return Err("--threads: a number above 0".into()),
                    }
                }
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
        }
        Ok(options)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse(std::env::args().skip(1))?;

    // The recorder first: the client registers its metrics when built.
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let upkeep = metrics.clone();
    thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            thread::sleep(METRICS_UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        })?;
    let counters = Counters::register(options.cache);

    // An embedded server unless told of one; kept alive until main ends.
    let (address, _embedded) = match options.server.clone() {
        Some(address) => (address, None),
        None => {
            let server = tiny_cache_client::server::Server::local()?;
            (server.address(), Some(server))
        }
    };
    let client = Client::builder(&address)
        .timeout(Duration::from_secs(2))
        .namespace("products")
        .build()?;

    // One cache for the process, shared by every request thread: single
    // flight works among the callers of one layer.
    let (store, near): (Option<Box<dyn CacheStore>>, _) = match options.cache {
        CacheMode::None => (None, None),
        CacheMode::Remote => (Some(Box::new(client)), None),
        CacheMode::Near => {
            let near = Arc::new(
                NearCache::builder(client)
                    .max_entries(NEAR_MAX_ENTRIES)
                    .local_ttl(NEAR_TTL)
                    .build(),
            );
            (Some(Box::new(Arc::clone(&near))), Some(near))
        }
    };
    // Fail-open: with the cache server down, products come from the database.
    let products = store
        .map(|store| TypedCache::new(ReadThrough::builder(store).fail_open(true).build(), Json));
    let service = Arc::new(Service {
        products,
        near,
        database: Database::default(),
        metrics,
        counters,
    });

    let http = Arc::new(
        tiny_http::Server::http(&options.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?,
    );
    let bound = http
        .server_addr()
        .to_ip()
        .ok_or("listening on something that is not an IP address")?;
    println!("{bound}");
    eprintln!(
        "product_service: http://{bound}/product/<id>, cache {:?} at {address}, {} request threads",
        options.cache, options.threads
    );

    let workers = (0..options.threads)
        .map(|i| {
            let (http, service) = (Arc::clone(&http), Arc::clone(&service));
            thread::Builder::new()
                .name(format!("request-{i}"))
                .spawn(move || serve(&http, &service))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for worker in workers {
        worker.join().map_err(|_| "a request thread panicked")?;
    }
    Ok(())
}
