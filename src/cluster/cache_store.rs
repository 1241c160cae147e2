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

use super::policy::ResponsePolicy;
use super::Cluster;

crate::store::store_from_inherent!(Cluster, {
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
