//! The caching layer over real loopback sockets against the embedded server:
//! single flight, the near cache, codecs and fail-open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tiny_cache_client::cache::{
    CacheError, Codec, CodecError, Json, NearCache, NearPolicy, Postcard, ReadThrough, TypedCache,
};
use tiny_cache_client::server::Server;
use tiny_cache_client::CacheStore;
use tiny_cache_client::{Client, Error, Ttl};

const THREADS: usize = 64;
const TTL: Duration = Duration::from_secs(60);
/// Far above how long anything here takes on a busy machine, far below a
/// hang: the bound for waiting on an event that must come.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn server_and_client() -> (Server, Client) {
    let server = Server::local().expect("server");
    let client = Client::builder(&server.address())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    (server, client)
}

/// Blocks until `ready` holds, polling a counter the other threads bump.
fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < EVENT_TIMEOUT,
            "timed out waiting for {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `call` on `THREADS` threads released together; their results.
fn stampede<T: Send + 'static>(
    call: impl Fn() -> T + Send + Sync + 'static,
) -> Vec<thread::Result<T>> {
    let call = Arc::new(call);
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (call, start) = (Arc::clone(&call), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                call()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join()).collect()
}

// ----- single flight ----------------------------------------------------

#[test]
fn sixty_four_threads_missing_one_key_run_the_loader_once_and_all_get_its_value() {
    let (_server, client) = server_and_client();
    let cache = ReadThrough::new(client.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let (layer, counter) = (cache.clone(), Arc::clone(&runs));
    let results = stampede(move || {
        layer.get_with("cold", TTL, || {
            counter.fetch_add(1, Ordering::SeqCst);
            // Hold the flight open until every other thread waits on it.
            wait_for("63 waiters", || {
                layer.local_stats().coalesced_waits == THREADS as u64 - 1
            });
            "computed once"
        })
    });
    for result in results {
        assert_eq!(
            &result.expect("no panic").expect("a value")[..],
            b"computed once"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let stats = cache.local_stats();
    assert_eq!((stats.loads, stats.misses), (1, 1));
    assert_eq!(stats.coalesced_waits, THREADS as u64 - 1);
    assert_eq!(
        client.get_string("cold").unwrap().as_deref(),
        Some("computed once")
    );
    // One Get and one Set reached the server for 64 callers.
    let server = client.stats().unwrap();
    assert_eq!((server.hits, server.misses), (1, 1));
}

/// The scope README states: clones of a layer share one flight per key
/// (the 64-thread test above runs through clones); layers built
/// separately over one store do not, so each runs its own loader.
#[test]
fn layers_built_separately_over_one_client_do_not_share_single_flight() {
    let (_server, client) = server_and_client();
    let runs = Arc::new(AtomicUsize::new(0));
    let load = |layer: ReadThrough<Client>| {
        let runs = Arc::clone(&runs);
        thread::spawn(move || {
            layer
                .get_with("separate", TTL, || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    // Both loaders in flight at once, or the wait ends.
                    let give_up = Instant::now() + Duration::from_secs(5);
                    while runs.load(Ordering::SeqCst) < 2 && Instant::now() < give_up {
                        thread::sleep(Duration::from_millis(1));
                    }
                    "loaded"
                })
                .unwrap()
        })
    };
    let (first, second) = (ReadThrough::new(client.clone()), ReadThrough::new(client));
    let (a, b) = (load(first.clone()), load(second.clone()));
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        first.local_stats().coalesced_waits + second.local_stats().coalesced_waits,
        0
    );
}

#[test]
fn a_loader_error_reaches_every_waiter_and_the_next_call_loads_again() {
    let (_server, client) = server_and_client();
    let cache = ReadThrough::new(client);
    let layer = cache.clone();
    let results = stampede(move || {
        layer.try_get_with("flaky", TTL, || {
            wait_for("63 waiters", || {
                layer.local_stats().coalesced_waits == THREADS as u64 - 1
            });
            Err::<Vec<u8>, _>("backend said no".to_owned())
        })
    });
    for result in results {
        match result.expect("no panic") {
            Err(CacheError::Load(why)) => assert_eq!(*why, "backend said no"),
            other => panic!("every caller sees the loader's error, got {other:?}"),
        }
    }
    assert_eq!(cache.local_stats().load_errors, 1);
    // Not cached: the next call computes.
    let value = cache
        .try_get_with("flaky", TTL, || Ok::<_, String>("second try"))
        .unwrap();
    assert_eq!(&value[..], b"second try");
    assert_eq!(cache.local_stats().loads, 2);
}

#[test]
fn a_panicking_loader_leaves_no_waiter_hanging_and_does_not_poison_the_key() {
    let (_server, client) = server_and_client();
    let cache = ReadThrough::new(client);
    let layer = cache.clone();
    let started = Instant::now();
    let results = stampede(move || {
        layer.get_with("boom", TTL, || -> Vec<u8> {
            wait_for("63 waiters", || {
                layer.local_stats().coalesced_waits == THREADS as u64 - 1
            });
            panic!("loader exploded")
        })
    });
    assert!(started.elapsed() < EVENT_TIMEOUT, "nobody hung");
    let mut panicked = 0;
    for result in results {
        match result {
            Err(panic) => {
                assert_eq!(panic.downcast_ref::<&str>(), Some(&"loader exploded"));
                panicked += 1;
            }
            Ok(Err(CacheError::LoaderPanicked { key })) => assert_eq!(key, "boom"),
            Ok(other) => panic!("a waiter of a panicked loader got {other:?}"),
        }
    }
    assert_eq!(panicked, 1, "the panic unwinds in the loader's own thread");
    let value = cache.get_with("boom", TTL, || "fine now").unwrap();
    assert_eq!(&value[..], b"fine now");
}

#[test]
fn waiters_with_a_short_deadline_end_on_time_while_the_loader_still_runs() {
    let (_server, client) = server_and_client();
    let cache = ReadThrough::new(client);
    let (release, released) = mpsc::channel::<()>();
    let layer = cache.clone();
    let loader = thread::spawn(move || {
        layer.get_with("slow", TTL, || {
            released.recv_timeout(EVENT_TIMEOUT).expect("released");
            "slow value"
        })
    });
    wait_for("the loader to start", || cache.local_stats().loads == 1);
    let hurried = cache.with_wait_timeout(Duration::from_millis(200));
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let hurried = hurried.clone();
            thread::spawn(move || {
                let started = Instant::now();
                (
                    hurried.get_with("slow", TTL, || "not me"),
                    started.elapsed(),
                )
            })
        })
        .collect();
    for waiter in waiters {
        let (result, waited) = waiter.join().unwrap();
        assert!(
            matches!(&result, Err(CacheError::WaitTimeout { key, waited }) if key == "slow" && *waited == Duration::from_millis(200)),
            "got {result:?}"
        );
        assert!(waited >= Duration::from_millis(200), "waited {waited:?}");
        assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    }
    release.send(()).unwrap();
    assert_eq!(&loader.join().unwrap().unwrap()[..], b"slow value");
    assert_eq!(cache.local_stats().loads, 1);
}

