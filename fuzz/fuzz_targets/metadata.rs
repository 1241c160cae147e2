//! Metadata: any name and value are accepted or refused with a status;
//! whatever is accepted is a legal HTTP/2 header and binary values round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tiny_cache_client::codec::{decode_bin, Metadata, MAX_METADATA_BYTES};

fuzz_target!(|input: &[u8]| {
    let Some(split) = input.iter().position(|&b| b == b'=') else {
        let _ = decode_bin(input);
        return;
    };
    let (name, value) = (&input[..split], &input[split + 1..]);
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    let mut metadata = Metadata::new();
    if name.ends_with("-bin") {
        if metadata.insert_bin(name, value).is_ok() {
            let sent = metadata.get(name).expect("inserted");
            assert_eq!(decode_bin(sent.as_bytes()).as_deref(), Some(value));
        }
    } else if let Ok(value) = std::str::from_utf8(value) {
        if metadata.insert(name, value).is_ok() {
            assert!(value.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        }
    }
    let mut headers = http::HeaderMap::new();
    metadata.append_to(&mut headers);
    // insert and insert_bin enforce the header budget as they go.
    assert!(metadata.encoded_len() <= MAX_METADATA_BYTES);
});
