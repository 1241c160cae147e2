//! Running several multi-step jobs at once from a blocking caller.
//!
//! A call's parts for several servers start together on one
//! [`Flight`](crate::client::flight::Flight) and need no thread (see
//! `engine`). What is left here serves the rare fan-outs whose parts are
//! several calls in a row each (a replicated touch's read and
//! compare-and-set, per-server stats and ping): [`in_parallel`], one
//! scoped thread per extra part, which can borrow the caller's data.

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
