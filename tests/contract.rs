#![cfg(feature = "server")]
//! The wire contract (`/work/shared/contract.md`), checked end to end: every
//! test starts its own embedded server on a loopback port and talks to it
//! through a real `Client`.

use std::time::{Duration, Instant};

use tiny_cache_client::server::Server;
use tiny_cache_client::{
    CasOutcome, Client, Code, Error, ItemResult, PingMethod, ServingStatus, Ttl,
};

/// Deadline of every call in these tests: long enough for a loaded debug
/// build, short enough that a hang fails the test instead of stalling it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request message the reference server accepts.
const FOUR_MIB: usize = 4 * 1024 * 1024;

fn client_for(server: &Server) -> Client {
    Client::builder(&server.address())
        .timeout(CALL_TIMEOUT)
        .build()
        .expect("client builds")
}

fn local() -> (Server, Client) {
    let server = Server::local().expect("server starts");
    let client = client_for(&server);
    (server, client)
}

/// A client of an address where nothing listens any more: any call that
/// reached the network would fail with `Unavailable` (or time out), so an
/// error of another kind proves the client refused the call before any I/O.
fn client_without_server() -> Client {
    let server = Server::local().expect("server starts");
    let address = server.address();
    server.shutdown();
    Client::builder(&address)
        .timeout(Duration::from_secs(2))
        .max_retries(0)
        .build()
        .expect("client builds")
}

/// `Some(value)` as [`get`] returns it: `get` of the client yields
/// `bytes::Bytes`, which this test crate does not depend on, so reads are
/// compared as `Vec<u8>`.
fn bytes(value: &[u8]) -> Option<Vec<u8>> {
    Some(value.to_vec())
}

fn get(client: &Client, key: &str) -> Option<Vec<u8>> {
    client
        .get(key)
        .unwrap_or_else(|e| panic!("get {key:?}: {e:?}"))
        .map(|v| v.to_vec())
}

fn assert_validation<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::Validation(message)) => assert!(!message.is_empty(), "{what}: empty message"),
        other => panic!("{what}: expected Error::Validation, got {other:?}"),
    }
}

fn assert_invalid_argument<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("{what}: expected Error::InvalidArgument, got {other:?}"),
    }
}

fn assert_resource_exhausted<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::ResourceExhausted(_)) => {}
        other => panic!("{what}: expected Error::ResourceExhausted, got {other:?}"),
    }
}

fn assert_item_error<T: std::fmt::Debug>(item: &ItemResult<T>, key: &str) {
    assert_eq!(item.key, key, "the key is echoed");
    match &item.result {
        Err(Error::InvalidArgument(message) | Error::ResourceExhausted(message)) => {
            assert!(!message.is_empty(), "{key:?}: empty item error")
        }
        other => panic!("{key:?}: expected an item error, got {other:?}"),
    }
}

/// Polls `get` until the key reads as missing, for at most `limit`;
/// returns how long after `since` it disappeared.
fn wait_until_gone(client: &Client, key: &str, since: Instant, limit: Duration) -> Duration {
    loop {
        if client.get(key).expect("get while waiting").is_none() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "{key:?} still present after {:?}",
            since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ----- get / set / delete ------------------------------------------------

#[test]
fn set_then_get_returns_the_value_and_overwrite_replaces_it() {
    let (_server, client) = local();
    client.set("greeting", "hello").unwrap();
    assert_eq!(get(&client, "greeting"), bytes(b"hello"));
    assert_eq!(
        client.get_string("greeting").unwrap().as_deref(),
        Some("hello")
    );
    client.set("greeting", "bonjour").unwrap();
    assert_eq!(get(&client, "greeting"), bytes(b"bonjour"));
}

#[test]
fn get_of_a_missing_key_is_none() {
    let (_server, client) = local();
    assert_eq!(get(&client, "never-written"), None);
    assert_eq!(client.get_string("never-written").unwrap(), None);
}

#[test]
fn delete_removes_the_key_and_deleting_a_missing_key_is_ok() {
    let (_server, client) = local();
    client.set("doomed", "x").unwrap();
    client.set("survivor", "y").unwrap();
    assert_eq!(client.delete("doomed"), Ok(()));
    assert_eq!(get(&client, "doomed"), None);
    assert_eq!(get(&client, "survivor"), bytes(b"y"));
    assert_eq!(client.delete("doomed"), Ok(()), "second delete");
    assert_eq!(client.delete("never-written"), Ok(()));
}

#[test]
fn empty_value_round_trips_as_present_not_missing() {
    let (_server, client) = local();
    client.set("empty", b"").unwrap();
    assert_eq!(get(&client, "empty"), bytes(b""));
    assert_eq!(client.get_string("empty").unwrap().as_deref(), Some(""));
}

#[test]
fn binary_values_with_all_256_byte_values_round_trip_unchanged() {
    let (_server, client) = local();
    let ascending: Vec<u8> = (0..=255u8).collect();
    let descending: Vec<u8> = (0..=255u8).rev().collect();
    // 64 KiB of every byte value in a scrambled order.
    let scrambled: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    client.set("ascending", &ascending).unwrap();
    client.set("descending", &descending).unwrap();
    client.set("scrambled", &scrambled).unwrap();
    assert_eq!(get(&client, "ascending"), bytes(&ascending));
    assert_eq!(get(&client, "descending"), bytes(&descending));
    assert_eq!(get(&client, "scrambled"), bytes(&scrambled));
}

#[test]
fn get_string_of_a_non_utf8_value_is_not_utf8_error() {
    let (_server, client) = local();
    client.set("binary", [0x66, 0x6f, 0xff, 0xfe]).unwrap();
    assert_eq!(
        client.get_string("binary"),
        Err(Error::NotUtf8 {
            key: "binary".into()
        })
    );
    // The raw bytes are still there.
    assert_eq!(get(&client, "binary"), bytes(&[0x66, 0x6f, 0xff, 0xfe]));
    client.set("text", "snow ☃").unwrap();
    assert_eq!(
        client.get_string("text").unwrap().as_deref(),
        Some("snow ☃")
    );
}

// ----- keys --------------------------------------------------------------

#[test]
fn empty_key_is_refused_before_any_io() {
    let client = client_without_server();
    assert_validation(client.get(""), "get");
    assert_validation(client.get_string(""), "get_string");
    assert_validation(client.set("", "v"), "set");
    assert_validation(client.set_with_ttl("", "v", Ttl::Never), "set_with_ttl");
    assert_validation(client.delete(""), "delete");
    assert_validation(client.set_if_absent("", "v"), "set_if_absent");
    assert_validation(client.compare_and_set("", "a", "b"), "compare_and_set");
}

#[test]
fn key_of_257_characters_is_refused_before_any_io() {
    let client = client_without_server();
    let key = "k".repeat(257);
    assert_validation(client.get(&key), "get");
    assert_validation(client.set(&key, "v"), "set");
    assert_validation(client.delete(&key), "delete");
    assert_validation(client.set_if_absent(&key, "v"), "set_if_absent");
    assert_validation(client.compare_and_set(&key, "a", "b"), "compare_and_set");
    assert_validation(client.get(&"☃".repeat(257)), "257 snowmen");
}

#[test]
fn key_of_256_characters_is_accepted() {
    let (_server, client) = local();
    let key = "k".repeat(256);
    client.set(&key, "long").unwrap();
    assert_eq!(get(&client, &key), bytes(b"long"));
    assert!(!client.set_if_absent(&key, "other").unwrap());
    client.delete(&key).unwrap();
    assert_eq!(get(&client, &key), None);
}

#[test]
fn multibyte_key_length_is_counted_in_characters_not_bytes() {
    let (_server, client) = local();
    let snowmen = "☃".repeat(256); // 768 bytes, 256 characters
    client.set(&snowmen, "cold").unwrap();
    assert_eq!(get(&client, &snowmen), bytes(b"cold"));
    // The server counts characters too: through a multi call (not validated
    // by the client) 256 snowmen pass and 257 fail.
    let too_long = "☃".repeat(257);
    let results = client
        .get_many([snowmen.as_str(), too_long.as_str()])
        .unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].key, snowmen);
    assert_eq!(
        results[0]
            .result
            .as_ref()
            .map(|v| v.as_ref().map(|b| b.to_vec())),
        Ok(Some(b"cold".to_vec()))
    );
    assert_item_error(&results[1], &too_long);
}

