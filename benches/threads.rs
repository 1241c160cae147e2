//! Client throughput and latency by caller threads and by pool size.
//!
//! Runs `tiny-cache serve --workers 1` as its own process and drives it with
//! `tiny-cache bench --server …` (a second process), so the CPU time and
//! context switches the bench reports are the client's alone. Configurations
//! alternate in rounds (A B C, A B C) and the table shows medians, because
//! absolute figures on a shared machine drift between runs.
//!
//! Run with: `cargo bench --bench threads --features cli` (about 2 minutes);
//! `-- --quick` for a 20-second pass.

use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{median, Sample};

const BIN: &str = common::TINY_CACHE;

/// One measured configuration.
#[derive(Clone, Copy)]
struct Setup {
    threads: usize,
    pool_size: usize,
    /// How callers wait for replies: "park" (default) or "channel".
    wait: &'static str,
}

fn run(address: &str, setup: Setup, seconds: f64) -> Sample {
    let output = Command::new(BIN)
        .args(["bench", "--server", address, "--json", "--warmup", "0.5"])
        .args(["--duration", &seconds.to_string()])
        .args(["--threads", &setup.threads.to_string()])
        .args(["--pool-size", &setup.pool_size.to_string()])
        .args(["--wait", setup.wait])
        .stderr(Stdio::null())
        .output()
        .expect("run tiny-cache bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = stdout.lines().last().unwrap_or_default();
    Sample::from_json(json)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, seconds) = if quick { (1, 2.0) } else { (3, 5.0) };
    let setups = [
        Setup {
            threads: 1,
            pool_size: 1,
            wait: "park",
        },
        Setup {
            threads: 4,
            pool_size: 1,
            wait: "park",
        },
        Setup {
            threads: 16,
            pool_size: 1,
            wait: "park",
        },
        Setup {
            threads: 16,
            pool_size: 1,
            wait: "channel",
        },
        Setup {
            threads: 64,
            pool_size: 1,
            wait: "park",
        },
        Setup {
            threads: 64,
            pool_size: 1,
            wait: "channel",
        },
        Setup {
            threads: 64,
            pool_size: 2,
            wait: "park",
        },
        Setup {
            threads: 256,
            pool_size: 1,
            wait: "park",
        },
    ];
    let (_server, address) = common::start_embedded_server(false);
    std::thread::sleep(Duration::from_millis(200));
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); setups.len()];
    for round in 0..rounds {
        for (index, setup) in setups.iter().enumerate() {
            eprintln!(
                "round {}/{rounds}: {} threads, pool {}, wait {}",
                round + 1,
                setup.threads,
                setup.pool_size,
                setup.wait
            );
            samples[index].push(run(&address, *setup, seconds));
        }
    }
    println!(
        "\nmedians of {rounds} round(s) of {seconds} s; 100 B values, 90 % gets, 1000 keys; \
         server: tiny-cache serve --workers 1 (separate process)\n"
    );
    println!("| threads | pool | wait | ops/s | p50 µs | p99 µs | p99.9 µs | client CPU µs/op | ctx switches/op | errors |");
    println!("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (setup, runs) in setups.iter().zip(&samples) {
        let pick = |f: fn(&Sample) -> f64| median(runs.iter().map(f));
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} | {:.0} |",
            setup.threads,
            setup.pool_size,
            setup.wait,
            pick(|s| s.ops_per_s),
            pick(|s| s.p50_us),
            pick(|s| s.p99_us),
            pick(|s| s.p999_us),
            pick(|s| s.cpu_us_per_op),
            pick(|s| s.ctx_switches_per_op),
            pick(|s| s.errors),
        );
    }
}
