//! The RPC semantics of `cache.CacheService` on top of the [`Store`]: namespace
//! and key validation, per-item error reporting in the Multi* calls, and the
//! proto shapes of every answer.
//!
//! No framing or transport here: the HTTP/2 layer decodes a request, asks for
//! the [`Scope`] of its raw `x-cache-namespace` header value, calls the
//! matching method there, and maps a [`ServiceError`] to a gRPC status.

use std::borrow::Cow;

use crate::proto::cache::{
    CacheItem, CacheKey, CacheLookup, CacheOperationResult, CacheResponse, CacheStats, CacheStatus,
    CacheValue, CompareAndSetRequest, ConditionalCacheResponse, ConditionalCacheStatus,
    MultiCacheItemRequest, MultiCacheKeyRequest, MultiCacheResponse, MultiCacheValueResponse,
};
use crate::rules::{self, RuleViolation, NO_ROOM_TEXT, OVERSIZE_TEXT};
use crate::server::store::{Rejection, Store, StoreConfig, StoreStats};

/// Why an RPC failed as a whole; the HTTP/2 layer maps each variant to the
/// gRPC status code of the same name. The texts are the reference server's
/// own (see [`crate::rules`]), so a
/// program sees the same strings from both servers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// gRPC `INVALID_ARGUMENT`: a bad key or namespace.
    #[error("{0}")]
    InvalidArgument(String),
    /// gRPC `RESOURCE_EXHAUSTED`: a value over the per-entry limit, or an
    /// entry that cannot fit under the store's limits.
    #[error("{0}")]
    ResourceExhausted(String),
    /// gRPC `NOT_FOUND`: the health service was asked about an unknown
    /// service name.
    #[error("{0}")]
    NotFound(String),
}

impl ServiceError {
    /// The human-readable text, as it goes into `grpc-message` or a Multi*
    /// item's `error`.
    #[cfg(test)]
    pub fn message(&self) -> &str {
        match self {
            ServiceError::InvalidArgument(message)
            | ServiceError::ResourceExhausted(message)
            | ServiceError::NotFound(message) => message,
        }
    }

    fn into_message(self) -> String {
        match self {
            ServiceError::InvalidArgument(message)
            | ServiceError::ResourceExhausted(message)
            | ServiceError::NotFound(message) => message,
        }
    }
}

impl From<RuleViolation> for ServiceError {
    fn from(violation: RuleViolation) -> Self {
        ServiceError::InvalidArgument(violation.0)
    }
}

impl From<Rejection> for ServiceError {
    /// The store's numbers stay out of the text: the reference server's
    /// details are fixed strings, and programs may compare them.
    fn from(rejection: Rejection) -> Self {
        ServiceError::ResourceExhausted(
            match rejection {
                Rejection::Oversize { .. } => OVERSIZE_TEXT,
                Rejection::NoRoom { .. } => NO_ROOM_TEXT,
            }
            .to_owned(),
        )
    }
}

/// The namespace from the raw header value, by the contract's rules.
fn namespace_ref(raw: Option<&str>) -> Result<Option<&str>, ServiceError> {
    Ok(raw.map_or(Ok(None), rules::parse_namespace)?)
}

/// The cache service: `Stats`, and the [`Scope`] every other RPC runs in.
/// `Send + Sync`; share one instance between all connections.
#[derive(Debug)]
pub struct CacheService {
    store: Store,
}

impl Default for CacheService {
    /// A service over a store with [`StoreConfig::default`] limits.
    fn default() -> Self {
        Self::new(StoreConfig::default())
    }
}

/// One MultiSet / MultiDelete result: `OK`, or `ERROR` with the text.
fn operation_result(key: String, outcome: Result<(), ServiceError>) -> CacheOperationResult {
    let (status, error) = match outcome {
        Ok(()) => (CacheStatus::Ok, String::new()),
        Err(error) => (CacheStatus::Error, error.into_message()),
    };
    CacheOperationResult {
        key,
        status: status as i32,
        error,
    }
}

