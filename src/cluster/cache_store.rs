//! [`Cluster`] as a [`CacheStore`](crate::CacheStore): with this, a
//! program, a tool or any caching layer takes a cluster wherever it takes a
//! `Client`, with the same placement, replicas and failure handling as the
//! cluster's own methods (which the trait's call: `set_if_absent` and
//! `compare_and_set` on the key's server, one replica only). The
//! replica-aware operations reach every copy.
//!
//! ```
//! # #[cfg(all(feature = "server", feature = "cache"))] {
//! use std::time::Duration;
//! use tiny_cache_client::cache::ReadThrough;
//! use tiny_cache_client::cluster::Cluster;
//! use tiny_cache_client::server::Server;
//!
//! let (a, b) = (Server::local()?, Server::local()?);
//! let cluster = Cluster::builder().server(&a.address()).server(&b.address()).build()?;
//! let cache = ReadThrough::new(cluster);
//! let value = cache.get_with("k", Duration::from_secs(5), || "computed")?;
//! assert_eq!(&value[..], b"computed");
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, Instant};

use super::policy::ResponsePolicy;
use super::Cluster;
use crate::pipeline::{Op, Outcome, Started};
use crate::{Error, Result, Ttl};

crate::store::store_from_inherent!(Cluster, {
    /// The operations go out grouped by kind: every get in one fan-out
    /// (each server's keys in one `MultiGet`), then every write, then
    /// every delete, then the conditional writes one by one, all within
    /// one deadline. The outcomes are all in when this returns.
    fn start_pipeline(&self, ops: Vec<Op>, timeout: Option<Duration>) -> Started<'_> {
        let timeout = timeout.map_or(self.timeout, |t| t.min(crate::client::config::MAX_TIMEOUT));
        Started::finished(self.run_grouped(&ops, timeout))
    }

    /// Stored on every replica that lacks the key, each atomically; `true`
    /// only when all of them stored it (with one replica: the key's
    /// server's own `SetIfAbsent`).
    fn set_if_absent_everywhere(
        &self,
        key: &str,
        value: &[u8],
        ttl: crate::Ttl,
    ) -> crate::Result<bool> {
        self.shared()
            .set_if_absent_everywhere(key, value, ttl, self.timeout)
    }

    /// The keys flagged `latest` are read from every replica, newest wins.
    fn get_many_latest(
        &self,
        keys: &[&str],
        latest: &[bool],
    ) -> crate::Result<Vec<crate::ItemResult<Option<bytes::Bytes>>>> {
        let outcomes = self.shared().read(keys, Some(latest), self.timeout);
        Ok(super::engine::per_item(keys, outcomes))
    }

    /// With one replica a key's server decides; with several, none does.
    fn conditional_writes(&self) -> bool {
        self.shared().settings.replicas == 1
    }

    /// Written to every replica; fails unless each stored it.
    fn set_everywhere(&self, key: &str, value: &[u8], ttl: crate::Ttl) -> crate::Result<()> {
        ttl.wire_seconds()?;
        let values = [self
            .shared()
            .encode(value, ttl, std::time::SystemTime::now())];
        let op = super::Op::Set {
            values: values.into(),
            ttl,
        };
        let everywhere =
            self.shared()
                .write_with(&[key], &op, ResponsePolicy::AllStored, self.timeout);
        everywhere.into_iter().next().unwrap_or(Ok(()))
    }
});

impl Cluster {
    /// A pipeline's operations, grouped by kind; see `start_pipeline`.
    fn run_grouped(&self, ops: &[Op], timeout: Duration) -> Vec<Result<Outcome>> {
        let deadline = Instant::now() + timeout;
        let within = || {
            let left = deadline.saturating_duration_since(Instant::now());
            self.with_timeout(left).map_err(|_| {
                Error::deadline(timeout, "the pipeline's deadline passed before this part")
            })
        };
        let mut out: Vec<Option<Result<Outcome>>> = ops.iter().map(|_| None).collect();
        let default_ttl = self.default_ttl();
        let at_of = |wanted: fn(&Op) -> bool| -> Vec<usize> {
            (0..ops.len()).filter(|&at| wanted(&ops[at])).collect()
        };

        let gets = at_of(|op| matches!(op, Op::Get { .. }));
        if !gets.is_empty() {
            let keys: Vec<&str> = gets.iter().map(|&at| ops[at].key()).collect();
            let read = within().and_then(|cluster| cluster.get_many(&keys));
            fill(&mut out, &gets, read, |item| item.map(Outcome::Value));
        }

        // Writes, one batch per TTL.
        let mut sets = at_of(|op| matches!(op, Op::Set { .. }));
        while !sets.is_empty() {
            let ttl_of = |at: usize| ops[at].ttl_or(default_ttl);
            let ttl: Ttl = ttl_of(sets[0]);
            let (batch, rest): (Vec<usize>, Vec<usize>) =
                sets.iter().partition(|&&at| ttl_of(at) == ttl);
            let items: Vec<(&str, &[u8])> = batch
                .iter()
                .filter_map(|&at| match &ops[at] {
                    Op::Set { key, value, .. } => Some((key.as_str(), &value[..])),
                    _ => None,
                })
                .collect();
            let written = within().and_then(|cluster| cluster.set_many_with_ttl(items, ttl));
            fill(&mut out, &batch, written, |item| {
                item.map(|()| Outcome::Stored)
            });
            sets = rest;
        }

        let deletes = at_of(|op| matches!(op, Op::Delete { .. }));
        if !deletes.is_empty() {
            let keys: Vec<&str> = deletes.iter().map(|&at| ops[at].key()).collect();
            let deleted = within().and_then(|cluster| cluster.delete_many(&keys));
            fill(&mut out, &deletes, deleted, |item| {
                item.map(|()| Outcome::Deleted)
            });
        }

        for (at, op) in ops.iter().enumerate() {
            if matches!(op, Op::SetIfAbsent { .. } | Op::CompareAndSet { .. }) {
                out[at] = Some(within().and_then(|cluster| op.run_on(&cluster)));
            }
        }
        out.into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    Err(Error::Validation("a pipeline operation was not run".into()))
                })
            })
            .collect()
    }
}

/// Puts a batch call's per-item results (or its one failure, for each
/// item) at the operations' places.
fn fill<T>(
    out: &mut [Option<Result<Outcome>>],
    places: &[usize],
    batch: Result<Vec<crate::ItemResult<T>>>,
    outcome: impl Fn(Result<T>) -> Result<Outcome>,
) {
    match batch {
        Ok(items) => {
            for (&at, item) in places.iter().zip(items) {
                out[at] = Some(outcome(item.result));
            }
        }
        Err(error) => {
            for &at in places {
                out[at] = Some(Err(error.clone()));
            }
        }
    }
}