#[test]
fn a_loader_may_read_other_keys_but_its_own_key_is_a_typed_error() {
    let (_server, client) = server_and_client();
    let cache = ReadThrough::new(client);
    let outer = cache
        .get_with("outer", TTL, || {
            let inner = cache.get_with("inner", TTL, || "inner value").unwrap();
            let again = cache.get_with("outer", TTL, || "never");
            assert!(
                matches!(&again, Err(CacheError::Reentrant { key }) if key == "outer"),
                "got {again:?}"
            );
            format!("outer of {}", String::from_utf8_lossy(&inner))
        })
        .unwrap();
    assert_eq!(&outer[..], b"outer of inner value");
    // The thread-local mark is gone once the loader is done.
    let again = cache.get_with("outer", TTL, || "never").unwrap();
    assert_eq!(&again[..], b"outer of inner value");
}

// ----- near cache -------------------------------------------------------

#[test]
fn the_near_cache_is_invalidated_by_its_own_writes_and_deletes() {
    let (_server, client) = server_and_client();
    let near = NearCache::builder(client.clone())
        .local_ttl(Duration::from_secs(60))
        .build();
    let ttl = Ttl::After(TTL);
    near.set_with_ttl("k", "one", ttl).unwrap();
    assert_eq!(near.peek("k").as_deref(), Some(&b"one"[..]));
    near.set_with_ttl("k", "two", ttl).unwrap();
    assert_eq!(near.get("k").unwrap().as_deref(), Some(&b"two"[..]));
    near.delete("k").unwrap();
    assert_eq!(near.peek("k"), None);
    assert_eq!(near.get("k").unwrap(), None);

    // A change made elsewhere is not seen until the local copy goes.
    client.set("shared", "old").unwrap();
    assert_eq!(near.get("shared").unwrap().as_deref(), Some(&b"old"[..]));
    client.set("shared", "new").unwrap();
    assert_eq!(near.get("shared").unwrap().as_deref(), Some(&b"old"[..]));
    near.flush_local();
    assert_eq!(near.get("shared").unwrap().as_deref(), Some(&b"new"[..]));

    let stats = near.local_stats();
    assert_eq!((stats.hits, stats.misses), (3, 3), "{stats:?}");
}

