#![cfg(all(feature = "server", feature = "cluster", feature = "entity-cache"))]
//! The chaos suite: three embedded servers, each behind a fault proxy
//! (`tests/common/fault_proxy.rs`), a `Cluster` with two replicas over
//! them, a read-through near cache and an entity cache over the cluster,
//! and 32 threads of reads, writes, invalidations and stampedes while
//! faults come and go, one server at a time, then two at once.
//!
//! A Jepsen-style checker (module `checker`) records every call and judges
//! afterwards: deadlines, panics, lost acknowledged writes, stale reads,
//! fail-open, and whether the cluster marked a hung server down and
//! brought it back. Each phase starts from fresh servers, so a phase's
//! numbers are its own. The table prints with `--nocapture`; every
//! violation of every phase is listed before the test fails.
//!
//! The short form (the default) runs 7 s of traffic per phase (1 s clean,
//! then the faults; a 3 s fault leaves 3 s of traffic after its heal);
//! `TINY_CACHE_CHAOS_FULL=1` runs 30 s phases.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tiny_cache_client::cache::{
    enabled, CacheError, CacheStore, EntityCache, LayerConfig, NearCache, ReadThrough,
    UseCaseConfig, UseCaseInfo,
};
use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::server::Server;
use tiny_cache_client::Error;

mod common;

use common::fault_proxy::{Fault, FaultProxy};

use checker::{Call, Final, Op, Outcome};

/// The cluster's deadline per call, fallbacks and read repair included.
const TIMEOUT: Duration = Duration::from_millis(500);
/// How far past its deadline a call may return: the promise under test.
const LATE_SLACK: Duration = Duration::from_millis(250);
/// Short failure knobs, so a server comes back within a phase.
const COOL_DOWN: Duration = Duration::from_millis(500);
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// The near caches' local TTL: the staleness a near read is allowed.
const LOCAL_TTL: Duration = Duration::from_millis(500);
/// Remote TTLs: long enough that nothing expires during a run, so a
/// missing value is never an expiry.
const REMOTE_TTL: Duration = Duration::from_secs(3600);
const THREADS: usize = 32;
/// Versioned keys each thread owns (and alone writes).
const KEYS_PER_THREAD: usize = 4;
const KEYS: usize = THREADS * KEYS_PER_THREAD;
/// Entities of the entity cache: thread `t` alone invalidates entity `t`.
const ENTITIES: usize = THREADS;
/// Keys read through `get_with` and deleted (read-through invalidation).
const COMPUTED_KEYS: usize = 16;
/// What a loader costs: long enough that concurrent callers pile up.
const LOADER_PAUSE: Duration = Duration::from_millis(20);
/// Every this long the stampede key changes: callers in the same window
/// all ask for the same missing key.
const STAMPEDE_WINDOW: Duration = Duration::from_millis(200);
/// After a fault ends, how long the cluster has to bring its server back:
/// cool-down plus a few probes, with room for a busy machine. Shorter
/// than the traffic after a 3 s fault, so a server must come back under
/// load, not only once the load stops.
const BACK_WAIT: Duration = Duration::from_millis(2500);
/// How long the timed faults last ("heals after 3 s").
const TIMED_FAULT: Duration = Duration::from_secs(3);
/// How often the monitor samples `Cluster::servers()`.
const SAMPLE_EVERY: Duration = Duration::from_millis(25);
/// Bounds on every loop: no thread runs more calls than this per phase.
const MAX_CALLS_PER_THREAD: usize = 200_000;
/// How long past the end of traffic the driver waits for a worker thread
/// before calling it hung (a call that never returned).
const JOIN_WAIT: Duration = Duration::from_secs(10);
/// Padding that makes a value about 100 bytes, so a reset after a few KB
/// lands in the middle of some response.
const PAD: &str = "................................................................";

/// How long each phase lasts.
struct Form {
    /// Clean traffic before the faults.
    clean: Duration,
    /// All the traffic of a phase.
    traffic: Duration,
}

impl Form {
    fn from_env() -> (Form, &'static str) {
        match std::env::var("TINY_CACHE_CHAOS_FULL").as_deref() {
            Ok("1") | Ok("true") | Ok("yes") => (
                Form {
                    clean: Duration::from_secs(5),
                    traffic: Duration::from_secs(30),
                },
                "full",
            ),
            _ => (
                Form {
                    clean: Duration::from_secs(1),
                    traffic: Duration::from_secs(7),
                },
                "short",
            ),
        }
    }
}

/// When a fault ends.
#[derive(Clone, Copy)]
enum Heal {
    /// Once the traffic has stopped (it lasts the whole phase).
    AfterTraffic,
    /// This long after it began, with traffic going on.
    After(Duration),
}

struct Injection {
    server: usize,
    fault: Fault,
    heal: Heal,
}

impl Injection {
    /// A fault that makes the server unresponsive: the cluster must mark
    /// it down, and bring it back once the fault ends.
    fn hangs(&self) -> bool {
        matches!(
            self.fault,
            Fault::BlackHole | Fault::HalfOpen | Fault::Partition { .. }
        )
    }
}

struct Plan {
    name: &'static str,
    faults: Vec<Injection>,
}

