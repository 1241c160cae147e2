//! `tiny-cache bench`: a load tool for a tiny-cache server. Many threads
//! share one [`Client`](tiny_cache_client::Client) and make a mix of every RPC (`--mix`) over keys
//! drawn from a distribution (`--key-distribution`), against an embedded
//! server (the default) or a running one.
//!
//! Two ways to pace the calls:
//! - closed loop (the default): each thread makes its next call when the
//!   previous one returns; throughput is what the client and server manage.
//! - open loop (`--rate`): calls are due on a fixed timetable shared by the
//!   threads (see [`schedule`]), and latency counts from when a call was
//!   due, so a stall shows as the latency it caused rather than as calls
//!   never made (coordinated omission corrected).
//!
//! In a closed loop a thread may also send its calls in pipelines
//! (`--pipeline N`): N operations drawn as usual, sent together through the
//! crate's `Pipeline` and waited for once. Each still counts as one
//! operation, with its pipeline's time as its latency.
//!
//! Keys are written before anything is measured (`--prefill`); a warm-up
//! lets connections and caches settle and is not counted. Each thread keeps
//! its own histograms, one per operation (no shared lock on the hot path);
//! they are merged at the end. The report can also be drawn (`--chart`),
//! logged for HdrHistogram's tools (`--hdr-log`), and compared with a saved
//! run (`--baseline`, see [`gate`]).
//!
//! Where calls go is behind the crate's `CacheStore` trait, and the client is made
//! in [`connect`] alone: a second kind of target is one more arm there.

mod calls;
mod gate;
mod report;
mod schedule;
mod steps;
mod verify;
mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use clap::builder::RangedU64ValueParser;
use clap::Args;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::server::Server;
use tiny_cache_client::{CacheStore, Error, ReplyWait};

use self::calls::{perform, perform_pipeline, Part};
use self::gate::Baseline;
use self::report::{Latency, Report, Shape, Tally, Timeline};
use self::schedule::Schedule;
use self::steps::{CapacitySearch, RateArg, ScheduleJson, Slo, Step};
use self::verify::{Landed, Verifier};
use self::workload::{Data, HotSet, KeyDistribution, Mix, Op, OpSampler, Prefill, ValueSize};
use crate::chart::timeline::Mark;
use crate::chart::ChartFile;
use crate::usage::ProcessUsage;
use crate::{parse_seconds, thousands, write_stdout, ClientSettings, Exit, Failure, Output};

/// Bytes of values per `set_many` while pre-filling: well under the 4 MiB
/// message limit, few enough round trips to be quick.
const PREFILL_BATCH_BYTES: usize = 1024 * 1024;

/// Most items per pre-filling `set_many`.
const PREFILL_BATCH_ITEMS: usize = 500;

/// How often the progress line is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Longest `--duration` or `--warmup`: a day is already more than any run
/// needs, and it keeps deadline arithmetic far from overflowing.
const MAX_PHASE: Duration = Duration::from_secs(24 * 3600);

/// How long an open-loop run with a `--duration` goes on sending the calls
/// that fell due in its window but could not be sent in it (the threads
/// were all waiting on a slow server). They count: leaving them out would
/// hide exactly the latency the open loop is there to show. Calls still
/// unsent after this are reported as such, and the rate as not reached.
const MAX_DRAIN: Duration = Duration::from_secs(2);

/// Longest pause between steps of a schedule or search (see
/// `run_steps`): a server still slow after this has not recovered, and the
/// next step should say so.
const MAX_COOL_DOWN: Duration = Duration::from_secs(10);

/// Most `--threads`: beyond this the machine measures thread scheduling,
/// not the client.
const MAX_THREADS: u64 = 4096;

/// Most `--keys`: ten million keys and their names already take about a
/// gigabyte between this process and the server.
const MAX_KEYS: u64 = 10_000_000;

/// Most `--requests`: a trillion calls is weeks at any rate this client
/// reaches.
const MAX_REQUESTS: u64 = 1_000_000_000_000;

/// Largest `--pipeline`: as many operations in flight per thread as
/// `--batch` allows keys per call; deeper pipelines only queue on the
/// connections' stream limits.
const MAX_PIPELINE: u64 = 1000;

/// Largest `--batch`: a multi-key call carries its keys (and, for
/// set-many, their values) in one message; a thousand is already far past
/// where batching stops paying.
const MAX_BATCH: u64 = 1000;

