//! Caching in production (`cache::EntityCache`) against embedded servers
//! over loopback: invalidation under concurrent readers, the near-cache
//! bound, the future buffer, ramps, the enable scope, and the metrics.
#![cfg(all(feature = "server", feature = "entity-cache", feature = "metrics"))]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tiny_cache_client::cache::{
    enable, enabled, EntityCache, LayerConfig, UseCaseConfig, UseCaseInfo,
};
use tiny_cache_client::server::Server;
use tiny_cache_client::CacheStore;
use tiny_cache_client::{Client, ItemResult, Result, Ttl};

const REMOTE_TTL: Duration = Duration::from_secs(300);

fn client(server: &Server) -> Client {
    Client::builder(&server.address())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The client, counting every call that reaches the server.
struct Counted {
    client: Client,
    calls: AtomicU64,
}

impl Counted {
    fn new(client: Client) -> Arc<Counted> {
        Arc::new(Counted {
            client,
            calls: AtomicU64::new(0),
        })
    }
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

impl CacheStore for Counted {
    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.count();
        CacheStore::get(&self.client, key)
    }
    fn set_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<()> {
        self.count();
        CacheStore::set_with_ttl(&self.client, key, value, ttl)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.count();
        CacheStore::delete(&self.client, key)
    }
    fn get_many(&self, keys: &[&str]) -> Result<Vec<ItemResult<Option<Bytes>>>> {
        self.count();
        CacheStore::get_many(&self.client, keys)
    }
    fn set_if_absent_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<bool> {
        self.count();
        CacheStore::set_if_absent_with_ttl(&self.client, key, value, ttl)
    }
}

#[test]
fn after_each_invalidate_returns_no_reader_sees_the_old_value_from_the_remote_layer() {
    let server = Server::local().unwrap();
    let cache = EntityCache::builder(client(&server)).build().unwrap();
    readers_never_see_an_invalidated_value(cache, 0, |_| {});
}

/// The same over three servers with every key on two (R = 2, Q = 1): each
/// generation's two replicas must agree before an invalidation returns,
/// or a reader of the replica that missed it serves the old entry. Midway
/// one server is restarted, empty, on its address, and later another.
#[cfg(feature = "cluster")]
#[test]
fn after_each_invalidate_returns_no_reader_sees_the_old_value_over_a_replicated_cluster() {
    use std::sync::Mutex;
    use tiny_cache_client::cluster::Cluster;

    let servers: Mutex<Vec<Server>> =
        Mutex::new((0..3).map(|_| Server::local().unwrap()).collect());
    let cluster = {
        let servers = servers.lock().unwrap();
        servers
            .iter()
            .fold(Cluster::builder(), |builder, server| {
                builder.server(&server.address())
            })
            .replicas(2)
            .timeout(Duration::from_secs(2))
            .cool_down(Duration::from_millis(200))
            .probe_interval(Duration::from_millis(100))
            .build()
            .unwrap()
    };
    let watch = cluster.clone();
    let cache = EntityCache::builder(cluster).build().unwrap();
    // A restart can fail a fill open: a missing generation is written to
    // every replica or not at all, and one replica is briefly away. Such a
    // fill is counted and stores nothing; no read may be stale meanwhile.
    // On a loaded machine a restart's window spans many fills: the bound
    // is one per round.
    readers_never_see_an_invalidated_value(cache, ROUNDS, |round| {
        if round == ROUNDS / 3 || round == 2 * ROUNDS / 3 {
            // One server away at a time: the last one restarted is back,
            // with what it missed delivered, before the next goes. (Both
            // of a key's homes away at once is an outage: its reads fail
            // open, which is right, but not what this test is about.)
            let settled = Instant::now() + Duration::from_secs(10);
            while !watch
                .servers()
                .iter()
                .all(|server| server.up && server.pending_hints == 0)
                && Instant::now() < settled
            {
                thread::sleep(Duration::from_millis(20));
            }
            let mut servers = servers.lock().unwrap();
            let index = usize::try_from(round % 3).unwrap();
            let old = servers.remove(index);
            let address = old.address();
            old.shutdown();
            let restarted = Server::builder().listen(&address).start().unwrap();
            servers.insert(index, restarted);
        }
    });
}

const READERS: usize = 8;
const ROUNDS: u64 = 40;

/// 8 readers of two use cases of one entity while the test changes the
/// source and invalidates the entity `ROUNDS` times (calling `between`
/// with each round's number first): after each invalidation returns, no
/// read may see an older version, and at most `max_errors` calls fail open.
fn readers_never_see_an_invalidated_value<S: CacheStore + Send + Sync + 'static>(
    cache: EntityCache<S>,
    max_errors: u64,
    mut between: impl FnMut(u64),
) {
    // The source of truth, and the lowest version a read starting now may
    // return (raised only once an invalidation has returned).
    let source = Arc::new(AtomicU64::new(0));
    let floor = Arc::new(AtomicU64::new(0));
    let truth = Arc::clone(&source);
    let profile = cache.use_case_named("Profile", "user_id", move |_: &u64, _: &()| {
        Ok::<_, Infallible>(truth.load(Ordering::SeqCst))
    });
    let truth = Arc::clone(&source);
    let posts = cache.use_case_named("Posts", "user_id", move |_: &u64, page: &u32| {
        Ok::<_, Infallible>((truth.load(Ordering::SeqCst), *page))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|n| {
            let (profile, posts) = (profile.clone(), posts.clone());
            let (floor, stop) = (Arc::clone(&floor), Arc::clone(&stop));
            thread::spawn(move || {
                let _scope = enable();
                let (mut reads, mut stale) = (0u64, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    let lowest = floor.load(Ordering::SeqCst);
                    let seen = profile.get(&7, &()).unwrap();
                    let (seen_posts, page) = posts.get(&7, &(n as u32 % 3)).unwrap();
                    assert_eq!(page, n as u32 % 3);
                    if seen < lowest || seen_posts < lowest {
                        stale.push((lowest, seen, seen_posts));
                    }
                    reads += 1;
                }
                (reads, stale)
            })
        })
        .collect();
    for version in 1..=ROUNDS {
        between(version);
        // Let the readers fill and hit the cache between updates.
        let hits = profile.local_stats().remote_hits;
        let started = Instant::now();
        while profile.local_stats().remote_hits < hits + 20
            && started.elapsed() < Duration::from_secs(5)
        {
            thread::yield_now();
        }
        source.store(version, Ordering::SeqCst);
        cache
            .invalidate("user_id", &7, Duration::ZERO)
            .expect("invalidate");
        floor.store(version, Ordering::SeqCst);
    }
    stop.store(true, Ordering::SeqCst);
    let mut total_reads = 0;
    for reader in readers {
        let (reads, stale) = reader.join().unwrap();
        assert!(
            stale.is_empty(),
            "stale reads (floor, profile, posts): {stale:?}"
        );
        total_reads += reads;
    }
    let stats = cache.local_stats();
    assert!(total_reads >= READERS as u64, "{total_reads} reads");
    assert!(stats.remote_hits > ROUNDS, "the cache was used: {stats:?}");
    assert_eq!(stats.invalidations, ROUNDS);
    assert!(stats.errors <= max_errors, "{stats:?}");
}

#[test]
fn another_process_serves_an_invalidated_value_locally_no_longer_than_the_local_ttl() {
    const LOCAL_TTL: Duration = Duration::from_secs(1);
    let server = Server::local().unwrap();
    let config = |_: &UseCaseInfo<'_>| {
        Some(UseCaseConfig::remote(REMOTE_TTL).with_local(LayerConfig::new(LOCAL_TTL)))
    };
    // Two layers over one server: two processes.
    let here = EntityCache::builder(client(&server))
        .config(config)
        .build()
        .unwrap();
    let there = EntityCache::builder(client(&server))
        .config(config)
        .build()
        .unwrap();
    let source = Arc::new(AtomicU64::new(1));
    let truth = Arc::clone(&source);
    let name = here.use_case_named("Name", "user_id", move |_: &u64, _: &()| {
        Ok::<_, Infallible>(truth.load(Ordering::SeqCst))
    });
    let _scope = enable();
    // Filled, then read locally (again if a slow machine let it expire).
    for _ in 0..20 {
        assert_eq!(name.get(&1, &()).unwrap(), 1);
        if name.local_stats().local_hits > 0 {
            break;
        }
    }
    assert!(
        name.local_stats().local_hits > 0,
        "{:?}",
        name.local_stats()
    );

    source.store(2, Ordering::SeqCst);
    there.invalidate("user_id", &1, Duration::ZERO).unwrap();
    let invalidated = Instant::now();
    let mut old_reads = Vec::new();
    loop {
        let started = Instant::now();
        let value = name.get(&1, &()).unwrap();
        if value == 2 {
            break;
        }
        old_reads.push(started);
        assert!(
            invalidated.elapsed() < Duration::from_secs(10),
            "the old value outlived its local TTL by seconds"
        );
    }
    for started in &old_reads {
        assert!(
            started.duration_since(invalidated) < LOCAL_TTL,
            "old value served {:?} after the invalidation",
            started.duration_since(invalidated)
        );
    }

    // In the invalidating process itself, the local layer drops at once.
    assert_eq!(name.get(&1, &()).unwrap(), 2);
    source.store(3, Ordering::SeqCst);
    here.invalidate("user_id", &1, Duration::ZERO).unwrap();
    assert_eq!(name.get(&1, &()).unwrap(), 3);
}

