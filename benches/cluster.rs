//! A `Cluster` over 1, 2 and 4 servers, the cost of R = 2 writes, and
//! hedged reads with one slow replica.
//!
//! Starts four `tiny-cache serve --workers 1` processes and drives them
//! with `tiny-cache bench --server A --server B ...` (a second process, 16
//! closed-loop threads, 100 B values, 1000 keys). Configurations alternate
//! in rounds and the table shows medians. A "cluster of 1" names the same
//! server twice (the cluster keeps one), to separate the cluster's own
//! cost from the plain client's. The targets of "One wait for many" are
//! judged per round: a cluster of 1's CPU per call ÷ the plain client's,
//! and an R = 2 write's ÷ an R = 1 write's.
//!
//! Hedged reads run in this process: a `Cluster` (R = 2, Q = 1, 16
//! threads, reads only, 1000 keys written first) over three of the
//! servers, the third behind a fault proxy, measured with every server
//! healthy, then with the proxy adding 20 ms to each response, hedging on
//! (the default) and off, then with the proxy black-holing the server (it
//! accepts and never answers), hedging on. It reports the reads' p50 and
//! p99 (HDR histogram) and the hedges sent as a share of reads.
//!
//! On a 2-core machine the servers, the client threads and the client's
//! connection workers share the same two cores: more servers add
//! connections and threads, not CPU, so throughput cannot scale here.
//!
//! Run with: `cargo bench --bench cluster --features cli` (about two
//! minutes); `-- --quick` for one round, `-- --hedging` for the hedged
//! reads alone.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tiny_cache_client::cluster::{Cluster, Hedging};

mod common;
use common::{median, Sample};

#[allow(dead_code)]
#[path = "../tests/common/fault_proxy.rs"]
mod fault_proxy;
use fault_proxy::{Fault, FaultProxy};

const BIN: &str = common::TINY_CACHE;

/// One measured configuration.
#[derive(Clone, Copy)]
struct Setup {
    label: &'static str,
    /// Indices into the running servers; the same one twice makes a
    /// cluster of one.
    servers: &'static [usize],
    replicas: u16,
    get_ratio: f64,
}

