//! What a run measured, and how it is shown: the text report with its
//! per-operation table, the `--json` object, and the `--hdr-log` interval
//! log.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tiny_cache_client::Error;

use super::calls::Outcome;
use super::workload::{KeyDistribution, Mix, Op, ValueSize};
use crate::chart;
use crate::usage::ProcessUsage;
use crate::{error_kind, thousands, Failure};

/// Largest latency the histograms hold, in µs (one hour); slower calls are
/// recorded as this.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// Significant digits the histograms keep: 0.1 % resolution.
const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;

/// The error kind of a multi-key call in which the server refused a key.
pub const ITEM_REFUSED: &str = "item_refused";

/// How far short of `--rate` a run may fall and still be said to reach it:
/// the window's edges and the first calls of each thread cost a little.
const RATE_SHORTFALL_TOLERANCE: f64 = 0.02;

/// A histogram of latencies in µs that grows to whatever it is given: per
/// thread and per operation, most never see more than a few milliseconds.
pub fn new_histogram() -> Result<Histogram<u64>, Failure> {
    Histogram::new(HISTOGRAM_SIGNIFICANT_DIGITS)
        .map_err(|e| Failure::Other(format!("cannot create a latency histogram: {e:?}")))
}

/// Records `latency` in µs, growing the histogram as needed; should it
/// fail to grow, the value is clamped into its range rather than lost.
fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_MICROS);
    if histogram.record(micros).is_err() {
        histogram.saturating_record(micros);
    }
}

/// What the calls of one operation measured.
#[derive(Debug)]
pub struct OpTally {
    pub latencies_micros: Histogram<u64>,
    pub hits: u64,
    pub misses: u64,
    /// Failed calls by error kind (`unavailable`, `item_refused`, ...).
    pub errors: BTreeMap<&'static str, u64>,
}

impl OpTally {
    fn errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Significant digits of the timeline's per-second histograms: 1 %, plenty
/// for a picture, and a tenth of the memory of the report's histograms.
const TIMELINE_SIGNIFICANT_DIGITS: u8 = 2;

/// The shortest last second the timeline draws (scaled to a whole one).
const MIN_LAST_SECOND_S: f64 = 0.25;

/// What happened in each second of the run (warm-ups included, so that
/// the picture has no holes): calls ended, failures, latencies from when
/// each call was due. Kept only for `--chart`.
#[derive(Debug)]
pub struct Timeline {
    origin: Instant,
    seconds: Vec<SecondTally>,
    /// When the last call ended, from `origin`: how much of the last
    /// second the run covered.
    last_end: Duration,
}

#[derive(Debug, Default)]
struct SecondTally {
    calls: u64,
    errors: u64,
    /// `None` if a histogram could not be made: the second keeps its
    /// counts.
    latencies_micros: Option<Histogram<u64>>,
}

impl Timeline {
    /// A timeline counting seconds from `origin`.
    pub fn new(origin: Instant) -> Timeline {
        Timeline {
            origin,
            seconds: Vec::new(),
            last_end: Duration::ZERO,
        }
    }

    /// Counts a call that ended at `ended`: with its latency, or `None`
    /// when it failed.
    pub fn record(&mut self, ended: Instant, latency: Option<Duration>) {
        let offset = ended.saturating_duration_since(self.origin);
        self.last_end = self.last_end.max(offset);
        let second = offset.as_secs();
        let Ok(index) = usize::try_from(second) else {
            return;
        };
        if index >= self.seconds.len() {
            self.seconds.resize_with(index + 1, SecondTally::default);
        }
        let tally = &mut self.seconds[index];
        tally.calls += 1;
        match latency {
            Some(latency) => {
                if tally.latencies_micros.is_none() {
                    tally.latencies_micros = Histogram::new(TIMELINE_SIGNIFICANT_DIGITS).ok();
                }
                if let Some(histogram) = &mut tally.latencies_micros {
                    record(histogram, latency);
                }
            }
            None => tally.errors += 1,
        }
    }

