//! Fresh without a stampede, against the embedded server over loopback:
//! TTL jitter spreads entries written together, a loader's "not found" is
//! remembered for its own TTL, and early expiry has one reader recompute
//! an entry before it expires while the others keep reading it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tiny_cache_client::cache::ReadThrough;
use tiny_cache_client::server::Server;
use tiny_cache_client::Client;

/// The TTL, in seconds, that an enveloped entry was written with (bytes
/// 15 to 19 of the documented header).
fn written_ttl(raw: &[u8]) -> u32 {
    assert_eq!(&raw[..2], &[0xF7, 0x01], "an enveloped entry");
    u32::from_be_bytes([raw[15], raw[16], raw[17], raw[18]])
}

#[test]
fn jitter_spreads_the_ttls_of_entries_filled_together() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    // Early expiry on, so each entry records the TTL it was written with.
    let cache = ReadThrough::builder(client.clone())
        .ttl_jitter(0.2)
        .early_expiry(1.0)
        .build();
    let ttl = Duration::from_secs(1000);
    let mut ttls = Vec::new();
    for i in 0..200 {
        let key = format!("filled-together-{i}");
        cache.get_with(&key, ttl, || "v").unwrap();
        let raw = client.get(&key).unwrap().expect("stored");
        ttls.push(written_ttl(&raw));
    }
    assert!(ttls.iter().all(|&t| (800..=1200).contains(&t)), "{ttls:?}");
    let (low, high) = (ttls.iter().min().unwrap(), ttls.iter().max().unwrap());
    assert!(high - low > 200, "spread only from {low} to {high}");

    // Without jitter every entry keeps the TTL it was given.
    let steady = ReadThrough::builder(client.clone())
        .early_expiry(1.0)
        .build();
    steady.get_with("steady", ttl, || "v").unwrap();
    assert_eq!(written_ttl(&client.get("steady").unwrap().unwrap()), 1000);
}

#[test]
fn a_loaders_not_found_is_remembered_for_its_own_ttl() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let lookups = AtomicUsize::new(0);
    let find = || {
        lookups.fetch_add(1, Ordering::SeqCst);
        Ok::<Option<&str>, std::io::Error>(None)
    };
    let ttl = Duration::from_secs(600);

    let remembering = ReadThrough::builder(client.clone())
        .cache_misses_for(Duration::from_secs(1))
        .build();
    for _ in 0..5 {
        assert_eq!(remembering.get_or_load("row:404", ttl, find).unwrap(), None);
    }
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        1,
        "one lookup, then the marker"
    );
    // The marker is no value: a plain read of the layer sees nothing.
    assert_eq!(remembering.get("row:404").unwrap(), None);
    // It lives for its own TTL, then the row is looked up again.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(remembering.get_or_load("row:404", ttl, find).unwrap(), None);
    assert_eq!(lookups.load(Ordering::SeqCst), 2);

    // A value found later is stored and read as usual.
    let found = remembering
        .get_or_load("row:7", ttl, || Ok::<_, std::io::Error>(Some("seven")))
        .unwrap();
    assert_eq!(found.as_deref(), Some(&b"seven"[..]));
    assert_eq!(
        remembering.get("row:7").unwrap().as_deref(),
        Some(&b"seven"[..])
    );

    // Without negative caching every read looks the row up again.
    let forgetting = ReadThrough::new(client);
    lookups.store(0, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(forgetting.get_or_load("row:405", ttl, find).unwrap(), None);
    }
    assert_eq!(lookups.load(Ordering::SeqCst), 3);
}