fn saturating_i32(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl From<StoreStats> for CacheStats {
    /// The proto's counters are 32-bit; a long-running server must report
    /// `i32::MAX` rather than wrap to a negative count.
    fn from(stats: StoreStats) -> Self {
        CacheStats {
            size: saturating_i32(stats.size),
            hits: saturating_i32(stats.hits),
            misses: saturating_i32(stats.misses),
            evictions: saturating_i32(stats.evictions()),
            hit_rate: stats.hit_rate(),
            memory_usage_bytes: saturating_i64(stats.memory_usage_bytes),
            max_memory_bytes: saturating_i64(stats.max_memory_bytes),
            max_items: saturating_i32(stats.max_items),
            max_value_bytes: saturating_i64(stats.max_value_bytes),
            lru_evictions: saturating_i32(stats.lru_evictions),
            expired_removals: saturating_i32(stats.expired_removals),
            rejected_oversize: saturating_i32(stats.rejected_oversize),
            rejected_capacity: saturating_i32(stats.rejected_capacity),
        }
    }
}

impl CacheService {
    /// A service over an empty store with the given limits.
    pub fn new(config: StoreConfig) -> Self {
        Self {
            store: Store::new(config),
        }
    }

    /// The underlying store, for counters and for tests.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The key space the raw `x-cache-namespace` header value names (the
    /// shared one when absent or blank), in which a request's call runs.
    /// Every call but `Stats` starts here, so a bad namespace fails it
    /// before any of its keys is looked at, Multi* calls as a whole.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad namespace.
    pub fn scope<'s>(&'s self, namespace: Option<&'s str>) -> Result<Scope<'s>, ServiceError> {
        Ok(Scope {
            store: &self.store,
            namespace: namespace_ref(namespace)?,
        })
    }

    /// `Stats`: counters of the whole server; no namespace applies.
    pub fn stats(&self) -> CacheStats {
        self.store.stats().into()
    }
}

/// The RPCs of one request, in its (validated) key space: one method per
/// RPC but `Stats`.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'s> {
    store: &'s Store,
    namespace: Option<&'s str>,
}

