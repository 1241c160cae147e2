//! Pipelines over real loopback servers: outcomes in order, each part with
//! its own result and retries, one deadline for all, any number of parts
//! on a server that takes one stream at a time, and an abandoned pipeline
//! that leaves nothing behind.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tiny_cache_client::pipeline::{Op, Outcome, Pipeline};
use tiny_cache_client::server::Server;
use tiny_cache_client::{CacheStore, CasOutcome, Client, Error};

mod common;

use common::rogue::{grpc_head, ok_reply, status_trailers, Rogue, Step};

/// Scheduling noise on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(750);

#[test]
fn outcomes_come_back_in_pipeline_order_whatever_order_they_finish_in() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    client.set("present", "p").unwrap();
    client.set("counter", "1").unwrap();
    let outcomes = client
        .pipeline()
        .get("present")
        .set("written", "w")
        .get("absent")
        .delete("present-gone")
        .set_if_absent("present", "no")
        .set_if_absent("fresh", "yes")
        .compare_and_set("counter", "1", "2")
        .compare_and_set("counter", "9", "3")
        .run()
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Value(Some(Bytes::from_static(b"p"))),
            Outcome::Stored,
            Outcome::Value(None),
            Outcome::Deleted,
            Outcome::Inserted(false),
            Outcome::Inserted(true),
            Outcome::Swapped(CasOutcome::Stored),
            // Parts run concurrently: the second swap may see "1" or "2",
            // neither of which is "9".
            Outcome::Swapped(CasOutcome::Mismatch),
        ]
    );
    assert_eq!(client.get("written").unwrap().as_deref(), Some(&b"w"[..]));

    // Collected as they finish: every index exactly once.
    let mut started = client.pipeline().get("a").get("b").get("c").start();
    let mut seen = Vec::new();
    while let Some((index, outcome)) = started.wait_next() {
        assert_eq!(outcome, Ok(Outcome::Value(None)));
        seen.push(index);
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2]);
}

#[test]
fn a_refused_part_fails_alone() {
    let server = Server::builder().max_value_bytes(64).start().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let results = client
        .pipeline()
        .set("ok-1", "v")
        .get("")
        .set("too-big", vec![7u8; 1000])
        .set("ok-2", "v")
        .run_each();
    assert_eq!(results[0], Ok(Outcome::Stored));
    assert!(
        matches!(results[1], Err(Error::Validation(_))),
        "{results:?}"
    );
    assert!(
        matches!(
            results[2],
            Err(Error::ResourceExhausted(_) | Error::InvalidArgument(_))
        ),
        "{results:?}"
    );
    assert_eq!(results[3], Ok(Outcome::Stored));
    assert_eq!(client.get("ok-2").unwrap().as_deref(), Some(&b"v"[..]));
    // `run` reports the first failure in order, after every part ended.
    let first = client.pipeline().set("ok-3", "v").get("").run();
    assert!(matches!(first, Err(Error::Validation(_))));
    assert_eq!(client.get("ok-3").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn the_whole_pipeline_ends_by_one_deadline_on_a_server_that_never_answers() {
    let hung = Rogue::start(|_| vec![Step::Stall]);
    let client = Client::builder(&hung.address())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let deadline = Duration::from_millis(400);
    let mut pipeline = client.pipeline().timeout(deadline);
    for i in 0..50 {
        pipeline = pipeline.get(format!("k{i}"));
    }
    let started = Instant::now();
    let results = pipeline.run_each();
    let elapsed = started.elapsed();
    assert_eq!(results.len(), 50);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(Error::DeadlineExceeded(_)))),
        "{results:?}"
    );
    assert!(elapsed >= deadline, "gave up early after {elapsed:?}");
    assert!(elapsed < deadline + SLACK, "took {elapsed:?}");
}

#[test]
fn only_idempotent_parts_are_retried_after_the_server_may_have_seen_them() {
    // The first two streams (one per part) fail with UNAVAILABLE after
    // the response headers, so the server may have applied them; later
    // streams succeed.
    let rogue = Rogue::start(|seen| {
        if seen.attempt < 2 {
            vec![grpc_head(), status_trailers("14", &[])]
        } else {
            ok_reply(b"")
        }
    });
    let client = Client::builder(&rogue.address())
        .timeout(Duration::from_secs(5))
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .build()
        .unwrap();
    let results = client
        .pipeline()
        .get("read-me")
        .set_if_absent("lock", "me")
        .run_each();
    assert_eq!(results[0], Ok(Outcome::Value(None)), "{results:?}");
    assert!(
        matches!(results[1], Err(Error::Unavailable(_))),
        "a maybe-applied SetIfAbsent is not sent again: {results:?}"
    );
    let seen = rogue.seen();
    let count = |method: &str| seen.iter().filter(|s| s.method() == method).count();
    assert_eq!(count("SetIfAbsent"), 1, "{seen:?}");
    assert_eq!(count("Get"), 2, "{seen:?}");
}

#[test]
fn ten_thousand_parts_pass_through_a_server_taking_one_stream_at_a_time() {
    let server = Server::builder().max_concurrent_streams(1).start().unwrap();
    let client = Client::builder(&server.address())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let ops: Vec<Op> = (0..10_000)
        .map(|i| Op::Set {
            key: format!("k{i}"),
            value: Bytes::from(i.to_string()),
            ttl: None,
        })
        .collect();
    let mut pipeline = client.pipeline();
    for op in ops {
        pipeline = pipeline.push(op);
    }
    let results = pipeline.run_each();
    assert_eq!(results.len(), 10_000);
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first {:?}",
        failed.len(),
        failed.first()
    );
    let mut reads = client.pipeline();
    for i in (0..10_000).step_by(997) {
        reads = reads.get(format!("k{i}"));
    }
    for (n, outcome) in reads.run().unwrap().into_iter().enumerate() {
        let i = n * 997;
        assert_eq!(outcome, Outcome::Value(Some(Bytes::from(i.to_string()))));
    }
}

