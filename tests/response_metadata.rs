//! Response metadata, the server's request id on errors, `touch`, the
//! crate's own `Stats`, and the one rule every setter follows, against the
//! embedded server over loopback.
#![cfg(feature = "server")]

use std::time::Duration;

use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, Code, Error, Ttl};

fn server() -> Server {
    Server::local().expect("embedded server")
}

fn is_32_hex(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn a_success_brings_back_the_request_id_the_server_made_up() {
    let server = server();
    let client = Client::new(&server.address()).unwrap();
    client.set("k", "v").unwrap();
    let response = client.call_with_metadata(|c| c.get("k")).unwrap();
    let id = response
        .metadata()
        .request_id()
        .expect("x-request-id")
        .to_owned();
    assert!(is_32_hex(&id), "{id:?}");
    assert_eq!(
        response.metadata().get("content-type"),
        Some("application/grpc")
    );
    assert_eq!(response.into_inner().as_deref(), Some(&b"v"[..]));

    // Every call gets its own id.
    let again = client.call_with_metadata(|c| c.get("k")).unwrap();
    assert_ne!(again.metadata().request_id(), Some(id.as_str()));
}

#[test]
fn the_request_id_sent_is_the_one_returned_for_every_operation() {
    let server = server();
    let client = Client::new(&server.address())
        .unwrap()
        .with_request_id("req-meta-1")
        .unwrap();
    let ids = [
        client
            .call_with_metadata(|c| c.set("a", "1"))
            .unwrap()
            .metadata()
            .request_id()
            .map(str::to_owned),
        client
            .call_with_metadata(|c| c.get_many(["a", "b"]))
            .unwrap()
            .metadata()
            .request_id()
            .map(str::to_owned),
        client
            .call_with_metadata(|c| c.compare_and_set("a", "1", "2"))
            .unwrap()
            .metadata()
            .request_id()
            .map(str::to_owned),
        client
            .call_with_metadata(|c| c.stats())
            .unwrap()
            .metadata()
            .request_id()
            .map(str::to_owned),
        client
            .call_with_metadata(|c| c.health_check(""))
            .unwrap()
            .metadata()
            .request_id()
            .map(str::to_owned),
    ];
    for id in ids {
        assert_eq!(id.as_deref(), Some("req-meta-1"));
    }
}

#[test]
fn the_metadata_is_the_last_calls_and_calls_outside_a_capture_keep_none() {
    let server = server();
    let client = Client::new(&server.address()).unwrap();
    let first = client.with_request_id("first").unwrap();
    let second = client.with_request_id("second").unwrap();
    let response = client
        .call_with_metadata(|_| {
            first.set("k", "1")?;
            second.get("k")
        })
        .unwrap();
    assert_eq!(response.metadata().request_id(), Some("second"));

    // A capture with no call in it has nothing to show.
    let empty = client.call_with_metadata(|_| Ok(7)).unwrap();
    assert_eq!(empty.metadata().request_id(), None);
    assert_eq!(empty.into_inner(), 7);
}

#[test]
fn a_handler_error_names_the_servers_request_id_in_display() {
    // A value over the server's per-entry limit: only the server refuses
    // it, from its handler.
    let limited = Server::builder().max_value_bytes(16).start().unwrap();
    let small = Client::new(&limited.address()).unwrap();
    let error = small
        .with_request_id("req-err-1")
        .unwrap()
        .set("k", vec![0u8; 64])
        .unwrap_err();
    assert!(matches!(error, Error::ResourceExhausted(_)), "{error:?}");
    assert_eq!(error.request_id(), Some("req-err-1"));
    assert!(
        error.to_string().contains("(request id req-err-1)"),
        "{error}"
    );

    // Without an id sent, the error carries the one the server made up.
    let error = small.set("k", vec![0u8; 64]).unwrap_err();
    let id = error.request_id().expect("server id");
    assert!(is_32_hex(id), "{id:?}");
}

#[test]
fn an_error_refused_before_the_handler_carries_the_request_id_too() {
    // The server refuses a message over its receive limit before any
    // handler runs (a Trailers-Only answer); the client is allowed to send
    // it.
    let server = Server::builder()
        .max_receive_message_bytes(1024)
        .start()
        .unwrap();
    let client = Client::builder(&server.address())
        .max_retries(0)
        .build()
        .unwrap();
    let error = client
        .with_request_id("req-big")
        .unwrap()
        .set("k", vec![7u8; 4096])
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert_eq!(error.request_id(), Some("req-big"), "{error:?}");
}

#[test]
fn client_side_errors_have_no_request_id() {
    let server = server();
    let client = Client::new(&server.address()).unwrap();
    let error = client.get("").unwrap_err();
    assert!(matches!(error, Error::Validation(_)));
    assert_eq!(error.request_id(), None);
    assert!(!error.to_string().contains("request id"));
}

#[test]
fn touch_extends_the_ttl_without_changing_the_value() {
    let server = server();
    let client = Client::new(&server.address()).unwrap();
    client
        .set_with_ttl("session", "alice", Duration::from_secs(1))
        .unwrap();
    assert!(client.touch("session", Ttl::Never).unwrap());
    // The original TTL would have expired the entry by now.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        client.get_string("session").unwrap().as_deref(),
        Some("alice")
    );

    assert!(!client.touch("missing", Duration::from_secs(5)).unwrap());
    assert!(matches!(
        client.touch("session", Duration::ZERO),
        Err(Error::Validation(_))
    ));
}