// ----- TTL ---------------------------------------------------------------

#[test]
fn one_second_ttl_expires_while_never_and_default_ttl_survive() {
    let server = Server::local().unwrap();
    let client = client_for(&server);
    let short_default = Client::builder(&server.address())
        .timeout(CALL_TIMEOUT)
        .default_ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let started = Instant::now();
    client
        .set_with_ttl("short", "s", Duration::from_secs(1))
        .unwrap();
    short_default.set("short-default", "d").unwrap();
    client.set_with_ttl("forever", "f", Ttl::Never).unwrap();
    client.set("default", "d").unwrap();
    assert_eq!(get(&client, "short"), bytes(b"s"), "present right away");

    let gone_after = wait_until_gone(&client, "short", started, Duration::from_secs(3));
    assert!(
        gone_after >= Duration::from_millis(900),
        "expired too early: {gone_after:?}"
    );
    wait_until_gone(&client, "short-default", started, Duration::from_secs(3));
    assert_eq!(get(&client, "forever"), bytes(b"f"));
    assert_eq!(get(&client, "default"), bytes(b"d"));
    let stats = client.stats().unwrap();
    assert_eq!(stats.size, 2);
    assert_eq!(stats.expired_removals, 2);
    assert_eq!(stats.memory_usage_bytes, 2 * (1 + 33));
}

#[test]
fn zero_ttl_is_a_validation_error_before_any_io() {
    let client = client_without_server();
    let zero = Ttl::After(Duration::ZERO);
    assert_validation(client.set_with_ttl("k", "v", zero), "set_with_ttl");
    assert_validation(
        client.set_with_ttl("k", "v", Duration::ZERO),
        "set_with_ttl(Duration)",
    );
    assert_validation(
        client.set_if_absent_with_ttl("k", "v", zero),
        "set_if_absent_with_ttl",
    );
    assert_validation(
        client.compare_and_set_with_ttl("k", "a", "b", zero),
        "compare_and_set_with_ttl",
    );
    assert_validation(
        client.set_many_with_ttl([("k", "v")], zero),
        "set_many_with_ttl",
    );
    assert_validation(
        Client::builder("127.0.0.1:1").default_ttl(zero).build(),
        "builder default_ttl",
    );
}

// ----- namespaces --------------------------------------------------------

#[test]
fn namespaces_and_the_shared_space_never_see_each_other() {
    let (server, shared) = local();
    let alice = shared.with_namespace("alice").unwrap();
    let bob = Client::builder(&server.address())
        .timeout(CALL_TIMEOUT)
        .namespace("bob")
        .build()
        .unwrap();
    shared.set("cart", "shared").unwrap();
    alice.set("cart", "alice").unwrap();
    bob.set("cart", "bob").unwrap();
    alice.set("alice-only", "a").unwrap();

    assert_eq!(get(&shared, "cart"), bytes(b"shared"));
    assert_eq!(get(&alice, "cart"), bytes(b"alice"));
    assert_eq!(get(&bob, "cart"), bytes(b"bob"));
    assert_eq!(get(&shared, "alice-only"), None);
    assert_eq!(get(&bob, "alice-only"), None);

    bob.delete("cart").unwrap();
    assert_eq!(get(&bob, "cart"), None);
    assert_eq!(get(&alice, "cart"), bytes(b"alice"));
    assert_eq!(get(&shared, "cart"), bytes(b"shared"));

    let many = alice.get_many(["cart", "alice-only"]).unwrap();
    assert_eq!(
        many[0].result.as_ref().unwrap().as_deref(),
        Some(&b"alice"[..])
    );
    assert_eq!(many[1].result.as_ref().unwrap().as_deref(), Some(&b"a"[..]));
    assert!(!alice.set_if_absent("cart", "again").unwrap());
    assert!(bob.set_if_absent("cart", "bob2").unwrap());
    assert_eq!(get(&alice, "cart"), bytes(b"alice"));
}

