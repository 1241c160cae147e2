//! `tonic-bench`: the closed-loop workload of `tiny-cache bench`, driven by
//! tonic's generated client, the way an application would use it.
//!
//! - `--mode async`: one `Channel` (one HTTP/2 connection), `--threads`
//!   tasks on one tokio runtime, each awaiting its call before issuing the
//!   next. The runtime is what `#[tokio::main]` gives: multi-thread, one
//!   worker per core (2 on the bench machines).
//! - `--mode async-current`: the same tasks on a current-thread runtime
//!   (`Builder::new_current_thread`), driven by the main thread alone:
//!   tonic's best configuration on a 2-core machine, where the runtime's
//!   own thread never hands work to another core.
//! - `--mode blocking`: tonic wrapped for blocking use, the usual way: a
//!   shared runtime (again the default multi-thread one) owns the `Channel`,
//!   and `--threads` OS threads each call
//!   `handle.block_on(client.clone().get(..))` per operation.
//!
//! Same workload as ours: every key written before anything is measured
//! (so gets hit), `--get-ratio` gets and the rest sets of `--value-size`
//! bytes over `--keys` keys, a `--warmup` that is not counted, then
//! `--duration` seconds measured. Only calls that end inside the measured
//! window count. With `--json` the last stdout line is one JSON object with
//! the same fields as `tiny-cache bench --json` (plus `mode`); CPU and
//! context switches are this process's over the measured window.
//!
//! Usage: `tonic-bench --server 127.0.0.1:PORT [--mode async|async-current|blocking]
//! [--threads 16] [--duration 10] [--warmup 0.5] [--value-size 100]
//! [--get-ratio 0.9] [--keys 1000] [--json]`

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use prost::bytes::Bytes;
use tonic::transport::{Channel, Endpoint};
use tonic_peer::proto::cache_service_client::CacheServiceClient;
use tonic_peer::proto::{CacheItem, CacheKey, CacheStatus, MultiCacheItemRequest};
use tonic_peer::{fail, Options, ProcessUsage};

/// Largest latency the histograms hold, in µs (one hour), as ours.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// Bytes of values per `MultiSet` while pre-populating, as ours.
const PREPOPULATE_BATCH_BYTES: usize = 1024 * 1024;

/// Most items per pre-populating `MultiSet`, as ours.
const PREPOPULATE_BATCH_ITEMS: usize = 500;

/// TTL of every set, in seconds: tiny-cache-client's default TTL, so both
/// clients send the same request bytes.
const SET_TTL_SECS: i32 = 3600;

const PHASE_WARMUP: u8 = 0;
const PHASE_MEASURE: u8 = 1;
const PHASE_STOP: u8 = 2;

type Client = CacheServiceClient<Channel>;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Async,
    AsyncCurrent,
    Blocking,
}

/// What every caller shares.
struct Shared {
    keys: Vec<String>,
    value: Bytes,
    get_ratio: f64,
    phase: AtomicU8,
}

/// What one caller (task or thread) measured.
struct CallerResult {
    latencies_micros: Histogram<u64>,
    errors: u64,
    misses: u64,
    first_error: Option<String>,
}

impl CallerResult {
    fn new() -> CallerResult {
        CallerResult {
            latencies_micros: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
                .unwrap_or_else(|e| fail(&format!("histogram: {e:?}"))),
            errors: 0,
            misses: 0,
            first_error: None,
        }
    }

    /// Records one call that ended at `phase`; only measured ones count.
    fn record(&mut self, shared: &Shared, started: Instant, outcome: Result<bool, tonic::Status>) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if shared.phase.load(Ordering::Acquire) != PHASE_MEASURE {
            return;
        }
        match outcome {
            Ok(found) => {
                self.latencies_micros
                    .saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
                self.misses += u64::from(!found);
            }
            Err(status) => {
                self.errors += 1;
                self.first_error
                    .get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
            }
        }
    }
}

/// One operation's request: a get of a random key, or a set of it.
enum Op {
    Get(CacheKey),
    Set(CacheItem),
}

fn next_op(shared: &Shared, rng: &mut fastrand::Rng) -> Op {
    let key = shared.keys[rng.usize(..shared.keys.len())].clone();
    if rng.f64() < shared.get_ratio {
        Op::Get(CacheKey { key })
    } else {
        Op::Set(CacheItem {
            key,
            value: shared.value.clone(),
            ttl: SET_TTL_SECS,
        })
    }
}

/// Sends one operation; `Ok(found)` for a get, `Ok(true)` for a set.
async fn call(client: &mut Client, op: Op) -> Result<bool, tonic::Status> {
    match op {
        Op::Get(key) => client.get(key).await.map(|r| r.into_inner().found),
        Op::Set(item) => {
            let status = client.set(item).await?.into_inner().status;
            if status == CacheStatus::Ok as i32 {
                Ok(true)
            } else {
                Err(tonic::Status::internal(format!("set answered {status}")))
            }
        }
    }
}

