#![cfg(feature = "server")]
//! Bad servers and bad networks, over real loopback sockets: every call ends
//! with a typed error inside its deadline, and the client recovers on its own.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, Error, RetryThrottle};

mod common;

use common::load::drive;
use common::net::{ClosedPort, SilentServer};
use common::rogue::{Rogue, Step};

/// How late past its deadline a call may return: scheduling noise on a
/// loaded 2-core machine, far below anything a user would call a hang.
const DEADLINE_SLACK: Duration = Duration::from_millis(750);

#[test]
fn deadline_is_honoured_when_server_never_answers() {
    let silent = SilentServer::start();
    let timeout = Duration::from_millis(800);
    let client = Client::builder(&silent.address().to_string())
        .timeout(timeout)
        .build()
        .unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let outcome = client.get("k");
        let elapsed = started.elapsed();
        assert!(
            matches!(outcome, Err(Error::DeadlineExceeded(_))),
            "got {outcome:?}"
        );
        assert!(elapsed >= timeout, "gave up early after {elapsed:?}");
        assert!(elapsed < timeout + DEADLINE_SLACK, "took {elapsed:?}");
    }
}

#[test]
fn deadline_is_honoured_for_many_concurrent_callers_of_a_silent_server() {
    let silent = SilentServer::start();
    let timeout = Duration::from_millis(600);
    let client = Client::builder(&silent.address().to_string())
        .timeout(timeout)
        .build()
        .unwrap();
    let callers: Vec<_> = (0..32)
        .map(|i| {
            let client = client.clone();
            thread::spawn(move || {
                let started = Instant::now();
                let outcome = client.set(&format!("k{i}"), "v");
                (outcome, started.elapsed())
            })
        })
        .collect();
    for caller in callers {
        let (outcome, elapsed) = caller.join().unwrap();
        assert!(
            matches!(outcome, Err(Error::DeadlineExceeded(_))),
            "got {outcome:?}"
        );
        assert!(elapsed < timeout + DEADLINE_SLACK, "took {elapsed:?}");
    }
}

#[test]
fn nothing_listening_is_unavailable_after_the_retry_budget_inside_the_deadline() {
    let closed = ClosedPort::new();
    let address = closed.address();
    let timeout = Duration::from_secs(5);
    let client = Client::builder(&address.to_string())
        .timeout(timeout)
        .max_retries(3)
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = client.get("k");
    let elapsed = started.elapsed();
    match outcome {
        Err(Error::Unavailable(message)) => {
            assert!(message.contains(&address.to_string()), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(elapsed < timeout, "took {elapsed:?}");
}

#[test]
fn non_idempotent_call_is_still_retried_when_it_never_reached_the_server() {
    // Connection refused: the request surely never reached a server, so
    // even set_if_absent may be retried; with enough budget the server that
    // comes up meanwhile answers it.
    let closed = ClosedPort::new();
    let address = closed.address();
    let client = Client::builder(&address.to_string())
        .timeout(Duration::from_secs(10))
        .max_retries(200)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(50))
        // This test retries on purpose until the server appears; the budget
        // would (rightly) stop that after five failures.
        .retry_throttle(None)
        .build()
        .unwrap();
    let starter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        let address = closed.release();
        Server::builder()
            .listen(&address.to_string())
            .start()
            .expect("start on the freed port")
    });
    let stored = client.set_if_absent("lock", "me");
    let _server = starter.join().unwrap();
    assert_eq!(stored, Ok(true));
}

#[test]
fn client_recovers_without_rebuilding_after_the_server_restarts() {
    let server = Server::local().unwrap();
    let address = server.address();
    let client = Client::builder(&address)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    client.set("k", "before").unwrap();

    server.shutdown();
    let outcome = client.with_max_retries(0).get("k");
    assert!(
        matches!(outcome, Err(Error::Unavailable(_))),
        "got {outcome:?}"
    );

    let _restarted = Server::builder().listen(&address).start().unwrap();
    // Reconnects back off (1 s ±20 % after the first failure); keep asking
    // for a bounded time.
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get("k") {
            Ok(value) => {
                assert_eq!(value, None, "a restarted server starts empty");
                break;
            }
            Err(Error::Unavailable(_)) if Instant::now() < give_up => {
                thread::sleep(Duration::from_millis(100))
            }
            Err(other) => panic!("did not recover: {other:?}"),
        }
    }
    client.set("k", "after").unwrap();
    assert_eq!(client.get_string("k").unwrap().as_deref(), Some("after"));
}

