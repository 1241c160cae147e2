#![cfg(all(feature = "server", feature = "cluster"))]
//! Many servers over loopback: embedded servers killed and restarted on
//! the same port, a cluster that routes around them and takes them back.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tiny_cache_client::cluster::{Cluster, ClusterBuilder};
use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, Code, Error, Ttl, TOUCH_ATTEMPTS};

/// How late past its deadline a call may return on two busy cores.
const DEADLINE_SLACK: Duration = Duration::from_millis(750);
/// How long a test waits for an event (a server marked down or back)
/// before failing: far above what it takes, far below a hang.
const EVENT_WAIT: Duration = Duration::from_secs(15);
/// A TTL no test here outlasts.
const TTL_MINUTE: Duration = Duration::from_secs(60);

fn servers(n: usize) -> Vec<Server> {
    (0..n).map(|_| Server::local().unwrap()).collect()
}

/// A cluster over `servers` with short failure knobs, for tests.
fn builder(servers: &[Server]) -> ClusterBuilder {
    servers
        .iter()
        .fold(Cluster::builder(), |builder, server| {
            builder.server(&server.address())
        })
        .cool_down(Duration::from_millis(200))
        .probe_interval(Duration::from_millis(100))
}

/// Polls `condition` until it holds; fails the test after `EVENT_WAIT`.
fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let give_up = Instant::now() + EVENT_WAIT;
    while !condition() {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn is_up(cluster: &Cluster, server: &str) -> bool {
    cluster
        .servers()
        .iter()
        .any(|state| state.server == server && state.up)
}

#[test]
fn r2_q1_one_of_three_killed_under_load_from_32_threads_fails_no_read_and_loses_no_acknowledged_write_then_rejoins(
) {
    let mut servers = servers(3);
    let timeout = Duration::from_secs(5);
    let cluster = builder(&servers)
        .replicas(2)
        .read_quorum(1)
        .timeout(timeout)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(HashMap::<String, String>::new()));
    let reads = Arc::new(AtomicU64::new(0));

    let workers: Vec<_> = (0..32)
        .map(|t| {
            let (cluster, stop) = (cluster.clone(), Arc::clone(&stop));
            let (acknowledged, reads) = (Arc::clone(&acknowledged), Arc::clone(&reads));
            thread::spawn(move || {
                let mut mine: Vec<(String, String)> = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let (key, value) = (format!("t{t}-k{i}"), format!("v{t}-{i}"));
                    let began = Instant::now();
                    // A write may fail while a server dies; only an
                    // acknowledged one is promised.
                    if cluster.set(&key, &value).is_ok() {
                        mine.push((key, value));
                    }
                    if !mine.is_empty() {
                        let (key, value) = &mine[(i as usize * 7919) % mine.len()];
                        let read = cluster.get_string(key);
                        assert_eq!(
                            read.as_ref().ok().and_then(|v| v.as_deref()),
                            Some(value.as_str()),
                            "read of acknowledged {key} failed: {read:?}"
                        );
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    let took = began.elapsed();
                    assert!(
                        took < 2 * timeout + DEADLINE_SLACK,
                        "a set and a get took {took:?}"
                    );
                }
                acknowledged.lock().unwrap().extend(mine);
            })
        })
        .collect();

    let victim = servers.remove(1);
    let address = victim.address();
    wait_for("load", || reads.load(Ordering::Relaxed) > 500);
    victim.kill();
    wait_for("the killed server to be marked down", || {
        !is_up(&cluster, &address)
    });
    let reads_while_down = reads.load(Ordering::Relaxed);
    wait_for("reads while it is down", || {
        reads.load(Ordering::Relaxed) > reads_while_down + 500
    });

    let _restarted = Server::builder().listen(&address).start().unwrap();
    wait_for("the restarted server to be probed back", || {
        is_up(&cluster, &address)
    });
    let calls_on_return = cluster
        .servers()
        .into_iter()
        .find(|state| state.server == address)
        .unwrap()
        .calls;
    let reads_on_return = reads.load(Ordering::Relaxed);
    wait_for("reads after the return", || {
        reads.load(Ordering::Relaxed) > reads_on_return + 500
    });
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("no read failed");
    }

    let rejoined = cluster
        .servers()
        .into_iter()
        .find(|state| state.server == address)
        .unwrap();
    assert!(rejoined.up);
    assert!(
        rejoined.calls > calls_on_return + 100,
        "the returned server takes its keys back: {rejoined:?}"
    );
    // Every acknowledged write, old or new, is still readable.
    let acknowledged = acknowledged.lock().unwrap();
    assert!(
        acknowledged.len() > 1000,
        "only {} writes",
        acknowledged.len()
    );
    let keys: Vec<&String> = acknowledged.keys().collect();
    for chunk in keys.chunks(200) {
        for item in cluster.get_many(chunk).unwrap() {
            let value = item.result.unwrap_or_else(|e| panic!("{}: {e}", item.key));
            assert_eq!(
                value.as_deref(),
                Some(acknowledged[&item.key].as_bytes()),
                "acknowledged write of {} lost",
                item.key
            );
        }
    }
}

