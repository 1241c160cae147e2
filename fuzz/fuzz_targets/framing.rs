//! Message framing: any bytes, split into DATA chunks anywhere, either
//! decode into messages or fail with a status; never panic, never buffer
//! past the limit.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tiny_cache_client::codec::MessageDecoder;

fuzz_target!(|input: &[u8]| {
    let Some((&split_seed, data)) = input.split_first() else {
        return;
    };
    let max_len = 64 + usize::from(split_seed) * 16;
    let mut decoder = MessageDecoder::new(max_len);
    let chunk = usize::from(split_seed % 17) + 1;
    for piece in data.chunks(chunk) {
        if decoder.push(Bytes::copy_from_slice(piece)).is_err() {
            // Sticky: a failed decoder keeps failing.
            assert!(decoder.push(Bytes::from_static(b"\0")).is_err());
            return;
        }
        while let Some(message) = decoder.next_message() {
            assert!(message.len() <= max_len);
        }
        assert!(decoder.buffered_len() <= max_len + 5);
    }
});