#[test]
fn close_ends_calls_in_flight_with_closed_and_refuses_new_ones() {
    // The server holds every request it receives, so a call it has seen is
    // in flight until something ends it.
    const CALLERS: usize = 8;
    let holding = Rogue::start(|_| vec![Step::Stall]);
    let client = Client::builder(&holding.address())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let client = client.clone();
            thread::spawn(move || {
                let started = Instant::now();
                (client.get(&format!("k{i}")), started.elapsed())
            })
        })
        .collect();
    assert!(
        holding.wait_for_attempts(CALLERS, Duration::from_secs(10)),
        "only {} of {CALLERS} calls reached the server",
        holding.attempts()
    );
    assert!(callers.iter().all(|caller| !caller.is_finished()));
    let closing = Instant::now();
    client.close();
    assert!(
        closing.elapsed() < Duration::from_secs(2),
        "close took {:?}",
        closing.elapsed()
    );
    for caller in callers {
        let (outcome, elapsed) = caller.join().unwrap();
        assert_eq!(outcome, Err(Error::Closed));
        assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    }
    assert_eq!(client.get("k"), Err(Error::Closed));
    assert_eq!(client.clone().set("k", "v"), Err(Error::Closed));
    assert_eq!(holding.attempts(), CALLERS, "no call was retried");
}

#[test]
fn calls_beyond_the_servers_stream_limit_queue_and_succeed() {
    let server = Server::builder().max_concurrent_streams(1).start().unwrap();
    let client = Client::builder(&server.address())
        .timeout(Duration::from_secs(10))
        .max_retries(0)
        .build()
        .unwrap();
    let callers: Vec<_> = (0..16)
        .map(|t| {
            let client = client.clone();
            thread::spawn(move || {
                for i in 0..50 {
                    let key = format!("t{t}-{i}");
                    client.set(&key, key.as_bytes()).unwrap();
                    assert_eq!(client.get(&key).unwrap().as_deref(), Some(key.as_bytes()));
                }
            })
        })
        .collect();
    for caller in callers {
        caller
            .join()
            .expect("every call must succeed despite the limit of one stream");
    }
    assert_eq!(client.stats().unwrap().size, 16 * 50);
}

/// A TCP proxy in front of a server whose existing connections can be
/// black-holed: bytes are read and dropped, sockets stay open, exactly what
/// a client sees of a vanished host or a broken path. New connections are
/// forwarded normally.
struct BlackHoleProxy {
    address: SocketAddr,
    connections: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    /// While set, new connections are black-holed from their first byte:
    /// the kernel still accepts them, as it does for a stopped process.
    hung: Arc<AtomicBool>,
}

impl BlackHoleProxy {
    fn start(upstream: SocketAddr) -> BlackHoleProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let connections: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let registry = Arc::clone(&connections);
        let hung = Arc::new(AtomicBool::new(false));
        let hang_new = Arc::clone(&hung);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let holed = Arc::new(AtomicBool::new(hang_new.load(Ordering::Relaxed)));
                registry.lock().unwrap().push(Arc::clone(&holed));
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let holed = Arc::clone(&holed);
                    thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        loop {
                            match from.read(&mut buffer) {
                                Ok(0) | Err(_) => return,
                                Ok(n) if !holed.load(Ordering::Relaxed) => {
                                    if std::io::Write::write_all(&mut to, &buffer[..n]).is_err() {
                                        return;
                                    }
                                }
                                Ok(_) => {}
                            }
                        }
                    });
                }
            }
        });
        BlackHoleProxy {
            address,
            connections,
            hung,
        }
    }

    /// The server hangs: every connection, old and new, goes silent.
    fn hang(&self) {
        self.hung.store(true, Ordering::Relaxed);
        self.black_hole_existing();
    }

    /// The server resumes with its data as it was: every connection
    /// forwards again.
    fn resume(&self) {
        self.hung.store(false, Ordering::Relaxed);
        for holed in self.connections.lock().unwrap().iter() {
            holed.store(false, Ordering::Relaxed);
        }
    }

    fn black_hole_existing(&self) {
        for holed in self.connections.lock().unwrap().iter() {
            holed.store(true, Ordering::Relaxed);
        }
    }

    fn connections(&self) -> usize {
        self.connections.lock().unwrap().len()
    }
}