impl Scope<'_> {
    /// The storage key for `key` in this key space, validated; in the
    /// shared key space the key is borrowed, not copied.
    fn key<'k>(&self, key: &'k str) -> Result<Cow<'k, str>, ServiceError> {
        rules::check_key(key, self.namespace)?;
        Ok(match self.namespace {
            None => Cow::Borrowed(key),
            Some(_) => Cow::Owned(rules::storage_key(key, self.namespace)),
        })
    }

    /// The storage key for a key the caller owns: in the shared key space
    /// the key is moved, not copied.
    fn owned_key(&self, key: String) -> Result<String, ServiceError> {
        match self.namespace {
            None => {
                rules::check_key(&key, None)?;
                Ok(key)
            }
            Some(_) => self.key(&key).map(Cow::into_owned),
        }
    }

    /// `Get`: `found: false` for a missing or expired key.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad key.
    pub fn get(&self, req: CacheKey) -> Result<CacheValue, ServiceError> {
        let value = self.store.get(&self.key(&req.key)?);
        Ok(CacheValue {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        })
    }

    /// `MultiGet`: one lookup per key, in request order, with the key as
    /// given; a bad key is that item's `error`, a missing key is
    /// `found: false` with no error.
    pub fn multi_get(&self, req: MultiCacheKeyRequest) -> MultiCacheValueResponse {
        let items = req.keys.into_iter().map(|key| {
            let (value, error) = match self.key(&key) {
                Ok(stored) => (self.store.get(&stored), String::new()),
                Err(error) => (None, error.into_message()),
            };
            CacheLookup {
                key,
                found: value.is_some(),
                value: value.unwrap_or_default(),
                error,
            }
        });
        MultiCacheValueResponse {
            items: items.collect(),
        }
    }

    /// `Set`: `status: OK` on success.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad key; `ResourceExhausted` for an entry
    /// over the per-entry limit or that cannot fit.
    pub fn set(&self, req: CacheItem) -> Result<CacheResponse, ServiceError> {
        let key = self.owned_key(req.key)?;
        self.store.set(key, req.value, req.ttl)?;
        Ok(ok())
    }

    /// `SetIfAbsent`: `STORED` when the key was missing or expired, else
    /// `EXISTS`.
    ///
    /// # Errors
    /// As [`Scope::set`]; a size problem is reported only when the write
    /// would have happened.
    pub fn set_if_absent(&self, req: CacheItem) -> Result<ConditionalCacheResponse, ServiceError> {
        let key = self.owned_key(req.key)?;
        conditional(self.store.set_if_absent(key, req.value, req.ttl))
    }

    /// `CompareAndSet`: `NOT_FOUND` when missing or expired, `MISMATCH` when
    /// the live value differs from `expected_value`, `STORED` otherwise.
    ///
    /// # Errors
    /// As [`Scope::set`]; a size problem is reported only when the write
    /// would have happened.
    pub fn compare_and_set(
        &self,
        req: CompareAndSetRequest,
    ) -> Result<ConditionalCacheResponse, ServiceError> {
        let key = self.owned_key(req.key)?;
        let expected = &req.expected_value;
        conditional(
            self.store
                .compare_and_set(key, expected, req.value, req.ttl),
        )
    }

    /// `MultiSet`: one result per item, in request order, with the key as
    /// given; a bad key, an oversize value or no room is that item's
    /// `status: ERROR` plus `error`, and the other items are still written.
    pub fn multi_set(&self, req: MultiCacheItemRequest) -> MultiCacheResponse {
        let items = req.items.into_iter().map(|item| {
            let written = self.key(&item.key).and_then(|stored| {
                Ok(self.store.set(stored.into_owned(), item.value, item.ttl)?)
            });
            operation_result(item.key, written)
        });
        MultiCacheResponse {
            items: items.collect(),
        }
    }

    /// `Delete`: `OK` whether or not the key was there.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad key.
    pub fn delete(&self, req: CacheKey) -> Result<CacheResponse, ServiceError> {
        self.store.delete(&self.key(&req.key)?);
        Ok(ok())
    }

    /// `MultiDelete`: one result per key, in request order, with the key as
    /// given; missing keys are `OK`, a bad key is `status: ERROR` plus
    /// `error`.
    pub fn multi_delete(&self, req: MultiCacheKeyRequest) -> MultiCacheResponse {
        let items = req.keys.into_iter().map(|key| {
            let deleted = self.key(&key).map(|stored| {
                self.store.delete(&stored);
            });
            operation_result(key, deleted)
        });
        MultiCacheResponse {
            items: items.collect(),
        }
    }
}

/// The answer of a `Set` or `Delete` that went through.
fn ok() -> CacheResponse {
    CacheResponse {
        status: CacheStatus::Ok as i32,
    }
}

