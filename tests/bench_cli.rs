#![cfg(feature = "cli")]
//! `tiny-cache bench` as a load tool: its refusals of impossible runs, the
//! operation mix, `--requests`, `--prefill`, `--pipeline`, `--hdr-log` and the
//! `--baseline` gate, each against the embedded server bench starts (short
//! runs of a few hundred calls). The open-loop schedule has its own file,
//! `bench_open_loop.rs`.

mod common;
use common::bench_run::{bench, last_json};
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn number(run: &Value, pointer: &str) -> f64 {
    run.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing: {run}"))
}

/// A file in a directory of this test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tiny-cache-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn impossible_runs_are_refused_before_anything_starts() {
    let cases: [(&[&str], &str); 11] = [
        (
            &["--rate", "1000000", "--threads", "1"],
            "at least 10 threads",
        ),
        (&["--rate", "0.1", "--duration", "1"], "schedules no call"),
        (&["--mix", "get=0,set=0"], "sums to 0"),
        (&["--mix", "get=1,fetch=1"], "unknown operation \"fetch\""),
        (&["--batch", "0"], "--batch"),
        (&["--mix", "get=1", "--get-ratio", "0.5"], "--get-ratio"),
        (&["--requests", "10", "--duration", "1"], "--duration"),
        (&["--value-size", "10..5"], "empty"),
        (&["--key-distribution", "zipf:0"], "exponent"),
        (
            &["--baseline", "/nonexistent/run.json"],
            "cannot read --baseline",
        ),
        (&["--tolerance", "5"], "--baseline"),
    ];
    for (args, expected) in cases {
        let output = bench(args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("writing"), "{args:?} started a run: {err}");
    }
}

