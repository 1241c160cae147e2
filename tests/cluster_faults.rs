#![cfg(all(feature = "server", feature = "cluster"))]
//! A cluster's servers failing quietly, over real loopback sockets behind
//! the fault proxy: a server that hangs (accepts, never answers) and comes
//! back with its data as it was. Reads must cost no errors while another
//! replica can answer, and no acknowledged write may be hidden by the old
//! copies of the server that missed it.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use tiny_cache_client::cluster::{Cluster, ClusterBuilder, ServerState};
use tiny_cache_client::server::Server;

mod common;

use common::fault_proxy::{Fault, FaultProxy};

const KEYS: usize = 400;
const TIMEOUT: Duration = Duration::from_millis(500);

/// Three servers, each behind its own proxy, and a cluster over the proxies.
struct Rig {
    _servers: Vec<Server>,
    proxies: Vec<FaultProxy>,
    cluster: Cluster,
}

impl Rig {
    fn start(replicas: usize) -> Rig {
        let servers: Vec<Server> = (0..3).map(|_| Server::local().unwrap()).collect();
        let proxies: Vec<FaultProxy> = servers
            .iter()
            .map(|server| FaultProxy::start(server.local_addr()))
            .collect();
        let cluster = cluster_over(&proxies, replicas);
        Rig {
            _servers: servers,
            proxies,
            cluster,
        }
    }

    /// The proxy in front of the server that owns the most keys first.
    fn busiest(&self) -> usize {
        let mut owned: HashMap<String, usize> = HashMap::new();
        for key in keys() {
            *owned
                .entry(self.cluster.owners(&key)[0].clone())
                .or_default() += 1;
        }
        let (name, _) = owned.into_iter().max_by_key(|(_, n)| *n).unwrap();
        self.proxies
            .iter()
            .position(|proxy| proxy.address() == name)
            .unwrap()
    }

    /// The cluster's view of the server behind proxy `index`.
    fn state(&self, index: usize) -> ServerState {
        let name = self.proxies[index].address();
        self.cluster
            .servers()
            .into_iter()
            .find(|server| server.server == name)
            .unwrap()
    }

