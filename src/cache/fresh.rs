//! What a read-through entry carries to stay fresh without a stampede:
//! when it was written, how long it took to compute, when it expires, and
//! whether it records a value or a remembered miss.
//!
//! A [`ReadThrough`](super::ReadThrough) layer with early expiry or
//! negative caching on stores each entry in this envelope (19 bytes, then
//! the value):
//!
//! | bytes | what |
//! | --- | --- |
//! | 2 | magic and version: `F7 01` |
//! | 1 | kind: `0` a value, `1` a remembered miss (no value follows) |
//! | 8 | write time, ms since the Unix epoch, big-endian |
//! | 4 | compute time of the value, µs, big-endian |
//! | 4 | the TTL it was written with, s, big-endian (`0`: never expires) |
//!
//! Stored bytes without the magic (or too short for the header) read as a
//! plain value with nothing known of its age, so a layer can be switched
//! on over entries written before.
//!
//! Two things are decided here:
//! - **TTL jitter**: entries written together get TTLs spread by a
//!   fraction, so keys filled together do not all expire together;
//! - **early expiration** (XFetch, Vattani, Chierichetti and Lowenstein,
//!   VLDB 2015): a reader treats an entry as expired a little early, with
//!   a probability that grows as its expiry nears, scaled by how long the
//!   value took to compute and by `beta`, so one reader recomputes it
//!   before it expires while the others keep reading it.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use crate::ttl::Ttl;

const MAGIC: [u8; 2] = [0xF7, 0x01];
/// Header bytes in front of the value.
pub(crate) const HEADER_LEN: usize = 19;

const KIND_VALUE: u8 = 0;
const KIND_MISS: u8 = 1;

/// An entry read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The value, `None` for a remembered miss.
    pub(crate) value: Option<Bytes>,
    /// What the envelope says of its age; `None` for plain bytes.
    pub(crate) age: Option<Age>,
}

/// When an entry was written, how long its value took, when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Age {
    pub(crate) written_ms: u64,
    pub(crate) compute: Duration,
    /// The TTL it was written with; `None` when it never expires.
    pub(crate) ttl: Option<Duration>,
}

impl Age {
    /// How long ago the entry was written (zero for a clock gone back).
    pub(crate) fn elapsed(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.written_ms))
    }
}

/// Wraps `value` (`None`: a remembered miss) in the envelope.
pub(crate) fn seal(value: Option<&[u8]>, compute: Duration, ttl: Ttl) -> Bytes {
    let body = value.unwrap_or_default();
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    out.put_slice(&MAGIC);
    out.put_u8(if value.is_some() {
        KIND_VALUE
    } else {
        KIND_MISS
    });
    out.put_u64(now_ms());
    out.put_u32(u32::try_from(compute.as_micros()).unwrap_or(u32::MAX));
    let ttl_s = match ttl {
        Ttl::Never => 0,
        Ttl::After(ttl) => u32::try_from(ttl.as_secs().max(1)).unwrap_or(u32::MAX),
    };
    out.put_u32(ttl_s);
    out.put_slice(body);
    out.freeze()
}

/// Reads stored bytes: an envelope, or plain bytes (a value of unknown age).
pub(crate) fn open(stored: &Bytes) -> Entry {
    let plain = || Entry {
        value: Some(stored.clone()),
        age: None,
    };
    if stored.len() < HEADER_LEN || stored[..2] != MAGIC {
        return plain();
    }
    let kind = stored[2];
    let number = |from: usize, len: usize| {
        stored[from..from + len]
            .iter()
            .fold(0u64, |n, &byte| (n << 8) | u64::from(byte))
    };
    let age = Age {
        written_ms: number(3, 8),
        compute: Duration::from_micros(number(11, 4)),
        ttl: match number(15, 4) {
            0 => None,
            seconds => Some(Duration::from_secs(seconds)),
        },
    };
    match kind {
        KIND_VALUE => Entry {
            value: Some(stored.slice(HEADER_LEN..)),
            age: Some(age),
        },
        KIND_MISS if stored.len() == HEADER_LEN => Entry {
            value: None,
            age: Some(age),
        },
        // Not one of ours after all.
        _ => plain(),
    }
}

/// `ttl` spread by up to ± `fraction` of itself (0 leaves it), never
/// below one second.
pub(crate) fn jitter(ttl: Ttl, fraction: f64) -> Ttl {
    match ttl {
        Ttl::After(ttl) if fraction > 0.0 => {
            // A uniform factor in [1 - fraction, 1 + fraction].
            let factor = 1.0 + fraction * (2.0 * unit_random() - 1.0);
            // Never below a second, never past what the wire carries.
            let jittered = (ttl.as_secs_f64() * factor).clamp(1.0, f64::from(i32::MAX));
            Ttl::After(Duration::from_secs_f64(jittered))
        }
        other => other,
    }
}

