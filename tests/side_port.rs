#![cfg(feature = "server")]
//! The embedded server's HTTP/1.1 side port (`/health`, `/ready`, `/live`,
//! `/stats`, `/metrics`), read with a real HTTP client over loopback: the
//! JSON fields and metric names of the reference server.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use serde_json::Value;
use tiny_cache_client::server::Server;
use tiny_cache_client::Client;

/// Deadline of every HTTP and gRPC call here: far above what a loaded
/// 2-core machine needs, low enough that a hang fails the test.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The `/health` and `/ready` fields, as the contract lists them.
const HEALTH_FIELDS: [&str; 7] = [
    "status",
    "uptime_seconds",
    "cache_size",
    "cache_hits",
    "cache_misses",
    "active_requests",
    "timestamp",
];

const LIVE_FIELDS: [&str; 3] = ["status", "uptime_seconds", "timestamp"];

const STATS_FIELDS: [&str; 18] = [
    "size",
    "hits",
    "misses",
    "evictions",
    "lru_evictions",
    "expired_removals",
    "rejected_oversize",
    "rejected_capacity",
    "hit_rate",
    "memory_usage_bytes",
    "memory_usage_mb",
    "max_memory_bytes",
    "max_memory_mb",
    "max_value_bytes",
    "max_items",
    "uptime_seconds",
    "active_requests",
    "timestamp",
];

const COUNTERS: [&str; 7] = [
    "tiny_cache_hits_total",
    "tiny_cache_misses_total",
    "tiny_cache_evictions_total",
    "tiny_cache_lru_evictions_total",
    "tiny_cache_expired_removals_total",
    "tiny_cache_rejected_oversize_total",
    "tiny_cache_rejected_capacity_total",
];

const GAUGES: [&str; 9] = [
    "tiny_cache_entries",
    "tiny_cache_memory_usage_bytes",
    "tiny_cache_capacity_max_items",
    "tiny_cache_capacity_max_memory_bytes",
    "tiny_cache_capacity_max_value_bytes",
    "tiny_cache_capacity_item_saturation_ratio",
    "tiny_cache_capacity_memory_saturation_ratio",
    "tiny_cache_active_requests",
    "tiny_cache_uptime_seconds",
];

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(CALL_TIMEOUT))
        .build()
        .into()
}

struct Answer {
    status: u16,
    content_type: String,
    request_id: String,
    body: String,
}

fn fetch(server: &Server, path: &str, request_id: Option<&str>) -> Answer {
    let url = format!("{}{path}", server.health_url().expect("side port on"));
    let mut request = agent().get(&url);
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("GET {path}: no {name} header"))
            .to_owned()
    };
    let (content_type, request_id) = (header("content-type"), header("x-request-id"));
    Answer {
        status: response.status().as_u16(),
        content_type,
        request_id,
        body: response.body_mut().read_to_string().unwrap(),
    }
}

fn json(server: &Server, path: &str) -> Value {
    let answer = fetch(server, path, None);
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    assert_eq!(answer.content_type, "application/json", "{path}");
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", answer.body))
}

fn field_names(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn server_with_side_port() -> Server {
    Server::builder()
        .health_listen("127.0.0.1:0")
        .max_items(1000)
        .max_memory_bytes(2 * 1024 * 1024)
        .max_value_bytes(1024)
        .start()
        .expect("server starts")
}

/// Three calls the counters can be checked against: one entry, one hit,
/// one miss.
fn one_entry_one_hit_one_miss(server: &Server) {
    let client = Client::builder(&server.address())
        .timeout(CALL_TIMEOUT)
        .build()
        .unwrap();
    client.set("k", "value").unwrap();
    assert!(client.get("k").unwrap().is_some());
    assert!(client.get("missing").unwrap().is_none());
}

#[test]
fn health_and_ready_answer_healthy_with_the_reference_fields() {
    let server = server_with_side_port();
    one_entry_one_hit_one_miss(&server);
    for path in ["/health", "/ready"] {
        let body = json(&server, path);
        assert_eq!(field_names(&body), names(&HEALTH_FIELDS), "{path}");
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["cache_size"], 1);
        assert_eq!(body["cache_hits"], 1);
        assert_eq!(body["cache_misses"], 1);
        assert_eq!(body["active_requests"], 0);
        assert!(body["uptime_seconds"].as_f64().unwrap() >= 0.0);
        let timestamp = body["timestamp"].as_f64().unwrap();
        assert!((timestamp - unix_now()).abs() < 60.0, "{timestamp}");
    }
}

