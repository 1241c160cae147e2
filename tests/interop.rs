#![cfg(feature = "server")]
//! Interop with an independent gRPC implementation.
//!
//! The client and the embedded server share one hand-written codec, so a
//! codec bug could hide on both sides. `tests/peers/cache_server.py` serves
//! the same contract on grpcio (grpc's C core). Every scenario below is
//! written once, as a function of a `&Client` and a [`Log`], and runs against
//! both servers at the same time; the test fails when a step's outcome
//! differs between them (error variants must match, messages need not) or
//! breaks the contract's expectation written next to it. The fault tests at
//! the end drive the peer's `x-fault` header.
//!
//! Set-up: `.ci/run` creates a virtual environment under `target/peer-venv`
//! and installs the pinned packages of `tests/peers/requirements.txt` before
//! `cargo test`. Run directly, the first test does the same (once per
//! machine, under a lock shared by every test process).
//! Without `python3` on the machine these tests fail with a clear message.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use tiny_cache_client::server::Server;
use tiny_cache_client::{
    CasOutcome, Client, Code, Error, ItemResult, PingMethod, ServingStatus, Stats, Ttl,
};

// ===== the peer's Python environment =====================================

/// What the peer needs, pinned to versions known to install here (wheels for
/// CPython 3.8 to 3.13 on Linux and macOS), one per line. `.ci/run` installs
/// the same file before `cargo test`; changing it rebuilds the environment
/// on the next run.
const PEER_REQUIREMENTS: &str = include_str!("peers/requirements.txt");

/// Longest `python3 -m venv` may take.
const VENV_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest the pip install may take: a few seconds with a warm pip cache,
/// under a minute on a cold machine (about 15 MB of wheels).
const PIP_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest a test waits for another process that holds the set-up lock:
/// that process's whole set-up plus slack.
const LOCK_WAIT: Duration = Duration::from_secs(480);

/// A lock older than this is left over from a killed run and is broken.
const LOCK_STALE_AFTER: Duration = Duration::from_secs(480);