/// Runs `use_case.get` on another thread whose function reads the source,
/// then waits at `read` until the test has done its part and releases it
/// at `release`.
fn racing_read<S: CacheStore + Send + Sync + 'static>(
    cache: &EntityCache<S>,
    name: &str,
    source: &Arc<AtomicU64>,
    id: u64,
) -> (Arc<Barrier>, Arc<Barrier>, thread::JoinHandle<u64>) {
    let read = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let (truth, at_read, at_release) =
        (Arc::clone(source), Arc::clone(&read), Arc::clone(&release));
    let use_case = cache.use_case_named(name, "user_id", move |_: &u64, _: &()| {
        let value = truth.load(Ordering::SeqCst);
        at_read.wait();
        at_release.wait();
        Ok::<_, Infallible>(value)
    });
    let reader = thread::spawn(move || enabled(|| use_case.get(&id, &()).unwrap()));
    (read, release, reader)
}

fn plain_reader<S: CacheStore + Send + Sync + 'static>(
    cache: &EntityCache<S>,
    name: &str,
    source: &Arc<AtomicU64>,
) -> impl Fn(u64) -> u64 {
    let truth = Arc::clone(source);
    let use_case = cache.use_case_named(name, "user_id", move |_: &u64, _: &()| {
        Ok::<_, Infallible>(truth.load(Ordering::SeqCst))
    });
    move |id| enabled(|| use_case.get(&id, &()).unwrap())
}