/// The answer of a conditional write, or its refusal.
fn conditional(
    status: Result<ConditionalCacheStatus, Rejection>,
) -> Result<ConditionalCacheResponse, ServiceError> {
    Ok(ConditionalCacheResponse {
        status: status? as i32,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::*;
    use crate::proto::cache::ConditionalCacheStatus;
    use crate::server::store::ENTRY_OVERHEAD_BYTES;

    fn service() -> CacheService {
        CacheService::default()
    }

    /// The scope of a valid namespace (`None`: the shared key space).
    fn at<'s>(svc: &'s CacheService, namespace: Option<&'s str>) -> Scope<'s> {
        svc.scope(namespace).expect("a valid namespace")
    }

    fn small_service(max_value_bytes: u64) -> CacheService {
        CacheService::new(StoreConfig {
            max_items: 100,
            max_memory_bytes: 1 << 20,
            max_value_bytes,
        })
    }

    fn key(k: &str) -> CacheKey {
        CacheKey { key: k.to_owned() }
    }

    fn keys(ks: &[&str]) -> MultiCacheKeyRequest {
        MultiCacheKeyRequest {
            keys: ks.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    fn item(k: &str, v: &'static [u8], ttl: i32) -> CacheItem {
        CacheItem {
            key: k.to_owned(),
            value: Bytes::from_static(v),
            ttl,
        }
    }

    fn cas(k: &str, expected: &'static [u8], v: &'static [u8]) -> CompareAndSetRequest {
        CompareAndSetRequest {
            key: k.to_owned(),
            expected_value: Bytes::from_static(expected),
            value: Bytes::from_static(v),
            ttl: 0,
        }
    }

    fn invalid<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> bool {
        matches!(result, Err(ServiceError::InvalidArgument(_)))
    }

    fn exhausted<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> bool {
        matches!(result, Err(ServiceError::ResourceExhausted(_)))
    }

    /// Asserts a MultiSet or MultiDelete answer's keys and statuses, in
    /// order, and that an item carries an error text exactly when its status
    /// is `ERROR`.
    fn assert_outcomes(reply: &MultiCacheResponse, expected: &[(&str, i32)]) {
        let got: Vec<_> = reply
            .items
            .iter()
            .map(|i| (i.key.as_str(), i.status))
            .collect();
        assert_eq!(got, expected);
        for item in &reply.items {
            assert_eq!(item.error.is_empty(), item.status == OK, "{item:?}");
        }
    }

    const OK: i32 = CacheStatus::Ok as i32;
    const ERROR: i32 = CacheStatus::Error as i32;

    #[test]
    fn set_then_get_round_trips_the_value() {
        let svc = service();
        let reply = at(&svc, None).set(item("k", b"v", 0)).unwrap();
        assert_eq!(reply.status, OK);
        let value = at(&svc, None).get(key("k")).unwrap();
        assert!(value.found);
        assert_eq!(value.value, Bytes::from_static(b"v"));
    }

    #[test]
    fn get_of_a_missing_key_is_not_found_not_an_error() {
        let value = at(&service(), None).get(key("nope")).unwrap();
        assert!(!value.found);
        assert!(value.value.is_empty());
    }

    #[test]
    fn empty_and_257_character_keys_are_invalid_argument() {
        let svc = service();
        assert!(invalid(at(&svc, None).get(key(""))));
        assert!(invalid(at(&svc, None).set(item("", b"v", 0))));
        assert!(invalid(at(&svc, None).delete(key(""))));
        assert!(invalid(at(&svc, None).get(key(&"k".repeat(257)))));
        assert!(at(&svc, None).set(item(&"k".repeat(256), b"v", 0)).is_ok());
    }

    #[test]
    fn multibyte_key_of_256_characters_is_accepted() {
        let svc = service();
        let k = "ß".repeat(256);
        at(&svc, None).set(item(&k, b"v", 0)).unwrap();
        assert!(at(&svc, None).get(key(&k)).unwrap().found);
        assert!(invalid(at(&svc, None).get(key(&"ß".repeat(257)))));
    }

    #[test]
    fn key_valid_alone_is_invalid_argument_once_namespaced() {
        let svc = service();
        let k = "k".repeat(251);
        assert!(at(&svc, None).set(item(&k, b"v", 0)).is_ok());
        let app = at(&svc, Some("app"));
        assert!(invalid(app.set(item(&k, b"v", 0))));
        assert!(app.set(item(&"k".repeat(250), b"v", 0)).is_ok());
    }

    #[test]
    fn namespace_is_checked_before_the_key() {
        let err = service().scope(Some("-bad")).unwrap_err();
        assert_eq!(
            err.message(),
            "Namespace must contain only letters, numbers, dots, dashes, or underscores"
        );
    }

    #[test]
    fn keys_in_different_namespaces_never_see_each_other() {
        let svc = service();
        at(&svc, Some("a")).set(item("k", b"in a", 0)).unwrap();
        at(&svc, Some("b")).set(item("k", b"in b", 0)).unwrap();
        at(&svc, None).set(item("k", b"shared", 0)).unwrap();
        assert_eq!(
            at(&svc, Some("a")).get(key("k")).unwrap().value,
            &b"in a"[..]
        );
        assert_eq!(
            at(&svc, Some("b")).get(key("k")).unwrap().value,
            &b"in b"[..]
        );
        assert_eq!(at(&svc, None).get(key("k")).unwrap().value, &b"shared"[..]);
        at(&svc, Some("a")).delete(key("k")).unwrap();
        assert!(!at(&svc, Some("a")).get(key("k")).unwrap().found);
        assert!(at(&svc, Some("b")).get(key("k")).unwrap().found);
    }

    #[test]
    fn shared_key_space_can_name_a_namespaced_storage_key_like_the_reference_server() {
        // The storage key scheme is the reference server's and is part of
        // the contract, so a shared-space key spelled like a storage key
        // reaches the namespaced entry there too.
        let svc = service();
        at(&svc, Some("b")).set(item("k", b"in b", 0)).unwrap();
        assert_eq!(
            at(&svc, None).get(key("1:b:k")).unwrap().value,
            &b"in b"[..]
        );
    }

    #[test]
    fn blank_or_padded_namespace_header_is_trimmed() {
        let svc = service();
        at(&svc, Some("  app  ")).set(item("k", b"v", 0)).unwrap();
        assert!(at(&svc, Some("app")).get(key("k")).unwrap().found);
        at(&svc, Some("   ")).set(item("s", b"v", 0)).unwrap();
        assert!(at(&svc, None).get(key("s")).unwrap().found);
        assert!(at(&svc, Some("")).get(key("s")).unwrap().found);
    }

    #[test]
    fn invalid_namespaces_are_invalid_argument() {
        let svc = service();
        // Every call but Stats runs in a scope, so a bad namespace fails
        // it, a Multi* call as a whole.
        for bad in ["_x", "a b", "a:b", "-x", "!", &"n".repeat(65)] {
            assert!(invalid(svc.scope(Some(bad))), "{bad}");
        }
        assert!(at(&svc, Some(&"n".repeat(64))).get(key("k")).is_ok());
    }

    #[test]
    fn oversize_value_is_resource_exhausted() {
        let svc = small_service(1024);
        let fits = CacheItem {
            key: "k".into(),
            value: Bytes::from(vec![0u8; 991]),
            ttl: 0,
        };
        let too_big = CacheItem {
            key: "k".into(),
            value: Bytes::from(vec![0u8; 992]),
            ttl: 0,
        };
        assert!(at(&svc, None).set(fits).is_ok());
        assert!(exhausted(at(&svc, None).set(too_big)));
        assert_eq!(svc.stats().rejected_oversize, 1);
    }

    #[test]
    fn delete_is_ok_for_present_and_missing_keys() {
        let svc = service();
        at(&svc, None).set(item("k", b"v", 0)).unwrap();
        assert_eq!(at(&svc, None).delete(key("k")).unwrap().status, OK);
        assert_eq!(at(&svc, None).delete(key("k")).unwrap().status, OK);
        assert!(!at(&svc, None).get(key("k")).unwrap().found);
    }

    #[test]
    fn set_if_absent_answers_stored_then_exists() {
        let svc = service();
        let first = at(&svc, Some("ns"))
            .set_if_absent(item("k", b"1", 0))
            .unwrap();
        assert_eq!(first.status, ConditionalCacheStatus::Stored as i32);
        let second = at(&svc, Some("ns"))
            .set_if_absent(item("k", b"2", 0))
            .unwrap();
        assert_eq!(second.status, ConditionalCacheStatus::Exists as i32);
        assert_eq!(at(&svc, Some("ns")).get(key("k")).unwrap().value, &b"1"[..]);
        // Same key, other namespace: absent there.
        let other = at(&svc, Some("other"))
            .set_if_absent(item("k", b"3", 0))
            .unwrap();
        assert_eq!(other.status, ConditionalCacheStatus::Stored as i32);
    }

    #[test]
    fn an_expired_entry_is_not_found_and_absent_for_set_if_absent() {
        let svc = service();
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        // "3:app:k" is the storage key of "k" in the namespace "app".
        for stored in ["k", "3:app:k"] {
            let old = Bytes::from_static(b"old");
            svc.store().set_at(stored.into(), old, 1, t0).unwrap();
        }
        assert!(svc.store().get_at("k", later).is_none());
        assert!(!at(&svc, None).get(key("k")).unwrap().found);
        let new = Bytes::from_static(b"new");
        let put = svc
            .store()
            .set_if_absent_at("3:app:k".into(), new, 0, later);
        assert_eq!(put, Ok(ConditionalCacheStatus::Stored));
        assert_eq!(
            at(&svc, Some("app")).get(key("k")).unwrap().value,
            &b"new"[..]
        );
    }

    #[test]
    fn compare_and_set_answers_not_found_mismatch_and_stored() {
        let svc = service();
        let status = |r: Result<ConditionalCacheResponse, ServiceError>| r.unwrap().status;
        assert_eq!(
            status(at(&svc, None).compare_and_set(cas("k", b"a", b"b"))),
            ConditionalCacheStatus::NotFound as i32
        );
        at(&svc, None).set(item("k", b"a", 0)).unwrap();
        assert_eq!(
            status(at(&svc, None).compare_and_set(cas("k", b"x", b"b"))),
            ConditionalCacheStatus::Mismatch as i32
        );
        assert_eq!(
            status(at(&svc, None).compare_and_set(cas("k", b"a", b"b"))),
            ConditionalCacheStatus::Stored as i32
        );
        assert_eq!(at(&svc, None).get(key("k")).unwrap().value, &b"b"[..]);
    }

    #[test]
    fn conditional_writes_validate_the_key() {
        let svc = service();
        assert!(invalid(at(&svc, None).compare_and_set(cas("", b"", b""))));
        assert!(invalid(at(&svc, None).set_if_absent(item("", b"", 0))));
    }

    #[test]
    fn multi_get_answers_in_request_order_with_keys_as_given() {
        let svc = service();
        at(&svc, Some("app")).set(item("a", b"1", 0)).unwrap();
        at(&svc, Some("app")).set(item("c", b"3", 0)).unwrap();
        let long = "k".repeat(257);
        let reply = at(&svc, Some("app")).multi_get(keys(&["c", "missing", "", "a", &long, "c"]));
        let got: Vec<_> = reply
            .items
            .iter()
            .map(|i| (i.key.as_str(), i.found, &i.value[..], i.error.is_empty()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("c", true, &b"3"[..], true),
                ("missing", false, &b""[..], true),
                ("", false, &b""[..], false),
                ("a", true, &b"1"[..], true),
                (long.as_str(), false, &b""[..], false),
                ("c", true, &b"3"[..], true),
            ]
        );
    }

    #[test]
    fn multi_get_reports_a_key_too_long_once_namespaced_as_an_item_error() {
        let svc = service();
        let k = "k".repeat(251);
        let reply = at(&svc, Some("app")).multi_get(keys(&[&k]));
        assert!(!reply.items[0].found);
        assert!(!reply.items[0].error.is_empty());
    }

    #[test]
    fn multi_set_reports_per_item_errors_and_writes_the_rest() {
        let svc = small_service(40);
        let req = MultiCacheItemRequest {
            items: vec![
                item("a", b"1", 0),
                item("", b"2", 0),
                item("big", b"this value is too big", 0),
                item("b", b"3", 0),
            ],
        };
        let reply = at(&svc, Some("ns")).multi_set(req);
        assert_outcomes(&reply, &[("a", OK), ("", ERROR), ("big", ERROR), ("b", OK)]);
        assert!(at(&svc, Some("ns")).get(key("a")).unwrap().found);
        assert!(at(&svc, Some("ns")).get(key("b")).unwrap().found);
        assert!(!at(&svc, Some("ns")).get(key("big")).unwrap().found);
        assert_eq!(svc.stats().rejected_oversize, 1);
    }

    #[test]
    fn multi_set_reports_no_room_as_an_item_error() {
        let svc = CacheService::new(StoreConfig {
            max_items: 10,
            max_memory_bytes: 40,
            max_value_bytes: 1000,
        });
        let req = MultiCacheItemRequest {
            items: vec![item("a", b"1", 0), item("b", b"this does not fit", 0)],
        };
        let reply = at(&svc, None).multi_set(req);
        assert_outcomes(&reply, &[("a", OK), ("b", ERROR)]);
        assert_eq!(svc.stats().rejected_capacity, 1);
    }

    #[test]
    fn multi_delete_reports_missing_keys_as_ok_and_bad_keys_as_errors() {
        let svc = service();
        at(&svc, None).set(item("a", b"1", 0)).unwrap();
        let reply = at(&svc, None).multi_delete(keys(&["a", "missing", "", "a"]));
        assert_outcomes(
            &reply,
            &[("a", OK), ("missing", OK), ("", ERROR), ("a", OK)],
        );
        assert!(!at(&svc, None).get(key("a")).unwrap().found);
    }

    #[test]
    fn stats_count_hits_misses_and_hit_rate_across_namespaces() {
        let svc = service();
        let empty = svc.stats();
        assert_eq!(empty.hit_rate, 0.0);
        assert_eq!(empty.size, 0);
        at(&svc, Some("a")).set(item("k", b"v", 0)).unwrap();
        at(&svc, None).set(item("k", b"v", 0)).unwrap();
        at(&svc, Some("a")).get(key("k")).unwrap();
        at(&svc, None).get(key("k")).unwrap();
        at(&svc, None).get(key("x")).unwrap();
        at(&svc, None).multi_get(keys(&["k", "y"]));
        let stats = svc.stats();
        assert_eq!(stats.size, 2);
        assert_eq!(stats.hits, 3);
        assert_eq!(stats.misses, 2);
        assert_eq!(stats.hit_rate, 0.6);
        assert_eq!(
            stats.memory_usage_bytes,
            2 * (1 + ENTRY_OVERHEAD_BYTES as i64)
        );
        let config = StoreConfig::default();
        assert_eq!(stats.max_items, config.max_items as i32);
        assert_eq!(stats.max_memory_bytes, config.max_memory_bytes as i64);
        assert_eq!(stats.max_value_bytes, config.max_value_bytes as i64);
    }

    #[test]
    fn stats_evictions_sum_lru_evictions_and_expired_removals() {
        let svc = CacheService::new(StoreConfig {
            max_items: 1,
            max_memory_bytes: 1 << 20,
            max_value_bytes: 1 << 20,
        });
        let t0 = Instant::now();
        svc.store().set_at("a".into(), Bytes::new(), 0, t0).unwrap();
        svc.store().set_at("b".into(), Bytes::new(), 1, t0).unwrap(); // evicts a
        svc.store().get_at("b", t0 + Duration::from_secs(1)); // expires b
        let stats = svc.stats();
        let evictions = (stats.lru_evictions, stats.expired_removals, stats.evictions);
        assert_eq!(evictions, (1, 1, 2));
    }

    #[test]
    fn stats_counters_saturate_at_i32_max() {
        let stats = CacheStats::from(StoreStats {
            hits: u64::from(u32::MAX),
            lru_evictions: i32::MAX as u64,
            expired_removals: 5,
            max_memory_bytes: u64::MAX,
            ..StoreStats::default()
        });
        assert_eq!(stats.hits, i32::MAX);
        assert_eq!(stats.evictions, i32::MAX);
        assert_eq!(stats.lru_evictions, i32::MAX);
        assert_eq!(stats.max_memory_bytes, i64::MAX);
        assert_eq!(stats.hit_rate, 1.0);
    }

    #[test]
    fn service_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CacheService>();
    }

    #[test]
    fn errors_display_their_message() {
        let err = at(&service(), None).get(key("")).unwrap_err();
        assert_eq!(err.to_string(), "Key cannot be empty");
        assert_eq!(err.message(), err.to_string());
    }

    #[test]
    fn size_refusals_carry_the_reference_texts_single_and_per_item() {
        let svc = CacheService::new(StoreConfig {
            max_items: 10,
            max_memory_bytes: 100,
            max_value_bytes: 60,
        });
        let big = |k: &str| CacheItem {
            key: k.into(),
            value: Bytes::from(vec![0u8; 30]), // 63 bytes charged
            ttl: 0,
        };
        let oversize = ServiceError::ResourceExhausted(OVERSIZE_TEXT.into());
        assert_eq!(at(&svc, None).set(big("k")), Err(oversize.clone()));
        assert_eq!(at(&svc, None).set_if_absent(big("k")), Err(oversize));
        let reply = at(&svc, None).multi_set(MultiCacheItemRequest {
            items: vec![big("k")],
        });
        assert_eq!(reply.items[0].error, OVERSIZE_TEXT);

        let no_room = CacheService::new(StoreConfig {
            max_items: 0,
            ..StoreConfig::default()
        });
        assert_eq!(
            at(&no_room, None).set(item("k", b"v", 0)),
            Err(ServiceError::ResourceExhausted(NO_ROOM_TEXT.into()))
        );
    }
}
