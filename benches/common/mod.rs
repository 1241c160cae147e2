//! What every benchmark harness needs: a server in its own process that is
//! killed when the harness ends, whatever way it ends.
// Each bench binary includes this module and uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The CLI binary built for this benchmark run.
pub const TINY_CACHE: &str = env!("CARGO_BIN_EXE_tiny-cache");

/// A child process killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `taskset` is there to pin a process to a CPU.
pub fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts a server that prints its address on its first stdout line, on
/// CPU 0 when `pin`.
pub fn start_server(program: &Path, args: &[&str], pin: bool) -> (Guard, String) {
    let mut command = if pin {
        let mut command = Command::new("taskset");
        command.args(["-c", "0"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let stdout = child.stdout.take().expect("server stdout");
    let guard = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the server's address");
    assert!(
        !line.trim().is_empty(),
        "{} printed no address",
        program.display()
    );
    (guard, line.trim().to_owned())
}

/// `tiny-cache serve --workers 1` on a free loopback port.
pub fn start_embedded_server(pin: bool) -> (Guard, String) {
    start_server(
        Path::new(TINY_CACHE),
        &["serve", "--listen", "127.0.0.1:0", "--workers", "1"],
        pin,
    )
}

/// What one load-generator run reported on its `--json` line (the same
/// fields for `tiny-cache bench` and the tonic peer); NaN where a field is
/// missing or the run failed.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub ops_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub cpu_us_per_op: f64,
    pub ctx_switches_per_op: f64,
    pub errors: f64,
}

impl Sample {
    /// A run that produced nothing.
    pub const FAILED: Sample = Sample {
        ops_per_s: f64::NAN,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        p999_us: f64::NAN,
        cpu_us_per_op: f64::NAN,
        ctx_switches_per_op: f64::NAN,
        errors: f64::NAN,
    };

    /// Reads the flat JSON object a bench run prints as its last line.
    pub fn from_json(json: &str) -> Sample {
        let field = |name: &str| {
            let key = format!("\"{name}\":");
            json.split(&key)
                .nth(1)
                .and_then(|rest| rest.split([',', '}']).next())
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(f64::NAN)
        };
        Sample {
            ops_per_s: field("ops_per_s"),
            p50_us: field("p50_us"),
            p99_us: field("p99_us"),
            p999_us: field("p999_us"),
            cpu_us_per_op: field("cpu_us_per_op"),
            ctx_switches_per_op: field("ctx_switches_per_op"),
            errors: field("errors"),
        }
    }
}

/// The median of the values that are numbers; NaN when none is.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}
