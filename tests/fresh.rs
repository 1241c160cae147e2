//! Fresh without a stampede, against the embedded server over loopback:
//! TTL jitter spreads entries written together, a loader's "not found" is
//! remembered for its own TTL, and early expiry has one reader recompute
//! an entry before it expires while the others keep reading it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tiny_cache_client::cache::ReadThrough;
use tiny_cache_client::server::Server;
use tiny_cache_client::Client;

/// The TTL, in seconds, that an enveloped entry was written with (bytes
/// 15 to 19 of the documented header).
fn written_ttl(raw: &[u8]) -> u32 {
    assert_eq!(&raw[..2], &[0xF7, 0x01], "an enveloped entry");
    u32::from_be_bytes([raw[15], raw[16], raw[17], raw[18]])
}

#[test]
fn jitter_spreads_the_ttls_of_entries_filled_together() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    // Early expiry on, so each entry records the TTL it was written with.
    let cache = ReadThrough::builder(client.clone())
        .ttl_jitter(0.2)
        .early_expiry(1.0)
        .build();
    let ttl = Duration::from_secs(1000);
    let mut ttls = Vec::new();
    for i in 0..200 {
        let key = format!("filled-together-{i}");
        cache.get_with(&key, ttl, || "v").unwrap();
        let raw = client.get(&key).unwrap().expect("stored");
        ttls.push(written_ttl(&raw));
    }
    assert!(ttls.iter().all(|&t| (800..=1200).contains(&t)), "{ttls:?}");
    let (low, high) = (ttls.iter().min().unwrap(), ttls.iter().max().unwrap());
    assert!(high - low > 200, "spread only from {low} to {high}");

    // Without jitter every entry keeps the TTL it was given.
    let steady = ReadThrough::builder(client.clone())
        .early_expiry(1.0)
        .build();
    steady.get_with("steady", ttl, || "v").unwrap();
    assert_eq!(written_ttl(&client.get("steady").unwrap().unwrap()), 1000);
}

#[test]
fn a_loaders_not_found_is_remembered_for_its_own_ttl() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let lookups = AtomicUsize::new(0);
    let find = || {
        lookups.fetch_add(1, Ordering::SeqCst);
        Ok::<Option<&str>, std::io::Error>(None)
    };
    let ttl = Duration::from_secs(600);

    let remembering = ReadThrough::builder(client.clone())
        .cache_misses_for(Duration::from_secs(1))
        .build();
    for _ in 0..5 {
        assert_eq!(remembering.get_or_load("row:404", ttl, find).unwrap(), None);
    }
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        1,
        "one lookup, then the marker"
    );
    // The marker is no value: a plain read of the layer sees nothing.
    assert_eq!(remembering.get("row:404").unwrap(), None);
    // It lives for its own TTL, then the row is looked up again.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(remembering.get_or_load("row:404", ttl, find).unwrap(), None);
    assert_eq!(lookups.load(Ordering::SeqCst), 2);

    // A value found later is stored and read as usual.
    let found = remembering
        .get_or_load("row:7", ttl, || Ok::<_, std::io::Error>(Some("seven")))
        .unwrap();
    assert_eq!(found.as_deref(), Some(&b"seven"[..]));
    assert_eq!(
        remembering.get("row:7").unwrap().as_deref(),
        Some(&b"seven"[..])
    );

    // Without negative caching every read looks the row up again.
    let forgetting = ReadThrough::new(client);
    lookups.store(0, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(forgetting.get_or_load("row:405", ttl, find).unwrap(), None);
    }
    assert_eq!(lookups.load(Ordering::SeqCst), 3);
}

