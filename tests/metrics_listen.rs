#![cfg(feature = "cli")]
//! `--metrics-listen ADDR`: the CLI serves the process's metrics for
//! Prometheus while a command runs.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_with_metrics_listen_answers_prometheus_scrapes() {
    // A free port, released for the exporter to bind.
    let metrics = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
            .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen"])
            .arg(metrics.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the tiny-cache binary runs"),
    );
    // The exporter is installed before the server prints its address.
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.trim().is_empty(), "serve printed its address");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let url = format!("http://{metrics}/metrics");
    let started = Instant::now();
    // The exporter binds on its own thread: the first attempt may come
    // before it listens.
    let answer = loop {
        match agent.get(&url).call() {
            Ok(answer) => break answer,
            Err(error) if started.elapsed() > Duration::from_secs(20) => {
                panic!("no metrics endpoint on {metrics}: {error}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!(answer.status(), 200);
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
}

#[test]
fn a_bad_metrics_listen_address_is_refused_by_the_command_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
        .args(["bench", "--metrics-listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--metrics-listen"));
}
