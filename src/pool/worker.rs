//! One worker: a named thread running a current-thread tokio runtime that
//! owns one HTTP/2 connection and carries every call handed to it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::task::{Context, Wake, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::Reason;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use super::connection::{self, describe, sleep_until_some, Ending, Event, Health};
use super::reply::HeldWakes;
use super::{Answer, Call, CancelSignal, Failure, PoolConfig, Reply};
use crate::codec::{retry_pushback, Code, Status, UnaryDecoder};
use crate::error::Error;
use crate::rules::REQUEST_ID_HEADER;

/// Calls taken from the queue per wake-up: draining many at once means one
/// wake-up (and one flush of the socket) serves a burst of callers.
const SUBMISSION_BATCH: usize = 256;

/// The pool's side of a worker.
pub(super) struct WorkerHandle {
    submissions: mpsc::UnboundedSender<Call>,
    in_flight: Arc<AtomicUsize>,
    stop: Arc<Notify>,
}

impl WorkerHandle {
    pub(super) fn submit(&self, call: Call) -> Result<(), Error> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.submissions.send(call).map_err(|_| {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            Error::Closed
        })
    }

    /// Calls submitted and not yet answered.
    pub(super) fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(super) fn stop(&self) {
        // notify_one keeps a permit if the worker is not waiting right now.
        self.stop.notify_one();
    }
}

/// Starts worker `index`; returns once its runtime is running, or with the
/// reason it could not start.
pub(super) fn spawn(
    index: usize,
    config: Arc<PoolConfig>,
) -> Result<(WorkerHandle, JoinHandle<()>), Error> {
    let (submissions, calls) = mpsc::unbounded_channel();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(Notify::new());
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
    let worker_in_flight = Arc::clone(&in_flight);
    let worker_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(format!("tiny-cache-worker-{index}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = started_tx.send(Err(error.to_string()));
                    return;
                }
            };
            let _ = started_tx.send(Ok(()));
            let (state, _) = watch::channel(ConnState::Connecting);
            let (events_tx, events) = mpsc::unbounded_channel();
            let worker = Worker {
                config: Arc::clone(&config),
                calls,
                stop: worker_stop,
                in_flight: worker_in_flight,
                state,
                events_tx,
                events,
                generation: 0,
                failed_attempts: 0,
                reconnect_at: None,
                keepalive_interval: config.keepalive_interval,
                probe: Arc::new(Notify::new()),
            };
            // When `run` returns it drops every call it carries, and with them
            // their reply senders: callers still waiting see the client
            // closed.
            runtime.block_on(worker.run());
        })
        .map_err(|error| {
            Error::Unavailable(format!("cannot start a worker thread: {error}").into())
        })?;
    match started_rx.recv() {
        Ok(Ok(())) => Ok((
            WorkerHandle {
                submissions,
                in_flight,
                stop,
            },
            thread,
        )),
        Ok(Err(message)) => {
            let _ = thread.join();
            Err(Error::Unavailable(
                format!("cannot start a worker runtime: {message}").into(),
            ))
        }
        Err(_) => {
            let _ = thread.join();
            Err(Error::Unavailable(
                "a worker thread died while starting".into(),
            ))
        }
    }
}

/// The connection as calls see it.
#[derive(Clone)]
enum ConnState {
    /// A connection attempt is under way: calls wait for its outcome.
    Connecting,
    /// Calls open streams on `sender`.
    Ready {
        sender: SendRequest<Bytes>,
        generation: u64,
    },
    /// The last attempt failed and the worker is backing off: calls fail
    /// at once with its error (they never reached the server, so the
    /// client may retry).
    Down { error: Error },
}

struct Worker {
    config: Arc<PoolConfig>,
    calls: mpsc::UnboundedReceiver<Call>,
    stop: Arc<Notify>,
    in_flight: Arc<AtomicUsize>,
    state: watch::Sender<ConnState>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Numbers connection attempts, so news from an old one is ignored.
    generation: u64,
    /// Consecutive failed attempts, for the reconnect backoff.
    failed_attempts: u32,
    reconnect_at: Option<Instant>,
    /// Keepalive period for the next connection; doubled each time a server
    /// complains of too many pings.
    keepalive_interval: Option<Duration>,
    /// Wakes the current connection's task to ping now.
    probe: Arc<Notify>,
}

