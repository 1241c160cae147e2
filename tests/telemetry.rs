//! What the `metrics` feature reports, read back through a debugging
//! recorder, against embedded servers over loopback.
#![cfg(all(feature = "server", feature = "metrics"))]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, Code, Error};

/// Every metric, keyed by (name, sorted labels).
type Seen = HashMap<(String, Vec<(String, String)>), DebugValue>;

fn seen(snapshotter: &Snapshotter) -> Seen {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let _: MetricKind = kind;
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), value)
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    labels
}

fn counter(seen: &Seen, name: &str, pairs: &[(&str, &str)]) -> u64 {
    match seen.get(&(name.to_owned(), labels(pairs))) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        Some(other) => panic!("{name} is not a counter: {other:?}"),
    }
}

/// The sum of a counter over all its labels.
fn total(seen: &Seen, name: &str) -> u64 {
    seen.iter()
        .filter(|((n, _), _)| n == name)
        .map(|(_, value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// One test, because a global recorder is installed once per process and
/// the reconnects are counted on the pool's worker threads.
#[test]
fn every_documented_metric_moves_and_labels_never_carry_keys() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let server = Server::local().unwrap();
    let address = server.local_addr();
    let client = Client::builder(&server.address())
        .metrics_prefix("t")
        .max_retries(2)
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(20))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client.set("user:12345", "v").unwrap();
    client.get("user:12345").unwrap();
    client.get("user:missing").unwrap();

    let limited = Server::builder().max_value_bytes(8).start().unwrap();
    let small = Client::builder(&limited.address())
        .metrics_prefix("t")
        .build()
        .unwrap();
    assert!(small.set("k", "more than eight bytes").is_err());

    // The debugging recorder hands counters over once: each snapshot has
    // what moved since the previous one.
    let now = seen(&snapshotter);
    let calls_before = total(&now, "t_calls_total");
    assert_eq!(
        counter(&now, "t_calls_total", &[("method", "Set"), ("code", "OK")]),
        1
    );
    assert_eq!(
        counter(&now, "t_calls_total", &[("method", "Get"), ("code", "OK")]),
        2
    );
    assert_eq!(
        counter(
            &now,
            "t_calls_total",
            &[("method", "Set"), ("code", "RESOURCE_EXHAUSTED")]
        ),
        1
    );
    assert_eq!(
        counter(
            &now,
            "t_errors_total",
            &[("method", "Set"), ("code", "RESOURCE_EXHAUSTED")]
        ),
        1
    );
    match now.get(&(
        "t_call_duration_seconds".to_owned(),
        labels(&[("method", "Get")]),
    )) {
        Some(DebugValue::Histogram(samples)) => {
            assert_eq!(samples.len(), 2);
            assert!(samples
                .iter()
                .all(|s| s.into_inner() > 0.0 && s.into_inner() < 5.0));
        }
        other => panic!("no Get latency histogram: {other:?}"),
    }
    match now.get(&("t_calls_in_flight".to_owned(), labels(&[("method", "Get")]))) {
        Some(DebugValue::Gauge(value)) => assert_eq!(value.into_inner(), 0.0),
        other => panic!("no in-flight gauge: {other:?}"),
    }

    // Retries and reconnects: the server goes away under the client.
    server.kill();
    let failed = client.get("user:12345").unwrap_err();
    assert!(matches!(failed, Error::Unavailable(_)), "{failed:?}");
    let restarted = Server::builder()
        .listen(&address.to_string())
        .start()
        .unwrap();
    let back = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        client.get("user:12345").is_ok()
    });
    assert!(back, "the client never reconnected to {address}");
    let now = seen(&snapshotter);
    assert!(counter(&now, "t_retries_total", &[("method", "Get")]) >= 1);
    assert!(counter(&now, "t_reconnects_total", &[]) >= 1);
    assert!(
        counter(
            &now,
            "t_errors_total",
            &[("method", "Get"), ("code", "UNAVAILABLE")]
        ) >= 1
    );

    // The snapshot agrees with what went to the recorder (which also saw
    // the other client's one refused Set).
    let snapshot = client.metrics();
    let recorded_calls = calls_before + total(&now, "t_calls_total");
    assert_eq!(snapshot.calls, recorded_calls - 1, "{snapshot:?}");
    assert_eq!(
        snapshot.errors_with(Code::Unavailable),
        counter(
            &now,
            "t_errors_total",
            &[("method", "Get"), ("code", "UNAVAILABLE")]
        )
    );
    assert!(
        snapshot.retries >= 1 && snapshot.reconnects >= 1,
        "{snapshot:?}"
    );
    assert_eq!(snapshot.in_flight, 0);

    // Labels are bounded: methods and codes, never a key.
    for (name, labels) in now.keys() {
        for (key, value) in labels {
            assert!(key == "method" || key == "code", "{name}: label {key}");
            assert!(!value.contains("user"), "{name}: {key}={value}");
        }
    }
    drop(restarted);
}

