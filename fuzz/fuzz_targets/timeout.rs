//! grpc-timeout: any header value parses or is refused; any duration
//! encodes into at most 8 digits and a unit and never reads back shorter.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tiny_cache_client::codec::{decode_timeout, encode_timeout};

fuzz_target!(|input: &[u8]| {
    let _ = decode_timeout(input);
    if input.len() >= 12 {
        let secs = u64::from_le_bytes(input[..8].try_into().unwrap_or_default());
        let nanos = u32::from_le_bytes(input[8..12].try_into().unwrap_or_default()) % 1_000_000_000;
        let duration = Duration::new(secs, nanos);
        let encoded = encode_timeout(duration);
        assert!(encoded.len() <= 9);
        let decoded = decode_timeout(encoded.as_bytes()).expect("encoded timeouts parse");
        // Capped at 99999999 hours; below the cap never shorter than asked.
        assert!(decoded >= duration || decoded >= Duration::from_secs(99_999_999 * 3600));
    }
});