#[test]
fn r1_only_the_dead_servers_keys_miss_within_their_deadlines_and_come_back() {
    let mut servers = servers(3);
    let timeout = Duration::from_secs(1);
    let cluster = builder(&servers)
        .timeout(timeout)
        .max_retries(0)
        .failure_threshold(2)
        .build()
        .unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        cluster.set(key, key).unwrap();
    }
    let victim = servers.remove(0);
    let address = victim.address();
    let owned: Vec<bool> = keys
        .iter()
        .map(|key| cluster.owners(key) == std::slice::from_ref(&address))
        .collect();
    assert!(owned.iter().filter(|&&o| o).count() > 50);
    victim.kill();

    let mut missed = 0;
    for (key, &on_victim) in keys.iter().zip(&owned) {
        let began = Instant::now();
        let read = cluster.get_string(key);
        let took = began.elapsed();
        assert!(took < timeout + DEADLINE_SLACK, "{key} took {took:?}");
        if on_victim {
            // An error until the server is marked down, a miss on the
            // next-ranked server after.
            assert!(
                matches!(read, Ok(None) | Err(Error::Unavailable(_))),
                "{key}: {read:?}"
            );
            missed += 1;
        } else {
            assert_eq!(read.unwrap().as_deref(), Some(key.as_str()));
        }
    }
    assert!(missed > 50);
    assert!(!is_up(&cluster, &address), "two failures mark it down");

    let _restarted = Server::builder().listen(&address).start().unwrap();
    wait_for("the restarted server to be probed back", || {
        is_up(&cluster, &address)
    });
    let direct = Client::new(&address).unwrap();
    for (key, &on_victim) in keys.iter().zip(&owned) {
        if on_victim {
            assert_eq!(
                cluster.owners(key),
                std::slice::from_ref(&address),
                "{key} goes home"
            );
            cluster.set(key, "again").unwrap();
            assert_eq!(direct.get_string(key).unwrap().as_deref(), Some("again"));
            assert_eq!(cluster.get_string(key).unwrap().as_deref(), Some("again"));
        }
    }
}