/// A TCP relay to a server whose way in can be shut: while held, what the
/// client sends waits in the relay, so its calls stay in flight.
struct Gate {
    address: String,
    held: Arc<(Mutex<bool>, Condvar)>,
}

impl Gate {
    fn start(upstream: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let held: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let gate = Arc::clone(&held);
        thread::spawn(move || {
            for downstream in listener.incoming() {
                let Ok(downstream) = downstream else { return };
                let Ok(upstream) = TcpStream::connect(upstream) else {
                    return;
                };
                for stream in [&downstream, &upstream] {
                    stream.set_nodelay(true).unwrap();
                }
                let (up, down) = (
                    upstream.try_clone().unwrap(),
                    downstream.try_clone().unwrap(),
                );
                let gate = Arc::clone(&gate);
                thread::spawn(move || pump(down, up, Some(&gate)));
                thread::spawn(move || pump(upstream, downstream, None));
            }
        });
        Gate { address, held }
    }

    fn hold(&self, held: bool) {
        let (lock, changed) = &*self.held;
        *lock.lock().unwrap() = held;
        changed.notify_all();
    }
}

/// Copies `from` to `to` until either closes; each chunk waits while the
/// gate, if any, is held.
fn pump(mut from: TcpStream, mut to: TcpStream, gate: Option<&(Mutex<bool>, Condvar)>) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((lock, changed)) = gate {
            let _open = changed
                .wait_while(lock.lock().unwrap(), |held| *held)
                .unwrap();
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[test]
fn the_in_flight_gauge_counts_the_calls_held_on_the_wire_and_returns_to_zero() {
    const HELD: usize = 4;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let server = Server::local().unwrap();
    let gate = Gate::start(server.local_addr());
    // The debugging recorder hands a gauge over as its change since the
    // previous snapshot: the level is the sum of what every snapshot saw.
    let mut level = 0.0;
    let mut observe = || {
        let now = seen(&snapshotter);
        if let Some(value) =
            now.get(&("g_calls_in_flight".to_owned(), labels(&[("method", "Get")])))
        {
            match value {
                DebugValue::Gauge(change) => level += change.into_inner(),
                other => panic!("not a gauge: {other:?}"),
            }
        }
        (level, now)
    };
    // Calls record on their own thread: each runs with this recorder.
    let client = metrics::with_local_recorder(&recorder, || {
        Client::builder(&gate.address)
            .metrics_prefix("g")
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    });
    metrics::with_local_recorder(&recorder, || client.set("k", "v").unwrap());
    assert_eq!(observe().0, 0.0, "nothing in flight yet");

    gate.hold(true);
    thread::scope(|scope| {
        let calls: Vec<_> = (0..HELD)
            .map(|_| {
                let (client, recorder) = (&client, &recorder);
                scope.spawn(move || metrics::with_local_recorder(recorder, || client.get("k")))
            })
            .collect();
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            let (level, _) = observe();
            if level == HELD as f64 {
                break;
            }
            assert!(level <= HELD as f64, "{level} in flight of {HELD}");
            assert!(Instant::now() < give_up, "the gauge stayed at {level}");
            thread::sleep(Duration::from_millis(5));
        }
        // Still held: the calls cannot have finished.
        assert_eq!(client.metrics().in_flight, HELD as u64);
        gate.hold(false);
        for call in calls {
            let value = call.join().unwrap().unwrap();
            assert_eq!(value.as_deref(), Some(&b"v"[..]));
        }
    });
    let (level, now) = observe();
    assert_eq!(level, 0.0, "every held call ended");
    assert_eq!(client.metrics().in_flight, 0);
    assert_eq!(
        counter(&now, "g_calls_total", &[("method", "Get"), ("code", "OK")]),
        HELD as u64
    );
}