#[test]
fn a_compute_that_began_before_the_invalidation_stores_an_entry_that_reads_as_stale() {
    let server = Server::local().unwrap();
    late_compute_reads_as_stale(EntityCache::builder(client(&server)).build().unwrap());
}

/// The same over three servers, where an entity's entries and its
/// generation share a server through their hash tag.
#[cfg(feature = "cluster")]
#[test]
fn a_compute_that_began_before_the_invalidation_reads_as_stale_over_a_cluster() {
    let (_servers, cluster) = three_server_cluster();
    late_compute_reads_as_stale(EntityCache::builder(cluster).build().unwrap());
}

fn late_compute_reads_as_stale<S: CacheStore + Send + Sync + 'static>(cache: EntityCache<S>) {
    let source = Arc::new(AtomicU64::new(1));
    let (read, release, reader) = racing_read(&cache, "Race", &source, 1);
    read.wait(); // the reader holds version 1 and has read the generation
    source.store(2, Ordering::SeqCst);
    cache.invalidate("user_id", &1, Duration::ZERO).unwrap();
    release.wait(); // it stores version 1, after the invalidation
    assert_eq!(reader.join().unwrap(), 1, "it began before the write");
    let fresh = plain_reader(&cache, "Race", &source);
    assert_eq!(fresh(1), 2, "the late entry carries the old generation");
    assert_eq!(fresh(1), 2);
    assert_eq!(cache.local_stats().remote_hits, 1);
}

#[test]
fn the_future_buffer_closes_the_read_before_write_race() {
    let server = Server::local().unwrap();
    buffer_closes_the_race(EntityCache::builder(client(&server)).build().unwrap());
}

#[cfg(feature = "cluster")]
#[test]
fn the_future_buffer_closes_the_read_before_write_race_over_a_cluster() {
    let (_servers, cluster) = three_server_cluster();
    buffer_closes_the_race(EntityCache::builder(cluster).build().unwrap());
}

fn buffer_closes_the_race<S: CacheStore + Send + Sync + 'static>(cache: EntityCache<S>) {
    let source = Arc::new(AtomicU64::new(1));
    let fresh = plain_reader(&cache, "Buffered", &source);

    // The writer invalidates, then its write becomes visible (a replica
    // catching up, a commit after the invalidation); a reader computes in
    // between. Without a buffer its stale entry is served afterwards.
    cache.invalidate("user_id", &1, Duration::ZERO).unwrap();
    let (read, release, reader) = racing_read(&cache, "Buffered", &source, 1);
    read.wait();
    source.store(2, Ordering::SeqCst);
    release.wait();
    assert_eq!(reader.join().unwrap(), 1);
    assert_eq!(
        fresh(1),
        1,
        "the race, without a buffer: stale until the TTL"
    );

    // The same with a buffer longer than the race: nothing computed in it
    // is served after it.
    source.store(1, Ordering::SeqCst);
    cache
        .invalidate("user_id", &2, Duration::from_secs(60))
        .unwrap();
    let (read, release, reader) = racing_read(&cache, "Buffered", &source, 2);
    read.wait();
    source.store(2, Ordering::SeqCst);
    release.wait();
    assert_eq!(reader.join().unwrap(), 1);
    assert_eq!(
        fresh(2),
        2,
        "the buffer refused the entry read before the write"
    );
    source.store(3, Ordering::SeqCst);
    assert_eq!(fresh(2), 3, "nothing is stored inside the buffer");
}

