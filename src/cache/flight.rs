//! Single flight: at most one loader per key at a time across every thread
//! of the process, the other callers waiting for its outcome.
//!
//! The design is quick_cache's guard: the first caller to miss a key
//! becomes its leader and holds a [`Lead`]; later callers find the key's
//! slot and wait on it, each until its own deadline. Whatever way the
//! leader ends (a value, an error, a panic unwinding through it), dropping
//! the `Lead` publishes an outcome and removes the slot, so no waiter hangs
//! and the key is never poisoned.
//!
//! Every layer that loads goes through [`Flights::lead_or_wait`]: the
//! read-through layer and the entity cache join, wait and read a leader's
//! outcome the same way, and differ only in what they do with it (the
//! entity cache fails open where read-through reports).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::CacheError;

/// What a leader hands its waiters.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// The stored or computed value, as bytes: every waiter decodes it into
    /// its own type.
    Value(Bytes),
    /// The leader's loader found nothing, and nothing was stored.
    Missing,
    /// The leader failed; holds its `CacheError<E>`, for waiters of the same
    /// `E` to clone.
    Failed(Arc<dyn Any + Send + Sync>),
    /// The leader's thread panicked before it published anything.
    Panicked,
}

#[derive(Default)]
struct Slot {
    outcome: Mutex<Option<Outcome>>,
    published: Condvar,
}

/// A waiter's handle on a key being loaded by another thread.
struct Wait(Arc<Slot>);

