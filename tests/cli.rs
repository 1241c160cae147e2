#![cfg(feature = "cli")]
//! The `tiny-cache` binary, run as a user would, against an embedded server
//! started by each test.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tiny_cache_client::server::Server;

/// Runs the binary with `args`, isolated from the caller's environment.
fn tiny_cache(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
        .args(args)
        .env_remove("CACHE_SERVER_ADDRESS")
        .env_remove("CACHE_TIMEOUT")
        .output()
        .expect("the tiny-cache binary runs")
}

/// Runs the binary against `server` with `args` after the subcommand.
fn against(server: &Server, args: &[&str]) -> Output {
    let address = server.address();
    let mut all = vec!["--server", address.as_str(), "--timeout", "3"];
    all.extend_from_slice(args);
    tiny_cache(&all)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a failure reported the way users are promised: a non-zero exit
/// and one `error:` line on stderr, never a panic.
fn assert_one_line_error(output: &Output) {
    let err = stderr(output);
    assert!(
        !output.status.success(),
        "expected a failure, got {output:?}"
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err}");
}

fn local_server() -> Server {
    Server::local().expect("the embedded server starts")
}

#[test]
fn set_then_get_prints_the_value() {
    let server = local_server();
    let set = against(&server, &["set", "greeting", "hello world"]);
    assert!(set.status.success(), "{set:?}");
    let get = against(&server, &["get", "greeting"]);
    assert!(get.status.success(), "{get:?}");
    assert_eq!(stdout(&get), "hello world\n");
}

#[test]
fn global_options_are_accepted_after_the_subcommand() {
    let server = local_server();
    let address = server.address();
    let set = tiny_cache(&["set", "k", "v", "--server", &address, "--ttl", "0"]);
    assert!(set.status.success(), "{set:?}");
    let get = tiny_cache(&["get", "k", "--server", &address]);
    assert_eq!(stdout(&get), "v\n");
}

#[test]
fn get_of_a_missing_key_exits_1_and_prints_nothing() {
    let server = local_server();
    let get = against(&server, &["get", "never-written"]);
    assert_eq!(get.status.code(), Some(1), "{get:?}");
    assert_eq!(stdout(&get), "");
    assert!(stderr(&get).contains("not found"), "{}", stderr(&get));
}

#[test]
fn delete_removes_the_key() {
    let server = local_server();
    assert!(against(&server, &["set", "k", "v"]).status.success());
    let delete = against(&server, &["delete", "k"]);
    assert!(delete.status.success(), "{delete:?}");
    assert_eq!(against(&server, &["get", "k"]).status.code(), Some(1));
    // Deleting a missing key succeeds too.
    assert!(against(&server, &["delete", "k"]).status.success());
}

#[test]
fn stats_lists_every_counter_as_a_table_and_as_json() {
    let server = local_server();
    assert!(against(&server, &["set", "k", "v"]).status.success());
    assert_eq!(against(&server, &["get", "k"]).status.code(), Some(0));
    let table = against(&server, &["stats"]);
    assert!(table.status.success(), "{table:?}");
    let text = stdout(&table);
    for counter in [
        "size",
        "hits",
        "misses",
        "hit_rate",
        "evictions",
        "lru_evictions",
        "expired_removals",
        "rejected_oversize",
        "rejected_capacity",
        "memory_usage_bytes",
        "max_memory_bytes",
        "max_items",
        "max_value_bytes",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(counter)),
            "{counter} missing from:\n{text}"
        );
    }
    let json = stdout(&against(&server, &["stats", "--json"]));
    let json = json.trim();
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    assert!(json.contains("\"size\":1"), "{json}");
    assert!(json.contains("\"hits\":1"), "{json}");
}

#[test]
fn ping_prints_the_round_trip() {
    let server = local_server();
    let ping = against(&server, &["ping", "--request-id", "cli-test-1"]);
    assert!(ping.status.success(), "{ping:?}");
    assert!(stdout(&ping).contains(" ms"), "{}", stdout(&ping));
}

#[test]
fn namespace_isolates_keys() {
    let server = local_server();
    assert!(against(
        &server,
        &["--namespace", "alice", "set", "cart", "3 apples"]
    )
    .status
    .success());
    let alice = against(&server, &["--namespace", "alice", "get", "cart"]);
    assert_eq!(stdout(&alice), "3 apples\n");
    let bob = against(&server, &["get", "cart", "--namespace", "bob"]);
    assert_eq!(bob.status.code(), Some(1), "{bob:?}");
    let shared = against(&server, &["get", "cart"]);
    assert_eq!(shared.status.code(), Some(1), "{shared:?}");
}

#[test]
fn bad_namespace_is_a_one_line_usage_error() {
    let server = local_server();
    let output = against(&server, &["--namespace", "no/slashes", "get", "k"]);
    assert_one_line_error(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("Namespace"), "{}", stderr(&output));
}

