//! The value envelope replicas carry when a cluster keeps more than one
//! copy: what lets a reader pick the newest copy, and a repair give the
//! copy it rewrites the TTL the writer asked for.
//!
//! Layout, 20 bytes before the value, integers big-endian:
//!
//! | bytes  | field                                               |
//! |--------|-----------------------------------------------------|
//! | 0..3   | magic `tc` `0xE7`                                   |
//! | 3      | version: `1` a value, `2` a tombstone (a delete)    |
//! | 4..12  | write time, microseconds since the Unix epoch (u64) |
//! | 12..20 | expiry, seconds since the Unix epoch; 0 = never     |
//! | 20..   | the value, unchanged (nothing for a tombstone)      |
//!
//! A delete with R > 1 writes a tombstone rather than removing the copies,
//! for [`TOMBSTONE_LIFETIME`] or longer: it is newer than every copy the
//! delete removed, so a read racing the delete, whose repair would write
//! an old copy back, finds the tombstone and leaves it; and a replica that
//! missed the delete is repaired with the tombstone. A tombstone reads as
//! a miss.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use crate::Ttl;

/// The first four bytes of every enveloped value.
pub(crate) const MAGIC: [u8; 4] = [b't', b'c', 0xE7, 1];
/// The first four bytes of a tombstone.
const TOMBSTONE_MAGIC: [u8; 4] = [b't', b'c', 0xE7, 2];
/// The shortest a tombstone lives: longer than any read that may race its
/// delete (the cluster makes it at least twice its timeout too).
pub(crate) const TOMBSTONE_LIFETIME: Duration = Duration::from_secs(60);
/// The longest a tombstone lives, whatever the timeout.
pub(crate) const TOMBSTONE_LIFETIME_CAP: Duration = Duration::from_secs(24 * 3600);
/// Bytes before the value.
pub(crate) const HEADER_BYTES: usize = 20;

/// A copy as one replica holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Copy {
    /// Microseconds since the epoch of the write; 0 for a value written
    /// without an envelope (by a plain client or a one-replica cluster):
    /// older than any enveloped write.
    pub(crate) written_micros: u64,
    /// Seconds since the epoch when it expires; 0 = never or unknown.
    pub(crate) expires_secs: u64,
    /// The stored bytes, envelope included: what a repair writes back.
    pub(crate) raw: Bytes,
    /// Whether `raw` starts with an envelope.
    sealed: bool,
    /// Whether this is a tombstone: the key was deleted at `written_micros`.
    pub(crate) deleted: bool,
}

/// Whether `raw` is a tombstone.
pub(crate) fn is_tombstone(raw: &[u8]) -> bool {
    raw.len() >= HEADER_BYTES && raw[..4] == TOMBSTONE_MAGIC
}

/// A tombstone for a delete at `now`, living `lifetime`.
pub(crate) fn tombstone(lifetime: Duration, now: SystemTime) -> Bytes {
    let mut out = BytesMut::from(&seal(b"", Ttl::After(lifetime), now)[..]);
    out[..4].copy_from_slice(&TOMBSTONE_MAGIC);
    out.freeze()
}

impl Copy {
    /// Reads a stored value. Anything that does not start with the magic
    /// and version is a plain value.
    pub(crate) fn parse(raw: Bytes) -> Copy {
        let deleted = is_tombstone(&raw);
        if raw.len() >= HEADER_BYTES && (raw[..4] == MAGIC || deleted) {
            let field = |at: usize| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&raw[at..at + 8]);
                u64::from_be_bytes(bytes)
            };
            Copy {
                written_micros: field(4),
                expires_secs: field(12),
                raw,
                sealed: true,
                deleted,
            }
        } else {
            Copy {
                written_micros: 0,
                expires_secs: 0,
                raw,
                sealed: false,
                deleted: false,
            }
        }
    }

    /// The value without its envelope.
    pub(crate) fn value(&self) -> Bytes {
        if self.sealed {
            self.raw.slice(HEADER_BYTES..)
        } else {
            self.raw.clone()
        }
    }

    /// The TTL left for a repair to give: `None` when already expired.
    pub(crate) fn remaining_ttl(&self, now: SystemTime) -> Option<Ttl> {
        if self.expires_secs == 0 {
            return Some(Ttl::Never);
        }
        let now_secs = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let left = self.expires_secs.checked_sub(now_secs)?;
        (left > 0).then(|| Ttl::After(Duration::from_secs(left)))
    }

    /// Newer first by write time; equal times (two writers in the same
    /// microsecond) are ordered by the bytes so every reader agrees.
    pub(crate) fn is_newer_than(&self, other: &Copy) -> bool {
        (self.written_micros, &self.raw[..]) > (other.written_micros, &other.raw[..])
    }
}

/// Wraps `value` with the write time `now` and the expiry `ttl` gives.
pub(crate) fn seal(value: &[u8], ttl: Ttl, now: SystemTime) -> Bytes {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let expires = match ttl {
        Ttl::Never => 0,
        // The server rounds a TTL up to whole seconds; so does the expiry.
        Ttl::After(ttl) => {
            since_epoch.as_secs() + ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
        }
    };
    let mut out = BytesMut::with_capacity(HEADER_BYTES + value.len());
    out.put_slice(&MAGIC);
    out.put_u64(
        u64::try_from(since_epoch.as_micros())
            .unwrap_or(u64::MAX)
            .max(1),
    );
    out.put_u64(expires);
    out.put_slice(value);
    out.freeze()
}

/// The same copy with a new expiry and its original write time: what a
/// touch stores, so the touched copy is not mistaken for a newer write.
pub(crate) fn reseal(copy: &Copy, ttl: Ttl, now: SystemTime) -> Bytes {
    if !copy.sealed {
        // A plain copy counts as older than any enveloped one; sealing it
        // with the time of the touch would make it the newest. It stays
        // plain, and gets the new TTL from the compare-and-set alone.
        return copy.raw.clone();
    }
    let mut out = BytesMut::from(&seal(&copy.value(), ttl, now)[..]);
    out[4..12].copy_from_slice(&copy.written_micros.to_be_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_reads_back_with_its_time_and_expiry() {
        let now = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let raw = seal(b"hello", Ttl::After(Duration::from_millis(1500)), now);
        assert_eq!(raw.len(), HEADER_BYTES + 5);
        assert_eq!(&raw[..4], b"tc\xE7\x01");
        let copy = Copy::parse(raw);
        assert_eq!(copy.written_micros, 1_700_000_000_123_456);
        assert_eq!(copy.expires_secs, 1_700_000_002);
        assert_eq!(&copy.value()[..], b"hello");
        assert_eq!(
            copy.remaining_ttl(now),
            Some(Ttl::After(Duration::from_secs(2)))
        );
        assert_eq!(copy.remaining_ttl(now + Duration::from_secs(3)), None);
    }

    #[test]
    fn a_plain_value_is_older_than_any_sealed_one() {
        // Starts like an envelope but is too short to be one.
        let plain = Copy::parse(Bytes::from_static(b"tc\xE7\x01short"));
        assert_eq!(plain.written_micros, 0);
        assert_eq!(&plain.value()[..], b"tc\xE7\x01short");
        let sealed = Copy::parse(seal(b"", Ttl::Never, UNIX_EPOCH));
        assert!(sealed.is_newer_than(&plain));
        assert_eq!(sealed.remaining_ttl(SystemTime::now()), Some(Ttl::Never));
        assert!(sealed.value().is_empty());
    }
}
