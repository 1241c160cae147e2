//! Entity-scoped invalidation: generation tokens, the envelope an entry is
//! stored in, and the keys of entries and generations.
//!
//! Every entity (a key type and an id) has a generation in the remote
//! cache: a random token, replaced by each invalidation. An entry carries
//! the tokens it was computed under (its entity's and the global one of
//! [`flush_all`](crate::cache::EntityCache::flush_all)); a read fetches the
//! entry and both tokens in one `MultiGet` and serves the entry only when
//! its tokens are still the current ones. Invalidating an entity is one
//! `Set`, however many entries (use cases, arguments) it has.
//!
//! # Envelope (format version 1)
//!
//! | bytes | content |
//! | --- | --- |
//! | 1 | `0xE1`: the format and its version |
//! | 8 | `read_at`: when the tokens were read, Unix milliseconds, little endian |
//! | 1 + g | the global token: its length `g` (0..=255), then its bytes |
//! | 1 + e | the entity token: its length `e`, then its bytes |
//! | rest | the value, as the use case's codec wrote it |
//!
//! A token is ASCII: 16 hex digits, then `~` and Unix milliseconds when the
//! invalidation had a future buffer (`3f9c0a1be2d44c01~1767225600000`):
//! entries whose `read_at` is before that instant are stale too.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use crate::store::sha256_hex;

/// The first byte of every envelope: format 1.
const ENVELOPE_V1: u8 = 0xE1;

/// Longest token an envelope can carry (its length is one byte).
const MAX_TOKEN_BYTES: usize = 255;

/// Keys longer than this are hashed: the server refuses keys over 256
/// characters, and a namespace (up to 64 characters and its 4-character
/// length prefix) makes the storage key longer.
pub(crate) const MAX_VERBATIM_KEY_CHARS: usize = 180;

/// The key of the global generation, bumped by `flush_all`.
pub(crate) const GLOBAL_GENERATION_KEY: &str = "g:*";

/// Now, as Unix milliseconds; 0 for a clock set before 1970.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A fresh token; entries read before `now + buffer` are stale under it.
pub(crate) fn new_token(buffer: Duration) -> Bytes {
    let mut token = format!("{:016x}", fastrand::u64(..));
    if !buffer.is_zero() {
        let buffer_ms = u64::try_from(buffer.as_millis()).unwrap_or(u64::MAX);
        let _ = write!(token, "~{}", now_ms().saturating_add(buffer_ms));
    }
    Bytes::from(token)
}

/// Until when (Unix milliseconds) a token's future buffer runs; 0 when it
/// has none. A token this crate did not write has none.
pub(crate) fn buffer_until_ms(token: &[u8]) -> u64 {
    token
        .iter()
        .position(|&b| b == b'~')
        .and_then(|at| std::str::from_utf8(&token[at + 1..]).ok())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

/// An entry as stored: the tokens it was computed under and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) read_at_ms: u64,
    pub(crate) global: Bytes,
    pub(crate) entity: Bytes,
    pub(crate) value: Bytes,
}

impl Envelope {
    /// The stored bytes; `None` when a token is too long to carry.
    pub(crate) fn encode(&self) -> Option<Bytes> {
        if self.global.len() > MAX_TOKEN_BYTES || self.entity.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let mut out =
            BytesMut::with_capacity(11 + self.global.len() + self.entity.len() + self.value.len());
        out.put_u8(ENVELOPE_V1);
        out.put_u64_le(self.read_at_ms);
        for token in [&self.global, &self.entity] {
            // Checked above: fits in a byte.
            out.put_u8(token.len() as u8);
            out.put_slice(token);
        }
        out.put_slice(&self.value);
        Some(out.freeze())
    }

    /// The envelope in `bytes`; `None` for bytes of another format (an
    /// entry written by something else reads as a miss).
    pub(crate) fn decode(bytes: &Bytes) -> Option<Envelope> {
        if bytes.len() < 11 || bytes[0] != ENVELOPE_V1 {
            return None;
        }
        let read_at_ms = u64::from_le_bytes(bytes[1..9].try_into().ok()?);
        let mut at = 9;
        let mut token = || {
            let len = usize::from(*bytes.get(at)?);
            let end = at + 1 + len;
            if end > bytes.len() {
                return None;
            }
            let token = bytes.slice(at + 1..end);
            at = end;
            Some(token)
        };
        let global = token()?;
        let entity = token()?;
        Some(Envelope {
            read_at_ms,
            global,
            entity,
            value: bytes.slice(at..),
        })
    }

    /// Whether this entry is current under the generations read now:
    /// computed under the same tokens, and read after their buffers.
    pub(crate) fn is_current(&self, global: &[u8], entity: &[u8]) -> bool {
        self.global == global
            && self.entity == entity
            && self.read_at_ms >= buffer_until_ms(global)
            && self.read_at_ms >= buffer_until_ms(entity)
    }
}

/// Longest entity tag kept verbatim in keys; longer ones (and any with a
/// brace, which would end the tag early) are replaced by their SHA-256.
const MAX_VERBATIM_TAG_CHARS: usize = 64;

/// An entity's hash tag: `<len>:<key type><id>` (the length keeps
/// (`a:b`, `c`) and (`a`, `b:c`) apart), or `#` and its SHA-256 when too
/// long or braced. Every key of the entity carries it inside `{...}`, so a
/// sharded store places its entries and its generation on the same
/// servers (see [`hash_tag`](crate::hash_tag)).
pub(crate) struct EntityTag(String);