fn plans() -> Vec<Plan> {
    let whole = |server, fault| Injection {
        server,
        fault,
        heal: Heal::AfterTraffic,
    };
    let three_seconds = |server, fault| Injection {
        server,
        fault,
        heal: Heal::After(TIMED_FAULT),
    };
    let slow = Fault::latency(Duration::from_millis(20), Duration::from_millis(5));
    // About 20 replies, then an RST in the middle of the next one.
    let reset = Fault::ResetPeer { after_bytes: 3000 };
    vec![
        Plan {
            name: "black hole",
            faults: vec![whole(0, Fault::BlackHole)],
        },
        Plan {
            name: "20 ms slow",
            faults: vec![whole(1, slow)],
        },
        Plan {
            name: "half-open",
            faults: vec![whole(2, Fault::HalfOpen)],
        },
        Plan {
            name: "reset mid-reply",
            faults: vec![whole(0, reset)],
        },
        Plan {
            name: "partition 3 s",
            faults: vec![three_seconds(
                1,
                Fault::Partition {
                    drop_existing: false,
                },
            )],
        },
        Plan {
            name: "black hole 3 s, back",
            faults: vec![three_seconds(2, Fault::BlackHole)],
        },
        Plan {
            name: "black hole + slow",
            faults: vec![whole(0, Fault::BlackHole), whole(1, slow)],
        },
        Plan {
            name: "partition 3 s + reset",
            faults: vec![
                three_seconds(
                    1,
                    Fault::Partition {
                        drop_existing: false,
                    },
                ),
                whole(2, reset),
            ],
        },
    ]
}

#[test]
fn the_cluster_and_its_caches_hold_under_chaos() {
    let (form, form_name) = Form::from_env();
    // Else "back after the heal" could be met only once the load stops.
    assert!(form.clean + TIMED_FAULT + BACK_WAIT < form.traffic);
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut violations = Vec::new();
    // `TINY_CACHE_CHAOS_ONLY=<words>` runs the phases whose name has them.
    let only = std::env::var("TINY_CACHE_CHAOS_ONLY").ok();
    for plan in plans() {
        if only
            .as_deref()
            .is_some_and(|words| !plan.name.contains(words))
        {
            continue;
        }
        let report = run_phase(&plan, &form);
        eprintln!("chaos: {}", report.row());
        violations.extend(
            report
                .violations
                .iter()
                .map(|v| format!("[{}] {v}", plan.name)),
        );
        rows.push(report);
    }
    println!(
        "\nchaos ({form_name} form, {} phases, {:.0?}):\n",
        rows.len(),
        started.elapsed()
    );
    println!("{}", PhaseReport::header());
    for row in &rows {
        println!("{}", row.row());
    }
    println!("\n{}", PhaseReport::legend());
    for row in &rows {
        for example in &row.examples {
            println!("  [{}] {example}", row.name);
        }
    }
    assert!(
        violations.is_empty(),
        "{} violation(s):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// Everything a phase's threads call into.
struct World {
    cluster: Cluster,
    read_through: ReadThrough<NearCache<Cluster>>,
    entities: EntityCache<Cluster>,
    /// The "database" behind the entity cache: a version per entity.
    database: Arc<Vec<AtomicU64>>,
    /// Loader runs for stampede keys: one per window is single flight
    /// working and the value staying stored.
    stampede_loads: AtomicU64,
    /// Loader runs for the other read-through keys.
    loads: AtomicU64,
}

fn versioned_key(index: usize) -> String {
    format!("k{}-{}", index / KEYS_PER_THREAD, index % KEYS_PER_THREAD)
}

/// A value carries its key and version, so a read says which write it saw
/// and a value under the wrong key cannot pass.
fn encode(key: &str, version: u64) -> String {
    format!("{key}|{version}|{PAD}")
}

fn decode(key: &str, value: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(value).map_err(|_| "a value that is not UTF-8".to_owned())?;
    let mut parts = text.split('|');
    let (Some(found), Some(version)) = (parts.next(), parts.next()) else {
        return Err(format!("an unparseable value {text:?}"));
    };
    if found != key {
        return Err(format!("the value of {found:?}"));
    }
    version
        .parse()
        .map_err(|_| format!("an unparseable version in {text:?}"))
}

fn computed(key: &str) -> String {
    format!("computed:{key}")
}

fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Unavailable(_) => "unavailable",
        Error::DeadlineExceeded(_) => "deadline",
        Error::Protocol { .. } => "protocol",
        Error::ResourceExhausted(_) => "exhausted",
        Error::Closed => "closed",
        Error::Validation(_) => "validation",
        _ => "other",
    }
}

fn cache_error_kind<E>(error: &CacheError<E>) -> &'static str {
    match error {
        CacheError::Store(error) => error_kind(error),
        CacheError::WaitTimeout { .. } => "wait-timeout",
        CacheError::LoaderPanicked { .. } => "loader-panicked",
        CacheError::Load(_) => "load",
        _ => "cache-other",
    }
}

