#![cfg(feature = "cli")]
//! `tiny-cache bench` answering "how much can it take": a schedule of
//! open-loop steps (`--rate LOW..HIGH --rate-step`) judged against an SLO
//! (`--slo`), the knee it names, and the capacity search
//! (`--find-capacity`). The servers are real (embedded, over loopback);
//! the knee is made to appear on demand by the fault proxy's
//! `LatencyOverRate`, which delays every response by far more than the SLO
//! allows once the proxied request rate passes a threshold set between two
//! steps. Below it the server answers as fast as it does; above it no
//! machine, however busy, meets the SLO. A machine so busy that it stalls
//! past the SLO below the knee spoils a run, which is then tried again.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tiny_cache_client::server::Server;

mod common;

use common::bench_run::bench;
use common::fault_proxy::{Fault, FaultProxy};

/// Requests a second above which the proxy delays responses: between the
/// second step (250/s) and the third (450/s), with room on both sides for
/// a schedule a busy machine keeps unevenly (a stall and the catch-up
/// after it).
const KNEE_REQUESTS_PER_S: u64 = 350;

/// The delay above the knee: twice the SLO, so that a step over the knee
/// fails it whatever else happens.
const OVER_KNEE_LATENCY: Duration = Duration::from_millis(1500);

/// Runs a busy machine may spoil below the knee (a stall of its own over
/// the SLO) before the test gives up; each try has a fresh server and
/// proxy. Over the knee nothing is retried: a step there must fail.
const TRIES: u32 = 3;

/// The JSON object on the last line of stdout of a successful run.
fn last_json(output: &Output) -> Value {
    assert!(output.status.success(), "{output:?}");
    common::bench_run::last_json(output)
}

/// A proxy in front of a fresh embedded server whose responses slow down
/// past [`KNEE_REQUESTS_PER_S`].
fn server_with_a_knee() -> (Server, FaultProxy) {
    let server = Server::local().expect("the embedded server starts");
    let proxy = FaultProxy::to(&server.address());
    proxy.set(Fault::LatencyOverRate {
        requests_per_second: KNEE_REQUESTS_PER_S,
        latency: OVER_KNEE_LATENCY,
    });
    (server, proxy)
}

/// What every run here asks for: gets of 100 keys through one connection,
/// 16 threads (each has 35 ms for a call at 450/s), a half-second warm-up
/// before each one-second step, and a p99 SLO of 750 ms: half the delay
/// over the knee, and far above what a machine shows below it unless it
/// stalls (see [`TRIES`]).
fn knee_run<'a>(proxy: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--server",
        proxy,
        "--timeout",
        "10",
        "--json",
        "--keys",
        "100",
        "--mix",
        "get=1",
        "--pool-size",
        "1",
        "--threads",
        "16",
        "--warmup",
        "0.5",
        "--step-duration",
        "1s",
        "--slo",
        "p99=750ms",
    ];
    args.extend_from_slice(more);
    args
}