#[test]
fn early_expiry_recomputes_before_the_entry_expires() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let loads = AtomicUsize::new(0);
    let slow_load = || {
        loads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        "value"
    };
    let ttl = Duration::from_secs(3);

    // A large beta: with 50 ms of compute, a reader a second before expiry
    // recomputes with a probability of about 1 - e^-(1000/5000) per read.
    let early = ReadThrough::builder(client.clone())
        .early_expiry(100.0)
        .build();
    early.get_with("hot", ttl, slow_load).unwrap();
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(2000));
    for _ in 0..20 {
        let value = early.get_with("hot", ttl, slow_load).unwrap();
        assert_eq!(&value[..], b"value", "every reader gets a value");
    }
    assert!(
        loads.load(Ordering::SeqCst) >= 2,
        "no reader recomputed before the entry expired"
    );

    // Off, nobody recomputes while the entry lives.
    let plain = ReadThrough::new(client);
    loads.store(0, Ordering::SeqCst);
    plain.get_with("steady", ttl, slow_load).unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    for _ in 0..20 {
        plain.get_with("steady", ttl, slow_load).unwrap();
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[test]
fn entries_written_before_the_envelope_still_read_as_values() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    client.set("old", "written plainly").unwrap();
    let cache = ReadThrough::builder(client)
        .early_expiry(1.0)
        .cache_misses_for(Duration::from_secs(5))
        .build();
    assert_eq!(
        cache.get("old").unwrap().as_deref(),
        Some(&b"written plainly"[..])
    );
    let value = cache
        .get_with("old", Duration::from_secs(60), || "recomputed")
        .unwrap();
    assert_eq!(&value[..], b"written plainly");
}

#[test]
fn refresh_ahead_serves_the_old_value_at_once_and_refreshes_once() {
    use std::sync::Arc;
    use std::time::Instant;

    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let cache = ReadThrough::builder(client)
        .refresh_after(Duration::from_secs(1))
        .build();
    let loads = Arc::new(AtomicUsize::new(0));
    const LOADER_TAKES: Duration = Duration::from_millis(400);
    let loader = |loads: &Arc<AtomicUsize>| {
        let loads = Arc::clone(loads);
        move || {
            let generation = loads.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(LOADER_TAKES);
            format!("generation {generation}")
        }
    };
    let ttl = Duration::from_secs(60);
    let first = cache.get_with_refresh("hot", ttl, loader(&loads)).unwrap();
    assert_eq!(&first[..], b"generation 1");
    std::thread::sleep(Duration::from_millis(1100));

    // The entry is now older than refresh_after: reads keep getting it at
    // once while one refresh runs.
    let until = Instant::now() + Duration::from_millis(700);
    let mut slowest = Duration::ZERO;
    let mut seen = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let value = cache.get_with_refresh("hot", ttl, loader(&loads)).unwrap();
        slowest = slowest.max(started.elapsed());
        seen.push(value);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        slowest < LOADER_TAKES * 3 / 4,
        "a read waited for the loader: {slowest:?}"
    );
    assert_eq!(&seen[0][..], b"generation 1", "the old value, at once");
    assert_eq!(
        &seen.last().unwrap()[..],
        b"generation 2",
        "refreshed within a refresh's time"
    );
    assert_eq!(
        loads.load(Ordering::SeqCst),
        2,
        "one refresh for all those reads"
    );
    let stats = cache.local_stats();
    assert_eq!(
        (stats.refreshes, stats.refresh_failures),
        (1, 0),
        "{stats:?}"
    );
}

#[test]
fn a_failed_refresh_keeps_the_old_value_and_a_full_queue_skips() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let cache = ReadThrough::builder(client)
        .refresh_after(Duration::from_secs(1))
        .refresh_pool(1, 1)
        .build();
    let ttl = Duration::from_secs(60);
    for i in 0..6 {
        cache
            .get_with_refresh(&format!("k{i}"), ttl, move || format!("v{i}"))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100));

    // A refresh that fails: the old value stays.
    let failing = || Err::<&str, _>(std::io::Error::other("the database is down"));
    let value = cache.try_get_with_refresh("k0", ttl, failing).unwrap();
    assert_eq!(&value[..], b"v0");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cache.local_stats().refresh_failures == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(cache.local_stats().refresh_failures, 1);
    assert_eq!(cache.get("k0").unwrap().as_deref(), Some(&b"v0"[..]));

    // One thread, one queue place: slow refreshes of five keys at once
    // leave some skipped, and no reader waits.
    for i in 1..6 {
        let started = std::time::Instant::now();
        let value = cache
            .get_with_refresh(&format!("k{i}"), ttl, move || {
                std::thread::sleep(Duration::from_millis(300));
                format!("new v{i}")
            })
            .unwrap();
        assert_eq!(value, format!("v{i}").as_bytes());
        assert!(started.elapsed() < Duration::from_millis(250));
    }
    assert!(
        cache.local_stats().refreshes_skipped >= 1,
        "{:?}",
        cache.local_stats()
    );
}
