//! Running a call's parts on several servers at once from a blocking
//! caller.
//!
//! The hot path (a call's parts for several servers) uses [`Helpers`],
//! threads kept and reused; a part for one server runs on the caller's
//! thread and touches no other thread. Rare fan-outs (read repair, touch,
//! per-server stats and ping) use [`in_parallel`], one scoped thread per
//! extra part, which can borrow the caller's data.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Runs every job, the first on this thread and the rest on scoped
/// threads, and returns their results in the jobs' order. A job whose
/// thread the system refuses runs on this thread instead.
pub(crate) fn in_parallel<T, F>(jobs: Vec<F>) -> Vec<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let mut jobs = jobs.into_iter();
    let Some(first) = jobs.next() else {
        return Vec::new();
    };
    if jobs.len() == 0 {
        return vec![first()];
    }
    // Each job waits in a slot, so one whose thread never starts is not
    // lost with the refused closure.
    let slots: Vec<Mutex<Option<F>>> = jobs.map(|job| Mutex::new(Some(job))).collect();
    let take = |slot: &Mutex<Option<F>>| slot.lock().ok().and_then(|mut job| job.take());
    thread::scope(|scope| {
        let handles: Vec<_> = slots
            .iter()
            .map(|slot| {
                thread::Builder::new()
                    .name("tiny-cache-fanout".into())
                    .spawn_scoped(scope, move || take(slot).map(|job| job()))
                    .ok()
            })
            .collect();
        let mut out = Vec::with_capacity(slots.len() + 1);
        out.push(first());
        for (slot, handle) in slots.iter().zip(handles) {
            let ran = match handle.map(|handle| handle.join()) {
                Some(Ok(ran)) => ran,
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                None => None,
            };
            let result = ran.or_else(|| take(slot).map(|job| job()));
            out.push(result.expect("every job runs exactly once, on its thread or here"));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_the_jobs_order() {
        let jobs: Vec<_> = (0..5u64)
            .map(|i| {
                move || {
                    std::thread::sleep(std::time::Duration::from_millis(10 * (5 - i)));
                    i * 10
                }
            })
            .collect();
        assert_eq!(in_parallel(jobs), vec![0, 10, 20, 30, 40]);
        assert_eq!(in_parallel(Vec::<fn() -> u8>::new()), Vec::<u8>::new());
    }
}

/// A part of a call handed to a helper thread.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Most helper threads a cluster keeps; beyond them a part runs on the
/// caller's thread after its other parts.
const MAX_HELPERS: usize = 64;
/// How long an idle helper waits for work before it ends.
const HELPER_IDLE: Duration = Duration::from_secs(30);

/// Helper threads for the hot path: a call's parts for several servers
/// (R > 1 writes, quorum reads, multi-key calls). Starting a thread costs
/// far more than a call on some systems (about 290 µs per scoped spawn
/// under the gVisor sandbox `benches/cluster.rs` ran in, against 50 µs of
/// client CPU per call), so threads are kept and reused.
///
/// A helper is taken only when one is idle or a new one can start, never
/// queued behind busy ones: a part waiting on a dead server occupies its
/// helper until its deadline, and must not delay another call's parts.
/// With every helper busy and `MAX_HELPERS` reached, the part runs on the
/// caller's thread instead. Helpers end when idle for 30 s or when the
/// cluster is dropped (they are not joined: each ends at its next wake-up).
pub(crate) struct Helpers {
    queue: crossbeam_channel::Sender<Job>,
    waiting: crossbeam_channel::Receiver<Job>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Helpers waiting for work that no caller has claimed yet.
    idle: AtomicUsize,
    threads: AtomicUsize,
}

impl Helpers {
    pub(crate) fn new() -> Helpers {
        let (queue, waiting) = crossbeam_channel::unbounded();
        Helpers {
            queue,
            waiting,
            counts: Arc::default(),
        }
    }

    /// Runs every job, the first on this thread and the others on helpers
    /// (or here, when none can be had), and returns their results in the
    /// jobs' order.
    pub(crate) fn run_all<T: Send + 'static>(
        &self,
        jobs: Vec<Box<dyn FnOnce() -> T + Send + 'static>>,
    ) -> Vec<T> {
        let count = jobs.len();
        let mut jobs = jobs.into_iter();
        let Some(first) = jobs.next() else {
            return Vec::new();
        };
        if count == 1 {
            return vec![first()];
        }
        let (done, results) = crossbeam_channel::bounded(count);
        let mut here = Vec::new();
        let mut handed = 0;
        for (index, job) in jobs.enumerate().map(|(i, job)| (i + 1, job)) {
            if !self.claim() {
                here.push((index, job));
                continue;
            }
            let done = done.clone();
            let part: Job = Box::new(move || {
                let _ = done.send((index, job()));
            });
            // The queue cannot be closed while `self` holds its receiver;
            // were it, the part would run here and report the same way.
            if let Err(crossbeam_channel::SendError(part)) = self.queue.send(part) {
                part();
            }
            handed += 1;
        }
        drop(done);
        let mut out: Vec<Option<T>> = (0..count).map(|_| None).collect();
        out[0] = Some(first());
        for (index, job) in here {
            out[index] = Some(job());
        }
        for _ in 0..handed {
            match results.recv() {
                Ok((index, result)) => out[index] = Some(result),
                // The helper dropped its sender without sending: its job
                // panicked. Pass the panic on, as a scoped thread would.
                Err(_) => panic!("a cluster helper's part panicked"),
            }
        }
        out.into_iter()
            .map(|result| result.expect("every part sent its result"))
            .collect()
    }

    /// Takes an idle helper, or starts one; false when neither can be had.
    fn claim(&self) -> bool {
        let idle = &self.counts.idle;
        let mut now = idle.load(Ordering::Acquire);
        while now > 0 {
            match idle.compare_exchange_weak(now, now - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => now = actual,
            }
        }
        if self.counts.threads.fetch_add(1, Ordering::AcqRel) >= MAX_HELPERS {
            self.counts.threads.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let (waiting, counts) = (self.waiting.clone(), Arc::clone(&self.counts));
        let started = thread::Builder::new()
            .name("tiny-cache-helper".into())
            .spawn(move || helper(&waiting, &counts));
        if started.is_err() {
            self.counts.threads.fetch_sub(1, Ordering::AcqRel);
        }
        started.is_ok()
    }
}

/// A helper's life: run parts; leave after `HELPER_IDLE` without one, if
/// no caller has counted on it meanwhile, or when the cluster is gone.
fn helper(waiting: &crossbeam_channel::Receiver<Job>, counts: &Counts) {
    loop {
        match waiting.recv_timeout(HELPER_IDLE) {
            Ok(job) => {
                // A panicking part drops its result sender, which tells
                // its caller; the helper itself lives on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                counts.idle.fetch_add(1, Ordering::AcqRel);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let idle = &counts.idle;
                let mut now = idle.load(Ordering::Acquire);
                let mut retired = false;
                while now > 0 {
                    match idle.compare_exchange_weak(
                        now,
                        now - 1,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            retired = true;
                            break;
                        }
                        Err(actual) => now = actual,
                    }
                }
                if retired {
                    counts.threads.fetch_sub(1, Ordering::AcqRel);
                    return;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod helper_tests {
    use super::*;

    #[test]
    fn helpers_return_results_in_order_and_are_reused() {
        let helpers = Helpers::new();
        for _ in 0..20 {
            let jobs: Vec<Box<dyn FnOnce() -> u64 + Send>> = (0..4u64)
                .map(|i| Box::new(move || i * 10) as Box<dyn FnOnce() -> u64 + Send>)
                .collect();
            assert_eq!(helpers.run_all(jobs), vec![0, 10, 20, 30]);
        }
        // Three parts per call leave the caller's thread: three helpers
        // serve all twenty calls.
        assert!(helpers.counts.threads.load(Ordering::Acquire) <= 3 * 2);
    }

    #[test]
    fn a_busy_helper_never_delays_another_call() {
        let helpers = Arc::new(Helpers::new());
        let (release, blocked) = crossbeam_channel::bounded::<()>(0);
        let slow = {
            let helpers = Arc::clone(&helpers);
            thread::spawn(move || {
                let jobs: Vec<Box<dyn FnOnce() -> bool + Send>> =
                    vec![Box::new(|| true), Box::new(move || blocked.recv().is_ok())];
                helpers.run_all(jobs)
            })
        };
        let started = std::time::Instant::now();
        let jobs: Vec<Box<dyn FnOnce() -> u8 + Send>> = vec![Box::new(|| 1), Box::new(|| 2)];
        assert_eq!(helpers.run_all(jobs), vec![1, 2]);
        assert!(started.elapsed() < Duration::from_secs(5));
        release.send(()).unwrap();
        assert_eq!(slow.join().unwrap(), vec![true, true]);
    }
}