#[test]
fn every_operation_of_the_mix_gets_its_own_row_and_object() {
    let ops = [
        "get",
        "set",
        "delete",
        "get-many",
        "set-many",
        "delete-many",
        "set-if-absent",
        "compare-and-set",
        "touch",
    ];
    let mix = ops.map(|op| format!("{op}=1")).join(",");
    let output = bench(&[
        "--requests",
        "450",
        "--warmup",
        "0",
        "--threads",
        "3",
        "--mix",
        &mix,
        "--batch",
        "4",
        "--value-size",
        "10..200",
        "--key-distribution",
        "sequential",
        "--keys",
        "50",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let run = last_json(&output);
    // Exactly the calls asked for, every one of them a success.
    assert_eq!(number(&run, "/ops"), 450.0, "{run}");
    assert_eq!(number(&run, "/errors"), 0.0, "{run}");
    assert_eq!(run["requests"], 450, "{run}");
    assert_eq!(run["value_size_min"], 10, "{run}");
    assert_eq!(run["value_size_max"], 200, "{run}");
    assert!(run.get("value_size").is_none(), "{run}");
    let text = stdout(&output);
    let mut total = 0.0;
    for op in ops {
        let row = text
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{op} ")))
            .unwrap_or_else(|| panic!("no row for {op}: {text}"));
        assert!(row.split_whitespace().count() >= 8, "{row}");
        let object = &run["operations"][op];
        for field in [
            "ops_per_s",
            "p50_us",
            "p99_us",
            "p999_us",
            "max_us",
            "errors",
        ] {
            assert!(object[field].is_number(), "{op}.{field}: {run}");
        }
        assert!(object["errors_by_kind"].is_object(), "{run}");
        assert!((number(&run, &format!("/mix/{op}")) - 1.0 / 9.0).abs() < 0.001);
        total += number(object, "/ops");
    }
    assert_eq!(total, 450.0, "{run}");
    // Lookups say whether they found the key; plain writes do not.
    assert!(run["operations"]["get"]["hit_ratio"].is_number(), "{run}");
    assert!(run["operations"]["set"]["hit_ratio"].is_null(), "{run}");
    assert!(
        number(&run, "/hits") + number(&run, "/misses") > 0.0,
        "{run}"
    );
}

#[test]
fn prefill_decides_whether_gets_hit() {
    let gets = |prefill: &str| {
        let output = bench(&[
            "--requests",
            "200",
            "--mix",
            "get=1",
            "--keys",
            "100",
            "--prefill",
            prefill,
            "--threads",
            "2",
            "--json",
        ]);
        assert!(output.status.success(), "{output:?}");
        last_json(&output)
    };
    let cold = gets("none");
    assert_eq!(number(&cold, "/hit_ratio"), 0.0, "{cold}");
    assert_eq!(number(&cold, "/prefill_keys"), 0.0, "{cold}");
    let warm = gets("all");
    assert_eq!(number(&warm, "/hit_ratio"), 1.0, "{warm}");
    assert_eq!(number(&warm, "/misses"), 0.0, "{warm}");
}

#[test]
fn open_loop_with_requests_makes_exactly_that_many_calls() {
    let output = bench(&[
        "--rate",
        "400",
        "--requests",
        "200",
        "--warmup",
        "0.1",
        "--threads",
        "4",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let run = last_json(&output);
    assert_eq!(
        number(&run, "/ops") + number(&run, "/errors"),
        200.0,
        "{run}"
    );
    assert_eq!(run["mode"], "open", "{run}");
    assert!(run["service"]["p99_us"].is_number(), "{run}");
    let text = stdout(&output);
    assert!(text.contains("target 400 calls/s"), "{text}");
}

#[test]
fn pipelined_runs_count_every_operation_and_report_their_depth() {
    let output = bench(&[
        "--pipeline",
        "8",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--threads",
        "2",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let run = last_json(&output);
    assert_eq!(run["pipeline"], 8, "{run}");
    assert!(number(&run, "/ops") > 0.0, "{run}");
    assert_eq!(number(&run, "/errors"), 0.0, "{run}");
    let text = stdout(&output);
    assert!(text.contains("pipelines of 8 operations"), "{text}");

    // With --requests, exactly that many operations, though 8 does not
    // divide them: the last pipeline is shorter.
    let output = bench(&[
        "--pipeline",
        "8",
        "--requests",
        "100",
        "--threads",
        "3",
        "--mix",
        "get=2,set=1,delete=1,set-if-absent=1,compare-and-set=1",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let run = last_json(&output);
    assert_eq!(number(&run, "/ops"), 100.0, "{run}");
    assert_eq!(number(&run, "/errors"), 0.0, "{run}");

    // One call at a time is still the default, and says so.
    let output = bench(&["--requests", "50", "--threads", "1", "--json"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(last_json(&output)["pipeline"], 1);
}

#[test]
fn pipelines_that_cannot_be_sent_are_refused() {
    let cases: [(&[&str], &str); 4] = [
        (&["--pipeline", "0"], "--pipeline"),
        (&["--pipeline", "1001"], "--pipeline"),
        (&["--pipeline", "4", "--rate", "1000"], "--rate"),
        (&["--pipeline", "4", "--mix", "get=1,touch=1"], "touch"),
    ];
    for (args, expected) in cases {
        let output = bench(args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("writing"), "{args:?} started a run: {err}");
    }
}

#[test]
fn hdr_log_is_an_interval_log_hdrhistogram_reads() {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::Histogram;

    let dir = TempDir::new("hdr-log");
    let log = dir.file("run.hlog");
    let output = bench(&[
        "--requests",
        "300",
        "--mix",
        "get=2,set=1",
        "--threads",
        "2",
        "--hdr-log",
        log.to_str().expect("a UTF-8 temporary path"),
    ]);
    assert!(output.status.success(), "{output:?}");
    let bytes = std::fs::read(&log).expect("the log was written");
    let mut counts = Vec::new();
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(interval) = entry.expect("a well-formed log entry") {
            let encoded = base64_decode(interval.encoded_histogram());
            let histogram: Histogram<u64> = Deserializer::new()
                .deserialize(&mut encoded.as_slice())
                .expect("a V2 histogram");
            counts.push((
                interval.tag().map(|t| t.as_str().to_owned()),
                histogram.len(),
            ));
        }
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert_eq!(counts[0], (None, 300), "{counts:?}");
    let tagged: u64 = counts[1..].iter().map(|(_, n)| n).sum();
    assert_eq!(tagged, 300, "{counts:?}");
    let tags: Vec<_> = counts[1..].iter().filter_map(|(t, _)| t.clone()).collect();
    assert_eq!(tags, ["get", "set"]);
}

/// Standard base64, as interval logs encode histograms.
fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

#[test]
fn baseline_gate_exits_9_on_a_regression_and_0_within_the_tolerance() {
    let dir = TempDir::new("baseline");
    let run = ["--requests", "200", "--threads", "2", "--json"];

    // A saved run (the whole stdout of `bench --json`) is read back and
    // compared, shape for shape. Whether a second run on a busy machine is
    // within any tolerance of it is up to the machine: either verdict will do.
    let saved = bench(&run);
    assert!(saved.status.success(), "{saved:?}");
    let saved_path = dir.file("saved.txt");
    std::fs::write(&saved_path, &saved.stdout).expect("the run is saved");
    let saved_path = saved_path.to_str().expect("a UTF-8 path");
    let again = bench(&[&run[..], &["--baseline", saved_path]].concat());
    assert!(matches!(again.status.code(), Some(0 | 9)), "{again:?}");
    let verdict = last_json(&again);
    assert_eq!(
        verdict["baseline"]["regressed"],
        again.status.code() == Some(9),
        "{verdict}"
    );
    assert_eq!(
        verdict["baseline"]["differences"],
        Value::Array(vec![]),
        "{verdict}"
    );

    // A baseline any run beats: one call a second at an hour's p99.
    let slow = dir.file("slow.json");
    std::fs::write(&slow, r#"{"ops_per_s":1,"p99_us":3600000000,"threads":2}"#).unwrap();
    let faster = bench(&[&run[..], &["--baseline", slow.to_str().unwrap()]].concat());
    assert_eq!(faster.status.code(), Some(0), "{faster:?}");
    assert_eq!(last_json(&faster)["baseline"]["regressed"], false);
    assert!(stdout(&faster).contains("within the 10 % tolerance"));

    // A baseline no run can match: a billion calls a second at 1 µs p99.
    let fast = dir.file("fast.json");
    std::fs::write(&fast, r#"{"ops_per_s":1e9,"p99_us":1,"threads":2}"#).unwrap();
    let slower = bench(&[&run[..], &["--baseline", fast.to_str().unwrap()]].concat());
    assert_eq!(slower.status.code(), Some(9), "{slower:?}");
    let verdict = last_json(&slower);
    assert_eq!(verdict["baseline"]["regressed"], true, "{verdict}");
    assert_eq!(
        number(&verdict, "/baseline/tolerance_pct"),
        10.0,
        "{verdict}"
    );
    assert_eq!(
        verdict["baseline"]["regressions"].as_array().map(Vec::len),
        Some(2),
        "{verdict}"
    );
    assert!(stdout(&slower).contains("REGRESSED"), "{}", stdout(&slower));

    // Not a saved run at all.
    let junk = dir.file("junk.json");
    std::fs::write(&junk, "hello\n").unwrap();
    let refused = bench(&["--baseline", junk.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        stderr(&refused).contains("not a saved"),
        "{}",
        stderr(&refused)
    );
}
