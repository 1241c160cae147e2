#![cfg(all(feature = "server", feature = "cluster"))]
//! Many servers over loopback: embedded servers killed and restarted on
//! the same port, a cluster that routes around them and takes them back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tiny_cache_client::cluster::{Cluster, ClusterBuilder};
use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, Error, Ttl};

/// How late past its deadline a call may return on two busy cores.
const DEADLINE_SLACK: Duration = Duration::from_millis(750);
/// How long a test waits for an event (a server marked down or back)
/// before failing: far above what it takes, far below a hang.
const EVENT_WAIT: Duration = Duration::from_secs(15);

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

#[test]
fn a_discovered_name_becomes_one_server_per_record_and_follows_re_resolution() {
    let servers = servers(3);
    let records: Vec<SocketAddr> = servers.iter().map(Server::local_addr).collect();
    let port = records[0].port();
    // Every server answers on its own port; the resolver hands them out as
    // if one name had three records (of which it shows two, then three).
    let shown = Arc::new(Mutex::new(records[..2].to_vec()));
    let resolver_view = Arc::clone(&shown);
    let cluster = Cluster::builder()
        .discover(&format!("cache.test:{port}"))
        .resolver(move |host, _port| {
            assert_eq!(host, "cache.test");
            Ok(resolver_view.lock().unwrap().clone())
        })
        .resolve_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let names = |c: &Cluster| {
        let mut names: Vec<String> = c.servers().into_iter().map(|s| s.server).collect();
        names.sort();
        names
    };
    let mut two: Vec<String> = records[..2].iter().map(ToString::to_string).collect();
    two.sort();
    assert_eq!(names(&cluster), two);

    let keys: Vec<String> = (0..2000).map(|i| format!("d{i}")).collect();
    let before: Vec<String> = keys.iter().map(|k| cluster.owners(k)[0].clone()).collect();
    for key in &keys[..50] {
        cluster.set(key, key).unwrap();
    }
    *shown.lock().unwrap() = records.clone();
    wait_for("the third record", || cluster.servers().len() == 3);
    let added = records[2].to_string();
    let mut moved = 0;
    for (key, was) in keys.iter().zip(&before) {
        let now = &cluster.owners(key)[0];
        if now != was {
            assert_eq!(now, &added, "{key} moved between old servers");
            moved += 1;
        }
    }
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

    // A lookup that fails keeps the servers the name had.
    shown.lock().unwrap().clear();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(cluster.servers().len(), 3);
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