#[test]
fn namespace_is_trimmed_and_blank_means_the_shared_space() {
    let (server, shared) = local();
    let padded = Client::builder(&server.address())
        .timeout(CALL_TIMEOUT)
        .namespace("  app ")
        .build()
        .unwrap();
    let app = shared.with_namespace("app").unwrap();
    padded.set("k", "from padded").unwrap();
    assert_eq!(get(&app, "k"), bytes(b"from padded"));
    assert_eq!(get(&shared, "k"), None);

    shared.set("k", "shared").unwrap();
    let blank = app.with_namespace("   ").unwrap();
    assert_eq!(get(&blank, "k"), bytes(b"shared"));
    let empty = app.with_namespace("").unwrap();
    assert_eq!(get(&empty, "k"), bytes(b"shared"));
    // Raw header with surrounding blanks: the server trims too.
    let raw = shared.with_metadata("x-cache-namespace", " app ").unwrap();
    assert_eq!(get(&raw, "k"), bytes(b"from padded"));
}

#[test]
fn invalid_namespace_is_a_validation_error_from_builder_and_with_namespace() {
    let client = client_without_server();
    let too_long = "n".repeat(65);
    for bad in [
        "bad ns!",
        "-app",
        ".app",
        "_app",
        "a/b",
        "a:b",
        too_long.as_str(),
    ] {
        assert_validation(client.with_namespace(bad), bad);
        assert_validation(Client::builder("127.0.0.1:1").namespace(bad).build(), bad);
    }
    for good in ["a", "App-1.x_y", "9lives", &"n".repeat(64)] {
        assert!(client.with_namespace(good).is_ok(), "{good:?}");
        assert!(
            Client::builder("127.0.0.1:1")
                .namespace(good)
                .build()
                .is_ok(),
            "{good:?}"
        );
    }
}

#[test]
fn key_valid_alone_but_too_long_once_namespaced_is_refused_by_client_and_server() {
    let (_server, shared) = local();
    let app = shared.with_namespace("app").unwrap(); // storage prefix "3:app:" = 6 chars
    let fits = "k".repeat(250);
    let too_long = "k".repeat(251);

    app.set(&fits, "fits").unwrap();
    assert_eq!(get(&app, &fits), bytes(b"fits"));
    shared.set(&too_long, "alone").unwrap();
    assert_validation(app.get(&too_long), "get");
    assert_validation(app.set(&too_long, "v"), "set");
    assert_validation(app.delete(&too_long), "delete");
    assert_validation(app.set_if_absent(&too_long, "v"), "set_if_absent");
    assert_validation(app.compare_and_set(&too_long, "a", "b"), "cas");

    // Multi calls are validated by the server, item by item.
    let got = app.get_many([fits.as_str(), too_long.as_str()]).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].key, fits);
    assert_eq!(
        got[0].result.as_ref().unwrap().as_deref(),
        Some(&b"fits"[..])
    );
    assert_item_error(&got[1], &too_long);

    let set = app
        .set_many([(too_long.as_str(), "v"), (fits.as_str(), "again")])
        .unwrap();
    assert_item_error(&set[0], &too_long);
    assert_eq!(set[1].key, fits);
    assert_eq!(set[1].result, Ok(()));
    assert_eq!(get(&app, &fits), bytes(b"again"));

    let deleted = app.delete_many([too_long.as_str()]).unwrap();
    assert_eq!(deleted.len(), 1);
    assert_item_error(&deleted[0], &too_long);
    // The same key in the shared space is untouched.
    assert_eq!(get(&shared, &too_long), bytes(b"alone"));
}

#[test]
fn invalid_raw_namespace_header_is_invalid_argument_from_the_server() {
    let (_server, client) = local();
    client.set("k", "v").unwrap();
    let raw = client
        .with_metadata("x-cache-namespace", "bad ns!")
        .expect("the client lets raw metadata through");
    assert_invalid_argument(raw.get("k"), "get");
    assert_invalid_argument(raw.set("k", "other"), "set");
    assert_invalid_argument(raw.delete("k"), "delete");
    assert_invalid_argument(raw.set_if_absent("k2", "v"), "set_if_absent");
    assert_invalid_argument(raw.compare_and_set("k", "v", "w"), "cas");
    // A Multi* call fails as a whole, even with only valid keys, and the
    // namespace is checked before the keys.
    assert_invalid_argument(raw.get_many(["k", ""]), "get_many");
    assert_invalid_argument(raw.set_many([("k", "other")]), "set_many");
    assert_invalid_argument(raw.delete_many(["k"]), "delete_many");

    let too_long = client
        .with_metadata("x-cache-namespace", &"n".repeat(65))
        .unwrap();
    assert_invalid_argument(too_long.get("k"), "65-char namespace get");
    assert_invalid_argument(too_long.get_many(["k"]), "65-char namespace get_many");
    // Nothing was written or deleted.
    assert_eq!(get(&client, "k"), bytes(b"v"));
    assert_eq!(get(&client, "k2"), None);
    // Stats ignore the namespace header, even an invalid one.
    assert_eq!(raw.stats().unwrap().size, 1);
}

// ----- sizes -------------------------------------------------------------

#[test]
fn entry_is_value_plus_33_bytes_against_max_value_bytes() {
    let server = Server::builder().max_value_bytes(1024).start().unwrap();
    let client = client_for(&server);
    client.set("fits", vec![7u8; 991]).unwrap();
    assert_eq!(get(&client, "fits"), bytes(&[7u8; 991]));
    assert_resource_exhausted(client.set("too-big", vec![7u8; 992]), "992 bytes");
    assert_eq!(get(&client, "too-big"), None);
    assert_resource_exhausted(
        client.set_if_absent("too-big", vec![7u8; 992]),
        "set_if_absent 992",
    );
    assert_resource_exhausted(
        client.compare_and_set("fits", vec![7u8; 991], vec![8u8; 992]),
        "cas 992",
    );
    // A refused write leaves the old value alone.
    assert_eq!(get(&client, "fits"), bytes(&[7u8; 991]));
    let stats = client.stats().unwrap();
    assert_eq!(stats.rejected_oversize, 3);
    assert_eq!(stats.max_value_bytes, 1024);
    assert_eq!(stats.size, 1);
    assert_eq!(stats.memory_usage_bytes, 991 + 33);
}