/// Options of `bench`. The global --server, --timeout, --namespace,
/// --request-id and --json apply too; --json prints the results as one JSON
/// object, the last line of stdout, after the text report.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Client threads issuing calls; in a closed loop each waits for its
    /// reply before the next.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 16,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_THREADS)
    )]
    threads: usize,
    /// Open loop: start OPS_PER_S calls a second on a fixed schedule
    /// spread over the threads, and measure latency from when each call was
    /// due (coordinated omission corrected) [default: closed loop]. A range
    /// LOW..HIGH runs a schedule of open-loop steps (--rate-step), or the
    /// bounds of --find-capacity.
    #[arg(long, value_name = "OPS_PER_S", value_parser = RateArg::parse)]
    rate: Option<RateArg>,
    /// With --rate LOW..HIGH: one step every this many calls a second, from
    /// LOW up to HIGH (the last step).
    #[arg(long, value_name = "OPS_PER_S", value_parser = parse_rate, requires = "rate")]
    rate_step: Option<f64>,
    /// Measured time of each step of a --rate LOW..HIGH schedule or
    /// --find-capacity probe: seconds, or with a unit (500ms, 5s, 1m). Each
    /// step has its own --warmup first.
    #[arg(
        long,
        value_name = "TIME",
        default_value = "5",
        value_parser = parse_step_duration,
        requires = "rate"
    )]
    step_duration: Duration,
    /// The latency a step must keep to count as sustained, as
    /// PERCENTILE=TIME of the corrected latency (p50, p99, p99.9, ...; us,
    /// ms or s): `p99=2ms`. The report names the highest such step whose
    /// rate was also kept (within 5 %) as the sustainable throughput.
    #[arg(long, value_name = "PCT=TIME", value_parser = Slo::parse)]
    slo: Option<Slo>,
    /// Search the --rate LOW..HIGH range for the sustainable throughput
    /// under --slo, to within 5 %, one --step-duration probe at a time:
    /// from LOW, doubling while steps hold, then bisecting.
    #[arg(
        long,
        requires = "slo",
        requires = "rate",
        conflicts_with = "rate_step"
    )]
    find_capacity: bool,
    /// Check the data: every value written holds its key, a write sequence
    /// and a checksum, and every value read is checked against what this
    /// run wrote; stale, impossible, another key's and corrupt values are
    /// counted apart, and any of them ends the run with exit status 10.
    #[arg(long)]
    verify: bool,
    /// Measured time in seconds (fractions allowed); a schedule's steps
    /// last --step-duration instead.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "10",
        value_parser = parse_duration,
        conflicts_with_all = ["requests", "rate_step", "find_capacity"]
    )]
    duration: Duration,
    /// Measure this many calls instead of a --duration.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..=MAX_REQUESTS)
    )]
    requests: Option<u64>,
    /// Unmeasured warm-up before it, in seconds.
    #[arg(long, value_name = "SECS", default_value = "0.5", value_parser = parse_warmup)]
    warmup: Duration,
    /// Operations and their weights: any of get, set, delete, get-many,
    /// set-many, delete-many, set-if-absent, compare-and-set, touch, as
    /// `get=80,set=10,get-many=10` [default: get=90,set=10].
    #[arg(long, value_name = "OP=W,...", value_parser = Mix::parse, conflicts_with = "get_ratio")]
    mix: Option<Mix>,
    /// Shorthand for --mix get=R,set=(1-R): the fraction of calls that are
    /// gets, from 0 to 1.
    #[arg(long, value_name = "R", value_parser = parse_ratio)]
    get_ratio: Option<f64>,
    /// Keys per get-many, set-many and delete-many call.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_BATCH)
    )]
    batch: usize,
    /// Distinct keys.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_KEYS)
    )]
    keys: usize,
    /// How often each key is used: uniform, zipf:S (key i with weight
    /// 1/(i+1)^S; bare zipf is S = 0.99), sequential (each thread walks the
    /// keys in order), gaussian or gaussian:F (around the middle key, with a
    /// deviation of F times --keys; bare gaussian is F = 1/6).
    #[arg(
        long,
        value_name = "DIST",
        default_value = "uniform",
        value_parser = KeyDistribution::parse
    )]
    key_distribution: KeyDistribution,
    /// Move the hot keys of a zipf or gaussian --key-distribution every
    /// TIME (seconds, or 500ms, 30s, 2m): each interval shifts which keys
    /// the distribution's ranks fall on, by 61.8 % of the keys, so caches
    /// are measured while their hot set changes [default: never].
    #[arg(long, value_name = "TIME", value_parser = parse_hot_set_rotate)]
    hot_set_rotate: Option<Duration>,
    /// Keys are this prefix followed by their number.
    #[arg(long, value_name = "PREFIX", default_value = "bench:")]
    key_prefix: String,
    /// Bytes per value: a size, or a range such as 64..4096 (both ends
    /// included; each key keeps one size from it).
    #[arg(long, value_name = "BYTES", default_value = "100", value_parser = ValueSize::parse)]
    value_size: ValueSize,
    /// Keys written before measuring: all, none, or the first N.
    #[arg(long, value_name = "N", default_value = "all", value_parser = Prefill::parse)]
    prefill: Prefill,
    /// Worker threads (HTTP/2 connections) of the client's pool
    /// [default: the library's default, half the cores from 1 to 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pool_size: Option<u16>,
    /// Closed loop only: each thread sends its operations in pipelines of N
    /// (drawn from the same mix and keys, sent together, waited for once);
    /// 1 is one call at a time. Every operation counts as one op, and its
    /// latency runs from sending its pipeline to the pipeline's completion
    /// (its last answer). A pipeline carries get, set, delete,
    /// set-if-absent and compare-and-set.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_PIPELINE)
    )]
    pipeline: usize,
    /// How callers wait for replies (for measuring the client itself):
    /// `park` (the default) or `channel` (crossbeam's blocking receive).
    #[arg(long, hide = true, value_name = "HOW", value_parser = parse_wait)]
    wait: Option<ReplyWait>,
    /// Also write a latency chart (percentile distribution) of the measured
    /// window to FILE: `.svg` for an SVG image, `.html` for a page holding
    /// it; and the run over time (throughput and p99 per second) to
    /// FILE-timeline.svg/.html. With --rate LOW..HIGH, FILE is the run over
    /// time, each step marked with its verdict [default: none].
    #[arg(long, value_name = "FILE", value_parser = ChartFile::parse)]
    chart: Option<ChartFile>,
    /// Also write the latency histograms (µs) to FILE as an HdrHistogram
    /// interval log, which HistogramLogProcessor and other tools read: all
    /// operations untagged, then each tagged with its name [default: none].
    #[arg(long, value_name = "FILE")]
    hdr_log: Option<PathBuf>,
    /// Compare with a saved `bench --json` run and exit with status 9 when
    /// throughput falls, or p99 latency grows, by more than --tolerance.
    #[arg(long, value_name = "FILE.json")]
    baseline: Option<PathBuf>,
    /// How much worse than --baseline a run may be, in percent.
    #[arg(
        long,
        value_name = "PCT",
        default_value = "10",
        value_parser = gate::parse_tolerance,
        requires = "baseline"
    )]
    tolerance: f64,
}

impl BenchArgs {
    /// The rate of a single open-loop run; `None` in a closed loop and in
    /// a schedule or search (each step has its own).
    fn fixed_rate(&self) -> Option<f64> {
        match self.rate {
            Some(RateArg::Fixed(rate)) => Some(rate),
            _ => None,
        }
    }

    /// Whether the run is a schedule of steps or a capacity search.
    fn stepped(&self) -> bool {
        matches!(self.rate, Some(RateArg::Range { .. }))
    }
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

/// Where the calls go, and what must live as long as they do.
struct Connected {
    calls: Box<dyn CacheStore>,
    /// Who serves, as the report names it.
    label: String,
    /// `embedded`, or the address, as the JSON names it.
    server: String,
    /// Held until the end: dropping it stops the embedded server.
    embedded: Option<Server>,
    /// The cluster behind `calls`, when the target is one: its per-server
    /// load goes into the report.
    cluster: Option<Cluster>,
}

/// Makes the client the calls go through: the one place that knows what
/// the target is.
fn connect(
    target: &Target,
    args: &BenchArgs,
    settings: &ClientSettings,
) -> Result<Connected, Failure> {
    let (address, embedded) = match target {
        Target::Cluster {
            servers,
            replicas,
            read_quorum,
        } => {
            // Each server of a cluster gets the cluster's own pool size.
            let cluster = settings.cluster(servers, *replicas, *read_quorum)?;
            let label = format!("a cluster of {} (R = {replicas})", servers.join(", "));
            return Ok(Connected {
                calls: Box::new(cluster.clone()),
                label,
                server: servers.join(","),
                embedded: None,
                cluster: Some(cluster),
            });
        }
        Target::Remote(address) => (address.clone(), None),
        Target::Embedded => {
            let server = Server::builder().workers(1).start().map_err(Error::from)?;
            (server.address(), Some(server))
        }
    };
    let mut builder = settings.builder(&address);
    if let Some(workers) = args.pool_size {
        builder = builder.pool_size(usize::from(workers));
    }
    if let Some(wait) = args.wait {
        builder = builder.reply_wait(wait);
    }
    let client = settings.finish(builder)?;
    Ok(Connected {
        calls: Box::new(client),
        label: match embedded {
            Some(_) => format!("the embedded server (1 worker) on {address}"),
            None => address.clone(),
        },
        server: match embedded {
            Some(_) => "embedded".to_owned(),
            None => address,
        },
        embedded,
        cluster: None,
    })
}

/// How calls are paced.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Each thread's next call starts when its previous one ends.
    Closed,
    /// Calls start on this timetable.
    Open(Schedule),
}