/// The client, with reads that stop after fetching until released: a read
/// that is "out on the network" while something else happens.
struct HeldReads {
    client: Client,
    fetched: mpsc::SyncSender<()>,
    release: std::sync::Mutex<mpsc::Receiver<()>>,
}

impl CacheStore for HeldReads {
    fn get(&self, key: &str) -> tiny_cache_client::Result<Option<bytes::Bytes>> {
        let value = self.client.get(key)?;
        self.fetched.send(()).unwrap();
        self.release
            .lock()
            .unwrap()
            .recv_timeout(EVENT_TIMEOUT)
            .unwrap();
        Ok(value)
    }
    fn set_with_ttl(&self, key: &str, value: &[u8], ttl: Ttl) -> tiny_cache_client::Result<()> {
        self.client.set_with_ttl(key, value, ttl)
    }
    fn delete(&self, key: &str) -> tiny_cache_client::Result<()> {
        self.client.delete(key)
    }
}

#[test]
fn a_read_that_raced_with_our_own_write_does_not_leave_its_stale_value_behind() {
    let (_server, client) = server_and_client();
    client.set("k", "old").unwrap();
    let (fetched_tx, fetched) = mpsc::sync_channel(1);
    let (release, release_rx) = mpsc::channel();
    let near = Arc::new(
        NearCache::builder(HeldReads {
            client,
            fetched: fetched_tx,
            release: std::sync::Mutex::new(release_rx),
        })
        .local_ttl(Duration::from_secs(60))
        .build(),
    );
    let reader = {
        let near = Arc::clone(&near);
        thread::spawn(move || near.get("k").unwrap())
    };
    fetched.recv_timeout(EVENT_TIMEOUT).unwrap();
    // The reader holds "old"; our write lands before it comes back.
    near.set_with_ttl("k", b"new", Ttl::After(TTL)).unwrap();
    release.send(()).unwrap();
    assert_eq!(reader.join().unwrap().as_deref(), Some(&b"old"[..]));
    assert_eq!(
        near.peek("k").as_deref(),
        Some(&b"new"[..]),
        "the stale read was not kept"
    );
}

#[test]
fn a_read_through_layer_on_the_near_cache_answers_repeats_without_the_network() {
    let (_server, client) = server_and_client();
    let cache = ReadThrough::new(NearCache::new(client.clone()));
    for _ in 0..10 {
        assert_eq!(&cache.get_with("hot", TTL, || "v").unwrap()[..], b"v");
    }
    let server = client.stats().unwrap();
    // One Get (a miss) and one Set; the nine repeats stayed local.
    assert_eq!((server.hits, server.misses), (0, 1));
    assert_eq!(cache.store().local_stats().hits, 9);
}

#[test]
fn the_near_cache_size_bound_holds_by_entries_and_by_bytes() {
    let (_server, client) = server_and_client();
    // A local TTL as long as the remote one: on a busy machine the writes
    // below can take longer than the default 5 s, and an entry that expires
    // is counted as an expiration, not an eviction.
    let by_entries = NearCache::builder(client.clone())
        .max_entries(50)
        .policy(NearPolicy::Lru)
        .local_ttl(TTL)
        .build();
    for i in 0..500 {
        by_entries
            .set_with_ttl(&format!("e{i}"), vec![b'x'; 10], Ttl::After(TTL))
            .unwrap();
    }
    assert!(
        by_entries.local_entries() <= 50,
        "{}",
        by_entries.local_entries()
    );
    assert!(
        by_entries.local_stats().evictions >= 450,
        "{:?}",
        by_entries.local_stats()
    );

    let max_bytes = 20_000;
    let by_bytes = NearCache::builder(client)
        .max_bytes(max_bytes)
        .policy(NearPolicy::Lru)
        .local_ttl(TTL)
        .build();
    for i in 0..200 {
        by_bytes
            .set_with_ttl(&format!("b{i}"), vec![b'y'; 1000], Ttl::After(TTL))
            .unwrap();
    }
    assert!(
        by_bytes.local_weight() <= max_bytes,
        "{}",
        by_bytes.local_weight()
    );
    assert!(
        by_bytes.local_entries() >= 10,
        "the bound is bytes, not a handful of entries"
    );
    assert!(by_bytes.local_stats().evictions > 0);
}

