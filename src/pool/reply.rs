//! How a call's outcome travels from its worker back to the waiting caller.
//!
//! The outcome always goes through a one-slot crossbeam channel, which the
//! calling thread keeps for its next call once the reply is read (so a call
//! allocates no channel). What can differ is how the caller sleeps until
//! the outcome arrives:
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

/// What travels on a reply channel: the call's outcome, or `None` when the
/// worker dropped the call without one (the pool shut down).
///
/// The channel is reused for the calling thread's next call, so it never
/// disconnects; an explicit `None` takes the place of the disconnection.
type Message = Option<Reply>;

type Pair = (Sender<Message>, Receiver<Message>);

thread_local! {
    /// This thread's idle reply channel. A channel goes back here only once
    /// its one message has been read, so the next call finds it empty; a
    /// call that timed out leaves its channel behind for the late reply.
    static SPARE: std::cell::Cell<Option<Pair>> = const { std::cell::Cell::new(None) };
}

/// A reply on a channel shared by many calls: the call's tag (chosen by
/// the caller) and its message.
pub(crate) type Tagged = (u64, Message);

/// Where one call's outcome goes.
enum Destination {
    /// The call's own one-slot channel.
    Own(Sender<Message>),
    /// A channel shared by calls waited for together, with this call's tag.
    Shared(Sender<Tagged>, u64),
}

impl Destination {
    fn deliver(self, message: Message) {
        // An abandoned channel drops the message: its caller has given up
        // on it.
        match self {
            Destination::Own(tx) => {
                let _ = tx.try_send(message);
            }
            Destination::Shared(tx, tag) => {
                let _ = tx.try_send((tag, message));
            }
        }
    }
}

/// The worker's end of one call's reply channel.
pub(crate) struct ReplySender {
    to: Option<Destination>,
    /// The caller's thread, unparked after the outcome is sent (or after
    /// the sender is dropped without one) when the caller parks.
    waiter: Option<Thread>,
    /// Whether the wake-up may wait for the end of the worker's pass (see
    /// [`HeldWakes`]): for calls waited for together.
    hold: bool,
}

thread_local! {
    /// On a pool worker's thread, while it runs: the callers to wake at
    /// the end of the current pass (see [`HeldWakes`]).
    static HELD: std::cell::RefCell<Option<Vec<Thread>>> = const { std::cell::RefCell::new(None) };
}

/// Held wake-ups of callers waiting for many replies at once.
///
/// A worker completes calls one after another within one pass over the
/// calls that can move on; waking a pipeline's caller at its first reply
/// would have it wake, take that one reply and sleep again, over and over
/// (about ten context switches for a pipeline of 16 were measured). Held
/// to the end of the pass, one wake-up covers every reply the pass
/// delivered. Plain calls are woken at once: each has its own caller.
pub(crate) struct HeldWakes(());

impl HeldWakes {
    /// Holds wake-ups on this thread until [`HeldWakes::flush`], or until
    /// the guard is dropped.
    pub(crate) fn begin() -> HeldWakes {
        let _ = HELD.try_with(|held| *held.borrow_mut() = Some(Vec::new()));
        HeldWakes(())
    }

    /// Wakes every caller held since the last flush.
    pub(crate) fn flush(&self) {
        let _ = HELD.try_with(|held| {
            if let Some(waiters) = held.borrow_mut().as_mut() {
                for waiter in waiters.drain(..) {
                    waiter.unpark();
                }
            }
        });
    }
}

impl Drop for HeldWakes {
    fn drop(&mut self) {
        self.flush();
        let _ = HELD.try_with(|held| *held.borrow_mut() = None);
    }
}

/// Wakes `waiter` now, or at the end of the worker's pass when `hold` and
/// this is a worker's thread.
fn wake(waiter: Thread, hold: bool) {
    let waiter = if hold {
        let kept = HELD.try_with(|held| match held.borrow_mut().as_mut() {
            Some(waiters) => {
                // Replies of one pipeline tend to come one after another:
                // one entry for the run of them.
                if waiters.last().is_none_or(|last| last.id() != waiter.id()) {
                    waiters.push(waiter.clone());
                }
                None
            }
            None => Some(waiter.clone()),
        });
        match kept {
            Ok(None) => return,
            Ok(Some(waiter)) => waiter,
            Err(_) => waiter,
        }
    } else {
        waiter
    };
    waiter.unpark();
}

impl ReplySender {
    /// A sender onto `shared`, a channel many calls answer on (see
    /// `client::flight`): the outcome arrives tagged with `tag`, and
    /// `waiter` is unparked after each one.
    pub(crate) fn tagged(shared: &Sender<Tagged>, tag: u64, waiter: Thread) -> ReplySender {
        ReplySender {
            to: Some(Destination::Shared(shared.clone(), tag)),
            waiter: Some(waiter),
            hold: true,
        }
    }

    /// Delivers the outcome. An own channel's one slot is free for it: it
    /// carries one message per call and is reused only after the caller
    /// read the previous one.
    pub(crate) fn send(mut self, reply: Reply) {
        if let Some(to) = self.to.take() {
            to.deliver(Some(reply));
        }
    }
}

impl Drop for ReplySender {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            to.deliver(None);
        }
        if let Some(waiter) = self.waiter.take() {
            wake(waiter, self.hold);
        }
    }
}