/// When the measured window ends.
#[derive(Debug, Clone, Copy)]
enum Length {
    Time(Duration),
    Requests(u64),
}

/// The run's plan, known to every thread before it starts.
#[derive(Debug, Clone, Copy)]
struct Plan {
    pace: Pace,
    length: Length,
    warmup: Duration,
    threads: usize,
    /// Operations per pipeline; 1 for one call at a time.
    pipeline: usize,
}

impl Plan {
    fn new(args: &BenchArgs) -> Result<Plan, Failure> {
        let length = match args.requests {
            Some(n) => Length::Requests(n),
            None if args.stepped() => Length::Time(args.step_duration),
            None => Length::Time(args.duration),
        };
        match args.rate {
            Some(RateArg::Range { .. }) if args.rate_step.is_none() && !args.find_capacity => {
                return Err(Failure::Usage(
                    "--rate LOW..HIGH needs --rate-step (a schedule of steps) or \
                     --find-capacity (a search)"
                        .into(),
                ));
            }
            Some(RateArg::Fixed(_)) if args.rate_step.is_some() || args.find_capacity => {
                return Err(Failure::Usage(
                    "--rate-step and --find-capacity need a range: --rate LOW..HIGH".into(),
                ));
            }
            Some(RateArg::Range { .. }) if args.requests.is_some() => {
                return Err(Failure::Usage(
                    "a --rate LOW..HIGH step lasts --step-duration: it cannot be used with \
                     --requests"
                        .into(),
                ));
            }
            None | Some(RateArg::Fixed(_)) if args.slo.is_some() => {
                return Err(Failure::Usage(
                    "--slo judges the steps of --rate LOW..HIGH with --rate-step or \
                     --find-capacity"
                        .into(),
                ));
            }
            _ => {}
        }
        if args.stepped() && (args.baseline.is_some() || args.hdr_log.is_some()) {
            return Err(Failure::Usage(
                "--baseline and --hdr-log take a single run, not --rate LOW..HIGH".into(),
            ));
        }
        if let (Some(RateArg::Range { low, high }), Some(step)) = (args.rate, args.rate_step) {
            steps::schedule_rates(low, high, step).map_err(Failure::Usage)?;
        }
        // A schedule is checked at its highest rate: if the threads can
        // reach that, they reach every step.
        let pace = match args.rate {
            None => Pace::Closed,
            Some(rate) => {
                Pace::Open(Schedule::new(rate.highest(), args.threads).map_err(Failure::Usage)?)
            }
        };
        if args.pipeline > 1 && args.rate.is_some() {
            // An open loop sends each call when it falls due: a pipeline
            // would hold calls back until it is full, or send calls early.
            return Err(Failure::Usage(
                "--pipeline above 1 needs the closed loop: it cannot be used with --rate".into(),
            ));
        }
        let lowest = match args.rate {
            Some(RateArg::Range { low, .. }) => Some(low),
            Some(RateArg::Fixed(rate)) => Some(rate),
            None => None,
        };
        if let (Some(rate), Length::Time(duration)) = (lowest, length) {
            if rate * duration.as_secs_f64() < 1.0 {
                let option = if args.stepped() {
                    "--step-duration"
                } else {
                    "--duration"
                };
                return Err(Failure::Usage(format!(
                    "--rate {rate} schedules no call in a {option} of {} s",
                    duration.as_secs_f64()
                )));
            }
        }
        Ok(Plan {
            pace,
            length,
            warmup: args.warmup,
            threads: args.threads,
            pipeline: args.pipeline,
        })
    }

    /// This plan at `rate`, for one step of a schedule or search.
    fn at_rate(self, rate: f64) -> Result<Plan, Failure> {
        Ok(Plan {
            pace: Pace::Open(Schedule::new(rate, self.threads).map_err(Failure::Usage)?),
            ..self
        })
    }

    /// Open loop: the numbers of the first measured call and of the first
    /// call after the measured ones.
    fn measured_calls(&self, schedule: &Schedule) -> (u64, u64) {
        let first = schedule.calls_before(self.warmup);
        let end = match self.length {
            Length::Time(duration) => schedule.calls_before(self.warmup + duration),
            Length::Requests(n) => first.saturating_add(n),
        };
        (first, end)
    }

    /// When the measured window starts, after `start`.
    fn measured_start(&self, start: Instant) -> Instant {
        match self.pace {
            Pace::Closed => start + self.warmup,
            Pace::Open(schedule) => schedule
                .due_at(start, self.measured_calls(&schedule).0)
                .unwrap_or(start),
        }
    }
}

/// Counters the threads share with the progress line.
#[derive(Debug, Default)]
struct Counters {
    /// Measured calls ended (failed ones included); with `--pipeline`,
    /// operations.
    calls: AtomicU64,
    errors: AtomicU64,
    /// Closed loop with --requests: measured calls (operations, with
    /// `--pipeline`) claimed so far.
    tickets: AtomicU64,
    /// Set when the run must end early (a thread could not start).
    stop: AtomicBool,
}

