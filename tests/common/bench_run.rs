//! Running the `tiny-cache bench` binary from a test.

use std::process::{Command, Output};

use serde_json::Value;

/// Runs `tiny-cache bench ARGS`, isolated from the caller's environment.
pub fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiny-cache"))
        .arg("bench")
        .args(args)
        .env_remove("CACHE_SERVER_ADDRESS")
        .env_remove("CACHE_TIMEOUT")
        .output()
        .expect("the tiny-cache binary runs")
}

/// The JSON object on the last line of stdout.
pub fn last_json(output: &Output) -> Value {
    let out = String::from_utf8_lossy(&output.stdout);
    let last = out.trim_end().lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {output:?}"))
}