/// Three servers and a cluster over them, one replica per key.
#[cfg(feature = "cluster")]
fn three_server_cluster() -> (Vec<Server>, tiny_cache_client::cluster::Cluster) {
    let servers: Vec<Server> = (0..3).map(|_| Server::local().unwrap()).collect();
    let cluster = servers
        .iter()
        .fold(
            tiny_cache_client::cluster::Cluster::builder(),
            |builder, server| builder.server(&server.address()),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    (servers, cluster)
}

/// Lookups (hits and misses) each server has answered, read through a
/// client of its own so the cluster's counters stay untouched.
#[cfg(feature = "cluster")]
fn lookups(servers: &[Server]) -> Vec<u64> {
    servers
        .iter()
        .map(|server| {
            let stats = client(server).stats().unwrap();
            stats.hits + stats.misses
        })
        .collect()
}

/// Over a 3-server cluster, a tracked read (entry, entity generation and,
/// reused in between, the global generation) is one call to one server,
/// for every entity: no server is on every read's path.
#[cfg(feature = "cluster")]
#[test]
fn over_a_cluster_a_tracked_read_is_one_call_to_one_server() {
    let (servers, cluster) = three_server_cluster();
    let cache = EntityCache::builder(cluster.clone()).build().unwrap();
    let source = Arc::new(AtomicU64::new(1));
    let read = plain_reader(&cache, "OneServer", &source);
    let mut homes = std::collections::HashSet::new();
    for id in 0..12 {
        // A miss that fills, then a hit that reads the global generation.
        assert_eq!((read(id), read(id)), (1, 1));
        let (calls, before) = (cluster.metrics().calls, lookups(&servers));
        assert_eq!(read(id), 1);
        let after = lookups(&servers);
        assert_eq!(
            cluster.metrics().calls,
            calls + 1,
            "one call for entity {id}"
        );
        let moved: Vec<(usize, u64)> = before
            .iter()
            .zip(&after)
            .enumerate()
            .filter(|(_, (b, a))| a != b)
            .map(|(server, (b, a))| (server, a - b))
            .collect();
        assert_eq!(moved.len(), 1, "entity {id}: lookups by server {moved:?}");
        assert_eq!(moved[0].1, 2, "entity {id}: the entry and its generation");
        homes.insert(moved[0].0);
    }
    assert!(
        homes.len() > 1,
        "entities spread over the servers: {homes:?}"
    );
    assert!(
        cache.local_stats().remote_hits >= 24,
        "{:?}",
        cache.local_stats()
    );
}

/// Another process's flush reaches this one's reads within the global
/// generation's max age, and at once with a max age of zero.
#[test]
fn another_process_sees_a_flush_within_the_global_generation_max_age() {
    const MAX_AGE: Duration = Duration::from_millis(300);
    let server = Server::local().unwrap();
    let flusher = EntityCache::builder(client(&server)).build().unwrap();
    for (max_age, at_once) in [(MAX_AGE, false), (Duration::ZERO, true)] {
        let reader = EntityCache::builder(client(&server))
            .global_generation_max_age(max_age)
            .build()
            .unwrap();
        let source = Arc::new(AtomicU64::new(1));
        let name = format!("Flush{}", max_age.as_millis());
        let read = plain_reader(&reader, &name, &source);
        assert_eq!((read(1), read(1)), (1, 1));
        source.store(2, Ordering::SeqCst);
        flusher.flush_all(Duration::ZERO).unwrap();
        let flushed = Instant::now();
        if at_once {
            assert_eq!(read(1), 2, "a max age of zero reads the global generation");
            continue;
        }
        while read(1) == 1 {
            assert!(
                flushed.elapsed() < MAX_AGE + Duration::from_millis(100),
                "the old entry outlived the max age: {:?}",
                flushed.elapsed()
            );
        }
        assert_eq!(read(1), 2);
    }
}

/// A layer whose one use case runs with remote ramp `percent` %, and the
/// count of its function's calls.
fn ramped(
    server: &Server,
    percent: u8,
) -> (
    Arc<Counted>,
    impl Fn() -> u64,
    Arc<AtomicU64>,
    EntityCache<Arc<Counted>>,
) {
    let store = Counted::new(client(server));
    let cache = EntityCache::builder(Arc::clone(&store))
        .config(move |_: &UseCaseInfo<'_>| {
            Some(
                UseCaseConfig::default()
                    .with_remote(LayerConfig::new(REMOTE_TTL).ramp_percent(percent)),
            )
        })
        .build()
        .unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&runs);
    let use_case = cache.use_case_named("Ramped", "item", move |id: &u64, _: &()| {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Infallible>(*id)
    });
    let call = move || enabled(|| use_case.get(&5, &()).unwrap());
    (store, call, runs, cache)
}

