//! `tiny-cache bench`: a closed-loop benchmark of mixed gets and sets from
//! many threads sharing one [`Client`](tiny_cache_client::Client), against
//! an embedded server (the default), a running one, or several running ones
//! as one cluster.
//!
//! Keys are written before anything is measured, so every get is a hit; a
//! warm-up lets connections and caches settle and is not counted. Each
//! thread keeps its own latency histogram (no shared lock on the hot path);
//! they are merged at the end. `--chart FILE` also draws the merged
//! histogram (see [`crate::chart`]).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use clap::builder::RangedU64ValueParser;
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::server::Server;
use tiny_cache_client::{Error, ReplyWait};

use crate::backend::Backend;
use crate::chart::{self, ChartFile};
use crate::usage::ProcessUsage;
use crate::{parse_seconds, thousands, write_stdout, ClientSettings, Failure, Output};

/// Largest latency the histograms hold, in µs (one hour); slower calls are
/// recorded as this.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// Significant digits the histograms keep: 0.1 % resolution.
const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;

/// Bytes of values per `set_many` while pre-populating: well under the
/// 4 MiB message limit, few enough round trips to be quick.
const PREPOPULATE_BATCH_BYTES: usize = 1024 * 1024;

/// Most items per pre-populating `set_many`.
const PREPOPULATE_BATCH_ITEMS: usize = 500;

/// How often the progress line is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Longest `--duration` or `--warmup`: a day is already more than any run
/// needs, and it keeps deadline arithmetic far from overflowing.
const MAX_PHASE: Duration = Duration::from_secs(24 * 3600);

/// Most `--threads`: beyond this the machine measures thread scheduling,
/// not the client.
const MAX_THREADS: u64 = 4096;

/// Most `--keys`: ten million keys and their names already take about a
/// gigabyte between this process and the server.
const MAX_KEYS: u64 = 10_000_000;

/// Largest `--value-size`: a set carries its value in one gRPC message,
/// which the client and the reference server cap at 4 MiB.
const MAX_VALUE_SIZE_BYTES: u64 = 4 * 1024 * 1024;

/// Phases the worker threads follow, set by the coordinating thread.
const PHASE_WARMUP: u8 = 0;
const PHASE_MEASURE: u8 = 1;
const PHASE_STOP: u8 = 2;

/// Options of `bench`. The global --server, --timeout, --namespace,
/// --request-id and --json apply too; --json prints the results as one JSON
/// object, the last line of stdout, after the text report.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Client threads issuing calls, each waiting for its reply before the
    /// next (closed loop).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 16,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_THREADS)
    )]
    threads: usize,
    /// Measured time in seconds (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before it, in seconds.
    #[arg(long, value_name = "SECS", default_value = "0.5", value_parser = parse_warmup)]
    warmup: Duration,
    /// Bytes per value.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 100,
        value_parser = RangedU64ValueParser::<usize>::new().range(..=MAX_VALUE_SIZE_BYTES)
    )]
    value_size: usize,
    /// Fraction of operations that are gets, from 0 to 1; the rest are sets.
    #[arg(long, value_name = "R", default_value_t = 0.9, value_parser = parse_ratio)]
    get_ratio: f64,
    /// Distinct keys, all written before measuring starts.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_KEYS)
    )]
    keys: usize,
    /// Worker threads (HTTP/2 connections) of the client's pool
    /// [default: the library's default, half the cores from 1 to 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pool_size: Option<u16>,
    /// How callers wait for replies (for measuring the client itself):
    /// `park` (the default) or `channel` (crossbeam's blocking receive).
    #[arg(long, hide = true, value_name = "HOW", value_parser = parse_wait)]
    wait: Option<ReplyWait>,
    /// Also write a latency chart (percentile distribution) of the measured
    /// window to FILE: `.svg` for an SVG image, `.html` for a page holding
    /// it [default: none].
    #[arg(long, value_name = "FILE", value_parser = ChartFile::parse)]
    chart: Option<ChartFile>,
}

