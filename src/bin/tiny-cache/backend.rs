//! What the data commands and `bench` talk to: one server's [`Client`], or
//! a [`Cluster`] when `--server` is given several times (or `--replicas`
//! asks for copies).

use bytes::Bytes;
use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::{CasOutcome, Client, Error, ItemResult, Ttl};

/// One server or many, with the calls the tool makes.
#[derive(Clone, Copy)]
pub enum Backend<'a> {
    One(&'a Client),
    Many(&'a Cluster),
}

impl Backend<'_> {
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        match self {
            Backend::One(client) => client.get(key),
            Backend::Many(cluster) => cluster.get(key),
        }
    }

    pub fn set_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<(), Error> {
        match self {
            Backend::One(client) => client.set_with_ttl(key, value, ttl),
            Backend::Many(cluster) => cluster.set_with_ttl(key, value, ttl),
        }
    }

    pub fn set_if_absent_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<bool, Error> {
        match self {
            Backend::One(client) => client.set_if_absent_with_ttl(key, value, ttl),
            Backend::Many(cluster) => cluster.set_if_absent_with_ttl(key, value, ttl),
        }
    }

    pub fn compare_and_set_with_ttl(
        &self,
        key: &str,
        expected: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Ttl,
    ) -> Result<CasOutcome, Error> {
        match self {
            Backend::One(client) => client.compare_and_set_with_ttl(key, expected, value, ttl),
            Backend::Many(cluster) => cluster.compare_and_set_with_ttl(key, expected, value, ttl),
        }
    }

    pub fn touch(&self, key: &str, ttl: Ttl) -> Result<bool, Error> {
        match self {
            Backend::One(client) => client.touch(key, ttl),
            Backend::Many(cluster) => cluster.touch(key, ttl),
        }
    }

    pub fn delete(&self, key: &str) -> Result<(), Error> {
        match self {
            Backend::One(client) => client.delete(key),
            Backend::Many(cluster) => cluster.delete(key),
        }
    }

    pub fn get_many(&self, keys: &[String]) -> Result<Vec<ItemResult<Option<Bytes>>>, Error> {
        match self {
            Backend::One(client) => client.get_many(keys),
            Backend::Many(cluster) => cluster.get_many(keys),
        }
    }

    pub fn set_many_with_ttl<'a>(
        &self,
        items: impl Iterator<Item = (&'a str, &'a [u8])>,
        ttl: Ttl,
    ) -> Result<Vec<ItemResult<()>>, Error> {
        match self {
            Backend::One(client) => client.set_many_with_ttl(items, ttl),
            Backend::Many(cluster) => cluster.set_many_with_ttl(items, ttl),
        }
    }

    pub fn delete_many(&self, keys: &[String]) -> Result<Vec<ItemResult<()>>, Error> {
        match self {
            Backend::One(client) => client.delete_many(keys),
            Backend::Many(cluster) => cluster.delete_many(keys),
        }
    }
}