#[test]
fn a_zero_ramp_never_touches_the_layer_and_a_full_one_always_does() {
    let server = Server::local().unwrap();
    let (store, call, runs, cache) = ramped(&server, 0);
    for _ in 0..200 {
        assert_eq!(call(), 5);
    }
    assert_eq!(store.calls(), 0);
    assert_eq!(runs.load(Ordering::SeqCst), 200);
    assert_eq!(cache.local_stats().disabled_ramp, 200);

    let (store, call, runs, cache) = ramped(&server, 100);
    for _ in 0..200 {
        assert_eq!(call(), 5);
    }
    let stats = cache.local_stats();
    assert_eq!(stats.disabled(), 0);
    assert_eq!(stats.remote_hits + stats.misses, 200, "{stats:?}");
    // One MultiGet per call, plus the first miss's generations and write.
    assert!(store.calls() >= 200, "{} calls", store.calls());
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one miss, then hits");
    assert_eq!(stats.misses, 1);
}

#[test]
fn a_thirty_percent_ramp_stays_within_bounds_tight_enough_to_fail_at_twenty_nine_or_thirty_one() {
    const CALLS: u64 = 1_000_000;
    let server = Server::local().unwrap();
    // Both layers ramped to 30 %, the local one in front with a TTL longer
    // than the test: a call in the ramp is a local hit after the first
    // (microseconds, no network), so a million calls take a few
    // seconds. Either layer drawn at 31 % would show: a call in one
    // layer's ramp uses that layer.
    let store = Counted::new(client(&server));
    let cache = EntityCache::builder(Arc::clone(&store))
        .config(|_: &UseCaseInfo<'_>| {
            Some(
                UseCaseConfig::default()
                    .with_remote(LayerConfig::new(REMOTE_TTL).ramp_percent(30))
                    .with_local(LayerConfig::new(REMOTE_TTL).ramp_percent(30)),
            )
        })
        .build()
        .unwrap();
    let use_case = cache.use_case_named("Ramped", "item", |id: &u64, _: &()| {
        Ok::<_, Infallible>(*id)
    });
    let _scope = enable();
    for _ in 0..CALLS {
        assert_eq!(use_case.get(&5, &()).unwrap(), 5);
    }
    let stats = cache.local_stats();
    let used = stats.local_hits + stats.remote_hits + stats.misses;
    assert_eq!(used + stats.disabled_ramp, CALLS, "{stats:?}");
    assert!(
        stats.local_hits > used / 2,
        "in the ramp, calls stay local: {stats:?}"
    );
    // Binomial(1 000 000, p). At p = 0.30: mean 300 000, standard
    // deviation sqrt(1 000 000 * 0.3 * 0.7) = 458.3; the bounds, 300 000
    // +- 5 000, are 10.9 of them away, so a correct ramp never fails by
    // chance (odds below 1e-26). At p = 0.31: mean 310 000, deviation
    // 462.5, the upper bound 10.8 deviations below it; at p = 0.29: mean
    // 290 000, deviation 453.8, the lower bound 11.0 above it: a ramp
    // drawn one point off fails, every time.
    assert!(
        (295_000..=305_000).contains(&used),
        "{used} of {CALLS} calls used the layers: {stats:?}"
    );
}

