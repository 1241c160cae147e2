//! `--baseline FILE.json --tolerance PCT`: compares a run with a saved
//! `bench --json` run, so CI can fail when throughput drops or p99 latency
//! grows by more than the tolerance.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::report::BenchJson;
use crate::Failure;

/// A saved run: the JSON object of `bench --json`, read back as the same
/// type that wrote it.
#[derive(Debug)]
pub struct Baseline {
    file: String,
    run: BenchJson,
}

impl Baseline {
    /// Reads `path`: a file whose last line starting with `{` is a
    /// `bench --json` object (the whole stdout of such a run will do).
    pub fn read(path: &Path) -> Result<Baseline, Failure> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("cannot read --baseline {file}: {e}")))?;
        Baseline::parse(&file, &text)
    }

    fn parse(file: &str, text: &str) -> Result<Baseline, Failure> {
        let not_a_run = |why: &str| {
            Failure::Usage(format!(
                "--baseline {file} is not a saved `tiny-cache bench --json` run: {why}"
            ))
        };
        let line = text
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| line.starts_with('{'))
            .ok_or_else(|| not_a_run("no JSON object in it"))?;
        let run: BenchJson = serde_json::from_str(line)
            .map_err(|e| not_a_run(&format!("its last JSON line does not read as one: {e}")))?;
        if !(run.ops_per_s.is_finite() && run.ops_per_s >= 0.0) {
            return Err(not_a_run("its ops_per_s is not a throughput"));
        }
        Ok(Baseline {
            file: file.to_owned(),
            run,
        })
    }

    /// Compares `current` (this run) with the baseline, allowing
    /// `tolerance` (a fraction: 0.1 for 10 %) either way.
    pub fn compare(&self, current: &BenchJson, tolerance: f64) -> Comparison {
        let (base_ops, base_p99) = (self.run.ops_per_s, self.run.p99_us as f64);
        let (ops_per_s, p99_us) = (current.ops_per_s, current.p99_us as f64);
        let change = |now: f64, before: f64| (before > 0.0).then(|| (now / before - 1.0) * 100.0);
        let throughput_change_pct = change(ops_per_s, base_ops);
        let p99_change_pct = change(p99_us, base_p99);
        let tolerance_pct = tolerance * 100.0;
        let mut regressions = Vec::new();
        if let Some(pct) = throughput_change_pct.filter(|&pct| pct < -tolerance_pct) {
            regressions.push(format!(
                "throughput fell {:.1} % ({base_ops:.1} → {ops_per_s:.1} ops/s)",
                -pct
            ));
        }
        if let Some(pct) = p99_change_pct.filter(|&pct| pct > tolerance_pct) {
            regressions.push(format!(
                "p99 latency grew {pct:.1} % ({base_p99} → {p99_us} µs)"
            ));
        }
        let differences = self
            .run
            .shape()
            .into_iter()
            .zip(current.shape())
            .filter(|((_, before), (_, now))| before != now)
            .map(|((name, before), (_, now))| format!("{name} {before} → {now}"))
            .collect();
        Comparison {
            file: self.file.clone(),
            tolerance_pct,
            baseline_ops_per_s: base_ops,
            baseline_p99_us: base_p99,
            throughput_change_pct: throughput_change_pct.map(hundredths),
            p99_change_pct: p99_change_pct.map(hundredths),
            regressed: !regressions.is_empty(),
            regressions,
            differences,
        }
    }
}

/// The verdict, as `--json` shows it under `baseline`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub file: String,
    pub tolerance_pct: f64,
    pub baseline_ops_per_s: f64,
    pub baseline_p99_us: f64,
    /// `null` when the baseline measured 0.
    pub throughput_change_pct: Option<f64>,
    pub p99_change_pct: Option<f64>,
    pub regressed: bool,
    /// What regressed, in words.
    pub regressions: Vec<String>,
    /// How the baseline's run differed in shape from this one.
    pub differences: Vec<String>,
}