impl Wait {
    /// The leader's outcome, or `None` when `deadline` passes first.
    fn until(&self, deadline: Instant) -> Option<Outcome> {
        let mut outcome = lock(&self.0.outcome);
        loop {
            if let Some(outcome) = outcome.as_ref() {
                return Some(outcome.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            outcome = self
                .0
                .published
                .wait_timeout(outcome, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The keys being loaded, per layer.
#[derive(Default)]
pub(crate) struct Flights {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// Whether the caller loads the key or waits for the thread that does.
enum Role<'a> {
    Leader(Lead<'a>),
    Waiter(Wait),
}

thread_local! {
    /// The (layer, key) pairs this thread is loading right now: a loader
    /// that asks its own layer for its own key would otherwise wait for
    /// itself forever.
    static LOADING: RefCell<Vec<(usize, String)>> = const { RefCell::new(Vec::new()) };
}

impl Flights {
    /// Identifies this layer in the thread-local list; stable because a
    /// `Flights` lives behind the layer's `Arc` and never moves.
    fn id(&self) -> usize {
        self as *const Flights as usize
    }

    /// Whether the current thread is inside the loader of `key` on this
    /// layer.
    fn is_loading_here(&self, key: &str) -> bool {
        let id = self.id();
        LOADING
            .try_with(|loading| {
                loading
                    .borrow()
                    .iter()
                    .any(|(layer, loading)| *layer == id && loading == key)
            })
            .unwrap_or(false)
    }

    /// Joins the flight for `key`, starting it when there is none.
    fn join(&self, key: &str) -> Role<'_> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(key) {
            return Role::Waiter(Wait(Arc::clone(slot)));
        }
        let slot = Arc::new(Slot::default());
        slots.insert(key.to_owned(), Arc::clone(&slot));
        drop(slots);
        let _ = LOADING.try_with(|loading| loading.borrow_mut().push((self.id(), key.to_owned())));
        Role::Leader(Lead {
            flights: self,
            key: key.to_owned(),
            slot,
            published: false,
        })
    }

    /// Leads the flight of `key`, or waits for the thread that leads it
    /// for at most `timeout` (`on_wait` runs once if this caller waits).
    /// A leader's error reaches the waiters whose error type it has;
    /// waiters of another type load (or wait) again, since it means
    /// nothing to them.
    pub(crate) fn lead_or_wait<E>(
        &self,
        key: &str,
        timeout: Duration,
        on_wait: impl FnOnce(),
    ) -> Joined<'_, E>
    where
        E: Send + Sync + 'static,
    {
        if self.is_loading_here(key) {
            return Joined::Failed(CacheError::Reentrant {
                key: key.to_owned(),
            });
        }
        let now = Instant::now();
        // A timeout too large for an Instant means "wait for as long as it
        // takes": a year is as good.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        let mut on_wait = Some(on_wait);
        loop {
            let wait = match self.join(key) {
                Role::Leader(lead) => return Joined::Lead(lead),
                Role::Waiter(wait) => wait,
            };
            if let Some(on_wait) = on_wait.take() {
                on_wait();
            }
            let failed = match wait.until(deadline) {
                Some(Outcome::Value(bytes)) => return Joined::Value(bytes),
                Some(Outcome::Missing) => return Joined::Missing,
                Some(Outcome::Failed(shared)) => match shared.downcast_ref::<CacheError<E>>() {
                    Some(error) => error.clone(),
                    None => continue,
                },
                Some(Outcome::Panicked) => CacheError::LoaderPanicked {
                    key: key.to_owned(),
                },
                None => CacheError::WaitTimeout {
                    key: key.to_owned(),
                    waited: timeout,
                },
            };
            return Joined::Failed(failed);
        }
    }

    /// How many keys are being loaded (for tests).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        lock(&self.slots).len()
    }
}

/// What [`Flights::lead_or_wait`] gave its caller.
pub(crate) enum Joined<'a, E> {
    /// The caller loads the key, and publishes what it got.
    Lead(Lead<'a>),
    /// Another thread loaded it: the bytes it stored or computed.
    Value(Bytes),
    /// Another thread's loader found nothing (and nothing was stored).
    Missing,
    /// Nothing to show for the wait: the leader's error, or
    /// [`CacheError::Reentrant`], [`CacheError::LoaderPanicked`] or
    /// [`CacheError::WaitTimeout`].
    Failed(CacheError<E>),
}

/// The right and the duty to load one key: dropped without
/// [`Lead::publish`] (a panic), it tells the waiters so.
pub(crate) struct Lead<'a> {
    flights: &'a Flights,
    key: String,
    slot: Arc<Slot>,
    published: bool,
}

impl Lead<'_> {
    /// Hands `outcome` to every waiter and ends the flight.
    pub(crate) fn publish(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    /// Hands `error` to every waiter, ends the flight, and gives it back
    /// to the leader to return.
    pub(crate) fn fail<T, E>(self, error: CacheError<E>) -> Result<T, CacheError<E>>
    where
        E: Send + Sync + 'static,
    {
        self.publish(Outcome::Failed(Arc::new(error.clone())));
        Err(error)
    }

    fn finish(&mut self, outcome: Outcome) {
        self.published = true;
        // Out of the map first: a caller arriving from now on starts a new
        // flight (and finds the value in the store) instead of joining one
        // that has ended.
        lock(&self.flights.slots).remove(&self.key);
        *lock(&self.slot.outcome) = Some(outcome);
        self.slot.published.notify_all();
        let id = self.flights.id();
        let key = &self.key;
        let _ = LOADING.try_with(|loading| {
            let mut loading = loading.borrow_mut();
            if let Some(at) = loading.iter().rposition(|(l, k)| *l == id && k == key) {
                loading.remove(at);
            }
        });
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.published {
            self.finish(Outcome::Panicked);
        }
    }
}

/// Locks a mutex that no code panics under; a poisoned one is still sound.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn second_caller_waits_and_gets_the_leaders_value() {
        let flights = Flights::default();
        let Role::Leader(lead) = flights.join("k") else {
            panic!("the first caller leads")
        };
        assert!(flights.is_loading_here("k"));
        let Role::Waiter(wait) = flights.join("k") else {
            panic!("the second caller waits")
        };
        lead.publish(Outcome::Value(Bytes::from_static(b"v")));
        assert!(!flights.is_loading_here("k"));
        assert_eq!(flights.in_flight(), 0);
        match wait.until(Instant::now()) {
            Some(Outcome::Value(v)) => assert_eq!(&v[..], b"v"),
            _ => panic!("the waiter sees the value"),
        }
    }

    #[test]
    fn a_dropped_lead_tells_waiters_it_panicked_and_frees_the_key() {
        let flights = Flights::default();
        let Role::Leader(lead) = flights.join("k") else {
            panic!("the first caller leads")
        };
        let Role::Waiter(wait) = flights.join("k") else {
            panic!("the second caller waits")
        };
        drop(lead);
        assert!(matches!(
            wait.until(Instant::now()),
            Some(Outcome::Panicked)
        ));
        assert!(matches!(flights.join("k"), Role::Leader(_)));
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline() {
        let flights = Flights::default();
        let _lead = flights.join("k");
        let Role::Waiter(wait) = flights.join("k") else {
            panic!("the second caller waits")
        };
        let started = Instant::now();
        assert!(wait.until(started + Duration::from_millis(20)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn loading_marks_are_per_layer_and_per_key() {
        let one = Flights::default();
        let two = Flights::default();
        let _lead = one.join("k");
        assert!(one.is_loading_here("k"));
        assert!(!one.is_loading_here("other"));
        assert!(!two.is_loading_here("k"));
    }

    #[test]
    fn lead_or_wait_leads_a_free_key_and_refuses_a_thread_its_own_key() {
        let flights = Flights::default();
        let Joined::<Infallible>::Lead(lead) = flights.lead_or_wait("k", Duration::ZERO, || {})
        else {
            panic!("a free key is led")
        };
        assert!(matches!(
            flights.lead_or_wait::<Infallible>("k", Duration::ZERO, || {}),
            Joined::Failed(CacheError::Reentrant { .. })
        ));
        drop(lead);
    }

    #[test]
    fn lead_or_wait_hands_waiters_the_value_or_their_own_kind_of_error() {
        let flights = Arc::new(Flights::default());
        let waiter = |flights: &Arc<Flights>| {
            let flights = Arc::clone(flights);
            std::thread::spawn(move || {
                let mut waited = false;
                let joined = flights.lead_or_wait::<String>("k", Duration::from_secs(5), || {
                    waited = true;
                });
                match joined {
                    Joined::Value(bytes) => (waited, format!("value {bytes:?}")),
                    Joined::Failed(CacheError::Load(error)) => (waited, format!("error {error}")),
                    Joined::Failed(other) => (waited, format!("other {other}")),
                    Joined::Lead(_) => (waited, "led".to_owned()),
                    Joined::Missing => (waited, "missing".to_owned()),
                }
            })
        };
        for (outcome, expected) in [
            (Ok(Bytes::from_static(b"v")), "value b\"v\""),
            (Err("no".to_owned()), "error no"),
        ] {
            let Role::Leader(lead) = flights.join("k") else {
                panic!("the first caller leads")
            };
            let waiting = waiter(&flights);
            while Arc::strong_count(&lead.slot) < 3 {
                std::thread::yield_now();
            }
            match outcome {
                Ok(bytes) => lead.publish(Outcome::Value(bytes)),
                Err(error) => {
                    let _ = lead.fail::<(), String>(CacheError::Load(Arc::new(error)));
                }
            }
            assert_eq!(waiting.join().unwrap(), (true, expected.to_owned()));
        }
    }

    #[test]
    fn lead_or_wait_times_out_with_the_wait_it_was_given() {
        let flights = Arc::new(Flights::default());
        let _lead = flights.join("k");
        let waiter = Arc::clone(&flights);
        let joined = std::thread::spawn(move || {
            match waiter.lead_or_wait::<Infallible>("k", Duration::from_millis(10), || {}) {
                Joined::Failed(CacheError::WaitTimeout { waited, .. }) => Some(waited),
                _ => None,
            }
        });
        assert_eq!(joined.join().unwrap(), Some(Duration::from_millis(10)));
    }
}
