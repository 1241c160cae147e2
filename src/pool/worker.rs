//! One worker: a named thread running a current-thread tokio runtime that
//! owns one HTTP/2 connection and carries every call handed to it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::Reason;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use super::connection::{self, describe, Event};
use super::{Call, Failure, PoolConfig, Reply};
use crate::codec::{Code, Status, UnaryDecoder};
use crate::error::Error;

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
                config,
                calls,
                stop: worker_stop,
                in_flight: worker_in_flight,
                state,
                events_tx,
                events,
                generation: 0,
                failed_attempts: 0,
                reconnect_at: None,
            };
            runtime.block_on(worker.run());
            // Dropping the runtime drops every call task, and with them their
            // reply senders: callers still waiting see the client closed.
        })
        .map_err(|error| Error::Unavailable(format!("cannot start a worker thread: {error}")))?;
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
            Err(Error::Unavailable(format!(
                "cannot start a worker runtime: {message}"
            )))
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
}

impl Worker {
    async fn run(mut self) {
        self.connect();
        let mut batch = Vec::with_capacity(SUBMISSION_BATCH);
        loop {
            let reconnect_at = self.reconnect_at;
            tokio::select! {
                biased;
                () = self.stop.notified() => return,
                received = self.calls.recv_many(&mut batch, SUBMISSION_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    for call in batch.drain(..) {
                        self.dispatch(call);
                    }
                }
                Some(event) = self.events.recv() => self.on_event(event),
                () = sleep_until_some(reconnect_at), if reconnect_at.is_some() => {
                    self.reconnect_at = None;
                    self.connect();
                }
            }
        }
    }

    fn connect(&mut self) {
        self.generation += 1;
        self.state.send_replace(ConnState::Connecting);
        tokio::spawn(connection::run(
            Arc::clone(&self.config),
            self.generation,
            self.events_tx.clone(),
        ));
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
            Event::Lost { generation, .. } | Event::Broken { generation }
                if generation == self.generation =>
            {
                if matches!(*self.state.borrow(), ConnState::Ready { .. }) {
                    self.connect();
                }
            }
            _ => {}
        }
    }

    fn dispatch(&self, call: Call) {
        tokio::spawn(run_call(
            call,
            self.state.subscribe(),
            self.events_tx.clone(),
            self.config.max_receive_message_bytes,
            Arc::clone(&self.in_flight),
        ));
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
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
    } = call;
    let mut phase = Phase::WaitingForConnection;
    let exchanged = tokio::time::timeout_at(
        deadline.into(),
        exchange(
            head,
            body,
            &mut state,
            &events,
            max_receive_message_bytes,
            &mut phase,
        ),
    )
    .await;
    // On timeout the exchange future is dropped here, which resets the
    // stream with CANCEL: the server stops working for nobody.
    let outcome = exchanged.unwrap_or_else(|_| {
        let error = Error::DeadlineExceeded(format!("deadline passed while {}", phase.describe()));
        if phase == Phase::WaitingForConnection {
            Err(Failure::unsent(error))
        } else {
            Err(Failure::after_send(error))
        }
    });
    in_flight.fetch_sub(1, Ordering::Relaxed);
    let _ = reply.send(outcome);
}

async fn exchange(
    head: http::Request<()>,
    body: Bytes,
    state: &mut watch::Receiver<ConnState>,
    events: &mpsc::UnboundedSender<Event>,
    max_receive_message_bytes: usize,
    phase: &mut Phase,
) -> Reply {
    let (sender, generation) = loop {
        let current = state.borrow_and_update().clone();
        match current {
            ConnState::Ready { sender, generation } => break (sender, generation),
            ConnState::Down { error } => return Err(Failure::unsent(error)),
            ConnState::Connecting => {
                if state.changed().await.is_err() {
                    return Err(Failure::unsent(Error::Closed));
                }
            }
        }
    };

    *phase = Phase::Sending;
    // Failing to open a stream means the connection takes no new streams
    // (GOAWAY or closed); the request never left, so it is safe to retry.
    let unusable = |error: h2::Error| {
        let _ = events.send(Event::Broken { generation });
        Failure::unsent(Error::Unavailable(format!(
            "connection cannot take new calls: {}",
            describe(&error)
        )))
    };
    let mut sender = sender.ready().await.map_err(unusable)?;
    let (response, mut stream) = sender.send_request(head, false).map_err(unusable)?;
    stream.send_data(body, true).map_err(stream_failure)?;

    *phase = Phase::AwaitingResponse;
    let response = response.await.map_err(stream_failure)?;

    *phase = Phase::ReadingResponse;
    let committed = |error| Failure::after_send(Error::from_response(error));
    let (parts, mut body) = response.into_parts();
    let mut decoder = UnaryDecoder::new(max_receive_message_bytes);
    decoder.on_head(&parts).map_err(committed)?;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(stream_failure)?;
        // Give the window back as soon as the bytes are ours, so the server
        // can keep sending.
        let _ = body.flow_control().release_capacity(chunk.len());
        decoder.on_data(chunk).map_err(committed)?;
    }
    let trailers = body.trailers().await.map_err(stream_failure)?;
    decoder.finish(trailers.as_ref()).map_err(committed)
}

/// Maps an h2 error on an open stream, and says whether the server may have
/// processed the request.
fn stream_failure(error: h2::Error) -> Failure {
    if let Some(reason) = error.reason() {
        if reason == Reason::REFUSED_STREAM {
            return Failure::unsent(Error::Unavailable(
                "the server refused the stream (REFUSED_STREAM) without processing it".into(),
            ));
        }
        if error.is_go_away() && error.is_remote() {
            // A graceful GOAWAY only fails the streams above its last
            // stream id, which the server promises it never processed.
            return if reason == Reason::NO_ERROR {
                Failure::unsent(Error::Unavailable(
                    "the server is shutting down (GOAWAY) and did not process the call".into(),
                ))
            } else {
                Failure::after_send(Error::Unavailable(format!(
                    "the server closed the connection (GOAWAY {reason:?})"
                )))
            };
        }
        if error.is_reset() && error.is_remote() {
            let code = Code::from_h2_reason(u32::from(reason));
            return Failure::after_send(Error::from_status(Status::new(
                code,
                format!("the server reset the stream ({reason:?})"),
            )));
        }
    }
    if error.is_io() {
        return Failure::after_send(Error::Unavailable(format!(
            "connection lost: {}",
            describe(&error)
        )));
    }
    Failure::after_send(Error::Protocol {
        code: Code::Internal,
        message: format!("HTTP/2 error: {error}"),
    })
}