/// Which server the benchmark runs against.
#[derive(Debug, Clone)]
pub enum Target {
    /// A server started in this process, with one worker thread.
    Embedded,
    /// A running server at this address.
    Remote(String),
    /// Running servers as one cluster (`--server` given several times).
    Cluster {
        servers: Vec<String>,
        replicas: u16,
        read_quorum: u16,
    },
}

/// What one worker thread measured.
struct ThreadResult {
    latencies_micros: Histogram<u64>,
    errors: u64,
    misses: u64,
    first_error: Option<Error>,
}

/// Everything the report shows.
struct Report {
    server: String,
    embedded: bool,
    threads: usize,
    measured: Duration,
    warmup: Duration,
    value_size: usize,
    get_ratio: f64,
    keys: usize,
    latencies_micros: Histogram<u64>,
    errors: u64,
    misses: u64,
    usage: Option<ProcessUsage>,
}

/// Runs the benchmark and prints its report.
pub fn run(
    args: &BenchArgs,
    target: &Target,
    settings: &ClientSettings,
    out: Output,
) -> Result<(), Failure> {
    if let Some(chart) = &args.chart {
        chart.check_directory().map_err(Failure::Other)?;
    }
    // Held until the end: dropping it stops the embedded server.
    let mut embedded = None;
    let address = match target {
        Target::Remote(address) => address.clone(),
        Target::Cluster { servers, .. } => servers.join(","),
        Target::Embedded => {
            let server = Server::builder().workers(1).start().map_err(Error::from)?;
            let address = server.address();
            embedded = Some(server);
            address
        }
    };
    let mut builder = settings.builder(&address);
    if let Some(workers) = args.pool_size {
        builder = builder.pool_size(usize::from(workers));
    }
    if let Some(wait) = args.wait {
        builder = builder.reply_wait(wait);
    }
    let (client, cluster) = match target {
        // Each server of a cluster gets the cluster's own pool size.
        Target::Cluster {
            servers,
            replicas,
            read_quorum,
        } => (
            None,
            Some(settings.cluster(servers, *replicas, *read_quorum)?),
        ),
        _ => (Some(settings.finish(builder)?), None),
    };
    let backend = match (&client, &cluster) {
        (Some(client), _) => Backend::One(client),
        (None, Some(cluster)) => Backend::Many(cluster),
        (None, None) => return Err(Failure::Other("no server to benchmark".into())),
    };
    let keys: Vec<String> = (0..args.keys).map(|i| format!("bench:{i}")).collect();
    let value: Vec<u8> = (0..args.value_size)
        .map(|_| fastrand::alphanumeric() as u8)
        .collect();
    progress(&format!(
        "bench: writing {} keys of {} bytes to {}",
        keys.len(),
        args.value_size,
        server_label(embedded.is_some(), &address)
    ));
    prepopulate(backend, &keys, &value)?;

    let phase = AtomicU8::new(PHASE_WARMUP);
    let measured_ops = AtomicU64::new(0);
    let measured_errors = AtomicU64::new(0);
    let (results, measured, usage) = std::thread::scope(|scope| {
        let mut workers = Vec::with_capacity(args.threads);
        for index in 0..args.threads {
            let worker = Worker {
                client: backend,
                keys: &keys,
                value: &value,
                get_ratio: args.get_ratio,
                phase: &phase,
                ops: &measured_ops,
                errors: &measured_errors,
                seed: fastrand::u64(..) ^ index as u64,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("bench-{index}"))
                .spawn_scoped(scope, move || worker.run());
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    phase.store(PHASE_STOP, Ordering::Relaxed);
                    return Err(Failure::Other(format!("cannot start a bench thread: {e}")));
                }
            }
        }
        std::thread::sleep(args.warmup);
        let (measured, usage) = measure(args.duration, &phase, &measured_ops, &measured_errors);
        let mut results = Vec::with_capacity(workers.len());
        for handle in workers {
            match handle.join() {
                Ok(Ok(result)) => results.push(result),
                Ok(Err(failure)) => return Err(failure),
                Err(_) => return Err(Failure::Other("a bench thread panicked".into())),
            }
        }
        Ok((results, measured, usage))
    })?;

    let mut latencies_micros = new_histogram()?;
    let (mut errors, mut misses, mut first_error) = (0, 0, None);
    for result in results {
        latencies_micros
            .add(&result.latencies_micros)
            .map_err(|e| Failure::Other(format!("cannot merge latency histograms: {e:?}")))?;
        errors += result.errors;
        misses += result.misses;
        first_error = first_error.or(result.first_error);
    }
    let report = Report {
        server: address,
        embedded: embedded.is_some(),
        threads: args.threads,
        measured,
        warmup: args.warmup,
        value_size: args.value_size,
        get_ratio: args.get_ratio,
        keys: args.keys,
        latencies_micros,
        errors,
        misses,
        usage,
    };
    let mut text = report.text();
    if let Some(error) = &first_error {
        text.push_str(&format!("  first error  {error}\n"));
    }
    if let Some(cluster) = &cluster {
        text.push_str(&per_server_load(cluster));
    }
    write_stdout(text.as_bytes())?;
    if out.json {
        out.object(&report.json())?;
    }
    drop(cluster);
    drop(client);
    drop(embedded);
    if let Some(chart) = &args.chart {
        chart
            .write(&report.latencies_micros, &report.chart_run())
            .map_err(Failure::Other)?;
        progress(&format!("bench: chart written to {}", chart.path.display()));
    }
    match first_error {
        Some(error) if report.latencies_micros.is_empty() => Err(Failure::Other(format!(
            "every operation failed; the first with: {error}"
        ))),
        _ => Ok(()),
    }
}

