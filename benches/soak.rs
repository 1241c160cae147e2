//! Soak: the chaos suite's workload for ten minutes while faults cycle,
//! with this process's resident memory, threads and open file descriptors
//! sampled every 10 s, and their growth reported.
//!
//! The workload is the chaos suite's own (`tests/common/chaos_workload.rs`,
//! included here with `#[path]`): a `Cluster` with two replicas over three
//! servers, each behind a Toxiproxy-style fault proxy
//! (`tests/common/fault_proxy.rs`), a read-through near cache (fail-open)
//! and an entity cache over the cluster, and 32 threads of reads, writes,
//! invalidations and stampedes, every call judged by the chaos checker.
//!
//! The servers are `tiny-cache serve` processes, so the figures are the
//! client's: the cluster, its connections and helper threads, the caches,
//! the 32 caller threads, and the checker's records of a cycle's calls.
//! The fault proxies run in this process too (a thread per proxy accepting,
//! four threads and two sockets per proxied connection): their threads are
//! counted apart by name and their connections reported in every sample,
//! so that their share of the totals can be told apart.
//!
//! Besides VmRSS, each sample reads VmRSS again after glibc's
//! `malloc_trim(0)` and the live heap (bytes allocated and not freed, from
//! a counting global allocator), which tell memory the process holds from
//! memory the allocator kept; glibc's mmap threshold is pinned at 128 KiB
//! so that the checker's large record buffers are unmapped when freed
//! rather than raising the arenas' high-water marks. The verdicts fit a
//! line through the healed samples (3 s into each cycle), which compare
//! like with like.
//!
//! Faults cycle every 30 s: 5 s clean, 20 s of one fault kind (the chaos
//! suite's kinds, in turn), 5 s healed, so 10 s healed between two
//! faults. Each cycle writes its own keys: the checker judges a cycle from
//! that cycle's calls alone, reads every key back once the cycle is over
//! (during the next cycle's clean 5 s), then drops the calls.
//!
//! Run with: `cargo bench --bench soak --features cli,entity-cache`
//! (10 minutes). `-- --duration 60` (or `TINY_CACHE_SOAK_SECONDS=60`) for
//! a shorter run; `-- --warmup S` for another warm-up (60 s, or a fifth of
//! a shorter run); `-- --json` adds a one-line JSON summary at the end.
//! Linux only (it reads `/proc/self`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod common;

#[allow(dead_code)]
#[path = "../tests/common/chaos_workload.rs"]
mod chaos_workload;
#[allow(dead_code)]
#[path = "../tests/common/fault_proxy.rs"]
mod fault_proxy;

use chaos_workload::checker::{self, Call, Verdict};
use chaos_workload::{op_bound, work, World, LATE_SLACK, LOCAL_TTL, THREADS};
use fault_proxy::{Fault, FaultProxy};

/// Counts the bytes allocated and not yet freed, around the system
/// allocator: the live heap, which neither fragmentation nor what the
/// allocator keeps of freed memory inflates, as they do RSS.
struct CountingAllocator;

static HEAP_IN_USE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; the counter
// only follows the sizes it was given.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            HEAP_IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            HEAP_IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        HEAP_IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            HEAP_IN_USE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// One fault cycle: `LEAD` clean, `FAULT_ON` faulted, the rest healed.
const CYCLE: Duration = Duration::from_secs(30);
const LEAD: Duration = Duration::from_secs(5);
const FAULT_ON: Duration = Duration::from_secs(20);
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples fall 3 s after a multiple of 10 s: never at a cycle's edges,
/// where the caller threads hand a cycle's calls to the checker, nor at a
/// fault's start or end.
const SAMPLE_OFFSET: Duration = Duration::from_secs(3);
const DEFAULT_SECONDS: f64 = 600.0;
const DEFAULT_WARMUP_SECONDS: f64 = 60.0;
/// Traffic runs this long past the last sample, so that it is taken under
/// load like the others.
const TAIL: Duration = Duration::from_secs(1);
/// How long past the end of traffic a caller thread may take to return.
const JOIN_WAIT: Duration = Duration::from_secs(10);
/// How long the checker waits for every server to be up before it reads a
/// cycle's keys back (as the chaos suite does before its final reads).
const BACK_WAIT: Duration = Duration::from_millis(2500);
/// "Flat" means the fitted change over the measured span (slope × span)
/// is within this fraction of the first measured value, or the floor
/// below, whichever is larger.
const FLAT_FRACTION: f64 = 0.05;
const FLAT_FLOOR_RSS_KIB: f64 = 2048.0;
const FLAT_FLOOR_COUNT: f64 = 4.0;

/// A fault kind of the cycle: faults on servers (by index), all at once.
struct Kind {
    name: &'static str,
    faults: Vec<(usize, Fault)>,
}

