//! A nesting limit for decoders that have none (postcard).
//!
//! A recursive type read from corrupt or hostile bytes nests as deep as
//! the bytes allow: without a limit, ten kilobytes of them overflow a
//! thread's stack and abort the process instead of failing to decode.
//! [`deserialize`] wraps a deserializer so that every sequence, map,
//! enum, option and newtype it enters counts one level, and a value
//! deeper than [`MAX_DEPTH`] is an error.

use std::cell::Cell;
use std::fmt;

use super::CodecError;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// Deepest nesting a decode follows. Every sequence (a struct or tuple in
/// postcard), map, enum, option and newtype counts one level: a value
/// within it is far from any thread's stack limit.
pub(crate) const MAX_DEPTH: usize = 256;

/// `T` from `deserializer`, refusing values nested deeper than
/// [`MAX_DEPTH`].
pub(crate) fn deserialize<'de, T, D>(deserializer: D) -> Result<T, CodecError>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
    D::Error: Send + Sync + 'static,
{
    let depth = Depth::default();
    T::deserialize(Limited {
        inner: deserializer,
        depth: &depth,
    })
    .map_err(|error| {
        // The format's own error may not carry the message (postcard's
        // does not).
        if depth.exceeded.get() {
            too_deep().into()
        } else {
            error.into()
        }
    })
}

fn too_deep() -> String {
    format!("the value is nested deeper than {MAX_DEPTH} levels")
}

/// Levels entered so far, and whether the limit was hit.
#[derive(Default)]
struct Depth {
    levels: Cell<usize>,
    exceeded: Cell<bool>,
}

/// One more level, undone when dropped; an error past the limit.
struct Level<'a>(&'a Depth);

impl<'a> Level<'a> {
    fn enter<E: de::Error>(depth: &'a Depth) -> Result<Level<'a>, E> {
        let levels = depth.levels.get();
        if levels >= MAX_DEPTH {
            depth.exceeded.set(true);
            return Err(E::custom(too_deep()));
        }
        depth.levels.set(levels + 1);
        Ok(Level(depth))
    }
}

impl Drop for Level<'_> {
    fn drop(&mut self) {
        self.0.levels.set(self.0.levels.get() - 1);
    }
}

/// A deserializer whose visitors count levels.
struct Limited<'a, D> {
    inner: D,
    depth: &'a Depth,
}

/// A visitor that counts the levels it enters.
struct Counting<'a, V> {
    inner: V,
    depth: &'a Depth,
}

/// A seed whose deserializer counts levels.
struct Seed<'a, S> {
    inner: S,
    depth: &'a Depth,
}

/// The parts of a sequence, map or enum, counting levels.
struct Access<'a, A> {
    inner: A,
    depth: &'a Depth,
}

impl<'a, V> Counting<'a, V> {
    fn new(inner: V, depth: &'a Depth) -> Self {
        Counting { inner, depth }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(
                self,
                $($arg: $ty,)*
                visitor: V,
            ) -> Result<V::Value, Self::Error> {
                self.inner.$method($($arg,)* Counting::new(visitor, self.depth))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Limited<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

/// Visitor methods for a value that nests others: each enters one more
/// level (failing past the limit) and hands the inner visitor the nested
/// values through a `Limited` deserializer or an `Access` at the same limit.
macro_rules! visit_nested {
    ($($method:ident<$t:ident: $bound:ident>($arg:ident) => $wrapper:ident;)*) => {
        $(
            fn $method<$t: $bound<'de>>(self, $arg: $t) -> Result<Self::Value, $t::Error> {
                let _level = Level::enter(self.depth)?;
                self.inner.$method($wrapper {
                    inner: $arg,
                    depth: self.depth,
                })
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Counting<'_, V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(formatter)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    visit_nested! {
        visit_some<D: Deserializer>(deserializer) => Limited;
        visit_newtype_struct<D: Deserializer>(deserializer) => Limited;
        visit_seq<A: SeqAccess>(seq) => Access;
        visit_map<A: MapAccess>(map) => Access;
        visit_enum<A: EnumAccess>(data) => Access;
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Limited {
            inner: deserializer,
            depth: self.depth,
        })
    }
}

impl<'a, A> Access<'a, A> {
    fn seed<S>(&self, inner: S) -> Seed<'a, S> {
        Seed {
            inner,
            depth: self.depth,
        }
    }
}

/// Access methods that hand the inner access each seed wrapped, so what it
/// deserializes stays under the same limit.
macro_rules! forward_seeded {
    ($($method:ident(&mut self) -> $out:ty;)*) => {
        $(
            fn $method<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<$out, A::Error> {
                let seed = self.seed(seed);
                self.inner.$method(seed)
            }
        )*
    };
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    forward_seeded! {
        next_element_seed(&mut self) -> Option<T::Value>;
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    forward_seeded! {
        next_key_seed(&mut self) -> Option<T::Value>;
        next_value_seed(&mut self) -> T::Value;
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Access<'a, A> {
    type Error = A::Error;
    type Variant = Access<'a, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let seed = self.seed(seed);
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Access {
                inner: variant,
                depth: self.depth,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.seed(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner
            .tuple_variant(len, Counting::new(visitor, self.depth))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .struct_variant(fields, Counting::new(visitor, self.depth))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::cache::{Codec, Postcard};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Tree {
        Leaf(u8),
        Node(Box<Tree>),
        Branches(Vec<Tree>),
        Maybe(Option<Box<Tree>>),
        Labelled { label: String, child: Box<Tree> },
    }

    /// A `Node` chain `levels` deep, as postcard writes it.
    fn chain(levels: usize) -> Vec<u8> {
        let mut bytes = vec![1u8; levels];
        bytes.extend([0, 7]);
        bytes
    }

    #[test]
    fn a_deeply_nested_value_fails_to_decode_instead_of_overflowing_the_stack() {
        // Found reviewing the `typed_codecs` fuzz target: postcard follows
        // any nesting, and ten kilobytes of `Node`s aborted the process on
        // a thread's 2 MiB stack. With the limit it is an error.
        let decoded = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                Postcard
                    .decode::<Tree>(&chain(1_000_000))
                    .map_err(|e| e.to_string())
            })
            .unwrap()
            .join()
            .unwrap();
        let error = decoded.unwrap_err();
        assert!(error.contains("nested deeper than 256 levels"), "{error}");
    }

    #[test]
    fn values_up_to_the_limit_decode_unchanged() {
        // `MAX_DEPTH - 1` nodes and the leaf: `MAX_DEPTH` enum levels.
        let deepest: Tree = Postcard.decode(&chain(MAX_DEPTH - 1)).unwrap();
        assert_eq!(Postcard.encode(&deepest).unwrap(), chain(MAX_DEPTH - 1));
        assert!(Postcard.decode::<Tree>(&chain(MAX_DEPTH)).is_err());

        let mut map = BTreeMap::new();
        map.insert("k".to_owned(), vec![Some((1u8, 'x'))]);
        let tree = Tree::Labelled {
            label: "root".into(),
            child: Box::new(Tree::Branches(vec![
                Tree::Maybe(Some(Box::new(Tree::Leaf(3)))),
                Tree::Maybe(None),
            ])),
        };
        let value = (tree, map, "text".to_owned(), -5i128, 2.5f64, ());
        let bytes = Postcard.encode(&value).unwrap();
        type Mixed = (
            Tree,
            BTreeMap<String, Vec<Option<(u8, char)>>>,
            String,
            i128,
            f64,
            (),
        );
        assert_eq!(Postcard.decode::<Mixed>(&bytes).unwrap(), value);
    }
}