#[test]
fn outside_a_scope_or_when_disabled_calls_go_straight_to_the_function() {
    let server = Server::local().unwrap();
    let store = Counted::new(client(&server));
    let cache = EntityCache::builder(Arc::clone(&store))
        .config(|info: &UseCaseInfo<'_>| (info.name != "Off").then(UseCaseConfig::default))
        .build()
        .unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let make = |name: &str| {
        let runs = Arc::clone(&runs);
        cache.use_case_named(name, "item", move |id: &u64, _: &()| {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(*id)
        })
    };
    let (on, off) = (make("On"), make("Off"));
    for _ in 0..3 {
        assert_eq!(on.get(&1, &()).unwrap(), 1);
    }
    assert_eq!(on.local_stats().disabled_scope, 3);
    assert_eq!(store.calls(), 0, "outside a scope the layer is not touched");
    // A forgotten `enable()` shows where a developer looks first.
    let shown = format!("{cache:?}");
    assert!(shown.contains("calls_outside_enabled_scope: 3"), "{shown}");
    let _scope = enable();
    for _ in 0..3 {
        assert_eq!(off.get(&1, &()).unwrap(), 1);
    }
    assert_eq!(off.local_stats().disabled_config, 3);
    assert_eq!(store.calls(), 0);
    assert_eq!(runs.load(Ordering::SeqCst), 6);
    assert_eq!(on.get(&1, &()).unwrap(), 1);
    assert_eq!(on.get(&1, &()).unwrap(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 7, "inside the scope it caches");
}

#[test]
fn a_dead_store_fails_open_and_counts_errors() {
    let down = Client::builder("127.0.0.1:1")
        .max_retries(0)
        .build()
        .unwrap();
    let cache = EntityCache::builder(down).build().unwrap();
    let echo = cache.use_case_named("Echo", "item", |id: &u64, _: &()| Ok::<_, Infallible>(*id));
    let _scope = enable();
    assert_eq!(echo.get(&9, &()).unwrap(), 9);
    let stats = echo.local_stats();
    assert_eq!((stats.errors, stats.misses), (1, 1), "{stats:?}");
    assert!(cache.invalidate("item", &9, Duration::ZERO).is_err());
}

#[test]
fn flush_all_makes_every_entry_stale() {
    let server = Server::local().unwrap();
    let cache = EntityCache::builder(client(&server)).build().unwrap();
    let source = Arc::new(AtomicU64::new(1));
    let read = plain_reader(&cache, "Flushed", &source);
    assert_eq!((read(1), read(2)), (1, 1));
    source.store(2, Ordering::SeqCst);
    assert_eq!((read(1), read(2)), (1, 1), "cached");
    cache.flush_all(Duration::ZERO).unwrap();
    assert_eq!((read(1), read(2)), (2, 2));
}

type Seen = HashMap<(String, Vec<(String, String)>), DebugValue>;

#[test]
fn a_recorder_sees_every_documented_metric_move() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let server = Server::local().unwrap();
    let store = client(&server);
    let down = Client::builder("127.0.0.1:1")
        .max_retries(0)
        .build()
        .unwrap();
    // The handles are registered when the use cases are made: with this
    // test's recorder, whatever the other tests of this binary do.
    let (cache, use_cases, broken) = metrics::with_local_recorder(&recorder, || {
        let cache = EntityCache::builder(store)
            .metrics_prefix("prod")
            .config(|info: &UseCaseInfo<'_>| match info.name {
                "Off" => None,
                "Never" => Some(
                    UseCaseConfig::default()
                        .with_remote(LayerConfig::new(REMOTE_TTL).ramp_percent(0)),
                ),
                _ => Some(
                    UseCaseConfig::remote(REMOTE_TTL)
                        .with_local(LayerConfig::new(Duration::from_secs(60))),
                ),
            })
            .build()
            .unwrap();
        let use_cases: Vec<_> = ["Profile", "Off", "Never"]
            .into_iter()
            .map(|name| {
                cache.use_case_named(name, "user_id", |id: &u64, _: &()| {
                    Ok::<_, Infallible>(format!("user {id}"))
                })
            })
            .collect();
        let broken = EntityCache::builder(down)
            .metrics_prefix("prod")
            .build()
            .unwrap()
            .use_case_named("Broken", "user_id", |id: &u64, _: &()| {
                Ok::<_, Infallible>(*id)
            });
        (cache, use_cases, broken)
    });
    let profile = &use_cases[0];
    profile.get(&12345, &()).unwrap(); // disabled: scope
    {
        let _scope = enable();
        profile.get(&12345, &()).unwrap(); // miss
        profile.get(&12345, &()).unwrap(); // local hit
        use_cases[1].get(&12345, &()).unwrap(); // disabled: config
        use_cases[2].get(&12345, &()).unwrap(); // disabled: ramp
        broken.get(&12345, &()).unwrap(); // error, failed open
    }
    metrics::with_local_recorder(&recorder, || {
        cache.invalidate("user_id", &12345, Duration::ZERO).unwrap();
        cache.flush_all(Duration::ZERO).unwrap();
    });
    {
        // A second layer reads the entry from the remote layer.
        let _scope = enable();
        profile.get(&12345, &()).unwrap(); // miss again: invalidated
    }
    let second = metrics::with_local_recorder(&recorder, || {
        EntityCache::builder(client(&server))
            .metrics_prefix("prod")
            .build()
            .unwrap()
            .use_case_named("Profile", "user_id", |id: &u64, _: &()| {
                Ok::<_, Infallible>(format!("user {id}"))
            })
    });
    enabled(|| second.get(&12345, &()).unwrap()); // remote hit

    let seen: Seen = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), value)
        })
        .collect();
    let labels = |use_case: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![
            ("key_type".to_owned(), "user_id".to_owned()),
            ("use_case".to_owned(), use_case.to_owned()),
        ];
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        labels.sort();
        labels
    };
    let counter =
        |name: &str, labels: Vec<(String, String)>| match seen.get(&(name.to_owned(), labels)) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            other => panic!("{name}: {other:?}"),
        };
    let samples =
        |name: &str, labels: Vec<(String, String)>| match seen.get(&(name.to_owned(), labels)) {
            Some(DebugValue::Histogram(samples)) => samples.len(),
            other => panic!("{name}: {other:?}"),
        };
    let profile_labels = || labels("Profile", &[]);
    // Two layers' Profile use cases share their labels: 5 requests in all.
    assert_eq!(counter("prod_cache_requests_total", profile_labels()), 5);
    assert_eq!(counter("prod_cache_misses_total", profile_labels()), 2);
    assert_eq!(counter("prod_cache_local_hits_total", profile_labels()), 1);
    assert_eq!(counter("prod_cache_remote_hits_total", profile_labels()), 1);
    for (use_case, reason) in [("Profile", "scope"), ("Off", "config"), ("Never", "ramp")] {
        assert_eq!(
            counter(
                "prod_cache_disabled_total",
                labels(use_case, &[("reason", reason)])
            ),
            1,
            "{use_case}"
        );
    }
    assert_eq!(counter("prod_cache_errors_total", labels("Broken", &[])), 1);
    assert_eq!(counter("prod_cache_errors_total", profile_labels()), 0);
    assert_eq!(
        counter(
            "prod_cache_invalidations_total",
            vec![("key_type".to_owned(), "user_id".to_owned())]
        ),
        1
    );
    assert_eq!(counter("prod_cache_flushes_total", vec![]), 1);
    assert_eq!(
        samples("prod_cache_get_duration_seconds", profile_labels()),
        5
    );
    // Three runs: outside the scope and two misses; hits run nothing.
    assert_eq!(
        samples("prod_cache_function_duration_seconds", profile_labels()),
        3
    );
    // Encodes of two misses, decodes of one local and one remote hit.
    assert_eq!(
        samples(
            "prod_cache_serialization_duration_seconds",
            profile_labels()
        ),
        4
    );
    assert_eq!(samples("prod_cache_value_bytes", profile_labels()), 4);
    // Labels are bounded: never an id. (The raw client's own metrics,
    // emitted by invalidate, have theirs checked in tests/telemetry.rs.)
    for ((name, labels), _) in seen
        .iter()
        .filter(|((name, _), _)| name.starts_with("prod_cache"))
    {
        for (key, value) in labels {
            assert!(
                ["use_case", "key_type", "reason"].contains(&key.as_str()),
                "{name}: label {key}"
            );
            assert!(!value.contains("12345"), "{name}: {key}={value}");
        }
    }
}