/// XFetch: whether a reader should recompute `age`'s entry now, before it
/// expires. With `delta` the compute time, it does when
/// `now - delta * beta * ln(u) >= expiry`, `u` uniform in (0, 1]: never
/// long before expiry, ever more likely as it nears, sooner for values
/// that take long to compute.
pub(crate) fn expires_early(age: &Age, beta: f64) -> bool {
    let Some(ttl) = age.ttl else {
        return false;
    };
    let expiry_ms = age.written_ms as f64 + ttl.as_millis() as f64;
    let delta_ms = age.compute.as_secs_f64() * 1000.0;
    let gap = -delta_ms * beta * unit_random().ln();
    now_ms() as f64 + gap >= expiry_ms
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

thread_local! {
    /// SplitMix64 state: these decisions need spread, not security.
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    let stack = &nanos as *const u64 as u64;
    nanos ^ stack.rotate_left(32)
}

/// A uniform number in (0, 1].
fn unit_random() -> f64 {
    let next = STATE
        .try_with(|state| {
            let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .unwrap_or_else(|_| seed());
    // 53 random bits, shifted off zero.
    ((next >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_written() {
        let sealed = seal(
            Some(b"value"),
            Duration::from_micros(1500),
            Ttl::After(Duration::from_secs(60)),
        );
        let entry = open(&sealed);
        assert_eq!(entry.value.as_deref(), Some(&b"value"[..]));
        let age = entry.age.expect("an envelope");
        assert_eq!(age.compute, Duration::from_micros(1500));
        assert_eq!(age.ttl, Some(Duration::from_secs(60)));
        assert!(age.written_ms.abs_diff(now_ms()) < 5_000);

        let miss = open(&seal(None, Duration::ZERO, Ttl::Never));
        assert_eq!(miss.value, None);
        assert_eq!(miss.age.and_then(|age| age.ttl), None);
    }

    #[test]
    fn plain_bytes_read_as_a_value_of_unknown_age() {
        for plain in [
            &b""[..],
            b"hello",
            &[0xF7, 0x01, 0x00],
            &[
                0xF7, 0x01, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ] {
            let stored = Bytes::copy_from_slice(plain);
            assert_eq!(
                open(&stored),
                Entry {
                    value: Some(stored.clone()),
                    age: None
                }
            );
        }
        // A miss marker followed by bytes is not one of ours.
        let mut odd = seal(None, Duration::ZERO, Ttl::Never).to_vec();
        odd.push(1);
        assert_eq!(open(&Bytes::from(odd)).age, None);
    }

    #[test]
    fn jitter_spreads_within_the_fraction_and_keeps_a_second() {
        let ttl = Ttl::After(Duration::from_secs(100));
        let spread: Vec<f64> = (0..1000)
            .map(|_| match jitter(ttl, 0.1) {
                Ttl::After(d) => d.as_secs_f64(),
                Ttl::Never => f64::NAN,
            })
            .collect();
        assert!(
            spread.iter().all(|s| (90.0..=110.0).contains(s)),
            "{spread:?}"
        );
        let (low, high) = spread
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &s| (l.min(s), h.max(s)));
        assert!(low < 93.0 && high > 107.0, "{low} {high}");
        assert_eq!(jitter(ttl, 0.0), ttl);
        assert_eq!(jitter(Ttl::Never, 0.5), Ttl::Never);
        for _ in 0..100 {
            match jitter(Ttl::After(Duration::from_secs(1)), 0.9) {
                Ttl::After(d) => assert!(d >= Duration::from_secs(1), "{d:?}"),
                Ttl::Never => panic!("a TTL stays a TTL"),
            }
        }
    }

    #[test]
    fn early_expiry_grows_as_the_expiry_nears() {
        let fresh = Age {
            written_ms: now_ms(),
            compute: Duration::from_millis(100),
            ttl: Some(Duration::from_secs(60)),
        };
        assert!(
            (0..1000).all(|_| !expires_early(&fresh, 1.0)),
            "a minute away"
        );
        let due = Age {
            written_ms: now_ms() - 59_900,
            ..fresh
        };
        let early = (0..1000).filter(|_| expires_early(&due, 1.0)).count();
        // 100 ms left, 100 ms to compute: a reader recomputes when
        // -ln(u) >= 1, that is for u <= 1/e: about 37 % of readers.
        assert!((280..460).contains(&early), "{early}");
        let past = Age {
            written_ms: now_ms() - 61_000,
            ..fresh
        };
        assert!(expires_early(&past, 1.0));
        let never = Age { ttl: None, ..fresh };
        assert!(!expires_early(&never, 1.0));
    }
}
