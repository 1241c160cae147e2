//! The chaos workload, shared by the chaos suite (`tests/chaos.rs`) and
//! the soak benchmark (`benches/soak.rs`, which includes this file with
//! `#[path]`): the cache layers over a `Cluster` with two replicas (a
//! read-through near cache and an entity cache), the traffic of each of the
//! 32 threads (reads, writes, invalidations and stampedes) and the
//! Jepsen-style checker (module `checker`) that judges the calls afterwards.
//!
//! Which faults come when, and what is asserted, is the caller's business.
//! A round's keys carry a prefix: the chaos suite starts each phase on
//! fresh servers and passes `""`; the soak keeps its servers for minutes
//! and gives each fault cycle its own keys, so the checker can judge a
//! cycle from that cycle's calls alone.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_cache_client::cache::{
    enabled, CacheError, EntityCache, LayerConfig, NearCache, ReadThrough, UseCaseConfig,
    UseCaseInfo,
};
use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::Error;

use self::checker::{Call, Final, Op, Outcome};

/// The cluster's deadline per call, fallbacks and read repair included.
pub const TIMEOUT: Duration = Duration::from_millis(500);
/// How far past its deadline a call may return: the promise under test.
pub const LATE_SLACK: Duration = Duration::from_millis(250);
/// Short failure knobs, so a server comes back within a phase.
pub const COOL_DOWN: Duration = Duration::from_millis(500);
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// The near caches' local TTL: the staleness a near read is allowed.
pub const LOCAL_TTL: Duration = Duration::from_millis(500);
/// Remote TTLs: long enough that nothing expires during a run, so a
/// missing value is never an expiry.
pub const REMOTE_TTL: Duration = Duration::from_secs(3600);
pub const THREADS: usize = 32;
/// Versioned keys each thread owns (and alone writes).
pub const KEYS_PER_THREAD: usize = 4;
pub const KEYS: usize = THREADS * KEYS_PER_THREAD;
/// Entities of the entity cache: thread `t` alone invalidates entity `t`.
pub const ENTITIES: usize = THREADS;
/// Keys read through `get_with` and deleted (read-through invalidation).
pub const COMPUTED_KEYS: usize = 16;
/// What a loader costs: long enough that concurrent callers pile up.
pub const LOADER_PAUSE: Duration = Duration::from_millis(20);
/// Every this long the stampede key changes: callers in the same window
/// all ask for the same missing key.
pub const STAMPEDE_WINDOW: Duration = Duration::from_millis(200);
/// Bounds on every loop: no thread runs more calls than this per phase.
pub const MAX_CALLS_PER_THREAD: usize = 200_000;
/// Padding that makes a value about 100 bytes, so a reset after a few KB
/// lands in the middle of some response.
pub const PAD: &str = "................................................................";

/// Everything a phase's threads call into.
pub struct World {
    pub cluster: Cluster,
    pub read_through: ReadThrough<NearCache<Cluster>>,
    pub entities: EntityCache<Cluster>,
    /// The "database" behind the entity cache: a version per entity.
    pub database: Arc<Vec<AtomicU64>>,
    /// Loader runs for stampede keys: one per window is single flight
    /// working and the value staying stored.
    pub stampede_loads: AtomicU64,
    /// Loader runs for the other read-through keys.
    pub loads: AtomicU64,
    /// The `Profile` use case over `database`.
    profile: Box<dyn Fn(u64) -> Result<u64, CacheError> + Send + Sync>,
}