    /// Adds another thread's (or step's) seconds to these.
    pub fn merge(&mut self, other: Timeline) {
        self.last_end = self.last_end.max(other.last_end);
        if other.seconds.len() > self.seconds.len() {
            self.seconds
                .resize_with(other.seconds.len(), SecondTally::default);
        }
        for (ours, theirs) in self.seconds.iter_mut().zip(other.seconds) {
            ours.calls += theirs.calls;
            ours.errors += theirs.errors;
            match (&mut ours.latencies_micros, theirs.latencies_micros) {
                (Some(ours), Some(theirs)) => {
                    if ours.add(&theirs).is_err() {
                        // Cannot happen between histograms that grow;
                        // should it, the second shows the larger share.
                        if theirs.len() > ours.len() {
                            *ours = theirs;
                        }
                    }
                }
                (slot @ None, theirs) => *slot = theirs,
                (Some(_), None) => {}
            }
        }
    }

    /// The seconds as the chart draws them. The run ends part-way through
    /// its last second: that second's calls are scaled to a whole second
    /// (it would otherwise read as a drop at the end), or left out when
    /// it is too short a sliver to say anything.
    pub fn seconds(&self) -> Vec<chart::timeline::Second> {
        let last = self.seconds.len().saturating_sub(1);
        let covered = self.last_end.as_secs_f64() - last as f64;
        self.seconds
            .iter()
            .enumerate()
            .filter(|&(index, _)| index < last || covered >= MIN_LAST_SECOND_S)
            .map(|(index, tally)| chart::timeline::Second {
                at_s: index as f64,
                calls: if index == last && covered < 1.0 {
                    (tally.calls as f64 / covered).round() as u64
                } else {
                    tally.calls
                },
                errors: tally.errors,
                p99_us: tally
                    .latencies_micros
                    .as_ref()
                    .filter(|h| !h.is_empty())
                    .map_or(0, |h| h.value_at_quantile(0.99)),
            })
            .collect()
    }

    pub fn origin(&self) -> Instant {
        self.origin
    }
}

/// What one thread (and, merged, the whole run) measured.
#[derive(Debug)]
pub struct Tally {
    pub ops: BTreeMap<Op, OpTally>,
    /// Latency from each call's actual start (open loop only; there the
    /// operations' histograms count from when calls were due).
    pub service_micros: Option<Histogram<u64>>,
    pub first_error: Option<Error>,
    /// When the last measured call ended.
    pub last_end: Option<std::time::Instant>,
    /// Measured calls an open-loop run never sent (see `MAX_DRAIN`).
    pub unsent: u64,
    /// Every call by the second it ended in, for `--chart`.
    pub timeline: Option<Timeline>,
}

impl Tally {
    pub fn new(mix: &Mix, open_loop: bool) -> Result<Tally, Failure> {
        let mut ops = BTreeMap::new();
        for op in mix.ops() {
            let tally = OpTally {
                latencies_micros: new_histogram()?,
                hits: 0,
                misses: 0,
                errors: BTreeMap::new(),
            };
            ops.insert(op, tally);
        }
        Ok(Tally {
            ops,
            service_micros: open_loop.then(new_histogram).transpose()?,
            first_error: None,
            last_end: None,
            unsent: 0,
            timeline: None,
        })
    }