#[test]
fn r3_q2_the_newest_copy_wins_and_the_stale_replica_is_repaired() {
    let servers = servers(3);
    let cluster = builder(&servers)
        .replicas(3)
        .read_quorum(2)
        .build()
        .unwrap();
    let owners = cluster.owners("k");
    assert_eq!(owners.len(), 3);
    let primary = Client::new(&owners[0]).unwrap();
    let second = Client::new(&owners[1]).unwrap();

    cluster.set("k", "v1").unwrap();
    let stale = primary.get("k").unwrap().unwrap();
    // What a plain reader of one server sees: the 20-byte envelope.
    assert_eq!(stale.len(), 20 + 2);
    assert_eq!(&stale[..4], b"tc\xE7\x01");
    assert_eq!(&stale[20..], b"v1");
    thread::sleep(Duration::from_millis(2)); // a later write time
    cluster.set("k", "v2").unwrap();
    let newest = second.get("k").unwrap().unwrap();
    primary.set_with_ttl("k", &stale, Ttl::Never).unwrap();

    assert_eq!(cluster.get_string("k").unwrap().as_deref(), Some("v2"));
    assert_eq!(primary.get("k").unwrap(), Some(newest.clone()), "repaired");

    // A plain value written past the cluster counts as older than any
    // enveloped one, and is repaired too.
    primary.set("k", "plain").unwrap();
    assert_eq!(cluster.get_string("k").unwrap().as_deref(), Some("v2"));
    assert_eq!(primary.get("k").unwrap(), Some(newest));

    // A miss on the replicas asked is checked with the third.
    for owner in &owners[..2] {
        Client::new(owner).unwrap().delete("k").unwrap();
    }
    assert_eq!(cluster.get_string("k").unwrap().as_deref(), Some("v2"));
    assert!(primary.get("k").unwrap().is_some(), "the miss was repaired");

    // Conditional writes need one server to decide.
    assert!(matches!(
        cluster.set_if_absent("lock", "me"),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        cluster.compare_and_set("k", "v2", "v3"),
        Err(Error::Validation(_))
    ));
    assert!(cluster.touch("k", Ttl::Never).unwrap());
    assert_eq!(cluster.get_string("k").unwrap().as_deref(), Some("v2"));
}

#[test]
fn a_multi_key_call_spanning_a_dead_server_fails_only_that_servers_items() {
    let mut servers = servers(3);
    let timeout = Duration::from_secs(1);
    // A high threshold keeps the dead server in place: its items fail
    // rather than move.
    let cluster = builder(&servers)
        .timeout(timeout)
        .max_retries(0)
        .failure_threshold(1000)
        .build()
        .unwrap();
    let keys: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    let written = cluster
        .set_many(keys.iter().map(|key| (key.as_str(), key.as_str())))
        .unwrap();
    assert!(written.iter().all(|item| item.result.is_ok()));
    let victim = servers.remove(2);
    let address = victim.address();
    victim.kill();

    let began = Instant::now();
    let found = cluster.get_many(&keys).unwrap();
    assert!(began.elapsed() < timeout + DEADLINE_SLACK);
    let mut failed = 0;
    for (key, item) in keys.iter().zip(&found) {
        assert_eq!(&item.key, key, "results come in the caller's order");
        if cluster.owners(key) == std::slice::from_ref(&address) {
            assert!(item.result.is_err(), "{key} lives on the dead server");
            failed += 1;
        } else {
            assert_eq!(
                item.result.as_ref().unwrap().as_deref(),
                Some(key.as_bytes())
            );
        }
    }
    assert!(failed > 5 && failed < keys.len());

    let deleted = cluster.delete_many(&keys).unwrap();
    assert_eq!(
        deleted.iter().filter(|item| item.result.is_err()).count(),
        failed
    );
    let stats = cluster.stats();
    assert_eq!(
        stats.iter().filter(|answer| answer.result.is_err()).count(),
        1
    );
}

/// What a test's resolver hands out for `cache.test`, and how many
/// lookups it answered (a failed or empty one included).
#[derive(Clone)]
struct Records {
    shown: Arc<Mutex<std::io::Result<Vec<SocketAddr>>>>,
    lookups: Arc<AtomicU64>,
}

impl Records {
    fn new(records: &[SocketAddr]) -> Records {
        Records {
            shown: Arc::new(Mutex::new(Ok(records.to_vec()))),
            lookups: Arc::default(),
        }
    }