/// Polls `get` until it returns the expected value, for a bounded time.
fn eventually_reads(client: &Client, key: &str, expected: &str, within: Duration) {
    let give_up = Instant::now() + within;
    loop {
        match client.get_string(key) {
            Ok(Some(value)) if value == expected => return,
            other if Instant::now() >= give_up => panic!("still failing: {other:?}"),
            _ => thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn keepalive_replaces_a_black_holed_connection_and_the_idempotent_call_succeeds() {
    let server = Server::local().unwrap();
    let proxy = BlackHoleProxy::start(server.local_addr());
    let client = Client::builder(&proxy.address.to_string())
        .timeout(Duration::from_secs(3))
        .keepalive(Some(Duration::from_millis(200)), Duration::from_millis(300))
        .build()
        .unwrap();
    client.set("k", "v").unwrap();
    proxy.black_hole_existing();

    // The ping goes unanswered, the connection is dropped, and the get is
    // retried on a fresh connection, all inside its deadline.
    let started = Instant::now();
    assert_eq!(client.get_string("k").unwrap().as_deref(), Some("v"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(proxy.connections() >= 2, "no fresh connection was made");
}

#[test]
fn a_timed_out_call_probes_the_connection_so_later_calls_get_a_fresh_one() {
    let server = Server::local().unwrap();
    let proxy = BlackHoleProxy::start(server.local_addr());
    let timeout = Duration::from_millis(700);
    let client = Client::builder(&proxy.address.to_string())
        .timeout(timeout)
        .max_retries(0)
        // No periodic pings: only the probe after a timed-out call.
        .keepalive(None, Duration::from_millis(300))
        .build()
        .unwrap();
    client.set("k", "v").unwrap();
    proxy.black_hole_existing();

    let started = Instant::now();
    let outcome = client.get("k");
    assert!(
        matches!(outcome, Err(Error::DeadlineExceeded(_))),
        "got {outcome:?}"
    );
    assert!(started.elapsed() < timeout + DEADLINE_SLACK);

    eventually_reads(&client, "k", "v", Duration::from_secs(5));
    assert!(proxy.connections() >= 2);
}

#[test]
fn calls_in_flight_on_a_black_holed_connection_end_by_their_deadline_without_retries() {
    let server = Server::local().unwrap();
    let proxy = BlackHoleProxy::start(server.local_addr());
    let timeout = Duration::from_millis(800);
    let client = Client::builder(&proxy.address.to_string())
        .timeout(timeout)
        .max_retries(0)
        .keepalive(Some(Duration::from_millis(200)), Duration::from_millis(300))
        .build()
        .unwrap();
    client.set("k", "v").unwrap();
    proxy.black_hole_existing();
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            thread::spawn(move || {
                let started = Instant::now();
                (client.get("k"), started.elapsed())
            })
        })
        .collect();
    for caller in callers {
        let (outcome, elapsed) = caller.join().unwrap();
        // Keepalive usually finds the dead connection first (Unavailable);
        // otherwise the deadline ends the call.
        assert!(
            matches!(
                outcome,
                Err(Error::Unavailable(_) | Error::DeadlineExceeded(_))
            ),
            "got {outcome:?}"
        );
        assert!(elapsed < timeout + DEADLINE_SLACK, "took {elapsed:?}");
    }
    eventually_reads(&client, "k", "v", Duration::from_secs(5));
}

#[test]
fn a_hung_server_is_noticed_within_about_a_second_and_calls_then_fail_fast() {
    let server = Server::local().unwrap();
    let proxy = BlackHoleProxy::start(server.local_addr());
    let timeout = Duration::from_millis(300);
    let client = Client::builder(&proxy.address.to_string())
        .timeout(timeout)
        .build()
        .unwrap();
    client.set("k", "v").unwrap();
    proxy.hang();

    let probed = client.clone();
    let calls = drive(8, Duration::from_secs(3), move |_| {
        let outcome = probed.get("k");
        assert!(
            matches!(
                outcome,
                Err(Error::Unavailable(_) | Error::DeadlineExceeded(_))
            ),
            "got {outcome:?}"
        );
        false
    });
    // Detection: a call times out (300 ms), its probe goes unanswered (1 s);
    // allow as much again for a loaded machine. From then on no call waits
    // out its deadline: each fails at once.
    let noticed_by =
        timeout + tiny_cache_client::DEFAULT_PROBE_TIMEOUT + Duration::from_millis(700);
    let late: Vec<_> = calls
        .iter()
        .filter(|call| call.started > noticed_by && call.took >= timeout)
        .collect();
    assert!(
        late.is_empty(),
        "calls still waited out their deadline: {late:?}"
    );
    let after = calls
        .iter()
        .filter(|call| call.started > noticed_by)
        .count();
    // Deadline-bound, 8 threads over the last second could make ~27 calls.
    assert!(after > 500, "only {after} calls after the hang was noticed");
    for call in &calls {
        assert!(
            call.took < timeout + DEADLINE_SLACK,
            "a call took {:?}",
            call.took
        );
    }

    // The server resumes with its data: the client finds it again.
    proxy.resume();
    eventually_reads(&client, "k", "v", Duration::from_secs(10));
}

#[cfg(feature = "cache")]
#[test]
fn fail_open_serves_at_the_loaders_speed_once_a_hung_server_is_noticed() {
    use std::sync::atomic::AtomicUsize;
    use tiny_cache_client::cache::ReadThrough;

    let server = Server::local().unwrap();
    let proxy = BlackHoleProxy::start(server.local_addr());
    let timeout = Duration::from_millis(300);
    let client = Client::builder(&proxy.address.to_string())
        .timeout(timeout)
        .build()
        .unwrap();
    let cache = ReadThrough::builder(client).fail_open(true).build();
    cache
        .get_with("warm", Duration::from_secs(60), || "up")
        .unwrap();
    proxy.hang();

    let loads = Arc::new(AtomicUsize::new(0));
    let (reader, counted) = (cache.clone(), Arc::clone(&loads));
    let calls = drive(8, Duration::from_secs(3), move |_| {
        let value = reader
            .get_with("k", Duration::from_secs(60), || {
                counted.fetch_add(1, Ordering::Relaxed);
                "computed"
            })
            .expect("fail-open never fails a read");
        assert_eq!(&value[..], b"computed");
        true
    });
    let noticed_by =
        timeout + tiny_cache_client::DEFAULT_PROBE_TIMEOUT + Duration::from_millis(700);
    let after: Vec<_> = calls
        .iter()
        .filter(|call| call.started > noticed_by)
        .collect();
    let waited = after.iter().filter(|call| call.took >= timeout).count();
    assert_eq!(waited, 0, "reads still waited for the hung server");
    assert!(
        after.len() > 500,
        "only {} reads after the hang was noticed",
        after.len()
    );
    // Every read computed its value; concurrent reads of the key share one
    // loader run (single flight), so at least one run per 8 readers.
    assert!(loads.load(Ordering::Relaxed) >= after.len() / 8);
    assert!(cache.local_stats().store_failures > 0);
}

#[test]
fn retry_budget_stops_retries_against_a_dead_server() {
    let closed = ClosedPort::new();
    let address = closed.address().to_string();
    let build = |throttle| {
        Client::builder(&address)
            .timeout(Duration::from_secs(10))
            .max_retries(40)
            .retry_backoff(Duration::from_millis(25), Duration::from_millis(25))
            .retry_throttle(throttle)
            .build()
            .unwrap()
    };

    let budgeted = build(Some(RetryThrottle::default()));
    // The first call spends the budget (five failures) ...
    assert!(matches!(budgeted.get("k"), Err(Error::Unavailable(_))));
    // ... so the next one fails at once instead of retrying 40 times.
    let started = Instant::now();
    assert!(matches!(budgeted.get("k"), Err(Error::Unavailable(_))));
    let with_budget = started.elapsed();

    let unbudgeted = build(None);
    let started = Instant::now();
    assert!(matches!(unbudgeted.get("k"), Err(Error::Unavailable(_))));
    let without_budget = started.elapsed();

    // 40 pauses of up to 25 ms average about 500 ms; no retry at all takes
    // microseconds, so a generous bound still tells the two apart.
    assert!(
        without_budget > Duration::from_millis(250),
        "{without_budget:?}"
    );
    assert!(with_budget < Duration::from_millis(150), "{with_budget:?}");
}

#[test]
fn deadline_is_honoured_when_the_server_trickles_one_byte_at_a_time() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            thread::spawn(move || {
                // An HTTP/2 SETTINGS frame header, one byte at a time: it
                // looks alive but never completes.
                for byte in [0u8, 0, 0, 4, 0, 0, 0, 0, 0].iter().cycle() {
                    if std::io::Write::write_all(&mut socket, &[*byte]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(200));
                }
            });
        }
    });
    let timeout = Duration::from_millis(1500);
    let client = Client::builder(&address.to_string())
        .timeout(timeout)
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = client.get("k");
    assert!(
        matches!(outcome, Err(Error::DeadlineExceeded(_))),
        "got {outcome:?}"
    );
    assert!(
        started.elapsed() < timeout + DEADLINE_SLACK,
        "took {:?}",
        started.elapsed()
    );
}