#[test]
fn early_expiry_recomputes_before_the_entry_expires() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let loads = AtomicUsize::new(0);
    let slow_load = || {
        loads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        "value"
    };
    let ttl = Duration::from_secs(3);

    // A large beta: with 50 ms of compute, a reader a second before expiry
    // recomputes with a probability of about 1 - e^-(1000/5000) per read.
    let early = ReadThrough::builder(client.clone())
        .early_expiry(100.0)
        .build();
    early.get_with("hot", ttl, slow_load).unwrap();
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(2000));
    for _ in 0..20 {
        let value = early.get_with("hot", ttl, slow_load).unwrap();
        assert_eq!(&value[..], b"value", "every reader gets a value");
    }
    assert!(
        loads.load(Ordering::SeqCst) >= 2,
        "no reader recomputed before the entry expired"
    );

    // Off, nobody recomputes while the entry lives.
    let plain = ReadThrough::new(client);
    loads.store(0, Ordering::SeqCst);
    plain.get_with("steady", ttl, slow_load).unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    for _ in 0..20 {
        plain.get_with("steady", ttl, slow_load).unwrap();
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[test]
fn entries_written_before_the_envelope_still_read_as_values() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    client.set("old", "written plainly").unwrap();
    let cache = ReadThrough::builder(client)
        .early_expiry(1.0)
        .cache_misses_for(Duration::from_secs(5))
        .build();
    assert_eq!(
        cache.get("old").unwrap().as_deref(),
        Some(&b"written plainly"[..])
    );
    let value = cache
        .get_with("old", Duration::from_secs(60), || "recomputed")
        .unwrap();
    assert_eq!(&value[..], b"written plainly");
}

#[test]
fn refresh_ahead_serves_the_old_value_at_once_and_refreshes_once() {
    use std::sync::Arc;
    use std::time::Instant;

    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let cache = ReadThrough::builder(client)
        .refresh_after(Duration::from_secs(1))
        .build();
    let loads = Arc::new(AtomicUsize::new(0));
    const LOADER_TAKES: Duration = Duration::from_millis(400);
    let loader = |loads: &Arc<AtomicUsize>| {
        let loads = Arc::clone(loads);
        move || {
            let generation = loads.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(LOADER_TAKES);
            format!("generation {generation}")
        }
    };
    let ttl = Duration::from_secs(60);
    let first = cache.get_with_refresh("hot", ttl, loader(&loads)).unwrap();
    assert_eq!(&first[..], b"generation 1");
    std::thread::sleep(Duration::from_millis(1100));

    // The entry is now older than refresh_after: reads keep getting it at
    // once while one refresh runs.
    let until = Instant::now() + Duration::from_millis(700);
    let mut slowest = Duration::ZERO;
    let mut seen = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let value = cache.get_with_refresh("hot", ttl, loader(&loads)).unwrap();
        slowest = slowest.max(started.elapsed());
        seen.push(value);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        slowest < LOADER_TAKES * 3 / 4,
        "a read waited for the loader: {slowest:?}"
    );
    assert_eq!(&seen[0][..], b"generation 1", "the old value, at once");
    assert_eq!(
        &seen.last().unwrap()[..],
        b"generation 2",
        "refreshed within a refresh's time"
    );
    assert_eq!(
        loads.load(Ordering::SeqCst),
        2,
        "one refresh for all those reads"
    );
    let stats = cache.local_stats();
    assert_eq!(
        (stats.refreshes, stats.refresh_failures),
        (1, 0),
        "{stats:?}"
    );
}

#[test]
fn a_failed_refresh_keeps_the_old_value_and_a_full_queue_skips() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let cache = ReadThrough::builder(client)
        .refresh_after(Duration::from_secs(1))
        .refresh_pool(1, 1)
        .build();
    let ttl = Duration::from_secs(60);
    for i in 0..6 {
        cache
            .get_with_refresh(&format!("k{i}"), ttl, move || format!("v{i}"))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100));

    // A refresh that fails: the old value stays.
    let failing = || Err::<&str, _>(std::io::Error::other("the database is down"));
    let value = cache.try_get_with_refresh("k0", ttl, failing).unwrap();
    assert_eq!(&value[..], b"v0");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cache.local_stats().refresh_failures == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(cache.local_stats().refresh_failures, 1);
    assert_eq!(cache.get("k0").unwrap().as_deref(), Some(&b"v0"[..]));

    // One thread, one queue place: slow refreshes of five keys at once
    // leave some skipped, and no reader waits.
    for i in 1..6 {
        let started = std::time::Instant::now();
        let value = cache
            .get_with_refresh(&format!("k{i}"), ttl, move || {
                std::thread::sleep(Duration::from_millis(300));
                format!("new v{i}")
            })
            .unwrap();
        assert_eq!(value, format!("v{i}").as_bytes());
        assert!(started.elapsed() < Duration::from_millis(250));
    }
    assert!(
        cache.local_stats().refreshes_skipped >= 1,
        "{:?}",
        cache.local_stats()
    );
}

