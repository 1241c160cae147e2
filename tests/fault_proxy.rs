#![cfg(feature = "server")]
//! The fault proxy of `tests/common/fault_proxy.rs` does what each fault
//! says, proven with an embedded server and a `Client` through it (and raw
//! sockets where only they can see the difference, an RST from a FIN).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, Error};

mod common;

use common::fault_proxy::{Direction, Fault, FaultProxy};

/// How late past its deadline a call may return on a loaded 2-core machine.
const DEADLINE_SLACK: Duration = Duration::from_millis(750);
/// How long a test waits for the client to get through again after a fault
/// ends: a reconnect, maybe after one backoff step (1 s).
const RECOVERY_WAIT: Duration = Duration::from_secs(4);

fn client(proxy: &FaultProxy, timeout: Duration) -> Client {
    Client::builder(&proxy.address())
        .timeout(timeout)
        .build()
        .unwrap()
}

/// Polls `condition` every 20 ms until it holds or `wait` passes.
/// Asserts that `client` reads `expected` under `key` again within
/// [`RECOVERY_WAIT`].
fn reads_again(client: &Client, key: &str, expected: impl AsRef<[u8]>, when: &str) {
    let expected = expected.as_ref();
    assert!(
        eventually(RECOVERY_WAIT, || client.get(key).ok().flatten().as_deref()
            == Some(expected)),
        "{key} did not read back {when} within {RECOVERY_WAIT:?}"
    );
}

fn eventually(wait: Duration, condition: impl Fn() -> bool) -> bool {
    let give_up = Instant::now() + wait;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= give_up {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn timed<T>(call: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let outcome = call();
    (outcome, started.elapsed())
}

fn fastest_get(client: &Client, key: &str, times: usize) -> Duration {
    (0..times)
        .map(|_| {
            let (outcome, took) = timed(|| client.get(key));
            outcome.unwrap();
            took
        })
        .min()
        .unwrap()
}

#[test]
fn clean_forwarding_serves_calls_and_counts_connections() {
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let client = client(&proxy, Duration::from_secs(2));
    client.set("k", "v").unwrap();
    assert_eq!(client.get_string("k").unwrap().as_deref(), Some("v"));
    assert_eq!(proxy.connections(), 1);
    assert_eq!(proxy.accepted(), 1);
    let direct = Client::new(&server.address()).unwrap();
    assert_eq!(direct.get_string("k").unwrap().as_deref(), Some("v"));
}

#[test]
fn latency_delays_every_get_by_at_least_the_latency_and_clear_removes_it() {
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let client = client(&proxy, Duration::from_secs(5));
    client.set("k", "v").unwrap();
    let (latency, jitter) = (Duration::from_millis(120), Duration::from_millis(20));

    proxy.set(Fault::latency(latency, jitter));
    for _ in 0..3 {
        let (outcome, took) = timed(|| client.get("k"));
        assert_eq!(outcome.unwrap().as_deref(), Some(&b"v"[..]));
        assert!(
            took >= latency - jitter,
            "a get took {took:?} under {latency:?} ± {jitter:?}"
        );
    }

    // Both ways: the request is late too.
    proxy.set(Fault::Latency {
        latency,
        jitter,
        direction: Direction::Both,
    });
    let (outcome, took) = timed(|| client.get("k"));
    outcome.unwrap();
    assert!(
        took >= 2 * (latency - jitter),
        "a get took {took:?} with latency both ways"
    );

    proxy.clear();
    let fastest = fastest_get(&client, "k", 5);
    assert!(
        fastest < latency - jitter,
        "still slow after clear: {fastest:?}"
    );
}

#[test]
fn latency_is_a_delay_line_not_a_pause_per_chunk() {
    // Eight callers at once: each reply is late by the latency, not by the
    // sum of the latencies of the replies before it.
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let client = client(&proxy, Duration::from_secs(5));
    client.set("k", "v").unwrap();
    let latency = Duration::from_millis(150);
    proxy.set(Fault::latency(latency, Duration::ZERO));
    let (_, took) = timed(|| {
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                thread::spawn(move || client.get("k").unwrap())
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.join().unwrap().as_deref(), Some(&b"v"[..]));
        }
    });
    assert!(took >= latency, "took {took:?}");
    assert!(
        took < 4 * latency,
        "eight concurrent gets took {took:?}: latencies added up"
    );
}

#[test]
fn black_hole_times_a_get_out_at_its_deadline_for_old_and_new_connections_and_clear_restores_it() {
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let timeout = Duration::from_millis(300);
    let client = client(&proxy, timeout);
    client.set("k", "v").unwrap();

    proxy.set(Fault::BlackHole);
    let (outcome, took) = timed(|| client.get("k"));
    assert!(
        matches!(outcome, Err(Error::DeadlineExceeded(_))),
        "got {outcome:?}"
    );
    assert!(took >= timeout, "gave up early: {took:?}");
    assert!(took < timeout + DEADLINE_SLACK, "took {took:?}");

    // A new connection is accepted and swallowed too.
    let accepted = proxy.accepted();
    let newcomer = self::client(&proxy, timeout);
    let (outcome, took) = timed(|| newcomer.get("k"));
    assert!(
        outcome.is_err(),
        "a new connection got through: {outcome:?}"
    );
    assert!(took < timeout + DEADLINE_SLACK, "took {took:?}");
    assert!(
        proxy.accepted() > accepted,
        "the new connection was not accepted"
    );

    proxy.clear();
    for client in [&client, &newcomer] {
        reads_again(client, "k", "v", "after clear");
    }
}

