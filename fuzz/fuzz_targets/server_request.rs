//! The embedded server's request handling: any request body for any method,
//! under any namespace header, is answered or refused with a status; the
//! store's accounting never goes wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tiny_cache_client::proto::cache::{
    CacheItem, CacheKey, CompareAndSetRequest, MultiCacheItemRequest, MultiCacheKeyRequest,
};
use tiny_cache_client::server::{CacheService, StoreConfig};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let (namespace, body) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (std::str::from_utf8(&rest[..at]).ok(), &rest[at + 1..]),
        None => (None, rest),
    };
    let service = CacheService::new(StoreConfig {
        max_items: 8,
        max_memory_bytes: 4096,
        max_value_bytes: 1024,
    });
    // Several calls against one store, so state carries between them.
    for (i, piece) in body.chunks(64.max(body.len() / 4 + 1)).enumerate() {
        match (usize::from(selector) + i) % 8 {
            0 => drop(CacheKey::decode(piece).map(|r| service.get(namespace, r))),
            1 => drop(MultiCacheKeyRequest::decode(piece).map(|r| service.multi_get(namespace, r))),
            2 => drop(CacheItem::decode(piece).map(|r| service.set(namespace, r))),
            3 => drop(CacheItem::decode(piece).map(|r| service.set_if_absent(namespace, r))),
            4 => drop(CompareAndSetRequest::decode(piece).map(|r| service.compare_and_set(namespace, r))),
            5 => drop(MultiCacheItemRequest::decode(piece).map(|r| service.multi_set(namespace, r))),
            6 => drop(CacheKey::decode(piece).map(|r| service.delete(namespace, r))),
            _ => drop(MultiCacheKeyRequest::decode(piece).map(|r| service.multi_delete(namespace, r))),
        }
    }
    let stats = service.stats();
    assert!(stats.size as usize <= 8);
    assert!(stats.memory_usage_bytes <= 4096);
});