    /// Counts one measured call: `latency` from when it was due (or
    /// started), `service` from when it started (open loop).
    pub fn record(
        &mut self,
        op: Op,
        outcome: Result<Outcome, Error>,
        latency: Duration,
        service: Option<Duration>,
    ) {
        let Some(tally) = self.ops.get_mut(&op) else {
            return;
        };
        match outcome {
            Ok(outcome) if outcome.refused == 0 => {
                record(&mut tally.latencies_micros, latency);
                tally.hits += outcome.hits;
                tally.misses += outcome.misses;
                if let (Some(histogram), Some(service)) = (&mut self.service_micros, service) {
                    record(histogram, service);
                }
            }
            Ok(outcome) => {
                tally.hits += outcome.hits;
                tally.misses += outcome.misses;
                *tally.errors.entry(ITEM_REFUSED).or_default() += 1;
            }
            Err(error) => {
                *tally.errors.entry(error_kind(&error)).or_default() += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    /// Adds another thread's counts to these.
    pub fn merge(&mut self, other: Tally) -> Result<(), Failure> {
        let merge_failed = |e| Failure::Other(format!("cannot merge latency histograms: {e:?}"));
        for (op, theirs) in other.ops {
            match self.ops.get_mut(&op) {
                Some(ours) => {
                    ours.latencies_micros
                        .add(&theirs.latencies_micros)
                        .map_err(merge_failed)?;
                    ours.hits += theirs.hits;
                    ours.misses += theirs.misses;
                    for (kind, n) in theirs.errors {
                        *ours.errors.entry(kind).or_default() += n;
                    }
                }
                None => {
                    self.ops.insert(op, theirs);
                }
            }
        }
        if let (Some(ours), Some(theirs)) = (&mut self.service_micros, &other.service_micros) {
            ours.add(theirs).map_err(merge_failed)?;
        }
        self.first_error = self.first_error.take().or(other.first_error);
        self.last_end = self.last_end.max(other.last_end);
        self.unsent += other.unsent;
        match (&mut self.timeline, other.timeline) {
            (Some(ours), Some(theirs)) => ours.merge(theirs),
            (slot @ None, theirs) => *slot = theirs,
            (Some(_), None) => {}
        }
        Ok(())
    }

    /// Every operation's latencies in one histogram.
    pub fn all_latencies(&self) -> Result<Histogram<u64>, Failure> {
        let mut all = new_histogram()?;
        for tally in self.ops.values() {
            all.add(&tally.latencies_micros)
                .map_err(|e| Failure::Other(format!("cannot merge latency histograms: {e:?}")))?;
        }
        Ok(all)
    }

    pub fn errors(&self) -> u64 {
        self.ops.values().map(OpTally::errors).sum()
    }
}

/// The run's shape, as the user asked for it.
#[derive(Debug)]
pub struct Shape<'a> {
    pub server_label: String,
    /// `embedded`, or the address measured.
    pub server: String,
    pub embedded: bool,
    pub threads: usize,
    /// Operations per pipeline (`--pipeline`); 1 for one call at a time.
    pub pipeline: usize,
    pub target_rate: Option<f64>,
    pub requests: Option<u64>,
    pub warmup: Duration,
    pub mix: &'a Mix,
    pub batch: usize,
    pub keys: usize,
    pub key_prefix: &'a str,
    pub distribution: KeyDistribution,
    pub value_size: ValueSize,
    pub prefilled: usize,
    /// `--hot-set-rotate`.
    pub hot_set_rotate: Option<Duration>,
}

/// Everything the report shows.
pub struct Report<'a> {
    pub shape: Shape<'a>,
    pub measured: Duration,
    pub tally: Tally,
    pub latencies_micros: Histogram<u64>,
    pub usage: Option<ProcessUsage>,
}

/// Summary statistics of one histogram, in µs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    /// The summary of `histogram`; all zeros when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency {
                p50_us: 0,
                p99_us: 0,
                p999_us: 0,
                max_us: 0,
                mean_us: 0.0,
            };
        }
        Latency {
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            mean_us: tenths(histogram.mean()),
        }
    }

    fn text(&self) -> String {
        format!(
            "p50 {} µs   p99 {} µs   p99.9 {} µs   max {} µs   mean {:.1} µs",
            thousands(self.p50_us),
            thousands(self.p99_us),
            thousands(self.p999_us),
            thousands(self.max_us),
            self.mean_us
        )
    }
}