impl Worker {
    async fn run(mut self) {
        self.connect();
        let mut batch = Vec::with_capacity(SUBMISSION_BATCH);
        // Declared before the calls, so it is dropped after them: callers
        // of calls dropped at shutdown are woken too.
        let held = HeldWakes::begin();
        let mut calls = CallSlab::new();
        let woken = calls.ready();
        loop {
            let reconnect_at = self.reconnect_at;
            tokio::select! {
                biased;
                () = self.stop.notified() => return,
                // Connection news first: a call submitted right after its
                // predecessor found the connection draining must see the
                // replacement already under way, not the dead connection.
                Some(event) = self.events.recv() => self.on_event(event),
                // Calls that can move on (a reply arrived) before new ones.
                () = woken.notify.notified() => calls.poll_woken(),
                received = self.calls.recv_many(&mut batch, SUBMISSION_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    for call in batch.drain(..) {
                        calls.start(self.call(call));
                    }
                }
                () = sleep_until_some(reconnect_at), if reconnect_at.is_some() => {
                    self.reconnect_at = None;
                    self.connect();
                }
            }
            held.flush();
        }
    }

    fn connect(&mut self) {
        self.generation += 1;
        if self.generation > 1 {
            if let Some(hook) = &self.config.on_reconnect {
                (hook.0)();
            }
            #[cfg(feature = "tracing")]
            tracing::info!(
                address = %self.config.address,
                attempt = self.generation,
                "tiny-cache connection: reconnecting"
            );
        }
        // While the server is known to be down or unresponsive, calls keep
        // failing fast during the new attempt (a circuit breaker's half-open
        // trial) instead of each waiting for an attempt that may hang.
        if !matches!(*self.state.borrow(), ConnState::Down { .. }) {
            self.state.send_replace(ConnState::Connecting);
        }
        self.probe = Arc::new(Notify::new());
        let health = Health {
            in_flight: Arc::clone(&self.in_flight),
            interval: self.keepalive_interval,
            timeout: self.config.keepalive_timeout,
            probe_timeout: self.config.probe_timeout.min(self.config.keepalive_timeout),
            min_gap: self.config.probe_timeout,
            probe: Arc::clone(&self.probe),
        };
        tokio::spawn(connection::run(
            Arc::clone(&self.config),
            self.generation,
            self.attempt_timeout(),
            self.events_tx.clone(),
            health,
        ));
    }

    /// How long this connection attempt may take. The first gets the whole
    /// connect timeout; a reconnect starts at twice the probe timeout and
    /// doubles with each failed attempt, so a server that accepts TCP but
    /// never finishes the handshake (wedged, or its backlog full) is given
    /// up on in seconds, while one that is merely slow still gets in.
    fn attempt_timeout(&self) -> Duration {
        let connect_timeout = self.config.connect_timeout;
        if self.generation <= 1 {
            return connect_timeout;
        }
        let doublings = self.failed_attempts.min(16);
        self.config
            .probe_timeout
            .saturating_mul(2)
            .saturating_mul(1 << doublings)
            .min(connect_timeout)
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Up { generation, sender } if generation == self.generation => {
                self.failed_attempts = 0;
                self.state
                    .send_replace(ConnState::Ready { sender, generation });
            }
            Event::Failed { generation, error } if generation == self.generation => {
                let delay = self.config.reconnect_backoff.delay(self.failed_attempts);
                self.failed_attempts = self.failed_attempts.saturating_add(1);
                self.state.send_replace(ConnState::Down { error });
                self.reconnect_at = Some(Instant::now() + delay);
            }
            // A connection that worked and then ended is replaced at once;
            // backoff is for attempts that fail.
            Event::Lost { generation, ending } if generation == self.generation => {
                if ending == Ending::TooManyPings {
                    self.keepalive_interval = self.keepalive_interval.map(|i| i.saturating_mul(2));
                }
                if !matches!(*self.state.borrow(), ConnState::Ready { .. }) {
                    return;
                }
                if ending == Ending::Unresponsive {
                    // A server that stopped answering is likely to hang the
                    // next handshake too: fail calls fast until a fresh
                    // connection proves it is back.
                    self.state.send_replace(ConnState::Down {
                        error: Error::Unavailable(
                            format!(
                                "{} stopped answering (a ping went unanswered); \
                                 failing fast until a new connection is up",
                                self.config.address
                            )
                            .into(),
                        ),
                    });
                }
                self.connect();
            }
            Event::Broken { generation } if generation == self.generation => {
                if matches!(*self.state.borrow(), ConnState::Ready { .. }) {
                    self.connect();
                }
            }
            Event::Stalled { generation } if generation == self.generation => {
                self.probe.notify_one();
            }
            _ => {}
        }
    }

    /// The future that carries `call` to its end.
    fn call(&self, call: Call) -> impl Future<Output = ()> + use<> {
        run_call(
            call,
            self.state.subscribe(),
            self.events_tx.clone(),
            self.config.max_receive_message_bytes,
            Arc::clone(&self.in_flight),
        )
    }
}

