#![cfg(all(feature = "server", feature = "unstable-internals"))]
//! The embedded server's answers frame by frame, read with a bare h2 client
//! over loopback: the shapes the reference server uses on the wire.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Request};
use prost::Message;
use tiny_cache_client::proto::cache::{CacheItem, CacheKey, CacheValue, CompareAndSetRequest};
use tiny_cache_client::server::Server;

/// What came back on one stream.
struct Answer {
    head: http::response::Parts,
    /// The response ended with its HEADERS frame (Trailers-Only).
    trailers_only: bool,
    data: Vec<u8>,
    trailers: Option<HeaderMap>,
}

fn framed(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

fn call(server: &Server, path: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        let (sender, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut sender = sender.ready().await.unwrap();
        let mut request = Request::post(format!("http://{}{path}", server.address()))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (response, mut stream) = sender
            .send_request(request.body(()).unwrap(), false)
            .unwrap();
        stream.send_data(body, true).unwrap();
        let response = response.await.unwrap();
        let (head, mut body) = response.into_parts();
        let trailers_only = body.is_end_stream();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.unwrap();
        Answer {
            head,
            trailers_only,
            data,
            trailers,
        }
    })
}

fn header<'a>(map: &'a HeaderMap, name: &str) -> &'a str {
    map.get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} in {map:?}"))
}

#[test]
fn success_is_headers_one_message_and_ok_trailers_with_the_request_id_echoed() {
    let server = Server::local().unwrap();
    let answer = call(
        &server,
        "/cache.CacheService/Get",
        &[("x-request-id", "trace-123")],
        framed(&CacheKey { key: "k".into() }),
    );
    assert_eq!(answer.head.status, 200);
    assert!(!answer.trailers_only);
    assert_eq!(
        header(&answer.head.headers, "content-type"),
        "application/grpc"
    );
    assert_eq!(header(&answer.head.headers, "x-request-id"), "trace-123");
    let reply = CacheValue::decode(&answer.data[5..]).unwrap();
    assert_eq!(answer.data[..5], [0, 0, 0, 0, answer.data.len() as u8 - 5]);
    assert!(!reply.found);
    let trailers = answer.trailers.unwrap();
    assert_eq!(header(&trailers, "grpc-status"), "0");
    assert!(
        trailers.get("x-request-id").is_none(),
        "request id belongs in the headers"
    );
}

#[test]
fn server_makes_up_a_32_hex_request_id_when_none_is_sent() {
    let server = Server::local().unwrap();
    let answer = call(
        &server,
        "/cache.CacheService/Stats",
        &[],
        framed(&CacheKey::default()),
    );
    let id = header(&answer.head.headers, "x-request-id");
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
}

#[test]
fn handler_error_is_headers_then_an_empty_message_then_the_status_in_trailers() {
    let server = Server::local().unwrap();
    let answer = call(
        &server,
        "/cache.CacheService/Get",
        &[("x-request-id", "r1")],
        framed(&CacheKey { key: String::new() }),
    );
    assert!(!answer.trailers_only);
    assert_eq!(header(&answer.head.headers, "x-request-id"), "r1");
    assert_eq!(answer.data, [0, 0, 0, 0, 0]);
    let trailers = answer.trailers.unwrap();
    assert_eq!(header(&trailers, "grpc-status"), "3");
    assert_eq!(header(&trailers, "grpc-message"), "Key cannot be empty");
}

/// The status code and `grpc-message` of a handler error.
fn refusal(server: &Server, path: &str, namespace: Option<&str>, body: Bytes) -> (String, String) {
    let headers: Vec<_> = namespace
        .map(|ns| ("x-cache-namespace", ns))
        .into_iter()
        .collect();
    let answer = call(server, path, &headers, body);
    assert!(
        !answer.trailers_only,
        "{path}: a handler error is not trailers-only"
    );
    let trailers = answer.trailers.expect("trailers");
    (
        header(&trailers, "grpc-status").to_owned(),
        header(&trailers, "grpc-message").to_owned(),
    )
}