impl Report<'_> {
    /// Successful calls.
    pub fn ops(&self) -> u64 {
        self.latencies_micros.len()
    }

    fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    pub fn ops_per_second(&self) -> f64 {
        self.per_second(self.ops())
    }

    /// Calls made per second, failed ones included: what `--rate` asks for.
    fn achieved_rate(&self) -> f64 {
        self.per_second(self.ops() + self.tally.errors())
    }

    /// Whether an open-loop run kept its schedule; `None` in a closed loop.
    fn rate_reached(&self) -> Option<bool> {
        let target = self.shape.target_rate?;
        Some(
            self.tally.unsent == 0
                && self.achieved_rate() >= target * (1.0 - RATE_SHORTFALL_TOLERANCE),
        )
    }

    fn hits_and_lookups(&self) -> (u64, u64) {
        let hits = self.tally.ops.values().map(|t| t.hits).sum::<u64>();
        let misses = self.tally.ops.values().map(|t| t.misses).sum::<u64>();
        (hits, hits + misses)
    }

    /// CPU µs and context switches per call (failed calls included), when
    /// getrusage worked and anything completed.
    fn per_op(&self) -> Option<(f64, f64)> {
        let calls = self.ops() + self.tally.errors();
        let usage = self.usage?;
        (calls > 0).then(|| {
            (
                usage.cpu.as_secs_f64() * 1e6 / calls as f64,
                usage.context_switches as f64 / calls as f64,
            )
        })
    }

    fn mode(&self) -> String {
        match self.shape.target_rate {
            Some(rate) => format!("open loop at {} calls/s", thousands(rate.round() as u64)),
            None if self.shape.pipeline > 1 => format!(
                "closed loop in pipelines of {} operations",
                self.shape.pipeline
            ),
            None => "closed loop".to_owned(),
        }
    }

    /// What the chart's title and caption show.
    pub fn chart_run(&self) -> chart::Run {
        chart::Run {
            server: self.shape.server_label.clone(),
            threads: self.shape.threads,
            mode: self.mode(),
            values: self.shape.value_size.describe(),
            mix: self.shape.mix.describe(),
            keys: self.shape.keys,
            measured: self.measured,
            warmup: self.shape.warmup,
            ops_per_second: self.ops_per_second(),
            errors: self.tally.errors(),
        }
    }

    pub fn text(&self) -> String {
        let shape = &self.shape;
        let mut text = format!(
            "tiny-cache bench against {}\n  {}\n  keys: {} {}{} named {}N, {} written first{}\n\n",
            shape.server_label,
            self.chart_run().parameters(),
            thousands(shape.keys as u64),
            shape.distribution,
            shape
                .hot_set_rotate
                .map(|every| format!(" (hot set moving every {:.1} s)", every.as_secs_f64()))
                .unwrap_or_default(),
            shape.key_prefix,
            thousands(shape.prefilled as u64),
            if shape.mix.has_batches() {
                format!("; {} keys per multi-key call", shape.batch)
            } else {
                String::new()
            },
        );
        let (hits, lookups) = self.hits_and_lookups();
        text.push_str(&format!(
            "  throughput   {} ops/s  ({} ops, {} errors, {} misses)\n",
            thousands(self.ops_per_second().round() as u64),
            thousands(self.ops()),
            self.tally.errors(),
            lookups - hits
        ));
        if let (Some(target), Some(reached)) = (shape.target_rate, self.rate_reached()) {
            let achieved = self.achieved_rate();
            let verdict = if reached {
                "reached".to_owned()
            } else {
                format!(
                    "FELL SHORT by {:.1} %{}: the server or the {} threads could not keep up \
                     (add --threads, or lower --rate)",
                    (1.0 - achieved / target).max(0.0) * 100.0,
                    if self.tally.unsent > 0 {
                        format!(", {} due calls never sent", thousands(self.tally.unsent))
                    } else {
                        String::new()
                    },
                    shape.threads
                )
            };
            text.push_str(&format!(
                "  rate         target {} calls/s, achieved {} calls/s: {verdict}\n",
                thousands(target.round() as u64),
                thousands(achieved.round() as u64),
            ));
        }
        if lookups > 0 {
            text.push_str(&format!(
                "  hits         {} of {} keys looked up ({:.1} %)\n",
                thousands(hits),
                thousands(lookups),
                hits as f64 * 100.0 / lookups as f64
            ));
        }
        let latency = Latency::of(&self.latencies_micros);
        match &self.tally.service_micros {
            Some(service) => {
                text.push_str(&format!(
                    "  latency      {}\n               (from when each call was due: \
                     corrected for coordinated omission)\n",
                    latency.text()
                ));
                text.push_str(&format!(
                    "  service      {}\n               (from when each call was sent)\n",
                    Latency::of(service).text()
                ));
            }
            None if shape.pipeline > 1 => text.push_str(&format!(
                "  latency      {}\n               (each operation's: from sending its pipeline \
                 of {} to the pipeline's completion)\n",
                latency.text(),
                shape.pipeline
            )),
            None => text.push_str(&format!("  latency      {}\n", latency.text())),
        }
        let scope = if shape.embedded {
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
        text.push_str(&self.table());
        text
    }

    /// One row per operation.
    fn table(&self) -> String {
        let mut text = format!(
            "\n  {:<16}{:>10}{:>11}{:>11}{:>11}{:>11}{:>7}  errors\n",
            "operation", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "hit %"
        );
        for op in Op::ALL {
            let Some(tally) = self.tally.ops.get(&op) else {
                continue;
            };
            let latency = Latency::of(&tally.latencies_micros);
            let lookups = tally.hits + tally.misses;
            let hit_percent = if op.looks_up() && lookups > 0 {
                format!("{:.1}", tally.hits as f64 * 100.0 / lookups as f64)
            } else {
                "-".to_owned()
            };
            let errors = tally.errors();
            let mut errors_text = thousands(errors);
            if errors > 0 {
                let kinds: Vec<String> = tally
                    .errors
                    .iter()
                    .map(|(kind, n)| format!("{kind} {}", thousands(*n)))
                    .collect();
                errors_text.push_str(&format!(" ({})", kinds.join(", ")));
            }
            text.push_str(&format!(
                "  {:<16}{:>10}{:>11}{:>11}{:>11}{:>11}{:>7}  {errors_text}\n",
                op.name(),
                thousands(self.per_second(tally.latencies_micros.len()).round() as u64),
                thousands(latency.p50_us),
                thousands(latency.p99_us),
                thousands(latency.p999_us),
                thousands(latency.max_us),
                hit_percent,
            ));
        }
        text
    }

    /// The results as `--json` prints them (without the baseline's verdict,
    /// which is made from this).
    pub fn json(&self) -> BenchJson {
        let shape = &self.shape;
        let per_op = self.per_op();
        let latency = Latency::of(&self.latencies_micros);
        let (hits, lookups) = self.hits_and_lookups();
        let operations = self
            .tally
            .ops
            .iter()
            .map(|(op, tally)| {
                let lookups = tally.hits + tally.misses;
                let json = OpJson {
                    share: thousandths(shape.mix.share(*op)),
                    ops: tally.latencies_micros.len(),
                    ops_per_s: tenths(self.per_second(tally.latencies_micros.len())),
                    latency: Latency::of(&tally.latencies_micros),
                    hits: tally.hits,
                    misses: tally.misses,
                    hit_ratio: (op.looks_up() && lookups > 0).then(|| ratio(tally.hits, lookups)),
                    errors: tally.errors(),
                    errors_by_kind: tally
                        .errors
                        .iter()
                        .map(|(kind, n)| ((*kind).to_owned(), *n))
                        .collect(),
                };
                (op.name().to_owned(), json)
            })
            .collect();
        BenchJson {
            ops_per_s: tenths(self.ops_per_second()),
            p50_us: latency.p50_us,
            p99_us: latency.p99_us,
            p999_us: latency.p999_us,
            mean_us: latency.mean_us,
            max_us: latency.max_us,
            errors: self.tally.errors(),
            misses: lookups - hits,
            hits,
            hit_ratio: (lookups > 0).then(|| ratio(hits, lookups)),
            ops: self.ops(),
            threads: shape.threads,
            pipeline: shape.pipeline,
            mode: if shape.target_rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .to_owned(),
            target_rate: shape.target_rate,
            achieved_rate: tenths(self.achieved_rate()),
            rate_reached: self.rate_reached(),
            unsent: shape.target_rate.map(|_| self.tally.unsent),
            requests: shape.requests,
            duration_s: thousandths(self.measured.as_secs_f64()),
            warmup_s: thousandths(shape.warmup.as_secs_f64()),
            value_size: shape.value_size.is_fixed().then_some(shape.value_size.min),
            value_size_min: shape.value_size.min,
            value_size_max: shape.value_size.max,
            get_ratio: thousandths(shape.mix.share(Op::Get)),
            batch: shape.batch,
            keys: shape.keys,
            key_distribution: shape.distribution.to_string(),
            key_prefix: shape.key_prefix.to_owned(),
            prefill_keys: shape.prefilled,
            hot_set_rotate_s: shape.hot_set_rotate.map(|every| every.as_secs_f64()),
            cpu_us_per_op: per_op.map(|(cpu, _)| thousandths(cpu)),
            ctx_switches_per_op: per_op.map(|(_, switches)| thousandths(switches)),
            usage_includes_server: shape.embedded,
            server: shape.server.clone(),
            mix: shape
                .mix
                .ops()
                .map(|op| (op.name().to_owned(), thousandths(shape.mix.share(op))))
                .collect(),
            service: self.tally.service_micros.as_ref().map(Latency::of),
            operations,
            baseline: None,
            verify: None,
        }
    }

    /// Writes the interval log of `--hdr-log`: one interval spanning the
    /// measured window, untagged for all operations, then one tagged with
    /// each operation's name. Values are µs.
    pub fn write_hdr_log(&self, path: &Path, measured_start: SystemTime) -> Result<(), Failure> {
        let failed = |why: String| {
            Failure::Other(format!("cannot write --hdr-log {}: {why}", path.display()))
        };
        let mut log = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        let mut writer = IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "tiny-cache bench against {}: {}",
                self.shape.server_label,
                self.chart_run().parameters()
            ))
            .add_comment(
                "Values are microseconds (HistogramLogProcessor -outputValueUnitRatio 1000 \
                 shows milliseconds); an untagged interval for every operation, then one \
                 tagged with each operation's name",
            )
            .with_start_time(measured_start)
            .with_base_time(measured_start)
            // The log's max column in milliseconds, as other tools write it.
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut log, &mut serializer)
            .map_err(|e| failed(e.to_string()))?;
        writer
            .write_histogram(&self.latencies_micros, Duration::ZERO, self.measured, None)
            .map_err(|e| failed(format!("{e:?}")))?;
        for (op, tally) in &self.tally.ops {
            writer
                .write_histogram(
                    &tally.latencies_micros,
                    Duration::ZERO,
                    self.measured,
                    Tag::new(op.name()),
                )
                .map_err(|e| failed(format!("{e:?}")))?;
        }
        drop(writer);
        std::fs::write(path, log).map_err(|e| failed(e.to_string()))
    }
}