#[test]
fn five_mib_value_is_refused_by_the_client_before_any_io() {
    let five_mib = vec![1u8; 5 * 1024 * 1024];
    let offline = client_without_server();
    assert_resource_exhausted(offline.set("big", &five_mib), "offline set");
    assert_resource_exhausted(offline.set_many([("big", &five_mib)]), "offline set_many");

    let (_server, client) = local();
    assert_resource_exhausted(client.set("big", &five_mib), "set");
    assert_eq!(get(&client, "big"), None);
    client.set("small", "ok").unwrap();
    assert_eq!(get(&client, "small"), bytes(b"ok"));
}

#[test]
fn server_refuses_a_five_mib_request_when_the_client_would_send_it() {
    let server = Server::local().unwrap();
    let client = Client::builder(&server.address())
        .timeout(CALL_TIMEOUT)
        .max_send_message_bytes(8 * 1024 * 1024)
        .build()
        .unwrap();
    let five_mib = vec![2u8; 5 * 1024 * 1024];
    assert_resource_exhausted(client.set("big", &five_mib), "set");
    assert_resource_exhausted(client.set_many([("big", &five_mib)]), "set_many");
    // The connection is still usable afterwards.
    client.set("small", "ok").unwrap();
    assert_eq!(get(&client, "big"), None);
    assert_eq!(get(&client, "small"), bytes(b"ok"));
    assert_eq!(client.stats().unwrap().rejected_oversize, 0);
}

#[test]
fn request_of_exactly_4_mib_is_accepted_and_one_byte_more_is_refused() {
    // CacheItem{key: "k", value, ttl: 0}: 3 bytes of key field, then the
    // value's tag (1) and 4-byte length varint: message = value + 8 bytes.
    let exact = FOUR_MIB - 8;
    let server = Server::local().unwrap();
    let client = client_for(&server);
    client
        .set_with_ttl("k", vec![3u8; exact], Ttl::Never)
        .expect("a 4 MiB request is within the limit");
    assert_eq!(client.get("k").unwrap().map(|v| v.len()), Some(exact));

    assert_resource_exhausted(
        client.set_with_ttl("k2", vec![3u8; exact + 1], Ttl::Never),
        "client send limit",
    );
    let unlimited = Client::builder(&server.address())
        .timeout(CALL_TIMEOUT)
        .max_send_message_bytes(8 * 1024 * 1024)
        .build()
        .unwrap();
    assert_resource_exhausted(
        unlimited.set_with_ttl("k2", vec![3u8; exact + 1], Ttl::Never),
        "server receive limit",
    );
    assert_eq!(get(&client, "k2"), None);
}

#[test]
fn entry_that_cannot_fit_under_the_memory_limit_is_resource_exhausted() {
    let server = Server::builder()
        .max_memory_bytes(200)
        .max_value_bytes(1024)
        .start()
        .unwrap();
    let client = client_for(&server);
    client.set("small", "x").unwrap();
    assert_resource_exhausted(client.set("big", vec![0u8; 500]), "500 bytes");
    assert_eq!(get(&client, "big"), None);
    let stats = client.stats().unwrap();
    assert_eq!(stats.rejected_capacity, 1);
    assert_eq!(stats.rejected_oversize, 0);
    assert_eq!(stats.max_memory_bytes, 200);
}

// ----- eviction ----------------------------------------------------------

#[test]
fn max_items_evicts_the_least_recently_used_key() {
    let server = Server::builder().max_items(3).start().unwrap();
    let client = client_for(&server);
    client.set("a", "1").unwrap();
    client.set("b", "2").unwrap();
    client.set("c", "3").unwrap();
    assert_eq!(get(&client, "a"), bytes(b"1")); // a is now the most recent
    assert_eq!(client.stats().unwrap().lru_evictions, 0);
    client.set("d", "4").unwrap(); // evicts b, the least recently used

    let stats = client.stats().unwrap();
    assert_eq!(stats.size, 3);
    assert_eq!(stats.lru_evictions, 1);
    assert_eq!(stats.max_items, 3);
    assert_eq!(get(&client, "b"), None);
    assert_eq!(get(&client, "a"), bytes(b"1"));
    assert_eq!(get(&client, "c"), bytes(b"3"));
    assert_eq!(get(&client, "d"), bytes(b"4"));

    // Recency now: a, c, d (oldest first) -> writing e evicts a.
    client.set("e", "5").unwrap();
    assert_eq!(client.stats().unwrap().lru_evictions, 2);
    assert_eq!(get(&client, "a"), None);
    assert_eq!(get(&client, "e"), bytes(b"5"));
}

#[test]
fn max_memory_evicts_the_least_recently_used_key() {
    // Room for exactly three 100-byte values (133 bytes each).
    let server = Server::builder()
        .max_memory_bytes(3 * 133)
        .max_value_bytes(1024)
        .start()
        .unwrap();
    let client = client_for(&server);
    for key in ["a", "b", "c"] {
        client.set(key, [b'v'; 100]).unwrap();
    }
    assert_eq!(get(&client, "a"), bytes(&[b'v'; 100]));
    client.set("d", [b'w'; 100]).unwrap();
    let stats = client.stats().unwrap();
    assert_eq!(stats.size, 3);
    assert_eq!(stats.lru_evictions, 1);
    assert_eq!(stats.memory_usage_bytes, 3 * 133);
    assert_eq!(get(&client, "b"), None);
    assert_eq!(get(&client, "a"), bytes(&[b'v'; 100]));
    assert_eq!(get(&client, "d"), bytes(&[b'w'; 100]));
}

// ----- multi calls -------------------------------------------------------

