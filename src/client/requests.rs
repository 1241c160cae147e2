//! Request messages that borrow the caller's key and value.
//!
//! The generated prost messages own their fields, so sending a value
//! through them copies it twice: once into the message, once into the
//! frame. These views encode the same bytes straight from the caller's
//! data into the frame (the tests check they match prost's encoding byte
//! for byte). They are only ever encoded, never decoded.

use bytes::{Buf, BufMut};
use prost::encoding::{
    encode_key, encode_varint, encoded_len_varint, int32, key_len, skip_field, DecodeContext,
    WireType,
};
use prost::{DecodeError, Message};

/// Field of `bytes` or `string` type, omitted when empty (proto3 default).
fn bytes_field_len(tag: u32, data: &[u8]) -> usize {
    if data.is_empty() {
        0
    } else {
        repeated_element_len(tag, data)
    }
}

fn put_bytes_field(tag: u32, data: &[u8], buf: &mut impl BufMut) {
    if !data.is_empty() {
        put_repeated_element(tag, data, buf);
    }
}

/// An element of a repeated `bytes`/`string`/message field: always present,
/// even when empty.
fn repeated_element_len(tag: u32, data: &[u8]) -> usize {
    length_delimited_len(tag, data.len())
}

fn length_delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_repeated_element(tag: u32, data: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(data.len() as u64, buf);
    buf.put_slice(data);
}

fn ttl_len(ttl: i32) -> usize {
    if ttl == 0 {
        0
    } else {
        int32::encoded_len(3, &ttl)
    }
}

/// Implements `prost::Message` for an encode-only view.
macro_rules! encode_only {
    ($view:ident) => {
        impl Message for $view<'_> {
            fn encode_raw(&self, buf: &mut impl BufMut) {
                self.encode_fields(buf)
            }

            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: WireType,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                // Never decoded; skipping keeps the trait's contract anyway.
                skip_field(wire_type, tag, buf, ctx)
            }

            fn encoded_len(&self) -> usize {
                self.fields_len()
            }

            fn clear(&mut self) {}
        }
    };
}

/// `CacheKey` (Get, Delete).
#[derive(Debug)]
pub(crate) struct KeyRef<'a> {
    pub key: &'a str,
}

impl KeyRef<'_> {
    fn fields_len(&self) -> usize {
        bytes_field_len(1, self.key.as_bytes())
    }

    fn encode_fields(&self, buf: &mut impl BufMut) {
        put_bytes_field(1, self.key.as_bytes(), buf);
    }
}
encode_only!(KeyRef);

/// `CacheItem` (Set, SetIfAbsent, and each item of MultiSet).
#[derive(Debug)]
pub(crate) struct ItemRef<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub ttl: i32,
}

impl ItemRef<'_> {
    fn fields_len(&self) -> usize {
        bytes_field_len(1, self.key.as_bytes()) + bytes_field_len(2, self.value) + ttl_len(self.ttl)
    }

    fn encode_fields(&self, buf: &mut impl BufMut) {
        put_bytes_field(1, self.key.as_bytes(), buf);
        put_bytes_field(2, self.value, buf);
        if self.ttl != 0 {
            int32::encode(3, &self.ttl, buf);
        }
    }
}
encode_only!(ItemRef);

/// `CompareAndSetRequest`.
#[derive(Debug)]
pub(crate) struct CompareAndSetRef<'a> {
    pub key: &'a str,
    pub expected: &'a [u8],
    pub value: &'a [u8],
    pub ttl: i32,
}

impl CompareAndSetRef<'_> {
    fn fields_len(&self) -> usize {
        bytes_field_len(1, self.key.as_bytes())
            + bytes_field_len(2, self.expected)
            + bytes_field_len(3, self.value)
            + if self.ttl == 0 {
                0
            } else {
                int32::encoded_len(4, &self.ttl)
            }
    }

    fn encode_fields(&self, buf: &mut impl BufMut) {
        put_bytes_field(1, self.key.as_bytes(), buf);
        put_bytes_field(2, self.expected, buf);
        put_bytes_field(3, self.value, buf);
        if self.ttl != 0 {
            int32::encode(4, &self.ttl, buf);
        }
    }
}
encode_only!(CompareAndSetRef);

