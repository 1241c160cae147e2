//! A fixed pool of worker threads, each owning one HTTP/2 connection.
//!
//! A caller hands a ready-to-send [`Call`] (headers built, message framed) to
//! the least-loaded worker and waits for its [`Reply`] on a crossbeam
//! channel. A worker runs a current-thread tokio runtime as h2's engine: it
//! keeps its connection driven all the time (window updates, pings, GOAWAY),
//! multiplexes every call it is given as a stream, and reconnects with
//! backoff when the connection fails. The pool knows nothing of the cache
//! service: it moves gRPC calls.

mod backoff;
mod connection;
mod reply;
mod transport;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::address::Address;
use crate::codec::Pushback;
use crate::error::Error;
use crate::tls::ClientTls;

pub(crate) use backoff::Backoff;
pub use reply::ReplyWait;
pub(crate) use reply::{reply_channel, ReplySender, Tagged, WaitError};

/// One unary call, ready for the wire.
pub(crate) struct Call {
    /// Request headers, `grpc-timeout` and metadata included.
    pub head: http::Request<()>,
    /// The framed request message.
    pub body: Bytes,
    /// When the caller stops waiting; the worker cancels the stream then.
    pub deadline: Instant,
    /// Where the outcome goes. A caller that gave up is simply not there.
    pub reply: ReplySender,
    /// Whether the caller wants the response headers back (asked for per
    /// call, so plain calls never copy them).
    pub keep_metadata: bool,
    /// Set for a call its caller may abandon before its deadline (one of
    /// several waited for together); `None` for a plain call, which pays
    /// nothing for it.
    pub cancel: Option<CancelSignal>,
}

/// The caller's end of an abandonable call: dropping it makes the worker
/// reset the call's stream with CANCEL at once, so the server stops
/// working for nobody and the stream's slot frees up.
#[derive(Debug)]
pub(crate) struct CancelOnDrop(#[allow(dead_code)] tokio::sync::oneshot::Sender<()>);

/// The worker's end of [`CancelOnDrop`].
pub(crate) struct CancelSignal(tokio::sync::oneshot::Receiver<()>);

/// A pair for one abandonable call.
pub(crate) fn cancel_pair() -> (CancelOnDrop, CancelSignal) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    (CancelOnDrop(tx), CancelSignal(rx))
}

/// A call's answer: the reply message's body, and the response headers
/// when the call asked for them.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The framed reply message's body.
    pub message: Bytes,
    /// The response headers (initial metadata), when `keep_metadata`.
    pub metadata: Option<Box<http::HeaderMap>>,
    /// The server's `x-request-id`, for the call's trace.
    pub request_id: Option<http::HeaderValue>,
}

/// The outcome of a call: its answer, or why there is none.
pub(crate) type Reply = Result<Answer, Failure>;

/// How far a failed request got: what decides whether sending it again
/// could apply it twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// It never left this process (no connection, client closed).
    Unsent,
    /// The server turned it away unprocessed because the connection was
    /// going away (REFUSED_STREAM, or above a GOAWAY's last stream id): it
    /// may be sent again at once, as gRPC's transparent retry.
    Refused,
    /// It may have reached the server, and may have been applied.
    MaybeProcessed,
}

/// A failed call, with what the retry policy needs to know.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What the caller will see if the call is not retried.
    pub error: Error,
    /// How far the request got.
    pub delivery: Delivery,
    /// The server's `grpc-retry-pushback-ms`, when it sent one.
    pub pushback: Option<Pushback>,
}

impl Failure {
    /// A failure before the request left this process.
    pub fn unsent(error: Error) -> Failure {
        Failure {
            error,
            delivery: Delivery::Unsent,
            pushback: None,
        }
    }

    /// A request the server turned away without processing it.
    pub fn refused(error: Error) -> Failure {
        Failure {
            error,
            delivery: Delivery::Refused,
            pushback: None,
        }
    }

    /// A failure after the request may have reached the server.
    pub fn after_send(error: Error) -> Failure {
        Failure {
            error,
            delivery: Delivery::MaybeProcessed,
            pushback: None,
        }
    }
}