/// The chaos suite's fault kinds, each for a whole fault period here.
fn kinds() -> Vec<Kind> {
    let slow = Fault::latency(Duration::from_millis(20), Duration::from_millis(5));
    // About 20 replies, then an RST in the middle of the next one.
    let reset = Fault::ResetPeer { after_bytes: 3000 };
    let partition = Fault::Partition {
        drop_existing: false,
    };
    vec![
        Kind {
            name: "black hole",
            faults: vec![(0, Fault::BlackHole)],
        },
        Kind {
            name: "20 ms slow",
            faults: vec![(1, slow)],
        },
        Kind {
            name: "half-open",
            faults: vec![(2, Fault::HalfOpen)],
        },
        Kind {
            name: "reset mid-reply",
            faults: vec![(0, reset)],
        },
        Kind {
            name: "partition",
            faults: vec![(1, partition)],
        },
        Kind {
            name: "black hole + slow",
            faults: vec![(0, Fault::BlackHole), (1, slow)],
        },
        Kind {
            name: "partition + reset",
            faults: vec![(1, partition), (2, reset)],
        },
    ]
}

struct Options {
    duration: Duration,
    warmup: Duration,
    json: bool,
}

fn options() -> Options {
    let mut seconds: Option<f64> = std::env::var("TINY_CACHE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let mut warmup: Option<f64> = None;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let mut number = |what: &str| -> f64 {
            inline
                .clone()
                .or_else(|| args.next())
                .and_then(|v| v.parse().ok())
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .unwrap_or_else(|| panic!("{what} takes a number of seconds"))
        };
        match name.as_str() {
            "--duration" => seconds = Some(number("--duration")),
            "--warmup" => warmup = Some(number("--warmup")),
            "--json" => json = true,
            // What `cargo bench` passes to every harness.
            "--bench" => {}
            other => eprintln!("soak: ignoring argument {other:?}"),
        }
    }
    let mut seconds = seconds.unwrap_or(DEFAULT_SECONDS);
    if seconds < 20.0 {
        eprintln!("soak: {seconds} s is too short to sample growth; running 20 s");
        seconds = 20.0;
    }
    let warmup = warmup.unwrap_or(DEFAULT_WARMUP_SECONDS.min(seconds / 5.0));
    Options {
        duration: Duration::from_secs_f64(seconds),
        warmup: Duration::from_secs_f64(warmup.min(seconds - 10.0)),
        json,
    }
}

/// A `tiny-cache serve --json` process on a free loopback port, killed
/// when its guard drops (also on a panic).
fn start_server() -> (common::Guard, String) {
    let (guard, line) = common::start_server(
        Path::new(common::TINY_CACHE),
        &["serve", "--listen", "127.0.0.1:0", "--json"],
        false,
    );
    let object: serde_json::Value = serde_json::from_str(&line).expect("serve's JSON line");
    let address = object["address"]
        .as_str()
        .expect("an address in serve's JSON line")
        .to_owned();
    assert!(address.starts_with("127.0.0.1:"), "not loopback: {address}");
    (guard, address)
}

/// The schedule shared by the driver, the caller threads and the checker.
#[derive(Clone, Copy)]
struct Schedule {
    t0: Instant,
    /// When traffic stops: the last sample plus `TAIL`.
    end: Instant,
    cycles: usize,
}

impl Schedule {
    fn new(t0: Instant, duration: Duration) -> Schedule {
        let end = t0 + duration + TAIL;
        // A cycle starts only if its fault would start before the end.
        let mut cycles = 0;
        while t0 + CYCLE * cycles as u32 + LEAD < end {
            cycles += 1;
        }
        Schedule { t0, end, cycles }
    }

    fn start(&self, cycle: usize) -> Instant {
        self.t0 + CYCLE * cycle as u32
    }

    /// The last cycle runs on to the end of traffic.
    fn end_of(&self, cycle: usize) -> Instant {
        if cycle + 1 < self.cycles {
            self.start(cycle + 1)
        } else {
            self.end
        }
    }

    fn fault_on(&self, cycle: usize) -> Instant {
        self.start(cycle) + LEAD
    }

    fn fault_off(&self, cycle: usize) -> Instant {
        (self.fault_on(cycle) + FAULT_ON).min(self.end)
    }
}

/// The process's resources at one time, and what explains them.
#[derive(Clone, Default)]
struct Sample {
    at_s: f64,
    phase: String,
    rss_kib: f64,
    /// VmRSS again right after `malloc_trim(0)`: what the process holds
    /// rather than what the allocator kept of freed memory.
    rss_trimmed_kib: f64,
    /// Bytes the program has allocated and not freed (the counting
    /// allocator's figure): live data, whatever the allocator keeps.
    heap_kib: f64,
    threads: f64,
    /// Threads named `fault-proxy-*`: the proxies', not the client's.
    proxy_threads: f64,
    /// Threads named `tiny-cache-*`: the library's (connection workers,
    /// cluster helpers and watcher).
    library_threads: f64,
    /// Of those, the cluster's helpers (`tiny-cache-helper`).
    helper_threads: f64,
    fds: f64,
    sockets: f64,
    /// Connections open through the three proxies.
    proxy_connections: f64,
    /// Connections the proxies accepted since they started.
    proxy_accepted: u64,
    /// Hints the cluster holds for its servers, all together.
    hints: u64,
    /// Servers the cluster has marked down.
    down: String,
    /// Entries in the read-through's near cache (moka).
    near_entries: f64,
    /// Whether a fault was in force.
    faulted: bool,
}

