#![cfg(all(feature = "server", feature = "cluster", feature = "entity-cache"))]
//! The chaos suite: three embedded servers, each behind a fault proxy
//! (`tests/common/fault_proxy.rs`), a `Cluster` with two replicas over
//! them, a read-through near cache and an entity cache over the cluster,
//! and 32 threads of reads, writes, invalidations and stampedes while
//! faults come and go, one server at a time, then two at once. The layers,
//! the threads' traffic and the checker are `tests/common/chaos_workload.rs`,
//! which the soak benchmark (`benches/soak.rs`) runs for minutes.
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::server::Server;

mod common;

use common::chaos_workload::{checker, op_bound, work, World, LATE_SLACK, LOCAL_TTL, THREADS};
use common::fault_proxy::{Fault, FaultProxy};

use checker::Call;

/// After a fault ends, how long the cluster has to bring its server back:
/// cool-down plus a few probes, with room for a busy machine. Shorter
/// than the traffic after a 3 s fault, so a server must come back under
/// load, not only once the load stops.
const BACK_WAIT: Duration = Duration::from_millis(2500);
/// How long the timed faults last ("heals after 3 s").
const TIMED_FAULT: Duration = Duration::from_secs(3);
/// How often the monitor samples `Cluster::servers()`.
const SAMPLE_EVERY: Duration = Duration::from_millis(25);
/// How long past the end of traffic the driver waits for a worker thread
/// before calling it hung (a call that never returned).
const JOIN_WAIT: Duration = Duration::from_secs(10);

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
        format!(
            "{:<22} {:>6} {:>6}  {:<22} {:>6.0} {:>4} {:>5} {:>5} {:>5} {:>4} {:>4} {:>6}  {:<22} {}",
            self.name,
            v.calls,
            v.errors,
            v.kinds_text(),
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

fn run_phase(plan: &Plan, form: &Form) -> PhaseReport {
    let servers: Vec<Server> = (0..3).map(|_| Server::local().expect("a server")).collect();
    let proxies: Vec<FaultProxy> = servers
        .iter()
        .map(|server| FaultProxy::to(&server.address()))
        .collect();
    let names: Vec<String> = proxies.iter().map(FaultProxy::address).collect();
    let world = Arc::new(World::over(&names));
    let cluster = world.cluster.clone();

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
            let (world, finished) = (Arc::clone(&world), Arc::clone(&finished));
            thread::Builder::new()
                .name(format!("chaos-{t}"))
                .spawn(move || {
                    let calls = work(t, &world, "", t0, end);
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
    let finals = world.finals("");
    stop_monitor.store(true, Ordering::SeqCst);
    let samples = monitor.join().expect("the monitor");

    let mut calls: Vec<Call> = Vec::new();
    for (_, mut mine) in finished.lock().unwrap().drain(..) {
        calls.append(&mut mine);
    }
    // Each key's home replicas, now that every server is back.
    let homes = world.homes("", &names);
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