/// `bench --json`'s object; the field names are part of the tool's
/// interface (README). The flat fields come first, so that a reader looking
/// for the first `"p99_us":` finds the run's own.
///
/// `--baseline` reads a saved run back through this same type: throughput
/// and p99 must be there, every other field defaults when an older run
/// lacks it.
#[derive(Debug, Serialize, Deserialize)]
pub struct BenchJson {
    pub ops_per_s: f64,
    #[serde(default)]
    pub p50_us: u64,
    pub p99_us: u64,
    #[serde(default)]
    pub p999_us: u64,
    #[serde(default)]
    pub mean_us: f64,
    #[serde(default)]
    pub max_us: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub misses: u64,
    #[serde(default)]
    pub hits: u64,
    /// `null` when no call looked a key up.
    #[serde(default)]
    pub hit_ratio: Option<f64>,
    #[serde(default)]
    pub ops: u64,
    #[serde(default)]
    pub threads: usize,
    /// Operations per pipeline (`--pipeline`); runs saved before the option
    /// existed made one call at a time, hence the default of 1.
    #[serde(default = "one_call_at_a_time")]
    pub pipeline: usize,
    /// `closed` or `open` (`--rate`).
    #[serde(default)]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Calls per second, failed ones included.
    #[serde(default)]
    pub achieved_rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_reached: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(default)]
    pub duration_s: f64,
    #[serde(default)]
    pub warmup_s: f64,
    /// Only when every value has the same size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_size: Option<usize>,
    #[serde(default)]
    pub value_size_min: usize,
    #[serde(default)]
    pub value_size_max: usize,
    /// The share of `get` in the mix.
    #[serde(default)]
    pub get_ratio: f64,
    #[serde(default)]
    pub batch: usize,
    #[serde(default)]
    pub keys: usize,
    #[serde(default)]
    pub key_distribution: String,
    #[serde(default)]
    pub key_prefix: String,
    #[serde(default)]
    pub prefill_keys: usize,
    /// `--hot-set-rotate`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_set_rotate_s: Option<f64>,
    /// `null` where getrusage is unavailable.
    #[serde(default)]
    pub cpu_us_per_op: Option<f64>,
    #[serde(default)]
    pub ctx_switches_per_op: Option<f64>,
    /// Whether the CPU and switch counts include the embedded server.
    #[serde(default)]
    pub usage_includes_server: bool,
    /// `embedded`, or the address of the server measured.
    #[serde(default)]
    pub server: String,
    /// Each operation's share of the calls.
    #[serde(default)]
    pub mix: BTreeMap<String, f64>,
    /// Open loop: latency from when each call was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Latency>,
    #[serde(default)]
    pub operations: BTreeMap<String, OpJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<super::gate::Comparison>,
    /// `--verify`'s counts; saved runs are read back without them.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub verify: Option<super::verify::VerifyJson>,
}

