//! Calls started now and waited for later: one sleep of the calling thread
//! for many calls.
//!
//! A blocking caller pays a futex wait, a wake and two context switches
//! each time it sleeps for a reply (BENCHMARKS.md, "The floor"). A
//! [`Flight`] hands every call it is given to its client's pool at once,
//! and all of them answer on one shared crossbeam channel, each reply
//! tagged with its call's slot and attempt; the calling thread parks until
//! the channel has something, takes everything there is, and parks again
//! only if it still waits for more. No helper thread and no runtime run in
//! the caller's thread: the pool's workers do the I/O, as for every call.
//!
//! Each call keeps the policy of the handle it was started on: its own
//! deadline, its retries (backoff pauses are timers of the flight, so one
//! call's pause delays no other), its telemetry. A call the flight stops
//! waiting for ([`Flight::cancel`], or the flight dropped) has its stream
//! reset with CANCEL by its worker at once (unless the flight was made to
//! wait its calls out, [`Flight::waited_out`]), and its late reply, if
//! any, goes nowhere: every flight has its own channel.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::marker::PhantomData;
use std::thread::Thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use prost::Message;

use super::handle::{
    expect_ok, inserted, operation_results, swapped, value_results, CallParts, REPLY_GRACE,
};
use super::requests::{CompareAndSetRef, ItemRef, ItemsRef, KeyRef, KeysRef};
use super::retry::{CallRetries, NextStep};
use super::telemetry::Observation;
use crate::codec::{decode_message, Method};
use crate::error::{Error, Result};
use crate::pool::{cancel_pair, CancelOnDrop, ReplySender, Tagged};
use crate::proto::cache::{
    CacheResponse, CacheValue, ConditionalCacheResponse, MultiCacheResponse,
    MultiCacheValueResponse,
};
use crate::store::{CasOutcome, ItemResult};
use crate::ttl::Ttl;
use crate::Client;

/// How long past the latest of its calls' deadlines a wait for a flight
/// may last: every call's own timer ends it by its deadline plus
/// [`REPLY_GRACE`], and this covers that with room to spare.
pub(crate) const LAST_WORD: Duration = Duration::from_millis(50);

/// One call to start, borrowing the caller's keys and values (they are
/// encoded when the call starts).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Request<'r> {
    Get(&'r str),
    Set(&'r str, &'r [u8], Ttl),
    Delete(&'r str),
    SetIfAbsent(&'r str, &'r [u8], Ttl),
    CompareAndSet {
        key: &'r str,
        expected: &'r [u8],
        value: &'r [u8],
        ttl: Ttl,
    },
    // The batch calls are a cluster's parts.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    GetMany(&'r [&'r str]),
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    SetMany(&'r [(&'r str, &'r [u8])], Ttl),
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    DeleteMany(&'r [&'r str]),
}

/// A call's answer, by the kind of call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answered {
    /// A `Get`: the value, or `None` for a miss.
    Value(Option<Bytes>),
    /// A `Set` or `Delete` done.
    Done,
    /// Whether a `SetIfAbsent` stored its value.
    Inserted(bool),
    /// What a `CompareAndSet` did.
    Swapped(CasOutcome),
    /// A `MultiGet`'s results, in request order.
    Values(Vec<ItemResult<Option<Bytes>>>),
    /// A `MultiSet`'s or `MultiDelete`'s results, in request order.
    Items(Vec<ItemResult<()>>),
}

/// How to read a call's reply.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Get,
    Set,
    Delete,
    SetIfAbsent,
    CompareAndSet,
    GetMany(usize),
    SetMany(usize),
    DeleteMany(usize),
}

/// Where a call of the flight is.
enum State {
    /// An attempt is out; dropping the token (if any) cancels it.
    Sent(#[allow(dead_code)] Option<CancelOnDrop>),
    /// Waiting out a retry's backoff pause.
    Pausing,
    /// Finished, its outcome not taken yet.
    Done(Result<Answered>),
    /// Finished and taken, or cancelled.
    Gone,
}

struct Slot<'a> {
    client: &'a Client,
    method: Method,
    kind: Kind,
    /// The encoded request, kept for retries.
    body: Bytes,
    deadline: Instant,
    timeout: Duration,
    retries: CallRetries<'a>,
    observation: Option<Observation<'a>>,
    attempt: u32,
    state: State,
}

/// A timer of the flight: a retry's pause ending, or a call's deadline.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    slot: usize,
    attempt: u32,
}

/// Calls waited for together; see the module documentation. Tied to the
/// thread that made it (whose sleep it ends), hence not `Send`.
pub(crate) struct Flight<'a> {
    tx: Sender<Tagged>,
    rx: Receiver<Tagged>,
    waiter: Thread,
    slots: Vec<Slot<'a>>,
    /// Calls not yet finished.
    open: usize,
    /// Finished calls, in the order they finished, for `wait_any`.
    finished: VecDeque<usize>,
    timers: BinaryHeap<Reverse<Timer>>,
    /// Whether calls carry a cancel token (see [`Flight::waited_out`]).
    cancellable: bool,
    _one_thread: PhantomData<*const ()>,
}

