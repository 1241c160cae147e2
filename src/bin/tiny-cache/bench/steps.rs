//! "How much can it take": rate schedules (`--rate LOW..HIGH --rate-step`),
//! the SLO a step must meet (`--slo p99=2ms`), the knee (the highest step
//! that met it at the rate asked for) and the search for it
//! (`--find-capacity`). Parsers, the verdict on a step, the search's next
//! probe and the report's table and JSON: no I/O, so each is tested alone.
//!
//! Each step is one open-loop run of its own (see `schedule`), with latency
//! from when each call was due: a server that cannot keep up shows as the
//! queueing it causes, not as calls never made. That is what makes the
//! knee honest; a closed loop would slow down with the server and report
//! its slowed-down rate as met.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::thousands;

/// How far below its target a step's achieved rate may be and still count
/// as kept: the 5 %, wider than a single run's own 2 % verdict
/// because a step at the edge of capacity wobbles by more than that.
pub const RATE_KEPT_TOLERANCE: f64 = 0.05;

/// Most failed calls a step may have, as a share of its calls, and still
/// count: a step whose calls fail fast would otherwise meet any latency
/// SLO.
pub const MAX_ERROR_SHARE: f64 = 0.01;

/// How close `--find-capacity` brings its bounds before it stops: the
/// sustainable rate it reports is within this share of the true knee.
pub const SEARCH_PRECISION: f64 = 0.05;

/// Most steps a schedule may have: at 5 s a step, already over an hour.
pub const MAX_STEPS: usize = 1000;

/// `--rate`: one rate (a single open-loop run) or a range for a schedule
/// or a capacity search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateArg {
    Fixed(f64),
    Range { low: f64, high: f64 },
}

impl RateArg {
    /// Parses `2000` or `2000..40000` (both ends included, low below high).
    pub fn parse(raw: &str) -> Result<RateArg, String> {
        let rate = |text: &str| super::parse_rate(text.trim());
        match raw.split_once("..") {
            None => rate(raw).map(RateArg::Fixed),
            Some((low, high)) => {
                let (low, high) = (rate(low)?, rate(high.strip_prefix('=').unwrap_or(high))?);
                if low >= high {
                    return Err(format!(
                        "the rate range {raw:?} must go from a lower rate to a higher one"
                    ));
                }
                Ok(RateArg::Range { low, high })
            }
        }
    }

    /// The highest rate it asks for: what the threads must be able to reach.
    pub fn highest(self) -> f64 {
        match self {
            RateArg::Fixed(rate) => rate,
            RateArg::Range { high, .. } => high,
        }
    }
}

/// The rates of a schedule: `low`, `low + step`, ... up to `high`, which is
/// always the last step even when the steps do not land on it.
pub fn schedule_rates(low: f64, high: f64, step: f64) -> Result<Vec<f64>, String> {
    if !(step.is_finite() && step > 0.0) {
        return Err("--rate-step must be a positive number of calls per second".into());
    }
    let count = ((high - low) / step).floor() + 1.0;
    // `high` may be appended as one step more.
    if count + 1.0 > MAX_STEPS as f64 {
        return Err(format!(
            "--rate {low}..{high} in steps of {step} makes {count} steps; at most {MAX_STEPS}"
        ));
    }
    let mut rates: Vec<f64> = (0..count as usize).map(|i| low + step * i as f64).collect();
    // Float steps can land a hair below `high`: that is `high` itself.
    if rates.last().is_some_and(|&last| high - last > step * 1e-9) {
        rates.push(high);
    } else if let Some(last) = rates.last_mut() {
        *last = high;
    }
    Ok(rates)
}

/// `--slo p99=2ms`: a percentile of the corrected latency and its bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// The quantile, from 0 to 1 (0.99 for p99).
    pub quantile: f64,
    pub bound: Duration,
}

impl Slo {
    /// Parses `pNN=TIME`: the percentile as p50, p99, p99.9 or p999 (each
    /// extra 9 one more nine), the time with a unit of us, µs, ms or s.
    pub fn parse(raw: &str) -> Result<Slo, String> {
        let (percentile, bound) = raw
            .split_once('=')
            .ok_or_else(|| format!("{raw:?} is not PERCENTILE=TIME (for example p99=2ms)"))?;
        let quantile = parse_percentile(percentile.trim())?;
        let bound = parse_latency(bound.trim())?;
        Ok(Slo { quantile, bound })
    }

