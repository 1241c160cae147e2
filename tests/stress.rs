#![cfg(feature = "server")]
//! Load, kill, restart: the client keeps every call inside its deadline and
//! recovers on its own. Memory is read from /proc/self/status with the
//! server in a child process (the CLI's `serve`, so that test needs the
//! `cli` feature), and this file keeps its tests few and
//! sequential-friendly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, Error};

/// How late past its deadline a call may return under heavy load on two
/// shared cores.
const DEADLINE_SLACK: Duration = Duration::from_millis(750);

/// How much the client's resident memory may grow over two more waves of
/// 1,000 threads, once the first has sized its buffers.
#[cfg(feature = "cli")]
const CLIENT_GROWTH_LIMIT_KIB: u64 = 16 * 1024;

#[cfg(feature = "cli")]
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What one load thread saw; it owns its keys, so it knows what each may
/// hold.
#[derive(Default)]
struct LoadReport {
    successes: usize,
    /// Calls that failed, always with `Unavailable` or `DeadlineExceeded`.
    failures: usize,
    /// Whether a call succeeded after the restarted server was up.
    recovered: bool,
}

#[test]
fn server_killed_under_load_from_64_threads_then_restarted_recovers_by_itself() {
    const THREADS: usize = 64;
    const KEYS_PER_THREAD: u64 = 16;
    let server = Server::local().unwrap();
    let address = server.address();
    let timeout = Duration::from_secs(2);
    let client = Client::builder(&address).timeout(timeout).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(AtomicUsize::new(0));
    let recovered = Arc::new(AtomicUsize::new(0));

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = client.clone();
            let (stop, restarted) = (Arc::clone(&stop), Arc::clone(&restarted));
            let (successes, recovered) = (Arc::clone(&successes), Arc::clone(&recovered));
            thread::spawn(move || {
                let mut report = LoadReport::default();
                // Per key, every value it may hold: the last acknowledged
                // write and any write since whose outcome is unknown (a
                // failed set may still have been applied). A killed server
                // loses everything, so a miss is always possible.
                let mut possible: HashMap<String, Vec<String>> = HashMap::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("t{t}-{}", i % KEYS_PER_THREAD);
                    let up_since_restart = restarted.load(Ordering::Acquire);
                    let began = Instant::now();
                    let outcome = if i % 10 == 0 {
                        let value = format!("t{t}-write{i}");
                        let written = client.set(&key, &value);
                        let values = possible.entry(key).or_default();
                        if written.is_ok() {
                            values.clear();
                        }
                        values.push(value);
                        written
                    } else {
                        client.get_string(&key).map(|read| {
                            if let Some(read) = read {
                                let values = possible.get(&key).map(Vec::as_slice).unwrap_or(&[]);
                                assert!(
                                    values.contains(&read),
                                    "{key} read {read:?}, which was never written there \
                                     (possible: {values:?})"
                                );
                            }
                        })
                    };
                    let took = began.elapsed();
                    assert!(took < timeout + DEADLINE_SLACK, "call took {took:?}");
                    match outcome {
                        Ok(()) => {
                            report.successes += 1;
                            successes.fetch_add(1, Ordering::Relaxed);
                            if up_since_restart && !report.recovered {
                                report.recovered = true;
                                recovered.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(Error::Unavailable(_) | Error::DeadlineExceeded(_)) => {
                            report.failures += 1;
                            // The server is down: back off a little, as a
                            // caller would, instead of spinning.
                            thread::sleep(Duration::from_millis(20));
                        }
                        Err(other) => panic!("unexpected error under failover: {other:?}"),
                    }
                }
                report
            })
        })
        .collect();

    // Load first, then the kill.
    assert!(
        wait_until(Duration::from_secs(30), || successes
            .load(Ordering::Relaxed)
            >= 20 * THREADS),
        "the load never got going"
    );
    server.kill();
    let down = Instant::now();
    thread::sleep(Duration::from_millis(500));
    let restarted_server = Server::builder().listen(&address).start().unwrap();
    restarted.store(true, Ordering::Release);
    // Reconnects back off 1 s ±20 % after a refused attempt: every thread
    // must get calls through again by itself.
    assert!(
        wait_until(Duration::from_secs(30), || recovered.load(Ordering::SeqCst)
            == THREADS),
        "only {} of {THREADS} threads recovered {:?} after the kill",
        recovered.load(Ordering::SeqCst),
        down.elapsed()
    );
    stop.store(true, Ordering::Relaxed);

    let reports: Vec<LoadReport> = workers
        .into_iter()
        .map(|worker| worker.join().expect("no caller may panic"))
        .collect();
    assert!(reports
        .iter()
        .all(|report| report.recovered && report.successes > 0));
    let failures: usize = reports.iter().map(|report| report.failures).sum();
    assert!(failures > 0, "no call noticed the server being killed");
    // The client goes on working against the restarted server.
    client.set("after", "restart").unwrap();
    assert_eq!(
        client.get_string("after").unwrap().as_deref(),
        Some("restart")
    );
    drop(restarted_server);
}

