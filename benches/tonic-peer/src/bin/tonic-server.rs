//! `tonic-server`: the cache service on tonic, the yardstick for the
//! embedded server under h2load.
//!
//! A plain `HashMap` behind a `Mutex` (no LRU, no TTL: entries live until
//! overwritten or deleted), served by tonic's default `Server` on a tokio
//! multi-thread runtime with `--workers` worker threads (1 by default, like
//! `tiny-cache serve`). Prints its bound address on one stdout line, then
//! serves until killed.
//!
//! Usage: `tonic-server [--listen 127.0.0.1:0] [--workers 1]`

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

use prost::bytes::Bytes;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_peer::proto::cache_service_server::{CacheService, CacheServiceServer};
use tonic_peer::proto::{
    CacheItem, CacheKey, CacheLookup, CacheOperationResult, CacheResponse, CacheStats, CacheStatus,
    CacheValue, CompareAndSetRequest, ConditionalCacheResponse, ConditionalCacheStatus, Empty,
    MultiCacheItemRequest, MultiCacheKeyRequest, MultiCacheResponse, MultiCacheValueResponse,
};
use tonic_peer::{fail, Options};

/// Longest key the service accepts, in characters (as `cache.proto` says).
const MAX_KEY_CHARS: usize = 256;

#[derive(Default)]
struct Cache {
    entries: Mutex<HashMap<String, Bytes>>,
    hits: AtomicI32,
    misses: AtomicI32,
}

fn check_key(key: &str) -> Result<(), Status> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_KEY_CHARS {
        Err(Status::invalid_argument("key must be 1 to 256 characters"))
    } else {
        Ok(())
    }
}

impl Cache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bytes>> {
        // A panic while holding the lock cannot leave the map half-written.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lookup(&self, key: &str) -> Option<Bytes> {
        let found = self.entries().get(key).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }
}

fn ok() -> i32 {
    CacheStatus::Ok as i32
}

#[tonic::async_trait]
impl CacheService for Cache {
    async fn get(&self, request: Request<CacheKey>) -> Result<Response<CacheValue>, Status> {
        let key = request.into_inner().key;
        check_key(&key)?;
        let value = self.lookup(&key);
        Ok(Response::new(CacheValue {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        }))
    }

    async fn multi_get(
        &self,
        request: Request<MultiCacheKeyRequest>,
    ) -> Result<Response<MultiCacheValueResponse>, Status> {
        let items = request
            .into_inner()
            .keys
            .into_iter()
            .map(|key| match check_key(&key) {
                Err(status) => CacheLookup {
                    key,
                    error: status.message().to_owned(),
                    ..CacheLookup::default()
                },
                Ok(()) => {
                    let value = self.lookup(&key);
                    CacheLookup {
                        key,
                        found: value.is_some(),
                        value: value.unwrap_or_default(),
                        error: String::new(),
                    }
                }
            })
            .collect();
        Ok(Response::new(MultiCacheValueResponse { items }))
    }

    async fn set(&self, request: Request<CacheItem>) -> Result<Response<CacheResponse>, Status> {
        let item = request.into_inner();
        check_key(&item.key)?;
        self.entries().insert(item.key, item.value);
        Ok(Response::new(CacheResponse { status: ok() }))
    }

    async fn set_if_absent(
        &self,
        request: Request<CacheItem>,
    ) -> Result<Response<ConditionalCacheResponse>, Status> {
        let item = request.into_inner();
        check_key(&item.key)?;
        let status = match self.entries().entry(item.key) {
            Entry::Occupied(_) => ConditionalCacheStatus::Exists,
            Entry::Vacant(slot) => {
                slot.insert(item.value);
                ConditionalCacheStatus::Stored
            }
        };
        Ok(Response::new(ConditionalCacheResponse {
            status: status as i32,
        }))
    }

    async fn compare_and_set(
        &self,
        request: Request<CompareAndSetRequest>,
    ) -> Result<Response<ConditionalCacheResponse>, Status> {
        let request = request.into_inner();
        check_key(&request.key)?;
        let mut entries = self.entries();
        let status = match entries.get_mut(&request.key) {
            None => ConditionalCacheStatus::NotFound,
            Some(current) if *current != request.expected_value => ConditionalCacheStatus::Mismatch,
            Some(current) => {
                *current = request.value;
                ConditionalCacheStatus::Stored
            }
        };
        Ok(Response::new(ConditionalCacheResponse {
            status: status as i32,
        }))
    }

    async fn multi_set(
        &self,
        request: Request<MultiCacheItemRequest>,
    ) -> Result<Response<MultiCacheResponse>, Status> {
        let mut entries = self.entries();
        let items = request
            .into_inner()
            .items
            .into_iter()
            .map(|item| match check_key(&item.key) {
                Err(status) => CacheOperationResult {
                    key: item.key,
                    status: CacheStatus::Error as i32,
                    error: status.message().to_owned(),
                },
                Ok(()) => {
                    entries.insert(item.key.clone(), item.value);
                    CacheOperationResult {
                        key: item.key,
                        status: ok(),
                        error: String::new(),
                    }
                }
            })
            .collect();
        Ok(Response::new(MultiCacheResponse { items }))
    }

    async fn delete(&self, request: Request<CacheKey>) -> Result<Response<CacheResponse>, Status> {
        let key = request.into_inner().key;
        check_key(&key)?;
        self.entries().remove(&key);
        Ok(Response::new(CacheResponse { status: ok() }))
    }

    async fn multi_delete(
        &self,
        request: Request<MultiCacheKeyRequest>,
    ) -> Result<Response<MultiCacheResponse>, Status> {
        let mut entries = self.entries();
        let items = request
            .into_inner()
            .keys
            .into_iter()
            .map(|key| {
                entries.remove(&key);
                CacheOperationResult {
                    key,
                    status: ok(),
                    error: String::new(),
                }
            })
            .collect();
        Ok(Response::new(MultiCacheResponse { items }))
    }

    async fn stats(&self, _request: Request<Empty>) -> Result<Response<CacheStats>, Status> {
        let entries = self.entries();
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        let reads = f64::from(hits) + f64::from(misses);
        Ok(Response::new(CacheStats {
            size: i32::try_from(entries.len()).unwrap_or(i32::MAX),
            hits,
            misses,
            hit_rate: if reads > 0.0 {
                f64::from(hits) / reads
            } else {
                0.0
            },
            memory_usage_bytes: entries
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as i64)
                .sum(),
            ..CacheStats::default()
        }))
    }
}

fn main() {
    let options = Options::from_args(&[]);
    let listen = options.text("listen").unwrap_or("127.0.0.1:0").to_owned();
    let workers: usize = options.get("workers", 1);
    if workers == 0 {
        fail("--workers must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start the runtime: {e}")));
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .unwrap_or_else(|e| fail(&format!("cannot listen on {listen}: {e}")));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| fail(&format!("no local address: {e}")));
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "{address}");
        let _ = stdout.flush();
        eprintln!("tonic-server listening on {address} ({workers} worker(s))");
        // `Server::builder()` sets TCP_NODELAY on accepted sockets only when
        // it binds them itself; set it here for the same behaviour.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let served = tonic::transport::Server::builder()
            .add_service(CacheServiceServer::new(Cache::default()))
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = served {
            fail(&format!("server failed: {e}"));
        }
    });
}