    /// The percentile as the report names it: `p99`, `p99.9`.
    pub fn percentile_name(&self) -> String {
        let percent = self.quantile * 100.0;
        let text = format!("{percent:.4}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("p{text}")
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ≤ {} µs",
            self.percentile_name(),
            thousands(micros(self.bound))
        )
    }
}

/// `p99` is 0.99, `p99.9` and `p999` 0.999, `p50` 0.5: a percentile from
/// above 0 to below 100.
fn parse_percentile(raw: &str) -> Result<f64, String> {
    let digits = raw
        .strip_prefix('p')
        .or_else(|| raw.strip_prefix('P'))
        .ok_or_else(|| format!("{raw:?} is not a percentile such as p50, p99 or p99.9"))?;
    let percent: f64 = if digits.contains('.') || digits.len() <= 2 || !digits.starts_with("99") {
        digits.parse().ok()
    } else {
        // p999 is p99.9 and p9999 p99.99, as latency tools write them.
        let (whole, fraction) = digits.split_at(2);
        format!("{whole}.{fraction}").parse().ok()
    }
    .ok_or_else(|| format!("{raw:?} is not a percentile such as p50, p99 or p99.9"))?;
    if !(percent > 0.0 && percent < 100.0) {
        return Err(format!("{raw:?}: a percentile is above 0 and below 100"));
    }
    Ok(percent / 100.0)
}