impl Sample {
    /// The proxies' descriptors: two sockets per open connection and a
    /// listener each.
    fn proxy_fds(&self, proxies: usize) -> f64 {
        2.0 * self.proxy_connections + proxies as f64
    }
}

fn status_kib_or_count(status: &str, field: &str) -> f64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(f64::NAN)
}

/// glibc's: gives the free memory of every arena back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() -> bool {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes no pointer and is thread-safe (it takes
    // each arena's lock); it only releases free pages.
    unsafe { malloc_trim(0) };
    true
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() -> bool {
    false
}

/// Pins glibc's mmap threshold at its initial 128 KiB. By default glibc
/// raises it (up to 32 MiB) whenever a large block is freed, after which
/// large blocks come from the arenas and stay resident once freed. The
/// checker's records of a cycle's calls (a growing vector per caller
/// thread, then one for the cycle: megabytes) would then raise each
/// arena's high-water mark, and RSS would be the harness's more than the
/// client's. Pinned, a block of 128 KiB or more is mapped on its own and
/// unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_mmap_threshold() -> bool {
    unsafe extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
    // SAFETY: mallopt only sets a malloc parameter; called before any
    // other thread starts.
    unsafe { mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pin_mmap_threshold() -> bool {
    false
}

/// RSS (KiB), before and after a heap trim, and thread count from
/// /proc/self/status; threads by name from /proc/self/task; descriptors
/// from /proc/self/fd (the listing's own descriptor left out), sockets
/// among them.
fn sample_process(sample: &mut Sample) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    sample.rss_kib = status_kib_or_count(&status, "VmRSS:");
    sample.threads = status_kib_or_count(&status, "Threads:");
    sample.heap_kib = HEAP_IN_USE.load(Ordering::Relaxed) as f64 / 1024.0;
    sample.rss_trimmed_kib = if trim_heap() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status_kib_or_count(&status, "VmRSS:")
    } else {
        f64::NAN
    };
    let (mut proxy, mut library, mut helpers) = (0.0, 0.0, 0.0);
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            // A thread may end while we look: skip it.
            let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
                continue;
            };
            if name.starts_with("fault-proxy") {
                proxy += 1.0;
            } else if name.starts_with("tiny-cache") {
                library += 1.0;
                // Thread names are cut to 15 bytes here.
                if name.starts_with("tiny-cache-help") {
                    helpers += 1.0;
                }
            }
        }
    }
    sample.proxy_threads = proxy;
    sample.library_threads = library;
    sample.helper_threads = helpers;
    let (mut fds, mut sockets) = (0.0, 0.0);
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        for entry in entries.flatten() {
            fds += 1.0;
            if std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            {
                sockets += 1.0;
            }
        }
        fds -= 1.0;
    }
    sample.fds = fds;
    sample.sockets = sockets;
}

fn take_sample(
    at: Duration,
    phase: &str,
    proxies: &[FaultProxy],
    world: Option<&World>,
    names: &[String],
) -> Sample {
    let mut sample = Sample {
        at_s: at.as_secs_f64(),
        phase: phase.to_owned(),
        ..Sample::default()
    };
    sample.proxy_connections = proxies.iter().map(FaultProxy::connections).sum::<usize>() as f64;
    sample.proxy_accepted = proxies.iter().map(FaultProxy::accepted).sum();
    if let Some(world) = world {
        let states = world.cluster.servers();
        sample.hints = states.iter().map(|s| s.pending_hints as u64).sum();
        sample.down = states
            .iter()
            .filter(|s| !s.up)
            .map(|s| {
                names
                    .iter()
                    .position(|name| *name == s.server)
                    .map_or(s.server.clone(), |i| format!("s{i}"))
            })
            .collect::<Vec<_>>()
            .join(" ");
        // Runs moka's pending maintenance first, which it also does on its
        // own every so often under traffic.
        sample.near_entries = world.read_through.store().local_entries() as f64;
    }
    sample_process(&mut sample);
    sample
}

/// What the checker found in one cycle.
struct CycleReport {
    cycle: usize,
    kind: &'static str,
    from_s: f64,
    to_s: f64,
    verdict: Verdict,
    /// Stampede loader runs while the cycle was judged (approximate at
    /// cycle boundaries) against its stampede windows.
    loads: u64,
    /// Caller threads whose calls arrived (32 unless one hung).
    threads: usize,
    /// Whether every server was up when the cycle's keys were read back.
    all_up: bool,
    hints_at_finals: u64,
    /// Memory the cycle's call records took (the checker's own cost).
    record_bytes: usize,
}