/// Runs the benchmark and prints its report.
pub fn run(
    args: &BenchArgs,
    target: &Target,
    settings: &ClientSettings,
    out: Output,
) -> Result<(), Failure> {
    // Everything the command line can get wrong fails here, before a
    // server is started or a key written.
    let plan = Plan::new(args)?;
    let mix = match (&args.mix, args.get_ratio) {
        (Some(mix), _) => mix.clone(),
        (None, Some(ratio)) => Mix::gets_and_sets(ratio),
        (None, None) => Mix::gets_and_sets(0.9),
    };
    let sampler = mix.sampler().map_err(Failure::Usage)?;
    if args.pipeline > 1 {
        let unpipelined: Vec<&str> = mix
            .ops()
            .filter(|op| !op.pipelines())
            .map(Op::name)
            .collect();
        if !unpipelined.is_empty() {
            return Err(Failure::Usage(format!(
                "--pipeline carries get, set, delete, set-if-absent and compare-and-set; \
                 take {} out of the --mix",
                unpipelined.join(", ")
            )));
        }
    }
    let last_key = format!("{}{}", args.key_prefix, args.keys - 1);
    tiny_cache_client::rules::check_key(&last_key, settings.namespace.as_deref()).map_err(
        |why| {
            Failure::Usage(format!(
                "--key-prefix {:?} makes invalid keys: {why}",
                args.key_prefix
            ))
        },
    )?;
    if args.hot_set_rotate.is_some()
        && matches!(
            args.key_distribution,
            KeyDistribution::Uniform | KeyDistribution::Sequential
        )
    {
        return Err(Failure::Usage(format!(
            "--hot-set-rotate moves the hot keys of a zipf or gaussian --key-distribution; \
             {} has none",
            args.key_distribution
        )));
    }
    if args.verify {
        if args.pipeline > 1 {
            return Err(Failure::Usage(
                "--verify makes one call at a time: it cannot be used with --pipeline".into(),
            ));
        }
        let needed = verify::min_value_size(last_key.len());
        if args.value_size.min < needed {
            return Err(Failure::Usage(format!(
                "--verify writes values that name their key ({last_key:?} takes {needed} bytes): \
                 --value-size must be at least {needed}"
            )));
        }
    }
    let baseline = args.baseline.as_deref().map(Baseline::read).transpose()?;
    if let Some(chart) = &args.chart {
        chart.check_directory().map_err(Failure::Other)?;
    }
    if let Some(path) = &args.hdr_log {
        // Created now so that a path that cannot be written fails before
        // the run rather than after it.
        std::fs::File::create(path).map_err(|e| {
            Failure::Usage(format!("cannot create --hdr-log {}: {e}", path.display()))
        })?;
    }

    let connected = connect(target, args, settings)?;
    let data = Data::new(
        &args.key_prefix,
        args.keys,
        args.value_size,
        fastrand::u64(..),
    );
    let prefilled = args.prefill.count(args.keys);
    progress(&format!(
        "bench: writing {} of {} keys of {} to {}",
        thousands(prefilled as u64),
        thousands(args.keys as u64),
        args.value_size.describe(),
        connected.label
    ));
    let verifier = args
        .verify
        .then(|| Verifier::new(args.keys, fastrand::u64(..)));
    prefill(
        connected.calls.as_ref(),
        &data,
        prefilled,
        verifier.as_ref(),
    )?;

    let counters = Counters::default();
    let origin = Instant::now();
    let shared = Shared {
        calls: connected.calls.as_ref(),
        data: &data,
        mix: &mix,
        sampler: &sampler,
        distribution: args.key_distribution,
        batch: args.batch,
        plan,
        counters: &counters,
        verifier: verifier.as_ref(),
        // From here, so that a schedule's steps carry on the rotation
        // and its timeline.
        hot_set: args
            .hot_set_rotate
            .map(|every| HotSet::new(every, origin, args.keys)),
        timeline_origin: args.chart.as_ref().map(|_| origin),
    };
    if args.stepped() {
        return run_steps(args, &shared, &connected, out);
    }
    let Measured {
        mut tally,
        start,
        measured_start,
        measured,
        usage,
    } = shared.measure(args.fixed_rate())?;
    let first_error = tally.first_error.take();
    let report = Report {
        shape: Shape {
            server_label: connected.label.clone(),
            server: connected.server.clone(),
            embedded: connected.embedded.is_some(),
            threads: args.threads,
            pipeline: args.pipeline,
            target_rate: args.fixed_rate(),
            requests: args.requests,
            warmup: args.warmup,
            mix: &mix,
            batch: args.batch,
            keys: args.keys,
            key_prefix: &args.key_prefix,
            distribution: args.key_distribution,
            value_size: args.value_size,
            prefilled,
            hot_set_rotate: args.hot_set_rotate,
        },
        measured,
        latencies_micros: tally.all_latencies()?,
        tally,
        usage,
    };
    let mut json = report.json();
    let comparison = baseline
        .as_ref()
        .map(|baseline| baseline.compare(&json, args.tolerance));
    let mut text = report.text();
    if let Some(error) = &first_error {
        text.push_str(&format!("  first error  {error}\n"));
    }
    if let Some(cluster) = &connected.cluster {
        text.push_str(&per_server_load(cluster));
    }
    let verified = verifier.as_ref().map(Verifier::json);
    if let Some(verified) = &verified {
        text.push_str(&verified.text());
    }
    if let Some(comparison) = &comparison {
        text.push_str(&comparison.text());
    }
    write_stdout(text.as_bytes())?;
    if json.rate_reached == Some(false) {
        progress(&format!(
            "bench: warning: the rate fell short of --rate {}: {} calls/s achieved",
            thousands(args.fixed_rate().unwrap_or_default().round() as u64),
            thousands(json.achieved_rate.round() as u64)
        ));
    }
    json.baseline = comparison.clone();
    json.verify = verified.clone();
    if out.json {
        out.object(&json)?;
    }
    drop(connected);
    if let Some(chart) = &args.chart {
        chart
            .write(&report.latencies_micros, &report.chart_run())
            .map_err(Failure::Other)?;
        progress(&format!("bench: chart written to {}", chart.path.display()));
        if let Some(timeline) = &report.tally.timeline {
            let at = |instant: Instant| {
                instant
                    .saturating_duration_since(timeline.origin())
                    .as_secs_f64()
            };
            let target_rate = args.fixed_rate();
            let mut marks = Vec::new();
            if !args.warmup.is_zero() {
                marks.push(Mark {
                    at_s: at(start),
                    label: "warm-up".into(),
                    target_rate,
                    held: None,
                });
            }
            marks.push(Mark {
                at_s: at(measured_start),
                label: "measured".into(),
                target_rate,
                held: None,
            });
            let run = report.chart_run();
            let path = chart.timeline_path();
            chart
                .write_timeline(
                    &path,
                    &format!("tiny-cache bench over time: {}", run.mode),
                    &format!("against {}\n{}", run.server, run.parameters()),
                    &timeline.seconds(),
                    &marks,
                )
                .map_err(Failure::Other)?;
            progress(&format!("bench: timeline written to {}", path.display()));
        }
    }
    if let Some(path) = &args.hdr_log {
        let wall_start = SystemTime::now()
            .checked_sub(measured_start.elapsed())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        report.write_hdr_log(path, wall_start)?;
        progress(&format!(
            "bench: HdrHistogram log written to {}",
            path.display()
        ));
    }
    if let Some(error) = first_error.filter(|_| report.latencies_micros.is_empty()) {
        return Err(Failure::Other(format!(
            "every operation failed; the first with: {error}"
        )));
    }
    if let Some(failed) = verified.as_ref().and_then(unsound) {
        return Err(failed);
    }
    match comparison {
        Some(comparison) if comparison.regressed => Err(Failure::outcome(
            Exit::Regressed,
            format!(
                "regressed against {} beyond the {} % tolerance: {}",
                comparison.file,
                comparison.tolerance_pct,
                comparison.regressions.join("; ")
            ),
        )),
        _ => Ok(()),
    }
}