impl World {
    /// The layers over a cluster of the servers `names` (two replicas, the
    /// short failure knobs): a read-through with fail-open over a near
    /// cache, and an entity cache with a `Profile` use case keyed by
    /// `user_id`, both over the same cluster.
    pub fn over(names: &[String]) -> World {
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
            .wait_timeout(2 * TIMEOUT + LOADER_PAUSE + LATE_SLACK)
            .build();
        let entities = EntityCache::builder(cluster.clone())
            .config(|_: &UseCaseInfo<'_>| {
                Some(UseCaseConfig::remote(REMOTE_TTL).with_local(LayerConfig::new(LOCAL_TTL)))
            })
            .generation_ttl(REMOTE_TTL)
            .wait_timeout(2 * TIMEOUT + LATE_SLACK)
            .build()
            .expect("the entity cache");
        let database: Arc<Vec<AtomicU64>> =
            Arc::new((0..ENTITIES).map(|_| AtomicU64::new(0)).collect());
        let versions = Arc::clone(&database);
        let profile = entities.use_case_named("Profile", "user_id", move |id: &u64, _: &()| {
            Ok::<u64, Infallible>(versions[*id as usize].load(Ordering::SeqCst))
        });
        World {
            cluster,
            read_through,
            entities,
            database,
            stampede_loads: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            profile: Box::new(move |id| profile.get(&id, &())),
        }
    }

    /// Entity `id` through the `Profile` use case, in an enabled scope.
    pub fn profile(&self, id: u64) -> Result<u64, CacheError> {
        enabled(|| (self.profile)(id))
    }

    /// The final state the checker judges: every versioned key of the
    /// round `prefix` read straight through the cluster, and every entity
    /// through its use case.
    pub fn finals(&self, prefix: &str) -> Vec<Final> {
        (0..KEYS)
            .map(|index| {
                let key = versioned_key(prefix, index);
                let outcome = match self.cluster.get(&key) {
                    Ok(None) => Ok(None),
                    Ok(Some(value)) => decode(&key, &value).map(Some),
                    Err(e) => Err(error_kind(&e).to_owned()),
                };
                Final::Key(index, outcome)
            })
            .chain((0..ENTITIES).map(|id| {
                let outcome = self
                    .profile(id as u64)
                    .map(Some)
                    .map_err(|e| cache_error_kind(&e).to_owned());
                Final::Entity(id, outcome)
            }))
            .collect()
    }

    /// Each versioned key's home servers now, as `s<i>+s<j>` by their
    /// place in `names` (the proxies' addresses, in order).
    pub fn homes(&self, prefix: &str, names: &[String]) -> Vec<String> {
        (0..KEYS)
            .map(|index| {
                let mut home: Vec<String> = self
                    .cluster
                    .owners(&versioned_key(prefix, index))
                    .iter()
                    .filter_map(|owner| names.iter().position(|name| name == owner))
                    .map(|s| format!("s{s}"))
                    .collect();
                home.sort();
                home.join("+")
            })
            .collect()
    }
}

/// Versioned key `index` of the round whose keys start with `prefix`.
pub fn versioned_key(prefix: &str, index: usize) -> String {
    format!(
        "{prefix}k{}-{}",
        index / KEYS_PER_THREAD,
        index % KEYS_PER_THREAD
    )
}

/// A value carries its key and version, so a read says which write it saw
/// and a value under the wrong key cannot pass.
pub fn encode(key: &str, version: u64) -> String {
    format!("{key}|{version}|{PAD}")
}

pub fn decode(key: &str, value: &[u8]) -> Result<u64, String> {
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

pub fn computed(key: &str) -> String {
    format!("computed:{key}")
}

pub fn error_kind(error: &Error) -> &'static str {
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

pub fn cache_error_kind<E>(error: &CacheError<E>) -> &'static str {
    match error {
        CacheError::Store(error) => error_kind(error),
        CacheError::WaitTimeout { .. } => "wait-timeout",
        CacheError::LoaderPanicked { .. } => "loader-panicked",
        CacheError::Load(_) => "load",
        _ => "cache-other",
    }
}

/// One worker thread's traffic until `end` on the keys starting with
/// `prefix`: returns every call it made, timed from `t0`.
pub fn work(thread: usize, world: &World, prefix: &str, t0: Instant, end: Instant) -> Vec<Call> {
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
                let key = versioned_key(prefix, index);
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
                let key = versioned_key(prefix, index);
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
                let key = versioned_key(prefix, index);
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
                let key = format!("{prefix}stampede-{window}");
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
                    read_through(world, &format!("{prefix}computed-{n}"), &world.loads),
                )
            }
            // Read-through invalidation: the next get_with computes again.
            83..86 => {
                let n = rng.usize(0..COMPUTED_KEYS);
                let outcome = match world.read_through.delete(&format!("{prefix}computed-{n}")) {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Failed(error_kind(&e)),
                };
                (Op::ComputedDelete, n, 0, outcome)
            }
            86..98 => {
                let id = rng.usize(0..ENTITIES);
                let outcome = match world.profile(id as u64) {
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

/// A read-through read: with fail-open it must be the computed value,
/// whatever the store does.
pub fn read_through(world: &World, key: &str, loads: &AtomicU64) -> Outcome {
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

pub fn short(kind: &str) -> &str {
    match kind {
        "unavailable" => "un",
        "deadline" => "dl",
        "wait-timeout" => "wt",
        "protocol" => "pr",
        other => other,
    }
}

/// The deadline a call of `op` promises: one cluster call, or a get and a
/// set (read-through, entity cache) around the loader.
pub fn op_bound(op: Op) -> Duration {
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
pub mod checker {
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

    impl Verdict {
        /// The errors by kind in a report's few characters (`un 3, dl 1`),
        /// `-` for none.
        pub fn kinds_text(&self) -> String {
            let text = self
                .errors_by_kind
                .iter()
                .map(|(kind, n)| format!("{} {n}", super::short(kind)))
                .collect::<Vec<_>>()
                .join(", ");
            if text.is_empty() {
                "-".to_owned()
            } else {
                text
            }
        }
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