impl EntityTag {
    pub(crate) fn new(key_type: &str, id: &str) -> EntityTag {
        let text = format!("{}:{key_type}{id}", key_type.len());
        if text.chars().count() <= MAX_VERBATIM_TAG_CHARS && !text.contains(['{', '}']) {
            return EntityTag(text);
        }
        EntityTag(format!("#{}", sha256_hex(&text)))
    }

    /// The key of the entity's generation: `g:{<entity tag>}`.
    pub(crate) fn generation_key(&self) -> String {
        format!("g:{{{}}}", self.0)
    }

    /// The key of one entry: `c:{<entity tag>}<len>:<use case><arguments>`,
    /// or `c:{<entity tag>}#<SHA-256 of that>` when longer than
    /// [`MAX_VERBATIM_KEY_CHARS`]. Stable across processes, builds and
    /// Rust versions.
    pub(crate) fn entry_key(&self, use_case: &str, arguments: &str) -> String {
        let tag = &self.0;
        let text = format!("c:{{{tag}}}{}:{use_case}{arguments}", use_case.len());
        if text.chars().count() <= MAX_VERBATIM_KEY_CHARS {
            return text;
        }
        format!("c:{{{tag}}}#{}", sha256_hex(&text))
    }
}

/// The key of one entity's generation (see [`EntityTag::generation_key`]).
pub(crate) fn generation_key(key_type: &str, id: &str) -> String {
    EntityTag::new(key_type, id).generation_key()
}

/// The key of one entry (see [`EntityTag::entry_key`]).
#[cfg(test)]
fn entry_key(use_case: &str, key_type: &str, id: &str, arguments: &str) -> String {
    EntityTag::new(key_type, id).entry_key(use_case, arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_refuse_other_bytes() {
        let envelope = Envelope {
            read_at_ms: 1_767_225_600_000,
            global: Bytes::from_static(b"0123456789abcdef"),
            entity: Bytes::from_static(b"fedcba9876543210~1767225600500"),
            value: Bytes::from_static(b"{\"name\":\"Ann\"}"),
        };
        let bytes = envelope.encode().unwrap();
        assert_eq!(bytes[0], ENVELOPE_V1);
        assert_eq!(Envelope::decode(&bytes), Some(envelope));
        assert_eq!(Envelope::decode(&Bytes::from_static(b"plain value")), None);
        assert_eq!(Envelope::decode(&bytes.slice(..12)), None);
    }

    #[test]
    fn an_entry_is_current_only_under_its_tokens_and_after_their_buffer() {
        let envelope = Envelope {
            read_at_ms: 1000,
            global: Bytes::from_static(b"g1"),
            entity: Bytes::from_static(b"e1"),
            value: Bytes::new(),
        };
        assert!(envelope.is_current(b"g1", b"e1"));
        assert!(!envelope.is_current(b"g1", b"e2"));
        assert!(!envelope.is_current(b"g2", b"e1"));
        let buffered = Envelope {
            entity: Bytes::from_static(b"e1~1001"),
            ..envelope.clone()
        };
        assert!(!buffered.is_current(b"g1", b"e1~1001"));
        let after = Envelope {
            read_at_ms: 1001,
            ..buffered
        };
        assert!(after.is_current(b"g1", b"e1~1001"));
    }

    #[test]
    fn tokens_carry_their_buffer() {
        assert_eq!(buffer_until_ms(&new_token(Duration::ZERO)), 0);
        let before = now_ms();
        let until = buffer_until_ms(&new_token(Duration::from_secs(2)));
        assert!(until >= before + 2000 && until <= now_ms() + 2000);
        assert_ne!(new_token(Duration::ZERO), new_token(Duration::ZERO));
    }

    #[test]
    fn keys_are_unambiguous_and_bounded() {
        assert_eq!(generation_key("user", "7"), "g:{4:user7}");
        assert_ne!(
            entry_key("a:b", "c", "1", ""),
            entry_key("a", "b:c", "1", "")
        );
        assert_ne!(
            entry_key("u", "a:b", "c", ""),
            entry_key("u", "a", "b:c", "")
        );
        assert_eq!(
            entry_key("get_user", "user", "7", ""),
            "c:{4:user7}8:get_user"
        );
        let long = entry_key(&"x".repeat(300), "user", "7", "");
        assert!(long.starts_with("c:{4:user7}#") && long.len() == 12 + 64);
        assert_eq!(long, entry_key(&"x".repeat(300), "user", "7", ""));
        assert!(entry_key("u", &"t".repeat(200), &"9".repeat(200), &"a".repeat(200)).len() <= 180);
    }

    #[test]
    fn an_entitys_entries_and_generation_share_one_hash_tag() {
        use crate::hash_tag;
        for (key_type, id) in [
            ("user", "7"),
            ("user", "}{"),
            ("t", "{x}"),
            (&*"k".repeat(100), "1"),
        ] {
            let generation = generation_key(key_type, id);
            for use_case in ["a", &*"u".repeat(300)] {
                let entry = entry_key(use_case, key_type, id, "AQ");
                assert_eq!(
                    hash_tag(&entry),
                    hash_tag(&generation),
                    "{entry} {generation}"
                );
            }
        }
        assert_ne!(
            hash_tag(&generation_key("user", "7")),
            hash_tag(&generation_key("user", "8"))
        );
    }
}
