//! The product service example (`examples/product_service.rs`) end to end:
//! the real binary, started on a free loopback port with an embedded cache
//! server, asked over HTTP/1.1, its JSON answers checked, and its
//! `/metrics` database-query counter read to prove what the cache saved.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// How long the service may take to print its address (it starts an
/// embedded server first).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long building the example may take: a no-op usually, one example
/// to compile at worst.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one HTTP call may take: a database query is 5 ms.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// This test binary's features, passed on to the example's build so that
/// cargo reuses the library this test was linked against (one missing here
/// would rebuild the library without it: `every_feature_is_passed_on`).
const FEATURES: [(&str, bool); 10] = [
    ("server", cfg!(feature = "server")),
    ("cli", cfg!(feature = "cli")),
    ("cluster", cfg!(feature = "cluster")),
    ("unstable-internals", cfg!(feature = "unstable-internals")),
    ("metrics", cfg!(feature = "metrics")),
    ("tracing", cfg!(feature = "tracing")),
    ("cache", cfg!(feature = "cache")),
    ("serde", cfg!(feature = "serde")),
    ("near-cache", cfg!(feature = "near-cache")),
    ("entity-cache", cfg!(feature = "entity-cache")),
];

/// The example's binary, up to date.
///
/// Why a cargo build from inside the test: `cargo test` (all targets)
/// builds the examples into `target/<profile>/examples/` before it runs
/// any test, but `cargo test --test product_service` builds only this
/// test, and a binary left there by an earlier build may be stale. Asking
/// cargo for it covers both: a no-op when it is fresh, one example to
/// compile otherwise (same features, profile and target directory as this
/// binary, so the library is reused). Cargo has released its build lock
/// by the time tests run, so this does not wait on the outer `cargo test`.
///
/// Why not include the example's code with `#[path]` and run it in this
/// process: the test then drives the very binary the bench drives, through
/// its real arguments and stdout, and can kill it as a whole; its global
/// metrics recorder stays out of this process too.
fn example_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_example)
}