/// `--rate LOW..HIGH`: one open-loop run per step of the schedule, or per
/// probe of `--find-capacity`, each with its own warm-up; then one row per
/// step and, with `--slo`, the knee.
fn run_steps(
    args: &BenchArgs,
    shared: &Shared<'_>,
    connected: &Connected,
    out: Output,
) -> Result<(), Failure> {
    let Some(RateArg::Range { low, high }) = args.rate else {
        return Err(Failure::Other("a schedule needs a rate range".into()));
    };
    let mut first_error = None;
    // With --chart: the steps' seconds together, and where each began.
    let mut timeline: Option<Timeline> = None;
    let mut marks = Vec::new();
    // After a step that did not hold, the next waits as long as that
    // step's slowest call took from being sent (at most MAX_COOL_DOWN): the
    // backlog an overload built (server queues, a proxy's, the kernel's)
    // drains then, instead of counting against a step that might hold.
    // The warm-up alone is too short for that: its calls wait on the
    // backlog too, and the measured calls due behind them start late.
    let mut cool_down = Duration::ZERO;
    let mut run_step = |rate: f64| -> Result<Step, Failure> {
        if !cool_down.is_zero() {
            progress(&format!(
                "bench: cooling down {} ms after a step that did not hold",
                cool_down.as_millis()
            ));
            std::thread::sleep(cool_down);
        }
        progress(&format!(
            "bench: step at {} calls/s for {:.1} s",
            thousands(rate.round() as u64),
            args.step_duration.as_secs_f64()
        ));
        let counters = Counters::default();
        let step_shared = Shared {
            plan: shared.plan.at_rate(rate)?,
            counters: &counters,
            ..*shared
        };
        let mut measured = step_shared.measure(Some(rate))?;
        let error = measured.tally.first_error.take();
        first_error = first_error.take().or(error);
        let step = step_of(rate, &measured, args.slo.as_ref())?;
        let held = step.sustained.unwrap_or_else(|| step.rate_kept());
        cool_down = if held {
            Duration::ZERO
        } else {
            let slowest_us = measured
                .tally
                .service_micros
                .as_ref()
                .map_or(0, |service| service.max());
            Duration::from_micros(slowest_us).min(MAX_COOL_DOWN)
        };
        if let Some(seconds) = measured.tally.timeline.take() {
            let at_s = measured
                .start
                .saturating_duration_since(seconds.origin())
                .as_secs_f64();
            let verdict = match step.sustained {
                Some(true) => " ✓",
                Some(false) => " ✗",
                None => "",
            };
            marks.push(Mark {
                at_s,
                label: format!("{}/s{verdict}", thousands(rate.round() as u64)),
                target_rate: Some(rate),
                held: step.sustained,
            });
            match &mut timeline {
                Some(timeline) => timeline.merge(seconds),
                None => timeline = Some(seconds),
            }
        }
        if let Some(verdict) = step.sustained {
            progress(&format!(
                "bench: {} calls/s {}",
                thousands(rate.round() as u64),
                if verdict { "held" } else { "did not hold" }
            ));
        }
        Ok(step)
    };
    let mut steps = Vec::new();
    let sustainable = if args.find_capacity {
        let mut search = CapacitySearch::new(low, high);
        while let Some(rate) = search.next() {
            let step = run_step(rate)?;
            search.record(rate, step.sustained == Some(true));
            steps.push(step);
        }
        search.result()
    } else {
        let step = args.rate_step.unwrap_or(high - low);
        for rate in steps::schedule_rates(low, high, step).map_err(Failure::Usage)? {
            steps.push(run_step(rate)?);
        }
        steps::sustainable_rate(&steps)
    };
    let how = if args.find_capacity {
        "a capacity search"
    } else {
        "a schedule"
    };
    let mut text = format!(
        "tiny-cache bench against {}\n  {} threads, {how} of {} open-loop step{} of {:.2} s \
         after {:.2} s warm-up each; {} over {} keys ({}) of {}\n  latency from when each \
         call was due (corrected for coordinated omission); service p99 from when it was \
         sent\n\n",
        connected.label,
        args.threads,
        steps.len(),
        if steps.len() == 1 { "" } else { "s" },
        args.step_duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
        shared.mix.describe(),
        thousands(args.keys as u64),
        match args.hot_set_rotate {
            Some(every) => format!(
                "{}, hot set moving every {:.1} s",
                args.key_distribution,
                every.as_secs_f64()
            ),
            None => args.key_distribution.to_string(),
        },
        args.value_size.describe(),
    );
    text.push_str(&steps::table(&steps, args.slo.as_ref(), args.find_capacity));
    if let Some(error) = &first_error {
        text.push_str(&format!("  first error  {error}\n"));
    }
    if let Some(cluster) = &connected.cluster {
        text.push_str(&per_server_load(cluster));
    }
    let verified = shared.verifier.map(Verifier::json);
    if let Some(verified) = &verified {
        text.push_str(&verified.text());
    }
    write_stdout(text.as_bytes())?;
    if let (Some(chart), Some(timeline)) = (&args.chart, &timeline) {
        // A probe search jumps about: its steps are drawn in the order run.
        let verdict = match (&args.slo, sustainable) {
            (Some(_), Some(rate)) => {
                format!(", sustainable {} calls/s", thousands(rate.round() as u64))
            }
            (Some(_), None) => ", no step held the SLO".to_owned(),
            (None, _) => String::new(),
        };
        chart
            .write_timeline(
                &chart.path,
                &format!("tiny-cache bench: {how} of {} steps{verdict}", steps.len()),
                &format!(
                    "against {}\n{} threads, {:.1} s steps after {:.1} s warm-up each{}",
                    connected.label,
                    args.threads,
                    args.step_duration.as_secs_f64(),
                    args.warmup.as_secs_f64(),
                    args.slo
                        .as_ref()
                        .map(|slo| format!("; SLO {slo} from when due"))
                        .unwrap_or_default()
                ),
                &timeline.seconds(),
                &marks,
            )
            .map_err(Failure::Other)?;
        progress(&format!(
            "bench: timeline written to {}",
            chart.path.display()
        ));
    }
    if out.json {
        let json = ScheduleJson {
            mode: if args.find_capacity {
                "find-capacity"
            } else {
                "schedule"
            },
            server: connected.server.clone(),
            threads: args.threads,
            step_duration_s: args.step_duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            keys: args.keys,
            key_distribution: args.key_distribution.to_string(),
            hot_set_rotate_s: args.hot_set_rotate.map(|every| every.as_secs_f64()),
            mix: shared
                .mix
                .ops()
                .map(|op| {
                    let share = (shared.mix.share(op) * 1e3).round() / 1e3;
                    (op.name().to_owned(), share)
                })
                .collect(),
            slo: args.slo.as_ref().map(Slo::json),
            sustainable_rate: args.slo.as_ref().map(|_| sustainable),
            steps,
            verify: verified.clone(),
        };
        out.object(&json)?;
    } else if steps.iter().all(|step| step.ops == 0) {
        if let Some(error) = first_error {
            return Err(Failure::Other(format!(
                "every operation failed; the first with: {error}"
            )));
        }
    }
    match verified.as_ref().and_then(unsound) {
        Some(failed) => Err(failed),
        None => Ok(()),
    }
}