#[test]
fn a_dropped_pipeline_resets_its_streams_and_no_late_reply_reaches_the_next_call() {
    // The first three streams wait for the client to reset them; the rest
    // answer at once.
    let rogue = Rogue::start(|seen| {
        if seen.attempt < 3 {
            vec![Step::AwaitReset]
        } else {
            ok_reply(b"")
        }
    });
    let client = Client::builder(&rogue.address())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = client.pipeline().get("a").get("b").get("c").start();
    assert!(rogue.wait_for_attempts(3, Duration::from_secs(5)));
    drop(started);
    for attempt in 0..3 {
        let event = format!("reset {attempt} CANCEL");
        assert!(
            rogue.wait_for_event(&event, Duration::from_secs(5)),
            "{:?}",
            rogue.events()
        );
    }
    // The next call on this thread gets its own answer.
    assert_eq!(client.get("next").unwrap(), None);
    #[cfg(feature = "metrics")]
    {
        let metrics = client.metrics();
        assert_eq!(metrics.in_flight, 0, "{metrics:?}");
        assert_eq!(metrics.calls, 4, "{metrics:?}");
    }
}

#[test]
fn every_store_runs_pipelines_through_the_trait() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let store: &dyn CacheStore = &client;
    let outcomes = Pipeline::on(store)
        .set("k", "v")
        .get("missing")
        .run()
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Stored, Outcome::Value(None)]);
    fn generic(store: &impl CacheStore) -> Vec<Outcome> {
        store.pipeline().get("k").run().unwrap()
    }
    assert_eq!(
        generic(&client),
        vec![Outcome::Value(Some(Bytes::from_static(b"v")))]
    );
}

#[cfg(feature = "cluster")]
mod on_a_cluster {
    use super::*;
    use tiny_cache_client::cluster::Cluster;

    #[test]
    fn a_cluster_pipeline_gives_the_same_outcomes_in_order() {
        let servers: Vec<Server> = (0..3).map(|_| Server::local().unwrap()).collect();
        let mut builder = Cluster::builder().replicas(2);
        for server in &servers {
            builder = builder.server(&server.address());
        }
        let cluster = builder.build().unwrap();
        cluster.set("old", "o").unwrap();
        let mut pipeline = cluster.pipeline();
        for i in 0..20 {
            pipeline = pipeline.set(format!("k{i}"), format!("v{i}"));
        }
        let outcomes = pipeline
            .get("old")
            .delete("old")
            .get("never")
            .get("")
            .run_each();
        assert!(outcomes[..20].iter().all(|o| o == &Ok(Outcome::Stored)));
        assert_eq!(
            outcomes[20],
            Ok(Outcome::Value(Some(Bytes::from_static(b"o"))))
        );
        assert_eq!(outcomes[21], Ok(Outcome::Deleted));
        assert_eq!(outcomes[22], Ok(Outcome::Value(None)));
        assert!(outcomes[23].is_err(), "{:?}", outcomes[23]);
        assert_eq!(cluster.get("k7").unwrap().as_deref(), Some(&b"v7"[..]));
        assert_eq!(cluster.get("old").unwrap(), None);
    }

    #[test]
    fn a_part_stuck_on_a_silent_server_delays_no_other_call() {
        let healthy = Server::local().unwrap();
        let hung = Rogue::start(|_| vec![Step::Stall]);
        let cluster = Cluster::builder()
            .server(&healthy.address())
            .server(&hung.address())
            .timeout(Duration::from_millis(1500))
            .build()
            .unwrap();
        // Keys on each server.
        let on = |server: &str| -> Vec<String> {
            (0..)
                .map(|i| format!("key-{i}"))
                .filter(|key| cluster.owners(key).first().map(String::as_str) == Some(server))
                .take(5)
                .collect()
        };
        let (fine, stuck) = (on(&healthy.address()), on(&hung.address()));
        assert_eq!((fine.len(), stuck.len()), (5, 5));
        let mixed: Vec<&str> = fine.iter().chain(&stuck).map(String::as_str).collect();
        let started = Instant::now();
        std::thread::scope(|scope| {
            let slow = scope.spawn(|| {
                let outcome = cluster.get_many(&mixed);
                (outcome, started.elapsed())
            });
            // Meanwhile another caller's keys, all on the healthy server.
            std::thread::sleep(Duration::from_millis(100));
            for key in &fine {
                cluster.set(key, "v").unwrap();
                assert_eq!(cluster.get(key).unwrap().as_deref(), Some(&b"v"[..]));
            }
            let others_done = started.elapsed();
            let (outcome, slow_done) = slow.join().unwrap();
            assert!(
                others_done < slow_done,
                "the healthy calls ({others_done:?}) waited for the stuck part ({slow_done:?})"
            );
            let items = outcome.unwrap();
            for item in &items[5..] {
                assert!(
                    matches!(item.result, Err(Error::DeadlineExceeded(_))),
                    "{item:?}"
                );
            }
            assert!(
                slow_done < Duration::from_millis(1500) + SLACK,
                "{slow_done:?}"
            );
        });
    }
}
