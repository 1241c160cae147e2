//! Generation bookkeeping: the tokens this process knows, and making and
//! replacing them on the server (see [`invalidation`](crate::cache::invalidation)
//! for what a token is).

use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cache::invalidation::{new_token, GLOBAL_GENERATION_KEY};
use crate::CacheStore;
use crate::{Error, Result, Ttl};

/// The generations of one [`EntityCache`](crate::cache::EntityCache).
pub(super) struct Tokens {
    /// Whether entries carry generations at all; off, every token is empty
    /// and every local entry is current.
    tracking: bool,
    /// How long a generation lives on the server.
    ttl: Ttl,
    /// The generation tokens this process last knew, by generation key: a
    /// local entry is served only while they match its own.
    known: moka::sync::Cache<String, Bytes>,
    /// The global generation as last read from the server (or written by
    /// this process's flush), and when: reused for `global_max_age`, so
    /// reads need not reach the server that holds it.
    global: RwLock<Option<(Bytes, Instant)>>,
    global_max_age: Duration,
}

impl Tokens {
    /// Bookkeeping for up to `capacity` generations (at least one: the
    /// global generation is read with every entry).
    pub(super) fn new(tracking: bool, ttl: Ttl, global_max_age: Duration, capacity: u64) -> Tokens {
        Tokens {
            tracking,
            ttl,
            global: RwLock::new(None),
            global_max_age,
            known: moka::sync::Cache::builder()
                .max_capacity(capacity.max(1))
                .build(),
        }
    }

    pub(super) fn tracking(&self) -> bool {
        self.tracking
    }

    pub(super) fn ttl(&self) -> Ttl {
        self.ttl
    }

    /// Fails `what` (an invalidation or a flush) on a layer that does not
    /// track generations: the caller must know it did not happen.
    pub(super) fn check_tracking(&self, what: &str) -> Result<()> {
        if self.tracking {
            Ok(())
        } else {
            Err(Error::Validation(format!(
                "{what} needs invalidation tracking, which this layer has off"
            )))
        }
    }

    /// The global generation last seen, while younger than the max age.
    pub(super) fn recent_global(&self) -> Option<Bytes> {
        if self.global_max_age.is_zero() {
            return None;
        }
        let seen = self.global.read().unwrap_or_else(PoisonError::into_inner);
        seen.as_ref()
            .filter(|(_, at)| at.elapsed() < self.global_max_age)
            .map(|(token, _)| token.clone())
    }

    /// Records the global generation as read from the server by a read
    /// that began `at` (or written by this process's flush, finished
    /// `at`). Its age counts from `at`, not from the answer: a read that
    /// began before a flush cannot put the old token back over the
    /// flush's, nor stretch its reuse by its own latency.
    pub(super) fn saw_global(&self, token: &Bytes, at: Instant) {
        if !self.tracking || self.global_max_age.is_zero() {
            return;
        }
        let mut seen = self.global.write().unwrap_or_else(PoisonError::into_inner);
        if seen.as_ref().is_none_or(|(_, seen_at)| *seen_at < at) {
            *seen = Some((token.clone(), at));
        }
    }

    /// Whether an entry made under `global` and `entity` is still current
    /// as far as this process knows: both are the tokens it last saw for
    /// the global generation and for `generation`.
    pub(super) fn vouch_for(&self, generation: &str, global: &[u8], entity: &[u8]) -> bool {
        if !self.tracking {
            return true;
        }
        let known = |key: &str, token: &[u8]| self.known.get(key).is_some_and(|k| k == token);
        known(GLOBAL_GENERATION_KEY, global) && known(generation, entity)
    }

    /// The generation this process knows for `key`, made up (a token of
    /// this process alone) when it knows none: for use cases with a local
    /// layer only.
    pub(super) fn known_or_local(&self, key: &str) -> Bytes {
        if !self.tracking {
            return Bytes::new();
        }
        self.known
            .get_with(key.to_owned(), || new_token(Duration::ZERO))
    }

    /// Records the tokens a read saw for `generation` and the global one.
    pub(super) fn learn(&self, generation: &str, global: &Bytes, entity: &Bytes) {
        if self.tracking {
            self.known
                .insert(GLOBAL_GENERATION_KEY.to_owned(), global.clone());
            self.known.insert(generation.to_owned(), entity.clone());
        }
    }

    /// Forgets what [`learn`](Self::learn) recorded: the next read of the
    /// entity's entries goes to the server.
    pub(super) fn unlearn(&self, generation: &str) {
        self.known.invalidate(GLOBAL_GENERATION_KEY);
        self.known.invalidate(generation);
    }

    /// Records `token` as `key`'s generation, once this process replaced it.
    pub(super) fn know(&self, key: String, token: Bytes) {
        self.known.insert(key, token);
    }

    /// A new token for `key`, stored on every copy the store keeps
    /// (every replica of a replicated cluster), so no reader of any copy
    /// keeps the old one; acknowledged only once all have it.
    pub(super) fn replace<S: CacheStore>(
        &self,
        store: &S,
        key: &str,
        buffer: Duration,
    ) -> Result<Bytes> {
        let token = new_token(buffer);
        store.set_everywhere(key, &token, self.ttl)?;
        Ok(token)
    }

    /// The generation in `current`, or a fresh one stored now when the
    /// server has none; `None` when that fails (the entry is then not
    /// stored).
    pub(super) fn ensure<S: CacheStore>(
        &self,
        store: &S,
        key: &str,
        current: Option<Bytes>,
    ) -> Result<Option<Bytes>> {
        if let Some(token) = current {
            return Ok(Some(token));
        }
        let token = new_token(Duration::ZERO);
        if store.set_if_absent_everywhere(key, &token, self.ttl)? {
            return Ok(Some(token));
        }
        // Another process made it first: use theirs (the newest copy, where
        // two made one at once on different replicas).
        let mut found = store.get_many_latest(&[key], &[true])?;
        found.pop().map(|item| item.result).unwrap_or(Ok(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that began before a flush returns after it: the token it
    /// read must not replace the flush's, nor start a new max age.
    #[test]
    fn a_read_older_than_the_flush_does_not_put_its_token_back() {
        let tokens = Tokens::new(true, Ttl::Never, Duration::from_secs(60), 10);
        let read_began = Instant::now();
        tokens.saw_global(&Bytes::from_static(b"flushed"), Instant::now());
        tokens.saw_global(&Bytes::from_static(b"old"), read_began);
        assert_eq!(tokens.recent_global().as_deref(), Some(&b"flushed"[..]));
        let off = Tokens::new(true, Ttl::Never, Duration::ZERO, 10);
        off.saw_global(&Bytes::from_static(b"any"), Instant::now());
        assert_eq!(off.recent_global(), None, "a max age of zero keeps nothing");
    }
}