/// The failure `--verify` ends a run with when any value read was wrong.
fn unsound(verified: &verify::VerifyJson) -> Option<Failure> {
    (verified.failures > 0).then(|| {
        Failure::outcome(
            Exit::Unsound,
            format!(
                "--verify: {} of {} values read were wrong ({} stale, {} impossible, {} of \
                 another key, {} corrupt)",
                verified.failures,
                verified.checked,
                verified.stale,
                verified.impossible,
                verified.wrong_key,
                verified.corrupt
            ),
        )
    })
}

/// One step's row from what it measured, judged against `slo`.
fn step_of(rate: f64, measured: &Measured, slo: Option<&Slo>) -> Result<Step, Failure> {
    let tally = &measured.tally;
    let latencies = tally.all_latencies()?;
    let latency = Latency::of(&latencies);
    let ops = latencies.len();
    let errors = tally.errors();
    let seconds = measured.measured.as_secs_f64().max(1e-9);
    let mut step = Step {
        target_rate: rate,
        achieved_rate: ((ops + errors) as f64 / seconds * 10.0).round() / 10.0,
        ops,
        errors,
        unsent: tally.unsent,
        p50_us: latency.p50_us,
        p99_us: latency.p99_us,
        p999_us: latency.p999_us,
        max_us: latency.max_us,
        service_p99_us: tally
            .service_micros
            .as_ref()
            .map_or(0, |service| Latency::of(service).p99_us),
        slo_us: None,
        sustained: None,
    };
    if let Some(slo) = slo {
        let percentile = if latencies.is_empty() {
            0
        } else {
            latencies.value_at_quantile(slo.quantile)
        };
        step.judge(slo, percentile);
    }
    Ok(step)
}