#[test]
fn get_many_returns_one_result_per_key_in_request_order() {
    let (_server, client) = local();
    client.set("a", "1").unwrap();
    client.set("b", "").unwrap();
    let long = "x".repeat(257);
    let keys = ["missing", "a", "", long.as_str(), "b", "a"];
    let results = client.get_many(keys).unwrap();
    assert_eq!(results.len(), keys.len());
    for (result, key) in results.iter().zip(keys) {
        assert_eq!(result.key, key);
    }
    let value = |i: usize| results[i].result.clone().map(|v| v.map(|b| b.to_vec()));
    assert_eq!(value(0), Ok(None));
    assert_eq!(value(1), Ok(Some(b"1".to_vec())));
    assert_item_error(&results[2], "");
    assert_item_error(&results[3], &long);
    assert_eq!(value(4), Ok(Some(Vec::new())));
    assert_eq!(value(5), Ok(Some(b"1".to_vec())));

    assert_eq!(client.get_many(Vec::<String>::new()).unwrap(), Vec::new());

    // Order holds over many keys with present and missing ones interleaved.
    let keys: Vec<String> = (0..100).map(|i| format!("key-{i:03}")).collect();
    for key in keys.iter().step_by(2) {
        client.set(key, key.as_bytes()).unwrap();
    }
    let results = client.get_many(&keys).unwrap();
    assert_eq!(results.len(), 100);
    for (i, (result, key)) in results.iter().zip(&keys).enumerate() {
        assert_eq!(&result.key, key);
        let expected = (i % 2 == 0).then(|| key.as_bytes().to_vec());
        assert_eq!(
            result.result.clone().map(|v| v.map(|b| b.to_vec())),
            Ok(expected),
            "{key}"
        );
    }
}

#[test]
fn set_many_reports_invalid_keys_and_oversize_values_per_item() {
    let server = Server::builder().max_value_bytes(1024).start().unwrap();
    let client = client_for(&server);
    let long = "x".repeat(257);
    let oversize = vec![9u8; 992];
    let items: Vec<(&str, &[u8])> = vec![
        ("s1", b"one"),
        ("", b"empty key"),
        ("s2", &oversize),
        (long.as_str(), b"long key"),
        ("s3", &[9u8; 991]),
        ("s1", b"one again"),
    ];
    let results = client.set_many(items.clone()).unwrap();
    assert_eq!(results.len(), items.len());
    for (result, (key, _)) in results.iter().zip(&items) {
        assert_eq!(result.key, *key);
    }
    assert_eq!(results[0].result, Ok(()));
    assert_item_error(&results[1], "");
    assert_item_error(&results[2], "s2");
    assert_item_error(&results[3], &long);
    assert_eq!(results[4].result, Ok(()));
    assert_eq!(results[5].result, Ok(()));

    assert_eq!(get(&client, "s1"), bytes(b"one again"), "later item wins");
    assert_eq!(get(&client, "s2"), None);
    assert_eq!(get(&client, "s3"), bytes(&[9u8; 991]));
    let stats = client.stats().unwrap();
    assert_eq!(stats.size, 2);
    assert_eq!(stats.rejected_oversize, 1);
}

#[test]
fn set_many_with_ttl_applies_the_ttl_to_every_item() {
    let (_server, client) = local();
    let started = Instant::now();
    let results = client
        .set_many_with_ttl([("t1", "a"), ("t2", "b")], Duration::from_secs(1))
        .unwrap();
    assert_eq!(results.iter().filter(|r| r.result.is_ok()).count(), 2);
    client.set_many_with_ttl([("n", "c")], Ttl::Never).unwrap();
    wait_until_gone(&client, "t1", started, Duration::from_secs(3));
    wait_until_gone(&client, "t2", started, Duration::from_secs(3));
    assert_eq!(get(&client, "n"), bytes(b"c"));
}

#[test]
fn delete_many_deletes_in_order_and_treats_missing_keys_as_ok() {
    let (_server, client) = local();
    client
        .set_many([("d1", "1"), ("d2", "2"), ("keep", "k")])
        .unwrap();
    let long = "x".repeat(257);
    let keys = ["d1", "missing", "", long.as_str(), "d2", "d1"];
    let results = client.delete_many(keys).unwrap();
    assert_eq!(results.len(), keys.len());
    for (result, key) in results.iter().zip(keys) {
        assert_eq!(result.key, key);
    }
    assert_eq!(results[0].result, Ok(()));
    assert_eq!(results[1].result, Ok(()));
    assert_item_error(&results[2], "");
    assert_item_error(&results[3], &long);
    assert_eq!(results[4].result, Ok(()));
    assert_eq!(results[5].result, Ok(()), "deleting again is OK");
    assert_eq!(get(&client, "d1"), None);
    assert_eq!(get(&client, "d2"), None);
    assert_eq!(get(&client, "keep"), bytes(b"k"));
    assert_eq!(
        client.delete_many(Vec::<String>::new()).unwrap(),
        Vec::new()
    );
}

// ----- conditional writes ------------------------------------------------