/// A task of `--mode async`.
async fn async_caller(mut client: Client, shared: Arc<Shared>, seed: u64) -> CallerResult {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut result = CallerResult::new();
    while shared.phase.load(Ordering::Acquire) != PHASE_STOP {
        let op = next_op(&shared, &mut rng);
        let started = Instant::now();
        let outcome = call(&mut client, op).await;
        result.record(&shared, started, outcome);
    }
    result
}

/// A thread of `--mode blocking`: the usual blocking wrapper around tonic,
/// `handle.block_on(client.clone().get(..))` per call.
fn blocking_caller(
    handle: &tokio::runtime::Handle,
    client: &Client,
    shared: &Shared,
    seed: u64,
) -> CallerResult {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut result = CallerResult::new();
    while shared.phase.load(Ordering::Acquire) != PHASE_STOP {
        let op = next_op(shared, &mut rng);
        let started = Instant::now();
        let outcome = handle.block_on(async {
            let mut client = client.clone();
            call(&mut client, op).await
        });
        result.record(shared, started, outcome);
    }
    result
}

/// Writes every key once, in batches, failing on any refusal.
async fn prepopulate(client: &mut Client, shared: &Shared) -> Result<(), String> {
    let batch =
        (PREPOPULATE_BATCH_BYTES / (shared.value.len() + 64)).clamp(1, PREPOPULATE_BATCH_ITEMS);
    for chunk in shared.keys.chunks(batch) {
        let items = chunk
            .iter()
            .map(|key| CacheItem {
                key: key.clone(),
                value: shared.value.clone(),
                ttl: SET_TTL_SECS,
            })
            .collect();
        let reply = client
            .multi_set(MultiCacheItemRequest { items })
            .await
            .map_err(|s| format!("cannot write the benchmark's keys: {s}"))?;
        if let Some(bad) = reply
            .into_inner()
            .items
            .iter()
            .find(|r| r.status != CacheStatus::Ok as i32)
        {
            return Err(format!("cannot write key {:?}: {}", bad.key, bad.error));
        }
    }
    Ok(())
}

fn seconds(options: &Options, name: &str, default: f64) -> Duration {
    let value: f64 = options.get(name, default);
    if !(0.0..=86_400.0).contains(&value) {
        fail(&format!("--{name} must be 0 to 86400 seconds"));
    }
    Duration::from_secs_f64(value)
}

