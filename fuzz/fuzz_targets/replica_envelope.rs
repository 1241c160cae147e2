//! The cluster's replica envelope: any bytes a replica returns parse into a
//! copy whose value is a suffix of them and whose header fields are the
//! big-endian integers they hold; a sealed copy re-seals with its remaining
//! TTL to the very same bytes; a touch keeps the value and the write time;
//! "newer" is a strict total order on copies, so every reader picks the
//! same one.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tiny_cache_client::fuzzing::replica::{seal, Copy, HEADER_BYTES, MAGIC};
use tiny_cache_client::Ttl;

/// Input: 8 bytes of clock (microseconds, the top bit for a clock before
/// 1970), 4 bytes of TTL (milliseconds, 0 for never), two length bytes,
/// then three copies' bytes one after the other.
const CONTROL_BYTES: usize = 14;

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
}

fn check_copy(raw: &[u8], now: SystemTime, ttl: Ttl) -> Copy {
    let copy = Copy::parse(Bytes::copy_from_slice(raw));
    assert_eq!(&copy.raw()[..], raw);

    // Sealed exactly when the bytes start with the magic and hold a header.
    let sealed = raw.len() >= HEADER_BYTES && raw[..4] == MAGIC;
    assert_eq!(copy.is_sealed(), sealed);
    let value = copy.value();
    assert!(raw.ends_with(&value), "the value is a suffix of the bytes");
    if sealed {
        assert_eq!(&value[..], &raw[HEADER_BYTES..]);
        assert_eq!(copy.written_micros(), be_u64(&raw[4..12]));
        assert_eq!(copy.expires_secs(), be_u64(&raw[12..20]));
    } else {
        assert_eq!(&value[..], raw);
        assert_eq!((copy.written_micros(), copy.expires_secs()), (0, 0));
    }

    // The TTL left: never for no expiry, else exactly the whole seconds
    // until the expiry, none once it has passed (or before the epoch).
    let remaining = copy.remaining_ttl(now);
    let now_secs = now.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
    let expected = match (copy.expires_secs(), now_secs) {
        (0, _) => Some(Ttl::Never),
        (_, None) => None,
        (expires, Some(now_secs)) if expires > now_secs => {
            Some(Ttl::After(Duration::from_secs(expires - now_secs)))
        }
        _ => None,
    };
    assert_eq!(remaining, expected);

    // What a repair or touch writes with the TTL left is the same copy.
    if sealed {
        if let Some(left) = remaining {
            assert_eq!(
                &copy.reseal(left, now)[..],
                raw,
                "re-seals to the same bytes"
            );
        }
    }

    // A touch with any TTL keeps the value and (for a sealed copy) the
    // write time, and sets the expiry the TTL gives.
    let touched = Copy::parse(copy.reseal(ttl, now));
    assert!(touched.is_sealed());
    assert_eq!(touched.value(), value);
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let written = if sealed {
        copy.written_micros()
    } else {
        u64::try_from(since_epoch.as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    };
    assert_eq!(touched.written_micros(), written);
    let expires = match ttl {
        Ttl::Never => 0,
        Ttl::After(d) => since_epoch.as_secs() + d.as_secs() + u64::from(d.subsec_nanos() > 0),
    };
    assert_eq!(touched.expires_secs(), expires);
    copy
}

fuzz_target!(|input: &[u8]| {
    if input.len() < CONTROL_BYTES {
        return;
    }
    let (control, rest) = input.split_at(CONTROL_BYTES);
    let clock = be_u64(&control[..8]);
    let offset = Duration::from_micros(clock & (u64::MAX >> 1));
    let now = if clock >> 63 == 1 {
        UNIX_EPOCH.checked_sub(offset).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH + offset
    };
    let ttl_ms = u32::from_be_bytes(control[8..12].try_into().expect("4 bytes"));
    let ttl = match ttl_ms {
        0 => Ttl::Never,
        ms => Ttl::After(Duration::from_millis(u64::from(ms))),
    };
    let first = usize::from(control[12]).min(rest.len());
    let second = (first + usize::from(control[13])).min(rest.len());
    let copies = [&rest[..first], &rest[first..second], &rest[second..]]
        .map(|raw| check_copy(raw, now, ttl));

    // Newer: irreflexive, antisymmetric, total on distinct bytes,
    // transitive, and a later write time always wins.
    for a in &copies {
        assert!(!a.is_newer_than(a));
        for b in &copies {
            let (ab, ba) = (a.is_newer_than(b), b.is_newer_than(a));
            assert!(!(ab && ba), "antisymmetric");
            assert_eq!(ab || ba, a.raw() != b.raw(), "total on distinct copies");
            if a.written_micros() > b.written_micros() {
                assert!(ab);
            }
            for c in &copies {
                if ab && b.is_newer_than(c) {
                    assert!(a.is_newer_than(c), "transitive");
                }
            }
        }
    }

    // A fresh write reads back as itself and is newer than any plain copy.
    let sealed = Copy::parse(seal(&rest[second..], ttl, now));
    assert!(sealed.is_sealed());
    assert_eq!(&sealed.value()[..], &rest[second..]);
    assert!(sealed.written_micros() >= 1);
    for copy in copies.iter().filter(|copy| !copy.is_sealed()) {
        assert!(sealed.is_newer_than(copy));
    }
});
