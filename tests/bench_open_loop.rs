#![cfg(feature = "cli")]
//! `tiny-cache bench --rate`: the open loop keeps its schedule, and its
//! latencies, counted from when each call was due, show a server stall that
//! latencies counted from when each call was sent hide (coordinated
//! omission corrected).
//!
//! The stall comes from a TCP proxy of this test's own in front of an
//! embedded server: it stops forwarding, both ways, for [`STALL`] once.
//! This file holds one test so that cargo runs it alone, not beside other
//! tests competing for the CPU.
//!
//! The schedule asked for is 2000 calls a second. A debug build of the
//! client and server costs the better part of a millisecond of CPU a call,
//! so a busy 2-core machine may not have 2000 calls a second in it at all:
//! the test first measures what this machine does in a closed loop and,
//! when that is less than twice 2000, runs the same checks at half of it
//! (saying so on stderr). A rate the machine cannot reach would test the
//! machine, not the schedule. When the machine still falls behind (its
//! other processes took the cores meanwhile), the test tries again at a
//! lower rate, up to [`TRIES`] times; a schedule that runs too fast fails
//! at once.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiny_cache_client::server::Server;

/// How long the proxy stops forwarding.
const STALL: Duration = Duration::from_millis(300);

/// When the stall starts, after the proxy's first connection: past the
/// pre-fill and the 0.5 s warm-up, early in the 3 s measured window, so
/// that it lands inside the window even when start-up is slow.
const STALL_AFTER: Duration = Duration::from_millis(1500);

/// The schedule the test asks for, when the machine has room for it.
const RATE_PER_S: f64 = 2000.0;

/// How much faster than the rate tested the machine must be in a closed
/// loop: room for the other processes of a busy machine.
const HEADROOM: f64 = 2.0;

/// Lowest rate tested: a 300 ms stall still delays a tenth of its calls.
const MIN_RATE_PER_S: f64 = 100.0;

/// A TCP proxy to `upstream` that stops forwarding for [`STALL`] once,
/// [`STALL_AFTER`] its first connection (when `stall` is set).
struct Proxy {
    address: String,
}

impl Proxy {
    fn start(upstream: String, stall: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let address = listener.local_addr().expect("its address").to_string();
        // Set on the first connection: the window in which nothing moves.
        let window: Arc<Mutex<Option<(Instant, Instant)>>> = Arc::new(Mutex::new(None));
        std::thread::spawn(move || {
            for downstream in listener.incoming() {
                let Ok(downstream) = downstream else { return };
                let Ok(upstream) = TcpStream::connect(&upstream) else {
                    return;
                };
                if stall {
                    let mut window = window.lock().unwrap();
                    if window.is_none() {
                        let from = Instant::now() + STALL_AFTER;
                        *window = Some((from, from + STALL));
                    }
                }
                for stream in [&downstream, &upstream] {
                    // Nagle's algorithm would add its own delays to the
                    // ones under test.
                    stream.set_nodelay(true).unwrap();
                }
                let pairs = [
                    (
                        downstream.try_clone().unwrap(),
                        upstream.try_clone().unwrap(),
                    ),
                    (upstream, downstream),
                ];
                for (from, to) in pairs {
                    let window = Arc::clone(&window);
                    std::thread::spawn(move || pump(from, to, &window));
                }
            }
        });
        Proxy { address }
    }
}

