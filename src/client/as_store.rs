//! [`Client`](super::Client) as a [`CacheStore`](crate::CacheStore): each
//! operation is the client's own RPC (`MultiGet` for `get_many`, the
//! server's atomic `SetIfAbsent` and `CompareAndSet`), with the client's
//! default TTL; a pipeline starts every operation at once on one
//! [`Flight`](super::flight::Flight).

use std::time::{Duration, Instant};

use super::config::MAX_TIMEOUT;
use super::flight::{Answered, Flight, Request, LAST_WORD};
use super::handle::Client;
use crate::error::{Error, Result};
use crate::store::pipeline::{Op, Outcome, Progress, Started};

crate::store::store_from_inherent!(Client, {
    /// Every operation goes out at once on the client's connections, each
    /// with its own retries, all within one deadline.
    fn start_pipeline(&self, ops: Vec<Op>, timeout: Option<Duration>) -> Started<'_> {
        Started::live(Box::new(ClientPipeline::start(self, &ops, timeout)))
    }
});

/// A client's started pipeline: one flight, one call per operation (an
/// operation's slot in the flight is its index in the pipeline).
struct ClientPipeline<'c> {
    flight: Flight<'c>,
    /// What a finished `Set` or `Delete` reads as, by operation.
    done_as: Vec<Outcome>,
    handed: Vec<bool>,
    left: usize,
    deadline: Instant,
    timeout: Duration,
}

impl<'c> ClientPipeline<'c> {
    fn start(client: &'c Client, ops: &[Op], timeout: Option<Duration>) -> ClientPipeline<'c> {
        let timeout = timeout.map_or_else(|| client.timeout(), |t| t.min(MAX_TIMEOUT));
        let deadline = Instant::now() + timeout;
        let mut flight = Flight::new();
        let default_ttl = client.default_ttl();
        let mut done_as = Vec::with_capacity(ops.len());
        for op in ops {
            let ttl = op.ttl_or(default_ttl);
            let request = match op {
                Op::Get { key } => Request::Get(key),
                Op::Set { key, value, .. } => Request::Set(key, value, ttl),
                Op::Delete { key } => Request::Delete(key),
                Op::SetIfAbsent { key, value, .. } => Request::SetIfAbsent(key, value, ttl),
                Op::CompareAndSet {
                    key,
                    expected,
                    value,
                    ..
                } => Request::CompareAndSet {
                    key,
                    expected,
                    value,
                    ttl,
                },
            };
            done_as.push(match op {
                Op::Delete { .. } => Outcome::Deleted,
                _ => Outcome::Stored,
            });
            flight.start_until(client, request, deadline);
        }
        ClientPipeline {
            flight,
            handed: vec![false; ops.len()],
            left: ops.len(),
            done_as,
            deadline,
            timeout,
        }
    }
}

impl Progress for ClientPipeline<'_> {
    fn len(&self) -> usize {
        self.handed.len()
    }

    fn next(&mut self) -> Option<(usize, Result<Outcome>)> {
        if self.left == 0 {
            return None;
        }
        let finished = self
            .flight
            .wait_any(self.deadline + LAST_WORD)
            .and_then(|slot| Some((slot, self.flight.take(slot)?)));
        let (slot, outcome) = match finished {
            Some(finished) => finished,
            // Only if a call outlived its own timer: report it as late.
            None => {
                let slot = self.handed.iter().position(|handed| !handed)?;
                let late = Error::deadline(self.timeout, "the pipeline's deadline passed");
                self.flight.abandon(slot, late.clone());
                (slot, Err(late))
            }
        };
        self.handed[slot] = true;
        self.left -= 1;
        let outcome = outcome.and_then(|answered| match answered {
            Answered::Value(value) => Ok(Outcome::Value(value)),
            Answered::Done => Ok(self.done_as[slot].clone()),
            Answered::Inserted(stored) => Ok(Outcome::Inserted(stored)),
            Answered::Swapped(outcome) => Ok(Outcome::Swapped(outcome)),
            Answered::Values(_) | Answered::Items(_) => Err(Error::Protocol {
                code: crate::Code::Internal,
                message: "a pipeline operation answered as a batch".into(),
            }),
        });
        Some((slot, outcome))
    }
}
