//! Running a call's parts on several servers at once from a blocking
//! caller.
//!
//! Scoped threads, one per extra part, with the first part on the
//! caller's own thread: a call to one server (R = 1, or a multi-key call
//! whose keys share a server) spawns nothing. A fixed set of helper
//! threads would save the spawn (about 15-30 µs here, measured in
//! `benches/cluster.rs`) but would let a dead server's parts, each waiting
//! out its deadline, occupy the helpers and delay calls for healthy
//! servers; a part on its own thread can only delay its own call.

use std::sync::Mutex;
use std::thread;

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