fn build_example() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    // <target>/<profile>/deps/product_service-<hash>
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("a target directory");
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let features: Vec<&str> = FEATURES
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    // What cargo set for this test's own run, not the user's settings:
    // passed on, they would look like a change to build scripts that watch
    // them (ring's watches CARGO_MANIFEST_DIR) and rebuild half the tree.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_this_run = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*name);
        if set_for_this_run {
            build.env_remove(&*name);
        }
    }
    // Offline: everything the example needs was fetched for this test's
    // own build. Bounded: a target directory another cargo holds locked
    // must fail the test, not hang it.
    let mut child = build
        .args([
            "build",
            "--quiet",
            "--offline",
            "--example",
            "product_service",
        ])
        .args(["--profile", profile, "--features", &features.join(",")])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .spawn()
        .expect("cargo runs");
    let give_up = Instant::now() + BUILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("cargo's status") {
            break status;
        }
        if Instant::now() > give_up {
            let _ = child.kill();
            panic!("cargo did not build the example within {BUILD_TIMEOUT:?} (is the target directory locked?)");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "cargo could not build the example");
    let binary = profile_dir
        .join("examples")
        .join(format!("product_service{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.exists(), "no example binary at {}", binary.display());
    binary
}

/// A running product service; killed when dropped, even by a failing test.
struct Service {
    child: Child,
    address: SocketAddr,
    http: ureq::Agent,
}

impl Service {
    fn start(cache: &str) -> Service {
        Service::start_with(&["--cache", cache])
    }

    fn start_with(args: &[&str]) -> Service {
        let mut child = Command::new(example_binary())
            .args(["--listen", "127.0.0.1:0", "--threads", "16"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the example starts");
        // Its first line is the bound address; read on a thread so that a
        // service that never prints fails the test instead of hanging it.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let mut service = Service {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(CALL_TIMEOUT))
                .build()
                .into(),
        };
        let line = receiver
            .recv_timeout(START_TIMEOUT)
            .expect("the service printed its address in time");
        service.address = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the first line is an address: {line:?}"));
        service
    }

    /// Status and body of `GET path`.
    fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.address);
        let mut response = self
            .http
            .get(&url)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body = response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("GET {path}: the body: {e}"));
        (response.status().as_u16(), body)
    }

    fn product(&self, id: u32) -> serde_json::Value {
        let (status, body) = self.get(&format!("/product/{id}"));
        assert_eq!(status, 200, "GET /product/{id}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    }

    /// One counter of `/metrics`, by its whole series name.
    fn metric(&self, series: &str) -> u64 {
        self.try_metric(series)
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    }

    fn try_metric(&self, series: &str) -> Option<u64> {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    fn database_queries(&self) -> u64 {
        self.metric("product_service_database_queries_total")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_product_read_twice_reaches_the_database_once_through_either_cache() {
    for cache in ["near", "remote"] {
        let service = Service::start(cache);
        let product = service.product(42);
        assert_eq!(product["id"], 42, "{cache}: {product}");
        assert_eq!(product["name"], "product 42", "{cache}: {product}");
        assert!(product["price_cents"].is_u64(), "{cache}: {product}");
        assert_eq!(
            service.database_queries(),
            1,
            "{cache}: the first read loads"
        );

        assert_eq!(service.product(42), product, "{cache}: the same answer");
        assert_eq!(
            service.database_queries(),
            1,
            "{cache}: the second read came from the cache"
        );
        service.product(7);
        assert_eq!(
            service.database_queries(),
            2,
            "{cache}: another product loads"
        );
    }
}

#[test]
fn without_a_cache_every_read_reaches_the_database() {
    let service = Service::start("none");
    assert_eq!(service.product(42)["id"], 42);
    assert_eq!(service.product(42)["id"], 42);
    assert_eq!(service.database_queries(), 2);
}

#[test]
fn concurrent_first_reads_of_one_product_load_it_once() {
    let service = Service::start("near");
    std::thread::scope(|scope| {
        for _ in 0..12 {
            scope.spawn(|| assert_eq!(service.product(99)["id"], 99));
        }
    });
    // One query: the other readers waited for it (single flight) or, if
    // they came after it, found the value in the cache.
    assert_eq!(service.database_queries(), 1);
}

#[test]
fn metrics_show_the_client_calls_and_the_layers() {
    let service = Service::start("near");
    service.product(5);
    service.product(5);
    // The client's own metrics, through the Prometheus recorder: the miss
    // asked the server (Get) and stored the loaded product (Set).
    assert!(service.metric(r#"tiny_cache_client_calls_total{method="Get",code="OK"}"#) >= 1);
    assert!(service.metric(r#"tiny_cache_client_calls_total{method="Set",code="OK"}"#) >= 1);
    // The second read was a near-cache hit: no second call to the server.
    assert_eq!(
        service.metric(r#"product_service_cache_hits_total{layer="near"}"#),
        1
    );

    // A layer that is not there has no series.
    let remote = Service::start("remote");
    remote.product(5);
    assert_eq!(
        remote.metric(r#"product_service_cache_misses_total{layer="read_through"}"#),
        1
    );
    assert_eq!(
        remote.try_metric(r#"product_service_cache_hits_total{layer="near"}"#),
        None
    );
}

#[test]
fn products_come_from_the_database_when_the_cache_server_is_down() {
    // Nothing listens on a port just released: connections are refused.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let service = Service::start_with(&["--cache", "near", "--server", &free.to_string()]);
    // Fail-open: the read-through layer loads the product anyway.
    assert_eq!(service.product(3)["id"], 3);
    assert_eq!(service.product(3)["id"], 3);
    assert_eq!(service.database_queries(), 2, "nothing could be cached");
    assert!(
        service.metric(r#"tiny_cache_client_errors_total{method="Get",code="UNAVAILABLE"}"#) >= 1
    );
}

#[test]
fn bad_requests_get_an_http_error_not_a_dropped_connection() {
    let service = Service::start("near");
    assert_eq!(service.get("/product/lamp").0, 400);
    assert_eq!(service.get("/product/").0, 400);
    assert_eq!(service.get("/nowhere").0, 404);
    assert_eq!(service.database_queries(), 0);
}

#[test]
fn with_server_the_products_are_cached_on_that_server_as_json() {
    let server = tiny_cache_client::server::Server::local().expect("a cache server");
    let service = Service::start_with(&["--cache", "remote", "--server", &server.address()]);
    let product = service.product(11);
    // What the service stored: the product's JSON under its key, in the
    // service's namespace.
    let client = tiny_cache_client::Client::builder(&server.address())
        .namespace("products")
        .build()
        .expect("a client");
    let stored = client
        .get_string("product:11")
        .expect("the server answers")
        .expect("the product is cached");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored).expect("JSON"),
        product
    );
    // Another service process sharing the server reads it from there.
    let other = Service::start_with(&["--cache", "remote", "--server", &server.address()]);
    assert_eq!(other.product(11), product);
    assert_eq!(other.database_queries(), 0, "the remote cache answered");
}

#[test]
fn every_feature_is_passed_on() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("the manifest");
    let features = manifest
        .split("\n[features]\n")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [features] table");
    let mut declared: Vec<&str> = features
        .lines()
        .filter_map(|line| line.split_once(" = ").map(|(name, _)| name.trim()))
        .filter(|name| !name.starts_with('#') && *name != "default")
        .collect();
    let mut listed: Vec<&str> = FEATURES.iter().map(|(name, _)| *name).collect();
    declared.sort_unstable();
    listed.sort_unstable();
    assert_eq!(
        listed, declared,
        "FEATURES must list every feature of Cargo.toml"
    );
}