#[allow(clippy::too_many_arguments)]
fn judge_cycle(
    world: &World,
    names: &[String],
    cycle: usize,
    kind: &'static str,
    schedule: &Schedule,
    calls: &[Call],
    threads: usize,
    loads: u64,
) -> CycleReport {
    let waiting = Instant::now();
    while world.cluster.servers().iter().any(|s| !s.up) && waiting.elapsed() < BACK_WAIT {
        thread::sleep(Duration::from_millis(25));
    }
    let states = world.cluster.servers();
    let all_up = states.iter().all(|s| s.up);
    let hints_at_finals = states.iter().map(|s| s.pending_hints as u64).sum();
    let prefix = format!("c{cycle}-");
    let finals = world.finals(&prefix);
    let homes = world.homes(&prefix, names);
    let verdict = checker::judge(
        calls,
        &finals,
        LOCAL_TTL,
        |op| op_bound(op) + LATE_SLACK,
        |index| homes[index].clone(),
    );
    CycleReport {
        cycle,
        kind,
        from_s: schedule
            .start(cycle)
            .duration_since(schedule.t0)
            .as_secs_f64(),
        to_s: schedule
            .end_of(cycle)
            .duration_since(schedule.t0)
            .as_secs_f64(),
        verdict,
        loads,
        threads,
        all_up,
        hints_at_finals,
        record_bytes: std::mem::size_of_val(calls),
    }
}

/// The checker's thread: gathers each cycle's calls from the caller
/// threads, judges the cycle once all of them have sent theirs, and drops
/// the calls. Cycles left incomplete (a thread that hung) are judged with
/// what arrived when the callers are gone.
fn spawn_judge(
    world: Arc<World>,
    names: Vec<String>,
    schedule: Schedule,
    received: mpsc::Receiver<(usize, Vec<Call>)>,
    reports: Arc<Mutex<Vec<CycleReport>>>,
) -> JoinHandle<()> {
    let kinds: Vec<&'static str> = kinds().iter().map(|k| k.name).collect();
    thread::Builder::new()
        .name("soak-judge".into())
        .spawn(move || {
            let mut pending: BTreeMap<usize, (usize, Vec<Call>)> = BTreeMap::new();
            let mut last_loads = 0;
            let mut judge = |cycle: usize, threads: usize, calls: Vec<Call>| {
                let loads = world.stampede_loads.load(Ordering::Relaxed);
                let report = judge_cycle(
                    &world,
                    &names,
                    cycle,
                    kinds[cycle % kinds.len()],
                    &schedule,
                    &calls,
                    threads,
                    loads - last_loads,
                );
                last_loads = loads;
                drop(calls);
                let v = &report.verdict;
                eprintln!(
                    "soak: cycle {:>2} ({:<17}) {:>6} calls, {:>5} errors, {} stale, {} lost, {} late",
                    cycle,
                    report.kind,
                    v.calls,
                    v.errors,
                    v.stale_raw + v.stale_near + v.stale_entity,
                    v.lost,
                    v.late
                );
                reports.lock().unwrap().push(report);
            };
            for (cycle, mut calls) in received {
                let entry = pending.entry(cycle).or_default();
                entry.0 += 1;
                entry.1.append(&mut calls);
                if entry.0 == THREADS {
                    let (threads, calls) = pending.remove(&cycle).expect("just filled");
                    judge(cycle, threads, calls);
                }
            }
            for (cycle, (threads, calls)) in std::mem::take(&mut pending) {
                judge(cycle, threads, calls);
            }
        })
        .expect("the judge thread")
}

/// The 32 caller threads: each runs the chaos workload on cycle `c`'s
/// keys from the cycle's start to its end, hands the calls to the judge,
/// and goes on with the next cycle.
fn spawn_callers(
    world: &Arc<World>,
    schedule: Schedule,
    to_judge: &mpsc::Sender<(usize, Vec<Call>)>,
) -> Vec<JoinHandle<()>> {
    (0..THREADS)
        .map(|t| {
            let (world, to_judge) = (Arc::clone(world), to_judge.clone());
            thread::Builder::new()
                .name(format!("soak-{t}"))
                .spawn(move || {
                    for cycle in 0..schedule.cycles {
                        let start = schedule.start(cycle);
                        thread::sleep(start.saturating_duration_since(Instant::now()));
                        let prefix = format!("c{cycle}-");
                        let calls = work(t, &world, &prefix, start, schedule.end_of(cycle));
                        if to_judge.send((cycle, calls)).is_err() {
                            return;
                        }
                    }
                })
                .expect("a caller thread")
        })
        .collect()
}

/// Least-squares slope of `values` over `minutes`, per minute.
fn slope_per_minute(minutes: &[f64], values: &[f64]) -> f64 {
    let n = minutes.len() as f64;
    if minutes.len() < 2 {
        return f64::NAN;
    }
    let mean_x = minutes.iter().sum::<f64>() / n;
    let mean_y = values.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in minutes.iter().zip(values) {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    if sxx == 0.0 {
        f64::NAN
    } else {
        sxy / sxx
    }
}

/// A least-squares line through one resource's values over some samples.
struct Fit {
    samples: usize,
    first: f64,
    last: f64,
    min: f64,
    max: f64,
    /// Per minute.
    slope: f64,
    span_minutes: f64,
}

impl Fit {
    fn of(samples: &[&Sample], value: &dyn Fn(&Sample) -> f64) -> Fit {
        let minutes: Vec<f64> = samples.iter().map(|s| s.at_s / 60.0).collect();
        let values: Vec<f64> = samples.iter().map(|s| value(s)).collect();
        Fit {
            samples: samples.len(),
            first: values.first().copied().unwrap_or(f64::NAN),
            last: values.last().copied().unwrap_or(f64::NAN),
            min: values.iter().copied().fold(f64::NAN, f64::min),
            max: values.iter().copied().fold(f64::NAN, f64::max),
            slope: slope_per_minute(&minutes, &values),
            span_minutes: minutes.last().unwrap_or(&0.0) - minutes.first().unwrap_or(&0.0),
        }
    }

    /// What the line gains over the span.
    fn change(&self) -> f64 {
        self.slope * self.span_minutes
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.samples,
            "first": self.first,
            "last": self.last,
            "min": self.min,
            "max": self.max,
            "slope_per_min": round2(self.slope),
            "fitted_change": round2(self.change()),
        })
    }
}