/// What a worker needs to know to connect and talk to the server: the
/// pool's part of the client's configuration, which the builder fills and
/// documents (defaults in `config.rs`).
#[derive(Debug, Clone)]
pub(crate) struct PoolConfig {
    /// Where to connect; `:scheme` and `:authority` of every request.
    pub address: Address,
    /// Worker threads, one connection each.
    pub size: usize,
    /// Longest wait for TCP, the TLS handshake and the HTTP/2 preface.
    pub connect_timeout: Duration,
    /// HTTP/2 receive window of each stream.
    pub stream_window_bytes: u32,
    /// HTTP/2 receive window of the connection.
    pub connection_window_bytes: u32,
    /// Largest reply message accepted, checked from its length prefix.
    pub max_receive_message_bytes: usize,
    /// Pauses between attempts to reconnect.
    pub reconnect_backoff: Backoff,
    /// Ping period while calls are in flight; `None` turns it off.
    pub keepalive_interval: Option<Duration>,
    /// How long a ping may stay unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
    /// How long the ping sent after a timed-out call may stay unanswered
    /// before the server counts as unresponsive; also the base of reconnect
    /// attempts' timeouts.
    pub probe_timeout: Duration,
    /// Called each time a worker connects again after its first
    /// connection (set by the client for its metrics; `None` by default).
    pub on_reconnect: Option<ReconnectHook>,
    /// TLS settings; `None` speaks plain HTTP/2.
    pub tls: Option<ClientTls>,
}

/// What the pool calls on every reconnection attempt.
#[derive(Clone)]
pub(crate) struct ReconnectHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for ReconnectHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReconnectHook")
    }
}

/// The running pool. Dropping it shuts it down.
/// Calls in flight on a worker before the pool hands new calls to the
/// next one (see [`Pool::pick`]).
const SPILL_LOAD: usize = 24;

pub(crate) struct Pool {
    workers: Vec<worker::WorkerHandle>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    /// Where the search for the least-loaded worker starts, so ties rotate.
    next: AtomicUsize,
}

impl Pool {
    /// Starts `config.size` workers. Each begins connecting at once.
    pub fn start(config: PoolConfig) -> Result<Pool, Error> {
        let config = Arc::new(config);
        let mut workers = Vec::with_capacity(config.size);
        let mut threads = Vec::with_capacity(config.size);
        for index in 0..config.size {
            match worker::spawn(index, Arc::clone(&config)) {
                Ok((handle, thread)) => {
                    workers.push(handle);
                    threads.push(thread);
                }
                Err(error) => {
                    // Stop the workers already started before reporting.
                    let partial = Pool {
                        workers,
                        threads: Mutex::new(threads),
                        closed: AtomicBool::new(false),
                        next: AtomicUsize::new(0),
                    };
                    partial.shutdown();
                    return Err(error);
                }
            }
        }
        Ok(Pool {
            workers,
            threads: Mutex::new(threads),
            closed: AtomicBool::new(false),
            next: AtomicUsize::new(0),
        })
    }

    /// Hands a call to a worker (see [`Pool::pick`]).
    ///
    /// Errors with [`Error::Closed`] once the pool is shut down; the call's
    /// reply sender is dropped with it.
    pub fn submit(&self, call: Call) -> Result<(), Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.pick().submit(call)
    }

    /// The worker for the next call: the first one with fewer than
    /// [`SPILL_LOAD`] calls in flight, else the least loaded.
    ///
    /// Filling one worker first gathers light load on one connection, into
    /// fewer writes and wake-ups: with two workers and 4 callers it gave
    /// 1.24× the throughput of always taking the least loaded, at less CPU
    /// per call. Under heavy load the calls spread over all workers.
    /// BENCHMARKS.md has the figures.
    fn pick(&self) -> &worker::WorkerHandle {
        let count = self.workers.len();
        if count == 1 {
            return &self.workers[0];
        }
        if let Some(first_with_room) = self.workers.iter().find(|w| w.load() < SPILL_LOAD) {
            return first_with_room;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let mut best = &self.workers[start];
        let mut best_load = best.load();
        for offset in 1..count {
            let candidate = &self.workers[(start + offset) % count];
            let load = candidate.load();
            if load < best_load {
                best = candidate;
                best_load = load;
            }
        }
        best
    }

    /// Stops every worker and joins its thread. Calls in flight end with
    /// [`Error::Closed`]; later submissions fail with it. Idempotent.
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        for worker in &self.workers {
            worker.stop();
        }
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        let current = std::thread::current().id();
        for thread in threads {
            // A worker never owns a client, so it never drops the pool; the
            // check only guards against a self-join deadlock if that changes.
            if thread.thread().id() != current {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}
