//! What TLS costs: connection set-up (connect + TLS + HTTP/2 handshake +
//! first call) and steady-state ops/s, TLS next to plain HTTP/2, in one run.
//!
//! Both servers are embedded ones (one runtime worker each) in this
//! process; the certificates are made at start-up by rcgen. Plain and TLS
//! alternate within each round and the medians are shown, because absolute
//! figures on a shared machine drift between runs.
//!
//! Run with: `cargo bench --bench tls --features server` (about 1 minute);
//! `-- --quick` for a short pass.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tiny_cache_client::server::Server;
use tiny_cache_client::Client;

/// Keys the steady-state load spreads over.
const KEYS: usize = 1_000;

/// Value size of the steady-state load, as in BENCHMARKS.md's other tables.
const VALUE_BYTES: usize = 100;

/// One side of the comparison.
struct Target {
    name: &'static str,
    server: Server,
    ca_pem: Option<String>,
}

impl Target {
    fn client(&self, pool_size: usize) -> Client {
        let mut builder = Client::builder(&self.server.url())
            .pool_size(pool_size)
            .timeout(Duration::from_secs(5));
        if let Some(ca) = &self.ca_pem {
            builder = builder.tls_ca_certificate_pem(ca);
        }
        builder.build().expect("client builds")
    }
}

fn tls_target() -> Target {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let certificate = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    let server = Server::builder()
        .workers(1)
        .tls(certificate.pem(), key.serialize_pem())
        .start()
        .expect("TLS server starts");
    Target {
        name: "TLS",
        server,
        ca_pem: Some(ca.pem()),
    }
}

fn plain_target() -> Target {
    Target {
        name: "plain",
        server: Server::builder().workers(1).start().expect("server starts"),
        ca_pem: None,
    }
}

/// Time from `build()` to the first call's reply on a fresh client: TCP
/// connect, TLS handshake (full, no resumption: every client has its own
/// session cache), HTTP/2 preface and PING, and one `get`.
fn setup_time(target: &Target) -> Duration {
    let started = Instant::now();
    let client = target.client(1);
    client.get("warm").expect("first call");
    let elapsed = started.elapsed();
    drop(client);
    elapsed
}

/// Ops/s of `threads` callers sharing one client for `seconds`, 90 % gets
/// and 10 % sets.
fn throughput(target: &Target, threads: usize, seconds: f64) -> f64 {
    let client = target.client(1);
    let value = vec![b'x'; VALUE_BYTES];
    for key in 0..KEYS {
        client.set(&format!("k{key}"), &value[..]).expect("preload");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|seed| {
            let (client, stop, done, value) = (
                client.clone(),
                Arc::clone(&stop),
                Arc::clone(&done),
                value.clone(),
            );
            thread::spawn(move || {
                let mut n = seed * 7919;
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let key = format!("k{}", (n >> 8) % KEYS);
                    if n % 10 == 0 {
                        client.set(&key, &value[..]).expect("set");
                    } else {
                        client.get(&key).expect("get");
                    }
                    ops += 1;
                }
                done.fetch_add(ops, Ordering::Relaxed);
            })
        })
        .collect();
    let started = Instant::now();
    thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("bench thread");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn percentile(mut samples: Vec<f64>, fraction: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let index = ((samples.len() as f64 - 1.0) * fraction).round() as usize;
    samples[index]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (setups, rounds, seconds) = if quick { (10, 1, 1.0) } else { (40, 3, 3.0) };
    let targets = [plain_target(), tls_target()];

    // Warm both sides (page faults, first allocations) before measuring.
    for target in &targets {
        setup_time(target);
    }
    let mut setup_ms: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for _ in 0..setups {
        for (index, target) in targets.iter().enumerate() {
            setup_ms[index].push(setup_time(target).as_secs_f64() * 1e3);
        }
    }
    println!("Connection set-up (build + connect + handshakes + first call), {setups} each:");
    println!("| transport | p50 ms | p90 ms |");
    println!("| --- | ---: | ---: |");
    for (index, target) in targets.iter().enumerate() {
        println!(
            "| {} | {:.2} | {:.2} |",
            target.name,
            median(setup_ms[index].clone()),
            percentile(setup_ms[index].clone(), 0.9)
        );
    }

    println!();
    println!("Steady state (one client, pool 1; {rounds} round(s) × {seconds} s, medians):");
    println!("| threads | plain ops/s | TLS ops/s | TLS / plain |");
    println!("| ---: | ---: | ---: | ---: |");
    for threads in [1, 16, 64] {
        let mut ops: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
        for _ in 0..rounds {
            for (index, target) in targets.iter().enumerate() {
                ops[index].push(throughput(target, threads, seconds));
            }
        }
        let plain = median(ops[0].clone());
        let tls = median(ops[1].clone());
        println!("| {threads} | {plain:.0} | {tls:.0} | {:.2} |", tls / plain);
    }
}