/// Growth of one resource after the warm-up: over every sample, and over
/// the healed ones (one per cycle, 3 s into it: no fault in force for
/// 8 s, the proxies down to their three connections, the checker done
/// with the last cycle's calls), which compare like with like. The verdict
/// is the healed line's.
struct Growth {
    name: &'static str,
    unit: &'static str,
    all: Fit,
    healed: Fit,
    tolerance: f64,
}

impl Growth {
    fn of(
        name: &'static str,
        unit: &'static str,
        (all, healed): (&[&Sample], &[&Sample]),
        value: impl Fn(&Sample) -> f64,
        floor: f64,
    ) -> Growth {
        let healed = Fit::of(healed, &value);
        Growth {
            name,
            unit,
            all: Fit::of(all, &value),
            tolerance: (healed.first * FLAT_FRACTION).max(floor),
            healed,
        }
    }

    fn fitted(&self) -> bool {
        self.healed.samples >= 2 && self.healed.slope.is_finite()
    }

    fn flat(&self) -> bool {
        self.fitted() && self.healed.change().abs() <= self.tolerance
    }

    fn word(&self) -> &'static str {
        if !self.fitted() {
            "-"
        } else if self.flat() {
            "flat"
        } else if self.healed.slope > 0.0 {
            "grows"
        } else {
            "falls"
        }
    }

    fn verdict(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        if !self.fitted() {
            return "too few healed samples to fit a line (run longer)".to_owned();
        }
        let healed = &self.healed;
        let line = format!(
            "healed samples {:.0} -> {:.0}{unit}, fitted {:+.1}{unit} over {:.1} min",
            healed.first,
            healed.last,
            healed.change(),
            healed.span_minutes
        );
        if self.flat() {
            format!("flat ({line}, within ±{:.0})", self.tolerance)
        } else {
            format!(
                "{} by {:.1}{unit}/min ({line}, beyond ±{:.0})",
                self.word(),
                healed.slope.abs(),
                self.tolerance
            )
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "all": self.all.json(),
            "healed": self.healed.json(),
            "tolerance": self.tolerance,
            "flat": self.flat(),
            "verdict": self.word(),
        })
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn main() {
    let options = options();
    if !Path::new("/proc/self/status").exists() {
        eprintln!("soak: needs Linux's /proc/self; nothing measured");
        return;
    }
    let pinned = pin_mmap_threshold();
    let kinds = kinds();
    println!(
        "soak: {:.0} s of the chaos workload ({THREADS} threads, Cluster R = 2 over 3 `tiny-cache serve` \
         processes behind in-process fault proxies, ReadThrough + NearCache and EntityCache on top); \
         faults cycle every {} s ({} s clean, {} s faulted, {} s healed) through {} kinds; \
         samples every {} s; warm-up {:.0} s; glibc's mmap threshold {}",
        options.duration.as_secs_f64(),
        CYCLE.as_secs(),
        LEAD.as_secs(),
        FAULT_ON.as_secs(),
        (CYCLE - LEAD - FAULT_ON).as_secs(),
        kinds.len(),
        SAMPLE_EVERY.as_secs(),
        options.warmup.as_secs_f64(),
        if pinned {
            "pinned at 128 KiB"
        } else {
            "as the allocator sets it"
        },
    );

    let servers: Vec<(common::Guard, String)> = (0..3).map(|_| start_server()).collect();
    let proxies: Vec<FaultProxy> = servers
        .iter()
        .map(|(_, address)| FaultProxy::to(address))
        .collect();
    let names: Vec<String> = proxies.iter().map(FaultProxy::address).collect();
    let before = take_sample(Duration::ZERO, "before the client", &proxies, None, &names);

    let world = Arc::new(World::over(&names));
    let schedule = Schedule::new(Instant::now(), options.duration);
    let reports = Arc::new(Mutex::new(Vec::new()));
    let (to_judge, received) = mpsc::channel();
    let judge = spawn_judge(
        Arc::clone(&world),
        names.clone(),
        schedule,
        received,
        Arc::clone(&reports),
    );
    let callers = spawn_callers(&world, schedule, &to_judge);
    drop(to_judge);

    // The driver: faults on and off on schedule, a sample every 10 s.
    let mut events: Vec<(Instant, Event)> = Vec::new();
    for cycle in 0..schedule.cycles {
        events.push((schedule.fault_on(cycle), Event::FaultOn(cycle)));
        events.push((schedule.fault_off(cycle), Event::FaultOff(cycle)));
    }
    let mut at = SAMPLE_OFFSET;
    while at <= options.duration {
        events.push((schedule.t0 + at, Event::Sample));
        at += SAMPLE_EVERY;
    }
    // Samples after the faults of the same instant: none coincide with
    // this schedule, but the order is fixed anyway.
    events.sort_by_key(|(when, event)| (*when, matches!(event, Event::Sample)));
    let mut samples: Vec<Sample> = Vec::new();
    let (mut phase, mut faulted) = ("clean".to_owned(), false);
    for (when, event) in events {
        thread::sleep(when.saturating_duration_since(Instant::now()));
        match event {
            Event::FaultOn(cycle) => {
                let kind = &kinds[cycle % kinds.len()];
                for (server, fault) in &kind.faults {
                    proxies[*server].set(*fault);
                }
                phase = kind.name.to_owned();
                faulted = true;
            }
            Event::FaultOff(cycle) => {
                for (server, _) in &kinds[cycle % kinds.len()].faults {
                    proxies[*server].clear();
                }
                phase = "healed".to_owned();
                faulted = false;
            }
            Event::Sample => {
                let mut sample = take_sample(
                    when.duration_since(schedule.t0),
                    &phase,
                    &proxies,
                    Some(&world),
                    &names,
                );
                sample.faulted = faulted;
                eprintln!(
                    "soak: {:>4.0} s {:<17} RSS {:>7.0} KiB ({:.0} trimmed, heap {:.0}), {:>3.0} threads ({:.0} proxy), {:>3.0} fds, \
                     {:.0} proxied connections, {} hints{}",
                    sample.at_s,
                    sample.phase,
                    sample.rss_kib,
                    sample.rss_trimmed_kib,
                    sample.heap_kib,
                    sample.threads,
                    sample.proxy_threads,
                    sample.fds,
                    sample.proxy_connections,
                    sample.hints,
                    if sample.down.is_empty() {
                        String::new()
                    } else {
                        format!(", down: {}", sample.down)
                    }
                );
                samples.push(sample);
            }
        }
    }
    for proxy in &proxies {
        proxy.clear();
    }

    // Traffic ends; callers return within a deadline or so.
    let give_up = schedule.end + JOIN_WAIT;
    while callers.iter().any(|c| !c.is_finished()) && Instant::now() < give_up {
        thread::sleep(Duration::from_millis(20));
    }
    let (mut hung, mut panicked) = (0, false);
    for caller in callers {
        if !caller.is_finished() {
            hung += 1;
            continue; // detached: it cannot be stopped, only reported
        }
        if caller.join().is_err() {
            panicked = true;
        }
    }
    if hung == 0 {
        let _ = judge.join();
    }

    // Tear down and look again: what the client held should be gone.
    drop(world);
    thread::sleep(Duration::from_secs(1));
    let after_client = take_sample(
        schedule.t0.elapsed(),
        "client dropped",
        &proxies,
        None,
        &names,
    );
    drop(proxies);
    thread::sleep(Duration::from_millis(200));
    let after_all = take_sample(schedule.t0.elapsed(), "proxies dropped", &[], None, &names);

    let reports = std::mem::take(&mut *reports.lock().unwrap());
    report(
        &options,
        &kinds,
        &before,
        &samples,
        &after_client,
        &after_all,
        &reports,
        hung,
        panicked,
    );
    drop(servers);
}