/// Polls `done` every 10 ms until it holds or `within` passes.
fn wait_until(within: Duration, done: impl Fn() -> bool) -> bool {
    let give_up = Instant::now() + within;
    while !done() {
        if Instant::now() >= give_up {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The CLI's `tiny-cache serve` as a child process, so its memory is not
/// this process's. Killed when dropped.
#[cfg(feature = "cli")]
struct ChildServer {
    child: std::process::Child,
    address: String,
}

#[cfg(feature = "cli")]
impl ChildServer {
    fn start() -> ChildServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tiny-cache serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut address = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut address)
            .expect("read the address");
        let server = ChildServer {
            child,
            address: address.trim().to_owned(),
        };
        assert!(
            server.address.starts_with("127.0.0.1:"),
            "serve printed {:?}",
            server.address
        );
        server
    }
}

#[cfg(feature = "cli")]
impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[cfg(feature = "cli")]
fn a_thousand_threads_share_one_client_without_deadlock_and_its_memory_stays_flat() {
    use std::sync::Barrier;

    // The server runs in its own process: what this process holds is the
    // client (and the test's own threads), not 30,000 cache entries.
    let server = ChildServer::start();
    let client = Client::builder(&server.address)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let wave = |round: usize| {
        let barrier = Arc::new(Barrier::new(1000));
        let threads: Vec<_> = (0..1000)
            .map(|t| {
                let (client, barrier) = (client.clone(), Arc::clone(&barrier));
                thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        barrier.wait();
                        for i in 0..10 {
                            let key = format!("r{round}-t{t}-{i}");
                            client.set(&key, key.as_bytes()).unwrap();
                            assert_eq!(client.get(&key).unwrap().as_deref(), Some(key.as_bytes()));
                        }
                    })
                    .expect("spawn")
            })
            .collect();
        for thread in threads {
            thread.join().expect("no caller may panic");
        }
    };

    let started = Instant::now();
    wave(0);
    let after_first = resident_kib().expect("VmRSS in /proc/self/status");
    wave(1);
    wave(2);
    let after_third = resident_kib().expect("VmRSS in /proc/self/status");
    // Each call has a 30 s deadline, so a stuck call fails its unwrap; this
    // bound catches a deadlock outside the calls. Generous: 60,000 calls
    // take about 40 s here alone and over 120 s with a load average of 17.
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "took {:?}",
        started.elapsed()
    );
    eprintln!(
        "client resident memory: {after_first} KiB after one wave, {after_third} KiB after three"
    );
    // The first wave sizes every buffer; later waves must reuse them.
    assert!(
        after_third < after_first + CLIENT_GROWTH_LIMIT_KIB,
        "the client's resident memory grew from {after_first} KiB to {after_third} KiB over two more waves"
    );
    assert_eq!(client.stats().unwrap().size, 3 * 1000 * 10);
}

#[test]
fn blocking_calls_from_inside_a_tokio_runtime_work_and_never_deadlock() {
    let server = Server::local().unwrap();
    let client = Client::builder(&server.address())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // On a runtime thread (blocking it, as documented) and from
    // spawn_blocking (the recommended way): both complete.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let on_runtime = client.clone();
    runtime.block_on(async move {
        on_runtime.set("k", "v").unwrap();
        let in_pool = on_runtime.clone();
        let read = tokio::task::spawn_blocking(move || in_pool.get_string("k"))
            .await
            .unwrap();
        assert_eq!(read.unwrap().as_deref(), Some("v"));
    });

    // A server whose only thread is the one the caller blocks can never
    // answer: the call ends at its deadline instead of hanging.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let stuck = Client::builder(&address.to_string())
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    runtime.block_on(async move {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        // The accept loop would run on this thread, which the call blocks.
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let started = Instant::now();
        let outcome = stuck.get("k");
        assert!(
            matches!(outcome, Err(Error::DeadlineExceeded(_))),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500) + DEADLINE_SLACK);
    });
}
