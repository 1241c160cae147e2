//! What the `tracing` feature reports, read back through a formatting
//! subscriber, against an embedded server over loopback. Alone in its
//! binary: tracing caches each callsite's interest process-wide, and a test
//! running calls on another thread without a subscriber could make this
//! one miss an event.
#![cfg(all(feature = "server", feature = "tracing"))]

use std::io::Write;
use std::sync::{Arc, Mutex};

use tiny_cache_client::server::Server;
use tiny_cache_client::Client;

/// A writer into a shared buffer, for the formatting subscriber.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn each_call_is_a_span_with_method_attempt_code_and_request_id() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let server = Server::builder().max_value_bytes(8).start().unwrap();
    let client = Client::new(&server.address()).unwrap();
    tracing::subscriber::with_default(subscriber, || {
        client.with_request_id("trace-1").unwrap().get("k").unwrap();
        let _ = client
            .with_request_id("trace-2")
            .unwrap()
            .set("k", "more than eight bytes");
    });
    let printed = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let spans: Vec<&str> = printed
        .lines()
        .filter(|l| l.contains("tiny_cache_client.call"))
        .collect();
    assert!(
        spans.iter().any(|l| l.contains("method=\"Get\"")
            && l.contains("attempt=1")
            && l.contains("code=\"OK\"")
            && l.contains("request_id=\"trace-1\"")),
        "{printed}"
    );
    assert!(
        spans.iter().any(|l| l.contains("method=\"Set\"")
            && l.contains("code=\"RESOURCE_EXHAUSTED\"")
            && l.contains("request_id=\"trace-2\"")),
        "{printed}"
    );
    assert!(printed.contains("call failed"), "{printed}");
}