#[test]
fn an_entry_the_near_cache_wrote_never_outlives_its_remote_ttl_locally() {
    let (_server, client) = server_and_client();
    let near = NearCache::builder(client.clone())
        .local_ttl(Duration::from_secs(600))
        .build();
    near.set_with_ttl("short", "lived", Ttl::After(Duration::from_secs(1)))
        .unwrap();
    assert!(near.peek("short").is_some());
    // Once the server has expired the entry, the local copy must be gone.
    wait_for("the remote entry to expire", || {
        client.get("short").unwrap().is_none()
    });
    assert_eq!(near.peek("short"), None);
    assert_eq!(near.get("short").unwrap(), None);
}

/// The other half of the local TTL's promise. The server does not say how
/// long an entry it returns has left, so a copy the near cache *read* can
/// outlive the remote entry (see `NearCache`'s documentation): what holds
/// is that it lives locally no longer than the local TTL after the read.
#[test]
fn an_entry_another_writer_wrote_lives_locally_no_longer_than_the_local_ttl_after_the_read() {
    const LOCAL_TTL: Duration = Duration::from_secs(4);
    let (_server, client) = server_and_client();
    let near = NearCache::builder(client.clone())
        .local_ttl(LOCAL_TTL)
        .build();
    // Another writer, with a remote TTL shorter than the local one.
    client
        .set_with_ttl("theirs", "short", Duration::from_secs(1))
        .unwrap();
    assert_eq!(near.get("theirs").unwrap().as_deref(), Some(&b"short"[..]));
    // The local copy's end was fixed before the read began.
    let read_returned = Instant::now();
    assert!(near.peek("theirs").is_some(), "the read was kept locally");
    wait_for("the remote entry to expire", || {
        client.get("theirs").unwrap().is_none()
    });
    // Past the local TTL (and moka's housekeeping) the copy is gone, and a
    // read finds what the server has: nothing.
    thread::sleep(
        (read_returned + LOCAL_TTL + Duration::from_millis(100))
            .saturating_duration_since(Instant::now()),
    );
    assert_eq!(near.peek("theirs"), None);
    assert_eq!(near.get("theirs").unwrap(), None);
    assert_eq!(near.local_entries(), 0);
    assert_eq!(
        near.local_stats().expirations,
        1,
        "it expired: {:?}",
        near.local_stats()
    );
}

// ----- codecs -----------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: Option<f64>,
}

fn profile() -> Profile {
    Profile {
        id: 7,
        name: "Ann ünïcode".into(),
        tags: vec!["a".into(), "b".into()],
        score: Some(0.5),
    }
}

/// MessagePack, the docs' worked example of a user's codec.
#[derive(Debug, Clone, Copy)]
struct MessagePack;

impl Codec for MessagePack {
    fn name(&self) -> &'static str {
        "messagepack"
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        Ok(rmp_serde::to_vec_named(value)?)
    }
    fn decode<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        Ok(rmp_serde::from_slice(bytes)?)
    }
}

fn round_trips<C: Codec>(client: &Client, codec: C) {
    let cache = TypedCache::new(ReadThrough::new(client.clone()), codec.clone());
    let key = format!("profile:{}", codec.name());
    cache.set_with_ttl(&key, &profile(), TTL).unwrap();
    assert_eq!(cache.get::<Profile>(&key).unwrap(), Some(profile()));
    // The bytes on the server are the codec's own encoding.
    let stored = client.get(&key).unwrap().unwrap();
    assert_eq!(codec.decode::<Profile>(&stored).unwrap(), profile());
    let loaded = cache
        .get_with(&format!("{key}:loaded"), TTL, profile)
        .unwrap();
    assert_eq!(loaded, profile());
}