impl std::fmt::Debug for Flight<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flight")
            .field("calls", &self.slots.len())
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

fn tag(slot: usize, attempt: u32) -> u64 {
    ((slot as u64) << 32) | u64::from(attempt)
}

impl<'a> Flight<'a> {
    /// A flight whose calls may be abandoned early ([`Flight::cancel`], or
    /// the flight dropped), resetting their streams.
    pub(crate) fn new() -> Flight<'a> {
        Flight::with_cancel(true)
    }

    /// A flight whose every call is waited for to its end (a cluster's
    /// parts): its calls carry no cancel token, which spares an allocation
    /// per call. Dropped early, its calls run on to their deadlines, as
    /// plain calls whose caller gave up do.
    // Used by a cluster's fan-out.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn waited_out() -> Flight<'a> {
        Flight::with_cancel(false)
    }

    fn with_cancel(cancellable: bool) -> Flight<'a> {
        let (tx, rx) = crossbeam_channel::unbounded();
        Flight {
            tx,
            rx,
            waiter: std::thread::current(),
            slots: Vec::new(),
            open: 0,
            finished: VecDeque::new(),
            timers: BinaryHeap::new(),
            cancellable,
            _one_thread: PhantomData,
        }
    }

    /// Starts `request` on `client` (with that handle's timeout, retries
    /// and metadata) and returns its slot. A request the client refuses
    /// before sending (an invalid key, too large) is finished at once with
    /// that error.
    // Used by a cluster's fan-out.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn start(&mut self, client: &'a Client, request: Request<'_>) -> usize {
        let parts = client.call_parts(method_of(&request));
        let deadline = Instant::now() + parts.timeout;
        self.start_by(client, request, parts, deadline)
    }

    /// [`Flight::start`] with the caller's deadline in place of the
    /// handle's timeout.
    pub(crate) fn start_until(
        &mut self,
        client: &'a Client,
        request: Request<'_>,
        deadline: Instant,
    ) -> usize {
        let parts = client.call_parts(method_of(&request));
        self.start_by(client, request, parts, deadline)
    }

    fn start_by(
        &mut self,
        client: &'a Client,
        request: Request<'_>,
        parts: CallParts<'a>,
        deadline: Instant,
    ) -> usize {
        let CallParts {
            timeout,
            retries,
            observation,
        } = parts;
        let index = self.slots.len();
        let (kind, encoded) = encode(client, &request);
        self.slots.push(Slot {
            client,
            method: method_of(&request),
            kind,
            body: Bytes::new(),
            deadline,
            timeout,
            retries,
            observation: Some(observation),
            attempt: 0,
            state: State::Pausing,
        });
        self.open += 1;
        match encoded {
            Ok(body) => {
                self.slots[index].body = body;
                self.send(index);
            }
            Err(error) => self.finish(index, Err(error)),
        }
        index
    }

    /// Whether the call at `slot` has finished (its outcome may be taken).
    pub(crate) fn is_done(&self, slot: usize) -> bool {
        matches!(self.slots[slot].state, State::Done(_))
    }

    /// The outcome of the finished call at `slot`; `None` while it runs or
    /// once taken.
    pub(crate) fn take(&mut self, slot: usize) -> Option<Result<Answered>> {
        let state = &mut self.slots[slot].state;
        if !matches!(state, State::Done(_)) {
            return None;
        }
        match std::mem::replace(state, State::Gone) {
            State::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Stops waiting for the call at `slot`, which counts as failed with
    /// `Cancelled` in the client's telemetry. A flight made with
    /// [`Flight::new`] has the call's stream reset at once; in a
    /// [`Flight::waited_out`] one the call runs on to its deadline.
    pub(crate) fn cancel(&mut self, slot: usize) {
        self.abandon(
            slot,
            Error::Status {
                code: crate::Code::Cancelled,
                message: "the call was abandoned".into(),
                details: None,
            },
        );
    }

    /// Stops waiting for the call at `slot`, counted in telemetry as
    /// failed with `error`.
    pub(crate) fn abandon(&mut self, slot: usize, error: Error) {
        let call = &mut self.slots[slot];
        if matches!(call.state, State::Sent(_) | State::Pausing) {
            if let Some(observation) = call.observation.take() {
                observation.finish(&Err::<(), _>(error));
            }
            self.open -= 1;
        }
        call.state = State::Gone;
    }

    /// Waits until every call has finished or `until` passes.
    // Used by a cluster's fan-out.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn wait_all(&mut self, until: Instant) {
        self.pump(until, |flight| flight.open == 0);
    }

    /// Waits for the next call to finish (in the order they finish), up to
    /// `until`; `None` when every call's outcome was handed out already or
    /// `until` passed first.
    pub(crate) fn wait_any(&mut self, until: Instant) -> Option<usize> {
        loop {
            self.pump(until, |flight| {
                !flight.finished.is_empty() || flight.open == 0
            });
            let slot = self.finished.pop_front()?;
            // A call cancelled after it finished is not handed out.
            if self.is_done(slot) {
                return Some(slot);
            }
        }
    }

    /// Takes in replies and fires timers until `enough` says so or `until`
    /// passes, parking the thread in between.
    fn pump(&mut self, until: Instant, enough: impl Fn(&Self) -> bool) {
        loop {
            // The flight holds a sender, so the channel never disconnects.
            while let Ok((tag, message)) = self.rx.try_recv() {
                self.on_reply(tag, message);
            }
            let now = Instant::now();
            self.fire_timers(now);
            if enough(self) {
                return;
            }
            let wake = self
                .timers
                .peek()
                .map_or(until, |Reverse(timer)| timer.at.min(until));
            if now >= until {
                return;
            }
            if wake > now {
                // Every reply unparks this thread; a stale unpark only
                // costs one more turn of the loop.
                std::thread::park_timeout(wake - now);
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse(timer)) = self.timers.peek() {
            if timer.at > now {
                return;
            }
            let Some(Reverse(Timer { slot, attempt, .. })) = self.timers.pop() else {
                return;
            };
            let call = &self.slots[slot];
            if call.attempt != attempt {
                continue;
            }
            match call.state {
                State::Pausing => self.send(slot),
                State::Sent(_) => {
                    let timeout = call.timeout;
                    self.finish(slot, Err(Error::deadline(timeout, "waiting for the reply")));
                }
                State::Done(_) | State::Gone => {}
            }
        }
    }

    /// Sends the next attempt of the call at `slot`.
    fn send(&mut self, slot: usize) {
        let call = &mut self.slots[slot];
        call.attempt += 1;
        let attempt = call.attempt;
        if let Some(observation) = &call.observation {
            observation.attempt(attempt);
        }
        if Instant::now() >= call.deadline {
            let error = Error::deadline(call.timeout, "before the call could be sent");
            self.finish(slot, Err(error));
            return;
        }
        let (cancel, signal) = match self.cancellable {
            true => {
                let (cancel, signal) = cancel_pair();
                (Some(cancel), Some(signal))
            }
            false => (None, None),
        };
        let reply = ReplySender::tagged(&self.tx, tag(slot, attempt), self.waiter.clone());
        let submitted =
            call.client
                .submit(call.method, call.body.clone(), call.deadline, reply, signal);
        match submitted {
            Ok(()) => {
                call.state = State::Sent(cancel);
                let at = call.deadline + REPLY_GRACE;
                self.timers.push(Reverse(Timer { at, slot, attempt }));
            }
            Err(error) => self.finish(slot, Err(error)),
        }
    }

    fn on_reply(&mut self, tag: u64, message: Option<crate::pool::Reply>) {
        let slot = usize::try_from(tag >> 32).unwrap_or(usize::MAX);
        let attempt = (tag & u64::from(u32::MAX)) as u32;
        let Some(call) = self.slots.get_mut(slot) else {
            return;
        };
        if call.attempt != attempt || !matches!(call.state, State::Sent(_)) {
            // An attempt given up on (its deadline passed, or cancelled).
            return;
        }
        let failure = match message {
            None => return self.finish(slot, Err(Error::Closed)),
            Some(Ok(answer)) => {
                call.retries.succeeded();
                if let Some(observation) = &call.observation {
                    observation.answered_as(answer.request_id.as_ref());
                }
                let outcome = decode(call.kind, answer.message);
                return self.finish(slot, outcome);
            }
            Some(Err(failure)) => failure,
        };
        match call.retries.after(&failure) {
            NextStep::ResendNow => {
                if let Some(observation) = &call.observation {
                    observation.retry(&failure.error, Duration::ZERO);
                }
                self.send(slot);
            }
            NextStep::GiveUp => self.finish(slot, Err(failure.error)),
            NextStep::RetryAfter(pause) => {
                let at = Instant::now() + pause;
                if at >= call.deadline {
                    return self.finish(slot, Err(failure.error));
                }
                if let Some(observation) = &call.observation {
                    observation.retry(&failure.error, pause);
                }
                call.state = State::Pausing;
                self.timers.push(Reverse(Timer { at, slot, attempt }));
            }
        }
    }

    fn finish(&mut self, slot: usize, outcome: Result<Answered>) {
        let call = &mut self.slots[slot];
        if let Some(observation) = call.observation.take() {
            observation.finish(&outcome);
        }
        call.state = State::Done(outcome);
        call.body = Bytes::new();
        self.open -= 1;
        self.finished.push_back(slot);
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        // Calls still out are abandoned: with cancel tokens, their streams
        // are reset as the tokens drop with the slots and they count as
        // cancelled; without, the flight waited until their deadlines (see
        // `waited_out`), and they count as late.
        for slot in 0..self.slots.len() {
            if matches!(self.slots[slot].state, State::Sent(_) | State::Pausing) {
                if self.cancellable {
                    self.cancel(slot);
                } else {
                    let timeout = self.slots[slot].timeout;
                    self.abandon(slot, Error::deadline(timeout, "waiting for the reply"));
                }
            }
        }
    }
}

fn method_of(request: &Request<'_>) -> Method {
    match request {
        Request::Get(_) => Method::Get,
        Request::Set(..) => Method::Set,
        Request::Delete(_) => Method::Delete,
        Request::SetIfAbsent(..) => Method::SetIfAbsent,
        Request::CompareAndSet { .. } => Method::CompareAndSet,
        Request::GetMany(_) => Method::MultiGet,
        Request::SetMany(..) => Method::MultiSet,
        Request::DeleteMany(_) => Method::MultiDelete,
    }
}

/// Validates and encodes a request as the client's own methods do.
fn encode(client: &Client, request: &Request<'_>) -> (Kind, Result<Bytes>) {
    let keyed = |key: &str, message: &dyn Fn() -> Result<Bytes>| {
        client.check_key(key).and_then(|()| message())
    };
    match *request {
        Request::Get(key) => (Kind::Get, keyed(key, &|| client.encode(&KeyRef { key }))),
        Request::Delete(key) => (Kind::Delete, keyed(key, &|| client.encode(&KeyRef { key }))),
        // The same message: the method tells the server what to do.
        Request::Set(key, value, ttl) | Request::SetIfAbsent(key, value, ttl) => (
            match request {
                Request::Set(..) => Kind::Set,
                _ => Kind::SetIfAbsent,
            },
            keyed(key, &|| {
                let ttl = ttl.wire_seconds()?;
                client.encode(&ItemRef { key, value, ttl })
            }),
        ),
        Request::CompareAndSet {
            key,
            expected,
            value,
            ttl,
        } => (
            Kind::CompareAndSet,
            keyed(key, &|| {
                let ttl = ttl.wire_seconds()?;
                client.encode(&CompareAndSetRef {
                    key,
                    expected,
                    value,
                    ttl,
                })
            }),
        ),
        Request::GetMany(keys) => (
            Kind::GetMany(keys.len()),
            client.encode(&KeysRef { elements: keys }),
        ),
        Request::DeleteMany(keys) => (
            Kind::DeleteMany(keys.len()),
            client.encode(&KeysRef { elements: keys }),
        ),
        Request::SetMany(items, ttl) => (
            Kind::SetMany(items.len()),
            ttl.wire_seconds().and_then(|ttl| {
                let items: Vec<ItemRef<'_>> = items
                    .iter()
                    .map(|&(key, value)| ItemRef { key, value, ttl })
                    .collect();
                client.encode(&ItemsRef { elements: &items })
            }),
        ),
    }
}

fn decoded<T: Message + Default>(message: Bytes) -> Result<T> {
    decode_message(message).map_err(|status| Error::Protocol {
        code: status.code(),
        message: status.message().to_owned(),
    })
}

fn decode(kind: Kind, message: Bytes) -> Result<Answered> {
    Ok(match kind {
        Kind::Get => {
            let reply: CacheValue = decoded(message)?;
            Answered::Value(reply.found.then_some(reply.value))
        }
        Kind::Set => {
            let reply: CacheResponse = decoded(message)?;
            expect_ok(reply.status, "Set")?;
            Answered::Done
        }
        Kind::Delete => {
            let reply: CacheResponse = decoded(message)?;
            expect_ok(reply.status, "Delete")?;
            Answered::Done
        }
        Kind::SetIfAbsent => {
            let reply: ConditionalCacheResponse = decoded(message)?;
            Answered::Inserted(inserted(&reply)?)
        }
        Kind::CompareAndSet => {
            let reply: ConditionalCacheResponse = decoded(message)?;
            Answered::Swapped(swapped(&reply)?)
        }
        Kind::GetMany(expected) => {
            let reply: MultiCacheValueResponse = decoded(message)?;
            Answered::Values(value_results(reply, expected)?)
        }
        Kind::SetMany(expected) => {
            let reply: MultiCacheResponse = decoded(message)?;
            Answered::Items(operation_results(reply, expected, "MultiSet")?)
        }
        Kind::DeleteMany(expected) => {
            let reply: MultiCacheResponse = decoded(message)?;
            Answered::Items(operation_results(reply, expected, "MultiDelete")?)
        }
    })
}