/// Writes the first `count` keys, in batches, and fails on the first
/// refusal: a benchmark of misses would measure something else.
///
/// With `--verify` the values are self-describing and each write is
/// recorded, so that reads of pre-filled keys are judged too.
fn prefill(
    calls: &dyn CacheStore,
    data: &Data,
    count: usize,
    verifier: Option<&Verifier>,
) -> Result<(), Failure> {
    let mut next = 0;
    while next < count {
        let first = next;
        let mut bytes = 0;
        let mut writes = Vec::new();
        let mut values: Vec<Vec<u8>> = Vec::new();
        while next < count && next - first < PREFILL_BATCH_ITEMS && bytes < PREFILL_BATCH_BYTES {
            bytes += data.value_len(next) + 64;
            if let Some(verifier) = verifier {
                let write = verifier.begin_write(next);
                values.push(verifier.value(&data.keys[next], &write, data.value_len(next)));
                writes.push(write);
            }
            next += 1;
        }
        let items: Vec<(&str, &[u8])> = (first..next)
            .map(|key| {
                let value = match values.get(key - first) {
                    Some(value) => value.as_slice(),
                    None => data.value(key),
                };
                (data.keys[key].as_str(), value)
            })
            .collect();
        let results = calls.set_many(&items);
        if let Some(verifier) = verifier {
            for (index, (write, key)) in writes.iter().zip(first..).enumerate() {
                let landed = match &results {
                    Ok(items) => verify::landed(items, index, &data.keys[key]),
                    Err(_) => Landed::Unknown,
                };
                verifier.end_write(*write, landed);
            }
        }
        let results = results
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

/// What the benchmark threads share.
#[derive(Clone, Copy)]
struct Shared<'a> {
    calls: &'a dyn CacheStore,
    data: &'a Data,
    mix: &'a Mix,
    sampler: &'a OpSampler,
    distribution: KeyDistribution,
    batch: usize,
    plan: Plan,
    counters: &'a Counters,
    /// `--verify`: the record of writes that reads are judged against.
    verifier: Option<&'a Verifier>,
    /// `--hot-set-rotate`.
    hot_set: Option<HotSet>,
    /// With `--chart`: where the threads' timelines count seconds from.
    timeline_origin: Option<Instant>,
}

/// What one run (or one step of a schedule) measured.
struct Measured {
    tally: Tally,
    /// When the threads started, and when the measured window did.
    start: Instant,
    measured_start: Instant,
    /// The measured window: to the last measured call's end, and at least
    /// the duration asked for.
    measured: Duration,
    usage: Option<ProcessUsage>,
}

impl Shared<'_> {
    /// Runs the threads on this plan (open loop at `target_rate`, when
    /// given) and merges what they measured.
    fn measure(&self, target_rate: Option<f64>) -> Result<Measured, Failure> {
        let (tallies, start, usage) = self.run_threads(target_rate)?;
        let mut tally = Tally::new(self.mix, target_rate.is_some())?;
        for thread in tallies {
            tally.merge(thread)?;
        }
        let plan = self.plan;
        let measured_start = plan.measured_start(start);
        let measured_end = match plan.length {
            Length::Time(duration) => tally
                .last_end
                .unwrap_or(start)
                .max(measured_start + duration),
            Length::Requests(_) => tally.last_end.unwrap_or(measured_start),
        };
        Ok(Measured {
            tally,
            start,
            measured_start,
            measured: measured_end.saturating_duration_since(measured_start),
            usage,
        })
    }

    /// Starts the threads together, prints progress while they run, and
    /// returns what each measured, when they started, and the process's
    /// resource use over the measured window.
    fn run_threads(
        &self,
        target_rate: Option<f64>,
    ) -> Result<(Vec<Tally>, Instant, Option<ProcessUsage>), Failure> {
        let threads = self.plan.threads;
        // The threads learn the start once all exist, so that none starts
        // its schedule late for having been spawned last; a closed channel
        // (a spawn failed) tells them to give up instead.
        let (start_tx, start_rx) = crossbeam_channel::bounded::<Instant>(threads);
        // Each thread holds a sender until it ends: when the last one is
        // gone, the progress loop knows the run is over.
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(threads);
            for index in 0..threads {
                let (start_rx, done) = (start_rx.clone(), done_tx.clone());
                let seed = fastrand::u64(..) ^ index as u64;
                let spawned = std::thread::Builder::new()
                    .name(format!("bench-{index}"))
                    .spawn_scoped(scope, move || {
                        let _done = done;
                        match start_rx.recv() {
                            Ok(start) => self.thread(index, seed, start),
                            Err(_) => Ok(None),
                        }
                    });
                match spawned {
                    Ok(handle) => handles.push(handle),
                    Err(e) => {
                        self.counters.stop.store(true, Ordering::Relaxed);
                        drop(start_tx);
                        return Err(Failure::Other(format!("cannot start a bench thread: {e}")));
                    }
                }
            }
            drop(done_tx);
            let start = Instant::now();
            for _ in 0..threads {
                // The channel holds one start per thread: this never blocks.
                let _ = start_tx.send(start);
            }
            let usage = self.watch(start, target_rate, &done_rx);
            let mut tallies = Vec::with_capacity(threads);
            for handle in handles {
                match handle.join() {
                    Ok(Ok(Some(tally))) => tallies.push(tally),
                    Ok(Ok(None)) => {}
                    Ok(Err(failure)) => return Err(failure),
                    Err(_) => return Err(Failure::Other("a bench thread panicked".into())),
                }
            }
            Ok((tallies, start, usage))
        })
    }

    /// From the coordinating thread: waits for the measured window, prints
    /// progress once a second until every thread is done. Returns the
    /// process's resource use over the window.
    fn watch(
        &self,
        start: Instant,
        target_rate: Option<f64>,
        done: &Receiver<()>,
    ) -> Option<ProcessUsage> {
        let window = self.plan.measured_start(start);
        let over = |deadline: Instant| {
            matches!(
                done.recv_deadline(deadline),
                Err(RecvTimeoutError::Disconnected)
            )
        };
        let usage_before = if over(window) {
            None
        } else {
            ProcessUsage::now()
        };
        let mut last = (Instant::now(), self.counters.calls.load(Ordering::Relaxed));
        while usage_before.is_some() && !over(last.0 + PROGRESS_INTERVAL) {
            let now = Instant::now();
            let calls = self.counters.calls.load(Ordering::Relaxed);
            let rate = (calls - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
            let mut line = format!(
                "bench: {:>5.1} s  {:>12} ops/s",
                now.saturating_duration_since(window).as_secs_f64(),
                thousands(rate.round() as u64),
            );
            if let Some(target) = target_rate {
                line.push_str(&format!(" (target {})", thousands(target.round() as u64)));
            }
            if let Length::Requests(n) = self.plan.length {
                line.push_str(&format!("  {}/{} calls", thousands(calls), thousands(n)));
            }
            line.push_str(&format!(
                "  errors {}",
                self.counters.errors.load(Ordering::Relaxed)
            ));
            progress(&line);
            last = (now, calls);
        }
        let usage_after = ProcessUsage::now();
        usage_after
            .zip(usage_before)
            .map(|(after, before)| after.since(&before))
    }

    /// One benchmark thread, from `start`.
    fn thread(&self, index: usize, seed: u64, start: Instant) -> Result<Option<Tally>, Failure> {
        let mut thread = Thread {
            shared: self,
            rng: SmallRng::seed_from_u64(seed),
            keys: self
                .distribution
                .sampler(self.data.keys.len(), index, self.plan.threads),
            tally: Tally {
                timeline: self.timeline_origin.map(Timeline::new),
                ..Tally::new(self.mix, matches!(self.plan.pace, Pace::Open(_)))?
            },
            items: Vec::with_capacity(self.batch),
            key_numbers: Vec::with_capacity(self.batch),
            parts: Vec::with_capacity(self.plan.pipeline),
        };
        match self.plan.pace {
            Pace::Closed => thread.closed_loop(start),
            Pace::Open(schedule) => thread.open_loop(&schedule, index, start),
        }
        Ok(Some(thread.tally))
    }
}

/// One benchmark thread's state.
struct Thread<'s, 'a> {
    shared: &'s Shared<'a>,
    rng: SmallRng,
    keys: workload::KeySampler,
    tally: Tally,
    /// The keys and values of the call being made (reused: no allocation
    /// per call).
    items: Vec<(&'a str, &'a [u8])>,
    /// The numbers of those keys (for `--verify`).
    key_numbers: Vec<usize>,
    /// The operations of the pipeline being sent (reused likewise).
    parts: Vec<Part<'a>>,
}

impl Thread<'_, '_> {
    /// The next key, from the distribution, moved by the hot set.
    fn next_key(&mut self) -> usize {
        let key = self.keys.next(&mut self.rng);
        match self.shared.hot_set {
            Some(hot) => hot.place_at(key, Instant::now()),
            None => key,
        }
    }

    /// Calls (or pipelines) back to back; a call counts when it starts in
    /// the measured window, a pipeline's operations when it does.
    fn closed_loop(&mut self, start: Instant) {
        let plan = self.shared.plan;
        let window = start + plan.warmup;
        let counters = self.shared.counters;
        loop {
            if counters.stop.load(Ordering::Relaxed) {
                return;
            }
            let started = Instant::now();
            // Whether the operations count, and how many to send: a
            // pipeline's worth, or with --requests what is left of them.
            let (measured, count) = match plan.length {
                Length::Time(duration) => {
                    if started >= window + duration {
                        return;
                    }
                    (started >= window, plan.pipeline)
                }
                Length::Requests(n) if started >= window => {
                    let claimed = counters
                        .tickets
                        .fetch_add(plan.pipeline as u64, Ordering::Relaxed);
                    if claimed >= n {
                        return;
                    }
                    let left = usize::try_from(n - claimed).unwrap_or(usize::MAX);
                    (true, plan.pipeline.min(left))
                }
                Length::Requests(_) => (false, plan.pipeline),
            };
            if plan.pipeline == 1 {
                self.call(measured, started, None);
            } else {
                self.pipelined(measured, started, count);
            }
        }
    }