    /// Reads every key until the server behind proxy `index` is marked
    /// down: each server's part of the reads fails its own.
    fn read_until_down(&self, index: usize) {
        let give_up = Instant::now() + Duration::from_secs(10);
        while self.state(index).up {
            assert!(
                Instant::now() < give_up,
                "never marked down: {:?}",
                self.state(index)
            );
            self.cluster.get_many(keys()).ok();
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_until_all_up(&self, within: Duration) {
        let give_up = Instant::now() + within;
        while !self.cluster.servers().iter().all(|server| server.up) {
            assert!(
                Instant::now() < give_up,
                "a server never came back: {:?}",
                self.cluster.servers()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A cluster over the proxies: each call of this is another process's view
/// (its own health marks, its own hints).
fn cluster_over(proxies: &[FaultProxy], replicas: usize) -> Cluster {
    builder_over(proxies, replicas).build().unwrap()
}

fn builder_over(proxies: &[FaultProxy], replicas: usize) -> ClusterBuilder {
    proxies
        .iter()
        .fold(Cluster::builder(), |builder, proxy| {
            builder.server(&proxy.address())
        })
        .replicas(replicas)
        .timeout(TIMEOUT)
        .cool_down(Duration::from_millis(500))
        .probe_interval(Duration::from_millis(200))
}

fn keys() -> impl Iterator<Item = String> {
    (0..KEYS).map(|i| format!("key-{i}"))
}

/// Fails with the count and the first few when any read was stale.
fn assert_none_stale(stale: &[String], when: &str) {
    assert!(
        stale.is_empty(),
        "{} stale {when}: {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
}

/// Every key's value as last acknowledged, checked through the cluster.
fn stale_reads(cluster: &Cluster, acknowledged: &HashMap<String, String>) -> Vec<String> {
    acknowledged
        .iter()
        .filter_map(|(key, expected)| match cluster.get_string(key) {
            Ok(Some(value)) if value == *expected => None,
            other => Some(format!("{key}: expected {expected}, read {other:?}")),
        })
        .collect()
}

#[test]
fn a_hung_replica_costs_reads_no_errors_with_two_replicas() {
    let rig = Rig::start(2);
    for key in keys() {
        rig.cluster.set(&key, &key).unwrap();
    }
    let hung = rig.busiest();
    rig.proxies[hung].set(Fault::BlackHole);

    let started = Instant::now();
    let readers: Vec<_> = (0..16)
        .map(|t| {
            let cluster = rig.cluster.clone();
            thread::spawn(move || {
                let (mut reads, mut errors, mut slowest) = (0, Vec::new(), Duration::ZERO);
                let mut i = t;
                while started.elapsed() < Duration::from_secs(3) {
                    let key = format!("key-{}", i % KEYS);
                    let began = Instant::now();
                    match cluster.get_string(&key) {
                        Ok(Some(value)) if value == key => {}
                        other => errors.push(format!("{key}: {other:?}")),
                    }
                    slowest = slowest.max(began.elapsed());
                    reads += 1;
                    i += 16;
                }
                (reads, errors, slowest)
            })
        })
        .collect();
    let mut total = 0;
    for reader in readers {
        let (reads, errors, slowest) = reader.join().expect("no reader panics");
        assert!(
            errors.is_empty(),
            "{} failed reads: {errors:?}",
            errors.len()
        );
        assert!(
            slowest < TIMEOUT + Duration::from_millis(250),
            "a read took {slowest:?}"
        );
        total += reads;
    }
    assert!(total > 0);
    let state = &rig.state(hung);
    assert!(
        !state.up,
        "the hung server was never marked down: {state:?}"
    );
}

/// Writes every key while the busiest server hangs, resumes it with its
/// old copies, and checks that no acknowledged write is hidden: read at
/// once, and again once the cluster has taken the server back.
fn acknowledged_writes_win_over_a_returning_servers_old_copies(replicas: usize) {
    let rig = Rig::start(replicas);
    for key in keys() {
        rig.cluster.set(&key, "old").unwrap();
    }
    let hung = rig.busiest();
    rig.proxies[hung].set(Fault::BlackHole);

    // 8 writers rewrite every key while the server hangs; a write that
    // fails is not acknowledged and the key keeps "old".
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let cluster = rig.cluster.clone();
            thread::spawn(move || {
                let mut acknowledged = HashMap::new();
                for (i, key) in keys().enumerate().filter(|(i, _)| i % 8 == t) {
                    let value = format!("new-{i}");
                    if cluster.set(&key, &value).is_ok() {
                        acknowledged.insert(key, value);
                    }
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged: HashMap<String, String> = keys().map(|k| (k, "old".into())).collect();
    for writer in writers {
        acknowledged.extend(writer.join().expect("no writer panics"));
    }
    let rewritten = acknowledged.values().filter(|v| *v != "old").count();
    assert!(
        rewritten > KEYS / 2,
        "only {rewritten} writes were acknowledged"
    );
    // Let it be marked down (the writes above fail fast once it is noticed).
    rig.read_until_down(hung);
    assert!(rig.state(hung).pending_hints > 0);

    rig.proxies[hung].clear();
    // Until the cluster takes the server back, its keys are read where
    // they were written meanwhile. With R = 1 a key that was not rewritten
    // reads as a miss there: unavailable, not stale.
    let stale: Vec<_> = stale_reads(&rig.cluster, &acknowledged)
        .into_iter()
        .filter(|line| replicas > 1 || !line.ends_with("expected old, read Ok(None)"))
        .collect();
    assert_none_stale(&stale, "right after the return");

    // Back at its first answer; what it missed is delivered after, and
    // until then read from the hints.
    rig.wait_until_all_up(Duration::from_secs(10));
    let stale = stale_reads(&rig.cluster, &acknowledged);
    assert_none_stale(&stale, "once it is back");
    let give_up = Instant::now() + Duration::from_secs(20);
    while rig.state(hung).pending_hints > 0 {
        assert!(
            Instant::now() < give_up,
            "hints never delivered: {:?}",
            rig.state(hung)
        );
        thread::sleep(Duration::from_millis(50));
    }
    let state = rig.state(hung);
    assert!(state.delivered_hints > 0, "{state:?}");
    let stale = stale_reads(&rig.cluster, &acknowledged);
    assert_none_stale(&stale, "once its hints are delivered");

    // A second outage of the same server: what stood in for it the first
    // time was cleared, so nothing older than the acknowledged writes comes
    // back from there.
    rig.proxies[hung].set(Fault::Partition {
        drop_existing: true,
    });
    rig.read_until_down(hung);
    let lost: Vec<_> = stale_reads(&rig.cluster, &acknowledged)
        .into_iter()
        // With R = 1 the down server's keys are misses on the stand-in
        // (nothing was written meanwhile): unavailable, not stale.
        .filter(|line| replicas > 1 || !line.ends_with("read Ok(None)"))
        .collect();
    assert_none_stale(&lost, "in the second outage");
    rig.proxies[hung].clear();
}

#[test]
fn acknowledged_writes_win_over_a_returning_servers_old_copies_with_two_replicas() {
    acknowledged_writes_win_over_a_returning_servers_old_copies(2);
}

#[test]
fn acknowledged_writes_win_over_a_returning_servers_old_copies_with_one_replica() {
    acknowledged_writes_win_over_a_returning_servers_old_copies(1);
}

#[cfg(feature = "entity-cache")]
#[test]
fn an_invalidation_acknowledged_while_a_replica_hung_holds_for_another_process_after_it_returns() {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use tiny_cache_client::cache::{enable, EntityCache, UseCaseConfig, UseCaseInfo};

    const IDS: u64 = 60;
    let rig = Rig::start(2);
    let remote_only = |_: &UseCaseInfo<'_>| Some(UseCaseConfig::remote(Duration::from_secs(600)));
    // Two processes: each its own cluster over the same servers, so the
    // reader has none of the writer's hints.
    let writer = EntityCache::builder(rig.cluster.clone())
        .config(remote_only)
        .build()
        .unwrap();
    let reader = EntityCache::builder(cluster_over(&rig.proxies, 2))
        .config(remote_only)
        .build()
        .unwrap();
    let source = Arc::new(AtomicU64::new(1));
    let truth = Arc::clone(&source);
    let name = reader.use_case_named("Name", "user_id", move |_: &u64, _: &()| {
        Ok::<_, Infallible>(truth.load(Ordering::SeqCst))
    });
    let _scope = enable();
    for id in 0..IDS {
        assert_eq!(name.get(&id, &()).unwrap(), 1);
    }

    // One server hangs; the source changes and every id is invalidated,
    // retried until acknowledged (an invalidation is acknowledged only
    // once every live replica of its generation has it).
    let hung = rig.busiest();
    rig.proxies[hung].set(Fault::BlackHole);
    source.store(2, Ordering::SeqCst);
    let give_up = Instant::now() + Duration::from_secs(20);
    for id in 0..IDS {
        while let Err(error) = writer.invalidate("user_id", &id, Duration::ZERO) {
            assert!(Instant::now() < give_up, "never acknowledged: {error}");
        }
    }

    // It returns with the generations it had: the reader, which never
    // saw it hang, must still see every invalidation.
    rig.proxies[hung].clear();
    let stale: Vec<u64> = (0..IDS)
        .filter(|id| name.get(id, &()).unwrap() != 2)
        .collect();
    assert!(
        stale.is_empty(),
        "{} ids served the invalidated value: {stale:?}",
        stale.len()
    );
}

#[test]
fn past_a_full_hint_log_a_returning_server_is_read_with_every_replica_so_the_newest_wins() {
    let rig = Rig::start(2);
    // The same servers through a cluster whose hint log holds 10 keys.
    let cluster = builder_over(&rig.proxies, 2)
        .hint_capacity(10)
        .build()
        .unwrap();
    for key in keys() {
        cluster.set(&key, "old").unwrap();
    }
    let hung = rig.busiest();
    rig.proxies[hung].set(Fault::BlackHole);
    let give_up = Instant::now() + Duration::from_secs(10);
    let name = rig.proxies[hung].address();
    let state = || {
        cluster
            .servers()
            .into_iter()
            .find(|s| s.server == name)
            .unwrap()
    };
    while state().up {
        assert!(Instant::now() < give_up, "never marked down");
        cluster.get_many(keys()).ok();
        thread::sleep(Duration::from_millis(20));
    }
    // Every key rewritten while it is down: most of its hints are dropped.
    for key in keys() {
        cluster.set(&key, "new").unwrap();
    }
    assert!(state().dropped_hints > 0, "{:?}", state());
    assert!(state().pending_hints <= 10, "{:?}", state());

    rig.proxies[hung].clear();
    let give_up = Instant::now() + Duration::from_secs(10);
    while !state().up {
        assert!(Instant::now() < give_up, "never came back");
        thread::sleep(Duration::from_millis(20));
    }
    // Its keys are read from every replica for the recovery window: the
    // stand-ins' and the other replica's newer copies win over its old ones.
    let stale: Vec<String> = keys()
        .filter(|key| cluster.get_string(key).unwrap().as_deref() != Some("new"))
        .collect();
    assert!(stale.is_empty(), "{} keys read old: {stale:?}", stale.len());
}

#[test]
fn a_conditional_write_taken_by_a_stand_in_holds_once_the_home_server_returns() {
    use tiny_cache_client::CasOutcome;

    let rig = Rig::start(1);
    let key = "lock";
    let home = rig
        .proxies
        .iter()
        .position(|proxy| proxy.address() == rig.cluster.owners(key)[0])
        .unwrap();
    rig.cluster.set(key, "stale holder").unwrap();
    rig.cluster.delete(key).unwrap();
    rig.proxies[home].set(Fault::BlackHole);
    rig.read_until_down(home);

    // Taken on the stand-in while the home server hangs.
    assert!(rig.cluster.set_if_absent(key, "me").unwrap());
    rig.proxies[home].clear();
    rig.wait_until_all_up(Duration::from_secs(10));
    assert_eq!(rig.cluster.owners(key)[0], rig.proxies[home].address());

    // The home server is back: the lock is still held, and a
    // compare-and-set judges against it, not against the copy it missed.
    assert!(!rig.cluster.set_if_absent(key, "you").unwrap());
    assert_eq!(rig.cluster.get_string(key).unwrap().as_deref(), Some("me"));
    assert_eq!(
        rig.cluster.compare_and_set(key, "me", "done").unwrap(),
        CasOutcome::Stored
    );
    assert_eq!(
        rig.cluster.get_string(key).unwrap().as_deref(),
        Some("done")
    );
}

// ----- a cluster handle's own settings, as a client's ---------------------

#[test]
fn with_timeout_bounds_each_call_to_a_silent_server_while_the_cluster_keeps_its_own() {
    let silent = common::net::SilentServer::start();
    let cluster = Cluster::builder()
        .server(&silent.address().to_string())
        .timeout(Duration::from_secs(30))
        .max_retries(0)
        .build()
        .unwrap();
    let quick = cluster.with_timeout(Duration::from_millis(300)).unwrap();
    for call in 0..3 {
        let started = Instant::now();
        let outcome = quick.get("k");
        let took = started.elapsed();
        assert!(
            matches!(outcome, Err(tiny_cache_client::Error::DeadlineExceeded(_))),
            "call {call}: {outcome:?}"
        );
        assert!(took < Duration::from_secs(5), "call {call} took {took:?}");
        let started = Instant::now();
        let written = quick.set("k", "v");
        assert!(written.is_err(), "call {call}: {written:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "set of call {call}"
        );
    }
    assert!(cluster.with_timeout(Duration::ZERO).is_err());
}

#[test]
fn close_ends_every_clone_and_with_namespace_is_another_key_space() {
    let (a, b) = (Server::local().unwrap(), Server::local().unwrap());
    let cluster = Cluster::builder()
        .server(&a.address())
        .server(&b.address())
        .replicas(2)
        .build()
        .unwrap();
    let billing = cluster.with_namespace("billing").unwrap();
    billing.set("k", "invoice").unwrap();
    assert_eq!(cluster.get("k").unwrap(), None);
    assert_eq!(billing.get("k").unwrap().as_deref(), Some(&b"invoice"[..]));
    assert!(cluster.with_namespace("-bad").is_err());

    let clone = cluster.clone();
    cluster.close();
    for handle in [&cluster, &clone] {
        assert_eq!(handle.get("k"), Err(tiny_cache_client::Error::Closed));
    }
    // Another key space's cluster has its own connections.
    assert_eq!(billing.get("k").unwrap().as_deref(), Some(&b"invoice"[..]));
    billing.close();
    billing.close(); // twice is harmless
}