/// Makes the error a store answers with.
type Refusal = fn() -> tiny_cache_client::Error;

/// A metric series: kind, name and sorted labels.
type Series = (String, String, Vec<(String, String)>);

/// The client, with every `Set` refused with `refusal` while reads and the
/// generations' `SetIfAbsent` reach the server: a store whose get works but
/// whose write of an entry fails.
struct RefusedSets {
    client: Client,
    refusal: Refusal,
    refused: AtomicU64,
}

impl RefusedSets {
    fn new(client: Client, refusal: Refusal) -> Arc<RefusedSets> {
        Arc::new(RefusedSets {
            client,
            refusal,
            refused: AtomicU64::new(0),
        })
    }
    fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

impl CacheStore for RefusedSets {
    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        CacheStore::get(&self.client, key)
    }
    fn set_with_ttl(&self, _: &str, _: &[u8], _: Ttl) -> Result<()> {
        self.refused.fetch_add(1, Ordering::SeqCst);
        Err((self.refusal)())
    }
    fn delete(&self, key: &str) -> Result<()> {
        CacheStore::delete(&self.client, key)
    }
    fn get_many(&self, keys: &[&str]) -> Result<Vec<ItemResult<Option<Bytes>>>> {
        CacheStore::get_many(&self.client, keys)
    }
    fn set_if_absent_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<bool> {
        CacheStore::set_if_absent_with_ttl(&self.client, key, value, ttl)
    }
}