/// Accepts connections and closes them at once, noting when each came.
fn slamming_listener(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<Instant>> {
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let mut accepted = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((socket, _)) => {
                    accepted.push(Instant::now());
                    drop(socket);
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
        accepted
    })
}

#[test]
fn reconnect_attempts_back_off_by_1_6_with_jitter_and_reset_after_a_success() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let slammer = slamming_listener(listener, Arc::clone(&stop));
    let client = Client::builder(&address.to_string())
        .timeout(Duration::from_secs(10))
        .max_retries(0)
        .pool_size(1)
        .build()
        .unwrap();
    // Attempts at 0, ~1 s, ~2.6 s, ~5.2 s (each ±20 %).
    thread::sleep(Duration::from_millis(4000));
    stop.store(true, Ordering::Relaxed);
    let accepted = slammer.join().unwrap();
    assert!(accepted.len() >= 3, "only {} attempts", accepted.len());
    let gaps: Vec<f64> = accepted
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    for (n, gap) in gaps.iter().enumerate() {
        let base = 1.6f64.powi(n as i32);
        assert!(
            *gap >= base * 0.8 - 0.05 && *gap <= base * 1.2 + 0.25,
            "gap {n} was {gap:.3} s, expected {base:.2} s ±20 % (gaps {gaps:?})"
        );
    }
    // Calls meanwhile fail fast with the connection error: far sooner than
    // their 10 s deadline.
    let started = Instant::now();
    assert!(matches!(client.get("k"), Err(Error::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(2));

    // The server comes up: the next attempt succeeds, which resets the
    // backoff, so after it dies again the first gap is ~1 s, not ~4 s.
    let server = Server::builder()
        .listen(&address.to_string())
        .start()
        .unwrap();
    let give_up = Instant::now() + Duration::from_secs(8);
    while client.get("k").is_err() {
        assert!(Instant::now() < give_up, "never reconnected");
        thread::sleep(Duration::from_millis(50));
    }
    server.shutdown();
    // The worker reconnects at once (refused: nothing is bound yet), then
    // waits one reset-sized backoff (~1 s) — not the ~6.5 s the fifth
    // consecutive failure would wait without the reset.
    let listener = TcpListener::bind(address).unwrap();
    let rebound = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let slammer = slamming_listener(listener, Arc::clone(&stop));
    thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    let accepted = slammer.join().unwrap();
    let first = accepted
        .first()
        .expect("no reconnect attempt within 2 s of the restart");
    let waited = (*first - rebound).as_secs_f64();
    assert!(
        waited <= 1.45,
        "first attempt after a success came {waited:.3} s later"
    );
}
