//! The enable scope: use cases cache only on a thread that asked for it.
//!
//! Safe by default: a write path (read, modify, write back) that calls a
//! cached function by accident must read fresh data, so outside an enabled
//! scope an [`EntityCache`](crate::cache::EntityCache) use case calls its
//! function straight away and counts the call as disabled, reason `scope`.
//! Read paths (a request handler serving reads) enable caching around
//! themselves, with a guard or a closure.

use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    /// How many enable scopes are open on this thread.
    static ENABLED: Cell<u32> = const { Cell::new(0) };
}

/// Whether use cases cache on the current thread.
///
/// ```
/// use tiny_cache_client::cache::{enable, is_enabled};
///
/// assert!(!is_enabled());
/// let scope = enable();
/// assert!(is_enabled());
/// drop(scope);
/// assert!(!is_enabled());
/// ```
pub fn is_enabled() -> bool {
    ENABLED.try_with(|open| open.get() > 0).unwrap_or(false)
}

/// Enables caching on the current thread until the guard is dropped.
/// Scopes nest; the guard stays on its thread (it is not `Send`).
///
/// ```
/// use tiny_cache_client::cache::{enable, is_enabled};
///
/// let _outer = enable();
/// {
///     let _inner = enable();
/// }
/// assert!(is_enabled(), "still inside the outer scope");
/// ```
pub fn enable() -> EnabledScope {
    let _ = ENABLED.try_with(|open| open.set(open.get().saturating_add(1)));
    EnabledScope {
        _not_send: PhantomData,
    }
}

/// Runs `body` with caching enabled on the current thread.
///
/// ```
/// use tiny_cache_client::cache::{enabled, is_enabled};
///
/// assert!(enabled(is_enabled));
/// assert!(!is_enabled());
/// ```
pub fn enabled<T>(body: impl FnOnce() -> T) -> T {
    let _scope = enable();
    body()
}

/// An open enable scope; see [`enable`].
///
/// ```
/// let scope: tiny_cache_client::cache::EnabledScope = tiny_cache_client::cache::enable();
/// drop(scope);
/// ```
#[derive(Debug)]
#[must_use = "caching is enabled only while the guard lives"]
pub struct EnabledScope {
    /// The count is per thread: the guard must be dropped where it was made.
    _not_send: PhantomData<*const ()>,
}

impl Drop for EnabledScope {
    fn drop(&mut self) {
        let _ = ENABLED.try_with(|open| open.set(open.get().saturating_sub(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_per_thread() {
        let _scope = enable();
        assert!(is_enabled());
        assert!(!std::thread::spawn(is_enabled).join().unwrap());
    }

    #[test]
    fn a_panic_inside_a_closure_scope_closes_it() {
        let _ = std::panic::catch_unwind(|| enabled(|| panic!("boom")));
        assert!(!is_enabled());
    }
}
