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