impl BenchJson {
    /// The fields that say what a run measured (its shape, not its
    /// results), by name, as text: two runs that differ in one of them
    /// measured different things.
    pub fn shape(&self) -> Vec<(&'static str, String)> {
        let some = |value: Option<String>| value.unwrap_or_else(|| "none".to_owned());
        vec![
            ("server", self.server.clone()),
            ("mode", self.mode.clone()),
            ("threads", self.threads.to_string()),
            ("pipeline", self.pipeline.to_string()),
            (
                "target_rate",
                some(self.target_rate.map(|rate| rate.to_string())),
            ),
            ("requests", some(self.requests.map(|n| n.to_string()))),
            ("mix", format!("{:?}", self.mix)),
            ("batch", self.batch.to_string()),
            ("keys", self.keys.to_string()),
            ("key_distribution", self.key_distribution.clone()),
            ("value_size_min", self.value_size_min.to_string()),
            ("value_size_max", self.value_size_max.to_string()),
            ("prefill_keys", self.prefill_keys.to_string()),
            (
                "hot_set_rotate_s",
                some(self.hot_set_rotate_s.map(|s| s.to_string())),
            ),
        ]
    }
}

/// One operation's results in `bench --json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OpJson {
    pub share: f64,
    pub ops: u64,
    pub ops_per_s: f64,
    #[serde(flatten)]
    pub latency: Latency,
    pub hits: u64,
    pub misses: u64,
    /// `null` for operations that do not look keys up.
    pub hit_ratio: Option<f64>,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
}

