//! The read-through layer's store over many servers: with this, every
//! caching layer of `crate::cache` works over a [`Cluster`] unchanged.

use bytes::Bytes;

use super::Cluster;
use crate::cache::CacheStore;
use crate::{Result, Ttl};

/// A [`Cluster`] as a [`CacheStore`]: the same placement, replicas and
/// failure handling as its own methods.
///
/// ```
/// # #[cfg(feature = "server")] {
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

    fn set(&self, key: &str, value: Bytes, ttl: Ttl) -> Result<()> {
        Cluster::set_with_ttl(self, key, value, ttl)
    }

    fn delete(&self, key: &str) -> Result<()> {
        Cluster::delete(self, key)
    }

    fn get_many(&self, keys: &[&str]) -> Result<Vec<Result<Option<Bytes>>>> {
        // The typed error of each key, not `get_many`'s text: a layer's
        // fail-open must tell a server outage from a refused key.
        Ok(self.shared().read(keys, None))
    }

    /// Stored on every replica that lacks the key, each atomically; `true`
    /// only when all of them stored it (with one replica: the server's
    /// own `SetIfAbsent`). When some replicas had another value, the
    /// caller reads the newest with [`get_many_latest`](CacheStore::get_many_latest).
    fn set_if_absent(&self, key: &str, value: Bytes, ttl: Ttl) -> Result<bool> {
        self.shared().set_if_absent_everywhere(key, &value, ttl)
    }

    /// The keys flagged `latest` are read from every replica, newest wins.
    fn get_many_latest(
        &self,
        keys: &[&str],
        latest: &[bool],
    ) -> Result<Vec<Result<Option<Bytes>>>> {
        Ok(self.shared().read(keys, Some(latest)))
    }

    /// Written to every replica; fails unless each stored it.
    fn set_everywhere(&self, key: &str, value: Bytes, ttl: Ttl) -> Result<()> {
        ttl.wire_seconds()?;
        let values = [self
            .shared()
            .encode(&value, ttl, std::time::SystemTime::now())];
        let op = super::Op::Set {
            values: values.into(),
            ttl,
        };
        let everywhere = self.shared().write_with(&[key], &op, true);
        everywhere.into_iter().next().unwrap_or(Ok(()))
    }
}