/// Longest the peer may take from spawn to `LISTENING <port>` (it compiles
/// the protos first; ~0.2 s on a warm machine).
const PEER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest the peer may take to exit once its stdin is closed.
const PEER_EXIT_TIMEOUT: Duration = Duration::from_secs(3);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/peer-venv` of the checkout, whatever `CARGO_TARGET_DIR` says: one
/// environment shared by every build of the crate.
fn venv_dir() -> PathBuf {
    manifest_dir().join("target").join("peer-venv")
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// The Python interpreter of the peer's environment, set up on first use.
/// Panics with the reason (python3 missing, install failed) otherwise.
fn peer_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(prepare_venv) {
        Ok(python) => python.clone(),
        Err(why) => panic!("the grpcio interop peer cannot run: {why}"),
    }
}

/// The requirements, one per line, without blank lines or comments.
fn requirements() -> Vec<&'static str> {
    PEER_REQUIREMENTS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// The marker's content: the requirements the environment was built with,
/// as `.ci/run` writes it too (the file's content, byte for byte).
fn wanted_marker() -> String {
    PEER_REQUIREMENTS.to_owned()
}

fn venv_is_ready(venv: &Path) -> bool {
    let marker = fs::read_to_string(venv.join(".tiny-cache-peer-ready")).unwrap_or_default();
    marker == wanted_marker() && venv_python(venv).exists()
}

fn prepare_venv() -> Result<PathBuf, String> {
    let venv = venv_dir();
    if venv_is_ready(&venv) {
        return Ok(venv_python(&venv));
    }
    let parent = venv.parent().expect("target/ has a parent");
    fs::create_dir_all(parent).map_err(|e| format!("cannot create {parent:?}: {e}"))?;
    let Some(_lock) = SetupLock::acquire(&parent.join("peer-venv.lock"), &venv)? else {
        // Another process finished the set-up while this one waited.
        return Ok(venv_python(&venv));
    };
    if venv_is_ready(&venv) {
        return Ok(venv_python(&venv));
    }

    let started = Instant::now();
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(format!(
                "`python3 --version` failed ({}): the interop tests need Python 3 with its \
                 venv module (Debian: apt-get install python3 python3-venv)",
                out.status
            ))
        }
        Err(e) => {
            return Err(format!(
                "python3 was not found on PATH ({e}): the interop tests run a grpcio server \
                 and need Python 3 with its venv module (Debian: apt-get install python3 \
                 python3-venv)"
            ))
        }
    }
    if venv.exists() {
        // Half-built or built with other pins: start over.
        fs::remove_dir_all(&venv).map_err(|e| format!("cannot remove {venv:?}: {e}"))?;
    }
    let log = parent.join("peer-venv.log");
    let _ = fs::remove_file(&log);

    let mut create = Command::new("python3");
    create.arg("-m").arg("venv").arg(&venv);
    run_bounded(create, VENV_TIMEOUT, &log, "python3 -m venv")?;

    let python = venv_python(&venv);
    let mut install = Command::new(&python);
    install
        .args(["-m", "pip", "install", "--quiet", "--no-input"])
        .args(["--disable-pip-version-check"])
        .args(requirements())
        .env("PIP_NO_INPUT", "1");
    run_bounded(
        install,
        PIP_TIMEOUT,
        &log,
        "pip install grpcio grpcio-tools",
    )?;

    // Written last and atomically: a marker means a complete environment.
    let marker = venv.join(".tiny-cache-peer-ready");
    let partial = venv.join(".tiny-cache-peer-ready.partial");
    fs::write(&partial, wanted_marker())
        .and_then(|()| fs::rename(&partial, &marker))
        .map_err(|e| format!("cannot write {marker:?}: {e}"))?;
    // Straight to stderr, past the test harness's capture: a set-up is
    // rare and slow enough to be worth a line in every run that does one.
    let _ = writeln!(
        std::io::stderr(),
        "interop: set up the grpcio peer environment in {venv:?} in {:.1?}",
        started.elapsed()
    );
    Ok(python)
}

/// Runs `command` with its output appended to `log`, killing it after
/// `timeout`. The error carries the end of the log.
fn run_bounded(
    mut command: Command,
    timeout: Duration,
    log: &Path,
    what: &str,
) -> Result<(), String> {
    let open_log = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {log:?}: {e}"))
    };
    command
        .stdin(Stdio::null())
        .stdout(open_log()?)
        .stderr(open_log()?);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let started = Instant::now();
    let failure = loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => break format!("{what} failed ({status})"),
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break format!("{what} did not finish within {timeout:?}");
            }
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(e) => break format!("cannot wait for {what}: {e}"),
        }
    };
    let mut output = String::new();
    let _ = File::open(log).and_then(|mut f| f.read_to_string(&mut output));
    let tail: Vec<&str> = output.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{failure}; last lines of {log:?}:\n{}",
        tail.join("\n")
    ))
}

/// A lock between processes (test binaries, concurrent `cargo test` runs):
/// a directory, since creating one is atomic everywhere. It holds the
/// owner's pid so a waiter can break the lock of a killed owner at once.
struct SetupLock {
    path: PathBuf,
}

impl SetupLock {
    /// The lock, or `None` when the environment became ready while waiting.
    fn acquire(path: &Path, venv: &Path) -> Result<Option<SetupLock>, String> {
        let started = Instant::now();
        loop {
            match fs::create_dir(path) {
                Ok(()) => {
                    let _ = fs::write(path.join("pid"), std::process::id().to_string());
                    return Ok(Some(SetupLock {
                        path: path.to_owned(),
                    }));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create the lock {path:?}: {e}")),
            }
            if venv_is_ready(venv) {
                return Ok(None);
            }
            if Self::is_stale(path) {
                let _ = fs::remove_dir_all(path);
                continue;
            }
            if started.elapsed() > LOCK_WAIT {
                return Err(format!(
                    "waited {LOCK_WAIT:?} for another process setting up {venv:?} (lock {path:?})"
                ));
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Left over by a process that died: its pid is gone (where /proc tells),
    /// or the lock is older than any set-up can take.
    fn is_stale(path: &Path) -> bool {
        let owner_gone = fs::read_to_string(path.join("pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| {
                Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
            });
        let too_old = fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > LOCK_STALE_AFTER);
        owner_gone || too_old
    }
}

impl Drop for SetupLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ===== servers ============================================================

/// Server limits, applied the same way to both servers; `None` keeps the
/// default (the peer's defaults are the embedded server's).
#[derive(Debug, Clone, Copy, Default)]
struct Limits {
    max_items: Option<usize>,
    max_memory_bytes: Option<u64>,
    max_value_bytes: Option<u64>,
    /// Peer only: how long calls in flight may finish once it is told to
    /// stop (its default is 500 ms).
    stop_grace: Option<Duration>,
}

const DEFAULT_LIMITS: Limits = Limits {
    max_items: None,
    max_memory_bytes: None,
    max_value_bytes: None,
    stop_grace: None,
};

/// The grpcio peer, a child process. Dropping it closes its stdin, which
/// makes it exit; it is killed if it does not.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    /// The peer's stdout after its first line (`STALLING` for each call
    /// that begins a `sleep-ms` stall).
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn start(limits: Limits) -> Peer {
        let python = peer_python();
        let script = manifest_dir().join("tests/peers/cache_server.py");
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", "0"]);
        if let Some(n) = limits.max_items {
            command.arg(format!("--max-items={n}"));
        }
        if let Some(n) = limits.max_memory_bytes {
            command.arg(format!("--max-memory-bytes={n}"));
        }
        if let Some(n) = limits.max_value_bytes {
            command.arg(format!("--max-value-bytes={n}"));
        }
        if let Some(grace) = limits.stop_grace {
            command.arg(format!("--stop-grace-ms={}", grace.as_millis()));
        }
        command
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python:?} {script:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (first_line, first_line_rx) = mpsc::channel();
        let (later_lines, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut stdout = BufReader::new(stdout).lines();
            let _ = first_line.send(stdout.next());
            // Keep draining so the peer never blocks on a full pipe.
            for line in stdout.map_while(Result::ok) {
                let _ = later_lines.send(line);
            }
        });
        let mut peer = Peer {
            child,
            stdin,
            port: 0,
            lines,
        };
        let line = match first_line_rx.recv_timeout(PEER_START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            other => panic!(
                "the grpcio peer did not report its port within {PEER_START_TIMEOUT:?}: \
                 {other:?} (its stderr is above)"
            ),
        };
        peer.port = line
            .strip_prefix("LISTENING ")
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the peer: {line:?}"));
        peer
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits (at most `within`) for the peer to print `wanted`; returns
    /// whether it did.
    fn wait_for_line(&self, wanted: &str, within: Duration) -> bool {
        let give_up = Instant::now() + within;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == wanted => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Tells the peer to shut down gracefully (by closing its stdin) without
    /// waiting for it to exit.
    fn begin_shutdown(&mut self) {
        drop(self.stdin.take());
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let asked = Instant::now();
        while asked.elapsed() < PEER_EXIT_TIMEOUT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn embedded(limits: Limits) -> Server {
    let mut builder = Server::builder();
    if let Some(n) = limits.max_items {
        builder = builder.max_items(n);
    }
    if let Some(n) = limits.max_memory_bytes {
        builder = builder.max_memory_bytes(n);
    }
    if let Some(n) = limits.max_value_bytes {
        builder = builder.max_value_bytes(n);
    }
    builder.start().expect("embedded server starts")
}

/// Deadline of every call in the scenarios: long enough for a loaded debug
/// build, short enough that a hang fails the test instead of stalling it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn client_of(address: &str) -> Client {
    Client::builder(address)
        .timeout(CALL_TIMEOUT)
        .build()
        .expect("client builds")
}

// ===== outcomes, written down comparably ==================================

/// How a successful result is written in a [`Log`].
trait Show {
    fn show(&self) -> String;
}

impl Show for () {
    fn show(&self) -> String {
        "ok".into()
    }
}

impl Show for bool {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl<B: AsRef<[u8]>> Show for Option<B> {
    fn show(&self) -> String {
        match self {
            Some(value) => some(value.as_ref()),
            None => none(),
        }
    }
}

impl Show for CasOutcome {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

impl Show for ServingStatus {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

impl Show for Stats {
    fn show(&self) -> String {
        format!(
            "size={} hits={} misses={} evictions={} hit_rate={:.4} memory={} max_memory={} \
             max_items={} max_value={} lru={} expired={} oversize={} capacity={}",
            self.size,
            self.hits,
            self.misses,
            self.evictions,
            self.hit_rate,
            self.memory_usage_bytes,
            self.max_memory_bytes,
            self.max_items,
            self.max_value_bytes,
            self.lru_evictions,
            self.expired_removals,
            self.rejected_oversize,
            self.rejected_capacity
        )
    }
}

impl Show for Client {
    fn show(&self) -> String {
        "ok".into()
    }
}

impl Show for Duration {
    fn show(&self) -> String {
        "answered".into()
    }
}

/// Counts and pairs of counters picked out of a reply.
impl Show for u64 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for (u64, u64) {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

impl<B: AsRef<[u8]>> Show for Vec<ItemResult<Option<B>>> {
    fn show(&self) -> String {
        let items: Vec<String> = self
            .iter()
            .map(|item| match &item.result {
                Ok(value) => format!("{}={}", key(&item.key), value.show()),
                Err(e) => format!("{}={}", key(&item.key), item_error(server_text(e))),
            })
            .collect();
        format!("[{}]", items.join(", "))
    }
}

impl Show for Vec<ItemResult<()>> {
    fn show(&self) -> String {
        let items: Vec<String> = self
            .iter()
            .map(|item| match &item.result {
                Ok(()) => format!("{}=ok", key(&item.key)),
                Err(e) => format!("{}={}", key(&item.key), item_error(server_text(e))),
            })
            .collect();
        format!("[{}]", items.join(", "))
    }
}

fn show<T: Show>(result: &Result<T, Error>) -> String {
    match result {
        Ok(value) => value.show(),
        Err(e) => err(&error_kind(e)),
    }
}

/// An error's variant (and code where the variant carries one), without
/// its message: messages differ between servers, variants must not.
fn error_kind(error: &Error) -> String {
    match error {
        Error::Validation(_) => "Validation".into(),
        Error::InvalidArgument(_) => "InvalidArgument".into(),
        Error::ResourceExhausted(_) => "ResourceExhausted".into(),
        Error::Unavailable(_) => "Unavailable".into(),
        Error::DeadlineExceeded(_) => "DeadlineExceeded".into(),
        Error::Closed => "Closed".into(),
        Error::NotUtf8 { .. } => "NotUtf8".into(),
        Error::Protocol { code, .. } => format!("Protocol({code:?})"),
        Error::Status { code, .. } => format!("Status({code:?})"),
        other => format!("{:?}", other.code()),
    }
}

/// A value: short ones byte for byte, long ones by length and checksum.
fn value_text(value: &[u8]) -> String {
    if value.len() <= 40 {
        format!("b\"{}\"", value.escape_ascii())
    } else {
        // FNV-1a: enough to tell two different long values apart.
        let hash = value.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("<{} bytes fnv={hash:016x}>", value.len())
    }
}

fn some(value: &[u8]) -> String {
    format!("some({})", value_text(value))
}

fn none() -> String {
    "none".into()
}

fn ok() -> String {
    "ok".into()
}

fn err(kind: &str) -> String {
    format!("err:{kind}")
}

fn key(key: &str) -> String {
    let chars = key.chars().count();
    if chars <= 24 {
        format!("{key:?}")
    } else {
        let start: String = key.chars().take(4).collect();
        format!("<{chars} chars {start:?}…>")
    }
}

/// The server's own text of an item's refusal (the typed error carries
/// it; the peer prints the bare text).
fn server_text(error: &Error) -> &str {
    match error {
        Error::InvalidArgument(text) | Error::ResourceExhausted(text) => text.text(),
        other => panic!("expected a server's refusal of the item, got {other:?}"),
    }
}

fn item_error(message: &str) -> String {
    if message.is_empty() {
        "item-error(no text)".into()
    } else {
        "item-error".into()
    }
}

/// `[key=outcome, ...]` as a multi-key result is shown.
fn items(pairs: &[(&str, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, outcome)| format!("{}={outcome}", key(k)))
        .collect();
    format!("[{}]", items.join(", "))
}

// ===== scenarios: one log per server, compared step by step ===============

/// What one scenario saw on one server: every step's outcome, and every
/// step that broke the contract's expectation.
struct Log {
    address: String,
    steps: RefCell<Vec<(String, String)>>,
    surprises: RefCell<Vec<String>>,
}

impl Log {
    /// Writes down a step's outcome (compared with the other server's).
    fn see<T: Show>(&self, label: &str, result: &Result<T, Error>) -> String {
        let outcome = show(result);
        self.steps
            .borrow_mut()
            .push((label.to_owned(), outcome.clone()));
        outcome
    }

    /// Writes down a step's outcome and checks it against the contract.
    fn expect<T: Show>(&self, label: &str, result: &Result<T, Error>, expected: &str) {
        let outcome = self.see(label, result);
        if outcome != expected {
            self.surprises.borrow_mut().push(format!(
                "{label}: expected {expected}, got {outcome}{because}",
                because = match result {
                    Err(e) => format!(" ({e})"),
                    Ok(_) => String::new(),
                }
            ));
        }
    }

    /// Checks a condition the outcomes alone do not show (timing, say).
    fn check(&self, label: &str, holds: bool, detail: impl std::fmt::Display) {
        self.steps
            .borrow_mut()
            .push((label.to_owned(), holds.to_string()));
        if !holds {
            self.surprises
                .borrow_mut()
                .push(format!("{label}: does not hold ({detail})"));
        }
    }
}

type Scenario = fn(&Client, &Log);

/// What a scenario returned on one server: its steps and surprises, or the
/// panic that stopped it.
type Finished = Result<(Vec<(String, String)>, Vec<String>), String>;

fn run_on(address: String, scenario: Scenario) -> (Vec<(String, String)>, Vec<String>) {
    let client = client_of(&address);
    let log = Log {
        address,
        steps: RefCell::default(),
        surprises: RefCell::default(),
    };
    scenario(&client, &log);
    client.close();
    (log.steps.into_inner(), log.surprises.into_inner())
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic".into())
}

/// Runs `scenario` against the embedded server and the grpcio peer (both
/// started fresh with `limits`, in parallel) and fails on any difference or
/// any broken expectation.
fn on_both(limits: Limits, scenario: Scenario) {
    // Set the environment up first, outside the timed scenario threads.
    peer_python();
    let embedded_run = thread::spawn(move || {
        let server = embedded(limits);
        run_on(server.address(), scenario)
    });
    let peer_run = thread::spawn(move || {
        let peer = Peer::start(limits);
        run_on(peer.address(), scenario)
    });
    let embedded: Finished = embedded_run.join().map_err(panic_text);
    let peer: Finished = peer_run.join().map_err(panic_text);

    let mut problems = Vec::new();
    for (name, finished) in [("embedded", &embedded), ("grpcio peer", &peer)] {
        match finished {
            Err(panic) => problems.push(format!("[{name}] the scenario panicked: {panic}")),
            Ok((_, surprises)) => {
                problems.extend(surprises.iter().map(|s| format!("[{name}] contract: {s}")))
            }
        }
    }
    if let (Ok((ours, _)), Ok((theirs, _))) = (&embedded, &peer) {
        for (i, pair) in ours.iter().zip(theirs.iter()).enumerate() {
            if pair.0 != pair.1 {
                problems.push(format!(
                    "step {i} differs:\n    embedded:    {} -> {}\n    grpcio peer: {} -> {}",
                    pair.0 .0, pair.0 .1, pair.1 .0, pair.1 .1
                ));
            }
        }
        if ours.len() != theirs.len() {
            problems.push(format!(
                "{} steps on the embedded server, {} on the peer",
                ours.len(),
                theirs.len()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the embedded server and the grpcio peer disagree:\n{}",
        problems.join("\n")
    );
}

// ----- get / set / delete ------------------------------------------------

fn basics(c: &Client, log: &Log) {
    log.expect("set greeting", &c.set("greeting", "hello"), &ok());
    log.expect("get greeting", &c.get("greeting"), &some(b"hello"));
    log.expect("get_string", &c.get_string("greeting"), &some(b"hello"));
    log.expect("overwrite", &c.set("greeting", "bonjour"), &ok());
    log.expect("get again", &c.get("greeting"), &some(b"bonjour"));
    log.expect("get missing", &c.get("never-written"), &none());
    log.expect("get_string missing", &c.get_string("never"), &none());

    log.expect("set doomed", &c.set("doomed", "x"), &ok());
    log.expect("set survivor", &c.set("survivor", "y"), &ok());
    log.expect("delete doomed", &c.delete("doomed"), &ok());
    log.expect("get doomed", &c.get("doomed"), &none());
    log.expect("get survivor", &c.get("survivor"), &some(b"y"));
    log.expect("delete again", &c.delete("doomed"), &ok());
    log.expect("delete missing", &c.delete("never-written"), &ok());

    log.expect("set empty", &c.set("empty", b""), &ok());
    log.expect("get empty", &c.get("empty"), &some(b""));
    log.expect("get_string empty", &c.get_string("empty"), &some(b""));

    let ascending: Vec<u8> = (0..=255u8).collect();
    let scrambled: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    log.expect("set 0..=255", &c.set("ascending", &ascending), &ok());
    log.expect("get 0..=255", &c.get("ascending"), &some(&ascending));
    log.expect("set 64 KiB", &c.set("scrambled", &scrambled), &ok());
    log.expect("get 64 KiB", &c.get("scrambled"), &some(&scrambled));

    log.expect("set binary", &c.set("binary", [0x66, 0x6f, 0xff]), &ok());
    log.expect(
        "get_string binary",
        &c.get_string("binary"),
        &err("NotUtf8"),
    );
    log.expect("get binary", &c.get("binary"), &some(&[0x66, 0x6f, 0xff]));
    log.expect("set text", &c.set("text", "snow ☃"), &ok());
    log.expect(
        "get_string text",
        &c.get_string("text"),
        &some("snow ☃".as_bytes()),
    );
}

#[test]
fn get_set_delete_and_values_agree_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, basics);
}

// ----- large messages ----------------------------------------------------

/// Largest request message the reference server (and grpcio) accepts.
const FOUR_MIB: usize = 4 * 1024 * 1024;

fn large_messages(c: &Client, log: &Log) {
    let one_mib: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    log.expect("set 1 MiB", &c.set("one-mib", &one_mib), &ok());
    log.expect("get 1 MiB", &c.get("one-mib"), &some(&one_mib));
    // CacheItem{key: "k", value, ttl: 0} is the value plus 8 bytes.
    let exact = vec![3u8; FOUR_MIB - 8];
    log.expect(
        "set a 4 MiB request",
        &c.set_with_ttl("k", &exact, Ttl::Never),
        &ok(),
    );
    // The reply, CacheValue{found, value}, is one byte under 4 MiB.
    log.expect("get the 4 MiB value", &c.get("k"), &some(&exact));
    let over = vec![3u8; FOUR_MIB - 7];
    log.expect(
        "client refuses 4 MiB + 1",
        &c.set_with_ttl("k2", &over, Ttl::Never),
        &err("ResourceExhausted"),
    );
    let unlimited = Client::builder(&log.address)
        .timeout(CALL_TIMEOUT)
        .max_send_message_bytes(8 * 1024 * 1024)
        .build()
        .expect("client builds");
    log.expect(
        "server refuses 4 MiB + 1",
        &unlimited.set_with_ttl("k2", &over, Ttl::Never),
        &err("ResourceExhausted"),
    );
    let five_mib = vec![2u8; 5 * 1024 * 1024];
    log.expect(
        "server refuses a 5 MiB set_many",
        &unlimited.set_many([("big", &five_mib)]),
        &err("ResourceExhausted"),
    );
    log.expect(
        "connection still usable",
        &unlimited.set("small", "ok"),
        &ok(),
    );
    log.expect("nothing oversize written", &c.get("k2"), &none());
    log.expect("small written", &c.get("small"), &some(b"ok"));
}

#[test]
fn four_mib_requests_and_replies_agree_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, large_messages);
}

// ----- keys --------------------------------------------------------------

fn keys(c: &Client, log: &Log) {
    let k256 = "k".repeat(256);
    log.expect("set 256 chars", &c.set(&k256, "long"), &ok());
    log.expect("get 256 chars", &c.get(&k256), &some(b"long"));
    log.expect("set_if_absent 256", &c.set_if_absent(&k256, "x"), "false");
    log.expect("delete 256", &c.delete(&k256), &ok());
    log.expect("get deleted 256", &c.get(&k256), &none());
    let k257 = "k".repeat(257);
    log.expect("get 257 chars", &c.get(&k257), &err("Validation"));
    log.expect("set empty key", &c.set("", "v"), &err("Validation"));

    let snowmen = "☃".repeat(256); // 768 bytes, 256 characters
    let too_many = "☃".repeat(257);
    log.expect("set 256 snowmen", &c.set(&snowmen, "cold"), &ok());
    log.expect("get 256 snowmen", &c.get(&snowmen), &some(b"cold"));
    log.expect(
        "get_many snowmen",
        &c.get_many([snowmen.as_str(), too_many.as_str(), ""]),
        &items(&[
            (&snowmen, some(b"cold")),
            (&too_many, item_error("x")),
            ("", item_error("x")),
        ]),
    );
    log.expect(
        "set_many snowmen",
        &c.set_many([(too_many.as_str(), "v"), (snowmen.as_str(), "colder")]),
        &items(&[(&too_many, item_error("x")), (&snowmen, ok())]),
    );
    log.expect(
        "delete_many snowmen",
        &c.delete_many([too_many.as_str(), snowmen.as_str()]),
        &items(&[(&too_many, item_error("x")), (&snowmen, ok())]),
    );
    log.expect("stats", &c.stats().map(|s| s.size), "0");
}

#[test]
fn key_rules_agree_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, keys);
}

// ----- TTL ---------------------------------------------------------------

/// Long enough past a 1 s TTL that an entry has surely expired on a loaded
/// machine, short enough to keep the test quick.
const PAST_ONE_SECOND: Duration = Duration::from_millis(1300);

/// Well before a 1 s TTL runs out, with room for scheduling noise.
const STILL_LIVE: Duration = Duration::from_millis(600);

fn ttl(c: &Client, log: &Log) {
    let short_default = Client::builder(&log.address)
        .timeout(CALL_TIMEOUT)
        .default_ttl(Duration::from_secs(1))
        .build()
        .expect("client builds");
    let one = Duration::from_secs(1);
    let started = Instant::now();
    log.expect("set 1 s", &c.set_with_ttl("short", "s", one), &ok());
    log.expect("set default 1 s", &short_default.set("short-d", "d"), &ok());
    log.expect(
        "set never",
        &c.set_with_ttl("forever", "f", Ttl::Never),
        &ok(),
    );
    log.expect("set default ttl", &c.set("default", "d"), &ok());
    log.expect(
        "set_many 1 s",
        &c.set_many_with_ttl([("t1", "a"), ("t2", "b")], one),
        &items(&[("t1", ok()), ("t2", ok())]),
    );
    log.expect(
        "set_many never",
        &c.set_many_with_ttl([("n", "c")], Ttl::Never),
        &items(&[("n", ok())]),
    );
    log.expect(
        "set_if_absent lease",
        &c.set_if_absent_with_ttl("lease", "w1", one),
        "true",
    );
    log.expect("lease taken", &c.set_if_absent("lease", "w2"), "false");
    log.expect("set cas", &c.set_with_ttl("cas", "v", one), &ok());
    log.expect(
        "cas with 1 s",
        &c.compare_and_set_with_ttl("cas", "v", "w", one),
        "Stored",
    );
    log.expect("short present", &c.get("short"), &some(b"s"));
    log.expect(
        "cas probe while live",
        &c.compare_and_set("cas", "probe", "x"),
        "Mismatch",
    );
    let last_write = Instant::now();
    // Not expired early (a server counting milliseconds, say): still there
    // well into its second.
    let written = started.elapsed();
    // The live check below must come before the first 1 s TTL runs out;
    // 800 ms leaves that check room even on a loaded machine.
    log.check(
        "all written quickly",
        written < Duration::from_millis(800),
        format!("{written:?}"),
    );
    thread::sleep(STILL_LIVE.saturating_sub(started.elapsed()));
    log.expect("short-d still live", &c.get("short-d"), &some(b"d"));

    thread::sleep(PAST_ONE_SECOND.saturating_sub(last_write.elapsed()));
    log.expect("short expired", &c.get("short"), &none());
    log.expect("default 1 s expired", &c.get("short-d"), &none());
    log.expect(
        "multi expired",
        &c.get_many(["t1", "t2", "n"]),
        &items(&[("t1", none()), ("t2", none()), ("n", some(b"c"))]),
    );
    log.expect("lease free again", &c.set_if_absent("lease", "w2"), "true");
    log.expect("lease value", &c.get("lease"), &some(b"w2"));
    log.expect(
        "cas expired",
        &c.compare_and_set("cas", "w", "x"),
        "NotFound",
    );
    log.expect("cas created nothing", &c.get("cas"), &none());
    log.expect("forever", &c.get("forever"), &some(b"f"));
    log.expect("default", &c.get("default"), &some(b"d"));
    log.see("stats after expiry", &c.stats());
    log.expect(
        "size and expired removals",
        &c.stats().map(|s| (s.size, s.expired_removals)),
        "(4, 6)",
    );
}

#[test]
fn ttl_expiry_agrees_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, ttl);
}

// ----- namespaces --------------------------------------------------------

fn namespaces(c: &Client, log: &Log) {
    let alice = c.with_namespace("alice").expect("valid namespace");
    let bob = Client::builder(&log.address)
        .timeout(CALL_TIMEOUT)
        .namespace("bob")
        .build()
        .expect("client builds");
    log.expect("shared set", &c.set("cart", "shared"), &ok());
    log.expect("alice set", &alice.set("cart", "alice"), &ok());
    log.expect("bob set", &bob.set("cart", "bob"), &ok());
    log.expect("alice only", &alice.set("alice-only", "a"), &ok());
    log.expect("shared get", &c.get("cart"), &some(b"shared"));
    log.expect("alice get", &alice.get("cart"), &some(b"alice"));
    log.expect("bob get", &bob.get("cart"), &some(b"bob"));
    log.expect("shared misses alice", &c.get("alice-only"), &none());
    log.expect("bob misses alice", &bob.get("alice-only"), &none());
    log.expect("bob delete", &bob.delete("cart"), &ok());
    log.expect("bob gone", &bob.get("cart"), &none());
    log.expect("alice kept", &alice.get("cart"), &some(b"alice"));
    log.expect(
        "alice get_many",
        &alice.get_many(["cart", "alice-only", "x"]),
        &items(&[
            ("cart", some(b"alice")),
            ("alice-only", some(b"a")),
            ("x", none()),
        ]),
    );
    log.expect(
        "alice exists",
        &alice.set_if_absent("cart", "again"),
        "false",
    );
    log.expect("bob absent", &bob.set_if_absent("cart", "bob2"), "true");
    log.expect(
        "alice cas",
        &alice.compare_and_set("cart", "alice", "alice2"),
        "Stored",
    );
    log.expect(
        "bob cas",
        &bob.compare_and_set("cart", "alice2", "x"),
        "Mismatch",
    );
    log.expect(
        "alice delete_many",
        &alice.delete_many(["alice-only"]),
        &items(&[("alice-only", ok())]),
    );
    log.expect("shared untouched", &c.get("cart"), &some(b"shared"));

    // Trimmed, and blank means the shared key space.
    let padded = Client::builder(&log.address)
        .timeout(CALL_TIMEOUT)
        .namespace("  app ")
        .build()
        .expect("client builds");
    let app = c.with_namespace("app").expect("valid namespace");
    log.expect("padded set", &padded.set("k", "from padded"), &ok());
    log.expect("app sees padded", &app.get("k"), &some(b"from padded"));
    log.expect("shared does not", &c.get("k"), &none());
    log.expect("shared set k", &c.set("k", "shared"), &ok());
    let blank = app.with_namespace("   ").expect("blank namespace");
    log.expect("blank is shared", &blank.get("k"), &some(b"shared"));
    let raw = c.with_metadata("x-cache-namespace", " app ").expect("raw");
    log.expect("raw padded header", &raw.get("k"), &some(b"from padded"));
    let raw_blank = c.with_metadata("x-cache-namespace", "  ").expect("raw");
    log.expect("raw blank header", &raw_blank.get("k"), &some(b"shared"));
    for good in ["a", "App-1.x_y", "9lives", &"n".repeat(64)] {
        let raw = c.with_metadata("x-cache-namespace", good).expect("raw");
        log.expect(&format!("raw {good:?} set"), &raw.set("k", good), &ok());
        let named = c.with_namespace(good).expect("valid namespace");
        log.expect(
            &format!("{good:?} same space"),
            &named.get("k"),
            &some(good.as_bytes()),
        );
    }
    log.expect("stats", &c.stats().map(|s| s.size), "9");
}

#[test]
fn namespace_isolation_agrees_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, namespaces);
}

fn namespace_rejection(c: &Client, log: &Log) {
    log.expect("set k", &c.set("k", "v"), &ok());
    let too_long = "n".repeat(65);
    for bad in [
        "bad ns!",
        "-app",
        ".app",
        "_app",
        "a/b",
        "a:b",
        too_long.as_str(),
    ] {
        let label = |op: &str| format!("{op} in {}", key(bad));
        log.expect(
            &label("with_namespace"),
            &c.with_namespace(bad),
            &err("Validation"),
        );
        let raw = c
            .with_metadata("x-cache-namespace", bad)
            .expect("the client lets raw metadata through");
        let invalid = err("InvalidArgument");
        log.expect(&label("get"), &raw.get("k"), &invalid);
        log.expect(&label("set"), &raw.set("k", "other"), &invalid);
        log.expect(&label("delete"), &raw.delete("k"), &invalid);
        log.expect(
            &label("set_if_absent"),
            &raw.set_if_absent("k2", "v"),
            &invalid,
        );
        log.expect(&label("cas"), &raw.compare_and_set("k", "v", "w"), &invalid);
        // Checked before the keys, and fails a Multi* call as a whole.
        log.expect(&label("get_many"), &raw.get_many(["k", ""]), &invalid);
        log.expect(
            &label("set_many"),
            &raw.set_many([("k", "other")]),
            &invalid,
        );
        log.expect(&label("delete_many"), &raw.delete_many(["k"]), &invalid);
        log.expect(
            &label("empty get_many"),
            &raw.get_many(Vec::<String>::new()),
            &invalid,
        );
        // Stats ignore the namespace header, even an invalid one.
        log.expect(&label("stats"), &raw.stats().map(|s| s.size), "1");
    }
    log.expect(
        "non-ASCII namespace refused by the client",
        &c.with_metadata("x-cache-namespace", "café"),
        &err("Validation"),
    );
    log.expect("nothing written", &c.get("k"), &some(b"v"));
    log.expect("nothing created", &c.get("k2"), &none());
}

#[test]
fn namespace_rejection_agrees_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, namespace_rejection);
}

fn namespaced_key_length(c: &Client, log: &Log) {
    let app = c.with_namespace("app").expect("valid"); // prefix "3:app:" = 6 chars
    let fits = "k".repeat(250);
    let too_long = "k".repeat(251);
    log.expect("app set 250", &app.set(&fits, "fits"), &ok());
    log.expect("app get 250", &app.get(&fits), &some(b"fits"));
    log.expect("shared set 251", &c.set(&too_long, "alone"), &ok());
    log.expect("app get 251", &app.get(&too_long), &err("Validation"));
    log.expect("app set 251", &app.set(&too_long, "v"), &err("Validation"));
    log.expect("app delete 251", &app.delete(&too_long), &err("Validation"));
    // Multi calls are validated by the server, item by item.
    log.expect(
        "app get_many",
        &app.get_many([fits.as_str(), too_long.as_str()]),
        &items(&[(&fits, some(b"fits")), (&too_long, item_error("x"))]),
    );
    log.expect(
        "app set_many",
        &app.set_many([(too_long.as_str(), "v"), (fits.as_str(), "again")]),
        &items(&[(&too_long, item_error("x")), (&fits, ok())]),
    );
    log.expect("app get again", &app.get(&fits), &some(b"again"));
    log.expect(
        "app delete_many",
        &app.delete_many([too_long.as_str()]),
        &items(&[(&too_long, item_error("x"))]),
    );
    log.expect("shared untouched", &c.get(&too_long), &some(b"alone"));
    // A long namespace leaves little room: "64:<64 n>:" is 68 characters.
    let wide = c.with_namespace(&"n".repeat(64)).expect("valid");
    let k188 = "k".repeat(188);
    let k189 = "k".repeat(189);
    log.expect(
        "wide get_many",
        &wide.get_many([k188.as_str(), k189.as_str()]),
        &items(&[(&k188, none()), (&k189, item_error("x"))]),
    );
    // Through a raw header the client cannot check: the server refuses.
    let raw = c.with_metadata("x-cache-namespace", "app").expect("raw");
    log.expect("raw get 251", &raw.get(&too_long), &err("InvalidArgument"));
    log.expect(
        "raw set 251",
        &raw.set(&too_long, "v"),
        &err("InvalidArgument"),
    );
    log.expect(
        "raw delete 251",
        &raw.delete(&too_long),
        &err("InvalidArgument"),
    );
    log.expect(
        "raw set_if_absent 251",
        &raw.set_if_absent(&too_long, "v"),
        &err("InvalidArgument"),
    );
    log.expect(
        "raw cas 251",
        &raw.compare_and_set(&too_long, "a", "b"),
        &err("InvalidArgument"),
    );
    log.expect("raw get 250", &raw.get(&fits), &some(b"again"));
}

#[test]
fn keys_too_long_once_namespaced_agree_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, namespaced_key_length);
}

// ----- sizes and eviction --------------------------------------------------

fn oversize(c: &Client, log: &Log) {
    log.expect("991 bytes fit", &c.set("fits", vec![7u8; 991]), &ok());
    log.expect("get 991", &c.get("fits"), &some(&[7u8; 991]));
    log.expect(
        "992 bytes",
        &c.set("big", vec![7u8; 992]),
        &err("ResourceExhausted"),
    );
    log.expect("nothing written", &c.get("big"), &none());
    log.expect(
        "set_if_absent 992",
        &c.set_if_absent("big", vec![7u8; 992]),
        &err("ResourceExhausted"),
    );
    log.expect(
        "set_if_absent 992 on a present key",
        &c.set_if_absent("fits", vec![7u8; 992]),
        "false",
    );
    log.expect(
        "cas 992",
        &c.compare_and_set("fits", vec![7u8; 991], vec![8u8; 992]),
        &err("ResourceExhausted"),
    );
    log.expect(
        "cas 992 mismatching",
        &c.compare_and_set("fits", b"nope", vec![8u8; 992]),
        "Mismatch",
    );
    log.expect("old value kept", &c.get("fits"), &some(&[7u8; 991]));
    let long = "x".repeat(257);
    let items_in: Vec<(&str, Vec<u8>)> = vec![
        ("s1", b"one".to_vec()),
        ("", b"empty key".to_vec()),
        ("s2", vec![9u8; 992]),
        (long.as_str(), b"long key".to_vec()),
        ("s3", vec![9u8; 991]),
        ("s1", b"one again".to_vec()),
    ];
    log.expect(
        "set_many mixed",
        &c.set_many(items_in),
        &items(&[
            ("s1", ok()),
            ("", item_error("x")),
            ("s2", item_error("x")),
            (&long, item_error("x")),
            ("s3", ok()),
            ("s1", ok()),
        ]),
    );
    log.expect("later item wins", &c.get("s1"), &some(b"one again"));
    log.expect("s2 not written", &c.get("s2"), &none());
    log.see("stats", &c.stats());
    log.expect(
        "rejected and limit",
        &c.stats().map(|s| (s.rejected_oversize, s.max_value_bytes)),
        "(4, 1024)",
    );
}

#[test]
fn oversize_values_agree_with_the_grpcio_peer() {
    on_both(
        Limits {
            max_value_bytes: Some(1024),
            ..DEFAULT_LIMITS
        },
        oversize,
    );
}

fn no_room(c: &Client, log: &Log) {
    log.expect("small", &c.set("small", "x"), &ok());
    log.expect(
        "500 bytes",
        &c.set("big", vec![0u8; 500]),
        &err("ResourceExhausted"),
    );
    log.expect("not written", &c.get("big"), &none());
    log.expect(
        "set_many no room",
        &c.set_many([("big", vec![0u8; 500]), ("b", vec![1u8])]),
        &items(&[("big", item_error("x")), ("b", ok())]),
    );
    log.expect("small kept", &c.get("small"), &some(b"x"));
    log.see("stats", &c.stats());
    log.expect(
        "rejected for capacity",
        &c.stats()
            .map(|s| (s.rejected_capacity, s.rejected_oversize)),
        "(2, 0)",
    );
}

#[test]
fn entries_that_cannot_fit_agree_with_the_grpcio_peer() {
    on_both(
        Limits {
            max_memory_bytes: Some(200),
            max_value_bytes: Some(1024),
            ..DEFAULT_LIMITS
        },
        no_room,
    );
}

fn lru_by_items(c: &Client, log: &Log) {
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        log.expect(&format!("set {k}"), &c.set(k, v), &ok());
    }
    log.expect("touch a", &c.get("a"), &some(b"1"));
    log.expect("set d evicts b", &c.set("d", "4"), &ok());
    log.see("stats", &c.stats());
    log.expect("b evicted", &c.get("b"), &none());
    log.expect("a kept", &c.get("a"), &some(b"1"));
    log.expect("c kept", &c.get("c"), &some(b"3"));
    log.expect("d kept", &c.get("d"), &some(b"4"));
    // Recency now c, d, a (oldest first) and after the reads a, c, d;
    // replacing c evicts nothing and makes it the most recent: a, d, c.
    log.expect("replace c", &c.set("c", "33"), &ok());
    log.expect("set e evicts a", &c.set("e", "5"), &ok());
    log.expect("a evicted", &c.get("a"), &none());
    log.expect(
        "set_if_absent exists does not refresh",
        &c.set_if_absent("d", "x"),
        "false",
    );
    log.expect("set f evicts d", &c.set("f", "6"), &ok());
    log.expect(
        "after f",
        &c.get_many(["c", "d", "e", "f"]),
        &items(&[
            ("c", some(b"33")),
            ("d", none()),
            ("e", some(b"5")),
            ("f", some(b"6")),
        ]),
    );
    log.see("final stats", &c.stats());
}

#[test]
fn lru_eviction_by_item_count_agrees_with_the_grpcio_peer() {
    on_both(
        Limits {
            max_items: Some(3),
            ..DEFAULT_LIMITS
        },
        lru_by_items,
    );
}

fn lru_by_memory(c: &Client, log: &Log) {
    for k in ["a", "b", "c"] {
        log.expect(&format!("set {k}"), &c.set(k, [b'v'; 100]), &ok());
    }
    log.expect("touch a", &c.get("a"), &some(&[b'v'; 100]));
    log.expect("set d", &c.set("d", [b'w'; 100]), &ok());
    log.expect("b evicted", &c.get("b"), &none());
    // 200 bytes + 33 need two more evictions (c, then a).
    log.expect("set e", &c.set("e", [b'x'; 200]), &ok());
    log.expect(
        "after e",
        &c.get_many(["a", "c", "d", "e"]),
        &items(&[
            ("a", none()),
            ("c", none()),
            ("d", some(&[b'w'; 100])),
            ("e", some(&[b'x'; 200])),
        ]),
    );
    log.see("stats", &c.stats());
}

#[test]
fn lru_eviction_by_memory_agrees_with_the_grpcio_peer() {
    on_both(
        Limits {
            max_memory_bytes: Some(3 * 133),
            max_value_bytes: Some(1024),
            ..DEFAULT_LIMITS
        },
        lru_by_memory,
    );
}

// ----- multi calls -------------------------------------------------------

fn multi(c: &Client, log: &Log) {
    log.expect("set a", &c.set("a", "1"), &ok());
    log.expect("set b", &c.set("b", ""), &ok());
    let long = "x".repeat(257);
    log.expect(
        "get_many mixed",
        &c.get_many(["missing", "a", "", long.as_str(), "b", "a"]),
        &items(&[
            ("missing", none()),
            ("a", some(b"1")),
            ("", item_error("x")),
            (&long, item_error("x")),
            ("b", some(b"")),
            ("a", some(b"1")),
        ]),
    );
    log.expect("get_many empty", &c.get_many(Vec::<String>::new()), "[]");
    log.expect(
        "set_many empty",
        &c.set_many(Vec::<(&str, &str)>::new()),
        "[]",
    );
    log.expect(
        "delete_many empty",
        &c.delete_many(Vec::<String>::new()),
        "[]",
    );

    let keys: Vec<String> = (0..100).map(|i| format!("key-{i:03}")).collect();
    let every_other: Vec<(&str, &str)> = keys
        .iter()
        .step_by(2)
        .map(|k| (k.as_str(), k.as_str()))
        .collect();
    let stored = c.set_many(every_other);
    log.expect(
        "set_many 50",
        &stored.map(|r| r.iter().filter(|i| i.result.is_ok()).count() as u64),
        "50",
    );
    let expected: Vec<(&str, String)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let outcome = if i % 2 == 0 {
                some(k.as_bytes())
            } else {
                none()
            };
            (k.as_str(), outcome)
        })
        .collect();
    log.expect(
        "get_many 100 in order",
        &c.get_many(&keys),
        &items(&expected),
    );

    log.expect("set keep", &c.set("keep", "k"), &ok());
    log.expect(
        "delete_many mixed",
        &c.delete_many(["a", "missing", "", long.as_str(), "b", "a"]),
        &items(&[
            ("a", ok()),
            ("missing", ok()),
            ("", item_error("x")),
            (&long, item_error("x")),
            ("b", ok()),
            ("a", ok()),
        ]),
    );
    log.expect(
        "after delete_many",
        &c.get_many(["a", "b", "keep"]),
        &items(&[("a", none()), ("b", none()), ("keep", some(b"k"))]),
    );
    log.see("stats", &c.stats());
}

#[test]
fn multi_key_calls_agree_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, multi);
}

// ----- conditional writes ------------------------------------------------

fn conditional(c: &Client, log: &Log) {
    log.expect("absent stores", &c.set_if_absent("lock", "w1"), "true");
    log.expect("present exists", &c.set_if_absent("lock", "w2"), "false");
    log.expect("exists wrote nothing", &c.get("lock"), &some(b"w1"));
    log.expect("delete", &c.delete("lock"), &ok());
    log.expect("absent again", &c.set_if_absent("lock", "w3"), "true");
    log.expect("w3", &c.get("lock"), &some(b"w3"));

    log.expect("set counter", &c.set("counter", "1"), &ok());
    log.expect(
        "cas stored",
        &c.compare_and_set("counter", "1", "2"),
        "Stored",
    );
    log.expect("counter 2", &c.get("counter"), &some(b"2"));
    log.expect(
        "cas mismatch",
        &c.compare_and_set("counter", "1", "3"),
        "Mismatch",
    );
    log.expect("mismatch wrote nothing", &c.get("counter"), &some(b"2"));
    log.expect(
        "cas not found",
        &c.compare_and_set("missing", "1", "2"),
        "NotFound",
    );
    log.expect("not found created nothing", &c.get("missing"), &none());
    log.expect("set empty", &c.set("empty", ""), &ok());
    log.expect(
        "cas from empty",
        &c.compare_and_set("empty", "", [0u8, 255]),
        "Stored",
    );
    log.expect("binary now", &c.get("empty"), &some(&[0, 255]));
    log.expect(
        "cas binary mismatch",
        &c.compare_and_set("empty", [0u8, 254], "x"),
        "Mismatch",
    );
    log.expect(
        "cas with never",
        &c.compare_and_set_with_ttl("empty", [0u8, 255], "y", Ttl::Never),
        "Stored",
    );
    log.expect(
        "set_if_absent with never",
        &c.set_if_absent_with_ttl("n", "v", Ttl::Never),
        "true",
    );
    log.see("stats", &c.stats());
}

#[test]
fn conditional_writes_agree_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, conditional);
}

// ----- stats -------------------------------------------------------------

fn stats(c: &Client, log: &Log) {
    log.see("fresh", &c.stats());
    log.expect("set a", &c.set("a", "hello"), &ok());
    log.expect("set b", &c.set("b", ""), &ok());
    log.expect("set c", &c.set("c", [0u8; 100]), &ok());
    log.expect(
        "size and memory",
        &c.stats().map(|s| (s.size, s.memory_usage_bytes)),
        &format!("{:?}", (3, 105 + 3 * 33)),
    );
    for k in ["a", "b", "nope", "nada", "a"] {
        log.see(&format!("get {k}"), &c.get(k));
    }
    log.expect(
        "hits and misses",
        &c.stats().map(|s| (s.hits, s.misses)),
        "(3, 2)",
    );
    log.see("after reads", &c.stats());
    log.expect("delete b", &c.delete("b"), &ok());
    log.expect("overwrite a", &c.set("a", "hi"), &ok());
    log.see("after delete and overwrite", &c.stats());
    let tenant = c.with_namespace("tenant").expect("valid");
    log.expect("tenant set", &tenant.set("a", "xyz"), &ok());
    log.expect("tenant miss", &tenant.get("zzz"), &none());
    let from_tenant = tenant.stats();
    let from_shared = c.stats();
    log.see("from tenant", &from_tenant);
    log.see("from shared", &from_shared);
    log.check(
        "stats ignore the namespace",
        from_tenant == from_shared,
        format!("{from_tenant:?} vs {from_shared:?}"),
    );
    // Multi calls count reads; invalid items count nothing.
    log.see("get_many", &c.get_many(["a", "nope", ""]));
    log.expect(
        "multi reads counted",
        &c.stats().map(|s| (s.hits, s.misses)),
        "(4, 4)",
    );
    // Conditional writes are not reads.
    log.see("set_if_absent", &c.set_if_absent("a", "x"));
    log.see("cas", &c.compare_and_set("a", "hi", "ho"));
    log.see("cas missing", &c.compare_and_set("zz", "hi", "ho"));
    log.see("final", &c.stats());
}

#[test]
fn stats_counters_agree_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, stats);
}

// ----- health, ping, metadata ----------------------------------------------

fn health_and_ping(c: &Client, log: &Log) {
    log.expect("health of the server", &c.health_check(""), "Serving");
    log.expect(
        "health of the cache service",
        &c.health_check("cache.CacheService"),
        "Serving",
    );
    log.expect(
        "health of an unknown service",
        &c.health_check("nope"),
        &err(&format!("Status({:?})", Code::NotFound)),
    );
    log.expect("ping by stats", &c.ping(), "answered");
    let by_health = Client::builder(&log.address)
        .timeout(CALL_TIMEOUT)
        .ping_method(PingMethod::Health)
        .build()
        .expect("client builds");
    log.expect("ping by health", &by_health.ping(), "answered");
}

#[test]
fn health_and_ping_agree_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, health_and_ping);
}

fn metadata(c: &Client, log: &Log) {
    let traced = c.with_request_id("abc").expect("valid id");
    log.expect("set with request id", &traced.set("k", "v"), &ok());
    log.expect("get with request id", &traced.get("k"), &some(b"v"));
    let tagged = traced
        .with_metadata("x-caller", "billing service")
        .and_then(|c| c.with_metadata_bin("x-trace-bin", &[0, 1, 254, 255]))
        .expect("valid metadata");
    log.expect("get with metadata", &tagged.get("k"), &some(b"v"));
    log.expect(
        "get_many with metadata",
        &tagged.get_many(["k"]),
        &items(&[("k", some(b"v"))]),
    );
    log.expect("stats with metadata", &tagged.stats().map(|s| s.size), "1");
    let long_id = "r".repeat(200);
    let long = c.with_request_id(&long_id).expect("valid id");
    log.expect("long request id", &long.get("k"), &some(b"v"));
    log.expect(
        "non-ASCII refused",
        &c.with_metadata("x-note", "naïve"),
        &err("Validation"),
    );
}

#[test]
fn metadata_is_accepted_alike_by_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, metadata);
}

// ----- concurrency -------------------------------------------------------

fn many_threads(c: &Client, log: &Log) {
    const THREADS: usize = 16;
    const ITERATIONS: usize = 60;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let c = c.clone();
            thread::spawn(move || -> Result<(), String> {
                let own = format!("thread-{t}");
                let lock = format!("lock-{t}");
                for i in 0..ITERATIONS {
                    let value = format!("{t}:{i}:{}", "x".repeat(i * 37 % 2000));
                    c.set(&own, &value).map_err(|e| e.to_string())?;
                    let read = c.get_string(&own).map_err(|e| e.to_string())?;
                    if read.as_deref() != Some(value.as_str()) {
                        return Err(format!("thread {t} iteration {i} read {read:?}"));
                    }
                    if i % 10 == 0 {
                        let stored = c.set_if_absent(&lock, &value).map_err(|e| e.to_string())?;
                        let cas = c
                            .compare_and_set(&lock, &value, "done")
                            .map_err(|e| e.to_string())?;
                        c.delete(&lock).map_err(|e| e.to_string())?;
                        if !stored || cas != CasOutcome::Stored {
                            return Err(format!("thread {t}: {stored} {cas:?}"));
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    for (t, worker) in workers.into_iter().enumerate() {
        let outcome = worker.join().unwrap_or_else(|_| Err("panicked".into()));
        log.check(
            &format!("thread {t}"),
            outcome.is_ok(),
            format!("{outcome:?}"),
        );
    }
    log.see("stats", &c.stats());
}

#[test]
fn sixteen_threads_on_one_client_agree_with_the_grpcio_peer() {
    on_both(DEFAULT_LIMITS, many_threads);
}

// ===== faults injected by the peer =========================================

/// How late past its deadline a call may return on a loaded 2-core machine.
const DEADLINE_SLACK: Duration = Duration::from_millis(750);

/// The `grpc-message` of every injected fault (FAULT_MESSAGE in the peer):
/// grpc core percent-encodes it, the client must decode it back.
const FAULT_MESSAGE: &str = "fault injected: naïve 100% ☃";

/// The peer's `grpc-status-details-bin` for code `code`: google.rpc.Status
/// {code, message: FAULT_MESSAGE}, serialized (the message is under 128
/// bytes, so its length is a one-byte varint).
fn fault_details(code: u8) -> Vec<u8> {
    let mut details = vec![0x08, code, 0x12, FAULT_MESSAGE.len() as u8];
    details.extend_from_slice(FAULT_MESSAGE.as_bytes());
    details
}

fn peer_client(peer: &Peer, timeout: Duration) -> Client {
    Client::builder(&peer.address())
        .timeout(timeout)
        .build()
        .expect("client builds")
}

fn faulty(client: &Client, fault: &str) -> Client {
    client
        .with_metadata("x-fault", fault)
        .expect("valid fault header")
}

#[test]
fn unavailable_twice_then_success_is_retried_transparently() {
    let peer = Peer::start(DEFAULT_LIMITS);
    // A fresh client per call, so that no client-wide retry budget spent by
    // one call decides the next one's fate.
    let flaky = || faulty(&peer_client(&peer, CALL_TIMEOUT), "unavailable-times=2");
    assert_eq!(flaky().set("flaky-set", "v"), Ok(()));
    assert_eq!(
        flaky().get("flaky-get").map(|v| v.map(|b| b.to_vec())),
        Ok(None)
    );
    assert_eq!(flaky().get_many(["flaky-many"]).map(|r| r.len()), Ok(1));
    assert_eq!(flaky().stats().map(|s| s.size), Ok(1));
    let client = peer_client(&peer, CALL_TIMEOUT);
    assert_eq!(
        client.get("flaky-set").map(|v| v.map(|b| b.to_vec())),
        Ok(Some(b"v".to_vec()))
    );
}

#[test]
fn retries_stop_after_max_retries_extra_attempts() {
    let peer = Peer::start(DEFAULT_LIMITS);
    let client = peer_client(&peer, CALL_TIMEOUT).with_max_retries(2);
    let flaky = faulty(&client, "unavailable-times=3");
    match flaky.set("k", "v") {
        Err(Error::Unavailable(message)) => assert_eq!(message, FAULT_MESSAGE),
        other => panic!("expected Unavailable after 3 attempts, got {other:?}"),
    }
    // The peer has now failed exactly three attempts on "k": the fourth,
    // made without retries, succeeds. Two or four attempts above would show
    // here as a failure or as the first call succeeding.
    assert_eq!(flaky.with_max_retries(0).set("k", "v"), Ok(()));
}

#[test]
fn conditional_writes_are_not_retried_once_the_server_has_seen_them() {
    let peer = Peer::start(DEFAULT_LIMITS);
    let client = peer_client(&peer, CALL_TIMEOUT);
    let flaky = faulty(&client, "unavailable-times=1");
    assert!(
        matches!(
            flaky.set_if_absent("lock", "w1"),
            Err(Error::Unavailable(_))
        ),
        "an UNAVAILABLE status comes from a server that saw the request"
    );
    assert_eq!(
        client.set_if_absent("lock", "w2"),
        Ok(true),
        "nothing written"
    );
    client.set("counter", "1").unwrap();
    assert!(matches!(
        flaky.compare_and_set("counter", "1", "2"),
        Err(Error::Unavailable(_))
    ));
    assert_eq!(
        client.compare_and_set("counter", "1", "3"),
        Ok(CasOutcome::Stored)
    );
    // Idempotent calls with the same fault are retried and succeed.
    assert_eq!(flaky.set("plain", "v"), Ok(()));
}

#[test]
fn a_stall_longer_than_the_timeout_is_deadline_exceeded_in_time() {
    let peer = Peer::start(DEFAULT_LIMITS);
    let timeout = Duration::from_millis(500);
    let client = peer_client(&peer, timeout);
    client.set("k", "v").expect("warm-up call");
    let started = Instant::now();
    let result = faulty(&client, "sleep-ms=3000").get("k");
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(Error::DeadlineExceeded(_))),
        "expected DeadlineExceeded, got {result:?}"
    );
    assert!(
        elapsed < timeout + DEADLINE_SLACK,
        "returned after {elapsed:?} with a {timeout:?} timeout"
    );
    // The connection is not stuck behind the stalled call.
    let started = Instant::now();
    assert_eq!(
        client.get("k").map(|v| v.map(|b| b.to_vec())),
        Ok(Some(b"v".to_vec()))
    );
    assert!(started.elapsed() < timeout);
    // A stall shorter than the timeout is just a slow answer.
    let patient = peer_client(&peer, Duration::from_secs(3));
    assert_eq!(faulty(&patient, "sleep-ms=300").set("k", "w"), Ok(()));
}

#[test]
fn fault_statuses_become_typed_errors_with_the_decoded_message() {
    let peer = Peer::start(DEFAULT_LIMITS);
    let client = peer_client(&peer, CALL_TIMEOUT).with_max_retries(0);
    for shape in ["", ",headers-first"] {
        let call = |status: &str| faulty(&client, &format!("status={status}{shape}")).get("k");
        match call("INVALID_ARGUMENT") {
            Err(Error::InvalidArgument(m)) => assert_eq!(m, FAULT_MESSAGE),
            other => panic!("{shape}: expected InvalidArgument, got {other:?}"),
        }
        match call("RESOURCE_EXHAUSTED") {
            Err(Error::ResourceExhausted(m)) => assert_eq!(m, FAULT_MESSAGE),
            other => panic!("{shape}: expected ResourceExhausted, got {other:?}"),
        }
        match call("UNAVAILABLE") {
            Err(Error::Unavailable(m)) => assert_eq!(m, FAULT_MESSAGE),
            other => panic!("{shape}: expected Unavailable, got {other:?}"),
        }
        match call("DEADLINE_EXCEEDED") {
            Err(Error::DeadlineExceeded(_)) => {}
            other => panic!("{shape}: expected DeadlineExceeded, got {other:?}"),
        }
        match call("NOT_FOUND") {
            Err(Error::Status {
                code: Code::NotFound,
                message,
                details: None,
            }) => assert_eq!(message, FAULT_MESSAGE),
            other => panic!("{shape}: expected Status(NOT_FOUND), got {other:?}"),
        }
        match call("13") {
            Err(Error::Status {
                code: Code::Internal,
                message,
                ..
            }) => assert_eq!(message, FAULT_MESSAGE),
            other => panic!("{shape}: expected Status(INTERNAL), got {other:?}"),
        }
    }
    // Every one of those left the connection healthy.
    assert_eq!(client.set("k", "v"), Ok(()));
}

#[test]
fn status_details_from_grpcio_reach_the_caller() {
    let peer = Peer::start(DEFAULT_LIMITS);
    let client = peer_client(&peer, CALL_TIMEOUT).with_max_retries(0);
    for shape in ["", ",headers-first"] {
        let failed = faulty(
            &client,
            &format!("status=FAILED_PRECONDITION,abort-details{shape}"),
        );
        match failed.get("k") {
            Err(Error::Status {
                code: Code::FailedPrecondition,
                message,
                details: Some(details),
            }) => {
                assert_eq!(message, FAULT_MESSAGE);
                assert_eq!(details.to_vec(), fault_details(9), "{shape}");
            }
            other => panic!("{shape}: expected FAILED_PRECONDITION with details, got {other:?}"),
        }
    }
    match faulty(&client, "abort-details").set("k", "v") {
        Err(Error::Status {
            code: Code::Aborted,
            details: Some(details),
            ..
        }) => assert_eq!(details.to_vec(), fault_details(10)),
        other => panic!("expected ABORTED with details, got {other:?}"),
    }
}

#[test]
fn retry_pushback_from_grpcio_delays_the_retry() {
    let peer = Peer::start(DEFAULT_LIMITS);
    let client = peer_client(&peer, CALL_TIMEOUT);
    let pushback = Duration::from_millis(600);
    let flaky = faulty(
        &client,
        &format!("unavailable-times=1,pushback-ms={}", pushback.as_millis()),
    );
    let started = Instant::now();
    assert_eq!(flaky.set("k", "v"), Ok(()));
    let elapsed = started.elapsed();
    // The client's own first backoff is at most 50 ms: only the pushback
    // explains a pause this long.
    assert!(
        elapsed >= pushback,
        "retried after {elapsed:?}, before the server's {pushback:?} pushback"
    );
    assert!(elapsed < pushback + DEADLINE_SLACK, "took {elapsed:?}");
}

#[test]
fn negative_retry_pushback_from_grpcio_stops_retries() {
    let peer = Peer::start(DEFAULT_LIMITS);
    let client = peer_client(&peer, CALL_TIMEOUT);
    let flaky = faulty(&client, "unavailable-times=1,pushback-ms=-1");
    assert!(
        matches!(flaky.set("k", "v"), Err(Error::Unavailable(_))),
        "a negative pushback means: do not retry"
    );
    // The peer saw one attempt only: the next succeeds.
    assert_eq!(flaky.set("k", "v"), Ok(()));
}

#[test]
fn pushback_longer_than_the_deadline_fails_at_once() {
    let peer = Peer::start(DEFAULT_LIMITS);
    let timeout = Duration::from_secs(1);
    let client = peer_client(&peer, timeout);
    let started = Instant::now();
    let result = faulty(&client, "unavailable-times=1,pushback-ms=5000").set("k", "v");
    assert!(
        matches!(
            result,
            Err(Error::Unavailable(_)) | Err(Error::DeadlineExceeded(_))
        ),
        "got {result:?}"
    );
    assert!(
        started.elapsed() < timeout + DEADLINE_SLACK,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn graceful_shutdown_of_the_grpcio_peer_lets_the_call_in_flight_finish() {
    let mut peer = Peer::start(Limits {
        stop_grace: Some(Duration::from_secs(3)),
        ..DEFAULT_LIMITS
    });
    let timeout = Duration::from_secs(3);
    let client = peer_client(&peer, timeout);
    client.set("k", "v").expect("warm-up call");
    let slow = faulty(&client, "sleep-ms=700");
    let in_flight = thread::spawn(move || slow.get("k").map(|v| v.map(|b| b.to_vec())));
    assert!(
        peer.wait_for_line("STALLING", Duration::from_secs(10)),
        "the slow call never reached the peer"
    );
    // grpc core sends GOAWAY and keeps serving the streams it has.
    peer.begin_shutdown();
    assert_eq!(
        in_flight.join().expect("no panic"),
        Ok(Some(b"v".to_vec())),
        "the call in flight finishes"
    );
    // Once the peer is gone, a call fails as Unavailable within its deadline.
    drop(peer);
    let started = Instant::now();
    let result = client.get("k");
    assert!(
        matches!(result, Err(Error::Unavailable(_))),
        "expected Unavailable, got {result:?}"
    );
    assert!(started.elapsed() < timeout + DEADLINE_SLACK);
}
