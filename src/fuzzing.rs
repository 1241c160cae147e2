//! Thin wrappers over the parsers of what a server sends back beyond the
//! gRPC codec, for the fuzz targets in `fuzz/`: the cluster's replica
//! envelope, and the entity cache's entry envelope and generation tokens.
//! The typed codecs (`cache::Json`, `cache::Postcard`) are public already.
//!
//! Only with the `unstable-internals` feature: not covered by semantic
//! versioning, may change in any release. Applications must not use it.

/// The cluster's replica envelope: 20 bytes (magic, version, write time,
/// expiry) before the value.
#[cfg(feature = "cluster")]
pub mod replica {
    use std::time::SystemTime;

    use bytes::Bytes;

    use crate::cluster::envelope;
    use crate::Ttl;

    /// Bytes before the value in a sealed copy.
    pub const HEADER_BYTES: usize = envelope::HEADER_BYTES;
    /// The first four bytes of a sealed copy: magic and version.
    pub const MAGIC: [u8; 4] = envelope::MAGIC;

    /// A stored value as a replica read parses it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Copy(envelope::Copy);

    impl Copy {
        /// Parses stored bytes; anything without the envelope is a plain
        /// value.
        pub fn parse(raw: Bytes) -> Copy {
            Copy(envelope::Copy::parse(raw))
        }

        /// Whether the bytes start with an envelope (the value is then
        /// the bytes after it).
        pub fn is_sealed(&self) -> bool {
            self.0.raw.len() != self.0.value().len()
        }

        /// Write time, microseconds since the epoch; 0 for a plain value.
        pub fn written_micros(&self) -> u64 {
            self.0.written_micros
        }

        /// Expiry, seconds since the epoch; 0 for never or unknown.
        pub fn expires_secs(&self) -> u64 {
            self.0.expires_secs
        }

        /// The stored bytes, envelope included.
        pub fn raw(&self) -> &Bytes {
            &self.0.raw
        }

        /// The value without its envelope.
        pub fn value(&self) -> Bytes {
            self.0.value()
        }

        /// The TTL a repair gives at `now`; `None` when expired.
        pub fn remaining_ttl(&self, now: SystemTime) -> Option<Ttl> {
            self.0.remaining_ttl(now)
        }

        /// Whether this copy wins over `other` when a read picks the
        /// newest.
        pub fn is_newer_than(&self, other: &Copy) -> bool {
            self.0.is_newer_than(&other.0)
        }

        /// What a touch stores: the same value and write time, a new
        /// expiry.
        pub fn reseal(&self, ttl: Ttl, now: SystemTime) -> Bytes {
            envelope::reseal(&self.0, ttl, now)
        }
    }

    /// What a write of `value` stores at `now`.
    pub fn seal(value: &[u8], ttl: Ttl, now: SystemTime) -> Bytes {
        envelope::seal(value, ttl, now)
    }
}

/// The entity cache's entry envelope and generation tokens.
#[cfg(feature = "entity-cache")]
pub mod entity {
    use std::time::Duration;

    use bytes::Bytes;

    use crate::cache::invalidation;

    /// An entry as the entity cache stores it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Envelope {
        /// When the generations were read, Unix milliseconds.
        pub read_at_ms: u64,
        /// The global generation the entry was computed under.
        pub global: Bytes,
        /// The entity's generation the entry was computed under.
        pub entity: Bytes,
        /// The value, as the use case's codec wrote it.
        pub value: Bytes,
    }

    impl Envelope {
        fn inner(&self) -> invalidation::Envelope {
            invalidation::Envelope {
                read_at_ms: self.read_at_ms,
                global: self.global.clone(),
                entity: self.entity.clone(),
                value: self.value.clone(),
            }
        }

        /// The envelope in stored bytes; `None` for another format.
        pub fn decode(bytes: &Bytes) -> Option<Envelope> {
            invalidation::Envelope::decode(bytes).map(|envelope| Envelope {
                read_at_ms: envelope.read_at_ms,
                global: envelope.global,
                entity: envelope.entity,
                value: envelope.value,
            })
        }

        /// The stored bytes; `None` when a token is too long to carry.
        pub fn encode(&self) -> Option<Bytes> {
            self.inner().encode()
        }

        /// Whether the entry is current under the generations read now.
        pub fn is_current(&self, global: &[u8], entity: &[u8]) -> bool {
            self.inner().is_current(global, entity)
        }
    }

    /// Until when (Unix milliseconds) a token's future buffer runs; 0
    /// when it has none.
    pub fn buffer_until_ms(token: &[u8]) -> u64 {
        invalidation::buffer_until_ms(token)
    }

    /// A fresh generation token with a future `buffer`.
    pub fn new_token(buffer: Duration) -> Bytes {
        invalidation::new_token(buffer)
    }

    /// Now, as Unix milliseconds.
    pub fn now_ms() -> u64 {
        invalidation::now_ms()
    }
}
