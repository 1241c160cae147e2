//! A bounded load from many threads, each call timed: what tests of a
//! server that hangs or comes back need to judge when calls stopped
//! waiting.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// One call: when it started (from the start of the load), how long it
/// took, and whether it succeeded.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub started: Duration,
    pub took: Duration,
    pub ok: bool,
}

/// Runs `call(i)` on `threads` threads until `run_for` has passed, `i`
/// counting up from the thread's number in steps of `threads` (so the
/// threads share out a key space), and returns every call.
pub fn drive(
    threads: usize,
    run_for: Duration,
    call: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> Vec<Timed> {
    let call = Arc::new(call);
    let begun = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let call = Arc::clone(&call);
            thread::spawn(move || {
                let mut seen = Vec::new();
                let mut i = t;
                while begun.elapsed() < run_for {
                    let started = Instant::now();
                    let ok = call(i);
                    seen.push(Timed {
                        started: started - begun,
                        took: started.elapsed(),
                        ok,
                    });
                    i += threads;
                }
                seen
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|worker| worker.join().expect("no caller panics"))
        .collect()
}
