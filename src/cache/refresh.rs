//! Refresh-ahead (Caffeine's `refreshAfterWrite`): a read of an entry
//! older than the layer's `refresh_after` returns the entry at once and
//! hands one refresh of that key to a small pool of threads.
//!
//! The pool is bounded twice: a fixed number of threads, started when the
//! layer is built, and a bounded queue. A refresh that finds the queue
//! full is skipped and counted, never waited for: a reader is never held
//! up by a refresh. One refresh per key is in flight at a time; a failed
//! one leaves the old entry in place until it expires, and is counted.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// A refresh waiting for a thread.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The default number of refresh threads.
pub const DEFAULT_REFRESH_THREADS: usize = 2;
/// The default number of refreshes that may wait for a thread.
pub const DEFAULT_REFRESH_QUEUE: usize = 256;

/// Why a refresh was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStarted {
    /// One is already under way for the key.
    UnderWay,
    /// The queue is full: skipped.
    QueueFull,
}

/// The threads and queue of one layer's refreshes.
pub(crate) struct Refresher {
    /// `None` when no thread could be started: refreshes are then skipped.
    queue: Option<Sender<Job>>,
    /// Keys with a refresh queued or running.
    under_way: Arc<Mutex<HashSet<String>>>,
    /// The threads, joined when the layer goes.
    threads: Vec<thread::JoinHandle<()>>,
}

impl Drop for Refresher {
    /// Closes the queue and waits for the refreshes under way: a dropped
    /// layer leaves no thread behind. The last owner of a layer can be a
    /// refresh itself, ending on a refresh thread: that one is not waited
    /// for (it is finishing).
    fn drop(&mut self) {
        drop(self.queue.take());
        let me = thread::current().id();
        for handle in self.threads.drain(..) {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("queued", &self.queue.as_ref().map(Sender::len))
            .finish_non_exhaustive()
    }
}

impl Refresher {
    /// Starts `threads` refresh threads sharing a queue of `capacity`.
    /// They end when the layer goes (see `Drop`).
    pub(crate) fn start(threads: usize, capacity: usize) -> Refresher {
        let (queue, jobs) = crossbeam_channel::bounded::<Job>(capacity.max(1));
        let mut started = Vec::new();
        for index in 0..threads.max(1) {
            let jobs: Receiver<Job> = jobs.clone();
            // A thread the system refuses leaves fewer: refreshes then
            // wait longer, or are skipped when the queue fills.
            let spawned = thread::Builder::new()
                .name(format!("tiny-cache-refresh-{index}"))
                .spawn(move || {
                    for job in jobs {
                        // A panicking loader must not take the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            started.extend(spawned.ok());
        }
        Refresher {
            queue: (!started.is_empty()).then_some(queue),
            under_way: Arc::default(),
            threads: started,
        }
    }

    /// Queues `refresh` for `key` unless one is under way or the queue is
    /// full.
    pub(crate) fn start_one(
        &self,
        key: &str,
        refresh: impl FnOnce() + Send + 'static,
    ) -> Result<(), NotStarted> {
        {
            let mut under_way = self
                .under_way
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !under_way.insert(key.to_owned()) {
                return Err(NotStarted::UnderWay);
            }
        }
        let done = Done {
            key: key.to_owned(),
            under_way: Arc::clone(&self.under_way),
        };
        let job: Job = Box::new(move || {
            let _done = done;
            refresh();
        });
        let Some(queue) = &self.queue else {
            return Err(NotStarted::QueueFull);
        };
        match queue.try_send(job) {
            Ok(()) => Ok(()),
            // The job (and its `Done`) is dropped with the error: the key
            // is free again.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                Err(NotStarted::QueueFull)
            }
        }
    }
}

/// Frees a key's refresh slot when its job ends, however it ends.
struct Done {
    key: String,
    under_way: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.under_way
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Dropping the pool waits for the refreshes under way and queued: no
    /// thread outlives the layer.
    #[test]
    fn dropping_the_pool_waits_for_its_threads() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        let refresher = Refresher::start(2, 4);
        let done = Arc::new(AtomicUsize::new(0));
        for key in ["a", "b", "c"] {
            let done = Arc::clone(&done);
            refresher
                .start_one(key, move || {
                    std::thread::sleep(Duration::from_millis(100));
                    done.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
        }
        drop(refresher);
        assert_eq!(done.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn one_refresh_per_key_and_a_full_queue_skips() {
        let refresher = Refresher::start(1, 1);
        let (release, hold) = crossbeam_channel::bounded::<()>(0);
        // The thread takes this one and blocks in it.
        refresher
            .start_one("a", move || {
                let _ = hold.recv();
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(refresher.start_one("a", || {}), Err(NotStarted::UnderWay));
        // One waits in the queue; the next finds it full.
        assert_eq!(refresher.start_one("b", || {}), Ok(()));
        assert_eq!(refresher.start_one("c", || {}), Err(NotStarted::QueueFull));
        release.send(()).unwrap();
        // Once done, a key can be refreshed again.
        let (ran, saw) = crossbeam_channel::bounded(1);
        let mut again = Err(NotStarted::UnderWay);
        for _ in 0..100 {
            let ran = ran.clone();
            again = refresher.start_one("a", move || {
                let _ = ran.send(());
            });
            if again.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(again, Ok(()));
        assert!(saw.recv_timeout(Duration::from_secs(5)).is_ok());
    }
}