#[test]
fn negative_ttl_is_refused_before_sending() {
    let server = local_server();
    let output = against(&server, &["set", "k", "v", "--ttl", "-1"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(!stderr(&output).contains("panicked"));
    assert_eq!(against(&server, &["get", "k"]).status.code(), Some(1));
}

#[test]
fn nothing_listening_is_a_prompt_one_line_error() {
    let started = Instant::now();
    let output = tiny_cache(&["--server", "127.0.0.1:1", "--timeout", "1", "get", "k"]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert_one_line_error(&output);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(stdout(&output), "");
}

#[test]
fn bench_without_server_uses_an_embedded_one_and_ends_with_json() {
    // The environment must not redirect bench away from its embedded server.
    let output = Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
        .args(["bench", "--duration", "1", "--threads", "2", "--json"])
        .env("CACHE_SERVER_ADDRESS", "127.0.0.1:1")
        .output()
        .expect("the tiny-cache binary runs");
    assert!(output.status.success(), "{output:?}");
    let out = stdout(&output);
    let last = out.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with('{') && last.ends_with('}'), "{last}");
    assert!(last.contains("\"errors\":0"), "{last}");
    assert!(last.contains("\"server\":\"embedded\""), "{last}");
    let ops_per_s: f64 = json_number(last, "ops_per_s").expect("ops_per_s is a number");
    assert!(ops_per_s > 0.0, "{last}");
    for field in ["p50_us", "p99_us", "p999_us", "threads", "duration_s"] {
        assert!(
            json_number(last, field).is_some(),
            "{field} missing: {last}"
        );
    }
}

#[test]
fn bench_with_an_explicit_server_does_not_fall_back_to_embedded() {
    let output = tiny_cache(&[
        "bench",
        "--server",
        "127.0.0.1:1",
        "--timeout",
        "1",
        "--duration",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let err = stderr(&output);
    assert!(err.lines().any(|l| l.starts_with("error: ")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bench_writes_a_latency_chart_and_refuses_other_extensions() {
    let dir = std::env::temp_dir().join(format!("tiny-cache-cli-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let chart = dir.join("lat.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
        .args(["bench", "--duration", "1", "--threads", "2", "--chart"])
        .arg(&chart)
        .env_remove("CACHE_SERVER_ADDRESS")
        .output()
        .expect("the tiny-cache binary runs");
    let svg = std::fs::read_to_string(&chart);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(output.status.success(), "{output:?}");
    assert!(stderr(&output).contains("lat.svg"), "{}", stderr(&output));
    let svg = svg.expect("the chart was written");
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    assert!(svg.contains("p99"), "{svg}");

    let refused = tiny_cache(&["bench", "--duration", "1", "--chart", "x.txt"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let err = stderr(&refused);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert!(err.contains("x.txt") && !err.contains("panicked"), "{err}");
    assert!(!std::path::Path::new("x.txt").exists());
}

/// The number after `"field":` in a one-line JSON object.
fn json_number(json: &str, field: &str) -> Option<f64> {
    let start = json.find(&format!("\"{field}\":"))? + field.len() + 3;
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A TLS round trip through the binary on both sides: `serve` with a
/// certificate and a client CA (mutual TLS), then `set` and `get` with the
/// CA and a client certificate. The PEM files are generated here, written
/// to a temporary directory and removed afterwards.
#[test]
fn serve_and_client_speak_mutual_tls() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let issue = |names: &[&str], usage| {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &ca).unwrap();
        (certificate.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) =
        issue(&["cache.test"], rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) =
        issue(&["client.test"], rcgen::ExtendedKeyUsagePurpose::ClientAuth);

    let dir = std::env::temp_dir().join(format!("tiny-cache-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let ca_file = write("ca.pem", &ca.pem());
    let server_cert_file = write("server.pem", &server_cert);
    let server_key_file = write("server-key.pem", &server_key);
    let client_cert_file = write("client.pem", &client_cert);
    let client_key_file = write("client-key.pem", &client_key);

    struct Serving(std::process::Child, std::path::PathBuf);
    impl Drop for Serving {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args([
            "--tls-cert",
            &server_cert_file,
            "--tls-key",
            &server_key_file,
        ])
        .args(["--client-ca", &ca_file])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server_stdout = child.stdout.take().unwrap();
    let serving = Serving(child, dir.clone());
    let mut url = String::new();
    BufReader::new(server_stdout).read_line(&mut url).unwrap();
    let url = url.trim().to_owned();
    assert!(url.starts_with("grpcs://127.0.0.1:"), "{url}");

    let tls_args = [
        "--server",
        url.as_str(),
        "--timeout",
        "5",
        "--ca-cert",
        ca_file.as_str(),
        "--tls-server-name",
        "cache.test",
        "--client-cert",
        client_cert_file.as_str(),
        "--client-key",
        client_key_file.as_str(),
    ];
    let run = |command: &[&str]| {
        let mut all = tls_args.to_vec();
        all.extend_from_slice(command);
        tiny_cache(&all)
    };
    let set = run(&["set", "greeting", "over tls"]);
    assert!(set.status.success(), "{set:?}");
    let get = run(&["get", "greeting"]);
    assert!(get.status.success(), "{get:?}");
    assert_eq!(stdout(&get), "over tls\n");

    // Without the client certificate the server refuses, promptly and in
    // one line that names the cause.
    let started = Instant::now();
    let refused = tiny_cache(
        &tls_args[..8]
            .iter()
            .copied()
            .chain(["get", "greeting"])
            .collect::<Vec<_>>(),
    );
    assert_one_line_error(&refused);
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert!(
        stderr(&refused).contains("client certificate"),
        "{}",
        stderr(&refused)
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(serving);
}