/// A latency bound: a number with a unit of us (or µs), ms or s.
fn parse_latency(raw: &str) -> Result<Duration, String> {
    let units = [("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)];
    parse_time(raw, &units, None, "a positive time")
}

/// A span of time for `--step-duration` and `--hot-set-rotate`: seconds as
/// a bare number (`5`, `0.5`) or with a unit (`500ms`, `5s`, `2m`).
pub fn parse_span(raw: &str) -> Result<Duration, String> {
    let units = [("ms", 1e-3), ("s", 1.0), ("m", 60.0)];
    parse_time(
        raw,
        &units,
        Some(1.0),
        "a positive time such as 5, 5s or 500ms",
    )
}

/// `raw` as a positive time: a number followed by one of `units` (each
/// with its length in seconds; a unit that ends another comes first), or
/// a bare number of `bare` seconds when that is allowed.
fn parse_time(
    raw: &str,
    units: &[(&str, f64)],
    bare: Option<f64>,
    expected: &str,
) -> Result<Duration, String> {
    let trimmed = raw.trim();
    let (number, scale) = units
        .iter()
        .find_map(|&(unit, scale)| trimmed.strip_suffix(unit).map(|n| (n, scale)))
        .or_else(|| bare.map(|scale| (trimmed, scale)))
        .ok_or_else(|| format!("{raw:?} needs a unit: us, ms or s (for example 2ms)"))?;
    let seconds = number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .map(|n| n * scale)
        .ok_or_else(|| format!("{raw:?} is not {expected}"))?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{raw:?} is too long"))
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// What one step measured, as the table and the JSON show it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub target_rate: f64,
    /// Calls per second over the step's window, failed ones included.
    pub achieved_rate: f64,
    pub ops: u64,
    pub errors: u64,
    /// Calls due in the window that were never sent (see `MAX_DRAIN`).
    pub unsent: u64,
    /// Corrected latency: from when each call was due.
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Latency from when each call was sent.
    pub service_p99_us: u64,
    /// The `--slo` percentile of the corrected latency, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo_us: Option<u64>,
    /// Whether the step met the SLO at its rate (see [`Step::sustained`]);
    /// left out without `--slo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sustained: Option<bool>,
}

impl Step {
    /// Whether the achieved rate is within [`RATE_KEPT_TOLERANCE`] of the
    /// target, with at most [`MAX_ERROR_SHARE`] of the calls failed.
    pub fn rate_kept(&self) -> bool {
        let calls = self.ops + self.errors;
        self.achieved_rate >= self.target_rate * (1.0 - RATE_KEPT_TOLERANCE)
            && self.errors as f64 <= calls as f64 * MAX_ERROR_SHARE
            && self.ops > 0
    }

    /// The verdict of `--slo` on this step: its corrected percentile
    /// (`slo_us`) within the bound, and its rate kept.
    pub fn judge(&mut self, slo: &Slo, percentile_us: u64) {
        self.slo_us = Some(percentile_us);
        self.sustained = Some(percentile_us <= micros(slo.bound) && self.rate_kept());
    }
}

/// The knee: the highest target rate among the steps that met the SLO.
pub fn sustainable_rate(steps: &[Step]) -> Option<f64> {
    steps
        .iter()
        .filter(|step| step.sustained == Some(true))
        .map(|step| step.target_rate)
        .reduce(f64::max)
}

/// `--find-capacity`: searches the rate range for the knee. It starts at
/// the bottom (a server that cannot take even that is found in one step),
/// doubles the rate while steps hold, up to the top (a server with room to
/// spare is found in log2(HIGH/LOW) + 1 steps), then halves the gap (on a
/// log scale) between the highest rate that held and the lowest that did
/// not until it is within [`SEARCH_PRECISION`] of the one that held.
///
/// Why upwards and not top first: a step over the knee builds a backlog
/// whose after-effects (queues, a server's own recovery) can spoil the
/// steps that follow; climbing in doublings never overloads by more than
/// twice the knee, and every rate below the first failure is measured
/// before any overload.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySearch {
    low: f64,
    high: f64,
    /// The highest rate that passed so far.
    passed: Option<f64>,
    /// The lowest rate that failed so far.
    failed: Option<f64>,
}

impl CapacitySearch {
    pub fn new(low: f64, high: f64) -> CapacitySearch {
        CapacitySearch {
            low,
            high,
            passed: None,
            failed: None,
        }
    }

    /// The next rate to probe, or `None` when the search is over.
    pub fn next(&self) -> Option<f64> {
        match (self.passed, self.failed) {
            (None, None) => Some(self.low),
            (None, Some(_)) => None,
            (Some(passed), None) if passed >= self.high => None,
            (Some(passed), None) => Some((passed * 2.0).min(self.high)),
            (Some(passed), Some(failed)) => {
                if failed - passed <= passed * SEARCH_PRECISION {
                    None
                } else {
                    // The precision asked for is relative, so the gap is
                    // halved on a log scale (the geometric mean): a knee
                    // near the bottom of a wide range takes as few probes
                    // as one near the top. A whole number of calls a
                    // second reads better, and from 20 a second up it
                    // costs nothing of the precision (below, it would
                    // stop the search early).
                    let middle = (passed * failed).sqrt();
                    let middle = if passed >= 20.0 {
                        middle.round()
                    } else {
                        middle
                    };
                    (middle > passed && middle < failed).then_some(middle)
                }
            }
        }
    }

    /// Records whether `rate` met the SLO.
    pub fn record(&mut self, rate: f64, sustained: bool) {
        if sustained {
            self.passed = Some(self.passed.map_or(rate, |p| p.max(rate)));
        } else {
            self.failed = Some(self.failed.map_or(rate, |f| f.min(rate)));
        }
    }

    /// The knee found: the highest rate that passed.
    pub fn result(&self) -> Option<f64> {
        self.passed
    }
}

/// The steps as a table, one row each, and the verdict under it.
pub fn table(steps: &[Step], slo: Option<&Slo>, searched: bool) -> String {
    let mut text = format!(
        "  {:>12}{:>12}{:>11}{:>11}{:>11}{:>13}{:>9}",
        "target/s", "achieved/s", "p50 µs", "p99 µs", "p99.9 µs", "service p99", "errors"
    );
    if let Some(slo) = slo {
        text.push_str(&format!("  {}", slo.percentile_name()));
    }
    text.push('\n');
    for step in steps {
        text.push_str(&format!(
            "  {:>12}{:>12}{:>11}{:>11}{:>11}{:>13}{:>9}",
            thousands(step.target_rate.round() as u64),
            thousands(step.achieved_rate.round() as u64),
            thousands(step.p50_us),
            thousands(step.p99_us),
            thousands(step.p999_us),
            thousands(step.service_p99_us),
            thousands(step.errors),
        ));
        if let (Some(sustained), Some(slo_us)) = (step.sustained, step.slo_us) {
            let verdict = if sustained {
                "ok"
            } else if !step.rate_kept() {
                "rate not kept"
            } else {
                "over the SLO"
            };
            text.push_str(&format!("  {} µs {verdict}", thousands(slo_us)));
        }
        text.push('\n');
    }
    if let Some(slo) = slo {
        let how = if searched {
            format!(" (searched to within {:.0} %)", SEARCH_PRECISION * 100.0)
        } else {
            String::new()
        };
        match sustainable_rate(steps) {
            Some(rate) => text.push_str(&format!(
                "\n  sustainable  {} calls/s{how}: the highest rate whose corrected {slo} \
                 held, achieved within {:.0} % of its target\n",
                thousands(rate.round() as u64),
                RATE_KEPT_TOLERANCE * 100.0
            )),
            None => text.push_str(&format!(
                "\n  sustainable  none: no step held {slo} at its rate\n"
            )),
        }
    }
    text
}

/// `bench --json` for a schedule or a capacity search: the steps in the
/// order they ran and the knee.
#[derive(Debug, Serialize)]
pub struct ScheduleJson {
    /// `schedule` or `find-capacity`.
    pub mode: &'static str,
    pub server: String,
    pub threads: usize,
    pub step_duration_s: f64,
    pub warmup_s: f64,
    pub keys: usize,
    pub key_distribution: String,
    /// `--hot-set-rotate`, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hot_set_rotate_s: Option<f64>,
    pub mix: std::collections::BTreeMap<String, f64>,
    /// The SLO as given, `p99=2000us`; absent without `--slo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo: Option<String>,
    /// The knee: `null` when no step held the SLO, absent without `--slo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sustainable_rate: Option<Option<f64>>,
    pub steps: Vec<Step>,
    /// `--verify`'s counts over every step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<super::verify::VerifyJson>,
}

impl Slo {
    /// The SLO as the JSON gives it: `p99=2000us`.
    pub fn json(&self) -> String {
        format!("{}={}us", self.percentile_name(), micros(self.bound))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(target: f64, achieved: f64, p99_us: u64) -> Step {
        Step {
            target_rate: target,
            achieved_rate: achieved,
            ops: 1000,
            errors: 0,
            unsent: 0,
            p50_us: p99_us / 4,
            p99_us,
            p999_us: p99_us * 2,
            max_us: p99_us * 3,
            service_p99_us: p99_us / 2,
            slo_us: None,
            sustained: None,
        }
    }

    #[test]
    fn rates_are_one_number_or_a_rising_range() {
        assert_eq!(RateArg::parse("2000"), Ok(RateArg::Fixed(2000.0)));
        assert_eq!(
            RateArg::parse("2000..40000"),
            Ok(RateArg::Range {
                low: 2000.0,
                high: 40000.0
            })
        );
        assert_eq!(
            RateArg::parse("10..=20"),
            Ok(RateArg::Range {
                low: 10.0,
                high: 20.0
            })
        );
        for bad in ["0", "40000..2000", "5..5", "x..10", "10..", "inf", "1e300"] {
            assert!(RateArg::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_schedule_steps_from_low_to_high_and_ends_on_high() {
        assert_eq!(
            schedule_rates(2000.0, 10000.0, 2000.0).unwrap(),
            [2000.0, 4000.0, 6000.0, 8000.0, 10000.0]
        );
        assert_eq!(
            schedule_rates(100.0, 250.0, 100.0).unwrap(),
            [100.0, 200.0, 250.0]
        );
        assert_eq!(
            schedule_rates(0.1, 0.3, 0.1).unwrap().len(),
            3,
            "float steps landing a hair short of the top"
        );
        assert!(schedule_rates(1.0, 1e6, 1.0)
            .unwrap_err()
            .contains("at most"));
        assert!(schedule_rates(1.0, 2.0, 0.0).is_err());
    }

    #[test]
    fn slos_take_any_percentile_and_time_unit() {
        let slo = |raw| Slo::parse(raw).unwrap();
        assert_eq!(slo("p99=2ms").quantile, 0.99);
        assert_eq!(slo("p99=2ms").bound, Duration::from_millis(2));
        assert_eq!(slo("p50=300us").bound, Duration::from_micros(300));
        assert_eq!(slo("p50=300µs").bound, Duration::from_micros(300));
        assert_eq!(slo("p99.9=1.5s").bound, Duration::from_millis(1500));
        assert!((slo("p999=1s").quantile - 0.999).abs() < 1e-12);
        assert!((slo("p99.99=1s").quantile - 0.9999).abs() < 1e-12);
        assert_eq!(slo("p99.9=1s").percentile_name(), "p99.9");
        assert_eq!(slo("p50=1s").percentile_name(), "p50");
        assert_eq!(slo("p99=2ms").json(), "p99=2000us");
        for bad in [
            "p99", "p99=2", "q99=2ms", "p100=2ms", "p0=2ms", "p99=-1ms", "p99=ms",
        ] {
            assert!(Slo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spans_are_seconds_or_have_a_unit() {
        assert_eq!(parse_span("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_span("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_span("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_span("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_span("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1s", "s", "soon", "1h"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_knee_is_the_highest_step_within_the_slo_at_its_rate() {
        let slo = Slo::parse("p99=2ms").unwrap();
        let mut steps = vec![
            step(1000.0, 1000.0, 500),
            step(2000.0, 1990.0, 1900),
            // Within the SLO but well short of the rate: the server (or
            // the client) could not keep up, so it does not count.
            step(3000.0, 2500.0, 1000),
            step(4000.0, 4000.0, 9000),
        ];
        for s in &mut steps {
            let p99 = s.p99_us;
            s.judge(&slo, p99);
        }
        let verdicts: Vec<_> = steps.iter().map(|s| s.sustained).collect();
        assert_eq!(verdicts, [Some(true), Some(true), Some(false), Some(false)]);
        assert_eq!(sustainable_rate(&steps), Some(2000.0));
        let text = table(&steps, Some(&slo), false);
        assert!(text.contains("sustainable  2,000 calls/s"), "{text}");
        assert!(text.contains("rate not kept"), "{text}");
        assert!(text.contains("over the SLO"), "{text}");
        for s in &mut steps {
            s.judge(&slo, 5000);
        }
        assert_eq!(sustainable_rate(&steps), None);
        assert!(table(&steps, Some(&slo), false).contains("sustainable  none"));
    }

    #[test]
    fn a_step_with_many_errors_or_no_successes_is_not_sustained() {
        let slo = Slo::parse("p99=2ms").unwrap();
        let mut failing = step(1000.0, 1000.0, 100);
        failing.errors = 50;
        failing.judge(&slo, 100);
        assert_eq!(failing.sustained, Some(false));
        let mut empty = step(1000.0, 1000.0, 0);
        empty.ops = 0;
        empty.judge(&slo, 0);
        assert_eq!(empty.sustained, Some(false));
    }

    /// Runs the search against a server whose knee is `knee`, returning
    /// the probes made and the result.
    fn search(low: f64, high: f64, knee: f64) -> (Vec<f64>, Option<f64>) {
        let mut search = CapacitySearch::new(low, high);
        let mut probes = Vec::new();
        while let Some(rate) = search.next() {
            assert!(probes.len() < 40, "the search does not end: {probes:?}");
            probes.push(rate);
            search.record(rate, rate <= knee);
        }
        (probes, search.result())
    }

    #[test]
    fn the_capacity_search_finds_the_knee_within_five_percent_in_few_steps() {
        for knee in [2500.0, 7000.0, 13_333.0, 21_000.0, 39_000.0] {
            let (probes, found) = search(2000.0, 40000.0, knee);
            let found = found.unwrap();
            assert!(found <= knee, "{knee}: {found} passed above the knee");
            assert!(
                found >= knee * (1.0 - SEARCH_PRECISION) - 1.0,
                "{knee}: found {found} ({probes:?})"
            );
            assert!(probes.len() <= 10, "{knee}: {} probes", probes.len());
        }
        // Room to spare: doublings up to the top; not even the bottom: one.
        assert_eq!(
            search(2000.0, 40000.0, 1e9),
            (
                vec![2000.0, 4000.0, 8000.0, 16000.0, 32000.0, 40000.0],
                Some(40000.0)
            )
        );
        assert_eq!(search(2000.0, 40000.0, 10.0), (vec![2000.0], None));
        // Never more than twice the knee.
        for knee in [2500.0, 7000.0, 13_333.0, 21_000.0] {
            let (probes, _) = search(2000.0, 40000.0, knee);
            assert!(
                probes.iter().all(|&p| p <= 2.0 * knee),
                "{knee}: {probes:?}"
            );
        }
    }
}