#[test]
fn invalid_keys_and_namespaces_carry_the_reference_servers_texts_word_for_word() {
    let server = Server::local().unwrap();
    let get = |namespace: Option<&str>, key: String| {
        refusal(
            &server,
            "/cache.CacheService/Get",
            namespace,
            framed(&CacheKey { key }),
        )
    };
    let invalid = |text: &str| ("3".to_owned(), text.to_owned());
    assert_eq!(get(None, String::new()), invalid("Key cannot be empty"));
    assert_eq!(
        get(None, "k".repeat(257)),
        invalid("Key is too long (max 256)")
    );
    assert_eq!(
        get(Some(&"n".repeat(65)), "k".into()),
        invalid("Namespace is too long (max 64)")
    );
    let bad_characters =
        invalid("Namespace must contain only letters, numbers, dots, dashes, or underscores");
    assert_eq!(get(Some("-app"), "k".into()), bad_characters);
    assert_eq!(get(Some("a b"), "k".into()), bad_characters);
    // The namespace is checked before the key.
    assert_eq!(get(Some("a/b"), String::new()), bad_characters);
    // "3:app:" adds 6 characters; "12:tenant-1.eu:" adds 15.
    assert_eq!(
        get(Some("app"), "k".repeat(251)),
        invalid("Namespaced key is too long (max storage key length 256; namespace prefix adds 6 characters)")
    );
    assert_eq!(
        get(Some("tenant-1.eu"), "k".repeat(242)),
        invalid("Namespaced key is too long (max storage key length 256; namespace prefix adds 15 characters)")
    );
    // Every single-key method words them the same.
    let item = |key: &str| CacheItem {
        key: key.into(),
        value: Bytes::from_static(b"v"),
        ttl: 0,
    };
    for path in ["Set", "SetIfAbsent"] {
        assert_eq!(
            refusal(
                &server,
                &format!("/cache.CacheService/{path}"),
                None,
                framed(&item(""))
            ),
            invalid("Key cannot be empty"),
            "{path}"
        );
    }
    assert_eq!(
        refusal(
            &server,
            "/cache.CacheService/Delete",
            None,
            framed(&CacheKey {
                key: "k".repeat(300)
            })
        ),
        invalid("Key is too long (max 256)")
    );
    let cas = CompareAndSetRequest {
        key: "k".repeat(251),
        ..CompareAndSetRequest::default()
    };
    assert_eq!(
        refusal(&server, "/cache.CacheService/CompareAndSet", Some("app"), framed(&cas)),
        invalid("Namespaced key is too long (max storage key length 256; namespace prefix adds 6 characters)")
    );
}

#[test]
fn size_refusals_carry_the_reference_servers_texts_word_for_word() {
    let exhausted = |text: &str| ("8".to_owned(), text.to_owned());
    let oversize = exhausted("Value exceeds maximum allowed cache entry size");
    let server = Server::builder().max_value_bytes(1024).start().unwrap();
    let big = CacheItem {
        key: "k".into(),
        value: vec![0u8; 992].into(),
        ttl: 0,
    };
    for path in ["Set", "SetIfAbsent"] {
        let path = format!("/cache.CacheService/{path}");
        assert_eq!(
            refusal(&server, &path, None, framed(&big)),
            oversize,
            "{path}"
        );
    }
    let small = CacheItem {
        value: Bytes::from_static(b"a"),
        ..big.clone()
    };
    let answer = call(&server, "/cache.CacheService/Set", &[], framed(&small));
    assert_eq!(
        header(answer.trailers.as_ref().unwrap(), "grpc-status"),
        "0"
    );
    let cas = CompareAndSetRequest {
        key: "k".into(),
        expected_value: Bytes::from_static(b"a"),
        value: vec![0u8; 992].into(),
        ttl: 0,
    };
    assert_eq!(
        refusal(
            &server,
            "/cache.CacheService/CompareAndSet",
            None,
            framed(&cas)
        ),
        oversize
    );

    let full = Server::builder()
        .max_memory_bytes(100)
        .max_value_bytes(1024)
        .start()
        .unwrap();
    let no_room = CacheItem {
        value: vec![0u8; 100].into(),
        ..big
    };
    assert_eq!(
        refusal(&full, "/cache.CacheService/Set", None, framed(&no_room)),
        exhausted("Cache capacity exhausted and cannot accommodate new entry")
    );
}

#[test]
fn grpc_message_is_percent_encoded_with_spaces_kept_raw() {
    // The reference texts are plain ASCII; the health service's refusal
    // names the unknown service, so it can carry any text.
    let server = Server::local().unwrap();
    let request = tiny_cache_client::proto::health::HealthCheckRequest {
        service: "naïve 100%".into(),
    };
    let answer = call(
        &server,
        "/grpc.health.v1.Health/Check",
        &[],
        framed(&request),
    );
    let trailers = answer.trailers.unwrap();
    assert_eq!(header(&trailers, "grpc-status"), "5");
    let message = header(&trailers, "grpc-message");
    assert!(message.contains("na%C3%AFve 100%25"), "{message}");
}