/// `MultiCacheKeyRequest` (MultiGet, MultiDelete).
#[derive(Debug)]
pub(crate) struct KeysRef<'a> {
    pub keys: &'a [&'a str],
}

impl KeysRef<'_> {
    fn fields_len(&self) -> usize {
        self.keys
            .iter()
            .map(|key| repeated_element_len(1, key.as_bytes()))
            .sum()
    }

    fn encode_fields(&self, buf: &mut impl BufMut) {
        for key in self.keys {
            put_repeated_element(1, key.as_bytes(), buf);
        }
    }
}
encode_only!(KeysRef);

/// `MultiCacheItemRequest` (MultiSet).
#[derive(Debug)]
pub(crate) struct ItemsRef<'a> {
    pub items: &'a [ItemRef<'a>],
}

impl ItemsRef<'_> {
    fn fields_len(&self) -> usize {
        self.items
            .iter()
            .map(|item| length_delimited_len(1, item.fields_len()))
            .sum()
    }

    fn encode_fields(&self, buf: &mut impl BufMut) {
        for item in self.items {
            encode_key(1, WireType::LengthDelimited, buf);
            encode_varint(item.fields_len() as u64, buf);
            item.encode_fields(buf);
        }
    }
}
encode_only!(ItemsRef);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::cache::{
        CacheItem, CacheKey, CompareAndSetRequest, MultiCacheItemRequest, MultiCacheKeyRequest,
    };
    use bytes::Bytes;

    fn same_bytes(view: &impl Message, owned: &impl Message) {
        assert_eq!(view.encoded_len(), owned.encoded_len());
        assert_eq!(view.encode_to_vec(), owned.encode_to_vec());
    }

    const KEYS: [&str; 4] = ["", "k", "☃ snow", "a-rather-long-key-of-some-length"];
    const TTLS: [i32; 5] = [0, 1, 60, i32::MAX, -5];

    #[test]
    fn key_views_encode_exactly_like_prost() {
        for key in KEYS {
            same_bytes(&KeyRef { key }, &CacheKey { key: key.into() });
        }
        let keys: Vec<&str> = KEYS.to_vec();
        same_bytes(
            &KeysRef { keys: &keys },
            &MultiCacheKeyRequest {
                keys: keys.iter().map(|k| k.to_string()).collect(),
            },
        );
        same_bytes(
            &KeysRef { keys: &[] },
            &MultiCacheKeyRequest { keys: vec![] },
        );
    }

    #[test]
    fn item_views_encode_exactly_like_prost() {
        let big = vec![7u8; 70_000];
        for key in KEYS {
            for value in [&b""[..], b"v", &big] {
                for ttl in TTLS {
                    same_bytes(
                        &ItemRef { key, value, ttl },
                        &CacheItem {
                            key: key.into(),
                            value: Bytes::copy_from_slice(value),
                            ttl,
                        },
                    );
                    same_bytes(
                        &CompareAndSetRef {
                            key,
                            expected: b"old",
                            value,
                            ttl,
                        },
                        &CompareAndSetRequest {
                            key: key.into(),
                            expected_value: Bytes::from_static(b"old"),
                            value: Bytes::copy_from_slice(value),
                            ttl,
                        },
                    );
                }
            }
        }
    }

    #[test]
    fn multi_item_view_encodes_exactly_like_prost_including_empty_items() {
        let items = [
            ItemRef {
                key: "",
                value: b"",
                ttl: 0,
            },
            ItemRef {
                key: "a",
                value: b"1",
                ttl: 30,
            },
            ItemRef {
                key: "b",
                value: &[0u8; 300],
                ttl: 0,
            },
        ];
        let owned = MultiCacheItemRequest {
            items: items
                .iter()
                .map(|i| CacheItem {
                    key: i.key.into(),
                    value: Bytes::copy_from_slice(i.value),
                    ttl: i.ttl,
                })
                .collect(),
        };
        same_bytes(&ItemsRef { items: &items }, &owned);
    }
}