/// One worker thread's traffic until `end`: returns every call it made.
fn work(
    thread: usize,
    world: &World,
    profile: &dyn Fn(u64) -> Result<u64, CacheError>,
    t0: Instant,
    end: Instant,
) -> Vec<Call> {
    let mut rng = fastrand::Rng::with_seed(0xC4A05 + thread as u64);
    let mut versions = [0u64; KEYS_PER_THREAD];
    let mut calls = Vec::new();
    let at = |instant: Instant| instant.duration_since(t0);
    while Instant::now() < end && calls.len() < MAX_CALLS_PER_THREAD {
        let roll = rng.u32(0..100);
        let began = Instant::now();
        let (op, target, version, outcome) = match roll {
            // Write one of this thread's keys, next version.
            0..25 => {
                let slot = rng.usize(0..KEYS_PER_THREAD);
                let index = thread * KEYS_PER_THREAD + slot;
                let key = versioned_key(index);
                versions[slot] += 1;
                let version = versions[slot];
                let outcome =
                    match world
                        .cluster
                        .set_with_ttl(&key, encode(&key, version), REMOTE_TTL)
                    {
                        Ok(()) => Outcome::Wrote,
                        Err(e) => Outcome::Failed(error_kind(&e)),
                    };
                (Op::Write, index, version, outcome)
            }
            // Read any key straight through the cluster.
            25..45 => {
                let index = rng.usize(0..KEYS);
                let key = versioned_key(index);
                let outcome = match world.cluster.get(&key) {
                    Ok(None) => Outcome::Read(None),
                    Ok(Some(value)) => match decode(&key, &value) {
                        Ok(version) => Outcome::Read(Some(version)),
                        Err(what) => Outcome::Wrong(what),
                    },
                    Err(e) => Outcome::Failed(error_kind(&e)),
                };
                (Op::RawRead, index, 0, outcome)
            }
            // Read any key through the near cache.
            45..60 => {
                let index = rng.usize(0..KEYS);
                let key = versioned_key(index);
                let outcome = match world.read_through.store().get(&key) {
                    Ok(None) => Outcome::Read(None),
                    Ok(Some(value)) => match decode(&key, &value) {
                        Ok(version) => Outcome::Read(Some(version)),
                        Err(what) => Outcome::Wrong(what),
                    },
                    Err(e) => Outcome::Failed(error_kind(&e)),
                };
                (Op::NearRead, index, 0, outcome)
            }
            // Stampede: every thread in this window asks for the same
            // missing key through read-through.
            60..75 => {
                let window =
                    (began.duration_since(t0).as_millis() / STAMPEDE_WINDOW.as_millis()) as usize;
                let key = format!("stampede-{window}");
                (
                    Op::Stampede,
                    window,
                    0,
                    read_through(world, &key, &world.stampede_loads),
                )
            }
            75..83 => {
                let n = rng.usize(0..COMPUTED_KEYS);
                (
                    Op::Computed,
                    n,
                    0,
                    read_through(world, &format!("computed-{n}"), &world.loads),
                )
            }
            // Read-through invalidation: the next get_with computes again.
            83..86 => {
                let n = rng.usize(0..COMPUTED_KEYS);
                let outcome = match world.read_through.delete(&format!("computed-{n}")) {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Failed(cache_error_kind(&e)),
                };
                (Op::ComputedDelete, n, 0, outcome)
            }
            86..98 => {
                let id = rng.usize(0..ENTITIES);
                let outcome = match profile(id as u64) {
                    Ok(version) => Outcome::Read(Some(version)),
                    Err(e) => Outcome::Failed(cache_error_kind(&e)),
                };
                (Op::EntityRead, id, 0, outcome)
            }
            // Invalidate this thread's entity after changing it.
            _ => {
                let version = world.database[thread].fetch_add(1, Ordering::SeqCst) + 1;
                let outcome = match world
                    .entities
                    .invalidate("user_id", &thread, Duration::ZERO)
                {
                    Ok(()) => Outcome::Wrote,
                    Err(e) => Outcome::Failed(error_kind(&e)),
                };
                (Op::EntityInvalidate, thread, version, outcome)
            }
        };
        calls.push(Call {
            op,
            target,
            version,
            started: at(began),
            ended: at(Instant::now()),
            outcome,
        });
        thread::sleep(Duration::from_millis(rng.u64(2..8)));
    }
    calls
}