    /// Calls on the schedule; a call counts when it is due in the measured
    /// window, and its latency runs from when it was due.
    fn open_loop(&mut self, schedule: &Schedule, index: usize, start: Instant) {
        let plan = self.shared.plan;
        let (first_measured, end) = plan.measured_calls(schedule);
        // With a --duration, give up on the calls still unsent this long
        // after the window closed; with --requests, every call is sent.
        let give_up = match plan.length {
            Length::Time(_) => schedule
                .due_at(start, end)
                .and_then(|closed| closed.checked_add(MAX_DRAIN)),
            Length::Requests(_) => None,
        };
        let mut call = schedule.first_call_of(index);
        while call < end {
            if self.shared.counters.stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(due) = schedule.due_at(start, call) else {
                return;
            };
            let now = Instant::now();
            if now < due {
                std::thread::sleep(due - now);
            } else if give_up.is_some_and(|limit| now > limit) {
                self.tally.unsent += schedule.calls_of_thread(index, call.max(first_measured), end);
                return;
            }
            self.call(call >= first_measured, due, Some(Instant::now()));
            call = schedule.next_call_after(call);
        }
    }

    /// Draws an operation and its keys, makes the call and, when
    /// `measured`, counts it with its latency from `due` (and its service
    /// time from `sent`, in an open loop).
    fn call(&mut self, measured: bool, due: Instant, sent: Option<Instant>) {
        let shared = self.shared;
        let op = shared.sampler.next(&mut self.rng);
        let count = if op.is_batch() { shared.batch } else { 1 };
        let data = shared.data;
        self.items.clear();
        self.key_numbers.clear();
        for _ in 0..count {
            let key = self.next_key();
            self.items.push((data.keys[key].as_str(), data.value(key)));
            self.key_numbers.push(key);
        }
        let outcome = match shared.verifier {
            Some(verifier) => verify::perform(shared.calls, verifier, data, op, &self.key_numbers),
            None => perform(shared.calls, op, &self.items),
        };
        let ended = Instant::now();
        if let Some(timeline) = &mut self.tally.timeline {
            let latency = ended.saturating_duration_since(due);
            timeline.record(ended, outcome.is_ok().then_some(latency));
        }
        if !measured {
            return;
        }
        let failed = outcome.is_err();
        self.tally.record(
            op,
            outcome,
            ended.saturating_duration_since(due),
            sent.map(|sent| ended.saturating_duration_since(sent)),
        );
        self.tally.last_end = Some(ended);
        shared.counters.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Draws `count` operations and their keys as [`call`](Self::call)
    /// does, sends them as one pipeline and, when `measured`, counts each
    /// one with its latency from `sent` to the pipeline's end.
    fn pipelined(&mut self, measured: bool, sent: Instant, count: usize) {
        let shared = self.shared;
        let data = shared.data;
        self.parts.clear();
        for _ in 0..count {
            let op = shared.sampler.next(&mut self.rng);
            let key = self.next_key();
            self.parts.push(Part {
                op,
                key: data.keys[key].as_str(),
                value: data.shared_value(key),
            });
        }
        let outcomes = perform_pipeline(shared.calls, &self.parts);
        let ended = Instant::now();
        if let Some(timeline) = &mut self.tally.timeline {
            let latency = ended.saturating_duration_since(sent);
            for outcome in &outcomes {
                timeline.record(ended, outcome.is_ok().then_some(latency));
            }
        }
        if !measured {
            return;
        }
        let latency = ended.saturating_duration_since(sent);
        let mut failed = 0;
        for (part, outcome) in self.parts.iter().zip(outcomes) {
            failed += u64::from(outcome.is_err());
            self.tally.record(part.op, outcome, latency, None);
        }
        self.tally.last_end = Some(ended);
        let counters = shared.counters;
        counters.calls.fetch_add(count as u64, Ordering::Relaxed);
        if failed > 0 {
            counters.errors.fetch_add(failed, Ordering::Relaxed);
        }
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

/// `--hot-set-rotate`: a positive time, at most a day.
fn parse_hot_set_rotate(raw: &str) -> Result<Duration, String> {
    at_most_a_day(steps::parse_span(raw)?, "--hot-set-rotate")
}

/// `--step-duration`: a positive time, at most a day.
fn parse_step_duration(raw: &str) -> Result<Duration, String> {
    at_most_a_day(steps::parse_span(raw)?, "--step-duration")
}

/// `--rate-step`: a positive number of calls per second (whether the threads
/// can reach it is checked with --threads, in `Schedule::new`).
fn parse_rate(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(rate) if (schedule::MIN_RATE_PER_S..=schedule::MAX_RATE_PER_S).contains(&rate) => {
            Ok(rate)
        }
        _ => Err(format!(
            "{raw:?} must be a number of calls per second from {} to {}",
            schedule::MIN_RATE_PER_S,
            schedule::MAX_RATE_PER_S
        )),
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

/// Each server's share of the calls (prefill included) and its health: how
/// evenly the keys spread, and whether one server lagged.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_outside_zero_to_one_is_refused() {
        assert_eq!(parse_ratio("0.9"), Ok(0.9));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-0.1").is_err());
    }

    #[test]
    fn rate_is_a_positive_number() {
        assert_eq!(parse_rate("2000"), Ok(2000.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "fast", "inf", "NaN", "1e-300", "1e300"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn open_loop_measures_the_calls_due_in_the_window() {
        let plan = Plan {
            pace: Pace::Open(Schedule::new(2000.0, 16).unwrap()),
            length: Length::Time(Duration::from_secs(3)),
            warmup: Duration::from_millis(500),
            threads: 16,
            pipeline: 1,
        };
        let Pace::Open(schedule) = plan.pace else {
            unreachable!()
        };
        assert_eq!(plan.measured_calls(&schedule), (1000, 7000));
        let start = Instant::now();
        assert_eq!(
            plan.measured_start(start),
            start + Duration::from_millis(500)
        );
        let requests = Plan {
            length: Length::Requests(10),
            ..plan
        };
        assert_eq!(requests.measured_calls(&schedule), (1000, 1010));
    }
}