/// Runs the measured window from the coordinating thread: opens it, prints
/// progress once a second, closes it. Returns its length and the process's
/// resource use over it.
fn measure(
    duration: Duration,
    phase: &AtomicU8,
    ops: &AtomicU64,
    errors: &AtomicU64,
) -> (Duration, Option<ProcessUsage>) {
    let usage_before = ProcessUsage::now();
    let started = Instant::now();
    phase.store(PHASE_MEASURE, Ordering::Release);
    let end = started + duration;
    let mut last = (started, 0u64);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep(
            (last.0 + PROGRESS_INTERVAL)
                .min(end)
                .saturating_duration_since(now),
        );
        let now = Instant::now();
        let done = ops.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
        progress(&format!(
            "bench: {:>5.1} s  {:>12} ops/s  errors {}",
            (now - started).as_secs_f64(),
            thousands(rate.round() as u64),
            errors.load(Ordering::Relaxed)
        ));
        last = (now, done);
    }
    phase.store(PHASE_STOP, Ordering::Release);
    let measured = started.elapsed();
    let usage = ProcessUsage::now()
        .zip(usage_before)
        .map(|(after, before)| after.since(&before));
    (measured, usage)
}

/// Writes every key once, in batches, and fails on the first refusal: a
/// benchmark of misses would measure something else.
fn prepopulate(client: Backend<'_>, keys: &[String], value: &[u8]) -> Result<(), Failure> {
    let batch = (PREPOPULATE_BATCH_BYTES / (value.len() + 64)).clamp(1, PREPOPULATE_BATCH_ITEMS);
    for chunk in keys.chunks(batch) {
        let results = client
            .set_many(chunk.iter().map(|key| (key, value)))
            .map_err(|e| Failure::Other(format!("cannot write the benchmark's keys: {e}")))?;
        if let Some(failed) = results.iter().find(|r| r.result.is_err()) {
            let why = failed.result.as_ref().err().map(ToString::to_string);
            return Err(Failure::Other(format!(
                "cannot write the benchmark's key {:?}: {}",
                failed.key,
                why.unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// One benchmark thread's view of the shared state.
struct Worker<'a> {
    client: Backend<'a>,
    keys: &'a [String],
    value: &'a [u8],
    get_ratio: f64,
    phase: &'a AtomicU8,
    ops: &'a AtomicU64,
    errors: &'a AtomicU64,
    seed: u64,
}

impl Worker<'_> {
    /// Issues calls back to back until told to stop; only calls that end
    /// inside the measured window count.
    fn run(self) -> Result<ThreadResult, Failure> {
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let mut result = ThreadResult {
            latencies_micros: new_histogram()?,
            errors: 0,
            misses: 0,
            first_error: None,
        };
        loop {
            let phase = self.phase.load(Ordering::Acquire);
            if phase == PHASE_STOP {
                return Ok(result);
            }
            let key = &self.keys[rng.usize(..self.keys.len())];
            let is_get = rng.f64() < self.get_ratio;
            let started = Instant::now();
            let outcome = if is_get {
                self.client.get(key).map(|found| found.is_some())
            } else {
                self.client.set(key, self.value).map(|()| true)
            };
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            if self.phase.load(Ordering::Acquire) != PHASE_MEASURE {
                continue;
            }
            match outcome {
                Ok(found) => {
                    result
                        .latencies_micros
                        .saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
                    result.misses += u64::from(!found);
                    self.ops.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    result.errors += 1;
                    result.first_error.get_or_insert(error);
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Each server's share of the calls (prepopulation included) and its
/// health: how evenly the keys spread, and whether one server lagged.
fn per_server_load(cluster: &Cluster) -> String {
    let servers = cluster.servers();
    let total: u64 = servers.iter().map(|state| state.calls).sum();
    let mut text = String::from("  per server   calls (share)           failed  up\n");
    for state in servers {
        let share = 100.0 * state.calls as f64 / total.max(1) as f64;
        text.push_str(&format!(
            "    {:<24} {:>12} ({share:>5.1} %) {:>6}  {}\n",
            state.server,
            thousands(state.calls),
            state.failed_calls,
            state.up
        ));
    }
    text
}

fn new_histogram() -> Result<Histogram<u64>, Failure> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, HISTOGRAM_SIGNIFICANT_DIGITS)
        .map_err(|e| Failure::Other(format!("cannot create a latency histogram: {e:?}")))
}

impl Report {
    /// What the chart's title and caption show.
    fn chart_run(&self) -> chart::Run {
        chart::Run {
            server: server_label(self.embedded, &self.server),
            threads: self.threads,
            value_size: self.value_size,
            get_ratio: self.get_ratio,
            keys: self.keys,
            measured: self.measured,
            warmup: self.warmup,
            ops_per_second: self.ops_per_second(),
            errors: self.errors,
        }
    }

    fn ops(&self) -> u64 {
        self.latencies_micros.len()
    }

    fn ops_per_second(&self) -> f64 {
        self.ops() as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    /// Latency at `quantile` in µs; 0 when nothing succeeded.
    fn quantile_micros(&self, quantile: f64) -> u64 {
        if self.latencies_micros.is_empty() {
            0
        } else {
            self.latencies_micros.value_at_quantile(quantile)
        }
    }

    fn mean_micros(&self) -> f64 {
        if self.latencies_micros.is_empty() {
            0.0
        } else {
            self.latencies_micros.mean()
        }
    }

    /// CPU µs and context switches per call (failed calls included), when
    /// getrusage worked and anything completed.
    fn per_op(&self) -> Option<(f64, f64)> {
        let calls = self.ops() + self.errors;
        let usage = self.usage?;
        (calls > 0).then(|| {
            (
                usage.cpu.as_secs_f64() * 1e6 / calls as f64,
                usage.context_switches as f64 / calls as f64,
            )
        })
    }

    fn text(&self) -> String {
        let mut text = format!(
            "tiny-cache bench against {}\n  {}\n\n",
            server_label(self.embedded, &self.server),
            self.chart_run().parameters(),
        );
        text.push_str(&format!(
            "  throughput   {} ops/s  ({} ops, {} errors, {} misses)\n",
            thousands(self.ops_per_second().round() as u64),
            thousands(self.ops()),
            self.errors,
            self.misses
        ));
        text.push_str(&format!(
            "  latency      p50 {} µs   p99 {} µs   p99.9 {} µs   max {} µs   mean {:.1} µs\n",
            thousands(self.quantile_micros(0.5)),
            thousands(self.quantile_micros(0.99)),
            thousands(self.quantile_micros(0.999)),
            thousands(self.latencies_micros.max()),
            self.mean_micros()
        ));
        let scope = if self.embedded {
            "whole process: includes the embedded server's share"
        } else {
            "this client process only"
        };
        match self.per_op() {
            Some((cpu, switches)) => text.push_str(&format!(
                "  client cost  {cpu:.1} µs CPU/op   {switches:.2} context switches/op  ({scope})\n"
            )),
            None => text.push_str("  client cost  n/a (needs getrusage)\n"),
        }
        text
    }

    /// The results as `--json` prints them.
    fn json(&self) -> BenchJson {
        let per_op = self.per_op();
        BenchJson {
            ops_per_s: tenths(self.ops_per_second()),
            p50_us: self.quantile_micros(0.5),
            p99_us: self.quantile_micros(0.99),
            p999_us: self.quantile_micros(0.999),
            mean_us: tenths(self.mean_micros()),
            max_us: self.latencies_micros.max(),
            errors: self.errors,
            misses: self.misses,
            ops: self.ops(),
            threads: self.threads,
            duration_s: thousandths(self.measured.as_secs_f64()),
            warmup_s: thousandths(self.warmup.as_secs_f64()),
            value_size: self.value_size,
            get_ratio: self.get_ratio,
            keys: self.keys,
            cpu_us_per_op: per_op.map(|(cpu, _)| thousandths(cpu)),
            ctx_switches_per_op: per_op.map(|(_, switches)| thousandths(switches)),
            usage_includes_server: self.embedded,
            server: if self.embedded {
                "embedded".to_owned()
            } else {
                self.server.clone()
            },
        }
    }
}

/// `bench --json`'s object; the field names are part of the tool's
/// interface (README).
#[derive(Debug, Serialize)]
struct BenchJson {
    ops_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    mean_us: f64,
    max_us: u64,
    errors: u64,
    misses: u64,
    ops: u64,
    threads: usize,
    duration_s: f64,
    warmup_s: f64,
    value_size: usize,
    get_ratio: f64,
    keys: usize,
    /// `null` where getrusage is unavailable.
    cpu_us_per_op: Option<f64>,
    ctx_switches_per_op: Option<f64>,
    /// Whether the CPU and switch counts include the embedded server.
    usage_includes_server: bool,
    /// `embedded`, or the address of the server measured.
    server: String,
}

/// `x` rounded to one decimal: the precision the report means.
fn tenths(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `x` rounded to three decimals.
fn thousandths(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn server_label(embedded: bool, address: &str) -> String {
    if embedded {
        format!("the embedded server (1 worker) on {address}")
    } else {
        address.to_owned()
    }
}

/// A progress line on stderr, which may be gone: then it is dropped.
fn progress(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `--duration`: a positive number of seconds, at most a day.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    at_most_a_day(parse_seconds(raw)?, "--duration")
}

/// `--warmup`: zero or more seconds, at most a day.
fn parse_warmup(raw: &str) -> Result<Duration, String> {
    if raw.trim().parse::<f64>() == Ok(0.0) {
        return Ok(Duration::ZERO);
    }
    at_most_a_day(parse_seconds(raw)?, "--warmup")
}

/// `phase` if it is at most [`MAX_PHASE`], else why not.
fn at_most_a_day(phase: Duration, option: &str) -> Result<Duration, String> {
    if phase <= MAX_PHASE {
        Ok(phase)
    } else {
        Err(format!("{option} is at most {} s", MAX_PHASE.as_secs()))
    }
}

/// `--wait`: how callers wait for replies.
fn parse_wait(raw: &str) -> Result<ReplyWait, String> {
    match raw {
        "park" => Ok(ReplyWait::Park),
        "channel" => Ok(ReplyWait::Channel),
        other => Err(format!("expected park or channel, got {other:?}")),
    }
}

/// `--get-ratio`: a fraction from 0 to 1 (clap has no range for
/// fractional numbers).
fn parse_ratio(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("{raw:?} must be a number from 0 to 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_outside_zero_to_one_is_refused() {
        assert_eq!(parse_ratio("0.9"), Ok(0.9));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-0.1").is_err());
    }
}
