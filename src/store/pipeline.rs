//! Pipelines: many operations started together and waited for once.
//!
//! A blocking caller pays one sleep of its thread per wait, not per call
//! (BENCHMARKS.md measures that floor). A [`Pipeline`] lets a thread with
//! several independent operations send them all at once and sleep once for
//! their answers, the way redis-rs's `pipe()` does, on any
//! [`CacheStore`]: `Client` starts every operation on its connections at
//! once, `Cluster` sends each server its part in one fan-out, and any other
//! store runs them one after another.
//!
//! Operations of one pipeline run concurrently: two on the same key may be
//! applied in either order (a `set` then a `get` of one key may read the
//! old value). Each operation keeps its own retries (only idempotent ones
//! are retried after they may have reached the server); the pipeline has
//! one deadline for all of them; each has its own outcome, so one refused
//! operation fails alone.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{CacheStore, CasOutcome};
use crate::error::{Error, Result};
use crate::ttl::Ttl;

/// One operation of a [`Pipeline`], owning its key and value.
///
/// A `ttl` of `None` is the store's [default TTL](CacheStore::default_ttl).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// [`CacheStore::get`].
    Get {
        /// The key.
        key: String,
    },
    /// [`CacheStore::set_with_ttl`].
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// Its TTL; `None` for the store's default.
        ttl: Option<Ttl>,
    },
    /// [`CacheStore::delete`].
    Delete {
        /// The key.
        key: String,
    },
    /// [`CacheStore::set_if_absent_with_ttl`].
    SetIfAbsent {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// Its TTL; `None` for the store's default.
        ttl: Option<Ttl>,
    },
    /// [`CacheStore::compare_and_set_with_ttl`].
    CompareAndSet {
        /// The key.
        key: String,
        /// The value the key must hold for the write to happen.
        expected: Bytes,
        /// The new value.
        value: Bytes,
        /// The new value's TTL; `None` for the store's default.
        ttl: Option<Ttl>,
    },
}

impl Op {
    /// The key the operation is about.
    ///
    /// ```
    /// use tiny_cache_client::pipeline::Op;
    /// assert_eq!(Op::Get { key: "a".into() }.key(), "a");
    /// ```
    pub fn key(&self) -> &str {
        match self {
            Op::Get { key }
            | Op::Set { key, .. }
            | Op::Delete { key }
            | Op::SetIfAbsent { key, .. }
            | Op::CompareAndSet { key, .. } => key,
        }
    }

    /// The TTL a write asks for, `default` when it names none; `default`
    /// for reads and deletes, which write nothing.
    pub(crate) fn ttl_or(&self, default: Ttl) -> Ttl {
        match self {
            Op::Set { ttl, .. } | Op::SetIfAbsent { ttl, .. } | Op::CompareAndSet { ttl, .. } => {
                ttl.unwrap_or(default)
            }
            Op::Get { .. } | Op::Delete { .. } => default,
        }
    }

    /// Runs the operation on `store`, alone: the one-after-another form.
    pub(crate) fn run_on<S: CacheStore + ?Sized>(&self, store: &S) -> Result<Outcome> {
        let ttl = self.ttl_or(store.default_ttl());
        match self {
            Op::Get { key } => store.get(key).map(Outcome::Value),
            Op::Set { key, value, .. } => store
                .set_with_ttl(key, value, ttl)
                .map(|()| Outcome::Stored),
            Op::Delete { key } => store.delete(key).map(|()| Outcome::Deleted),
            Op::SetIfAbsent { key, value, .. } => store
                .set_if_absent_with_ttl(key, value, ttl)
                .map(Outcome::Inserted),
            Op::CompareAndSet {
                key,
                expected,
                value,
                ..
            } => store
                .compare_and_set_with_ttl(key, expected, value, ttl)
                .map(Outcome::Swapped),
        }
    }
}

