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
use tiny_cache_client::{Client, Error};

/// How late past its deadline a call may return: scheduling noise on a
/// loaded 2-core machine, far below anything a user would call a hang.
const DEADLINE_SLACK: Duration = Duration::from_millis(500);

/// A TCP server that accepts connections and reads them but never writes a
/// byte: the shape of a wedged process or a black-holing proxy.
struct SilentServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (stop_flag, sockets) = (Arc::clone(&stop), Arc::clone(&held));
        thread::spawn(move || {
            while !stop_flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => {
                        let mut reader = socket.try_clone().expect("clone");
                        sockets.lock().unwrap().push(socket);
                        // Drain what the client sends so its writes never
                        // block; answer nothing.
                        thread::spawn(move || {
                            let mut sink = [0u8; 4096];
                            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SilentServer {
            address,
            stop,
            held,
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for socket in self.held.lock().unwrap().drain(..) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A loopback port with nothing listening on it (bound, then released).
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

#[test]
fn deadline_is_honoured_when_server_never_answers() {
    let silent = SilentServer::start();
    let timeout = Duration::from_millis(800);
    let client = Client::builder(&silent.address.to_string())
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
    let client = Client::builder(&silent.address.to_string())
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
    let address = free_port();
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
    let address = free_port();
    let client = Client::builder(&address.to_string())
        .timeout(Duration::from_secs(10))
        .max_retries(200)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(50))
        .build()
        .unwrap();
    let starter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
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
    let silent = SilentServer::start();
    let client = Client::builder(&silent.address.to_string())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let client = client.clone();
            thread::spawn(move || {
                let started = Instant::now();
                (client.get(&format!("k{i}")), started.elapsed())
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
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
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    }
    assert_eq!(client.get("k"), Err(Error::Closed));
    assert_eq!(client.clone().set("k", "v"), Err(Error::Closed));
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