impl Comparison {
    /// The report's lines about it.
    pub fn text(&self) -> String {
        let pct = |x: Option<f64>| x.map_or("n/a".to_owned(), |x| format!("{x:+.1} %"));
        let mut text = format!(
            "\n  baseline     {}: throughput {}, p99 {}: ",
            self.file,
            pct(self.throughput_change_pct),
            pct(self.p99_change_pct),
        );
        if self.regressed {
            text.push_str(&format!(
                "REGRESSED beyond the {} % tolerance: {}\n",
                self.tolerance_pct,
                self.regressions.join("; ")
            ));
        } else {
            text.push_str(&format!("within the {} % tolerance\n", self.tolerance_pct));
        }
        if !self.differences.is_empty() {
            text.push_str(&format!(
                "               warning: the baseline ran a different shape: {}\n",
                self.differences.join(", ")
            ));
        }
        text
    }
}

fn hundredths(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `--tolerance`: a percentage from 0 to 1000, `10` or `10%`; returned as
/// a fraction.
pub fn parse_tolerance(raw: &str) -> Result<f64, String> {
    let number = raw.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(pct) if (0.0..=1000.0).contains(&pct) => Ok(pct / 100.0),
        _ => Err(format!("{raw:?} must be a percentage from 0 to 1000")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run as `bench --json` would have printed it.
    fn saved(json: &str) -> BenchJson {
        match serde_json::from_str(json) {
            Ok(run) => run,
            Err(e) => panic!("{json}: {e}"),
        }
    }

    fn baseline() -> Baseline {
        let saved = "tiny-cache bench against ...\n  throughput ...\n\
                     {\"ops_per_s\":1000.0,\"p99_us\":200,\"threads\":16,\"mode\":\"closed\"}\n";
        match Baseline::parse("base.json", saved) {
            Ok(baseline) => baseline,
            Err(_) => panic!("the saved run parses"),
        }
    }

    #[test]
    fn within_the_tolerance_passes_and_beyond_it_regresses() {
        let base = baseline();
        let run = |ops: f64, p99: u64| {
            saved(&format!(
                r#"{{"ops_per_s":{ops},"p99_us":{p99},"threads":16,"mode":"closed"}}"#
            ))
        };
        let same = base.compare(&run(950.0, 210), 0.1);
        assert!(!same.regressed, "{same:?}");
        assert!(same.differences.is_empty(), "{same:?}");
        assert_eq!(same.throughput_change_pct, Some(-5.0));
        let slower = base.compare(&run(850.0, 200), 0.1);
        assert!(slower.regressed && slower.regressions[0].contains("throughput"));
        let later = base.compare(&run(1000.0, 260), 0.1);
        assert!(later.regressed && later.regressions[0].contains("p99"));
        assert!(!base.compare(&run(1000.0, 260), 0.5).regressed);
        // Faster and quicker is never a regression.
        assert!(!base.compare(&run(5000.0, 10), 0.0).regressed);
    }

    #[test]
    fn a_different_shape_is_named() {
        let other = saved(r#"{"ops_per_s":1000.0,"p99_us":200,"threads":64,"mode":"closed"}"#);
        let comparison = baseline().compare(&other, 0.1);
        assert_eq!(comparison.differences, ["threads 16 → 64"]);
    }

    #[test]
    fn a_run_saved_before_pipelines_made_one_call_at_a_time() {
        assert_eq!(baseline().run.pipeline, 1);
        let pipelined =
            saved(r#"{"ops_per_s":1000.0,"p99_us":200,"threads":16,"mode":"closed","pipeline":8}"#);
        let comparison = baseline().compare(&pipelined, 0.1);
        assert_eq!(comparison.differences, ["pipeline 1 → 8"]);
    }

    #[test]
    fn files_that_are_not_runs_are_usage_errors() {
        for text in [
            "",
            "not json",
            "{\"p99_us\": 3}",
            "[1]",
            "{\"ops_per_s\": \"x\", \"p99_us\": 1}",
        ] {
            assert!(
                matches!(Baseline::parse("f", text), Err(Failure::Usage(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn tolerance_is_a_percentage() {
        assert_eq!(parse_tolerance("10"), Ok(0.1));
        assert_eq!(parse_tolerance("2.5%"), Ok(0.025));
        assert!(parse_tolerance("-1").is_err());
        assert!(parse_tolerance("lots").is_err());
    }
}