/// How soon after a heal the server behind `proxy` answers a ping from a
/// fresh client (no backoff, no cluster state): `None` if not within a
/// second.
fn answers_after_heal(proxy: &FaultProxy) -> Option<Duration> {
    let healed = Instant::now();
    let client = tiny_cache_client::Client::builder(&proxy.address())
        .timeout(Duration::from_millis(300))
        .max_retries(0)
        .build()
        .ok()?;
    while healed.elapsed() < Duration::from_secs(1) {
        if client.ping().is_ok() {
            return Some(healed.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A read-through read: with fail-open it must be the computed value,
/// whatever the store does.
fn read_through(world: &World, key: &str, loads: &AtomicU64) -> Outcome {
    let result = world.read_through.get_with(key, REMOTE_TTL, || {
        thread::sleep(LOADER_PAUSE);
        loads.fetch_add(1, Ordering::Relaxed);
        computed(key)
    });
    match result {
        Ok(value) if value[..] == *computed(key).as_bytes() => Outcome::Done,
        Ok(value) => Outcome::Wrong(format!("{:?}", String::from_utf8_lossy(&value))),
        Err(e) => Outcome::Failed(cache_error_kind(&e)),
    }
}

/// The servers' up flags as the cluster saw them, sampled over the phase.
struct Samples {
    at: Vec<Duration>,
    up: Vec<Vec<bool>>,
    /// Hints waiting for each server: why a healed server is not back.
    hints: Vec<Vec<usize>>,
}

fn monitor(
    cluster: Cluster,
    names: Vec<String>,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Samples> {
    thread::spawn(move || {
        let mut samples = Samples {
            at: Vec::new(),
            up: Vec::new(),
            hints: Vec::new(),
        };
        // Bounded by the driver's stop flag; a cap guards against a
        // driver that never sets it.
        for _ in 0..100_000 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let states = cluster.servers();
            let state = |name: &String| states.iter().find(|s| &s.server == name);
            let up = names.iter().map(|name| state(name).is_some_and(|s| s.up));
            let hints = names
                .iter()
                .map(|name| state(name).map_or(0, |s| s.pending_hints));
            samples.at.push(t0.elapsed());
            samples.up.push(up.collect());
            samples.hints.push(hints.collect());
            thread::sleep(SAMPLE_EVERY);
        }
        samples
    })
}

impl Samples {
    /// Hints waiting for server `s` at the last sample at or before `at`.
    fn hints_at(&self, s: usize, at: Duration) -> usize {
        let n = self.at.partition_point(|sampled| *sampled <= at);
        n.checked_sub(1).map_or(0, |i| self.hints[i][s])
    }

    /// The first time server `s` was seen down within `[from, to]`.
    fn first_down(&self, s: usize, from: Duration, to: Duration) -> Option<Duration> {
        self.at
            .iter()
            .zip(&self.up)
            .find(|(at, up)| **at >= from && **at <= to && !up[s])
            .map(|(at, _)| *at)
    }

    /// The first time at or after `from` from which server `s` was seen up
    /// in every later sample.
    fn back_for_good(&self, s: usize, from: Duration) -> Option<Duration> {
        let last_down = self
            .at
            .iter()
            .zip(&self.up)
            .filter(|(at, up)| **at >= from && !up[s])
            .map(|(at, _)| *at)
            .next_back();
        let after = last_down.unwrap_or(from);
        self.at
            .iter()
            .zip(&self.up)
            .find(|(at, up)| **at >= after && **at >= from && up[s])
            .map(|(at, _)| *at)
    }

    /// Every stretch a server was seen down, as `s<i>@<from>-<to>` in
    /// seconds, or `s<i> <n>x<from>-<to>` for a server that flapped.
    fn down_spells(&self) -> Vec<String> {
        let servers = self.up.first().map_or(0, Vec::len);
        let mut all = Vec::new();
        for s in 0..servers {
            let mut spells = Vec::new();
            let mut since: Option<Duration> = None;
            for (at, up) in self.at.iter().zip(&self.up) {
                match (up[s], since) {
                    (false, None) => since = Some(*at),
                    (true, Some(from)) => {
                        spells.push(format!(
                            "s{s}@{:.1}-{:.1}",
                            from.as_secs_f64(),
                            at.as_secs_f64()
                        ));
                        since = None;
                    }
                    _ => {}
                }
            }
            if let Some(from) = since {
                spells.push(format!("s{s}@{:.1}-", from.as_secs_f64()));
            }
            if spells.len() > 2 {
                let first = spells[0].split(['@', '-']).nth(1).unwrap_or("").to_owned();
                let last = spells[spells.len() - 1]
                    .rsplit('-')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                spells = vec![format!("s{s} {}x{first}-{last}", spells.len())];
            }
            all.extend(spells);
        }
        all
    }
}

struct PhaseReport {
    name: &'static str,
    verdict: checker::Verdict,
    down: Vec<String>,
    back: Vec<String>,
    loads: u64,
    stampedes: usize,
    violations: Vec<String>,
    examples: Vec<String>,
}

impl PhaseReport {
    fn header() -> String {
        format!(
            "{:<22} {:>6} {:>6}  {:<22} {:>6} {:>4} {:>5} {:>5} {:>5} {:>4} {:>4} {:>6}  {:<22} {}",
            "fault",
            "calls",
            "errors",
            "errors by kind",
            "max ms",
            "late",
            "stale",
            "near",
            "ent",
            "lost",
            "open",
            "loads",
            "marked down (s)",
            "back after heal"
        )
    }

    fn legend() -> &'static str {
        "calls: all calls of the 32 threads; errors by kind: un(available), dl (deadline), wt (read-through wait \
timeout), pr(otocol), ...; max ms: slowest call; late: calls past their deadline + 250 ms; stale: raw cluster \
reads older than an earlier acknowledged write; near: near-cache reads older than the newest write acknowledged \
a local TTL (500 ms) before; ent: entity reads older than an earlier acknowledged invalidation; lost: \
acknowledged writes and invalidations missing once the faults healed; open: read-through and entity reads \
that failed (fail-open says never); loads: loader runs for stampede keys / stampede windows (single flight: \
about one each); marked down: spells a server was seen down (s<i>@from-to, seconds into the phase; s<i> \
<n>x<from>-<to> when it flapped); back: when each faulted server was up for good, counted from its heal."
    }

    fn row(&self) -> String {
        let v = &self.verdict;
        let kinds = v
            .errors_by_kind
            .iter()
            .map(|(kind, n)| format!("{} {n}", short(kind)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{:<22} {:>6} {:>6}  {:<22} {:>6.0} {:>4} {:>5} {:>5} {:>5} {:>4} {:>4} {:>6}  {:<22} {}",
            self.name,
            v.calls,
            v.errors,
            if kinds.is_empty() { "-".to_owned() } else { kinds },
            v.max_latency.as_secs_f64() * 1000.0,
            v.late,
            v.stale_raw,
            v.stale_near,
            v.stale_entity,
            v.lost,
            v.open_failures,
            format!("{}/{}", self.loads, self.stampedes),
            if self.down.is_empty() { "-".to_owned() } else { self.down.join(" ") },
            if self.back.is_empty() { "-".to_owned() } else { self.back.join(" ") },
        )
    }
}

fn short(kind: &str) -> &str {
    match kind {
        "unavailable" => "un",
        "deadline" => "dl",
        "wait-timeout" => "wt",
        "protocol" => "pr",
        other => other,
    }
}

fn run_phase(plan: &Plan, form: &Form) -> PhaseReport {
    let servers: Vec<Server> = (0..3).map(|_| Server::local().expect("a server")).collect();
    let proxies: Vec<FaultProxy> = servers
        .iter()
        .map(|server| FaultProxy::to(&server.address()))
        .collect();
    let names: Vec<String> = proxies.iter().map(FaultProxy::address).collect();
    let cluster = names
        .iter()
        .fold(Cluster::builder(), |builder, name| builder.server(name))
        .replicas(2)
        .timeout(TIMEOUT)
        .cool_down(COOL_DOWN)
        .probe_interval(PROBE_INTERVAL)
        .default_ttl(REMOTE_TTL)
        .build()
        .expect("the cluster");
    let near = NearCache::builder(cluster.clone())
        .max_entries(10_000)
        .local_ttl(LOCAL_TTL)
        .build();
    let read_through = ReadThrough::builder(near)
        .fail_open(true)
        // A waiter's wait is bounded by its leader's get and set; it
        // gives up only when that bound is broken.
        .timeout(2 * TIMEOUT + LOADER_PAUSE + LATE_SLACK)
        .build();
    let entities = EntityCache::builder(cluster.clone())
        .config(|_: &UseCaseInfo<'_>| {
            Some(UseCaseConfig::remote(REMOTE_TTL).with_local(LayerConfig::new(LOCAL_TTL)))
        })
        .generation_ttl(REMOTE_TTL)
        .wait_timeout(2 * TIMEOUT + LATE_SLACK)
        .build()
        .expect("the entity cache");
    let world = Arc::new(World {
        cluster: cluster.clone(),
        read_through,
        entities,
        database: Arc::new((0..ENTITIES).map(|_| AtomicU64::new(0)).collect()),
        stampede_loads: AtomicU64::new(0),
        loads: AtomicU64::new(0),
    });
    let database = Arc::clone(&world.database);
    let profile = Arc::new(world.entities.use_case_named(
        "Profile",
        "user_id",
        move |id: &u64, _: &()| {
            Ok::<u64, Infallible>(database[*id as usize].load(Ordering::SeqCst))
        },
    ));

    let t0 = Instant::now();
    let end = t0 + form.traffic;
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let monitor = monitor(
        cluster.clone(),
        names.clone(),
        t0,
        Arc::clone(&stop_monitor),
    );
    let finished = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<JoinHandle<()>> = (0..THREADS)
        .map(|t| {
            let (world, profile, finished) = (
                Arc::clone(&world),
                Arc::clone(&profile),
                Arc::clone(&finished),
            );
            thread::Builder::new()
                .name(format!("chaos-{t}"))
                .spawn(move || {
                    let read = |id: u64| enabled(|| profile.get(&id, &()));
                    let calls = work(t, &world, &read, t0, end);
                    finished.lock().unwrap().push((t, calls));
                })
                .expect("a worker")
        })
        .collect();

    // The faults, on schedule. `heals[i]`: when fault i ended, from t0.
    let mut heals: Vec<Option<Duration>> = vec![None; plan.faults.len()];
    // For each fault healed under traffic: how soon its server answered a
    // fresh client through the proxy (the network is fine again by then,
    // whatever the cluster thinks).
    let mut reachable: Vec<(usize, Option<Duration>)> = Vec::new();
    thread::sleep(form.clean);
    let fault_start = t0.elapsed();
    for injection in &plan.faults {
        proxies[injection.server].set(injection.fault);
    }
    let mut timed: Vec<(usize, Duration)> = plan
        .faults
        .iter()
        .enumerate()
        .filter_map(|(i, injection)| match injection.heal {
            Heal::After(after) => Some((i, after)),
            Heal::AfterTraffic => None,
        })
        .collect();
    timed.sort_by_key(|(_, after)| *after);
    for (i, after) in timed {
        let at = t0 + form.clean + after;
        thread::sleep(at.saturating_duration_since(Instant::now()));
        let proxy = &proxies[plan.faults[i].server];
        proxy.clear();
        heals[i] = Some(t0.elapsed());
        reachable.push((plan.faults[i].server, answers_after_heal(proxy)));
    }

    // Traffic ends; a worker not done well after is hung in a call.
    let mut violations = Vec::new();
    let give_up = end + JOIN_WAIT;
    while workers.iter().any(|w| !w.is_finished()) && Instant::now() < give_up {
        thread::sleep(Duration::from_millis(20));
    }
    for (t, worker) in workers.into_iter().enumerate() {
        if !worker.is_finished() {
            violations.push(format!(
                "no hang: thread {t} still in a call {JOIN_WAIT:?} after the traffic ended"
            ));
            continue; // detached: it cannot be stopped, only reported
        }
        if let Err(panic) = worker.join() {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            violations.push(format!("no panic: thread {t} panicked: {message}"));
        }
    }

    // Heal what is left, then wait for the cluster to see every server up.
    for (i, injection) in plan.faults.iter().enumerate() {
        if heals[i].is_none() {
            proxies[injection.server].clear();
            heals[i] = Some(t0.elapsed());
        }
    }
    let healed = Instant::now();
    while cluster.servers().iter().any(|s| !s.up) && healed.elapsed() < BACK_WAIT {
        thread::sleep(SAMPLE_EVERY);
    }

    // The final state: every key read straight through the cluster.
    let finals: Vec<Final> = (0..KEYS)
        .map(|index| {
            let key = versioned_key(index);
            let outcome = match cluster.get(&key) {
                Ok(None) => Ok(None),
                Ok(Some(value)) => decode(&key, &value).map(Some),
                Err(e) => Err(error_kind(&e).to_owned()),
            };
            Final::Key(index, outcome)
        })
        .chain((0..ENTITIES).map(|id| {
            let outcome = enabled(|| profile.get(&(id as u64), &()))
                .map(Some)
                .map_err(|e| cache_error_kind(&e).to_owned());
            Final::Entity(id, outcome)
        }))
        .collect();
    stop_monitor.store(true, Ordering::SeqCst);
    let samples = monitor.join().expect("the monitor");

    let mut calls: Vec<Call> = Vec::new();
    for (_, mut mine) in finished.lock().unwrap().drain(..) {
        calls.append(&mut mine);
    }
    // Each key's home replicas, now that every server is back.
    let homes: Vec<String> = (0..KEYS)
        .map(|index| {
            let mut home: Vec<String> = cluster
                .owners(&versioned_key(index))
                .iter()
                .filter_map(|owner| names.iter().position(|name| name == owner))
                .map(|s| format!("s{s}"))
                .collect();
            home.sort();
            home.join("+")
        })
        .collect();
    let verdict = checker::judge(
        &calls,
        &finals,
        LOCAL_TTL,
        |op| op_bound(op) + LATE_SLACK,
        |index| homes[index].clone(),
    );
    let by_home = verdict
        .by_home
        .iter()
        .map(|(home, n)| format!("{n} on keys homed on {home}"))
        .collect::<Vec<_>>()
        .join(", ");

    // Marked down while hung, and back after the heal. Servers under
    // other faults are shown too, but only hung ones must go down.
    let mut back = Vec::new();
    for (i, injection) in plan.faults.iter().enumerate() {
        let s = injection.server;
        let heal = heals[i].expect("healed");
        let went_down = samples.first_down(s, fault_start, heal).is_some();
        if !injection.hangs() {
            if let Some(at) = samples.back_for_good(s, heal).filter(|_| went_down) {
                back.push(format!("s{s} {:.0} ms", (at - heal).as_secs_f64() * 1000.0));
            }
            continue;
        }
        if !went_down {
            violations.push(format!(
                "marked down: server s{s} was never seen down during its fault ({:.1}-{:.1} s)",
                fault_start.as_secs_f64(),
                heal.as_secs_f64()
            ));
        }
        match samples.back_for_good(s, heal) {
            Some(at) if at - heal <= BACK_WAIT => {
                back.push(format!("s{s} {:.0} ms", (at - heal).as_secs_f64() * 1000.0));
            }
            other => {
                back.push(format!("s{s} never"));
                let answered = reachable
                    .iter()
                    .find(|(server, _)| *server == s)
                    .map_or(String::new(), |(_, after)| match after {
                        Some(after) => format!(
                            "; it answered a fresh client through its proxy {:.0} ms after the heal",
                            after.as_secs_f64() * 1000.0
                        ),
                        None => "; it did not answer a fresh client either".to_owned(),
                    });
                violations.push(format!(
                    "back: server s{s} not up for good within {BACK_WAIT:?} of its heal at {:.1} s \
                     (first up for good at {}; hints pending for it: {} at the heal, {} {BACK_WAIT:?} \
                     later{answered})",
                    heal.as_secs_f64(),
                    other.map_or("never".to_owned(), |at| format!("{:.1} s", at.as_secs_f64())),
                    samples.hints_at(s, heal),
                    samples.hints_at(s, heal + BACK_WAIT),
                ));
            }
        }
    }

    if verdict.late > 0 {
        violations.push(format!(
            "deadline: {} call(s) ran past their deadline + {LATE_SLACK:?}; the worst, {}, took {:.0} ms",
            verdict.late,
            verdict.worst_late_op,
            verdict.worst_late.as_secs_f64() * 1000.0
        ));
    }
    if verdict.lost > 0 {
        violations.push(format!(
            "lost writes: {} acknowledged write(s) or invalidation(s) not visible after the heal",
            verdict.lost
        ));
    }
    if verdict.stale_raw > 0 {
        violations.push(format!(
            "stale cluster reads: {} of {} raw reads older than an earlier acknowledged write",
            verdict.stale_raw, verdict.raw_reads
        ));
    }
    if verdict.stale_near > 0 {
        violations.push(format!(
            "stale near reads: {} of {} near reads older than allowed by the local TTL ({LOCAL_TTL:?})",
            verdict.stale_near, verdict.near_reads
        ));
    }
    if verdict.stale_entity > 0 {
        violations.push(format!(
            "stale entity reads: {} of {} entity reads older than an earlier acknowledged invalidation",
            verdict.stale_entity, verdict.entity_reads
        ));
    }
    if verdict.bogus > 0 {
        violations.push(format!(
            "impossible values: {} read(s) returned a value never written for that key",
            verdict.bogus
        ));
    }
    if verdict.open_failures > 0 {
        violations.push(format!(
            "fail-open: {} read-through or entity read(s) failed ({})",
            verdict.open_failures,
            verdict.open_failure_kinds.join(", ")
        ));
    }

    let loads = world.stampede_loads.load(Ordering::Relaxed);
    // Tear down in order: callers first, then the network, then servers.
    drop(profile);
    drop(world);
    drop(cluster);
    drop(proxies);
    drop(servers);

    let mut examples = verdict.examples.clone();
    if verdict.errors > 0 {
        let errors: Vec<String> = verdict
            .errors_by_op
            .iter()
            .map(|((op, kind), (n, first))| {
                format!("{op:?} {kind} {n} (first at {:.2} s)", first.as_secs_f64())
            })
            .collect();
        examples.insert(0, format!("errors: {}", errors.join(", ")));
    }
    if !by_home.is_empty() {
        let faulted: Vec<String> = plan
            .faults
            .iter()
            .map(|f| format!("s{}", f.server))
            .collect();
        examples.insert(
            0,
            format!(
                "where: stale reads and lost writes of versioned keys: {by_home} (faulted: {})",
                faulted.join(", ")
            ),
        );
    }
    PhaseReport {
        name: plan.name,
        down: samples.down_spells(),
        back,
        loads,
        stampedes: verdict.stampede_windows,
        examples,
        verdict,
        violations,
    }
}

/// The deadline a call of `op` promises: one cluster call, or a get and a
/// set (read-through, entity cache) around the loader.
fn op_bound(op: Op) -> Duration {
    match op {
        Op::RawRead | Op::NearRead | Op::Write | Op::ComputedDelete | Op::EntityInvalidate => {
            TIMEOUT
        }
        Op::Stampede | Op::Computed => 2 * TIMEOUT + LOADER_PAUSE,
        Op::EntityRead => 2 * TIMEOUT,
    }
}

/// Records of calls and the judgement on them, after Jepsen's checkers:
/// nothing is decided while the calls run.
///
/// Staleness is decidable because each key (and each entity) has one
/// writer thread, whose writes carry increasing versions, and nothing
/// expires or is deleted under those keys:
///
/// - a raw cluster read that began at `s` is stale if it saw nothing, or a
///   version older than the newest one whose write was acknowledged
///   before `s`;
/// - a near-cache read may serve what the cluster answered up to one local
///   TTL earlier (the near cache's documented promise: an entry changed
///   elsewhere stays visible for at most the local TTL; its local expiry
///   is counted from before the remote read that filled it), so it is
///   judged against the writes acknowledged before `s - local TTL`;
/// - an entity read is judged like a raw read against acknowledged
///   invalidations (the database version bumped just before each): the
///   invalidating process drops its own local copies at once;
/// - a versioned read of a version whose write had not begun by the end of
///   the read, or of another key's value, is impossible: counted apart.
///
/// A write whose call failed may still have landed: a later read may see
/// it, and it never makes a read stale.
mod checker {
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Op {
        Write,
        RawRead,
        NearRead,
        Stampede,
        Computed,
        ComputedDelete,
        EntityRead,
        EntityInvalidate,
    }

    #[derive(Debug, Clone)]
    pub enum Outcome {
        /// A versioned read: the version seen, or nothing.
        Read(Option<u64>),
        /// The write (or invalidation) of `Call::version` was acknowledged.
        Wrote,
        /// Any other success.
        Done,
        /// A success with a value that cannot be right (wrong key, garbage).
        Wrong(String),
        /// An error, by kind.
        Failed(&'static str),
    }

    /// One call: what, on which key or entity, when (from the phase's
    /// start), and how it ended.
    #[derive(Debug, Clone)]
    pub struct Call {
        pub op: Op,
        /// The key index, entity id, stampede window or computed key.
        pub target: usize,
        /// For writes and invalidations: the version written.
        pub version: u64,
        pub started: Duration,
        pub ended: Duration,
        pub outcome: Outcome,
    }

    /// The state read once every fault healed.
    pub enum Final {
        Key(usize, Result<Option<u64>, String>),
        Entity(usize, Result<Option<u64>, String>),
    }

    #[derive(Debug, Default)]
    pub struct Verdict {
        pub calls: usize,
        pub errors: usize,
        pub errors_by_kind: BTreeMap<&'static str, usize>,
        /// The same errors by operation and kind, with the first time each
        /// was seen: which calls a fault cost.
        pub errors_by_op: BTreeMap<(Op, &'static str), (usize, Duration)>,
        pub max_latency: Duration,
        pub late: usize,
        pub worst_late: Duration,
        pub worst_late_op: String,
        pub raw_reads: usize,
        pub near_reads: usize,
        pub entity_reads: usize,
        pub stale_raw: usize,
        pub stale_near: usize,
        pub stale_entity: usize,
        pub bogus: usize,
        pub lost: usize,
        pub open_failures: usize,
        pub open_failure_kinds: Vec<String>,
        pub stampede_windows: usize,
        /// Stale reads and lost writes of versioned keys, by the key's
        /// home replicas: which servers' keys suffered.
        pub by_home: BTreeMap<String, usize>,
        pub examples: Vec<String>,
    }

    /// Acknowledged versions of one key (or entity), in the order their
    /// single writer made them: versions and acknowledgement times both
    /// increase.
    #[derive(Default)]
    struct Acks {
        acked: Vec<(Duration, u64)>,
        /// Every version whose write began, acknowledged or not, with when.
        begun: BTreeMap<u64, Duration>,
    }

    impl Acks {
        /// The newest version acknowledged strictly before `instant`.
        fn newest_before(&self, instant: Duration) -> Option<u64> {
            let n = self.acked.partition_point(|(ended, _)| *ended < instant);
            n.checked_sub(1).map(|i| self.acked[i].1)
        }

        fn last(&self) -> Option<u64> {
            self.acked.last().map(|(_, v)| *v)
        }
    }

    const MAX_EXAMPLES: usize = 6;

    /// Judges a phase: `calls` from every thread in any order, `finals`
    /// read after the heal, `local_ttl` the staleness a near read may
    /// have, `deadline(op)` the latest a call of `op` may return, and
    /// `home(key)` names a versioned key's home replicas for the report.
    pub fn judge(
        calls: &[Call],
        finals: &[Final],
        local_ttl: Duration,
        deadline: impl Fn(Op) -> Duration,
        home: impl Fn(usize) -> String,
    ) -> Verdict {
        let mut verdict = Verdict {
            calls: calls.len(),
            ..Verdict::default()
        };
        let mut keys: BTreeMap<usize, Acks> = BTreeMap::new();
        let mut entities: BTreeMap<usize, Acks> = BTreeMap::new();
        let mut sorted: Vec<&Call> = calls.iter().collect();
        sorted.sort_by_key(|c| (c.ended, c.started));
        for call in &sorted {
            let history = match call.op {
                Op::Write => keys.entry(call.target).or_default(),
                Op::EntityInvalidate => entities.entry(call.target).or_default(),
                _ => continue,
            };
            history.begun.insert(call.version, call.started);
            if matches!(call.outcome, Outcome::Wrote) {
                history.acked.push((call.ended, call.version));
            }
        }
        for acks in keys.values_mut().chain(entities.values_mut()) {
            acks.acked.sort();
        }
        let empty = Acks::default();
        let mut windows = std::collections::BTreeSet::new();
        let example = |verdict: &mut Verdict, text: String| {
            if verdict.examples.len() < MAX_EXAMPLES {
                verdict.examples.push(text);
            }
        };

        for call in calls {
            let took = call.ended.saturating_sub(call.started);
            verdict.max_latency = verdict.max_latency.max(took);
            let bound = deadline(call.op);
            if took > bound {
                verdict.late += 1;
                if took > verdict.worst_late {
                    verdict.worst_late = took;
                    verdict.worst_late_op =
                        format!("{:?} at {:.2} s", call.op, call.started.as_secs_f64());
                }
            }
            if let Outcome::Failed(kind) = call.outcome {
                verdict.errors += 1;
                *verdict.errors_by_kind.entry(kind).or_default() += 1;
                let (n, first) = verdict
                    .errors_by_op
                    .entry((call.op, kind))
                    .or_insert((0, call.started));
                *n += 1;
                *first = (*first).min(call.started);
                if matches!(call.op, Op::Stampede | Op::Computed | Op::EntityRead) {
                    verdict.open_failures += 1;
                    let text = format!("{:?} {kind}", call.op);
                    if !verdict.open_failure_kinds.contains(&text) {
                        verdict.open_failure_kinds.push(text);
                    }
                }
            }
            if call.op == Op::Stampede {
                windows.insert(call.target);
            }
            if let Outcome::Wrong(what) = &call.outcome {
                verdict.bogus += 1;
                example(
                    &mut verdict,
                    format!(
                        "{:?} of #{} at {:.2} s returned {what}",
                        call.op,
                        call.target,
                        call.started.as_secs_f64()
                    ),
                );
                if matches!(call.op, Op::Stampede | Op::Computed) {
                    verdict.open_failures += 1;
                }
                continue;
            }
            let Outcome::Read(seen) = call.outcome else {
                continue;
            };
            let (history, allowance) = match call.op {
                Op::RawRead => {
                    verdict.raw_reads += 1;
                    (keys.get(&call.target).unwrap_or(&empty), Duration::ZERO)
                }
                // A near read may serve what the cluster said up to a
                // local TTL ago: the promise is "stale by at most the
                // local TTL", so it is judged against the writes
                // acknowledged that long before it began.
                Op::NearRead => {
                    verdict.near_reads += 1;
                    (keys.get(&call.target).unwrap_or(&empty), local_ttl)
                }
                Op::EntityRead => {
                    verdict.entity_reads += 1;
                    (entities.get(&call.target).unwrap_or(&empty), Duration::ZERO)
                }
                _ => continue,
            };
            // A version no write of that key had begun by the time the
            // read ended was never written: garbage, not staleness.
            if call.op != Op::EntityRead {
                if let Some(version) = seen {
                    let real = history
                        .begun
                        .get(&version)
                        .is_some_and(|began| *began <= call.ended);
                    if !real {
                        verdict.bogus += 1;
                        example(
                            &mut verdict,
                            format!(
                                "{:?} of key #{} at {:.2} s saw v{version}, never written by then",
                                call.op,
                                call.target,
                                call.started.as_secs_f64()
                            ),
                        );
                        continue;
                    }
                }
            }
            let Some(required) = call
                .started
                .checked_sub(allowance)
                .and_then(|from| history.newest_before(from))
            else {
                continue;
            };
            if seen.is_none_or(|version| version < required) {
                let what = match call.op {
                    Op::RawRead => {
                        verdict.stale_raw += 1;
                        format!("key #{} (home {})", call.target, home(call.target))
                    }
                    Op::NearRead => {
                        verdict.stale_near += 1;
                        format!("key #{} (home {})", call.target, home(call.target))
                    }
                    _ => {
                        verdict.stale_entity += 1;
                        format!("entity {}", call.target)
                    }
                };
                if call.op != Op::EntityRead {
                    *verdict.by_home.entry(home(call.target)).or_default() += 1;
                }
                example(
                    &mut verdict,
                    format!(
                    "{:?} of {what} began {:.3} s, saw {}, but v{required} was acknowledged {}before",
                    call.op,
                    call.started.as_secs_f64(),
                    seen.map_or("nothing".to_owned(), |v| format!("v{v}")),
                    if allowance.is_zero() { String::new() } else { format!("{allowance:?} ") }
                ),
                );
            }
        }

        for last in finals {
            let (name, acks, outcome) = match last {
                Final::Key(index, outcome) => ("key", keys.get(index), outcome),
                Final::Entity(id, outcome) => ("entity", entities.get(id), outcome),
            };
            let Some(wanted) = acks.and_then(Acks::last) else {
                continue;
            };
            let target = match last {
                Final::Key(i, _) | Final::Entity(i, _) => *i,
            };
            match outcome {
                Ok(Some(version)) if *version >= wanted => {}
                other => {
                    verdict.lost += 1;
                    let whose = match last {
                        Final::Key(..) => {
                            *verdict.by_home.entry(home(target)).or_default() += 1;
                            format!(" (home {})", home(target))
                        }
                        Final::Entity(..) => String::new(),
                    };
                    example(&mut verdict, format!("after the heal, {name} #{target}{whose} read {other:?}, but v{wanted} was acknowledged"));
                }
            }
        }
        verdict.stampede_windows = windows.len();
        verdict
    }
}
