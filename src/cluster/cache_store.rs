//! [`Cluster`] as a [`CacheStore`]: with this, a program, a tool or any
//! caching layer takes a cluster wherever it takes a `Client`.

use bytes::Bytes;

use super::Cluster;
use crate::{CacheStore, CasOutcome, ItemResult, Result, Ttl};

/// A [`Cluster`] as a [`CacheStore`]: the same placement, replicas and
/// failure handling as its own methods.
///
/// ```
/// # #[cfg(all(feature = "server", feature = "cache"))] {
/// use std::time::Duration;
/// use tiny_cache_client::cache::ReadThrough;
/// use tiny_cache_client::cluster::Cluster;
/// use tiny_cache_client::server::Server;
///
/// let (a, b) = (Server::local()?, Server::local()?);
/// let cluster = Cluster::builder().server(&a.address()).server(&b.address()).build()?;
/// let cache = ReadThrough::new(cluster);
/// let value = cache.get_with("k", Duration::from_secs(5), || "computed")?;
/// assert_eq!(&value[..], b"computed");
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl CacheStore for Cluster {
    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Cluster::get(self, key)
    }

    fn set_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<()> {
        Cluster::set_with_ttl(self, key, value, ttl)
    }

    fn delete(&self, key: &str) -> Result<()> {
        Cluster::delete(self, key)
    }

    fn default_ttl(&self) -> Ttl {
        Cluster::default_ttl(self)
    }

    fn get_many(&self, keys: &[&str]) -> Result<Vec<ItemResult<Option<Bytes>>>> {
        Cluster::get_many(self, keys)
    }

    fn set_many_with_ttl(&self, items: &[(&str, &[u8])], ttl: Ttl) -> Result<Vec<ItemResult<()>>> {
        Cluster::set_many_with_ttl(self, items.iter().copied(), ttl)
    }

    fn delete_many(&self, keys: &[&str]) -> Result<Vec<ItemResult<()>>> {
        Cluster::delete_many(self, keys)
    }

    /// The key's server's own `SetIfAbsent` (one replica only, as
    /// [`Cluster::set_if_absent_with_ttl`]).
    fn set_if_absent_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<bool> {
        Cluster::set_if_absent_with_ttl(self, key, value, ttl)
    }

    /// Stored on every replica that lacks the key, each atomically; `true`
    /// only when all of them stored it (with one replica: the key's
    /// server's own `SetIfAbsent`).
    fn set_if_absent_everywhere(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<bool> {
        self.shared()
            .set_if_absent_everywhere(key, value, ttl, self.timeout)
    }

    /// The key's server's own `CompareAndSet` (one replica only, as
    /// [`Cluster::compare_and_set_with_ttl`]).
    fn compare_and_set_with_ttl(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Ttl,
    ) -> Result<CasOutcome> {
        Cluster::compare_and_set_with_ttl(self, key, expected, value, ttl)
    }

    fn touch(&self, key: &str, ttl: Ttl) -> Result<bool> {
        Cluster::touch(self, key, ttl)
    }

    /// The keys flagged `latest` are read from every replica, newest wins.
    fn get_many_latest(
        &self,
        keys: &[&str],
        latest: &[bool],
    ) -> Result<Vec<ItemResult<Option<Bytes>>>> {
        let outcomes = self.shared().read(keys, Some(latest), self.timeout);
        Ok(keys
            .iter()
            .zip(outcomes)
            .map(|(key, outcome)| ItemResult::new(key, outcome))
            .collect())
    }

    /// Written to every replica; fails unless each stored it.
    fn set_everywhere(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<()> {
        ttl.wire_seconds()?;
        let values = [self
            .shared()
            .encode(value, ttl, std::time::SystemTime::now())];
        let op = super::Op::Set {
            values: values.into(),
            ttl,
        };
        let everywhere = self.shared().write_with(
            &[key],
            &op,
            super::policy::ResponsePolicy::AllStored,
            self.timeout,
        );
        everywhere.into_iter().next().unwrap_or(Ok(()))
    }
}