enum Event {
    FaultOn(usize),
    FaultOff(usize),
    Sample,
}

#[allow(clippy::too_many_arguments)]
fn report(
    options: &Options,
    kinds: &[Kind],
    before: &Sample,
    samples: &[Sample],
    after_client: &Sample,
    after_all: &Sample,
    reports: &[CycleReport],
    hung: usize,
    panicked: bool,
) {
    let proxies = 3;
    let warmup_s = options.warmup.as_secs_f64();
    println!("\n### Samples (this process; servers are separate processes)\n");
    println!(
        "| t (s) | phase | RSS (KiB) | after trim | heap in use | threads | of them proxy | of them library (helpers) | fds | of them sockets | proxy fds (est.) | proxied conns | hints | near entries | down |"
    );
    println!(
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    let row = |label: String, s: &Sample| {
        println!(
            "| {label} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} ({:.0}) | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {} |",
            s.phase,
            s.rss_kib,
            s.rss_trimmed_kib,
            s.heap_kib,
            s.threads,
            s.proxy_threads,
            s.library_threads,
            s.helper_threads,
            s.fds,
            s.sockets,
            s.proxy_fds(if s.phase == "proxies dropped" { 0 } else { proxies }),
            s.proxy_connections,
            s.hints,
            s.near_entries,
            if s.down.is_empty() { "-" } else { &s.down },
        );
    };
    row("before".to_owned(), before);
    for s in samples {
        let mark = if s.at_s + 1e-6 < warmup_s {
            " (warm-up)"
        } else {
            ""
        };
        row(format!("{:.0}{mark}", s.at_s), s);
    }
    row("after".to_owned(), after_client);
    row("after".to_owned(), after_all);
    println!(
        "\nRSS: VmRSS (KiB); after trim: VmRSS again right after glibc's malloc_trim(0), which hands \
         the allocator's free pages back; heap in use: bytes allocated and not freed (KiB), counted \
         by this harness's global allocator: live data, whatever malloc keeps. threads: all \
         of this process's, including the 32 caller threads, the checker's and the main thread (34 \
         in all), and the fault proxies' (`fault-proxy-*`: one accepting per proxy, four per \
         proxied connection while it lasts); library: `tiny-cache-*` threads (a connection worker \
         per server, the cluster's watcher, its helpers, which end after 30 s idle: in brackets). fds: \
         /proc/self/fd; proxy fds (est.): two sockets per proxied connection and a listener per \
         proxy. hints: writes the cluster holds for servers that missed them. near entries: the \
         read-through's near cache (moka, at most 10,000). down: servers the cluster had marked \
         down."
    );

    // Growth over the measured samples.
    let measured: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_s + 1e-6 >= warmup_s)
        .collect();
    let healed: Vec<&Sample> = measured.iter().copied().filter(|s| !s.faulted).collect();
    let series = (&measured[..], &healed[..]);
    let growths = [
        Growth::of("RSS", "KiB", series, |s| s.rss_kib, FLAT_FLOOR_RSS_KIB),
        Growth::of(
            "RSS after malloc_trim",
            "KiB",
            series,
            |s| s.rss_trimmed_kib,
            FLAT_FLOOR_RSS_KIB,
        ),
        Growth::of(
            "heap in use",
            "KiB",
            series,
            |s| s.heap_kib,
            FLAT_FLOOR_RSS_KIB,
        ),
        Growth::of("threads", "", series, |s| s.threads, FLAT_FLOOR_COUNT),
        Growth::of(
            "threads without the proxies'",
            "",
            series,
            |s| s.threads - s.proxy_threads,
            FLAT_FLOOR_COUNT,
        ),
        Growth::of(
            "of them cluster helpers",
            "",
            series,
            |s| s.helper_threads,
            FLAT_FLOOR_COUNT,
        ),
        Growth::of("fds", "", series, |s| s.fds, FLAT_FLOOR_COUNT),
        Growth::of(
            "fds without the proxies'",
            "",
            series,
            |s| s.fds - s.proxy_fds(proxies),
            FLAT_FLOOR_COUNT,
        ),
        Growth::of(
            "proxied connections",
            "",
            series,
            |s| s.proxy_connections,
            FLAT_FLOOR_COUNT,
        ),
        Growth::of(
            "near-cache entries",
            "",
            series,
            |s| s.near_entries,
            FLAT_FLOOR_COUNT,
        ),
    ];
    println!(
        "\n### Growth after the warm-up ({} samples from {:.0} s to {:.0} s, {} of them healed)\n",
        measured.len(),
        measured.first().map_or(f64::NAN, |s| s.at_s),
        measured.last().map_or(f64::NAN, |s| s.at_s),
        healed.len(),
    );
    println!(
        "| resource | first | last | min | max | slope per min | healed: first | healed: last | healed: max | healed: slope per min | verdict |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for g in &growths {
        println!(
            "| {}{} | {:.0} | {:.0} | {:.0} | {:.0} | {:+.1} | {:.0} | {:.0} | {:.0} | {:+.1} | {} |",
            g.name,
            if g.unit.is_empty() {
                String::new()
            } else {
                format!(" ({})", g.unit)
            },
            g.all.first,
            g.all.last,
            g.all.min,
            g.all.max,
            g.all.slope,
            g.healed.first,
            g.healed.last,
            g.healed.max,
            g.healed.slope,
            g.word(),
        );
    }
    println!(
        "\nslope: least squares, per minute. The verdict is the healed samples' (3 s into each cycle, \
         no fault in force for 8 s), which compare like with like: \"flat\" when the fitted line's \
         change over their span is within ±{:.0} % of the first healed value (at least ±{:.0} KiB, \
         ±{:.0} threads, descriptors or entries).\n",
        FLAT_FRACTION * 100.0,
        FLAT_FLOOR_RSS_KIB,
        FLAT_FLOOR_COUNT
    );
    for g in &growths {
        println!("verdict: {}: {}", g.name, g.verdict());
    }

    // The workload, per cycle and per fault kind.
    println!("\n### Calls per fault cycle (the chaos checker's counts)\n");
    println!(
        "| cycle | s | fault | calls | errors | errors by kind | max ms | late | stale | near | ent | lost | bogus | open | loads/windows | up at read-back | hints then |"
    );
    println!(
        "| ---: | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
    );
    let mut reports: Vec<&CycleReport> = reports.iter().collect();
    reports.sort_by_key(|r| r.cycle);
    for r in &reports {
        let v = &r.verdict;
        println!(
            "| {}{} | {:.0}-{:.0} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {} |",
            r.cycle,
            if r.threads < THREADS { format!(" ({} threads)", r.threads) } else { String::new() },
            r.from_s,
            r.to_s,
            r.kind,
            v.calls,
            v.errors,
            v.kinds_text(),
            v.max_latency.as_secs_f64() * 1000.0,
            v.late,
            v.stale_raw,
            v.stale_near,
            v.stale_entity,
            v.lost,
            v.bogus,
            v.open_failures,
            r.loads,
            v.stampede_windows,
            if r.all_up { "all" } else { "not all" },
            r.hints_at_finals,
        );
    }
    println!(
        "\nlate: calls past their deadline + 250 ms; stale: raw cluster reads older than an earlier \
         acknowledged write; near: near-cache reads older than allowed by the local TTL (500 ms); ent: \
         entity reads older than an earlier acknowledged invalidation; lost: acknowledged writes and \
         invalidations missing when read back after the cycle; bogus: values never written; open: \
         read-through and entity reads that failed (fail-open says never); loads/windows: stampede loader \
         runs against stampede windows (single flight: about one each)."
    );

    println!("\n### Per fault kind\n");
    println!(
        "| fault | cycles | calls | errors | errors by kind | late | stale (raw+near+ent) | lost | bogus | open |"
    );
    println!("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    let mut total = Verdict::default();
    for kind in kinds {
        let mine: Vec<&&CycleReport> = reports.iter().filter(|r| r.kind == kind.name).collect();
        if mine.is_empty() {
            continue;
        }
        let mut sum = Verdict::default();
        for r in &mine {
            add(&mut sum, &r.verdict);
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            kind.name,
            mine.len(),
            sum.calls,
            sum.errors,
            sum.kinds_text(),
            sum.late,
            sum.stale_raw + sum.stale_near + sum.stale_entity,
            sum.lost,
            sum.bogus,
            sum.open_failures
        );
        add(&mut total, &sum);
    }
    println!(
        "| all | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        reports.len(),
        total.calls,
        total.errors,
        total.kinds_text(),
        total.late,
        total.stale_raw + total.stale_near + total.stale_entity,
        total.lost,
        total.bogus,
        total.open_failures
    );
    let biggest_records = reports.iter().map(|r| r.record_bytes).max().unwrap_or(0);
    println!(
        "\nThe checker holds one cycle's call records while the next cycle records its own: at most \
         {:.1} MiB per cycle in this run, part of the RSS above (bounded, not a leak).",
        biggest_records as f64 / (1024.0 * 1024.0)
    );
    let examples: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.verdict
                .examples
                .iter()
                .map(move |e| format!("  [cycle {} {}] {e}", r.cycle, r.kind))
        })
        .take(20)
        .collect();
    if !examples.is_empty() {
        println!("\nexamples:");
        for e in &examples {
            println!("{e}");
        }
    }
    if hung > 0 {
        println!("\n{hung} caller thread(s) still in a call {JOIN_WAIT:?} after the traffic ended");
    }
    if panicked {
        println!("\na caller thread panicked");
    }

    if options.json {
        let growth_json: serde_json::Map<String, serde_json::Value> = growths
            .iter()
            .map(|g| (json_name(g.name), g.json()))
            .collect();
        let line = serde_json::json!({
            "bench": "soak",
            "duration_s": options.duration.as_secs_f64(),
            "warmup_s": warmup_s,
            "samples": samples.len(),
            "measured_samples": measured.len(),
            "growth": growth_json,
            "cycles": reports.len(),
            "calls": total.calls,
            "errors": total.errors,
            "errors_by_kind": total.errors_by_kind,
            "late": total.late,
            "stale_raw": total.stale_raw,
            "stale_near": total.stale_near,
            "stale_entity": total.stale_entity,
            "lost": total.lost,
            "bogus": total.bogus,
            "open_failures": total.open_failures,
            "hung_threads": hung,
            "panicked": panicked,
            "after_client_dropped": {
                "rss_kib": after_client.rss_kib,
                "rss_trimmed_kib": after_client.rss_trimmed_kib,
                "heap_kib": after_client.heap_kib,
                "threads": after_client.threads,
                "fds": after_client.fds,
            },
        });
        println!("{line}");
    }
}