/// Copies `from` to `to` until either closes, holding every chunk that
/// arrives during the stall until the stall ends.
fn pump(mut from: TcpStream, mut to: TcpStream, window: &Mutex<Option<(Instant, Instant)>>) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let stalled_until = window
            .lock()
            .unwrap()
            .and_then(|(from, until)| (from..until).contains(&Instant::now()).then_some(until));
        if let Some(until) = stalled_until {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Runs `bench` with `args` against `address` and returns its JSON object.
fn bench(address: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
        .args(["bench", "--server", address, "--timeout", "10", "--json"])
        .args(["--keys", "100"])
        .args(args)
        .env_remove("CACHE_SERVER_ADDRESS")
        .env_remove("CACHE_TIMEOUT")
        .output()
        .expect("the tiny-cache binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let last = stdout.trim_end().lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn number(run: &serde_json::Value, pointer: &str) -> f64 {
    run.pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing: {run}"))
}

/// `bench --rate RATE --duration 3` against `address`, with a thread per
/// 50 calls a second (16 at most): each has 20 ms for a call, room for a
/// slow machine. The threads are also the calls a stall can catch in
/// flight, which then wait the whole stall from when they were sent too;
/// at most 2 % of the rate, they are under 0.7 % of the window's calls and
/// leave the p99 from when calls were sent alone.
fn open_loop(address: &str, rate: f64) -> serde_json::Value {
    let threads = (rate / 50.0).clamp(1.0, 16.0).to_string();
    let rate = rate.to_string();
    bench(
        address,
        &[
            "--rate",
            &rate,
            "--duration",
            "3",
            "--warmup",
            "0.5",
            "--threads",
            &threads,
        ],
    )
}

/// The rate to test: 2000 calls a second, or what this machine can keep up
/// with `headroom` to spare.
fn rate_to_test(address: &str, headroom: f64) -> f64 {
    let closed = bench(
        address,
        &["--duration", "1", "--warmup", "0.2", "--threads", "16"],
    );
    let capacity = number(&closed, "/ops_per_s");
    let rate = (capacity / headroom / 100.0).floor() * 100.0;
    if rate >= RATE_PER_S {
        return RATE_PER_S;
    }
    let rate = rate.max(MIN_RATE_PER_S);
    eprintln!(
        "this machine does {capacity} calls/s in a closed loop in this build: \
         testing the schedule at {rate} calls/s instead of {RATE_PER_S}"
    );
    rate
}

/// Whether the schedule was kept: `rate` calls a second for 3 s, within
/// 5 %, none left unsent. Too many calls is a failure at once; too few may
/// be a machine that slowed down meanwhile (the caller tries again slower).
fn rate_kept(run: &serde_json::Value, rate: f64) -> bool {
    assert_eq!(run["mode"], "open", "{run}");
    assert_eq!(number(run, "/target_rate"), rate, "{run}");
    assert_eq!(number(run, "/errors"), 0.0, "{run}");
    let achieved = number(run, "/achieved_rate");
    assert!(
        achieved <= rate * 1.05,
        "achieved {achieved} calls/s: {run}"
    );
    let kept = achieved >= rate * 0.95 && number(run, "/unsent") == 0.0;
    if !kept {
        eprintln!("achieved {achieved} of {rate} calls/s: {run}");
    }
    kept
}

/// Times the machine may fall behind a schedule (other processes taking
/// its cores) before the test gives up; each try halves the rate.
const TRIES: u32 = 3;

/// The rate is the one this machine has room for (2000 calls a second, or
/// less on a busy machine: see the module's documentation), so the name
/// promises the rate asked for, whatever it was, not 2000.
#[test]
fn open_loop_achieves_the_rate_it_is_asked_for_and_its_p99_shows_a_server_stall() {
    let server = Server::local().expect("the embedded server starts");
    let steady_proxy = Proxy::start(server.address(), false);
    let mut runs = None;
    for attempt in 0..TRIES {
        let rate = rate_to_test(&steady_proxy.address, HEADROOM * f64::from(1 << attempt));
        let steady = open_loop(&steady_proxy.address, rate);
        if !rate_kept(&steady, rate) {
            continue;
        }
        let stalled = open_loop(&Proxy::start(server.address(), true).address, rate);
        if rate_kept(&stalled, rate) {
            runs = Some((rate, steady, stalled));
            break;
        }
    }
    let Some((rate, steady, stalled)) = runs else {
        panic!("the schedule was not kept in {TRIES} tries (see stderr)");
    };
    // What the runs judged below report: the rate asked for, achieved
    // within 5 % (calls a second over the measured window), nothing unsent.
    for run in [&steady, &stalled] {
        assert_eq!(number(run, "/target_rate"), rate, "{run}");
        let achieved = number(run, "/achieved_rate");
        assert!(
            (achieved - rate).abs() <= rate * 0.05,
            "asked for {rate} calls/s, achieved {achieved}: {run}"
        );
        assert_eq!(number(run, "/unsent"), 0.0, "{run}");
    }
    eprintln!("schedule kept at {rate} calls/s (asked for {RATE_PER_S} when there is room)");
    // A tenth of the window's calls (600 of 6000 at 2000/s) fell due
    // during the 300 ms stall, waiting from up to 300 ms down to 0: p99
    // lands near 270 ms. Counted from when they were sent instead, only the
    // calls in flight when it began waited that long: p99 stays low.
    let p99 = number(&stalled, "/p99_us");
    assert!(p99 >= 150_000.0, "p99 {p99} µs hides the stall: {stalled}");
    assert!(
        number(&stalled, "/max_us") >= 250_000.0,
        "max hides the stall: {stalled}"
    );
    let steady_p99 = number(&steady, "/p99_us");
    assert!(steady_p99 < p99, "steady {steady_p99} µs vs {p99} µs");
    let sent_p99 = number(&stalled, "/service/p99_us");
    assert!(
        sent_p99 <= p99 / 2.0,
        "from when sent, p99 {sent_p99} µs; from when due, {p99} µs"
    );
    // Every operation's own row shows it too.
    assert!(
        number(&stalled, "/operations/get/p99_us") >= 150_000.0,
        "{stalled}"
    );
}