#[test]
fn when_only_the_entry_write_fails_the_use_case_answers_and_counts_an_error() {
    use tiny_cache_client::Error;
    let server = Server::local().unwrap();
    let outages: [(&str, Refusal); 2] = [
        ("unavailable", || {
            Error::Unavailable("write path down".into())
        }),
        ("resource exhausted", || {
            Error::ResourceExhausted("no room for the entry".into())
        }),
    ];
    for (outage, refusal) in outages {
        let store = RefusedSets::new(client(&server), refusal);
        let cache = EntityCache::builder(Arc::clone(&store)).build().unwrap();
        let runs = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&runs);
        let double = cache.use_case_named(outage, "item", move |id: &u64, _: &()| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(id * 2)
        });
        let _scope = enable();
        for round in 1..=2 {
            assert_eq!(double.get(&21, &()).unwrap(), 42, "{outage}");
            let stats = double.local_stats();
            assert_eq!(stats.misses, round, "{outage}: {stats:?}");
            assert_eq!(stats.errors, round, "{outage}: the failed write counts");
            assert_eq!(store.refused(), round, "{outage}");
            // Nothing was stored: the next call computes again.
            assert_eq!(runs.load(Ordering::SeqCst), round, "{outage}");
        }
    }

    // The same from a real server that refuses entries over 64 bytes with
    // RESOURCE_EXHAUSTED: generations fit, the entry does not.
    let limited = Server::builder()
        .max_value_bytes(64 + tiny_cache_client::server::ENTRY_OVERHEAD_BYTES)
        .start()
        .unwrap();
    let cache = EntityCache::builder(client(&limited)).build().unwrap();
    let long = cache.use_case_named("Long", "item", |id: &u64, _: &()| {
        Ok::<_, Infallible>(format!("{id}").repeat(500))
    });
    let _scope = enable();
    assert_eq!(long.get(&7, &()).unwrap(), "7".repeat(500));
    let stats = long.local_stats();
    assert_eq!((stats.misses, stats.errors), (1, 1), "{stats:?}");
    assert_eq!(cache.store().stats().unwrap().rejected_oversize, 1);
}

/// Every series a recorder has seen: kind, name and sorted labels.
fn series(
    snapshotter: &metrics_util::debugging::Snapshotter,
) -> std::collections::BTreeSet<Series> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, _)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            (format!("{kind:?}"), key.name().to_owned(), labels)
        })
        .collect()
}

#[test]
fn ten_thousand_distinct_keys_and_entity_ids_add_no_metric_series() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let server = Server::local().unwrap();
    // Everything on this thread, where the calls record their metrics.
    metrics::with_local_recorder(&recorder, || {
        let client = Client::builder(&server.address())
            .timeout(Duration::from_secs(10))
            .metrics_prefix("card")
            .build()
            .unwrap();
        let cache = EntityCache::builder(client.clone())
            .metrics_prefix("card")
            .config(|_: &UseCaseInfo<'_>| {
                Some(
                    UseCaseConfig::remote(REMOTE_TTL)
                        .with_local(LayerConfig::new(Duration::from_secs(60))),
                )
            })
            .build()
            .unwrap();
        let double = cache.use_case_named("Double", "user_id", |id: &u64, _: &()| {
            Ok::<_, Infallible>(id * 2)
        });
        let _scope = enable();
        // Each call with a key or an id no other call used: a Set and a Get
        // of the raw client, a use case's miss (MultiGet, SetIfAbsent of the
        // generation, Set of the entry), an invalidation.
        let call = |i: u64| match i % 4 {
            0 => client.set(&format!("user:{i}"), "v").unwrap(),
            1 => assert_eq!(client.get(&format!("user:{i}")).unwrap(), None),
            2 => assert_eq!(double.get(&i, &()).unwrap(), i * 2),
            _ => cache.invalidate("user_id", &i, Duration::ZERO).unwrap(),
        };
        for i in 0..100 {
            call(i);
        }
        let first = series(&snapshotter);
        for i in 100..10_100 {
            call(i);
        }
        let after = series(&snapshotter);
        assert_eq!(
            after.len(),
            first.len(),
            "new series: {:?}",
            after.difference(&first).collect::<Vec<_>>()
        );
        assert_eq!(after, first);
        // The calls were recorded here: client and use-case series alike.
        for name in [
            "card_calls_total",
            "card_cache_requests_total",
            "card_cache_invalidations_total",
        ] {
            assert!(
                first.iter().any(|(_, n, _)| n == name),
                "{name} missing: {first:?}"
            );
        }
        assert!(
            first.iter().any(|(_, n, labels)| n == "card_calls_total"
                && labels.contains(&("method".to_owned(), "SetIfAbsent".to_owned()))),
            "a miss of a new entity creates its generation: {first:?}"
        );
    });
    // The keys and ids were distinct on the server too: each left at least
    // one entry (a raw Set's key, a miss's entry, an entity's generation).
    let entries = client(&server).stats().unwrap().size;
    assert!(entries >= 7_575, "{entries} entries");
}