fn json_name(name: &str) -> String {
    match name {
        "RSS" => "rss_kib".to_owned(),
        "RSS after malloc_trim" => "rss_trimmed_kib".to_owned(),
        "heap in use" => "heap_kib".to_owned(),
        "of them cluster helpers" => "helper_threads".to_owned(),
        "near-cache entries" => "near_entries".to_owned(),
        "threads without the proxies'" => "threads_without_proxies".to_owned(),
        "fds without the proxies'" => "fds_without_proxies".to_owned(),
        "proxied connections" => "proxied_connections".to_owned(),
        other => other.to_owned(),
    }
}
/// Adds `v`'s counts to `sum` (the counts only: examples and latencies
/// are per cycle).
fn add(sum: &mut Verdict, v: &Verdict) {
    sum.calls += v.calls;
    sum.errors += v.errors;
    for (kind, n) in &v.errors_by_kind {
        *sum.errors_by_kind.entry(kind).or_default() += n;
    }
    sum.late += v.late;
    sum.stale_raw += v.stale_raw;
    sum.stale_near += v.stale_near;
    sum.stale_entity += v.stale_entity;
    sum.lost += v.lost;
    sum.bogus += v.bogus;
    sum.open_failures += v.open_failures;
    sum.max_latency = sum.max_latency.max(v.max_latency);
}