#[test]
fn live_answers_alive_with_uptime_and_timestamp_only() {
    let server = server_with_side_port();
    let body = json(&server, "/live");
    assert_eq!(field_names(&body), names(&LIVE_FIELDS));
    assert_eq!(body["status"], "alive");
    let first = body["uptime_seconds"].as_f64().unwrap();
    // Uptime counts from the start and only grows.
    let later = json(&server, "/live")["uptime_seconds"].as_f64().unwrap();
    assert!(first >= 0.0 && later >= first, "{first} then {later}");
}

#[test]
fn stats_answers_every_counter_and_limit_with_the_reference_fields() {
    let server = server_with_side_port();
    one_entry_one_hit_one_miss(&server);
    let body = json(&server, "/stats");
    assert_eq!(field_names(&body), names(&STATS_FIELDS));
    let expected = [
        ("size", 1.0),
        ("hits", 1.0),
        ("misses", 1.0),
        ("evictions", 0.0),
        ("lru_evictions", 0.0),
        ("expired_removals", 0.0),
        ("rejected_oversize", 0.0),
        ("rejected_capacity", 0.0),
        ("hit_rate", 0.5),
        ("memory_usage_bytes", 5.0 + 33.0),
        ("memory_usage_mb", 0.0),
        ("max_memory_bytes", 2.0 * 1024.0 * 1024.0),
        ("max_memory_mb", 2.0),
        ("max_value_bytes", 1024.0),
        ("max_items", 1000.0),
        ("active_requests", 0.0),
    ];
    for (field, value) in expected {
        assert_eq!(body[field].as_f64(), Some(value), "{field}: {body}");
    }
    // The same numbers as the gRPC Stats call.
    let stats = Client::new(&server.address()).unwrap().stats().unwrap();
    assert_eq!(body["size"].as_f64(), Some(stats.size as f64));
    assert_eq!(body["hit_rate"].as_f64(), Some(stats.hit_rate));
}

#[test]
fn metrics_are_prometheus_text_with_help_and_type_for_every_reference_name() {
    let server = server_with_side_port();
    one_entry_one_hit_one_miss(&server);
    let answer = fetch(&server, "/metrics", None);
    assert_eq!(answer.status, 200);
    assert!(
        answer.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        answer.content_type
    );
    let lines: Vec<&str> = answer.body.lines().collect();
    let value_of = |name: &str| -> f64 {
        let prefix = format!("{name} ");
        let line = lines
            .iter()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no sample of {name} in\n{}", answer.body));
        line[prefix.len()..].parse().unwrap()
    };
    for (kinds, kind) in [(&COUNTERS[..], "counter"), (&GAUGES[..], "gauge")] {
        for name in kinds {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("# HELP {name} "))),
                "no HELP for {name}"
            );
            assert!(
                lines.contains(&format!("# TYPE {name} {kind}").as_str()),
                "no TYPE {kind} for {name}"
            );
            assert!(value_of(name) >= 0.0);
        }
    }
    assert_eq!(value_of("tiny_cache_hits_total"), 1.0);
    assert_eq!(value_of("tiny_cache_misses_total"), 1.0);
    assert_eq!(value_of("tiny_cache_entries"), 1.0);
    assert_eq!(value_of("tiny_cache_memory_usage_bytes"), 38.0);
    assert_eq!(value_of("tiny_cache_capacity_max_items"), 1000.0);
    assert_eq!(value_of("tiny_cache_capacity_max_value_bytes"), 1024.0);
    assert_eq!(value_of("tiny_cache_capacity_item_saturation_ratio"), 0.001);
    assert_eq!(value_of("tiny_cache_active_requests"), 0.0);
}

#[test]
fn every_answer_carries_a_request_id_echoed_or_made_up() {
    let server = server_with_side_port();
    for path in ["/health", "/ready", "/live", "/stats", "/metrics", "/nope"] {
        let made_up = fetch(&server, path, None).request_id;
        assert_eq!(made_up.len(), 32, "{path}: {made_up}");
        assert!(made_up.chars().all(|c| c.is_ascii_hexdigit()), "{made_up}");
        assert_eq!(fetch(&server, path, Some("trace-7")).request_id, "trace-7");
    }
    assert_eq!(fetch(&server, "/nope", None).status, 404);
}

