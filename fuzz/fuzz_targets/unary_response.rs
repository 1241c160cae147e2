//! A whole unary response as a peer might send it: any HTTP status,
//! content type, data chunks and trailers end in a message or a typed
//! error, never a panic.
#![no_main]

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use libfuzzer_sys::fuzz_target;
use tiny_cache_client::codec::UnaryDecoder;

fuzz_target!(|input: &[u8]| {
    if input.len() < 4 {
        return;
    }
    let (control, rest) = input.split_at(4);
    let status = 100 + u16::from(control[0]) * 2 % 500;
    let mut head = Response::new(());
    *head.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    let content_types: [&'static str; 4] =
        ["application/grpc", "application/grpc+proto", "text/html", "application/grpcx"];
    head.headers_mut().insert(
        "content-type",
        HeaderValue::from_static(content_types[usize::from(control[1] % 4)]),
    );
    let fields: Vec<&[u8]> = rest.splitn(4, |&b| b == 0xfe).collect();
    if control[2] & 1 == 1 {
        if let Some(Ok(value)) = fields.first().map(|f| HeaderValue::from_bytes(f)) {
            head.headers_mut().insert("grpc-status", value);
        }
    }
    let (parts, ()) = head.into_parts();
    let mut decoder = UnaryDecoder::new(256);
    if decoder.on_head(&parts).is_err() {
        return;
    }
    if let Some(body) = fields.get(1) {
        for chunk in body.chunks(usize::from(control[3] % 9) + 1) {
            if decoder.on_data(Bytes::copy_from_slice(chunk)).is_err() {
                return;
            }
        }
    }
    let mut trailers = HeaderMap::new();
    if let Some(Ok(value)) = fields.get(2).map(|f| HeaderValue::from_bytes(f)) {
        trailers.insert("grpc-status", value);
    }
    if let Some(Ok(value)) = fields.get(3).map(|f| HeaderValue::from_bytes(f)) {
        trailers.insert("grpc-message", value);
    }
    let _ = decoder.finish((control[2] & 2 == 2).then_some(&trailers));
});
