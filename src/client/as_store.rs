//! [`Client`] as a [`CacheStore`]: each operation is the client's own RPC
//! (`MultiGet` for `get_many`, the server's atomic `SetIfAbsent` and
//! `CompareAndSet`), with the client's default TTL.

use bytes::Bytes;

use super::handle::Client;
use crate::{CacheStore, CasOutcome, ItemResult, Result, Ttl};

impl CacheStore for Client {
    fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Client::get(self, key)
    }

    fn set_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<()> {
        Client::set_with_ttl(self, key, value, ttl)
    }

    fn delete(&self, key: &str) -> Result<()> {
        Client::delete(self, key)
    }

    fn default_ttl(&self) -> Ttl {
        Client::default_ttl(self)
    }

    fn get_many(&self, keys: &[&str]) -> Result<Vec<ItemResult<Option<Bytes>>>> {
        Client::get_many(self, keys)
    }

    fn set_many_with_ttl(&self, items: &[(&str, &[u8])], ttl: Ttl) -> Result<Vec<ItemResult<()>>> {
        Client::set_many_with_ttl(self, items.iter().copied(), ttl)
    }

    fn delete_many(&self, keys: &[&str]) -> Result<Vec<ItemResult<()>>> {
        Client::delete_many(self, keys)
    }

    fn set_if_absent_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> Result<bool> {
        Client::set_if_absent_with_ttl(self, key, value, ttl)
    }

    fn compare_and_set_with_ttl(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Ttl,
    ) -> Result<CasOutcome> {
        Client::compare_and_set_with_ttl(self, key, expected, value, ttl)
    }

    fn touch(&self, key: &str, ttl: Ttl) -> Result<bool> {
        Client::touch(self, key, ttl)
    }
}
