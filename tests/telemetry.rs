//! What the `metrics` feature reports, read back through a debugging
//! recorder, against embedded servers over loopback.
#![cfg(all(feature = "server", feature = "metrics"))]

use std::collections::HashMap;
use std::time::Duration;

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