#[test]
fn unknown_method_is_trailers_only_unimplemented() {
    let server = Server::local().unwrap();
    let answer = call(
        &server,
        "/cache.CacheService/Nope",
        &[],
        framed(&CacheKey::default()),
    );
    assert!(answer.trailers_only);
    assert_eq!(header(&answer.head.headers, "grpc-status"), "12");
    assert!(answer.head.headers.get("x-request-id").is_some());
}

#[test]
fn undecodable_request_is_trailers_only_unknown() {
    let server = Server::local().unwrap();
    // Field 1 (key, a string) holding bytes that are not UTF-8.
    let body = Bytes::from_static(&[0, 0, 0, 0, 4, 0x0a, 2, 0xff, 0xfe]);
    let answer = call(&server, "/cache.CacheService/Get", &[], body);
    assert!(answer.trailers_only);
    assert_eq!(header(&answer.head.headers, "grpc-status"), "2");
}

#[test]
fn oversize_request_is_trailers_only_resource_exhausted_before_the_handler() {
    let server = Server::local().unwrap();
    let item = CacheItem {
        key: "big".into(),
        value: vec![7u8; 4 * 1024 * 1024 + 1].into(),
        ttl: 0,
    };
    let answer = call(&server, "/cache.CacheService/Set", &[], framed(&item));
    assert!(answer.trailers_only);
    assert_eq!(header(&answer.head.headers, "grpc-status"), "8");
    // Refused before the handler: nothing was stored or counted.
    let stats = tiny_cache_client::Client::new(&server.address())
        .unwrap()
        .stats()
        .unwrap();
    assert_eq!((stats.size, stats.rejected_oversize), (0, 0));
}

#[test]
fn health_check_of_an_unknown_service_is_not_found() {
    let server = Server::local().unwrap();
    let request = tiny_cache_client::proto::health::HealthCheckRequest {
        service: "other.Service".into(),
    };
    let answer = call(
        &server,
        "/grpc.health.v1.Health/Check",
        &[],
        framed(&request),
    );
    assert_eq!(
        header(answer.trailers.as_ref().unwrap(), "grpc-status"),
        "5"
    );
}

#[test]
fn graceful_shutdown_sends_goaway_and_lets_an_open_call_finish() {
    let server = Server::local().unwrap();
    let address = server.local_addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let (sender, connection) = h2::client::handshake(tcp).await.unwrap();
        let driver = tokio::spawn(connection);
        let get = || {
            Request::post(format!("http://{address}/cache.CacheService/Get"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap()
        };
        // A first complete call proves the server has accepted this
        // connection (an h2 client handshake does not wait for the server;
        // a connection still in the listen backlog at shutdown is closed,
        // not drained).
        let mut sender = sender.ready().await.unwrap();
        let (first, mut first_body) = sender.send_request(get(), false).unwrap();
        first_body
            .send_data(framed(&CacheKey { key: "k".into() }), true)
            .unwrap();
        let mut first = first.await.unwrap().into_body();
        while let Some(chunk) = first.data().await {
            chunk.unwrap();
        }
        let mut sender = sender.ready().await.unwrap();
        let request = get();
        // The call is open (headers sent) but its message is not yet.
        let (response, mut stream) = sender.send_request(request, false).unwrap();

        let stopping = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            server.shutdown();
            started.elapsed()
        });
        // Finish the call only once its connection has received the
        // server's GOAWAY: from then on h2 refuses new streams on it.
        let goaway_seen = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while sender.clone().ready().await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
        .await;
        assert!(
            goaway_seen.is_ok(),
            "no GOAWAY arrived after shutdown began"
        );
        stream
            .send_data(framed(&CacheKey { key: "k".into() }), true)
            .unwrap();
        let (head, mut body) = response.await.unwrap().into_parts();
        assert_eq!(head.status, 200);
        while let Some(chunk) = body.data().await {
            chunk.unwrap();
        }
        let trailers = body.trailers().await.unwrap().unwrap();
        assert_eq!(
            header(&trailers, "grpc-status"),
            "0",
            "the open call finished"
        );

        // The server took no new streams and closed once the call was done.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(3), driver).await;
        assert!(closed.is_ok(), "the connection did not close after GOAWAY");
        let took = tokio::task::spawn_blocking(move || stopping.join().unwrap())
            .await
            .unwrap();
        assert!(
            took < std::time::Duration::from_secs(2),
            "shutdown took {took:?}"
        );
    });
}
