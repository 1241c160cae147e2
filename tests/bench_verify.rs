#![cfg(feature = "cli")]
//! `tiny-cache bench --verify`: values that say what they are, and reads
//! judged against what the run wrote. Against real servers over loopback:
//! sound clusters of two (R = 1 with every kind of call, R = 2 with writes
//! and reads) pass with every read checked; a server whose values a saboteur swaps between keys and
//! damages while the run reads them is caught, each kind counted apart,
//! and the run ends with exit status 10.

mod common;
use common::bench_run::{bench, last_json};
use std::time::{Duration, Instant};

use serde_json::Value;
use tiny_cache_client::server::Server;
use tiny_cache_client::Client;

/// How long the saboteur waits for the run's pre-fill before giving up: a
/// start-up of the binary on a busy machine, many times over.
const PREFILL_WAIT: Duration = Duration::from_secs(30);

fn count(run: &Value, field: &str) -> u64 {
    run["verify"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("verify/{field} missing: {run}"))
}

/// `bench --verify` against a cluster of two fresh embedded servers with
/// `replicas` replicas, making calls in the proportions of `mix`; the run
/// must pass with many reads checked.
fn verified_cluster_run(replicas: &str, mix: &str) {
    let servers = [Server::local().unwrap(), Server::local().unwrap()];
    let (a, b) = (servers[0].address(), servers[1].address());
    let output = bench(&[
        "--server",
        &a,
        "--server",
        &b,
        "--replicas",
        replicas,
        "--timeout",
        "10",
        "--json",
        "--verify",
        "--keys",
        "50",
        "--key-distribution",
        "zipf:1.2",
        "--mix",
        mix,
        "--threads",
        "8",
        "--requests",
        "3000",
        "--warmup",
        "0",
    ]);
    assert!(output.status.success(), "{output:?}");
    let run = last_json(&output);
    assert!(count(&run, "checked") > 500, "{run}");
    assert_eq!(count(&run, "failures"), 0, "{run}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("(all sound)"), "{text}");
}

#[test]
fn a_sound_cluster_passes_verification_with_every_kind_of_call() {
    verified_cluster_run(
        "1",
        "get=60,set=15,delete=5,get-many=5,set-many=5,delete-many=2,set-if-absent=5,\
         compare-and-set=2,touch=1",
    );
}

/// With two replicas: writes, deletes, reads and touches. A read racing a
/// delete must not read-repair the value back onto a replica the delete
/// cleared (the delete leaves tombstones), or `--verify` reports it as
/// stale. Conditional writes need R = 1.
#[test]
fn a_replicated_cluster_passes_verification_of_its_writes_deletes_and_reads() {
    verified_cluster_run(
        "2",
        "get=55,set=20,delete=5,get-many=5,set-many=10,delete-many=2,touch=3",
    );
}

#[test]
fn values_swapped_between_keys_or_damaged_are_caught_and_counted_apart() {
    let server = Server::local().unwrap();
    let address = server.address();
    let saboteur = Client::new(&address).unwrap();
    let run = std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            bench(&[
                "--server",
                &address,
                "--timeout",
                "10",
                "--json",
                "--verify",
                "--keys",
                "20",
                "--mix",
                "get=1",
                "--threads",
                "4",
                "--duration",
                "2",
                "--warmup",
                "0.2",
            ])
        });
        // Pre-fill writes all 20 keys in one call: once the last is there,
        // every key holds the run's own value, and the run only reads.
        let given_up = Instant::now() + PREFILL_WAIT;
        while saboteur.get("bench:19").ok().flatten().is_none() {
            assert!(Instant::now() < given_up, "the run never wrote its keys");
            std::thread::sleep(Duration::from_millis(5));
        }
        let first = saboteur.get("bench:1").unwrap().expect("bench:1 written");
        // Another key's sound value...
        saboteur.set("bench:2", first.clone()).unwrap();
        // ... and a value torn in the middle: one byte changed.
        let mut torn = saboteur
            .get("bench:3")
            .unwrap()
            .expect("bench:3 written")
            .to_vec();
        let middle = torn.len() / 2;
        torn[middle] ^= 0x01;
        saboteur.set("bench:3", torn).unwrap();
        run.join().expect("the bench thread")
    });
    assert_eq!(run.status.code(), Some(10), "{run:?}");
    let json = last_json(&run);
    assert!(count(&json, "wrong_key") > 0, "{json}");
    assert!(count(&json, "corrupt") > 0, "{json}");
    assert_eq!(count(&json, "stale"), 0, "{json}");
    assert_eq!(count(&json, "impossible"), 0, "{json}");
    assert_eq!(
        count(&json, "failures"),
        count(&json, "wrong_key") + count(&json, "corrupt"),
        "{json}"
    );
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("of another key"), "{text}");
    assert!(
        json["verify"]["first_failure"]
            .as_str()
            .is_some_and(|first| first.contains("bench:2") || first.contains("bench:3")),
        "{json}"
    );
}

#[test]
fn values_too_small_to_name_their_key_are_refused() {
    let output = bench(&["--verify", "--value-size", "16"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("--value-size must be at least"), "{err}");
}