fn rates(run: &Value) -> Vec<f64> {
    run["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps: {run}"))
        .iter()
        .map(|step| step["target_rate"].as_f64().unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn a_schedule_names_the_last_step_below_the_servers_knee_as_sustainable() {
    let chart = std::env::temp_dir().join(format!("tiny-cache-knee-{}.svg", std::process::id()));
    let chart_arg = chart.to_string_lossy().into_owned();
    for attempt in 1..=TRIES {
        let (_server, proxy) = server_with_a_knee();
        let address = proxy.address();
        let output = bench(&knee_run(
            &address,
            &[
                "--rate",
                "50..450",
                "--rate-step",
                "200",
                "--chart",
                &chart_arg,
            ],
        ));
        let run = last_json(&output);
        assert_eq!(run["mode"], "schedule", "{run}");
        assert_eq!(rates(&run), [50.0, 250.0, 450.0], "{run}");
        assert_eq!(run["slo"], "p99=750000us", "{run}");
        let steps = run["steps"].as_array().unwrap();
        // Over the knee, whatever the machine does: the step fails on its
        // latency, corrected from when calls were due (the delay, or the
        // queue behind it).
        let over = &steps[2];
        assert_eq!(over["sustained"], false, "{run}");
        assert!(
            over["slo_us"].as_u64().unwrap_or(0) >= 750_000,
            "{over}: the knee is not in its p99"
        );
        if steps[..2].iter().any(|step| step["sustained"] != true) {
            eprintln!("attempt {attempt}: the machine stalled below the knee: {run}");
            continue;
        }
        assert_eq!(run["sustainable_rate"], 250.0, "{run}");
        for step in steps {
            for field in [
                "achieved_rate",
                "p50_us",
                "p99_us",
                "p999_us",
                "service_p99_us",
                "errors",
            ] {
                assert!(step[field].is_number(), "{field} missing: {step}");
            }
        }
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("sustainable  250 calls/s"),
            "the report names the knee: {text}"
        );
        // The picture over time marks each step with its verdict, and says
        // the knee in its title.
        let svg = std::fs::read_to_string(&chart).expect("the timeline chart");
        let _ = std::fs::remove_file(&chart);
        for mark in ["50/s ✓", "250/s ✓", "450/s ✗"] {
            assert!(svg.contains(mark), "{mark} not marked: {svg}");
        }
        assert!(svg.contains("sustainable 250 calls/s"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2, "throughput and p99");
        return;
    }
    let _ = std::fs::remove_file(&chart);
    panic!("the machine stalled below the knee in {TRIES} tries (see stderr)");
}

#[test]
fn capacity_search_brackets_the_knee_within_five_percent() {
    for attempt in 1..=TRIES {
        let (_server, proxy) = server_with_a_knee();
        let address = proxy.address();
        let output = bench(&knee_run(
            &address,
            &["--rate", "200..500", "--find-capacity"],
        ));
        let run = last_json(&output);
        assert_eq!(run["mode"], "find-capacity", "{run}");
        let probes = rates(&run);
        // The bottom first, doubled while it holds (400 is over the knee),
        // then bisection; each probe is one step.
        assert_eq!(probes[0], 200.0, "{run}");
        if probes.len() > 1 {
            assert_eq!(probes[1], 400.0, "{run}");
        }
        assert!(probes.len() <= 8, "{} probes: {run}", probes.len());
        assert!(
            probes.iter().all(|&rate| rate <= 500.0),
            "beyond the range: {run}"
        );
        // The search ends with a rate that held at most 5 % below the
        // lowest that failed.
        let found = run["sustainable_rate"].as_f64();
        let lowest_failed = run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|step| step["sustained"] == false)
            .filter_map(|step| step["target_rate"].as_f64())
            .fold(f64::INFINITY, f64::min);
        if let Some(found) = found {
            assert!(
                lowest_failed - found <= found * 0.05,
                "{found} held, {lowest_failed} failed: {run}"
            );
        }
        // The knee is at 350 requests a second; a busy machine keeps a
        // schedule unevenly, so the proxy may see it a little early or
        // late, and a stall may fail a probe below it (then try again).
        match found {
            Some(found) if (250.0..=450.0).contains(&found) => return,
            _ => eprintln!("attempt {attempt}: the machine stalled below the knee: {run}"),
        }
    }
    panic!("the machine stalled below the knee in {TRIES} tries (see stderr)");
}

#[test]
fn schedules_that_cannot_be_run_are_refused_before_anything_starts() {
    let cases: [(&[&str], &str); 7] = [
        (&["--rate", "100..200"], "--rate-step"),
        (&["--rate", "200..100", "--rate-step", "10"], "lower rate"),
        (&["--rate", "100", "--rate-step", "10"], "need a range"),
        (&["--slo", "p99=2ms"], "--slo judges"),
        (&["--rate", "100..200", "--find-capacity"], "--slo"),
        (
            &["--rate", "100..200", "--rate-step", "10", "--slo", "p99=2"],
            "unit",
        ),
        (
            &["--rate", "100..200", "--rate-step", "10", "--duration", "3"],
            "--duration",
        ),
    ];
    for (args, expected) in cases {
        let output = bench(args);
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("writing"), "{args:?} started a run: {err}");
    }
}