#[test]
fn set_if_absent_stores_once_and_again_after_ttl_expiry() {
    let (_server, client) = local();
    assert!(client.set_if_absent("lock", "w1").unwrap());
    assert!(!client.set_if_absent("lock", "w2").unwrap());
    assert_eq!(get(&client, "lock"), bytes(b"w1"), "EXISTS writes nothing");
    client.delete("lock").unwrap();
    assert!(client.set_if_absent("lock", "w3").unwrap());
    assert_eq!(get(&client, "lock"), bytes(b"w3"));

    let started = Instant::now();
    assert!(client
        .set_if_absent_with_ttl("lease", "w1", Duration::from_secs(1))
        .unwrap());
    assert!(!client.set_if_absent("lease", "w2").unwrap());
    // Once the lease has expired (without reading it first), set_if_absent
    // stores again.
    let deadline = started + Duration::from_secs(3);
    loop {
        if client.set_if_absent("lease", "w2").unwrap() {
            break;
        }
        assert!(Instant::now() < deadline, "lease never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(get(&client, "lease"), bytes(b"w2"));
}

#[test]
fn compare_and_set_reports_stored_mismatch_and_not_found() {
    let (_server, client) = local();
    client.set("counter", "1").unwrap();
    assert_eq!(
        client.compare_and_set("counter", "1", "2").unwrap(),
        CasOutcome::Stored
    );
    assert_eq!(get(&client, "counter"), bytes(b"2"));
    assert_eq!(
        client.compare_and_set("counter", "1", "3").unwrap(),
        CasOutcome::Mismatch
    );
    assert_eq!(
        get(&client, "counter"),
        bytes(b"2"),
        "mismatch writes nothing"
    );
    assert_eq!(
        client.compare_and_set("missing", "1", "2").unwrap(),
        CasOutcome::NotFound
    );
    assert_eq!(get(&client, "missing"), None, "not found creates nothing");

    client.set("empty", "").unwrap();
    assert_eq!(
        client.compare_and_set("empty", "", [0u8, 255]).unwrap(),
        CasOutcome::Stored
    );
    assert_eq!(get(&client, "empty"), bytes(&[0, 255]));
    assert_eq!(
        client.compare_and_set("empty", [0u8, 254], "x").unwrap(),
        CasOutcome::Mismatch
    );
}

#[test]
fn compare_and_set_of_an_expired_key_is_not_found() {
    let (_server, client) = local();
    let started = Instant::now();
    client
        .set_with_ttl("cas", "v", Duration::from_secs(1))
        .unwrap();
    // The new value gets its own TTL.
    assert_eq!(
        client
            .compare_and_set_with_ttl("cas", "v", "w", Duration::from_secs(1))
            .unwrap(),
        CasOutcome::Stored
    );
    // Probe with a wrong expected value: MISMATCH while live (writes
    // nothing), NOT_FOUND once expired.
    let deadline = started + Duration::from_secs(3);
    loop {
        match client.compare_and_set("cas", "probe", "x").unwrap() {
            CasOutcome::NotFound => break,
            CasOutcome::Mismatch => {}
            CasOutcome::Stored => panic!("stored although the value differs"),
        }
        assert!(Instant::now() < deadline, "entry never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        client.compare_and_set("cas", "w", "x").unwrap(),
        CasOutcome::NotFound
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(get(&client, "cas"), None);
}

// ----- stats -------------------------------------------------------------

#[test]
fn stats_follow_a_scripted_sequence_and_ignore_the_namespace() {
    let (_server, client) = local();
    let fresh = client.stats().unwrap();
    assert_eq!(
        (
            fresh.size,
            fresh.hits,
            fresh.misses,
            fresh.memory_usage_bytes
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(fresh.hit_rate, 0.0);

    client.set("a", "hello").unwrap(); // 5 bytes
    client.set("b", "").unwrap(); // 0 bytes
    client.set("c", [0u8; 100]).unwrap(); // 100 bytes
    let stats = client.stats().unwrap();
    assert_eq!(stats.size, 3);
    assert_eq!(stats.memory_usage_bytes, 105 + 3 * 33);

    assert!(client.get("a").unwrap().is_some()); // hit
    assert!(client.get("b").unwrap().is_some()); // hit
    assert!(client.get("nope").unwrap().is_none()); // miss
    assert!(client.get("nada").unwrap().is_none()); // miss
    assert!(client.get("a").unwrap().is_some()); // hit
    let stats = client.stats().unwrap();
    assert_eq!((stats.hits, stats.misses), (3, 2));
    assert!((stats.hit_rate - 0.6).abs() < 1e-9, "{}", stats.hit_rate);

    client.delete("b").unwrap();
    client.set("a", "hi").unwrap(); // overwrite: 5 -> 2 bytes
    let stats = client.stats().unwrap();
    assert_eq!(stats.size, 2);
    assert_eq!(stats.memory_usage_bytes, 102 + 2 * 33);

    let namespaced = client.with_namespace("tenant").unwrap();
    namespaced.set("a", "xyz").unwrap();
    assert!(namespaced.get("zzz").unwrap().is_none()); // miss
    let from_namespace = namespaced.stats().unwrap();
    let from_shared = client.stats().unwrap();
    assert_eq!(from_namespace, from_shared, "stats ignore the namespace");
    assert_eq!(from_shared.size, 3);
    assert_eq!(from_shared.memory_usage_bytes, 105 + 3 * 33);
    assert_eq!((from_shared.hits, from_shared.misses), (3, 3));
    assert!((from_shared.hit_rate - 0.5).abs() < 1e-9);
    assert_eq!(from_shared.lru_evictions, 0);
    assert_eq!(from_shared.expired_removals, 0);
    assert_eq!(from_shared.rejected_oversize, 0);
}

// ----- health and ping ---------------------------------------------------

#[test]
fn health_check_serves_the_server_and_the_cache_service_only() {
    let (_server, client) = local();
    assert_eq!(client.health_check(""), Ok(ServingStatus::Serving));
    assert_eq!(
        client.health_check("cache.CacheService"),
        Ok(ServingStatus::Serving)
    );
    match client.health_check("nope") {
        Err(Error::Status {
            code: Code::NotFound,
            ..
        }) => {}
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
}

#[test]
fn ping_answers_with_a_positive_round_trip_by_stats_and_by_health() {
    let server = Server::local().unwrap();
    let by_stats = client_for(&server);
    let by_health = Client::builder(&server.address())
        .timeout(CALL_TIMEOUT)
        .ping_method(PingMethod::Health)
        .build()
        .unwrap();
    let round_trip = by_stats.ping().unwrap();
    assert!(round_trip > Duration::ZERO && round_trip < CALL_TIMEOUT);
    let round_trip = by_health.ping().unwrap();
    assert!(round_trip > Duration::ZERO && round_trip < CALL_TIMEOUT);
}

// ----- metadata ----------------------------------------------------------

#[test]
fn request_id_and_custom_metadata_are_sent_without_disturbing_calls() {
    let (_server, client) = local();
    let traced = client.with_request_id("abc").unwrap();
    traced.set("k", "v").unwrap();
    assert_eq!(get(&traced, "k"), bytes(b"v"));
    let tagged = traced
        .with_metadata("x-caller", "billing service")
        .unwrap()
        .with_metadata_bin("x-trace-bin", &[0, 1, 254, 255])
        .unwrap();
    assert_eq!(get(&tagged, "k"), bytes(b"v"));
    assert_eq!(tagged.get_many(["k"]).unwrap().len(), 1);
    assert_eq!(tagged.stats().unwrap().size, 1);
}

#[test]
fn non_ascii_metadata_value_is_refused_by_the_client() {
    let client = client_without_server();
    assert_validation(client.with_metadata("x-note", "naïve"), "with_metadata");
    assert_validation(client.with_request_id("ïd-1"), "with_request_id");
    assert_validation(client.with_metadata("x-note", "line\nbreak"), "newline");
    assert_validation(
        client.with_metadata("x-cache-namespace", "café"),
        "raw namespace",
    );
    assert_validation(
        Client::builder("127.0.0.1:1")
            .metadata("x-note", "naïve")
            .build(),
        "builder metadata",
    );
}

#[test]
fn reserved_metadata_names_are_refused() {
    let client = client_without_server();
    for name in ["grpc-foo", "grpc-timeout", "te", "content-type"] {
        assert_validation(client.with_metadata(name, "v"), name);
        assert_validation(
            Client::builder("127.0.0.1:1").metadata(name, "v").build(),
            name,
        );
    }
    assert_validation(client.with_metadata_bin("grpc-foo-bin", b"v"), "grpc bin");
    assert_validation(client.with_metadata("X-Upper", "v"), "upper-case name");
}

// ----- concurrency -------------------------------------------------------

#[test]
fn sixty_four_threads_sharing_one_client_see_only_their_own_writes() {
    const THREADS: usize = 64;
    const ITERATIONS: usize = 500;
    let (_server, client) = local();
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let client = client.clone();
            std::thread::spawn(move || {
                let own = format!("thread-{thread}");
                let lock = format!("lock-{thread}");
                let mut operations = 0usize;
                for i in 0..ITERATIONS {
                    let value = format!("{thread}:{i}:{}", "x".repeat(i % 50));
                    client.set(&own, &value).unwrap();
                    assert_eq!(
                        client.get_string(&own).unwrap().as_deref(),
                        Some(value.as_str()),
                        "thread {thread} iteration {i}"
                    );
                    operations += 2;
                    match i % 10 {
                        0 => {
                            client.delete(&own).unwrap();
                            assert_eq!(client.get(&own).unwrap(), None);
                            assert!(client.set_if_absent(&lock, &value).unwrap());
                            assert!(!client.set_if_absent(&lock, "other").unwrap());
                            operations += 4;
                        }
                        5 => {
                            let stale = format!("{value}-stale");
                            assert_eq!(
                                client.compare_and_set(&lock, &stale, "no").unwrap(),
                                CasOutcome::Mismatch
                            );
                            let stored = client.get(&lock).unwrap().unwrap();
                            assert_eq!(
                                client.compare_and_set(&lock, &stored, &value).unwrap(),
                                CasOutcome::Stored
                            );
                            client.delete(&lock).unwrap();
                            assert_eq!(
                                client.compare_and_set(&lock, &value, "no").unwrap(),
                                CasOutcome::NotFound
                            );
                            operations += 5;
                        }
                        _ => {}
                    }
                }
                operations
            })
        })
        .collect();
    let operations: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let elapsed = started.elapsed();
    eprintln!("{operations} operations from {THREADS} threads in {elapsed:?}");
    // A hang guard, not a speed test (speed is measured in benches/): every
    // call already has a deadline, so a stuck client fails its call; this
    // catches a livelock that keeps calls succeeding far too slowly. Under
    // a parallel test run on 2 busy cores it took up to ~90 s.
    assert!(elapsed < Duration::from_secs(300), "took {elapsed:?}");
    let stats = client.stats().unwrap();
    // Each thread's own key survives with its last value; locks were deleted.
    assert_eq!(stats.size as usize, THREADS);
    for thread in 0..THREADS {
        let last = ITERATIONS - 1;
        let expected = format!("{thread}:{last}:{}", "x".repeat(last % 50));
        assert_eq!(
            client.get_string(&format!("thread-{thread}")).unwrap(),
            Some(expected)
        );
    }
}

// ----- lifecycle ---------------------------------------------------------

#[test]
fn close_makes_every_later_call_on_every_clone_closed() {
    let (_server, client) = local();
    client.set("k", "v").unwrap();
    let clone = client.clone();
    let namespaced = client.with_namespace("ns").unwrap();
    client.close();
    assert_eq!(client.get("k"), Err(Error::Closed));
    assert_eq!(client.set("k", "w"), Err(Error::Closed));
    assert_eq!(client.delete("k"), Err(Error::Closed));
    assert_eq!(client.set_if_absent("k", "w"), Err(Error::Closed));
    assert_eq!(client.compare_and_set("k", "v", "w"), Err(Error::Closed));
    assert_eq!(client.get_many(["k"]), Err(Error::Closed));
    assert_eq!(client.set_many([("k", "w")]), Err(Error::Closed));
    assert_eq!(client.delete_many(["k"]), Err(Error::Closed));
    assert!(matches!(client.stats(), Err(Error::Closed)));
    assert_eq!(client.ping(), Err(Error::Closed));
    assert_eq!(client.health_check(""), Err(Error::Closed));
    assert_eq!(clone.get("k"), Err(Error::Closed));
    assert_eq!(namespaced.get("k"), Err(Error::Closed));
    client.close(); // closing twice is harmless
    assert_eq!(clone.get("k"), Err(Error::Closed));
}

#[test]
fn dropping_a_clone_leaves_the_others_working() {
    let (_server, client) = local();
    let clone = client.clone();
    clone.set("k", "v").unwrap();
    drop(clone);
    assert_eq!(get(&client, "k"), bytes(b"v"));
    let handle = client.with_timeout(Duration::from_secs(5)).unwrap();
    std::thread::spawn(move || {
        handle.set("k2", "from thread").unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(get(&client, "k2"), bytes(b"from thread"));
    let namespaced = client.with_namespace("ns").unwrap();
    drop(namespaced);
    assert_eq!(get(&client, "k"), bytes(b"v"));
}

// ----- the reference server's error texts ---------------------------------

const EMPTY_KEY: &str = "Key cannot be empty";
const KEY_TOO_LONG: &str = "Key is too long (max 256)";
const NAMESPACE_TOO_LONG: &str = "Namespace is too long (max 64)";
const NAMESPACE_CHARACTERS: &str =
    "Namespace must contain only letters, numbers, dots, dashes, or underscores";
const OVERSIZE: &str = "Value exceeds maximum allowed cache entry size";
const NO_ROOM: &str = "Cache capacity exhausted and cannot accommodate new entry";

fn namespaced_too_long(prefix_chars: usize) -> String {
    format!(
        "Namespaced key is too long (max storage key length 256; namespace prefix adds {prefix_chars} characters)"
    )
}

fn item_error<T>(item: &ItemResult<T>) -> &str {
    match &item.result {
        Err(Error::InvalidArgument(message) | Error::ResourceExhausted(message)) => message.text(),
        Err(other) => panic!("{:?}: expected an item error, got {other:?}", item.key),
        Ok(_) => panic!("{:?}: expected an item error", item.key),
    }
}

fn server_text<T: std::fmt::Debug>(result: Result<T, Error>) -> (Code, String) {
    match result {
        Err(Error::InvalidArgument(message)) => (Code::InvalidArgument, message.text().to_owned()),
        Err(Error::ResourceExhausted(message)) => {
            (Code::ResourceExhausted, message.text().to_owned())
        }
        other => panic!("expected a server refusal, got {other:?}"),
    }
}

#[test]
fn multi_call_item_errors_carry_the_reference_servers_key_texts() {
    let (_server, client) = local();
    let long = "k".repeat(257);
    let got = client.get_many(["", long.as_str()]).unwrap();
    assert_eq!(
        (item_error(&got[0]), item_error(&got[1])),
        (EMPTY_KEY, KEY_TOO_LONG)
    );
    let deleted = client.delete_many(["", long.as_str()]).unwrap();
    assert_eq!(
        (item_error(&deleted[0]), item_error(&deleted[1])),
        (EMPTY_KEY, KEY_TOO_LONG)
    );
    let set = client.set_many([("", "v"), (long.as_str(), "v")]).unwrap();
    assert_eq!(
        (item_error(&set[0]), item_error(&set[1])),
        (EMPTY_KEY, KEY_TOO_LONG)
    );

    // "3:app:" adds 6 characters, "2:eu:" 5.
    let app = client.with_namespace("app").unwrap();
    let k251 = "k".repeat(251);
    assert_eq!(
        item_error(&app.get_many([k251.as_str()]).unwrap()[0]),
        namespaced_too_long(6)
    );
    assert_eq!(
        item_error(&app.set_many([(k251.as_str(), "v")]).unwrap()[0]),
        namespaced_too_long(6)
    );
    let eu = client.with_namespace("eu").unwrap();
    let k252 = "k".repeat(252);
    assert_eq!(
        item_error(&eu.delete_many([k252.as_str()]).unwrap()[0]),
        namespaced_too_long(5)
    );
}

#[test]
fn multi_set_item_errors_carry_the_reference_servers_size_texts() {
    let server = Server::builder()
        .max_memory_bytes(200)
        .max_value_bytes(1024)
        .start()
        .unwrap();
    let client = client_for(&server);
    let results = client
        .set_many([("big", vec![0u8; 992]), ("wide", vec![0u8; 500])])
        .unwrap();
    assert_eq!(item_error(&results[0]), OVERSIZE);
    assert_eq!(item_error(&results[1]), NO_ROOM);
}

#[test]
fn single_call_refusals_carry_the_reference_servers_texts() {
    let server = Server::builder()
        .max_memory_bytes(2000)
        .max_value_bytes(1024)
        .start()
        .unwrap();
    let client = client_for(&server);
    let invalid = |text: &str| (Code::InvalidArgument, text.to_owned());
    let exhausted = |text: &str| (Code::ResourceExhausted, text.to_owned());

    // A namespace sent as raw metadata is checked by the server only.
    let bad = client
        .with_metadata("x-cache-namespace", "bad ns!")
        .unwrap();
    assert_eq!(server_text(bad.get("k")), invalid(NAMESPACE_CHARACTERS));
    assert_eq!(
        server_text(bad.set("k", "v")),
        invalid(NAMESPACE_CHARACTERS)
    );
    assert_eq!(
        server_text(bad.get_many(["k"])),
        invalid(NAMESPACE_CHARACTERS)
    );
    let long = client
        .with_metadata("x-cache-namespace", &"n".repeat(65))
        .unwrap();
    assert_eq!(server_text(long.delete("k")), invalid(NAMESPACE_TOO_LONG));
    assert_eq!(
        server_text(long.delete_many(["k"])),
        invalid(NAMESPACE_TOO_LONG)
    );
    let app = client.with_metadata("x-cache-namespace", "app").unwrap();
    let k251 = "k".repeat(251);
    assert_eq!(
        server_text(app.get(&k251)),
        invalid(&namespaced_too_long(6))
    );
    assert_eq!(
        server_text(app.compare_and_set(&k251, "a", "b")),
        invalid(&namespaced_too_long(6))
    );

    assert_eq!(
        server_text(client.set("k", vec![0u8; 992])),
        exhausted(OVERSIZE)
    );
    assert_eq!(
        server_text(client.set_if_absent("k", vec![0u8; 992])),
        exhausted(OVERSIZE)
    );
    client.set("k", "a").unwrap();
    assert_eq!(
        server_text(client.compare_and_set("k", "a", vec![0u8; 992])),
        exhausted(OVERSIZE)
    );
    let tight_server = Server::builder()
        .max_memory_bytes(100)
        .max_value_bytes(1024)
        .start()
        .unwrap();
    let tight = client_for(&tight_server);
    assert_eq!(
        server_text(tight.set("k", vec![0u8; 100])),
        exhausted(NO_ROOM)
    );
}