// ----- one fill per key across processes (leases) ----------------------------

/// Set in the environment of the processes the fleet test starts.
const FLEET_SERVER: &str = "TINY_CACHE_FLEET_SERVER";
const FLEET_RUNS: &str = "TINY_CACHE_FLEET_RUNS";
const FLEET_LEASES: &str = "TINY_CACHE_FLEET_LEASES";
const FLEET_SECONDS: f64 = 3.0;
const FLEET_PROCESSES: usize = 8;
const FLEET_THREADS: usize = 16;
/// The hot key's TTL: it expires about three times during a run.
const HOT_TTL: Duration = Duration::from_secs(1);
const READ_DEADLINE: Duration = Duration::from_secs(5);

/// Not a test of its own: the work of one process of the fleet, when the
/// fleet test starts this binary with `FLEET_SERVER` set (it does nothing
/// otherwise). 16 threads read the hot key for three seconds; the loader
/// appends a line to the runs file. Exits non-zero if a read failed or
/// took longer than its deadline.
#[test]
fn fleet_process() {
    let Ok(server) = std::env::var(FLEET_SERVER) else {
        return;
    };
    let runs = std::env::var(FLEET_RUNS).expect("the runs file");
    let leases = std::env::var(FLEET_LEASES).is_ok_and(|v| v == "1");
    let cache = ReadThrough::builder(Client::new(&server).unwrap())
        .leases(leases)
        .wait_timeout(READ_DEADLINE)
        .build();
    let until = std::time::Instant::now() + Duration::from_secs_f64(FLEET_SECONDS);
    std::thread::scope(|scope| {
        for _ in 0..FLEET_THREADS {
            scope.spawn(|| {
                while std::time::Instant::now() < until {
                    let started = std::time::Instant::now();
                    let value = cache.get_with("hot", HOT_TTL, || {
                        use std::io::Write;
                        let mut file = std::fs::OpenOptions::new()
                            .append(true)
                            .create(true)
                            .open(&runs)
                            .expect("the runs file");
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default();
                        let _ = writeln!(file, "{}", now.as_millis());
                        std::thread::sleep(Duration::from_millis(100));
                        "hot value"
                    });
                    assert_eq!(&value.expect("every read gets a value")[..], b"hot value");
                    assert!(started.elapsed() < READ_DEADLINE + Duration::from_secs(1));
                }
            });
        }
    });
}

/// Runs the fleet against `server`; when the loader ran, in ms since the
/// epoch, across every process, in order.
fn fleet(server: &Server, leases: bool, runs: &std::path::Path) -> Vec<u128> {
    let _ = std::fs::remove_file(runs);
    let children: Vec<_> = (0..FLEET_PROCESSES)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["fleet_process", "--exact", "--test-threads", "1"])
                .env(FLEET_SERVER, server.address())
                .env(FLEET_RUNS, runs)
                .env(FLEET_LEASES, if leases { "1" } else { "0" })
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("start a fleet process")
        })
        .collect();
    for mut child in children {
        assert!(
            child.wait().unwrap().success(),
            "a fleet process failed a read"
        );
    }
    let mut times: Vec<u128> = std::fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.parse().ok())
        .collect();
    times.sort_unstable();
    times
}