/// The calls a worker carries, each in a reusable slot instead of a tokio
/// task of its own: a slot's box holds one call's future after another,
/// and its waker is made once, so carrying a call allocates nothing of the
/// worker's (a task per call cost one allocation, and a trip through the
/// runtime's scheduler).
///
/// A woken call's slot goes on the ready list and the worker's loop polls
/// it; a stale wake-up (for a slot since reused) only costs a spurious
/// poll, which futures allow.
struct CallSlab<F> {
    slots: Vec<CallSlot<F>>,
    free: Vec<usize>,
    ready: Arc<ReadySlots>,
    /// The ready list's contents while they are polled (kept, so draining
    /// it allocates nothing).
    draining: Vec<usize>,
}

struct CallSlot<F> {
    future: Pin<Box<Option<F>>>,
    waker: Waker,
}

/// Slots woken since the worker last looked, and the worker's wake-up.
#[derive(Default)]
struct ReadySlots {
    woken: std::sync::Mutex<Vec<usize>>,
    notify: Notify,
}

/// The waker of one slot.
struct SlotWaker {
    slot: usize,
    ready: Arc<ReadySlots>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready
            .woken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.slot);
        // Keeps a permit when the worker is busy: no wake-up is lost.
        self.ready.notify.notify_one();
    }
}

impl<F: Future<Output = ()>> CallSlab<F> {
    fn new() -> CallSlab<F> {
        CallSlab {
            slots: Vec::new(),
            free: Vec::new(),
            ready: Arc::default(),
            draining: Vec::new(),
        }
    }

    fn ready(&self) -> Arc<ReadySlots> {
        Arc::clone(&self.ready)
    }

    /// Puts `call` in a free slot (a new one when none is free) and polls
    /// it for the first time.
    fn start(&mut self, call: F) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = self.slots.len();
                let waker = Waker::from(Arc::new(SlotWaker {
                    slot,
                    ready: Arc::clone(&self.ready),
                }));
                self.slots.push(CallSlot {
                    future: Box::pin(None),
                    waker,
                });
                slot
            }
        };
        self.slots[slot].future.as_mut().set(Some(call));
        self.poll(slot);
    }

    /// Polls every slot woken since the last time.
    fn poll_woken(&mut self) {
        std::mem::swap(
            &mut *self
                .ready
                .woken
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            &mut self.draining,
        );
        let mut draining = std::mem::take(&mut self.draining);
        for slot in draining.drain(..) {
            self.poll(slot);
        }
        self.draining = draining;
    }

    fn poll(&mut self, slot: usize) {
        let Some(CallSlot { future, waker }) = self.slots.get_mut(slot) else {
            return;
        };
        let Some(call) = future.as_mut().as_pin_mut() else {
            return;
        };
        if call.poll(&mut Context::from_waker(waker)).is_ready() {
            future.as_mut().set(None);
            self.free.push(slot);
        }
    }
}

