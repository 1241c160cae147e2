//! Status from trailers: any grpc-status, grpc-message and
//! grpc-status-details-bin values give a status, never a panic; percent
//! encoding round-trips.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tiny_cache_client::codec::{percent_decode_message, percent_encode_message, Status};

fuzz_target!(|input: &[u8]| {
    let parts: Vec<&[u8]> = input.splitn(3, |&b| b == 0xff).collect();
    let mut headers = HeaderMap::new();
    for (name, value) in ["grpc-status", "grpc-message", "grpc-status-details-bin"]
        .into_iter()
        .zip(parts.iter())
    {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(name, value);
        }
    }
    if let Some(status) = Status::from_header_map(&headers) {
        let mut written = HeaderMap::new();
        status.write_to(&mut written);
        let again = Status::from_header_map(&written).expect("written status reads back");
        assert_eq!(again.code(), status.code());
        assert_eq!(again.message(), status.message());
    }
    let decoded = percent_decode_message(input);
    assert_eq!(percent_decode_message(percent_encode_message(&decoded).as_bytes()), decoded);
});