#[test]
fn half_open_forwards_requests_but_no_reply_and_clear_restores_it() {
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let timeout = Duration::from_millis(300);
    let client = client(&proxy, timeout);
    client.set("k", "old").unwrap();

    proxy.set(Fault::HalfOpen);
    let (outcome, took) = timed(|| client.set("k", "new"));
    assert!(
        matches!(outcome, Err(Error::DeadlineExceeded(_))),
        "got {outcome:?}"
    );
    assert!(took < timeout + DEADLINE_SLACK, "took {took:?}");
    // The request reached the server: only the reply was lost.
    let direct = Client::new(&server.address()).unwrap();
    assert_eq!(direct.get_string("k").unwrap().as_deref(), Some("new"));

    proxy.clear();
    reads_again(&client, "k", "new", "after clear");
}

#[test]
fn reset_peer_fails_a_large_get_fast_with_unavailable_and_small_ones_still_pass() {
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let timeout = Duration::from_secs(3);
    let client = client(&proxy, timeout);
    let big = vec![b'x'; 300 * 1024];
    client.set("big", &big).unwrap();
    client.set("small", "v").unwrap();

    proxy.set(Fault::ResetPeer {
        after_bytes: 64 * 1024,
    });
    let (outcome, took) = timed(|| client.get("big"));
    assert!(
        matches!(outcome, Err(Error::Unavailable(_))),
        "got {outcome:?}"
    );
    assert!(took < timeout, "a reset took the whole deadline: {took:?}");

    // A fresh connection carries small replies until it reaches the limit.
    reads_again(&client, "small", "v", "under the reset fault");

    proxy.clear();
    reads_again(&client, "big", &big, "after clear");
}