/// What one operation of a pipeline did, by kind of operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A get's value; `None` for a miss.
    Value(Option<Bytes>),
    /// A set stored its value.
    Stored,
    /// A delete removed the key (or it was not there).
    Deleted,
    /// Whether a set-if-absent stored its value.
    Inserted(bool),
    /// What a compare-and-set did.
    Swapped(CasOutcome),
}

impl Outcome {
    /// A get's value (`Some(None)` for a miss); `None` for any other kind.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tiny_cache_client::pipeline::Outcome;
    ///
    /// let hit = Outcome::Value(Some(Bytes::from_static(b"v")));
    /// assert_eq!(hit.into_value(), Some(Some(Bytes::from_static(b"v"))));
    /// assert_eq!(Outcome::Stored.into_value(), None);
    /// ```
    pub fn into_value(self) -> Option<Option<Bytes>> {
        match self {
            Outcome::Value(value) => Some(value),
            _ => None,
        }
    }
}

/// Operations to send together; see the [module documentation](self).
///
/// Built from any store (`client.pipeline()`, `cluster.pipeline()`,
/// [`CacheStore::pipeline`] or [`Pipeline::on`] for a `&dyn CacheStore`),
/// then [`run`](Pipeline::run) (every outcome, in order),
/// [`run_each`](Pipeline::run_each), or [`start`](Pipeline::start) to
/// collect the outcomes later.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// use tiny_cache_client::pipeline::Outcome;
/// use tiny_cache_client::Client;
///
/// let client = Client::new(&server.address())?;
/// client.set("a", "1")?;
/// let outcomes = client
///     .pipeline()
///     .get("a")
///     .set("b", "2")
///     .delete("c")
///     .run()?;
/// assert_eq!(outcomes[0], Outcome::Value(Some("1".into())));
/// assert_eq!(outcomes[1], Outcome::Stored);
/// assert_eq!(outcomes[2], Outcome::Deleted);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a pipeline does nothing until it is run or started"]
pub struct Pipeline<'s> {
    store: &'s dyn CacheStore,
    ops: Vec<Op>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Pipeline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("ops", &self.ops)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<'s> Pipeline<'s> {
    /// An empty pipeline on `store`.
    ///
    /// ```
    /// use tiny_cache_client::{pipeline::Pipeline, CacheStore, Client};
    ///
    /// let client = Client::new("127.0.0.1:50051")?;
    /// let store: &dyn CacheStore = &client;
    /// assert!(Pipeline::on(store).is_empty());
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn on(store: &'s dyn CacheStore) -> Pipeline<'s> {
        Pipeline {
            store,
            ops: Vec::new(),
            timeout: None,
        }
    }

    /// Adds an operation.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// use tiny_cache_client::pipeline::Op;
    /// let pipeline = client.pipeline().push(Op::Get { key: "a".into() });
    /// assert_eq!(pipeline.len(), 1);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn push(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }

    /// Adds a get of `key`.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// assert_eq!(client.pipeline().get("a").get("b").len(), 2);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn get(self, key: impl Into<String>) -> Self {
        self.push(Op::Get { key: key.into() })
    }

    /// Adds a write of `key` with the store's default TTL.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// assert_eq!(client.pipeline().set("a", "1").len(), 1);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn set(self, key: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.push(Op::Set {
            key: key.into(),
            value: Bytes::copy_from_slice(value.as_ref()),
            ttl: None,
        })
    }

    /// Adds a write of `key` for `ttl`.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// use std::time::Duration;
    /// let pipeline = client.pipeline().set_with_ttl("a", "1", Duration::from_secs(60));
    /// # drop(pipeline);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn set_with_ttl(
        self,
        key: impl Into<String>,
        value: impl AsRef<[u8]>,
        ttl: impl Into<Ttl>,
    ) -> Self {
        self.push(Op::Set {
            key: key.into(),
            value: Bytes::copy_from_slice(value.as_ref()),
            ttl: Some(ttl.into()),
        })
    }

    /// Adds a delete of `key`.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// assert_eq!(client.pipeline().delete("a").len(), 1);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn delete(self, key: impl Into<String>) -> Self {
        self.push(Op::Delete { key: key.into() })
    }

    /// Adds a set-if-absent of `key` with the store's default TTL.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// assert_eq!(client.pipeline().set_if_absent("lock", "me").len(), 1);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn set_if_absent(self, key: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.push(Op::SetIfAbsent {
            key: key.into(),
            value: Bytes::copy_from_slice(value.as_ref()),
            ttl: None,
        })
    }

    /// Adds a compare-and-set of `key` with the store's default TTL.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// assert_eq!(client.pipeline().compare_and_set("n", "1", "2").len(), 1);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn compare_and_set(
        self,
        key: impl Into<String>,
        expected: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Self {
        self.push(Op::CompareAndSet {
            key: key.into(),
            expected: Bytes::copy_from_slice(expected.as_ref()),
            value: Bytes::copy_from_slice(value.as_ref()),
            ttl: None,
        })
    }

    /// One deadline for the whole pipeline, in place of the store's own
    /// timeout (which each call otherwise keeps).
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// use std::time::Duration;
    /// let pipeline = client.pipeline().timeout(Duration::from_millis(50)).get("a");
    /// # drop(pipeline);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Operations added so far.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// assert_eq!(client.pipeline().len(), 0);
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation was added.
    ///
    /// ```
    /// # let client = tiny_cache_client::Client::new("127.0.0.1:50051")?;
    /// assert!(client.pipeline().is_empty());
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Sends every operation now and returns at once; the outcomes are
    /// collected from the [`Started`] handle (a `Cluster`, or a store that
    /// runs them one after another, has them all done on return).
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let mut started = client.pipeline().set("a", "1").set("b", "2").start();
    /// // ... other work while the calls are out ...
    /// while let Some((index, outcome)) = started.wait_next() {
    ///     println!("operation {index} done: {:?}", outcome?);
    /// }
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(self) -> Started<'s> {
        self.store.start_pipeline(self.ops, self.timeout)
    }

    /// Runs every operation and returns their outcomes in order; the first
    /// operation that failed (in order) is the error, after every one has
    /// ended. [`run_each`](Pipeline::run_each) gives each its own result.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// assert!(client.pipeline().set("ok", "1").get("").run().is_err());
    /// assert_eq!(client.get("ok")?.as_deref(), Some(&b"1"[..]));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(self) -> Result<Vec<Outcome>> {
        self.run_each().into_iter().collect()
    }

    /// Runs every operation and returns each one's own result, in order.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let results = client.pipeline().get("").set("k", "v").run_each();
    /// assert!(results[0].is_err(), "an empty key is refused");
    /// assert!(results[1].is_ok(), "and fails alone");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_each(self) -> Vec<Result<Outcome>> {
        self.start().wait_all()
    }
}

