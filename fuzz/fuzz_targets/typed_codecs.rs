//! Typed values through the cache's codecs (JSON and postcard): any bytes
//! decode into a value or fail with an error, never a panic nor a stack
//! overflow (a recursive type is among them); a decoded value encodes,
//! decodes back to itself and encodes to the same bytes again; postcard
//! refuses trailing bytes; any finite float stored through JSON reads back
//! bit for bit.
#![no_main]

use std::collections::BTreeMap;
use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tiny_cache_client::cache::{Codec, Json, Postcard};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Empty,
    Count(u32),
    Pair(i16, char),
    Named { label: String, weight: Option<f64> },
}

/// What a use case typically caches: a record with strings, numbers,
/// collections, options and an enum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: f64,
    active: Option<bool>,
    counts: BTreeMap<String, i64>,
    kind: Kind,
    avatar: Vec<u8>,
    small: (u8, i128, u16),
}

/// A recursive type: bytes choose how deep it nests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Tree {
    Leaf(u8),
    Node(Box<Tree>),
    Branches(Vec<Tree>),
    Maybe(Option<Box<Tree>>),
    Labelled { label: String, child: Box<Tree> },
}

/// `a == b`, spelled so that `same(&x, &x)` (false for a NaN inside) is not
/// flagged as comparing a value with itself.
fn same<T: PartialEq>(a: &T, b: &T) -> bool {
    a == b
}

fn check<T, C>(codec: C, bytes: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
    C: Codec,
{
    let Ok(value) = codec.decode::<T>(bytes) else {
        return;
    };
    let encoded = codec.encode(&value).expect("a decoded value encodes");
    let again: T = match codec.decode(&encoded) {
        Ok(again) => again,
        Err(error) => panic!(
            "{value:?} encoded by {} as {encoded:?} does not decode: {error}",
            codec.name()
        ),
    };
    // NaN (postcard only) is not equal to itself: the bytes are compared
    // for every value, the values when they are comparable.
    if same(&value, &value) {
        assert_eq!(again, value, "{} round trip", codec.name());
    }
    assert_eq!(
        codec.encode(&again).expect("encodes again"),
        encoded,
        "{} is stable",
        codec.name()
    );
    if codec.name() == "postcard" {
        // The canonical encoding is never longer than what was read, and a
        // byte after it is a value of another type.
        assert!(encoded.len() <= bytes.len());
        let mut longer = encoded.clone();
        longer.push(bytes.first().copied().unwrap_or_default());
        assert!(
            codec.decode::<T>(&longer).is_err(),
            "trailing bytes are refused"
        );
    }
}

fn check_all<C: Codec>(codec: C, selector: u8, bytes: &[u8]) {
    match selector % 7 {
        0 => check::<Profile, C>(codec, bytes),
        1 => check::<Vec<Kind>, C>(codec, bytes),
        2 => check::<(String, Vec<Option<u32>>, bool), C>(codec, bytes),
        3 => check::<BTreeMap<String, Vec<u8>>, C>(codec, bytes),
        4 => check::<(f64, Option<i64>, char), C>(codec, bytes),
        5 => check::<Tree, C>(codec, bytes),
        _ => check::<Option<(u128, i8, String)>, C>(codec, bytes),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else {
        return;
    };
    if selector & 0x80 == 0 {
        check_all(Json, selector, bytes);
        if selector % 8 == 0 {
            // Any JSON document, through serde_json's own value type.
            check::<serde_json::Value, Json>(Json, bytes);
        }
    } else {
        check_all(Postcard, selector, bytes);
    }

    // Finite floats computed by a use case come back bit for bit.
    if let Some(raw) = bytes.get(..8) {
        let number = f64::from_le_bytes(raw.try_into().expect("8 bytes"));
        if number.is_finite() {
            for codec_is_json in [true, false] {
                let back: f64 = if codec_is_json {
                    Json.decode(&Json.encode(&number).expect("a finite float encodes"))
                } else {
                    Postcard.decode(&Postcard.encode(&number).expect("a float encodes"))
                }
                .expect("an encoded float decodes");
                assert_eq!(
                    back.to_bits(),
                    number.to_bits(),
                    "{number:e} through json={codec_is_json}"
                );
            }
        }
    }
});
