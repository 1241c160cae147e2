//! What this process has cost the machine so far: CPU time and context
//! switches, from `getrusage(RUSAGE_SELF)` through nix's safe wrapper.
//!
//! Why getrusage and not `/proc`: it is one system call that already sums
//! every thread of the process (the ones that have ended too, which a walk
//! of `/proc/self/task` misses), gives CPU time in microseconds instead of
//! clock ticks whose rate (`USER_HZ`) the program would have to assume, and
//! works on every Unix, not only Linux. Nothing `bench` reports needs what
//! only procfs knows, so procfs is not used. Off Unix the readings are
//! simply unavailable.

use std::time::Duration;

/// One reading of the whole process's resource use.
#[derive(Debug, Clone, Copy)]
pub struct ProcessUsage {
    /// User plus system CPU time of every thread.
    pub cpu: Duration,
    /// Voluntary plus involuntary context switches of every thread.
    pub context_switches: u64,
}

impl ProcessUsage {
    /// Reads the process's usage now; `None` where getrusage is unavailable.
    #[cfg(unix)]
    pub fn now() -> Option<ProcessUsage> {
        use nix::sys::resource::{getrusage, UsageWho};
        use nix::sys::time::TimeVal;

        let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
        // A TimeVal's seconds and microseconds are never negative here: they
        // count time spent, from zero.
        let duration = |time: TimeVal| {
            let seconds = u64::try_from(time.tv_sec()).unwrap_or(0);
            let micros = u64::try_from(time.tv_usec()).unwrap_or(0);
            Duration::from_secs(seconds) + Duration::from_micros(micros)
        };
        let count = |n: nix::libc::c_long| u64::try_from(n).unwrap_or(0);
        Some(ProcessUsage {
            cpu: duration(usage.user_time()) + duration(usage.system_time()),
            context_switches: count(usage.voluntary_context_switches())
                + count(usage.involuntary_context_switches()),
        })
    }

    /// Reads the process's usage now; `None` where getrusage is unavailable.
    #[cfg(not(unix))]
    pub fn now() -> Option<ProcessUsage> {
        None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn readings_grow_with_work_and_switches() {
        let before = ProcessUsage::now().expect("getrusage works on Unix");
        // Burn measurable CPU, then block once so the thread is switched out.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        std::thread::sleep(Duration::from_millis(5));
        let used = ProcessUsage::now()
            .expect("getrusage works on Unix")
            .since(&before);
        assert!(used.cpu > Duration::ZERO, "{used:?}");
        assert!(used.context_switches > 0, "{used:?}");
    }

    #[test]
    fn since_never_goes_below_zero() {
        let small = ProcessUsage {
            cpu: Duration::from_millis(1),
            context_switches: 1,
        };
        let large = ProcessUsage {
            cpu: Duration::from_millis(2),
            context_switches: 5,
        };
        let used = small.since(&large);
        assert_eq!(used.cpu, Duration::ZERO);
        assert_eq!(used.context_switches, 0);
        assert_eq!(large.since(&small).context_switches, 4);
    }
}