#[test]
fn every_codec_round_trips_a_struct_through_the_server() {
    let (_server, client) = server_and_client();
    round_trips(&client, Json);
    round_trips(&client, Postcard);
    round_trips(&client, MessagePack);
    assert!(
        Postcard.encode(&profile()).unwrap().len() < Json.encode(&profile()).unwrap().len(),
        "postcard is the compact one"
    );
}

#[test]
fn undecodable_bytes_are_a_typed_error_naming_the_key_and_the_codec() {
    let (_server, client) = server_and_client();
    client.set("garbage", [0xff, 0x00, 0x13]).unwrap();
    let cache = TypedCache::new(ReadThrough::new(client.clone()), Json);
    for result in [
        cache.get::<Profile>("garbage").map(|_| ()),
        cache.get_with("garbage", TTL, profile).map(|_| ()),
    ] {
        match result {
            Err(CacheError::Decode { key, codec, .. }) => {
                assert_eq!((key.as_str(), codec), ("garbage", "json"))
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
    match cache.with_codec(Postcard).get::<Profile>("garbage") {
        Err(CacheError::Decode { codec, .. }) => assert_eq!(codec, "postcard"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    // The loader never ran and the bytes are untouched.
    assert_eq!(cache.local_stats().loads, 0);
    assert_eq!(
        client.get("garbage").unwrap().as_deref(),
        Some(&[0xff, 0x00, 0x13][..])
    );

    // Opted in: undecodable reads as a miss, and the new value replaces it.
    let migrating = cache.clone().overwrite_undecodable(true);
    assert_eq!(
        migrating.get_with("garbage", TTL, profile).unwrap(),
        profile()
    );
    assert_eq!(cache.get::<Profile>("garbage").unwrap(), Some(profile()));
}

#[test]
fn memoized_functions_run_once_per_argument() {
    let (_server, client) = server_and_client();
    let cache = TypedCache::new(ReadThrough::new(client), Postcard);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let area = cache.memoize("area", TTL, move |&(w, h): &(u32, u32)| {
        counter.fetch_add(1, Ordering::SeqCst);
        u64::from(w) * u64::from(h)
    });
    assert_eq!(area.call(&(3, 4)).unwrap(), 12);
    assert_eq!(area.call(&(3, 4)).unwrap(), 12);
    assert_eq!(area.call(&(5, 6)).unwrap(), 30);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A long argument is hashed into a key the server accepts.
    let long = "word ".repeat(200);
    let words = cache.memoize("words", TTL, |text: &String| {
        text.split_whitespace().count()
    });
    assert_eq!(words.call(&long).unwrap(), 200);
    assert_eq!(words.call(&long).unwrap(), 200);
}

// ----- fail-open --------------------------------------------------------

#[test]
fn with_the_server_killed_fail_open_read_through_returns_computed_values_and_counts_failures() {
    let server = Server::local().unwrap();
    let timeout = Duration::from_secs(2);
    let client = Client::builder(&server.address())
        .timeout(timeout)
        .max_retries(1)
        .build()
        .unwrap();
    let open = ReadThrough::builder(NearCache::new(client.clone()))
        .fail_open(true)
        .build();
    let closed = ReadThrough::new(client.clone());
    assert_eq!(
        &open.get_with("before", TTL, || "stored").unwrap()[..],
        b"stored"
    );
    server.kill();

    for i in 0..3 {
        let started = Instant::now();
        let value = open
            .get_with(&format!("during-{i}"), TTL, || format!("computed {i}"))
            .unwrap();
        assert_eq!(value, format!("computed {i}").as_bytes());
        assert!(
            started.elapsed() < timeout + Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(open.local_stats().store_failures, 3);
    assert_eq!(
        open.get("during-0").unwrap(),
        None,
        "a read fails open as a miss"
    );
    assert_eq!(open.local_stats().store_failures, 4);
    // The near cache still answers what it held.
    assert_eq!(
        &open.get_with("before", TTL, || "unused").unwrap()[..],
        b"stored"
    );

    // Without fail-open the outage is the caller's error.
    match closed.get_with("during-0", TTL, || "computed") {
        Err(CacheError::Store(error)) => assert!(error.is_retryable(), "{error:?}"),
        other => panic!("expected a store error, got {other:?}"),
    }
    // A validation error is a bug, not an outage: it fails even open.
    match open.get_with("", TTL, || "computed") {
        Err(CacheError::Store(Error::Validation(_))) => {}
        other => panic!("expected a validation error, got {other:?}"),
    }
    match open.get_with("k", Ttl::After(Duration::ZERO), || "computed") {
        Err(CacheError::Store(Error::Validation(_))) => {}
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn a_fail_open_layer_used_as_a_store_reads_an_outage_as_misses_and_counts_it() {
    use tiny_cache_client::CacheStore;
    let server = Server::local().unwrap();
    let client = Client::builder(&server.address())
        .timeout(Duration::from_secs(2))
        .max_retries(0)
        .build()
        .unwrap();
    let open = ReadThrough::builder(client.clone()).fail_open(true).build();
    let closed = ReadThrough::new(client);
    server.kill();
    // Through the trait, the batch read fails open as `get` does...
    let items = CacheStore::get_many(&open, &["a", "b"]).unwrap();
    let results: Vec<_> = items.iter().map(|item| item.result.clone()).collect();
    assert_eq!(results, [Ok(None), Ok(None)], "{items:?}");
    let stats = open.local_stats();
    assert_eq!((stats.misses, stats.store_failures), (2, 2), "{stats:?}");
    // ...and without fail-open the outage is the caller's to see.
    assert!(matches!(
        CacheStore::get_many(&closed, &["a"]),
        Err(Error::Unavailable(_))
    ));
}

#[test]
fn explicit_writes_through_a_fail_open_layer_still_report_the_outage() {
    let server = Server::local().unwrap();
    let client = Client::builder(&server.address())
        .timeout(Duration::from_secs(2))
        .max_retries(0)
        .build()
        .unwrap();
    let open = ReadThrough::builder(client).fail_open(true).build();
    server.kill();
    assert!(matches!(
        open.set_with_ttl("k", "v", TTL),
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(open.delete("k"), Err(Error::Unavailable(_))));
}

// ----- fail-open on the write path --------------------------------------

/// The client, with every `Set` refused with `refusal` while reads and
/// deletes reach the server: a store whose get works but whose set fails
/// (a server out of memory, a write path cut off). Counts the refusals.
struct RefusedWrites {
    client: Client,
    refusal: Refusal,
    refused: AtomicUsize,
}

impl RefusedWrites {
    fn new(client: Client, refusal: Refusal) -> RefusedWrites {
        RefusedWrites {
            client,
            refusal,
            refused: AtomicUsize::new(0),
        }
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl CacheStore for RefusedWrites {
    fn get(&self, key: &str) -> tiny_cache_client::Result<Option<bytes::Bytes>> {
        self.client.get(key)
    }
    fn set_with_ttl(&self, _: &str, _: &[u8], _: Ttl) -> tiny_cache_client::Result<()> {
        self.refused.fetch_add(1, Ordering::SeqCst);
        Err((self.refusal)())
    }
    fn delete(&self, key: &str) -> tiny_cache_client::Result<()> {
        self.client.delete(key)
    }
}

/// Makes the error a store answers with.
type Refusal = fn() -> Error;

/// The write-path failures fail-open absorbs: the store away, or full.
const WRITE_OUTAGES: [(&str, Refusal); 2] = [
    ("unavailable", || {
        Error::Unavailable("write path down".into())
    }),
    ("resource exhausted", || {
        Error::ResourceExhausted("no room for the entry".into())
    }),
];

#[test]
fn when_only_the_write_after_a_compute_fails_fail_open_read_through_returns_the_value_and_counts_it(
) {
    let (_server, client) = server_and_client();
    for (outage, refusal) in WRITE_OUTAGES {
        let key = format!("computed while {outage}");
        let open = ReadThrough::builder(RefusedWrites::new(client.clone(), refusal))
            .fail_open(true)
            .build();
        for round in 1..=2 {
            let value = open
                .get_with(&key, TTL, || format!("value {round}"))
                .unwrap_or_else(|e| panic!("{outage}: a failed write failed the read: {e:?}"));
            assert_eq!(value, format!("value {round}").as_bytes(), "{outage}");
            let stats = open.local_stats();
            // Nothing was stored, so the second call computes again.
            assert_eq!((stats.loads, stats.misses), (round, round), "{outage}");
            assert_eq!(stats.store_failures, round, "{outage}: {stats:?}");
            assert_eq!(stats.load_errors, 0, "{outage}: {stats:?}");
            assert_eq!(open.store().refused(), round as usize, "{outage}");
        }
        assert_eq!(client.get(&key).unwrap(), None, "{outage}: nothing stored");

        // Without fail-open the same failure is the caller's error...
        let closed = ReadThrough::new(RefusedWrites::new(client.clone(), refusal));
        match closed.get_with(&key, TTL, || "computed") {
            Err(CacheError::Store(error)) => assert_eq!(error.code(), refusal().code()),
            other => panic!("{outage}: expected the store's error, got {other:?}"),
        }
        assert_eq!(closed.local_stats().store_failures, 0, "{outage}");
    }

    // ...and with it, a write refused for a reason that is not an outage
    // (a bug, not the store being away) still fails the call.
    let refused = ReadThrough::builder(RefusedWrites::new(client, || {
        Error::InvalidArgument("the server refused the key".into())
    }))
    .fail_open(true)
    .build();
    match refused.get_with("refused", TTL, || "computed") {
        Err(CacheError::Store(Error::InvalidArgument(_))) => {}
        other => panic!("expected the invalid-argument error, got {other:?}"),
    }
    assert_eq!(refused.local_stats().store_failures, 0);
}

#[test]
fn a_value_over_the_servers_limit_fails_open_on_the_write_and_is_returned() {
    // A real server that reads everything and refuses entries over 64 bytes
    // with RESOURCE_EXHAUSTED.
    let server = Server::builder()
        .max_value_bytes(64 + tiny_cache_client::server::ENTRY_OVERHEAD_BYTES)
        .start()
        .unwrap();
    let client = Client::new(&server.address()).unwrap();
    let open = ReadThrough::builder(client.clone()).fail_open(true).build();
    let big = vec![b'x'; 1000];
    let value = open.get_with("big", TTL, || big.clone()).unwrap();
    assert_eq!(&value[..], &big[..]);
    assert_eq!(
        open.local_stats().store_failures,
        1,
        "{:?}",
        open.local_stats()
    );
    assert_eq!(client.stats().unwrap().rejected_oversize, 1);
    assert_eq!(client.get("big").unwrap(), None);
    // A small value is stored as usual: the layer is not stuck failing.
    assert_eq!(
        &open.get_with("small", TTL, || "fits").unwrap()[..],
        b"fits"
    );
    assert_eq!(client.get_string("small").unwrap().as_deref(), Some("fits"));
    assert_eq!(open.local_stats().store_failures, 1);
}

#[test]
fn the_near_cache_drops_its_local_copy_when_the_write_below_fails() {
    let (_server, client) = server_and_client();
    for (outage, refusal) in WRITE_OUTAGES {
        let key = format!("held while {outage}");
        client.set(&key, "old").unwrap();
        let near = NearCache::builder(RefusedWrites::new(client.clone(), refusal))
            .local_ttl(TTL)
            .build();
        assert_eq!(near.get(&key).unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(near.peek(&key).as_deref(), Some(&b"old"[..]), "{outage}");

        let failed = near.set_with_ttl(&key, "new", Ttl::After(TTL));
        assert_eq!(failed.unwrap_err().code(), refusal().code(), "{outage}");
        // Neither the new value (the store may not have it) nor the old one
        // (the store may have replaced it) stays local.
        assert_eq!(near.peek(&key), None, "{outage}: a local copy survived");
        assert_eq!(near.local_entries(), 0, "{outage}");
        // The next read goes to the store, which still has the old value.
        assert_eq!(near.get(&key).unwrap().as_deref(), Some(&b"old"[..]));
    }

    // Under read-through with fail-open: the computed value is returned,
    // the failure counted, and nothing is kept locally either.
    let near = NearCache::builder(RefusedWrites::new(client.clone(), WRITE_OUTAGES[0].1))
        .local_ttl(TTL)
        .build();
    let open = ReadThrough::builder(near).fail_open(true).build();
    assert_eq!(
        &open.get_with("fresh", TTL, || "computed").unwrap()[..],
        b"computed"
    );
    assert_eq!(open.local_stats().store_failures, 1);
    assert_eq!(open.store().peek("fresh"), None);
    assert_eq!(open.store().local_entries(), 0);
    assert_eq!(client.get("fresh").unwrap(), None);
}
