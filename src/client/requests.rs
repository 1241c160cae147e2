//! Request messages that borrow the caller's key and value.
//!
//! The generated prost messages own their fields, so sending a value
//! through them copies it twice: once into the message, once into the
//! frame. These views encode the same bytes straight from the caller's
//! data into the frame (the tests check they match prost's encoding byte
//! for byte). They are only ever encoded, never decoded.
//!
//! A single-message view lists its fields, as the proto declares them; a
//! Multi* request is one repeated field of keys or items.

use bytes::{Buf, BufMut};
use prost::encoding::{
    encode_key, encode_varint, encoded_len_varint, int32, key_len, skip_field, DecodeContext,
    WireType,
};
use prost::{DecodeError, Message};

/// One field of a request, by its proto3 type; a field holding its type's
/// default (empty, zero) is omitted, as proto3 encodes it.
enum Field<'a> {
    /// `bytes` or `string`.
    Bytes(u32, &'a [u8]),
    /// `int32` (the TTL).
    Int32(u32, i32),
}

impl Field<'_> {
    fn len(&self) -> usize {
        match *self {
            Field::Bytes(_, []) | Field::Int32(_, 0) => 0,
            Field::Bytes(tag, data) => length_delimited_len(tag, data.len()),
            Field::Int32(tag, n) => int32::encoded_len(tag, &n),
        }
    }

    fn put(&self, buf: &mut impl BufMut) {
        match *self {
            Field::Bytes(_, []) | Field::Int32(_, 0) => {}
            Field::Bytes(tag, data) => put_length_delimited(tag, data.len(), buf, |buf| {
                buf.put_slice(data);
            }),
            Field::Int32(tag, n) => int32::encode(tag, &n, buf),
        }
    }
}

fn length_delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A length-delimited field, even an empty one: its key, its length, then
/// what `body` puts (`len` bytes).
fn put_length_delimited<B: BufMut>(tag: u32, len: usize, buf: &mut B, body: impl FnOnce(&mut B)) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
    body(buf);
}

/// A view made of plain fields: its encoding is theirs, in order.
trait Fields {
    fn fields(&self) -> impl IntoIterator<Item = Field<'_>>;

    fn fields_len(&self) -> usize {
        self.fields().into_iter().map(|field| field.len()).sum()
    }

    fn encode_fields(&self, buf: &mut impl BufMut) {
        for field in self.fields() {
            field.put(buf);
        }
    }
}

/// Implements `prost::Message` for an encode-only view.
macro_rules! encode_only {
    ($view:ident) => {
        encode_only!(impl[] $view<'_>);
    };
    (impl[$($generics:tt)*] $view:ty) => {
        impl<$($generics)*> Message for $view {
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

/// The proto3 type a view's field is encoded as.
trait ToField {
    fn to_field(&self, tag: u32) -> Field<'_>;
}

impl ToField for &str {
    fn to_field(&self, tag: u32) -> Field<'_> {
        Field::Bytes(tag, self.as_bytes())
    }
}

impl ToField for &[u8] {
    fn to_field(&self, tag: u32) -> Field<'_> {
        Field::Bytes(tag, self)
    }
}

impl ToField for i32 {
    fn to_field(&self, tag: u32) -> Field<'_> {
        Field::Int32(tag, *self)
    }
}

/// A view of a message of plain fields, declared as the proto declares it
/// (each field with its tag): the struct, its fields in tag order, and
/// `prost::Message`.
macro_rules! view {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty = $tag:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) struct $name<'a> {
            $(pub $field: $ty,)+
        }

        impl Fields for $name<'_> {
            fn fields(&self) -> impl IntoIterator<Item = Field<'_>> {
                [$(self.$field.to_field($tag)),+]
            }
        }
        encode_only!($name);
    };
}

view! {
    /// `CacheKey` (Get, Delete).
    KeyRef { key: &'a str = 1 }
}

view! {
    /// `CacheItem` (Set, SetIfAbsent, and each item of MultiSet).
    ItemRef { key: &'a str = 1, value: &'a [u8] = 2, ttl: i32 = 3 }
}

view! {
    /// `CompareAndSetRequest`.
    CompareAndSetRef { key: &'a str = 1, expected: &'a [u8] = 2, value: &'a [u8] = 3, ttl: i32 = 4 }
}

/// An element of a request's one repeated field: a key (MultiGet,
/// MultiDelete) or an item (MultiSet).
pub(crate) trait Element: std::fmt::Debug + Send + Sync {
    /// The length of its bytes after the field's key and length prefix.
    fn body_len(&self) -> usize;
    fn put_body(&self, buf: &mut impl BufMut);
}

impl Element for &str {
    fn body_len(&self) -> usize {
        self.len()
    }

    fn put_body(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.as_bytes());
    }
}

impl Element for ItemRef<'_> {
    fn body_len(&self) -> usize {
        self.fields_len()
    }

    fn put_body(&self, buf: &mut impl BufMut) {
        self.encode_fields(buf);
    }
}

/// A request whose one field is repeated field 1, each element present
/// even when empty: `MultiCacheKeyRequest` ([`KeysRef`]) and
/// `MultiCacheItemRequest` ([`ItemsRef`]).
#[derive(Debug)]
pub(crate) struct Repeated<'a, T> {
    pub elements: &'a [T],
}

/// `MultiCacheKeyRequest` (MultiGet, MultiDelete).
pub(crate) type KeysRef<'a> = Repeated<'a, &'a str>;

/// `MultiCacheItemRequest` (MultiSet).
pub(crate) type ItemsRef<'a> = Repeated<'a, ItemRef<'a>>;

impl<T: Element> Repeated<'_, T> {
    fn fields_len(&self) -> usize {
        let element_len = |element: &T| length_delimited_len(1, element.body_len());
        self.elements.iter().map(element_len).sum()
    }

    fn encode_fields(&self, buf: &mut impl BufMut) {
        for element in self.elements {
            put_length_delimited(1, element.body_len(), buf, |buf| element.put_body(buf));
        }
    }
}
encode_only!(impl[T: Element] Repeated<'_, T>);

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
            &KeysRef { elements: &keys },
            &MultiCacheKeyRequest {
                keys: keys.iter().map(|k| k.to_string()).collect(),
            },
        );
        same_bytes(
            &KeysRef { elements: &[] },
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
        same_bytes(&ItemsRef { elements: &items }, &owned);
    }
}