#[test]
fn active_requests_counts_a_grpc_call_in_progress() {
    let server = server_with_side_port();
    let active = |server: &Server| json(server, "/stats")["active_requests"].as_u64();
    let health_active = |server: &Server| json(server, "/health")["active_requests"].as_u64();
    let wait_for = |server: &Server, want: u64| {
        let started = Instant::now();
        while active(server) != Some(want) {
            assert!(
                started.elapsed() < CALL_TIMEOUT,
                "active_requests never became {want}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let address = server.local_addr();
    // Multi-threaded: the connection task keeps running on the worker while
    // this thread blocks on the HTTP checks.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Headers sent, message not yet: the call is in progress.
        let (response, mut stream) = start_get_without_its_message(address).await;
        tokio::task::block_in_place(|| wait_for(&server, 1));
        tokio::task::block_in_place(|| assert_eq!(health_active(&server), Some(1)));
        // CacheKey{key: "k"}, framed.
        stream
            .send_data(Bytes::from_static(&[0, 0, 0, 0, 3, 0x0a, 1, b'k']), true)
            .unwrap();
        let mut body = response.await.unwrap().into_body();
        while let Some(chunk) = body.data().await {
            chunk.unwrap();
        }
        body.trailers().await.unwrap();
    });
    wait_for(&server, 0);
}

#[test]
fn side_port_is_off_unless_asked_for() {
    let server = Server::local().unwrap();
    assert_eq!(server.health_local_addr(), None);
    assert_eq!(server.health_url(), None);
}

#[test]
fn side_port_address_that_does_not_parse_is_refused_at_start() {
    let refused = Server::builder().health_listen("localhost:http").start();
    assert!(
        matches!(
            refused,
            Err(tiny_cache_client::server::ServerError::InvalidAddress { ref address })
                if address == "localhost:http"
        ),
        "{refused:?}"
    );
}

#[cfg(feature = "cli")]
#[test]
fn serve_with_health_listen_prints_the_side_port_url_and_serves_it() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    struct Serving(std::process::Child);
    impl Drop for Serving {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--health-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _serving = Serving(child);
    let mut lines = BufReader::new(stdout).lines();
    let grpc = lines.next().unwrap().unwrap();
    let side_port = lines.next().unwrap().unwrap();
    assert!(grpc.starts_with("127.0.0.1:"), "{grpc}");
    assert!(side_port.starts_with("http://127.0.0.1:"), "{side_port}");
    let mut response = agent().get(&format!("{side_port}/health")).call().unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["status"], "healthy");
}

#[test]
fn ready_answers_503_while_the_server_drains_and_health_stays_200() {
    let server = server_with_side_port();
    let (address, url) = (server.local_addr(), server.health_url().unwrap());
    let get = |path: &str| {
        let mut response = agent().get(&format!("{url}{path}")).call().unwrap();
        let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap())
            .unwrap_or(Value::Null);
        (
            response.status().as_u16(),
            body["status"].as_str().map(str::to_owned),
        )
    };
    assert_eq!(get("/ready"), (200, Some("healthy".into())));

    // A call whose message never comes holds the drain open (up to the
    // server's 2 s grace) once the shutdown begins.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _held = runtime.block_on(start_get_without_its_message(address));
    let started = Instant::now();
    while json(&server, "/stats")["active_requests"].as_u64() != Some(1) {
        assert!(
            started.elapsed() < CALL_TIMEOUT,
            "the held call never arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopping = std::thread::spawn(move || server.shutdown());

    let started = Instant::now();
    let draining = loop {
        let ready = get("/ready");
        if ready.0 == 503 {
            break ready;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "never draining: {ready:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(draining, (503, Some("draining".into())));
    assert_eq!(get("/health"), (200, Some("healthy".into())));
    stopping.join().unwrap();
    // Drained: the side port is gone with the server.
    assert!(agent().get(&format!("{url}/health")).call().is_err());
}

/// Opens a gRPC Get on a raw HTTP/2 connection of its own and sends its
/// headers only: the server counts the call in progress until its message
/// comes (or the connection goes). The connection is driven on the
/// caller's runtime.
async fn start_get_without_its_message(
    address: std::net::SocketAddr,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (sender, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut sender = sender.ready().await.unwrap();
    let request = Request::post(format!("http://{address}/cache.CacheService/Get"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    sender.send_request(request, false).unwrap()
}