/// The caller's end of one call's reply channel.
pub(crate) struct ReplyReceiver {
    pair: Option<Pair>,
    wait: ReplyWait,
    /// Whether the call's one message was read, so the channel is empty
    /// and can serve this thread's next call.
    drained: bool,
}

impl ReplyReceiver {
    /// Waits for the outcome until `deadline`.
    pub(crate) fn wait_until(&mut self, deadline: Instant) -> Result<Reply, WaitError> {
        let Some((_, rx)) = &self.pair else {
            return Err(WaitError::Closed);
        };
        let received = match self.wait {
            ReplyWait::Channel => rx.recv_deadline(deadline).map_err(|e| match e {
                RecvTimeoutError::Timeout => WaitError::Timeout,
                RecvTimeoutError::Disconnected => WaitError::Closed,
            }),
            ReplyWait::Park => loop {
                match rx.try_recv() {
                    Ok(message) => break Ok(message),
                    Err(TryRecvError::Disconnected) => break Err(WaitError::Closed),
                    Err(TryRecvError::Empty) => {}
                }
                let now = Instant::now();
                if now >= deadline {
                    break Err(WaitError::Timeout);
                }
                // Unparks left over from earlier calls only cost one more
                // turn of this loop.
                std::thread::park_timeout(deadline - now);
            },
        }?;
        self.drained = true;
        received.ok_or(WaitError::Closed)
    }
}

impl Drop for ReplyReceiver {
    fn drop(&mut self) {
        if self.drained {
            if let Some(pair) = self.pair.take() {
                // `try_with`: the thread may be tearing down its locals.
                let _ = SPARE.try_with(|spare| spare.set(Some(pair)));
            }
        }
    }
}

/// A reply channel for one call from the current thread: the thread's idle
/// channel when it has one (no allocation), a new one otherwise.
pub(crate) fn reply_channel(wait: ReplyWait) -> (ReplySender, ReplyReceiver) {
    let (tx, rx) = SPARE
        .try_with(std::cell::Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| crossbeam_channel::bounded(1));
    let waiter = (wait == ReplyWait::Park).then(std::thread::current);
    (
        ReplySender {
            to: Some(Destination::Own(tx.clone())),
            waiter,
            hold: false,
        },
        ReplyReceiver {
            pair: Some((tx, rx)),
            wait,
            drained: false,
        },
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

    /// A worker thread that does `reply` with `tx` after `delay`, while the
    /// caller is waiting.
    fn reply_later(
        tx: ReplySender,
        delay: Duration,
        reply: impl FnOnce(ReplySender) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            reply(tx);
        })
    }

    #[test]
    fn a_reply_sent_from_another_thread_wakes_the_caller() {
        check_both(|wait| {
            let (tx, mut rx) = reply_channel(wait);
            let worker = reply_later(tx, Duration::from_millis(20), |tx| {
                tx.send(Ok(answer(b"hi")))
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
            let (tx, mut rx) = reply_channel(wait);
            let worker = reply_later(tx, Duration::from_millis(20), drop);
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
            let (_tx, mut rx) = reply_channel(wait);
            let started = Instant::now();
            let outcome = rx.wait_until(Instant::now() + Duration::from_millis(50));
            assert!(matches!(outcome, Err(WaitError::Timeout)));
            assert!(started.elapsed() >= Duration::from_millis(50));
        });
    }

    #[test]
    fn a_stale_unpark_does_not_end_the_wait_early() {
        let (tx, mut rx) = reply_channel(ReplyWait::Park);
        std::thread::current().unpark();
        let worker = reply_later(tx, Duration::from_millis(30), |tx| tx.send(Ok(answer(b""))));
        assert!(rx
            .wait_until(Instant::now() + Duration::from_secs(5))
            .is_ok());
        worker.join().unwrap();
    }

    #[test]
    fn a_late_reply_to_a_timed_out_call_never_reaches_the_next_call() {
        check_both(|wait| {
            let (late_tx, mut rx) = reply_channel(wait);
            let outcome = rx.wait_until(Instant::now() + Duration::from_millis(10));
            assert!(matches!(outcome, Err(WaitError::Timeout)));
            drop(rx);
            // The timed-out call's answer arrives after its caller moved on.
            late_tx.send(Ok(answer(b"late")));
            let (tx, mut rx) = reply_channel(wait);
            let worker = reply_later(tx, Duration::from_millis(20), |tx| {
                tx.send(Ok(answer(b"mine")))
            });
            let reply = rx.wait_until(Instant::now() + Duration::from_secs(5));
            assert_eq!(
                reply.unwrap().unwrap().message,
                bytes::Bytes::from_static(b"mine")
            );
            worker.join().unwrap();
        });
    }

    #[test]
    fn a_read_channel_serves_the_next_call_and_still_reports_a_drop() {
        check_both(|wait| {
            for round in 0..3 {
                let (tx, mut rx) = reply_channel(wait);
                if round == 1 {
                    drop(tx);
                    let outcome = rx.wait_until(Instant::now() + Duration::from_secs(5));
                    assert!(matches!(outcome, Err(WaitError::Closed)));
                } else {
                    tx.send(Ok(answer(b"x")));
                    let reply = rx.wait_until(Instant::now() + Duration::from_secs(5));
                    assert!(reply.unwrap().is_ok());
                }
            }
        });
    }
}
