//! A `Cluster` over 1, 2 and 4 servers, and the cost of R = 2 writes.
//!
//! Starts four `tiny-cache serve --workers 1` processes and drives them
//! with `tiny-cache bench --server A --server B ...` (a second process, 16
//! closed-loop threads, 100 B values, 1000 keys). Configurations alternate
//! in rounds and the table shows medians. A "cluster of 1" names the same
//! server twice (the cluster keeps one), to separate the cluster's own
//! cost from the plain client's. It also times the scoped-thread spawn a
//! call pays for each extra server it reaches in parallel.
//!
//! On a 2-core machine the servers, the client threads and the client's
//! connection workers share the same two cores: more servers add
//! connections and threads, not CPU, so throughput cannot scale here.
//!
//! Run with: `cargo bench --bench cluster --features cli` (about a
//! minute); `-- --quick` for one round.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{median, Sample};

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

/// Mean time to start and join one scoped thread doing nothing: what a
/// call pays per extra server it reaches in parallel.
fn scoped_spawn_micros() -> f64 {
    const SPAWNS: u32 = 2000;
    let started = Instant::now();
    for _ in 0..SPAWNS {
        std::thread::scope(|scope| {
            scope.spawn(|| std::hint::black_box(1));
        });
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(SPAWNS)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, seconds) = if quick { (1, 2.0) } else { (3, 3.0) };
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
    println!(
        "\nscoped thread spawn + join: {:.1} µs (median of 5 × 2000)",
        median((0..5).map(|_| scoped_spawn_micros()))
    );
}