#[test]
fn touch_shortens_a_ttl_too() {
    let server = server();
    let client = Client::new(&server.address()).unwrap();
    client.set_with_ttl("k", "v", Ttl::Never).unwrap();
    assert!(client.touch("k", Duration::from_secs(1)).unwrap());
    let expired = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        client.get("k").unwrap().is_none()
    });
    assert!(expired, "the touched TTL of 1 s never took effect");
}

#[test]
fn stats_are_the_crates_own_type_with_widened_counters() {
    let server = server();
    let client = Client::new(&server.address()).unwrap();
    client.set("k", "v").unwrap();
    client.get("k").unwrap();
    client.get("nope").unwrap();
    let stats = client.stats().unwrap();
    let (size, hits, misses): (u64, u64, u64) = (stats.size, stats.hits, stats.misses);
    assert_eq!((size, hits, misses), (1, 1, 1));
    assert!(stats.to_string().contains("50.0 % hit rate"), "{stats}");
}

#[test]
fn every_setter_refuses_out_of_range_values_instead_of_clamping() {
    let refused = |builder: tiny_cache_client::ClientBuilder| match builder.build() {
        Err(Error::Validation(why)) => why,
        other => panic!("expected a validation error, got {other:?}"),
    };
    let b = || Client::builder("127.0.0.1:1");
    assert!(refused(b().timeout(Duration::ZERO)).contains("timeout"));
    assert!(refused(b().connect_timeout(Duration::ZERO)).contains("connect timeout"));
    assert!(refused(b().pool_size(0)).contains("worker"));
    assert!(
        refused(b().retry_backoff(Duration::from_secs(2), Duration::from_secs(1)))
            .contains("backoff")
    );
    assert!(refused(b().http2_windows(1 << 20, 1 << 16)).contains("connection window"));
    assert!(refused(b().http2_windows(100, 1 << 20)).contains("65535"));
    assert!(refused(b().http2_windows(1 << 20, u32::MAX)).contains("2147483647"));
    assert!(refused(b().max_send_message_bytes(0)).contains("positive"));
    assert!(refused(b().max_receive_message_bytes(0)).contains("positive"));
    assert!(
        refused(b().keepalive(Some(Duration::ZERO), Duration::from_secs(1))).contains("keepalive")
    );
    assert!(refused(b().default_ttl(Duration::ZERO)).contains("zero"));

    // The per-call override follows the same rule as the builder.
    let client = b().build().unwrap();
    assert!(matches!(
        client.with_timeout(Duration::ZERO),
        Err(Error::Validation(_))
    ));
    // The limits themselves are accepted.
    b().http2_windows(65_535, (1 << 31) - 1).build().unwrap();
    b().retry_backoff(Duration::ZERO, Duration::ZERO)
        .build()
        .unwrap();
}
