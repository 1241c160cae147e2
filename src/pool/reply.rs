//! How a call's outcome travels from its worker back to the waiting caller.
//!
//! The outcome always goes through a one-slot crossbeam channel. What can
//! differ is how the caller sleeps until it arrives:
//!
//! - [`ReplyWait::Park`] (the default): the caller parks its thread and the
//!   worker unparks it right after sending. The caller costs nothing while
//!   it waits.
//! - [`ReplyWait::Channel`]: the caller blocks in crossbeam's own receive,
//!   which spins and yields the CPU several times before it sleeps. With
//!   many callers on few cores those yields keep dozens of threads runnable
//!   and take CPU from the worker and the server (BENCHMARKS.md measures
//!   both).

use std::thread::Thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use super::Reply;

/// How callers wait for their replies; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyWait {
    /// Park the calling thread until the worker unparks it.
    #[default]
    Park,
    /// Block in crossbeam-channel's receive (spin, yield, then sleep).
    /// Chosen only through the `unstable-internals` builder option.
    #[cfg_attr(not(feature = "unstable-internals"), allow(dead_code))]
    Channel,
}

/// Why a wait ended without an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitError {
    /// The deadline passed.
    Timeout,
    /// The worker dropped the call without answering: the pool shut down.
    Closed,
}

/// The worker's half: sends the outcome once, then wakes the caller.
pub(crate) struct ReplySender {
    /// `None` once used, so `Drop` knows the channel is already released.
    tx: Option<Sender<Reply>>,
    /// The caller to unpark, for [`ReplyWait::Park`].
    waiter: Option<Thread>,
}

impl ReplySender {
    /// Delivers the outcome; a caller that gave up is simply not there.
    pub(crate) fn send(mut self, reply: Reply) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(reply);
        }
    }
}

impl Drop for ReplySender {
    fn drop(&mut self) {
        // Release the channel before waking the caller, so a sender dropped
        // without an answer reads as "disconnected" the moment it wakes.
        drop(self.tx.take());
        if let Some(waiter) = self.waiter.take() {
            waiter.unpark();
        }
    }
}

/// The caller's half.
pub(crate) struct ReplyReceiver {
    rx: Receiver<Reply>,
    wait: ReplyWait,
}

impl ReplyReceiver {
    /// Waits for the outcome until `deadline`.
    pub(crate) fn wait_until(&self, deadline: Instant) -> Result<Reply, WaitError> {
        match self.wait {
            ReplyWait::Channel => self.rx.recv_deadline(deadline).map_err(|e| match e {
                RecvTimeoutError::Timeout => WaitError::Timeout,
                RecvTimeoutError::Disconnected => WaitError::Closed,
            }),
            ReplyWait::Park => loop {
                match self.rx.try_recv() {
                    Ok(reply) => return Ok(reply),
                    Err(TryRecvError::Disconnected) => return Err(WaitError::Closed),
                    Err(TryRecvError::Empty) => {}
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(WaitError::Timeout);
                }
                // Wakes on the worker's unpark, at the deadline, or
                // spuriously (a stale unpark from an earlier call): the
                // loop checks again in every case.
                std::thread::park_timeout(deadline - now);
            },
        }
    }
}

/// A fresh reply path for one call made from the current thread.
pub(crate) fn reply_channel(wait: ReplyWait) -> (ReplySender, ReplyReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let waiter = (wait == ReplyWait::Park).then(std::thread::current);
    (
        ReplySender {
            tx: Some(tx),
            waiter,
        },
        ReplyReceiver { rx, wait },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Answer;

    fn answer(message: &'static [u8]) -> Answer {
        Answer {
            message: bytes::Bytes::from_static(message),
            metadata: None,
            request_id: None,
        }
    }
    use std::time::Duration;

    fn check_both(test: impl Fn(ReplyWait)) {
        test(ReplyWait::Park);
        test(ReplyWait::Channel);
    }

    #[test]
    fn a_reply_sent_from_another_thread_wakes_the_caller() {
        check_both(|wait| {
            let (tx, rx) = reply_channel(wait);
            let worker = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                tx.send(Ok(answer(b"hi")));
            });
            let started = Instant::now();
            let reply = rx.wait_until(Instant::now() + Duration::from_secs(5));
            assert_eq!(
                reply.unwrap().unwrap().message,
                bytes::Bytes::from_static(b"hi")
            );
            assert!(started.elapsed() < Duration::from_secs(1));
            worker.join().unwrap();
        });
    }

    #[test]
    fn a_sender_dropped_without_reply_reads_as_closed_at_once() {
        check_both(|wait| {
            let (tx, rx) = reply_channel(wait);
            let worker = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                drop(tx);
            });
            let started = Instant::now();
            let outcome = rx.wait_until(Instant::now() + Duration::from_secs(5));
            assert!(matches!(outcome, Err(WaitError::Closed)));
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
            worker.join().unwrap();
        });
    }

    #[test]
    fn no_reply_ends_at_the_deadline() {
        check_both(|wait| {
            let (_tx, rx) = reply_channel(wait);
            let started = Instant::now();
            let outcome = rx.wait_until(Instant::now() + Duration::from_millis(50));
            assert!(matches!(outcome, Err(WaitError::Timeout)));
            assert!(started.elapsed() >= Duration::from_millis(50));
        });
    }

    #[test]
    fn a_stale_unpark_does_not_end_the_wait_early() {
        let (tx, rx) = reply_channel(ReplyWait::Park);
        std::thread::current().unpark();
        let worker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            tx.send(Ok(answer(b"")));
        });
        assert!(rx
            .wait_until(Instant::now() + Duration::from_secs(5))
            .is_ok());
        worker.join().unwrap();
    }
}