/// The `pipeline` of a saved run that has none.
fn one_call_at_a_time() -> usize {
    1
}

fn ratio(part: u64, whole: u64) -> f64 {
    (part as f64 / whole.max(1) as f64 * 1e4).round() / 1e4
}

/// `x` rounded to one decimal: the precision the report means.
fn tenths(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `x` rounded to three decimals.
fn thousandths(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_counts_calls_per_second_and_scales_the_last_partial_one() {
        let origin = Instant::now();
        let at = |ms: u64| origin + Duration::from_millis(ms);
        let mut one = Timeline::new(origin);
        let mut other = Timeline::new(origin);
        for ms in (0..2000).step_by(10) {
            one.record(at(ms), Some(Duration::from_millis(1)));
        }
        // The run ends half-way through its third second.
        for ms in (2000..2500).step_by(10) {
            other.record(at(ms), Some(Duration::from_millis(50)));
        }
        other.record(at(1500), None);
        one.merge(other);
        let seconds = one.seconds();
        let calls: Vec<u64> = seconds.iter().map(|s| s.calls).collect();
        assert_eq!(calls[..2], [100, 101]);
        // 50 calls in the 0.49 s up to the last one: about 100 a second.
        assert!((98..=104).contains(&calls[2]), "{calls:?}");
        assert_eq!(seconds[1].errors, 1);
        assert!(
            (49_000..=51_000).contains(&seconds[2].p99_us),
            "{:?}",
            seconds[2]
        );
        assert!(seconds[0].p99_us <= 1_010, "{:?}", seconds[0]);
        // A sliver of a last second is left out rather than scaled up.
        let mut sliver = Timeline::new(origin);
        sliver.record(at(500), Some(Duration::from_millis(1)));
        sliver.record(at(1100), Some(Duration::from_millis(1)));
        assert_eq!(sliver.seconds().len(), 1);
    }

    #[test]
    fn a_refused_item_is_an_error_and_a_failed_call_is_counted_by_kind() {
        let mix = Mix::parse("get=1,set-many=1").unwrap();
        let mut tally = Tally::new(&mix, false).unwrap();
        let ok = Outcome {
            hits: 1,
            ..Outcome::default()
        };
        tally.record(Op::Get, Ok(ok), Duration::from_micros(100), None);
        let refused = Outcome {
            refused: 1,
            ..Outcome::default()
        };
        tally.record(Op::SetMany, Ok(refused), Duration::from_micros(100), None);
        tally.record(
            Op::SetMany,
            Err(Error::Closed),
            Duration::from_micros(100),
            None,
        );
        let mut other = Tally::new(&mix, false).unwrap();
        other.record(Op::Get, Ok(ok), Duration::from_millis(2), None);
        tally.merge(other).unwrap();
        assert_eq!(tally.errors(), 2);
        assert_eq!(tally.ops[&Op::SetMany].errors[ITEM_REFUSED], 1);
        assert_eq!(tally.ops[&Op::SetMany].errors["closed"], 1);
        assert_eq!(tally.ops[&Op::Get].hits, 2);
        let all = tally.all_latencies().unwrap();
        assert_eq!(all.len(), 2);
        // The histograms grow to hold what they are given.
        assert!((1990..=2010).contains(&all.max()), "{}", all.max());
        assert!((99..=101).contains(&all.min()), "{}", all.min());
        assert!(matches!(tally.first_error, Some(Error::Closed)));
    }
}