#[test]
fn eight_processes_fill_an_expiring_hot_key_once_per_expiry_with_leases() {
    let server = Server::local().unwrap();
    let runs = std::env::temp_dir().join(format!("tiny-cache-fleet-{}", std::process::id()));
    let without = fleet(&server, false, &runs);
    Client::new(&server.address())
        .unwrap()
        .delete("hot")
        .unwrap();
    let with = fleet(&server, true, &runs);
    let _ = std::fs::remove_file(&runs);
    println!(
        "{FLEET_PROCESSES} processes x {FLEET_THREADS} threads, {FLEET_SECONDS} s each, a hot \
         key living {HOT_TTL:?}: the loader ran {} times without leases, {} with",
        without.len(),
        with.len()
    );
    assert!(!with.is_empty());
    // One fill per expiry: a fill lives a TTL, so two fills of the fleet
    // are a TTL apart (less the 100 ms a load takes and clock noise).
    // Without leases every process fills each expiry within moments.
    let gaps = |times: &[u128]| times.windows(2).map(|w| w[1] - w[0]).min();
    let closest = gaps(&with).unwrap_or(u128::MAX);
    assert!(closest >= 700, "two fills {closest} ms apart: {with:?}");
    println!(
        "closest fills: {closest} ms with leases, {:?} ms without",
        gaps(&without)
    );
}

#[test]
fn a_delete_voids_the_lease_of_a_fill_under_way_and_a_dead_holders_lease_expires() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let cache = ReadThrough::builder(client.clone())
        .lease_ttl(Duration::from_secs(1))
        .wait_timeout(Duration::from_secs(5))
        .build();
    let ttl = Duration::from_secs(60);

    // A fill begins, then the key is deleted: the fill must not land.
    let (started, loading) = crossbeam_channel::bounded::<()>(0);
    let (release, hold) = crossbeam_channel::bounded::<()>(0);
    std::thread::scope(|scope| {
        let filler = scope.spawn(|| {
            cache.get_with("row", ttl, || {
                started.send(()).unwrap();
                hold.recv().unwrap();
                "read before the delete"
            })
        });
        loading.recv().unwrap();
        cache.delete("row").unwrap();
        release.send(()).unwrap();
        let value = filler.join().unwrap().unwrap();
        assert_eq!(
            &value[..],
            b"read before the delete",
            "its caller still gets it"
        );
    });
    assert_eq!(
        client.get("row").unwrap(),
        None,
        "the voided fill was not stored"
    );

    // A holder that died left its lease: the next reader waits for it to
    // expire, then takes it and fills the key.
    client
        .set_if_absent_with_ttl("lease:{orphan}", "a dead process", Duration::from_secs(1))
        .unwrap();
    let begun = std::time::Instant::now();
    let value = cache
        .get_with("orphan", ttl, || "filled after the lease expired")
        .unwrap();
    assert_eq!(&value[..], b"filled after the lease expired");
    let waited = begun.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "it did not wait for the lease: {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}

/// What a near cache's listener was told, in order.
#[cfg(feature = "near-cache")]
type Told =
    std::sync::Arc<std::sync::Mutex<Vec<(String, tiny_cache_client::cache::EvictionCause)>>>;

/// A near cache over a fresh server holding `a`, `b` and `c`, local TTL
/// 200 ms, bounded by `bound`, whose listener records what it is told.
#[cfg(feature = "near-cache")]
fn listened_near_cache(
    bound: impl FnOnce(
        tiny_cache_client::cache::NearCacheBuilder<Client>,
    ) -> tiny_cache_client::cache::NearCacheBuilder<Client>,
) -> (Server, tiny_cache_client::cache::NearCache<Client>, Told) {
    use std::sync::{Arc, Mutex};
    use tiny_cache_client::cache::NearCache;

    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    for key in ["a", "b", "c"] {
        client.set(key, "v").unwrap();
    }
    let told: Arc<Mutex<Vec<_>>> = Arc::default();
    let listener = Arc::clone(&told);
    let near = bound(NearCache::builder(client))
        .local_ttl(Duration::from_millis(200))
        .on_evicted(move |key, cause| listener.lock().unwrap().push((key.to_owned(), cause)))
        .build();
    (server, near, told)
}

