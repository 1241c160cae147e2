//! What the two tonic peers share: the generated protobuf and tonic code of
//! `proto/cache.proto`, a small `--name value` argument reader, and the
//! process CPU and context-switch readings (the same `/proc` sources as
//! `tiny-cache bench`, so the columns of the compare table mean the same for
//! every client).

use std::collections::HashMap;
use std::time::Duration;

/// `cache.proto`'s messages, tonic client and tonic server.
pub mod proto {
    tonic::include_proto!("cache");
}

/// Command-line options as `--name value` pairs (and bare `--flag`s).
pub struct Options {
    values: HashMap<String, String>,
}

impl Options {
    /// Reads the process's arguments; `flags` are the options that take no
    /// value. Exits with a message on anything else.
    pub fn from_args(flags: &[&str]) -> Options {
        let mut values = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                fail(&format!("unexpected argument {arg:?}"));
            };
            if let Some((name, value)) = name.split_once('=') {
                values.insert(name.to_owned(), value.to_owned());
            } else if flags.contains(&name) {
                values.insert(name.to_owned(), String::new());
            } else {
                let value = args
                    .next()
                    .unwrap_or_else(|| fail(&format!("--{name} needs a value")));
                values.insert(name.to_owned(), value);
            }
        }
        Options { values }
    }

    /// `--name`'s value parsed as `T`, or `default` when it is absent.
    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.values.get(name) {
            None => default,
            Some(raw) => raw
                .parse()
                .unwrap_or_else(|_| fail(&format!("--{name}: cannot parse {raw:?}"))),
        }
    }

    /// `--name`'s value as text, when given.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether the bare flag `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}

/// Prints `error: {message}` and exits with status 2.
pub fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}

/// Clock ticks per second of `/proc/*/stat` times (Linux's `USER_HZ`).
const USER_HZ: u64 = 100;

/// One reading of this process's resource use.
#[derive(Debug, Clone, Copy)]
pub struct ProcessUsage {
    /// User plus system CPU time of every thread.
    pub cpu: Duration,
    /// Voluntary plus involuntary context switches of the live threads.
    pub context_switches: u64,
}

impl ProcessUsage {
    /// The process's usage now; `None` without Linux's `/proc`.
    pub fn now() -> Option<ProcessUsage> {
        // utime and stime are fields 14 and 15; count from the last ')' as
        // the command name may hold spaces.
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after_name = &stat[stat.rfind(')')? + 1..];
        let mut fields = after_name.split_whitespace().skip(14 - 3);
        let user: u64 = fields.next()?.parse().ok()?;
        let system: u64 = fields.next()?.parse().ok()?;
        // The process-level status counts only the main thread's switches:
        // add up every thread's.
        let mut context_switches = 0;
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            for line in status.lines() {
                if let Some((name, value)) = line.split_once(':') {
                    if name == "voluntary_ctxt_switches" || name == "nonvoluntary_ctxt_switches" {
                        context_switches += value.trim().parse::<u64>().unwrap_or(0);
                    }
                }
            }
        }
        Some(ProcessUsage {
            cpu: Duration::from_millis((user + system) * 1000 / USER_HZ),
            context_switches,
        })
    }

    /// What was used between `earlier` and this reading.
    pub fn since(&self, earlier: &ProcessUsage) -> ProcessUsage {
        ProcessUsage {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            context_switches: self
                .context_switches
                .saturating_sub(earlier.context_switches),
        }
    }
}