fn main() {
    let options = Options::from_args(&["json"]);
    let server = options
        .text("server")
        .unwrap_or_else(|| fail("--server ADDR is required"))
        .to_owned();
    let url = if server.contains("://") {
        server.replacen("grpc://", "http://", 1)
    } else {
        format!("http://{server}")
    };
    let mode = match options.text("mode").unwrap_or("async") {
        "async" => Mode::Async,
        "async-current" => Mode::AsyncCurrent,
        "blocking" => Mode::Blocking,
        other => fail(&format!(
            "--mode is async, async-current or blocking, not {other:?}"
        )),
    };
    let threads: usize = options.get("threads", 16);
    let keys: usize = options.get("keys", 1000);
    let value_size: usize = options.get("value-size", 100);
    let get_ratio: f64 = options.get("get-ratio", 0.9);
    let duration = seconds(&options, "duration", 10.0);
    let warmup = seconds(&options, "warmup", 0.5);
    if threads == 0 || keys == 0 || !(0.0..=1.0).contains(&get_ratio) || duration.is_zero() {
        fail("--threads, --keys and --duration must be positive, --get-ratio 0 to 1");
    }

    // What `#[tokio::main]` and `Runtime::new()` build: multi-thread, one
    // worker per core; or, for async-current, one thread that drives all.
    let mut builder = if mode == Mode::AsyncCurrent {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start the runtime: {e}")));
    let shared = Arc::new(Shared {
        keys: (0..keys).map(|i| format!("bench:{i}")).collect(),
        value: (0..value_size)
            .map(|_| fastrand::alphanumeric() as u8)
            .collect::<Vec<u8>>()
            .into(),
        get_ratio,
        phase: AtomicU8::new(PHASE_WARMUP),
    });
    let client = runtime.block_on(async {
        let endpoint = Endpoint::from_shared(url.clone())
            .unwrap_or_else(|e| fail(&format!("bad --server {server:?}: {e}")));
        let channel = endpoint
            .connect()
            .await
            .unwrap_or_else(|e| fail(&format!("cannot connect to {url}: {e}")));
        let mut client = CacheServiceClient::new(channel);
        if let Err(e) = prepopulate(&mut client, &shared).await {
            fail(&e);
        }
        client
    });

    let measured_window = move |shared: &Shared| -> (Duration, Option<ProcessUsage>) {
        std::thread::sleep(warmup);
        let before = ProcessUsage::now();
        let started = Instant::now();
        shared.phase.store(PHASE_MEASURE, Ordering::Release);
        std::thread::sleep(duration);
        shared.phase.store(PHASE_STOP, Ordering::Release);
        let measured = started.elapsed();
        let usage = ProcessUsage::now()
            .zip(before)
            .map(|(after, before)| after.since(&before));
        (measured, usage)
    };

    let (results, measured, usage) = match mode {
        Mode::Async | Mode::AsyncCurrent => {
            // A current-thread runtime runs tasks only inside `block_on`,
            // so the main thread waits there (driving them, for that
            // runtime) while another thread times the window.
            let tasks: Vec<_> = (0..threads)
                .map(|i| {
                    runtime.spawn(async_caller(
                        client.clone(),
                        shared.clone(),
                        fastrand::u64(..) ^ i as u64,
                    ))
                })
                .collect();
            let timer = {
                let shared = shared.clone();
                std::thread::spawn(move || measured_window(&shared))
            };
            let results = runtime.block_on(async {
                let mut results = Vec::with_capacity(tasks.len());
                for task in tasks {
                    results.push(task.await.unwrap_or_else(|e| fail(&format!("task: {e}"))));
                }
                results
            });
            let (measured, usage) = timer
                .join()
                .unwrap_or_else(|_| fail("the timing thread panicked"));
            (results, measured, usage)
        }
        Mode::Blocking => std::thread::scope(|scope| {
            let handle = runtime.handle();
            let callers: Vec<_> = (0..threads)
                .map(|i| {
                    let (client, shared) = (&client, &*shared);
                    std::thread::Builder::new()
                        .name(format!("bench-{i}"))
                        .spawn_scoped(scope, move || {
                            blocking_caller(handle, client, shared, fastrand::u64(..) ^ i as u64)
                        })
                        .unwrap_or_else(|e| fail(&format!("cannot start a thread: {e}")))
                })
                .collect();
            let (measured, usage) = measured_window(&shared);
            let results = callers
                .into_iter()
                .map(|c| c.join().unwrap_or_else(|_| fail("a caller panicked")))
                .collect::<Vec<_>>();
            (results, measured, usage)
        }),
    };

    let mut latencies = CallerResult::new();
    for result in results {
        latencies
            .latencies_micros
            .add(&result.latencies_micros)
            .unwrap_or_else(|e| fail(&format!("histogram merge: {e:?}")));
        latencies.errors += result.errors;
        latencies.misses += result.misses;
        latencies.first_error = latencies.first_error.or(result.first_error);
    }
    let histogram = &latencies.latencies_micros;
    let ops = histogram.len();
    let calls = ops + latencies.errors;
    let quantile = |q: f64| {
        if histogram.is_empty() {
            0
        } else {
            histogram.value_at_quantile(q)
        }
    };
    let mean = if histogram.is_empty() {
        0.0
    } else {
        histogram.mean()
    };
    let ops_per_s = ops as f64 / measured.as_secs_f64().max(1e-9);
    let (cpu, switches) = match usage.filter(|_| calls > 0) {
        Some(usage) => (
            format!("{:.3}", usage.cpu.as_secs_f64() * 1e6 / calls as f64),
            format!("{:.3}", usage.context_switches as f64 / calls as f64),
        ),
        None => ("null".to_owned(), "null".to_owned()),
    };
    let mode_name = match mode {
        Mode::Async => "async",
        Mode::AsyncCurrent => "async-current",
        Mode::Blocking => "blocking",
    };
    println!(
        "tonic-bench ({mode_name}) against {url}\n  {threads} threads, {:.2} s measured\n  \
         throughput   {ops_per_s:.0} ops/s  ({ops} ops, {} errors, {} misses)\n  \
         latency      p50 {} µs   p99 {} µs   p99.9 {} µs   max {} µs   mean {mean:.1} µs\n  \
         client cost  {cpu} µs CPU/op   {switches} context switches/op",
        measured.as_secs_f64(),
        latencies.errors,
        latencies.misses,
        quantile(0.5),
        quantile(0.99),
        quantile(0.999),
        histogram.max(),
    );
    if let Some(error) = &latencies.first_error {
        println!("  first error  {error}");
    }
    if options.flag("json") {
        println!(
            "{{\"ops_per_s\":{ops_per_s:.1},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\
             \"mean_us\":{mean:.1},\"max_us\":{},\"errors\":{},\"misses\":{},\"ops\":{ops},\
             \"threads\":{threads},\"duration_s\":{:.3},\"warmup_s\":{:.3},\"value_size\":{value_size},\
             \"get_ratio\":{get_ratio},\"keys\":{keys},\"cpu_us_per_op\":{cpu},\
             \"ctx_switches_per_op\":{switches},\"usage_includes_server\":false,\
             \"server\":\"{}\",\"mode\":\"{mode_name}\"}}",
            quantile(0.5),
            quantile(0.99),
            quantile(0.999),
            histogram.max(),
            latencies.errors,
            latencies.misses,
            measured.as_secs_f64(),
            warmup.as_secs_f64(),
            server.replace(['"', '\\'], ""),
        );
    }
    drop(client);
    runtime.shutdown_timeout(Duration::from_secs(1));
    if ops == 0 && latencies.errors > 0 {
        std::process::exit(3);
    }
}