/// Where a call was when its deadline passed, for the error message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    WaitingForConnection,
    Sending,
    AwaitingResponse,
    ReadingResponse,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::WaitingForConnection => "waiting for a connection",
            Phase::Sending => "sending the request",
            Phase::AwaitingResponse => "waiting for the response",
            Phase::ReadingResponse => "reading the response",
        }
    }
}

async fn run_call(
    call: Call,
    mut state: watch::Receiver<ConnState>,
    events: mpsc::UnboundedSender<Event>,
    max_receive_message_bytes: usize,
    in_flight: Arc<AtomicUsize>,
) {
    let Call {
        head,
        body,
        deadline,
        reply,
        keep_metadata,
        cancel,
    } = call;
    let mut progress = Progress {
        phase: Phase::WaitingForConnection,
        generation: None,
        request_id: None,
    };
    let bounded = tokio::time::timeout_at(
        deadline.into(),
        exchange(
            head,
            body,
            &mut state,
            &events,
            (max_receive_message_bytes, keep_metadata),
            &mut progress,
        ),
    );
    let exchanged = match cancel {
        None => bounded.await,
        Some(CancelSignal(abandoned)) => {
            tokio::select! {
                biased;
                exchanged = bounded => exchanged,
                // The caller dropped its end: the exchange is dropped
                // here, which resets the stream with CANCEL. Nobody waits
                // for this reply.
                _ = abandoned => {
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    };
    let Progress {
        phase,
        generation,
        request_id,
    } = progress;
    if exchanged.is_err() && phase != Phase::WaitingForConnection {
        // A sent call that got no answer in time hints at a dead connection:
        // have it probed now rather than at the next keepalive tick.
        if let Some(generation) = generation {
            let _ = events.send(Event::Stalled { generation });
        }
    }
    // On timeout the exchange future is dropped here, which resets the
    // stream with CANCEL: the server stops working for nobody.
    let outcome = exchanged
        .unwrap_or_else(|_| {
            let error = Error::DeadlineExceeded(
                format!("deadline passed while {}", phase.describe()).into(),
            );
            if phase == Phase::WaitingForConnection {
                Err(Failure::unsent(error))
            } else {
                Err(Failure::after_send(error))
            }
        })
        .map_err(|failure| Failure {
            error: failure
                .error
                .with_request_id(request_id.as_ref().and_then(|id| id.to_str().ok())),
            ..failure
        });
    in_flight.fetch_sub(1, Ordering::Relaxed);
    reply.send(outcome);
}

/// How far a call got, kept outside the exchange so that a deadline,
/// which drops the exchange, can still say where it fired.
struct Progress {
    phase: Phase,
    /// The connection the call went out on.
    generation: Option<u64>,
    /// The server's `x-request-id`, once the response head arrived.
    request_id: Option<http::HeaderValue>,
}

async fn exchange(
    head: http::Request<()>,
    body: Bytes,
    state: &mut watch::Receiver<ConnState>,
    events: &mpsc::UnboundedSender<Event>,
    (max_receive_message_bytes, keep_metadata): (usize, bool),
    progress: &mut Progress,
) -> Reply {
    let Progress {
        phase,
        generation: used_generation,
        request_id,
    } = progress;
    // A connection that stops taking streams (GOAWAY received, closed) is
    // replaced by the worker; the call waits for the replacement and opens
    // its stream there, once, instead of failing back to the caller.
    let mut stale_generation = None;
    let (mut sender, generation) = loop {
        let (sender, generation) = wait_for_connection(state, stale_generation).await?;
        *phase = Phase::Sending;
        *used_generation = Some(generation);
        match sender.ready().await {
            Ok(sender) => break (sender, generation),
            Err(error) => {
                let _ = events.send(Event::Broken { generation });
                if stale_generation.is_some() {
                    return Err(Failure::unsent(Error::Unavailable(
                        format!("connection cannot take new calls: {}", describe(&error)).into(),
                    )));
                }
                stale_generation = Some(generation);
                *phase = Phase::WaitingForConnection;
            }
        }
    };
    let (response, mut stream) = sender.send_request(head, false).map_err(|error| {
        let _ = events.send(Event::Broken { generation });
        Failure::refused(Error::Unavailable(
            format!("connection cannot take new calls: {}", describe(&error)).into(),
        ))
    })?;
    stream.send_data(body, true).map_err(stream_failure)?;

    *phase = Phase::AwaitingResponse;
    let response = response.await.map_err(stream_failure)?;

    *phase = Phase::ReadingResponse;
    // Once response headers arrive the call is committed: the server saw it.
    let committed = |error, status_headers: Option<&http::HeaderMap>| Failure {
        pushback: status_headers.and_then(retry_pushback),
        ..Failure::after_send(Error::from(error))
    };
    let (mut parts, mut body) = response.into_parts();
    *request_id = parts.headers.get(REQUEST_ID_HEADER).cloned();
    let mut decoder = UnaryDecoder::new(max_receive_message_bytes);
    decoder
        .on_head(&parts)
        .map_err(|error| committed(error, Some(&parts.headers)))?;
    let metadata = keep_metadata.then(|| Box::new(std::mem::take(&mut parts.headers)));
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(stream_failure)?;
        // Give the window back as soon as the bytes are ours, so the server
        // can keep sending.
        let _ = body.flow_control().release_capacity(chunk.len());
        decoder
            .on_data(chunk)
            .map_err(|error| committed(error, None))?;
    }
    let trailers = body.trailers().await.map_err(stream_failure)?;
    let message = decoder
        .finish(trailers.as_ref())
        .map_err(|error| committed(error, trailers.as_ref()))?;
    Ok(Answer {
        message,
        metadata,
        request_id: request_id.clone(),
    })
}

/// Waits until the worker has a ready connection other than
/// `stale_generation`, or fails the call when connecting failed.
async fn wait_for_connection(
    state: &mut watch::Receiver<ConnState>,
    stale_generation: Option<u64>,
) -> Result<(SendRequest<Bytes>, u64), Failure> {
    loop {
        let current = state.borrow_and_update().clone();
        match current {
            ConnState::Ready { sender, generation } if Some(generation) != stale_generation => {
                return Ok((sender, generation))
            }
            ConnState::Down { error } => return Err(Failure::unsent(error)),
            ConnState::Ready { .. } | ConnState::Connecting => {
                if state.changed().await.is_err() {
                    return Err(Failure::unsent(Error::Closed));
                }
            }
        }
    }
}

/// Maps an h2 error on an open stream, and says whether the server may have
/// processed the request.
fn stream_failure(error: h2::Error) -> Failure {
    if let Some(reason) = error.reason() {
        if reason == Reason::REFUSED_STREAM && error.is_remote() {
            return Failure::refused(Error::Unavailable(
                "the server refused the stream (REFUSED_STREAM) without processing it".into(),
            ));
        }
        if error.is_go_away() && error.is_remote() {
            // h2 fails a stream with the peer's GOAWAY only when the stream
            // is above the GOAWAY's last stream id, which the server
            // promises it never processed, whatever the error code; streams
            // at or below it end with their own outcome.
            #[cfg(feature = "tracing")]
            tracing::debug!(
                ?reason,
                "tiny-cache call refused by the server's GOAWAY: resending"
            );
            return Failure::refused(Error::Unavailable(format!(
                "the server is closing the connection (GOAWAY {reason:?}) and did not process the call"
            ).into()));
        }
        if error.is_reset() && error.is_remote() {
            let code = Code::from_h2_reason(u32::from(reason));
            return Failure::after_send(Error::from(Status::new(
                code,
                format!("the server reset the stream ({reason:?})"),
            )));
        }
    }
    if error.is_io() {
        return Failure::after_send(Error::Unavailable(
            format!("connection lost: {}", describe(&error)).into(),
        ));
    }
    Failure::after_send(Error::Protocol {
        code: Code::Internal,
        message: format!("HTTP/2 error: {error}"),
    })
}
