//! Hedged reads over real loopback servers: a replica slow to answer is
//! raced by the next one, the loser's stream is reset on the server, a
//! hung replica costs reads neither errors nor its share of the deadline,
//! and the budget stops hedges when every server is slow.

use std::time::{Duration, Instant};

use tiny_cache_client::cluster::{Cluster, Hedging};
use tiny_cache_client::server::Server;

mod common;

use common::rogue::{ok_reply, Rogue, Seen, Step};

/// `CacheResponse { status: OK }`, the answer the rogue replicas give to
/// writes.
const STORED: &[u8] = &[0x08, 0x01];

/// A replica that stores every write and does `on_get` with every read.
fn replica(on_get: Vec<Step>) -> Rogue {
    Rogue::start(move |seen: &Seen| {
        if seen.method() == "Get" {
            on_get.clone()
        } else {
            ok_reply(STORED)
        }
    })
}

/// A key whose first replica is `server`.
fn key_first_on(cluster: &Cluster, server: &str) -> String {
    (0..)
        .map(|i| format!("key-{i}"))
        .find(|key| cluster.owners(key).first().map(String::as_str) == Some(server))
        .expect("some key lands first on every server")
}

#[test]
fn a_slow_first_replica_is_raced_and_the_losing_stream_is_reset() {
    let healthy = Server::local().unwrap();
    let slow = replica(vec![Step::AwaitReset]);
    let cluster = Cluster::builder()
        .server(&healthy.address())
        .server(&slow.address())
        .replicas(2)
        .timeout(Duration::from_secs(6))
        .hedging(
            Hedging::default()
                .after(Duration::from_millis(5))
                .budget(1.0)
                .probation(Duration::ZERO),
        )
        .build()
        .unwrap();
    let key = key_first_on(&cluster, &slow.address());
    cluster.set(&key, "v").unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(cluster.get(&key).unwrap().as_deref(), Some(&b"v"[..]));
        // Unhedged, the read would wait half its deadline for the slow
        // replica before asking the other.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    let hedges = cluster.hedges();
    assert_eq!(
        (hedges.sent, hedges.won, hedges.refused),
        (3, 3, 0),
        "{hedges:?}"
    );
    let reads: Vec<usize> = slow
        .seen()
        .iter()
        .filter(|seen| seen.method() == "Get")
        .map(|seen| seen.attempt)
        .collect();
    assert_eq!(reads.len(), 3, "{:?}", slow.seen());
    for attempt in reads {
        let reset = format!("reset {attempt} CANCEL");
        assert!(
            slow.wait_for_event(&reset, Duration::from_secs(5)),
            "the losing read was not cancelled on the server: {:?}",
            slow.events()
        );
    }
}

#[test]
fn a_hung_replica_costs_reads_no_errors_and_lands_on_probation() {
    let healthy = Server::local().unwrap();
    let hung = replica(vec![Step::Stall]);
    let timeout = Duration::from_secs(4);
    let build = |hedging: Hedging| {
        Cluster::builder()
            .server(&healthy.address())
            .server(&hung.address())
            .replicas(2)
            .timeout(timeout)
            .hedging(hedging)
            .build()
            .unwrap()
    };
    let hedged = build(Hedging::default().budget(1.0));
    let keys: Vec<String> = (0..)
        .map(|i| format!("key-{i}"))
        .filter(|key| hedged.owners(key).first() == Some(&hung.address()))
        .take(40)
        .collect();
    for key in &keys {
        hedged.set(key, "v").unwrap();
    }
    let mut slowest = Duration::ZERO;
    for key in &keys {
        let started = Instant::now();
        assert_eq!(hedged.get(key).unwrap().as_deref(), Some(&b"v"[..]));
        slowest = slowest.max(started.elapsed());
    }
    // Every read was answered by the healthy replica long before the hung
    // one's share of the deadline (half of it) ran out.
    assert!(slowest < timeout / 4, "slowest read {slowest:?}");
    let hedges = hedged.hedges();
    assert!(hedges.sent >= 1, "{hedges:?}");
    // After its first lost race the hung replica is asked second: far
    // fewer hedges than reads.
    assert!(hedges.sent < 20, "{hedges:?}");

    // The same reads without hedging wait out the hung replica's share.
    let unhedged = build(Hedging::off());
    let started = Instant::now();
    assert_eq!(unhedged.get(&keys[0]).unwrap().as_deref(), Some(&b"v"[..]));
    assert!(started.elapsed() >= timeout / 2 - Duration::from_millis(50));
    assert_eq!(unhedged.hedges().sent, 0);
}

#[test]
fn the_budget_stops_hedges_when_every_replica_is_slow() {
    let slow_miss =
        || replica([vec![Step::Sleep(Duration::from_millis(20))], ok_reply(b"")].concat());
    let (a, b) = (slow_miss(), slow_miss());
    let cluster = Cluster::builder()
        .server(&a.address())
        .server(&b.address())
        .replicas(2)
        .timeout(Duration::from_secs(5))
        .hedging(Hedging::default().after(Duration::from_millis(2)))
        .build()
        .unwrap();
    const READS: u64 = 30;
    for _ in 0..READS {
        assert_eq!(cluster.get("absent").unwrap(), None);
    }
    let hedges = cluster.hedges();
    // 5 % of 30 reads earn one and a half hedges.
    assert!(hedges.sent <= 2, "{hedges:?}");
    assert_eq!(hedges.sent + hedges.refused, READS, "{hedges:?}");
}
