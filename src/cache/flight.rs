//! Single flight: at most one loader per key at a time across every thread
//! of the process, the other callers waiting for its outcome.
//!
//! The design is quick_cache's guard: the first caller to miss a key
//! becomes its leader and holds a [`Lead`]; later callers find the key's
//! slot and wait on it, each until its own deadline. Whatever way the
//! leader ends (a value, an error, a panic unwinding through it), dropping
//! the `Lead` publishes an outcome and removes the slot, so no waiter hangs
//! and the key is never poisoned.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;

/// What a leader hands its waiters.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// The stored or computed value, as bytes: every waiter decodes it into
    /// its own type.
    Value(Bytes),
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
pub(crate) struct Wait(Arc<Slot>);

impl Wait {
    /// The leader's outcome, or `None` when `deadline` passes first.
    pub(crate) fn until(&self, deadline: Instant) -> Option<Outcome> {
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
pub(crate) enum Role<'a> {
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
    pub(crate) fn is_loading_here(&self, key: &str) -> bool {
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
    pub(crate) fn join(&self, key: &str) -> Role<'_> {
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

    /// How many keys are being loaded (for tests).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        lock(&self.slots).len()
    }
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
    use std::time::Duration;

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
}
