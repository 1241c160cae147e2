//! What this process has cost the machine so far: CPU time and context
//! switches, read from Linux's `/proc` (no libc binding needed). Elsewhere
//! the readings are simply unavailable.

use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` times: Linux's `USER_HZ`, which
/// is 100 on every architecture it exposes to user space.
const USER_HZ: u64 = 100;

/// One reading of the whole process's resource use.
#[derive(Debug, Clone, Copy)]
pub struct ProcessUsage {
    /// User plus system CPU time of every thread.
    pub cpu: Duration,
    /// Voluntary plus involuntary context switches of the live threads.
    pub context_switches: u64,
}

impl ProcessUsage {
    /// Reads the process's usage now; `None` where `/proc` is unavailable.
    pub fn now() -> Option<ProcessUsage> {
        Some(ProcessUsage {
            cpu: cpu_time()?,
            context_switches: context_switches()?,
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

/// utime + stime (fields 14 and 15) of `/proc/self/stat`, which count every
/// thread of the process.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(ticks_to_duration(parse_stat_ticks(&stat)?))
}

/// utime + stime in clock ticks from the text of a `/proc/*/stat` file.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: count fields from the last ')', where field 3
    // starts.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks.saturating_mul(1000) / USER_HZ)
}

/// Context switches summed over `/proc/self/task/*/status`: the
/// process-level status file counts only the main thread.
fn context_switches() -> Option<u64> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        // A thread may end between listing and reading; it simply drops out.
        if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
            total += parse_status_switches(&status);
        }
    }
    Some(total)
}

/// voluntary + nonvoluntary context switches from a `/proc/*/status` text.
fn parse_status_switches(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            matches!(
                name,
                "voluntary_ctxt_switches" | "nonvoluntary_ctxt_switches"
            )
            .then(|| value.trim().parse::<u64>().ok())
            .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_found_after_a_name_with_spaces_and_parentheses() {
        let stat = "42 (tiny (cache) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(ticks_to_duration(325), Duration::from_millis(3250));
    }

    #[test]
    fn status_switches_add_both_kinds() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t10\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(parse_status_switches(status), 13);
    }

    #[test]
    fn readings_work_on_linux() {
        if cfg!(target_os = "linux") {
            let usage = ProcessUsage::now().expect("/proc is readable on Linux");
            assert!(usage.context_switches > 0);
        }
    }
}