/// How a store that overlaps its calls reports progress to [`Started`].
pub(crate) trait Progress {
    /// Operations in the pipeline.
    fn len(&self) -> usize;
    /// The next operation to end, in the order they end; `None` when every
    /// outcome was handed out.
    fn next(&mut self) -> Option<(usize, Result<Outcome>)>;
}

/// A started pipeline: its operations are out, their outcomes come in as
/// they end. Dropping it abandons the operations still out (a `Client`
/// resets their streams). Tied to the thread that started it.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// let started = client.pipeline().get("a").get("b").start();
/// assert_eq!(started.len(), 2);
/// let outcomes = started.wait_all();
/// assert!(outcomes.iter().all(|outcome| outcome.is_ok()));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Started<'s> {
    inner: Inner<'s>,
}

enum Inner<'s> {
    Done(VecDeque<(usize, Result<Outcome>)>, usize),
    Live(Box<dyn Progress + 's>),
}

impl std::fmt::Debug for Started<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<'s> Started<'s> {
    /// A pipeline whose outcomes are all known already: what a store that
    /// runs operations one after another returns from
    /// [`CacheStore::start_pipeline`].
    ///
    /// ```
    /// use tiny_cache_client::pipeline::{Outcome, Started};
    /// let started = Started::finished(vec![Ok(Outcome::Stored)]);
    /// assert_eq!(started.wait_all(), vec![Ok(Outcome::Stored)]);
    /// ```
    pub fn finished(outcomes: Vec<Result<Outcome>>) -> Started<'static> {
        let len = outcomes.len();
        Started {
            inner: Inner::Done(outcomes.into_iter().enumerate().collect(), len),
        }
    }

    pub(crate) fn live(progress: Box<dyn Progress + 's>) -> Started<'s> {
        Started {
            inner: Inner::Live(progress),
        }
    }

    /// Operations in the pipeline.
    ///
    /// ```
    /// use tiny_cache_client::pipeline::Started;
    /// assert_eq!(Started::finished(vec![]).len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Done(_, len) => *len,
            Inner::Live(progress) => progress.len(),
        }
    }

    /// Whether the pipeline has no operation.
    ///
    /// ```
    /// use tiny_cache_client::pipeline::Started;
    /// assert!(Started::finished(vec![]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the next operation to end (the first to finish, whatever
    /// its place) and returns its index in the pipeline and its outcome;
    /// `None` once every outcome was handed out. Never waits past the
    /// pipeline's deadline: an operation still out then ends with
    /// [`Error::DeadlineExceeded`].
    ///
    /// ```
    /// use tiny_cache_client::pipeline::{Outcome, Started};
    /// let mut started = Started::finished(vec![Ok(Outcome::Deleted)]);
    /// assert_eq!(started.wait_next(), Some((0, Ok(Outcome::Deleted))));
    /// assert_eq!(started.wait_next(), None);
    /// ```
    pub fn wait_next(&mut self) -> Option<(usize, Result<Outcome>)> {
        match &mut self.inner {
            Inner::Done(outcomes, _) => outcomes.pop_front(),
            Inner::Live(progress) => progress.next(),
        }
    }

    /// Waits for every operation and returns the outcomes not handed out
    /// yet by [`wait_next`](Started::wait_next), in pipeline order (an
    /// outcome already handed out reads as [`Error::Validation`]).
    ///
    /// ```
    /// use tiny_cache_client::pipeline::{Outcome, Started};
    /// let started = Started::finished(vec![Ok(Outcome::Inserted(true))]);
    /// assert_eq!(started.wait_all(), vec![Ok(Outcome::Inserted(true))]);
    /// ```
    pub fn wait_all(mut self) -> Vec<Result<Outcome>> {
        let mut out: Vec<Result<Outcome>> = (0..self.len())
            .map(|_| {
                Err(Error::Validation(
                    "this outcome was already handed out by wait_next".into(),
                ))
            })
            .collect();
        while let Some((index, outcome)) = self.wait_next() {
            if let Some(place) = out.get_mut(index) {
                *place = outcome;
            }
        }
        out
    }
}

/// The one-after-another form of [`CacheStore::start_pipeline`]: each
/// operation in turn, none started once `timeout` has passed.
pub(crate) fn run_in_turn<S: CacheStore + ?Sized>(
    store: &S,
    ops: &[Op],
    timeout: Option<Duration>,
) -> Vec<Result<Outcome>> {
    // A timeout too long for the clock is no deadline at all.
    let deadline =
        timeout.and_then(|timeout| Some((Instant::now().checked_add(timeout)?, timeout)));
    ops.iter()
        .map(|op| match deadline {
            Some((deadline, timeout)) if Instant::now() >= deadline => Err(Error::deadline(
                timeout,
                "the pipeline's deadline passed before this operation started",
            )),
            _ => op.run_on(store),
        })
        .collect()
}
