#![cfg(feature = "cli")]
//! The `tiny-cache` binary, run as a user would, against an embedded server
//! started by each test.

use std::io::Write;
use std::process::{Command, Output, Stdio};
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

/// Runs the binary against `server` with `input` on its stdin.
fn against_with_stdin(server: &Server, args: &[&str], input: &[u8]) -> Output {
    let address = server.address();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
        .args(["--server", address.as_str(), "--timeout", "3"])
        .args(args)
        .env_remove("CACHE_SERVER_ADDRESS")
        .env_remove("CACHE_TIMEOUT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tiny-cache binary runs");
    let mut stdin = child.stdin.take().expect("a stdin pipe");
    stdin.write_all(input).expect("stdin takes the input");
    drop(stdin);
    child
        .wait_with_output()
        .expect("the tiny-cache binary ends")
}

/// The one JSON object `output` printed on stdout, as a map.
fn json_object(output: &Output) -> serde_json::Map<String, serde_json::Value> {
    let text = stdout(output);
    assert_eq!(text.lines().count(), 1, "one line of JSON expected: {text}");
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => map,
        other => panic!("not a JSON object: {text} ({other:?})"),
    }
}

/// The field names of a JSON object, sorted.
fn field_names(object: &serde_json::Map<String, serde_json::Value>) -> Vec<&str> {
    let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
    names.sort_unstable();
    names
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
    // The reference CLI's spelling of --server.
    let get = tiny_cache(&["get", "k", "--target", &address]);
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

/// Every byte value, a NUL and a trailing newline: what a text-minded
/// pipeline would mangle.
fn binary_value() -> Vec<u8> {
    let mut value: Vec<u8> = (0..=255u8).collect();
    value.extend_from_slice(b"\0tail\n");
    value
}

#[test]
fn a_binary_value_from_stdin_round_trips_byte_for_byte() {
    let server = local_server();
    let value = binary_value();
    let set = against_with_stdin(&server, &["set", "blob", "-"], &value);
    assert!(set.status.success(), "{set:?}");
    let get = against(&server, &["get", "blob", "--output", "-"]);
    assert!(get.status.success(), "{get:?}");
    assert_eq!(get.stdout, value);
    // Without --output the value is followed by one newline, nothing else.
    let get = against(&server, &["get", "blob"]);
    assert_eq!(get.stdout[..value.len()], value[..]);
    assert_eq!(&get.stdout[value.len()..], b"\n");
    // --value-file - reads stdin the same way.
    let set = against_with_stdin(&server, &["set", "blob2", "--value-file", "-"], &value);
    assert!(set.status.success(), "{set:?}");
    let hex = against(&server, &["get", "blob2", "--format", "hex"]);
    assert_eq!(stdout(&hex).trim_end(), hex_of(&value));
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn values_from_base64_hex_and_a_file_are_stored_as_decoded() {
    let server = local_server();
    let dir = std::env::temp_dir().join(format!("tiny-cache-cli-values-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("value.bin");
    std::fs::write(&file, binary_value()).unwrap();
    let file = file.to_string_lossy().into_owned();

    let cases: [(&str, &[&str], Vec<u8>); 4] = [
        ("text", &["set", "k", "héllo"], "héllo".as_bytes().to_vec()),
        (
            "base64",
            &["set", "k", "--value-base64", "AP9B"],
            vec![0, 255, 65],
        ),
        (
            "hex",
            &["set", "k", "--value-hex", "00FF41"],
            vec![0, 255, 65],
        ),
        ("file", &["set", "k", "--value-file", &file], binary_value()),
    ];
    for (name, args, expected) in cases {
        let set = against(&server, args);
        assert!(set.status.success(), "{name}: {set:?}");
        let get = against(&server, &["get", "k", "--output", "-"]);
        assert_eq!(get.stdout, expected, "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_values_are_usage_errors_and_nothing_is_written() {
    let server = local_server();
    for args in [
        &["set", "k", "--value-hex", "0g"][..],
        &["set", "k", "--value-hex", "abc"],
        &["set", "k", "--value-base64", "not base64!"],
        &["set", "k", "--value-file", "/nonexistent/tiny-cache/value"],
    ] {
        let output = against(&server, args);
        assert_one_line_error(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
    // Two sources for one value, or none, are clap's usage errors.
    for args in [
        &["set", "k", "text", "--value-hex", "00"][..],
        &["set", "k"],
        &[
            "set-if-absent",
            "k",
            "--value-hex",
            "00",
            "--value-base64",
            "AA==",
        ],
    ] {
        let output = against(&server, args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(!stderr(&output).contains("panicked"));
    }
    assert_eq!(against(&server, &["get", "k"]).status.code(), Some(1));
}

#[test]
fn get_shows_the_value_in_each_format_and_writes_files() {
    let server = local_server();
    assert!(against(&server, &["set", "k", "--value-hex", "00ff41"])
        .status
        .success());
    assert_eq!(
        stdout(&against(&server, &["get", "k", "--format", "hex"])),
        "00ff41\n"
    );
    assert_eq!(
        stdout(&against(&server, &["get", "k", "--format", "base64"])),
        "AP9B\n"
    );
    // Not UTF-8: utf8 cannot show it, and says what can.
    let utf8 = against(&server, &["get", "k", "--format", "utf8"]);
    assert_one_line_error(&utf8);
    assert_eq!(utf8.status.code(), Some(3));
    assert!(
        stderr(&utf8).contains("--format base64"),
        "{}",
        stderr(&utf8)
    );
    assert!(against(&server, &["set", "t", "naïve"]).status.success());
    assert_eq!(
        stdout(&against(&server, &["get", "t", "--format", "utf8"])),
        "naïve\n"
    );

    let dir = std::env::temp_dir().join(format!("tiny-cache-cli-output-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("raw.bin");
    let hex = dir.join("value.hex");
    let missing = dir.join("missing.bin");
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let get = against(&server, &["get", "k", "--output", &path(&raw)]);
    assert!(get.status.success(), "{get:?}");
    assert_eq!(stdout(&get), "");
    let get = against(
        &server,
        &["get", "k", "--format", "hex", "--output", &path(&hex)],
    );
    assert!(get.status.success(), "{get:?}");
    let absent = against(&server, &["get", "nope", "--output", &path(&missing)]);
    assert_eq!(absent.status.code(), Some(1), "{absent:?}");
    let (raw, hex, missing_exists) = (std::fs::read(&raw), std::fs::read(&hex), missing.exists());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(raw.unwrap(), vec![0, 255, 65]);
    assert_eq!(hex.unwrap(), b"00ff41");
    assert!(!missing_exists, "a missing key must not create the file");
}

#[test]
fn set_if_absent_exits_4_when_the_key_has_a_value_and_keeps_it() {
    let server = local_server();
    let first = against(&server, &["set-if-absent", "k", "first"]);
    assert!(first.status.success(), "{first:?}");
    let second = against(&server, &["set-if-absent", "k", "second"]);
    assert_eq!(second.status.code(), Some(4), "{second:?}");
    assert_eq!(stdout(&second), "");
    assert!(
        stderr(&second).contains("already has a value"),
        "{second:?}"
    );
    assert_eq!(stdout(&against(&server, &["get", "k"])), "first\n");
}

#[test]
fn compare_and_set_stores_on_match_and_exits_5_on_mismatch_6_when_missing() {
    let server = local_server();
    let missing = against(&server, &["compare-and-set", "k", "old", "new"]);
    assert_eq!(missing.status.code(), Some(6), "{missing:?}");
    assert_eq!(against(&server, &["get", "k"]).status.code(), Some(1));

    assert!(against(&server, &["set", "k", "old"]).status.success());
    let mismatch = against(&server, &["compare-and-set", "k", "other", "new"]);
    assert_eq!(mismatch.status.code(), Some(5), "{mismatch:?}");
    assert_eq!(stdout(&against(&server, &["get", "k"])), "old\n");

    let stored = against(&server, &["compare-and-set", "k", "old", "new"]);
    assert!(stored.status.success(), "{stored:?}");
    assert_eq!(stdout(&against(&server, &["get", "k"])), "new\n");

    // An option gives the expected value: the one text is the new value.
    let hex_expected = against(
        &server,
        &[
            "compare-and-set",
            "k",
            "--expected-value-hex",
            "6e6577",
            "newer",
        ],
    );
    assert!(hex_expected.status.success(), "{hex_expected:?}");
    // Both from options, the expected one from stdin, binary.
    let both = against_with_stdin(
        &server,
        &[
            "compare-and-set",
            "k",
            "--expected-value-file",
            "-",
            "--value-base64",
            "AP8=",
        ],
        b"newer",
    );
    assert!(both.status.success(), "{both:?}");
    let get = against(&server, &["get", "k", "--output", "-"]);
    assert_eq!(get.stdout, vec![0, 255]);

    // Too many or too few texts for the values the options left open.
    for args in [
        &["compare-and-set", "k", "only-one"][..],
        &["compare-and-set", "k", "--value-hex", "00", "a", "b"],
    ] {
        let output = against(&server, args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(!stderr(&output).contains("panicked"));
    }
}

#[test]
fn get_many_prints_each_found_key_and_exits_1_for_missing_7_for_refused() {
    let server = local_server();
    assert!(against(&server, &["set-many", "a", "1", "b", "two words"])
        .status
        .success());
    let all = against(&server, &["get-many", "a", "b"]);
    assert!(all.status.success(), "{all:?}");
    assert_eq!(stdout(&all), "a\t1\nb\ttwo words\n");

    let some = against(&server, &["get-many", "a", "gone", "b"]);
    assert_eq!(some.status.code(), Some(1), "{some:?}");
    assert_eq!(stdout(&some), "a\t1\nb\ttwo words\n");
    assert!(stderr(&some).contains("not found: \"gone\""), "{some:?}");

    let long_key = "x".repeat(300);
    let refused = against(&server, &["get-many", "a", &long_key, "gone"]);
    assert_eq!(refused.status.code(), Some(7), "{refused:?}");
    assert_eq!(stdout(&refused), "a\t1\n");
    assert!(stderr(&refused).contains("256"), "{refused:?}");
}

#[test]
fn set_many_and_delete_many_do_every_key_they_can_and_exit_7_for_the_rest() {
    let server = local_server();
    let long_key = "x".repeat(300);
    let set = against(&server, &["set-many", "a", "1", &long_key, "2", "c", "3"]);
    assert_eq!(set.status.code(), Some(7), "{set:?}");
    assert!(stderr(&set).contains("256"), "{set:?}");
    assert_eq!(stdout(&against(&server, &["get", "a"])), "1\n");
    assert_eq!(stdout(&against(&server, &["get", "c"])), "3\n");

    let odd = against(&server, &["set-many", "a", "1", "b"]);
    assert_one_line_error(&odd);
    assert_eq!(odd.status.code(), Some(2), "{odd:?}");

    let delete = against(&server, &["delete-many", "a", "never-written"]);
    assert!(delete.status.success(), "{delete:?}");
    assert_eq!(against(&server, &["get", "a"]).status.code(), Some(1));
    let refused = against(&server, &["delete-many", "c", &long_key]);
    assert_eq!(refused.status.code(), Some(7), "{refused:?}");
    assert_eq!(against(&server, &["get", "c"]).status.code(), Some(1));
}

#[test]
fn health_exits_0_when_serving_and_8_for_an_unknown_service() {
    let server = local_server();
    let whole = against(&server, &["health"]);
    assert!(whole.status.success(), "{whole:?}");
    assert_eq!(stdout(&whole), "SERVING\n");
    let cache = against(&server, &["health", "cache.CacheService"]);
    assert_eq!(stdout(&cache), "SERVING\n");
    let unknown = against(&server, &["health", "no.such.Service"]);
    assert_eq!(unknown.status.code(), Some(8), "{unknown:?}");
    assert_eq!(stdout(&unknown), "SERVICE_UNKNOWN\n");
}

#[test]
fn ttl_never_zero_seconds_and_the_default_are_sent_as_documented() {
    let server = local_server();
    for (ttl, seconds) in [
        (Some("never"), 0),
        (Some("0"), 0),
        (Some("60"), 60),
        (Some("1.5"), 2),
        (None, 3600),
    ] {
        let mut args = vec!["--json", "set", "k", "v"];
        args.extend(ttl.iter().flat_map(|t| ["--ttl", *t]));
        let set = against(&server, &args);
        assert!(set.status.success(), "{ttl:?}: {set:?}");
        assert_eq!(json_object(&set)["ttl_seconds"], seconds, "{ttl:?}");
    }
    let refused = against(&server, &["set", "k", "v", "--ttl", "later"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}

#[test]
fn show_request_id_prints_the_id_sent_given_or_made_up() {
    let server = local_server();
    let given = against(
        &server,
        &[
            "--show-request-id",
            "--request-id",
            "cli-abc-1",
            "set",
            "k",
            "v",
        ],
    );
    assert!(given.status.success(), "{given:?}");
    assert_eq!(stderr(&given), "x-request-id: cli-abc-1\n");

    let made_up_id = |output: &Output| {
        let err = stderr(output);
        let line = err
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .unwrap_or_else(|| panic!("no request id in {err}"))
            .to_owned();
        assert_eq!(line.len(), 32, "{line}");
        assert!(line.chars().all(|c| c.is_ascii_hexdigit()), "{line}");
        line
    };
    let first = against(&server, &["get", "k", "--show-request-id"]);
    assert_eq!(stdout(&first), "v\n");
    // Shown on an outcome other than success too.
    let second = against(&server, &["get", "missing", "--show-request-id"]);
    assert_eq!(second.status.code(), Some(1));
    assert_ne!(made_up_id(&first), made_up_id(&second));
    // Not asked for, nothing is shown.
    assert_eq!(stderr(&against(&server, &["get", "k"])), "");
}

#[test]
fn every_command_prints_one_json_object_with_the_documented_fields() {
    let server = local_server();
    let json = |args: &[&str]| {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = against(&server, &all);
        (output.status.code(), json_object(&output))
    };
    let write = ["bytes", "key", "outcome", "stored", "ttl_seconds"];

    let (code, set) = json(&["set", "k", "hello"]);
    assert_eq!((code, field_names(&set)), (Some(0), write.to_vec()));
    assert_eq!(
        (&set["key"], &set["bytes"], &set["outcome"]),
        (&"k".into(), &5.into(), &"stored".into())
    );

    let (code, get) = json(&["get", "k"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        field_names(&get),
        ["bytes", "format", "found", "key", "value"]
    );
    assert_eq!(
        (&get["format"], &get["value"]),
        (&"utf8".into(), &"hello".into())
    );
    let (_, hex) = json(&["get", "k", "--format", "hex"]);
    assert_eq!(hex["value"], "68656c6c6f");
    let (code, missing) = json(&["get", "nope"]);
    assert_eq!(
        (code, field_names(&missing)),
        (Some(1), vec!["found", "key"])
    );
    assert_eq!(missing["found"], false);

    let (code, exists) = json(&["set-if-absent", "k", "x"]);
    assert_eq!((code, field_names(&exists)), (Some(4), write.to_vec()));
    assert_eq!(
        (&exists["stored"], &exists["outcome"]),
        (&false.into(), &"exists".into())
    );
    let (code, mismatch) = json(&["compare-and-set", "k", "x", "y"]);
    assert_eq!((code, &mismatch["outcome"]), (Some(5), &"mismatch".into()));
    let (code, not_found) = json(&["compare-and-set", "nope", "x", "y"]);
    assert_eq!(
        (code, &not_found["outcome"]),
        (Some(6), &"not_found".into())
    );
    assert_eq!(field_names(&not_found), write);

    let (code, set_many) = json(&["set-many", "b", "\u{1}", "c", "3", "--ttl", "never"]);
    assert_eq!(
        (code, field_names(&set_many)),
        (Some(0), vec!["items", "ttl_seconds"])
    );
    assert_eq!(
        set_many["items"][0],
        serde_json::json!({"key": "b", "stored": true})
    );

    let (code, get_many) = json(&["get-many", "b", "nope", &"x".repeat(300)]);
    assert_eq!((code, field_names(&get_many)), (Some(7), vec!["items"]));
    assert_eq!(
        get_many["items"][0],
        serde_json::json!({"key": "b", "found": true, "format": "utf8", "value": "\u{1}", "bytes": 1})
    );
    assert_eq!(
        get_many["items"][1],
        serde_json::json!({"key": "nope", "found": false})
    );
    assert!(get_many["items"][2]["error"].is_string(), "{get_many:?}");
    assert_eq!(get_many["items"][2]["found"], false);

    let (code, delete) = json(&["delete", "b"]);
    assert_eq!(
        (code, field_names(&delete)),
        (Some(0), vec!["deleted", "key"])
    );
    let (code, delete_many) = json(&["delete-many", "c", "nope"]);
    assert_eq!((code, field_names(&delete_many)), (Some(0), vec!["items"]));
    assert_eq!(
        delete_many["items"][1],
        serde_json::json!({"key": "nope", "deleted": true})
    );

    let (code, stats) = json(&["stats"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        field_names(&stats),
        [
            "evictions",
            "expired_removals",
            "hit_rate",
            "hits",
            "lru_evictions",
            "max_items",
            "max_memory_bytes",
            "max_value_bytes",
            "memory_usage_bytes",
            "misses",
            "rejected_capacity",
            "rejected_oversize",
            "size"
        ]
    );
    let (code, ping) = json(&["ping"]);
    assert_eq!(
        (code, field_names(&ping)),
        (Some(0), vec!["round_trip_ms", "server"])
    );
    assert!(
        ping["round_trip_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{ping:?}"
    );
    let (code, health) = json(&["health"]);
    assert_eq!(
        (code, field_names(&health)),
        (Some(0), vec!["service", "serving", "status"])
    );
    assert_eq!(
        (&health["status"], &health["serving"]),
        (&"SERVING".into(), &true.into())
    );
}

#[test]
fn a_failure_with_json_is_one_error_object_and_one_stderr_line() {
    let unreachable = tiny_cache(&[
        "--json",
        "--server",
        "127.0.0.1:1",
        "--timeout",
        "1",
        "stats",
    ]);
    assert_one_line_error(&unreachable);
    assert_eq!(unreachable.status.code(), Some(3));
    let object = json_object(&unreachable);
    assert_eq!(field_names(&object), ["error", "error_kind", "exit_code"]);
    assert_eq!(
        (&object["error_kind"], &object["exit_code"]),
        (&"unavailable".into(), &3.into())
    );

    let server = local_server();
    let invalid = against(&server, &["--json", "--namespace", "no/slash", "get", "k"]);
    assert_eq!(invalid.status.code(), Some(2));
    let object = json_object(&invalid);
    assert_eq!(
        (&object["error_kind"], &object["exit_code"]),
        (&"validation".into(), &2.into())
    );
}

#[test]
fn help_documents_every_exit_status() {
    let help = stdout(&tiny_cache(&["--help"]));
    for code in 0..=8 {
        assert!(
            help.lines()
                .any(|line| line.starts_with(&format!("  {code}  "))),
            "exit status {code} missing from:\n{help}"
        );
    }
    for command in [
        "get",
        "get-many",
        "set",
        "set-if-absent",
        "compare-and-set",
        "set-many",
        "delete",
        "delete-many",
        "stats",
        "ping",
        "health",
        "serve",
        "bench",
    ] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(&format!("{command} "))),
            "{command} missing from:\n{help}"
        );
    }
}

#[test]
fn serve_with_json_prints_its_address_as_one_object() {
    use std::io::{BufRead, BufReader};

    let mut child = Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
        .args(["serve", "--listen", "127.0.0.1:0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    read.unwrap();
    let object: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let address = object["address"].as_str().expect("an address");
    assert!(address.starts_with("127.0.0.1:"), "{line}");
    assert_eq!(object["url"], format!("grpc://{address}"));
    assert_eq!(object["tls"], false);
}

/// The reference server's development certificate: self-signed, its own
/// CA (`CA:TRUE`), for localhost.
fn dev_certificate() -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key).unwrap();
    (certificate.pem(), key.serialize_pem())
}

#[test]
fn the_dev_certificate_works_as_ca_cert_and_as_pin_and_a_wrong_pin_is_refused() {
    let (certificate, key) = dev_certificate();
    let (other, _) = dev_certificate();
    let server = Server::builder().tls(&certificate, &key).start().unwrap();
    let dir = std::env::temp_dir().join(format!("tiny-cache-cli-pin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let served = dir.join("served.pem");
    let wrong = dir.join("other.pem");
    std::fs::write(&served, &certificate).unwrap();
    std::fs::write(&wrong, &other).unwrap();
    let url = format!("grpcs://{}", server.address());
    let run = |option: &str, pem: &std::path::Path| {
        tiny_cache(&[
            "--server",
            &url,
            "--tls-server-name",
            "localhost",
            "--timeout",
            "5",
            option,
            pem.to_str().unwrap(),
            "set",
            "k",
            "v",
        ])
    };
    let as_ca = run("--ca-cert", &served);
    let as_pin = run("--pin-cert", &served);
    let wrong_pin = run("--pin-cert", &wrong);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(as_ca.status.success(), "{as_ca:?}");
    assert!(as_pin.status.success(), "{as_pin:?}");
    assert_eq!(wrong_pin.status.code(), Some(3), "{wrong_pin:?}");
    assert!(stderr(&wrong_pin).contains("pinned"), "{wrong_pin:?}");
}

#[test]
fn show_request_id_on_a_server_error_prints_the_servers_id() {
    let server = Server::builder().max_value_bytes(8).start().unwrap();
    let refused = against(
        &server,
        &[
            "--show-request-id",
            "--request-id",
            "cli-too-big",
            "set",
            "k",
            "a value well over eight bytes",
        ],
    );
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    let err = stderr(&refused);
    assert!(err.contains("x-request-id: cli-too-big"), "{err}");
}

#[test]
fn touch_gives_a_new_ttl_keeps_the_value_and_exits_1_for_a_missing_key() {
    let server = local_server();
    assert!(against(&server, &["set", "k", "v", "--ttl", "1"])
        .status
        .success());
    let touched = against(&server, &["--json", "touch", "k", "--ttl", "never"]);
    assert!(touched.status.success(), "{touched:?}");
    let object = json_object(&touched);
    assert_eq!(field_names(&object), ["key", "touched", "ttl_seconds"]);
    assert_eq!(object["touched"], serde_json::Value::Bool(true));
    assert_eq!(object["ttl_seconds"], serde_json::json!(0));
    // The first TTL would have expired the key by now.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stdout(&against(&server, &["get", "k"])), "v\n");

    let missing = against(&server, &["touch", "nothing-here", "--ttl", "60"]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert_eq!(stderr(&missing), "not found: \"nothing-here\"\n");
}

#[test]
fn server_given_twice_is_a_cluster_with_replicas_and_per_server_stats() {
    let (a, b) = (Server::local().unwrap(), Server::local().unwrap());
    let (a_address, b_address) = (a.address(), b.address());
    let servers = [
        "--server",
        a_address.as_str(),
        "--server",
        b_address.as_str(),
        "--timeout",
        "3",
        "--replicas",
        "2",
    ];
    let run = |args: &[&str]| {
        let mut all = servers.to_vec();
        all.extend_from_slice(args);
        tiny_cache(&all)
    };
    assert!(run(&["set", "k", "hello"]).status.success());
    let got = run(&["get", "k"]);
    assert!(got.status.success());
    assert_eq!(stdout(&got), "hello\n");
    // Both servers hold the copy, each with its envelope.
    for server in [&a, &b] {
        let raw = against(server, &["get", "k", "--format", "hex"]);
        assert!(stdout(&raw).starts_with("7463e701"), "{}", stdout(&raw));
    }
    // A conditional write needs one server to decide: refused, exit 2.
    assert_eq!(run(&["set-if-absent", "lock", "me"]).status.code(), Some(2));
    let stats = json_object(&run(&["stats", "--json"]));
    let listed: Vec<&str> = stats["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["server"].as_str().unwrap())
        .collect();
    let mut expected = vec![a_address.as_str(), b_address.as_str()];
    expected.sort();
    assert_eq!(listed, expected);
    let quorum_too_big = run(&["--read-quorum", "3", "get", "k"]);
    assert_eq!(quorum_too_big.status.code(), Some(2));
}