/// An upstream that sends `bytes` to every connection and keeps it open.
fn talker(bytes: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    // Detached: it ends with the test process; a few sockets at most.
    thread::spawn(move || {
        for socket in listener.incoming().take(4) {
            let Ok(mut socket) = socket else { return };
            let _ = socket.write_all(&vec![7u8; bytes]);
            thread::spawn(move || {
                let mut sink = [0u8; 1024];
                while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    address
}

#[test]
fn reset_peer_sends_exactly_the_limit_then_an_rst() {
    let proxy = FaultProxy::start(talker(10_000));
    proxy.set(Fault::ResetPeer { after_bytes: 1000 });
    let mut socket = TcpStream::connect(proxy.local_addr()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut received = 0;
    let mut buffer = [0u8; 4096];
    let ending = loop {
        match socket.read(&mut buffer) {
            Ok(0) => break None,
            Ok(n) => received += n,
            Err(e) => break Some(e.kind()),
        }
    };
    assert_eq!(received, 1000);
    assert_eq!(ending, Some(ErrorKind::ConnectionReset), "not an RST");
}

#[test]
fn slow_close_holds_the_other_side_open_for_the_delay() {
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let delay = Duration::from_millis(400);

    let quick = client(&proxy, Duration::from_secs(2));
    quick.get("k").unwrap();
    let (_, took) = timed(|| {
        drop(quick);
        assert!(eventually(Duration::from_secs(3), || proxy.connections() == 0));
    });
    assert!(took < delay, "a plain close took {took:?}");

    proxy.set(Fault::SlowClose { delay });
    let slow = client(&proxy, Duration::from_secs(2));
    slow.get("k").unwrap();
    let (_, took) = timed(|| {
        drop(slow);
        assert!(eventually(Duration::from_secs(3), || proxy.connections() == 0));
    });
    assert!(
        took >= delay,
        "the connection ended {took:?} after the client closed"
    );
}

#[test]
fn bandwidth_limits_a_large_reply_and_clear_lifts_it() {
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let client = client(&proxy, Duration::from_secs(5));
    let big = vec![b'b'; 256 * 1024];
    client.set("big", &big).unwrap();
    let rate = 1024 * 1024;

    proxy.set(Fault::Bandwidth {
        bytes_per_second: rate,
    });
    let (outcome, took) = timed(|| client.get("big"));
    assert_eq!(outcome.unwrap().as_deref(), Some(&big[..]));
    // 256 KiB at 1 MiB/s: a quarter of a second.
    assert!(
        took >= Duration::from_millis(220),
        "took {took:?} at {rate} B/s"
    );

    proxy.clear();
    let (outcome, took) = timed(|| client.get("big"));
    outcome.unwrap();
    assert!(
        took < Duration::from_millis(200),
        "still limited after clear: {took:?}"
    );
}

#[test]
fn latency_over_rate_counts_requests_and_holds_replies_only_past_its_threshold() {
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let client = client(&proxy, Duration::from_secs(5));
    client.set("k", "v").unwrap();
    // Each call is one HTTP/2 request: the proxy counts them exactly.
    let before = proxy.requests();
    for _ in 0..10 {
        client.get("k").unwrap();
    }
    assert_eq!(proxy.requests() - before, 10);

    let latency = Duration::from_millis(300);
    proxy.set(Fault::LatencyOverRate {
        requests_per_second: 1000,
        latency,
    });
    assert!(
        fastest_get(&client, "k", 5) < latency,
        "held below the threshold"
    );

    // Past the threshold (10 requests within the last second), replies
    // are held: the calls that follow take at least the latency.
    proxy.set(Fault::LatencyOverRate {
        requests_per_second: 10,
        latency,
    });
    let held = (0..40)
        .map(|_| timed(|| client.get("k").unwrap()).1)
        .position(|took| took >= latency);
    assert!(held.is_some(), "no call held in 40 past the threshold");
}

#[test]
fn drop_connections_closes_them_now_and_refuse_new_keeps_clients_out_until_clear() {
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let client = client(&proxy, Duration::from_secs(2));
    client.set("k", "v").unwrap();
    assert_eq!(proxy.connections(), 1);

    proxy.set(Fault::DropConnections { refuse_new: false });
    assert!(eventually(Duration::from_millis(500), || proxy
        .connections()
        == 0));
    reads_again(&client, "k", "v", "after the connections were dropped");
    assert!(proxy.accepted() >= 2, "the client never connected again");

    proxy.set(Fault::DropConnections { refuse_new: true });
    assert!(eventually(Duration::from_millis(500), || proxy
        .connections()
        == 0));
    let timeout = Duration::from_secs(2);
    let refused = self::client(&proxy, timeout);
    let (outcome, took) = timed(|| refused.get("k"));
    assert!(
        matches!(outcome, Err(Error::Unavailable(_))),
        "got {outcome:?}"
    );
    assert!(
        took < timeout,
        "a refused connection took the whole deadline: {took:?}"
    );
    assert_eq!(proxy.connections(), 0);

    proxy.clear();
    let fresh = self::client(&proxy, timeout);
    assert_eq!(fresh.get_string("k").unwrap().as_deref(), Some("v"));
}

#[test]
fn partition_silences_existing_connections_or_drops_them_and_heals_on_clear() {
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let timeout = Duration::from_millis(300);
    let client = client(&proxy, timeout);
    client.set("k", "v").unwrap();

    // Kept: the connection stays, silent.
    proxy.set(Fault::Partition {
        drop_existing: false,
    });
    let (outcome, took) = timed(|| client.get("k"));
    assert!(
        matches!(outcome, Err(Error::DeadlineExceeded(_))),
        "got {outcome:?}"
    );
    assert!(took < timeout + DEADLINE_SLACK, "took {took:?}");
    proxy.clear();
    assert!(
        eventually(RECOVERY_WAIT, || client.get("k").is_ok()),
        "no get after the partition healed"
    );

    // Dropped: the client must connect again, into the partition.
    let accepted = proxy.accepted();
    proxy.set(Fault::Partition {
        drop_existing: true,
    });
    let (outcome, took) = timed(|| client.get("k"));
    assert!(outcome.is_err(), "a get crossed the partition: {outcome:?}");
    assert!(took < timeout + DEADLINE_SLACK, "took {took:?}");
    assert!(
        eventually(Duration::from_secs(2), || proxy.accepted() > accepted),
        "the client did not reconnect after its connection was dropped"
    );
    proxy.clear();
    assert!(
        eventually(RECOVERY_WAIT, || client.get("k").is_ok()),
        "no get after the partition healed"
    );
}

#[test]
fn dropping_the_proxy_closes_everything_promptly_and_frees_the_port() {
    let server = Server::local().unwrap();
    let proxy = FaultProxy::to(&server.address());
    let address = proxy.local_addr();
    let client = client(&proxy, Duration::from_secs(2));
    client.set("k", "v").unwrap();
    proxy.set(Fault::latency(Duration::from_secs(5), Duration::ZERO));
    // A call stuck in the delay line while the proxy goes away.
    let stuck = {
        let client = client.clone();
        thread::spawn(move || client.get("k"))
    };
    thread::sleep(Duration::from_millis(100));
    let (_, took) = timed(|| drop(proxy));
    assert!(took < Duration::from_secs(1), "drop took {took:?}");
    let (outcome, _) = timed(|| stuck.join().unwrap());
    assert!(
        outcome.is_err(),
        "a call passed a dropped proxy: {outcome:?}"
    );
    assert!(
        TcpStream::connect(address).is_err(),
        "the proxy still listens"
    );
}