fn run(addresses: &[String], setup: Setup, seconds: f64) -> Sample {
    let mut command = Command::new(BIN);
    command.arg("bench");
    for &index in setup.servers {
        command.args(["--server", &addresses[index]]);
    }
    let output = command
        .args(["--json", "--warmup", "0.5", "--threads", "16"])
        .args(["--duration", &seconds.to_string()])
        .args(["--replicas", &setup.replicas.to_string()])
        .args(["--get-ratio", &setup.get_ratio.to_string()])
        .stderr(Stdio::null())
        .output()
        .expect("run tiny-cache bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = stdout.lines().last().unwrap_or_default();
    Sample::from_json(json)
}

/// One hedged-read run: reads/s, p50 and p99 in µs, hedges per read.
#[derive(Clone, Copy)]
struct Reads {
    per_s: f64,
    p50_us: f64,
    p99_us: f64,
    hedged: f64,
    /// Hedges that won, and that the budget refused, per read.
    won: f64,
    refused: f64,
    /// Reads slower than 10 ms, per read.
    over_10ms: f64,
    errors: u64,
}

const READ_KEYS: usize = 1000;
const READ_THREADS: usize = 16;

/// 16 threads reading the keys through `cluster` for `seconds`.
fn read_run(cluster: &Cluster, seconds: f64) -> Reads {
    let before = cluster.hedges();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..READ_THREADS)
        .map(|t| {
            let (cluster, stop) = (cluster.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut histogram = Histogram::<u64>::new(3).expect("histogram");
                let mut errors = 0;
                let mut i = t * 7919;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 7919) % READ_KEYS;
                    let started = Instant::now();
                    if cluster.get(&format!("key-{i}")).is_err() {
                        errors += 1;
                    }
                    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let _ = histogram.record(micros.max(1));
                }
                (histogram, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    let mut errors = 0;
    for thread in threads {
        let (histogram, failed) = thread.join().expect("reader");
        let _ = all.add(&histogram);
        errors += failed;
    }
    let after = cluster.hedges();
    let reads = (all.len() as f64).max(1.0);
    let per_read = |count: u64| count as f64 / reads;
    Reads {
        per_s: reads / seconds,
        p50_us: all.value_at_quantile(0.5) as f64,
        p99_us: all.value_at_quantile(0.99) as f64,
        hedged: per_read(after.sent - before.sent),
        won: per_read(after.won - before.won),
        refused: per_read(after.refused - before.refused),
        over_10ms: per_read(all.count_between(10_000, u64::MAX)),
        errors,
    }
}

/// The hedged-read section; see the module docs.
fn hedged_reads(addresses: &[String], rounds: usize, seconds: f64) {
    let proxy = FaultProxy::to(&addresses[2]);
    let cluster = |hedging: Hedging| {
        Cluster::builder()
            .server(&addresses[0])
            .server(&addresses[1])
            .server(&proxy.address())
            .replicas(2)
            .hedging(hedging)
            .build()
            .expect("cluster")
    };
    let (hedged, unhedged) = (cluster(Hedging::default()), cluster(Hedging::off()));
    for i in 0..READ_KEYS {
        hedged
            .set(&format!("key-{i}"), "v".repeat(100))
            .expect("write");
    }
    // Warm each cluster's connections and the hedger's latency samples.
    for cluster in [&hedged, &unhedged] {
        read_run(cluster, 0.5);
    }
    let slow = Fault::latency(Duration::from_millis(20), Duration::ZERO);
    let hung = Fault::BlackHole;
    let setups: [(&str, Option<Fault>, &Cluster); 4] = [
        ("all healthy, hedging on", None, &hedged),
        (
            "one of 3 answers 20 ms late, hedging on",
            Some(slow),
            &hedged,
        ),
        (
            "one of 3 answers 20 ms late, hedging off",
            Some(slow),
            &unhedged,
        ),
        (
            "one of 3 hangs (black hole), hedging on",
            Some(hung),
            &hedged,
        ),
    ];
    let mut runs: Vec<Vec<Reads>> = vec![Vec::new(); setups.len()];
    for round in 0..rounds {
        for (index, (label, fault, cluster)) in setups.iter().enumerate() {
            eprintln!("hedging round {}/{rounds}: {label}", round + 1);
            match fault {
                Some(fault) => proxy.set(*fault),
                None => proxy.clear(),
            }
            runs[index].push(read_run(cluster, seconds));
            if *fault == Some(Fault::BlackHole) {
                // What the black hole swallowed left its connections
                // unusable: start them afresh, unmeasured.
                proxy.clear();
                proxy.drop_connections();
                read_run(cluster, 1.0);
            }
        }
    }
    proxy.clear();
    println!(
        "\nhedged reads: R = 2, Q = 1, three servers (the third behind a fault proxy), \
         {READ_THREADS} threads, reads only over {READ_KEYS} keys; medians of {rounds} round(s) of {seconds} s\n"
    );
    println!(
        "| setup | reads/s | p50 µs | p99 µs | reads > 10 ms (%) | hedges (% of reads) | \
         won (%) | refused by the budget (%) | errors |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for ((label, _, _), runs) in setups.iter().zip(&runs) {
        let pick = |f: fn(&Reads) -> f64| median(runs.iter().map(f));
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            pick(|r| r.per_s),
            pick(|r| r.p50_us),
            pick(|r| r.p99_us),
            pick(|r| r.over_10ms * 100.0),
            pick(|r| r.hedged * 100.0),
            pick(|r| r.won * 100.0),
            pick(|r| r.refused * 100.0),
            runs.iter().map(|r| r.errors).sum::<u64>(),
        );
    }
    let ratios: Vec<f64> = runs[1]
        .iter()
        .zip(&runs[0])
        .map(|(slow, healthy)| slow.p99_us / healthy.p99_us)
        .collect();
    let extra: Vec<f64> = runs[1].iter().map(|r| r.hedged * 100.0).collect();
    target(
        "hedged reads, 1 of 3 replicas 20 ms late: p99 ÷ all healthy",
        &ratios,
        "≤ 1.5",
        |r| r <= 1.5,
    );
    target(
        "hedged reads, 1 of 3 replicas 20 ms late: hedges, % of reads",
        &extra,
        "≤ 5",
        |r| r <= 5.0,
    );
    let hung: Vec<f64> = runs[3]
        .iter()
        .zip(&runs[0])
        .map(|(hung, healthy)| hung.p99_us / healthy.p99_us)
        .collect();
    target(
        "hedged reads, 1 of 3 replicas hung: p99 ÷ all healthy",
        &hung,
        "≤ 1.5",
        |r| r <= 1.5,
    );
}

/// Prints one target: each round's figure, their median, and whether the
/// median meets the goal.
fn target(what: &str, rounds: &[f64], goal: &str, met: impl Fn(f64) -> bool) {
    let measured = median(rounds.iter().copied());
    let each: Vec<String> = rounds.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "- {what}: {measured:.2} (rounds: {}), goal {goal}: {}",
        each.join(", "),
        if met(measured) { "met" } else { "**not met**" }
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, seconds) = if quick { (1, 2.0) } else { (3, 3.0) };
    if std::env::args().any(|a| a == "--hedging") {
        let servers: Vec<_> = (0..3)
            .map(|_| common::start_embedded_server(false))
            .collect();
        let addresses: Vec<String> = servers.iter().map(|(_, address)| address.clone()).collect();
        std::thread::sleep(Duration::from_millis(200));
        hedged_reads(&addresses, rounds, seconds);
        return;
    }
    let setups = [
        Setup {
            label: "plain Client, 1 server",
            servers: &[0],
            replicas: 1,
            get_ratio: 0.9,
        },
        Setup {
            label: "Cluster of 1",
            servers: &[0, 0],
            replicas: 1,
            get_ratio: 0.9,
        },
        Setup {
            label: "Cluster of 2",
            servers: &[0, 1],
            replicas: 1,
            get_ratio: 0.9,
        },
        Setup {
            label: "Cluster of 4",
            servers: &[0, 1, 2, 3],
            replicas: 1,
            get_ratio: 0.9,
        },
        Setup {
            label: "Cluster of 2, sets only, R=1",
            servers: &[0, 1],
            replicas: 1,
            get_ratio: 0.0,
        },
        Setup {
            label: "Cluster of 2, sets only, R=2",
            servers: &[0, 1],
            replicas: 2,
            get_ratio: 0.0,
        },
    ];
    let servers: Vec<_> = (0..4)
        .map(|_| common::start_embedded_server(false))
        .collect();
    let addresses: Vec<String> = servers.iter().map(|(_, address)| address.clone()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); setups.len()];
    for round in 0..rounds {
        for (index, setup) in setups.iter().enumerate() {
            eprintln!("round {}/{rounds}: {}", round + 1, setup.label);
            samples[index].push(run(&addresses, *setup, seconds));
        }
    }
    println!(
        "\nmedians of {rounds} round(s) of {seconds} s; 16 threads, 100 B values, 1000 keys; \
         servers: tiny-cache serve --workers 1 (separate processes)\n"
    );
    println!("| setup | gets | ops/s | p50 µs | p99 µs | client CPU µs/op | errors |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (setup, runs) in setups.iter().zip(&samples) {
        let pick = |f: fn(&Sample) -> f64| median(runs.iter().map(f));
        println!(
            "| {} | {:.0} % | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} |",
            setup.label,
            setup.get_ratio * 100.0,
            pick(|s| s.ops_per_s),
            pick(|s| s.p50_us),
            pick(|s| s.p99_us),
            pick(|s| s.cpu_us_per_op),
            pick(|s| s.errors),
        );
    }
    // Per-round ratios for the targets: setups 0 (plain), 1 (cluster of
    // 1), 4 (sets, R = 1) and 5 (sets, R = 2).
    let cpu_ratio = |over: usize, under: usize| -> Vec<f64> {
        samples[over]
            .iter()
            .zip(&samples[under])
            .map(|(a, b)| a.cpu_us_per_op / b.cpu_us_per_op)
            .collect()
    };
    println!("\ntargets (client CPU per call, per-round ratios, median):");
    target(
        "Cluster of 1 ÷ plain Client",
        &cpu_ratio(1, 0),
        "≤ 1.05",
        |r| r <= 1.05,
    );
    target(
        "R = 2 write ÷ R = 1 write",
        &cpu_ratio(5, 4),
        "≤ 2.2",
        |r| r <= 2.2,
    );
    hedged_reads(&addresses, rounds, seconds);
}