    fn show(&self, records: &[SocketAddr]) {
        *self.shown.lock().unwrap() = Ok(records.to_vec());
    }

    fn fail(&self) {
        *self.shown.lock().unwrap() = Err(std::io::Error::other("no such host (test)"));
    }

    fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::SeqCst)
    }

    /// Blocks until a refresh that saw the test's last change has ended:
    /// the resolver has answered two more lookups since this call began.
    /// The first of them counted itself after the change, so saw it; the
    /// second began only once the refresh around the first had ended (one
    /// background thread does them all, one after the other).
    fn wait_for_a_refresh(&self) {
        let seen = self.lookups();
        wait_for("two more lookups", || self.lookups() >= seen + 2);
    }
}

/// A cluster over `cache.test:{port}`, resolved by `records` every 50 ms.
fn discovered(port: u16, records: &Records) -> Cluster {
    let records = records.clone();
    Cluster::builder()
        .discover(&format!("cache.test:{port}"))
        .resolver(move |host, _port| {
            assert_eq!(host, "cache.test");
            records.lookups.fetch_add(1, Ordering::SeqCst);
            match &*records.shown.lock().unwrap() {
                Ok(shown) => Ok(shown.clone()),
                Err(error) => Err(std::io::Error::new(error.kind(), error.to_string())),
            }
        })
        .resolve_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

fn server_names(cluster: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = cluster.servers().into_iter().map(|s| s.server).collect();
    names.sort();
    names
}

fn names_of(records: &[SocketAddr]) -> Vec<String> {
    let mut names: Vec<String> = records.iter().map(ToString::to_string).collect();
    names.sort();
    names
}

/// Each key's owner (R = 1) in `cluster` now.
fn owner_of(cluster: &Cluster, keys: &[String]) -> Vec<String> {
    keys.iter().map(|k| cluster.owners(k)[0].clone()).collect()
}

/// Checks that only `changed`'s keys changed owner between `before` and
/// `after`: to it when it was added, from it when it was removed. Returns
/// how many moved.
fn only_keys_of_moved(
    changed: &str,
    keys: &[String],
    before: &[String],
    after: &[String],
) -> usize {
    let mut moved = 0;
    for ((key, was), now) in keys.iter().zip(before).zip(after) {
        if now != was {
            assert!(
                was == changed || now == changed,
                "{key} moved from {was} to {now}, neither of them {changed}"
            );
            moved += 1;
        } else {
            assert_ne!(now, changed, "{key} is still on the removed {changed}");
        }
    }
    moved
}

#[test]
fn a_discovered_name_becomes_one_server_per_record_and_follows_re_resolution() {
    let servers = servers(3);
    let records: Vec<SocketAddr> = servers.iter().map(Server::local_addr).collect();
    let port = records[0].port();
    // Every server answers on its own port; the resolver hands them out as
    // if one name had three records (of which it shows two, then three,
    // then two others).
    let resolver = Records::new(&records[..2]);
    let cluster = discovered(port, &resolver);
    assert_eq!(server_names(&cluster), names_of(&records[..2]));

    let keys: Vec<String> = (0..2000).map(|i| format!("d{i}")).collect();
    let before = owner_of(&cluster, &keys);
    for key in &keys[..50] {
        cluster.set(key, key).unwrap();
    }
    resolver.show(&records);
    wait_for("the third record", || cluster.servers().len() == 3);
    let added = records[2].to_string();
    let with_three = owner_of(&cluster, &keys);
    let moved = only_keys_of_moved(&added, &keys, &before, &with_three);
    assert!(
        moved > 400 && moved < 950,
        "moved {moved} of 2000 (about a third)"
    );
    // Keys that stayed are still there.
    for (key, was) in keys[..50].iter().zip(&before) {
        if cluster.owners(key)[0] == *was {
            assert_eq!(
                cluster.get_string(key).unwrap().as_deref(),
                Some(key.as_str())
            );
        }
    }

    // A record that goes away takes its server out, and only its keys move.
    resolver.show(&records[1..]);
    wait_for("the first record to go", || cluster.servers().len() == 2);
    assert_eq!(server_names(&cluster), names_of(&records[1..]));
    let removed = records[0].to_string();
    let moved = only_keys_of_moved(&removed, &keys, &with_three, &owner_of(&cluster, &keys));
    let had = with_three.iter().filter(|owner| **owner == removed).count();
    assert_eq!(moved, had, "every key of the removed server, and no other");

    // A lookup that fails, or finds nothing, keeps the servers the name had.
    resolver.show(&[]);
    resolver.wait_for_a_refresh();
    assert_eq!(server_names(&cluster), names_of(&records[1..]));
    resolver.fail();
    resolver.wait_for_a_refresh();
    assert_eq!(server_names(&cluster), names_of(&records[1..]));
}

#[test]
fn a_discovered_name_shrinking_to_two_records_moves_only_the_lost_servers_keys_and_stops_calling_it(
) {
    let servers = servers(3);
    let records: Vec<SocketAddr> = servers.iter().map(Server::local_addr).collect();
    let resolver = Records::new(&records);
    let cluster = discovered(records[0].port(), &resolver);
    assert_eq!(server_names(&cluster), names_of(&records));
    let keys: Vec<String> = (0..600).map(|i| format!("s{i}")).collect();
    for key in &keys {
        cluster.set(key, key).unwrap();
    }
    let before = owner_of(&cluster, &keys);

    let lost = records[1];
    let survivors = [records[0], records[2]];
    resolver.show(&survivors);
    wait_for("the lost record to go", || cluster.servers().len() == 2);
    assert_eq!(server_names(&cluster), names_of(&survivors));
    let after = owner_of(&cluster, &keys);
    let moved = only_keys_of_moved(&lost.to_string(), &keys, &before, &after);
    let had = before.iter().filter(|o| **o == lost.to_string()).count();
    assert!(had > 100 && had < 320, "{had} of 600 keys on one of three");
    assert_eq!(moved, had, "every key of the lost server, and no other");

    // The lost server is not called again: its own counters stay still
    // while the cluster reads every key and writes as many new ones.
    let lost_direct = Client::new(&lost.to_string()).unwrap();
    let lost_before = lost_direct.stats().unwrap();
    let calls = |c: &Cluster| c.servers().iter().map(|s| s.calls).sum::<u64>();
    let calls_before = calls(&cluster);
    for (key, owner) in keys.iter().zip(&before) {
        let read = cluster.get_string(key).unwrap();
        if *owner == lost.to_string() {
            assert_eq!(read, None, "{key} starts as a miss on its new server");
        } else {
            assert_eq!(read.as_deref(), Some(key.as_str()), "{key} stayed put");
        }
        cluster.set(&format!("{key}-new"), key).unwrap();
    }
    assert!(calls(&cluster) - calls_before >= 2 * keys.len() as u64);
    let lost_after = lost_direct.stats().unwrap();
    assert_eq!(
        (lost_after.hits, lost_after.misses, lost_after.size),
        (lost_before.hits, lost_before.misses, lost_before.size),
        "the lost server was called"
    );

    // A failed lookup keeps the two survivors, once a refresh has run.
    resolver.fail();
    resolver.wait_for_a_refresh();
    assert_eq!(server_names(&cluster), names_of(&survivors));
    cluster.set("after the failure", "ok").unwrap();
    assert_eq!(
        cluster.get_string("after the failure").unwrap().as_deref(),
        Some("ok")
    );
}

#[test]
fn localhost_through_the_system_resolver_finds_the_loopback_server() {
    let server = Server::local().unwrap();
    let port = server.local_addr().port();
    let cluster = Cluster::builder()
        .discover(&format!("localhost:{port}"))
        .build()
        .unwrap();
    let mut resolved: Vec<SocketAddr> =
        std::net::ToSocketAddrs::to_socket_addrs(&("localhost", port))
            .unwrap()
            .collect();
    resolved.sort();
    resolved.dedup();
    let names: Vec<String> = cluster.servers().into_iter().map(|s| s.server).collect();
    let expected: Vec<String> = resolved.iter().map(ToString::to_string).collect();
    assert_eq!(names, expected);
    assert!(names.contains(&server.address()));
    if names.len() == 1 {
        cluster.set("k", "v").unwrap();
        assert_eq!(cluster.get_string("k").unwrap().as_deref(), Some("v"));
    }
}

// ----- touch racing writers ------------------------------------------------

/// A TCP relay to a server that hands every chunk on `delay` after it
/// arrived, both ways: a slow link, so that between a client's read and
/// its next write there is time for another writer to act.
struct SlowLink {
    address: String,
}

impl SlowLink {
    fn start(upstream: SocketAddr, delay: Duration) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            for downstream in listener.incoming() {
                let Ok(downstream) = downstream else { return };
                let Ok(upstream) = TcpStream::connect(upstream) else {
                    return;
                };
                for stream in [&downstream, &upstream] {
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
                    thread::spawn(move || delayed(from, to, delay));
                }
            }
        });
        SlowLink { address }
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read, in order.
fn delayed(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = thread::spawn(move || {
        for (at, chunk) in due {
            thread::sleep(at.saturating_duration_since(Instant::now()));
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if chunks
                    .send((Instant::now() + delay, buffer[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(chunks);
    let _ = writer.join();
}

#[test]
fn a_touch_losing_every_round_to_a_writer_gives_up_after_touch_attempts_and_reverts_nothing() {
    // The toucher's every message takes 100 ms each way: between its read
    // and its compare-and-set the writer, on a direct connection, has
    // 200 ms for a write that takes well under one.
    const LINK_DELAY: Duration = Duration::from_millis(100);
    let server = Server::local().unwrap();
    let direct = Client::builder(&server.address())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let link = SlowLink::start(server.local_addr(), LINK_DELAY);
    let toucher = Client::builder(&link.address)
        .timeout(Duration::from_secs(60))
        .max_retries(0)
        .build()
        .unwrap();
    direct.set("k", "v0").unwrap();
    toucher.ping().unwrap(); // connected, through the slow link
    let reads_before = direct.stats().unwrap().hits;

    // The writer answers every read of the key (a hit on the server) with
    // a new value: each of the touch's compare-and-sets then mismatches.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (direct, stop) = (direct.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let (mut seen, mut written) = (reads_before, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let hits = direct.stats().unwrap().hits;
                if hits > seen {
                    seen = hits;
                    let value = format!("v{}", written.len() + 1);
                    direct.set("k", &value).unwrap();
                    written.push(value);
                } else {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            written
        })
    };
    let touched = toucher.touch("k", Ttl::Never);
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    match &touched {
        Err(error @ Error::Status { code, .. }) => {
            assert_eq!(*code, Code::Aborted, "{error}");
            assert!(error.is_retryable(), "{error}");
        }
        other => panic!("expected the touch to give up, got {other:?} (writes {written:?})"),
    }
    let reads = direct.stats().unwrap().hits - reads_before;
    assert_eq!(
        reads,
        u64::from(TOUCH_ATTEMPTS),
        "one read per attempt, no more"
    );
    assert_eq!(written.len(), TOUCH_ATTEMPTS as usize, "{written:?}");
    // The last writer's value stands: the touch wrote nothing back.
    let last = written.last().unwrap();
    assert_eq!(
        direct.get_string("k").unwrap().as_deref(),
        Some(last.as_str())
    );

    // With the writer gone the touch succeeds, and keeps that value.
    assert!(toucher.touch("k", Ttl::Never).unwrap());
    assert_eq!(
        direct.get_string("k").unwrap().as_deref(),
        Some(last.as_str())
    );
}

/// The write time a replica's copy carries: bytes 4..12 of its envelope,
/// µs since the Unix epoch, big-endian.
fn write_time(copy: &[u8]) -> u64 {
    assert_eq!(&copy[..4], b"tc\xE7\x01", "an enveloped copy");
    u64::from_be_bytes(copy[4..12].try_into().unwrap())
}

#[test]
fn r2_touch_keeps_each_replicas_write_time_so_a_stale_replica_stays_the_older_copy() {
    let servers = servers(3);
    let cluster = builder(&servers)
        .replicas(2)
        .read_quorum(2)
        .build()
        .unwrap();
    let owners = cluster.owners("k");
    assert_eq!(owners.len(), 2);
    let behind = Client::new(&owners[0]).unwrap();
    let ahead = Client::new(&owners[1]).unwrap();

    cluster.set_with_ttl("k", "v1", TTL_MINUTE).unwrap();
    let older = behind.get("k").unwrap().unwrap();
    thread::sleep(Duration::from_millis(2)); // a later write time
    cluster.set_with_ttl("k", "v2", TTL_MINUTE).unwrap();
    let newer = ahead.get("k").unwrap().unwrap();
    assert!(write_time(&newer) > write_time(&older));
    // One replica missed the second write.
    behind.set_with_ttl("k", &older, TTL_MINUTE).unwrap();
    // A touch stamping the time it runs would make the stale copy newest.
    thread::sleep(Duration::from_millis(2));

    assert!(cluster.touch("k", Ttl::Never).unwrap());
    for (replica, before, value) in [(&behind, &older, "v1"), (&ahead, &newer, "v2")] {
        let touched = replica.get("k").unwrap().unwrap();
        assert_eq!(
            touched[4..12],
            before[4..12],
            "the write time of the {value} copy changed"
        );
        assert_ne!(touched[12..20], before[12..20], "the touch reached {value}");
        assert_eq!(touched[12..20], [0; 8], "no expiry after Ttl::Never");
        assert_eq!(&touched[20..], value.as_bytes());
    }
    // Last writer wins still: the newer write, and the stale replica repaired.
    assert_eq!(cluster.get_string("k").unwrap().as_deref(), Some("v2"));
    assert_eq!(behind.get("k").unwrap(), ahead.get("k").unwrap());
    assert_eq!(&behind.get("k").unwrap().unwrap()[20..], b"v2");
}

#[test]
fn r2_touch_leaves_a_plain_copy_older_than_every_enveloped_one() {
    let servers = servers(3);
    let cluster = builder(&servers)
        .replicas(2)
        .read_quorum(2)
        .build()
        .unwrap();
    let owners = cluster.owners("k");
    let behind = Client::new(&owners[0]).unwrap();
    let ahead = Client::new(&owners[1]).unwrap();
    cluster.set_with_ttl("k", "v2", TTL_MINUTE).unwrap();
    let newest = ahead.get("k").unwrap().unwrap();
    // A value written past the cluster (a plain client, a cluster with one
    // replica before): older than any enveloped write, by definition.
    behind.set_with_ttl("k", "plain", TTL_MINUTE).unwrap();
    thread::sleep(Duration::from_millis(2)); // a time later than v2's

    assert!(cluster.touch("k", Ttl::Never).unwrap());
    let touched = behind.get("k").unwrap().unwrap();
    if touched.starts_with(b"tc\xE7\x01") {
        assert!(
            write_time(&touched) < write_time(&newest),
            "the touched plain copy now reads as newer than v2"
        );
    }
    assert_eq!(cluster.get_string("k").unwrap().as_deref(), Some("v2"));
    assert_eq!(&behind.get("k").unwrap().unwrap()[20..], b"v2", "repaired");
}
