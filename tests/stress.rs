#![cfg(feature = "server")]
//! Load, kill, restart: the client keeps every call inside its deadline and
//! recovers on its own. Memory is read from /proc/self/status, so this file
//! keeps its tests few and sequential-friendly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, Error};

/// How late past its deadline a call may return under heavy load on two
/// shared cores.
const DEADLINE_SLACK: Duration = Duration::from_millis(750);

fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn server_killed_under_load_from_64_threads_then_restarted_recovers_by_itself() {
    let server = Server::local().unwrap();
    let address = server.address();
    let timeout = Duration::from_secs(2);
    let client = Client::builder(&address).timeout(timeout).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let workers: Vec<_> = (0..64)
        .map(|t| {
            let (client, stop) = (client.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut last_success = None;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("t{t}-{}", i % 16);
                    let began = Instant::now();
                    let outcome = if i % 10 == 0 {
                        client.set(&key, "v").map(|_| ())
                    } else {
                        client.get(&key).map(|_| ())
                    };
                    let took = began.elapsed();
                    assert!(took < timeout + DEADLINE_SLACK, "call took {took:?}");
                    match outcome {
                        Ok(()) => last_success = Some(Instant::now()),
                        Err(Error::Unavailable(_) | Error::DeadlineExceeded(_)) => {
                            // The server is down: back off a little, as a
                            // caller would, instead of spinning.
                            thread::sleep(Duration::from_millis(20));
                        }
                        Err(other) => panic!("unexpected error under failover: {other:?}"),
                    }
                }
                last_success
            })
        })
        .collect();

    thread::sleep(Duration::from_millis(800));
    server.kill();
    let killed_at = started.elapsed();
    thread::sleep(Duration::from_millis(500));
    let restarted = Server::builder().listen(&address).start().unwrap();
    let restarted_at = Instant::now();
    // Reconnects back off 1 s ±20 % after a refused attempt; give the load
    // time to come back, then stop.
    thread::sleep(Duration::from_millis(3500));
    stop.store(true, Ordering::Relaxed);

    for worker in workers {
        let last_success = worker.join().expect("no caller may panic");
        let last_success = last_success.expect("a caller never succeeded");
        assert!(
            last_success > restarted_at,
            "a caller did not recover after the restart (killed at {killed_at:?})"
        );
    }
    assert!(restarted.local_addr().port() > 0);
}

#[test]
fn a_thousand_threads_share_one_client_without_deadlock_and_memory_stays_bounded() {
    let server = Server::local().unwrap();
    let client = Client::builder(&server.address())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let wave = |round: usize| {
        let barrier = Arc::new(Barrier::new(1000));
        let threads: Vec<_> = (0..1000)
            .map(|t| {
                let (client, barrier) = (client.clone(), Arc::clone(&barrier));
                thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        barrier.wait();
                        for i in 0..10 {
                            let key = format!("r{round}-t{t}-{i}");
                            client.set(&key, key.as_bytes()).unwrap();
                            assert_eq!(client.get(&key).unwrap().as_deref(), Some(key.as_bytes()));
                        }
                    })
                    .expect("spawn")
            })
            .collect();
        for thread in threads {
            thread.join().expect("no caller may panic");
        }
    };

    let started = Instant::now();
    wave(0);
    let after_first = resident_kib();
    wave(1);
    wave(2);
    let after_third = resident_kib();
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    if let (Some(first), Some(third)) = (after_first, after_third) {
        // The first wave sizes every buffer; later waves must reuse them.
        assert!(
            third < first + 64 * 1024,
            "resident memory grew from {first} KiB to {third} KiB over two more waves"
        );
    }
    assert_eq!(client.stats().unwrap().size, 3 * 1000 * 10);
}

#[test]
fn blocking_calls_from_inside_a_tokio_runtime_work_and_never_deadlock() {
    let server = Server::local().unwrap();
    let client = Client::builder(&server.address())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // On a runtime thread (blocking it, as documented) and from
    // spawn_blocking (the recommended way): both complete.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let on_runtime = client.clone();
    runtime.block_on(async move {
        on_runtime.set("k", "v").unwrap();
        let in_pool = on_runtime.clone();
        let read = tokio::task::spawn_blocking(move || in_pool.get_string("k"))
            .await
            .unwrap();
        assert_eq!(read.unwrap().as_deref(), Some("v"));
    });

    // A server whose only thread is the one the caller blocks can never
    // answer: the call ends at its deadline instead of hanging.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let stuck = Client::builder(&address.to_string())
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    runtime.block_on(async move {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        // The accept loop would run on this thread, which the call blocks.
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let started = Instant::now();
        let outcome = stuck.get("k");
        assert!(
            matches!(outcome, Err(Error::DeadlineExceeded(_))),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500) + DEADLINE_SLACK);
    });
}
