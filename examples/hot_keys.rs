//! Hot keys across a fleet: three embedded servers and four reader
//! processes, each with eight threads on one hot key whose loader takes
//! 200 ms and whose entry lives a second. Three rounds show what each tool
//! saves: single flight alone (one fill per process), leases (one fill
//! per expiry for the whole fleet), and leases with refresh-ahead (one
//! background refresh, and no reader waits once the key is warm).
//!
//! Run with
//! `cargo run --release --example hot_keys --features server,cluster,cache`.
//!
//! The same binary plays every part: started with `server` it serves until
//! its standard input closes; with `reader` it reads and prints what it saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tiny_cache_client::cache::ReadThrough;
use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::server::Server;

type Error = Box<dyn std::error::Error>;

const READERS: usize = 4;
const THREADS: usize = 8;
const RUN: Duration = Duration::from_secs(3);
const TTL: Duration = Duration::from_secs(1);
const LOAD: Duration = Duration::from_millis(200);
const REFRESH_AFTER: Duration = Duration::from_millis(500);
/// A read this slow waited for a load (a hit takes about a millisecond).
const SLOW: Duration = Duration::from_millis(50);

/// How a round's readers read the hot key.
#[derive(Clone, Copy)]
enum Mode {
    SingleFlight,
    Leases,
    LeasesAndRefresh,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::SingleFlight, Mode::Leases, Mode::LeasesAndRefresh];

    fn name(self) -> &'static str {
        match self {
            Mode::SingleFlight => "single-flight",
            Mode::Leases => "leases",
            Mode::LeasesAndRefresh => "leases+refresh",
        }
    }

    fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("server") => serve(),
        Some("reader") => {
            let [_, servers, mode] = &args[..] else {
                return Err("usage: hot_keys reader <server,server,...> <mode>".into());
            };
            let mode = Mode::parse(mode).ok_or("unknown mode")?;
            read(servers, mode)
        }
        _ => lead(),
    }
}

/// Serves on a loopback port, printed on the first line, until standard
/// input closes (the leading process ends or drops it).
fn serve() -> Result<(), Error> {
    let server = Server::local()?;
    println!("{}", server.address());
    std::io::stdout().flush()?;
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    server.shutdown();
    Ok(())
}

/// Starts the servers, then each round's readers, and prints the table.
fn lead() -> Result<(), Error> {
    let me = std::env::current_exe()?;
    let mut servers: Vec<Child> = (0..3)
        .map(|_| {
            Command::new(&me)
                .arg("server")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut addresses = Vec::new();
    for server in &mut servers {
        let stdout = server.stdout.take().ok_or("a server without stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        addresses.push(line.trim().to_owned());
    }
    println!("servers (separate processes): {}", addresses.join(", "));
    println!(
        "{READERS} reader processes x {THREADS} threads, {} s; the hot key lives {} s, \
         its loader takes {} ms\n",
        RUN.as_secs(),
        TTL.as_secs(),
        LOAD.as_millis()
    );
    println!(
        "{:<16} {:>6} {:>8} {:>10} {:>10} {:>12}",
        "round", "loads", "reads", "p99 (ms)", "max (ms)", "slow, warm"
    );
    let joined = addresses.join(",");
    for mode in Mode::ALL {
        let readers: Vec<Child> = (0..READERS)
            .map(|_| {
                Command::new(&me)
                    .args(["reader", &joined, mode.name()])
                    .stdout(Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        let (mut loads, mut reads, mut p99, mut max, mut slow) = (0, 0, 0.0f64, 0.0f64, 0);
        for reader in readers {
            let output = reader.wait_with_output()?;
            if !output.status.success() {
                return Err(format!("a {} reader failed", mode.name()).into());
            }
            let report = String::from_utf8_lossy(&output.stdout);
            let numbers: Vec<f64> = report
                .split_whitespace()
                .filter_map(|word| word.parse().ok())
                .collect();
            let [l, r, p, m, w] = numbers[..] else {
                return Err(format!("an unreadable report: {report:?}").into());
            };
            loads += l as u64;
            reads += r as u64;
            slow += w as u64;
            p99 = p99.max(p);
            max = max.max(m);
        }
        println!(
            "{:<16} {loads:>6} {reads:>8} {p99:>10.2} {max:>10.1} {slow:>12}",
            mode.name()
        );
    }
    println!(
        "\nloads: loader runs across the fleet; p99 and max: the worst reader process's, \
         the first fill included; slow, warm: reads over {} ms after a thread's first",
        SLOW.as_millis()
    );
    for mut server in servers {
        drop(server.stdin.take());
        let _ = server.wait();
    }
    Ok(())
}

/// One reader process: `THREADS` threads read the round's hot key for
/// `RUN`; prints `loads reads p99_ms max_ms slow_warm_reads`.
fn read(servers: &str, mode: Mode) -> Result<(), Error> {
    let cluster = servers
        .split(',')
        .fold(Cluster::builder(), |builder, server| builder.server(server))
        .build()?;
    let leases = !matches!(mode, Mode::SingleFlight);
    let mut builder = ReadThrough::builder(cluster)
        .leases(leases)
        .wait_timeout(Duration::from_secs(5));
    if matches!(mode, Mode::LeasesAndRefresh) {
        builder = builder.refresh_after(REFRESH_AFTER);
    }
    let cache = builder.build();
    let key = format!("hot:{}", mode.name());
    let loads = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + RUN;
    let waits: Vec<(Duration, bool)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (cache, key, loads) = (&cache, &key, &loads);
                scope.spawn(move || {
                    let mut waits = Vec::new();
                    while Instant::now() < until {
                        let started = Instant::now();
                        let loads = Arc::clone(loads);
                        let load = move || {
                            loads.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(LOAD);
                            "the hot value"
                        };
                        let value = match mode {
                            Mode::LeasesAndRefresh => cache.get_with_refresh(key, TTL, load),
                            _ => cache.get_with(key, TTL, load),
                        };
                        if value.is_err() {
                            return Err(format!("a read failed: {value:?}"));
                        }
                        let warm = !waits.is_empty();
                        waits.push((started.elapsed(), warm));
                    }
                    Ok(waits)
                })
            })
            .collect();
        let mut all = Vec::new();
        for thread in threads {
            match thread.join() {
                Ok(Ok(waits)) => all.extend(waits),
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err("a reader thread panicked".to_owned()),
            }
        }
        Ok(all)
    })?;
    if waits.is_empty() {
        return Err("no read finished".into());
    }
    let slow_warm = waits
        .iter()
        .filter(|(wait, warm)| *warm && *wait > SLOW)
        .count();
    let mut waits: Vec<Duration> = waits.into_iter().map(|(wait, _)| wait).collect();
    waits.sort_unstable();
    let at = |q: f64| waits[((waits.len() as f64 * q) as usize).min(waits.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // Give the last refresh its store before this process ends.
    std::thread::sleep(LOAD);
    println!(
        "{} {} {:.3} {:.3} {slow_warm}",
        loads.load(Ordering::Relaxed),
        waits.len(),
        ms(at(0.99)),
        ms(at(1.0))
    );
    Ok(())
}
