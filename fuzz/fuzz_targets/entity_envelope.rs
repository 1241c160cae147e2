//! The entity cache's entry envelope and generation tokens: any bytes read
//! back under an entry key decode into exactly the envelope that encodes
//! back to them, or into nothing (a miss); an entry is current only under
//! its own tokens and after their buffers; any token's buffer parses
//! without a panic, and a token this crate writes gives its buffer back.
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tiny_cache_client::fuzzing::entity::{buffer_until_ms, new_token, now_ms, Envelope};

const FORMAT_V1: u8 = 0xE1;

/// The layout the documentation gives, read independently of the crate.
fn reference_decode(bytes: &[u8]) -> Option<(u64, &[u8], &[u8], &[u8])> {
    let (&format, rest) = bytes.split_first()?;
    if format != FORMAT_V1 || rest.len() < 8 {
        return None;
    }
    let (read_at, rest) = rest.split_at(8);
    let read_at = u64::from_le_bytes(read_at.try_into().ok()?);
    let (&global_len, rest) = rest.split_first()?;
    let (global, rest) = rest.split_at_checked(usize::from(global_len))?;
    let (&entity_len, rest) = rest.split_first()?;
    let (entity, value) = rest.split_at_checked(usize::from(entity_len))?;
    Some((read_at, global, entity, value))
}

fn check_envelope_bytes(bytes: &[u8], global_now: &[u8], entity_now: &[u8]) {
    let stored = Bytes::copy_from_slice(bytes);
    let decoded = Envelope::decode(&stored);
    match (&decoded, reference_decode(bytes)) {
        (None, None) => {}
        (Some(envelope), Some((read_at, global, entity, value))) => {
            assert_eq!(envelope.read_at_ms, read_at);
            assert_eq!(&envelope.global[..], global);
            assert_eq!(&envelope.entity[..], entity);
            assert_eq!(&envelope.value[..], value);
            // One encoding per envelope: it writes back the bytes it came from.
            assert_eq!(envelope.encode().as_deref(), Some(bytes));
        }
        (ours, reference) => panic!("decode {ours:?} but the layout says {reference:?}"),
    }
    let Some(envelope) = decoded else {
        return;
    };

    // Current only under its own tokens, and only once read after both
    // tokens' buffers.
    let after_buffers = envelope.read_at_ms >= buffer_until_ms(&envelope.global)
        && envelope.read_at_ms >= buffer_until_ms(&envelope.entity);
    assert_eq!(
        envelope.is_current(&envelope.global.clone(), &envelope.entity.clone()),
        after_buffers
    );
    if envelope.is_current(global_now, entity_now) {
        assert_eq!(&envelope.global[..], global_now);
        assert_eq!(&envelope.entity[..], entity_now);
    }
}

fn check_token(token: &[u8]) {
    let until = buffer_until_ms(token);
    if until > 0 {
        // Only a `~` followed by the digits of a number carries a buffer.
        let at = token
            .iter()
            .position(|&b| b == b'~')
            .expect("a buffer follows a ~");
        let digits = std::str::from_utf8(&token[at + 1..]).expect("ASCII digits");
        assert_eq!(digits.parse::<u64>().ok(), Some(until));
    }
}

fuzz_target!(|input: &[u8]| {
    // Input: the lengths of the global and entity tokens read now (one
    // byte each, a length byte of 255 meaning 300 to overflow the format),
    // those tokens, then the bytes stored under the entry key.
    let Some((lengths, rest)) = input.split_at_checked(2) else {
        return;
    };
    let length = |byte: u8| if byte == 255 { 300 } else { usize::from(byte) };
    let (global_now, rest) = rest.split_at(length(lengths[0]).min(rest.len()));
    let (entity_now, bytes) = rest.split_at(length(lengths[1]).min(rest.len()));
    check_envelope_bytes(bytes, global_now, entity_now);
    for token in [bytes, global_now, entity_now] {
        check_token(token);
    }

    // The other way round: any tokens that fit and any value round-trip.
    let envelope = Envelope {
        read_at_ms: bytes
            .get(..8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes"))),
        global: Bytes::copy_from_slice(global_now),
        entity: Bytes::copy_from_slice(entity_now),
        value: Bytes::copy_from_slice(bytes),
    };
    match envelope.encode() {
        Some(encoded) => {
            assert!(global_now.len() <= 255 && entity_now.len() <= 255);
            assert_eq!(Envelope::decode(&encoded), Some(envelope));
        }
        None => assert!(global_now.len() > 255 || entity_now.len() > 255),
    }

    // Tokens this crate writes: 16 hex digits, then `~` and the instant the
    // buffer runs to, which reads back.
    if let Some(raw) = bytes.get(..8) {
        let n = u64::from_le_bytes(raw.try_into().expect("8 bytes"));
        let id = format!("{n:016x}");
        assert_eq!(buffer_until_ms(id.as_bytes()), 0);
        assert_eq!(buffer_until_ms(format!("{id}~{n}").as_bytes()), n);
        let buffer = Duration::from_millis(n % (1 << 40));
        let before = now_ms();
        let token = new_token(buffer);
        let after = now_ms();
        assert!(token[..16].iter().all(u8::is_ascii_hexdigit));
        let until = buffer_until_ms(&token);
        if buffer.is_zero() {
            assert_eq!(token.len(), 16);
            assert_eq!(until, 0);
        } else {
            let buffer_ms = buffer.as_millis() as u64;
            assert!(until >= before + buffer_ms && until <= after + buffer_ms);
        }
    }
});