#[cfg(feature = "near-cache")]
#[test]
fn the_near_cache_tells_its_listener_why_each_copy_went() {
    use tiny_cache_client::cache::{EvictionCause, NearPolicy};

    let (_server, near, told) =
        listened_near_cache(|builder| builder.max_entries(2).policy(NearPolicy::Lru));
    // Three reads keep three copies in a layer of two: one makes room.
    for key in ["a", "b", "c"] {
        near.get(key).unwrap();
    }
    assert_eq!(near.local_stats().evictions, 1, "counted when read");
    near.delete("c").unwrap();
    // The others expire (moka removes expired copies in its housekeeping,
    // within about a second; the counters read run it).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let causes = loop {
        let stats = near.local_stats();
        let causes: Vec<EvictionCause> = told.lock().unwrap().iter().map(|(_, c)| *c).collect();
        if (stats.expirations >= 1 && causes.contains(&EvictionCause::Expired))
            || std::time::Instant::now() > deadline
        {
            break causes;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(causes.contains(&EvictionCause::Size), "{causes:?}");
    assert!(causes.contains(&EvictionCause::Invalidated), "{causes:?}");
    assert!(causes.contains(&EvictionCause::Expired), "{causes:?}");
}

/// The near cache's counters are exact when read: a copy past its local
/// TTL is counted expired, and no longer held, at once, not when moka's
/// timers (about a second apart) drop it; each is counted once, and the
/// listener hears of each as expired.
#[cfg(feature = "near-cache")]
#[test]
fn near_cache_counts_an_expiry_when_it_happens_and_once() {
    use tiny_cache_client::cache::EvictionCause;

    let (_server, near, told) = listened_near_cache(|builder| builder.max_bytes(1 << 20));
    for key in ["a", "b", "c"] {
        near.get(key).unwrap();
    }
    assert_eq!(near.local_entries(), 3);
    assert!(near.local_weight() > 3, "bytes: {}", near.local_weight());
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(near.local_entries(), 0, "past its TTL, no copy is held");
    assert_eq!(near.local_weight(), 0);
    assert_eq!(
        near.local_stats().expirations,
        3,
        "{:?}",
        near.local_stats()
    );
    // An expired copy overwritten is still one expiry, not a replacement
    // on top; the new copy expires in turn.
    near.get("a").unwrap();
    assert_eq!(near.local_entries(), 1);
    assert_eq!(near.local_stats().expirations, 3, "counted once");
    std::thread::sleep(Duration::from_millis(300));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while told.lock().unwrap().len() < 4 && std::time::Instant::now() < deadline {
        assert_eq!(near.local_stats().expirations, 4, "counted once");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(near.local_stats().expirations, 4);
    let mut causes = told.lock().unwrap().clone();
    causes.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        causes,
        ["a", "a", "b", "c"].map(|key| (key.to_owned(), EvictionCause::Expired))
    );
}

/// Dropping the near cache waits for its listener's thread to tell what
/// it was told: no thread outlives the layer.
#[cfg(feature = "near-cache")]
#[test]
fn dropping_the_near_cache_waits_for_its_listener() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tiny_cache_client::cache::NearCache;

    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    client.set("a", "v").unwrap();
    let heard = Arc::new(AtomicUsize::new(0));
    let listener = Arc::clone(&heard);
    let near = NearCache::builder(client)
        .on_evicted(move |_, _| {
            std::thread::sleep(Duration::from_millis(100));
            listener.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    near.get("a").unwrap();
    near.delete("a").unwrap();
    near.local_stats(); // moka's housekeeping tells the listener
    drop(near);
    assert_eq!(heard.load(Ordering::SeqCst), 1);
}

#[test]
fn a_reader_waiting_on_another_processs_lease_ends_at_its_wait_timeout() {
    use tiny_cache_client::cache::CacheError;

    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    // Another process holds the lease for longer than this reader waits.
    client
        .set_if_absent_with_ttl("lease:{busy}", "another process", Duration::from_secs(30))
        .unwrap();
    let cache = ReadThrough::builder(client)
        .leases(true)
        .wait_timeout(Duration::from_millis(300))
        .build();
    let started = std::time::Instant::now();
    let outcome = cache.get_with("busy", Duration::from_secs(60), || "not computed");
    let waited = started.elapsed();
    assert!(
        matches!(outcome, Err(CacheError::WaitTimeout { ref key, .. }) if key == "busy"),
        "{outcome:?}"
    );
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

/// On a cluster a key's lease lives with the key: `lease:{<key>}` shares
/// the key's hash tag, so the lease, the value and the compare-and-set
/// that ends the lease all go to the key's own server.
#[cfg(feature = "cluster")]
#[test]
fn on_a_cluster_a_keys_lease_lives_on_the_keys_server() {
    use std::sync::{Arc, Barrier};
    use tiny_cache_client::cluster::Cluster;

    let servers: Vec<Server> = (0..3).map(|_| Server::local().unwrap()).collect();
    let cluster = servers
        .iter()
        .fold(Cluster::builder(), |builder, server| {
            builder.server(&server.address())
        })
        .build()
        .unwrap();
    let cache = ReadThrough::builder(cluster.clone()).leases(true).build();
    let mut homes = std::collections::HashSet::new();
    for key in ["hot", "warm", "cold", "user:7", "c:{4:user7}x"] {
        let (loading, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let filler = {
            let (cache, loading, release) = (cache.clone(), loading.clone(), release.clone());
            std::thread::spawn(move || {
                cache.get_with(key, Duration::from_secs(60), || {
                    loading.wait();
                    release.wait();
                    "filled"
                })
            })
        };
        loading.wait(); // the lease is held while the loader runs
        let lease = tiny_cache_client::hash_tag(key);
        let lease_key = if lease.len() == key.len() {
            format!("lease:{{{key}}}")
        } else {
            format!("lease:={key}")
        };
        let holders: Vec<String> = servers
            .iter()
            .filter(|server| {
                let client = Client::new(&server.address()).unwrap();
                client.get(&lease_key).unwrap().is_some()
            })
            .map(Server::address)
            .collect();
        release.wait();
        assert_eq!(&filler.join().unwrap().unwrap()[..], b"filled");
        assert_eq!(holders, cluster.owners(key), "the lease of {key:?}");
        homes.insert(holders[0].clone());
    }
    assert!(homes.len() > 1, "keys spread over the servers: {homes:?}");
}

/// A loader that fails gives its lease back: another process fills the
/// key within the second a released lease lingers, not after the lease's
/// 30 s TTL (which would outlast its 5 s wait and fail it).
#[test]
fn a_failed_load_gives_its_lease_back() {
    use tiny_cache_client::cache::CacheError;

    let server = Server::local().unwrap();
    let layer = || {
        ReadThrough::builder(Client::new(&server.address()).unwrap())
            .lease_ttl(Duration::from_secs(30))
            .wait_timeout(Duration::from_secs(5))
            .build()
    };
    let (here, there) = (layer(), layer());
    let failed = here.try_get_with("flaky", Duration::from_secs(60), || {
        Err::<&str, _>("the database is away")
    });
    assert!(matches!(failed, Err(CacheError::Load(_))), "{failed:?}");
    let filled = there.get_with("flaky", Duration::from_secs(60), || "filled");
    assert_eq!(&filled.unwrap()[..], b"filled");
}

/// With leases, one process refreshes a key: a process that finds the
/// key's lease held by another skips its refresh (counted), and refreshes
/// once the lease is gone.
#[test]
fn with_leases_a_refresh_is_left_to_the_lease_holder() {
    use std::sync::Arc;

    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let cache = ReadThrough::builder(client.clone())
        .refresh_after(Duration::from_millis(100))
        .leases(true)
        .build();
    let ttl = Duration::from_secs(60);
    let loads = Arc::new(AtomicUsize::new(0));
    let read = |cache: &ReadThrough<Client>| {
        let loads = Arc::clone(&loads);
        cache
            .get_with_refresh("rates", ttl, move || {
                loads.fetch_add(1, Ordering::SeqCst);
                "fresh"
            })
            .unwrap()
    };
    read(&cache);
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(150));
    // Another process is refreshing "rates": it holds the lease (taken
    // over the one the fill gave back).
    client.set("lease:{rates}", "another process").unwrap();
    read(&cache);
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while cache.local_stats().refreshes_skipped == 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(cache.local_stats().refreshes_skipped, 1);
    assert_eq!(loads.load(Ordering::SeqCst), 1, "left to the holder");
    client.delete("lease:{rates}").unwrap();
    read(&cache);
    while cache.local_stats().refreshes == 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(cache.local_stats().refreshes, 1);
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    // Given back: free for the next refresh at once.
    assert_eq!(
        client.get("lease:{rates}").unwrap().as_deref(),
        Some(&b"released"[..])
    );
}

/// A lease holder paused past its lease, while another process fills the
/// key and a writer deletes it, stores nothing when it resumes: the
/// newer state stands (the delete; or, without it, the other's fill).
#[test]
fn a_holder_paused_past_its_lease_never_overwrites_newer_state() {
    let server = Server::local().unwrap();
    let layer = || {
        ReadThrough::builder(Client::new(&server.address()).unwrap())
            .lease_ttl(Duration::from_secs(1))
            .wait_timeout(Duration::from_secs(5))
            .build()
    };
    let (paused, other) = (layer(), layer());
    let client = Client::new(&server.address()).unwrap();
    let ttl = Duration::from_secs(60);
    for delete in [true, false] {
        let key = format!("paused-{delete}");
        let (started, loading) = crossbeam_channel::bounded::<()>(0);
        let (resume, hold) = crossbeam_channel::bounded::<()>(0);
        std::thread::scope(|scope| {
            let holder = scope.spawn(|| {
                paused.get_with(&key, ttl, || {
                    started.send(()).unwrap();
                    hold.recv().unwrap();
                    "from the paused holder"
                })
            });
            loading.recv().unwrap();
            // Past the holder's lease: another process takes it and fills.
            std::thread::sleep(Duration::from_millis(1500));
            let filled = other.get_with(&key, ttl, || "from the other process");
            assert_eq!(&filled.unwrap()[..], b"from the other process");
            if delete {
                other.delete(&key).unwrap();
            }
            resume.send(()).unwrap();
            let value = holder.join().unwrap().unwrap();
            assert_eq!(
                &value[..],
                b"from the paused holder",
                "its caller still gets it"
            );
        });
        let stored = client.get(&key).unwrap();
        if delete {
            assert_eq!(stored, None, "the delete stands");
        } else {
            assert_eq!(stored.as_deref(), Some(&b"from the other process"[..]));
        }
    }
}

/// A cluster with R > 1 takes no conditional writes, so it has no leases:
/// reads with leases on still fill (single flight alone), and refreshes
/// still run.
#[cfg(feature = "cluster")]
#[test]
fn with_leases_over_a_replicated_cluster_fills_and_refreshes_without_them() {
    use tiny_cache_client::cluster::Cluster;

    let servers: Vec<Server> = (0..2).map(|_| Server::local().unwrap()).collect();
    let cluster = servers
        .iter()
        .fold(Cluster::builder(), |builder, server| {
            builder.server(&server.address())
        })
        .replicas(2)
        .build()
        .unwrap();
    let cache = ReadThrough::builder(cluster)
        .leases(true)
        .refresh_after(Duration::from_millis(100))
        .build();
    let ttl = Duration::from_secs(60);
    assert_eq!(
        &cache.get_with("row", ttl, || "filled").unwrap()[..],
        b"filled"
    );
    assert_eq!(
        &cache.get_with("row", ttl, || "again").unwrap()[..],
        b"filled"
    );
    cache.get_with_refresh("rates", ttl, || "first").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(
        &cache.get_with_refresh("rates", ttl, || "second").unwrap()[..],
        b"first"
    );
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while cache.local_stats().refreshes == 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        cache.local_stats().refreshes,
        1,
        "{:?}",
        cache.local_stats()
    );
    assert_eq!(
        &cache.get_with_refresh("rates", ttl, || "third").unwrap()[..],
        b"second"
    );
    assert_eq!(cache.local_stats().loads, 2, "{:?}", cache.local_stats());
}
