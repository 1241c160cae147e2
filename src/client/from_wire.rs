//! The server's `CacheStats` message as the client's own [`Stats`]: kept
//! apart so that `stats.rs` names no generated type.

use super::stats::Stats;
use crate::proto::cache::CacheStats;

/// A wire counter as `u64`; a negative one (never sent by a correct
/// server) reads as 0 rather than as a huge number.
fn counter(value: impl Into<i64>) -> u64 {
    u64::try_from(value.into()).unwrap_or(0)
}

impl From<CacheStats> for Stats {
    fn from(wire: CacheStats) -> Stats {
        Stats {
            size: counter(wire.size),
            hits: counter(wire.hits),
            misses: counter(wire.misses),
            evictions: counter(wire.evictions),
            hit_rate: wire.hit_rate,
            memory_usage_bytes: counter(wire.memory_usage_bytes),
            max_memory_bytes: counter(wire.max_memory_bytes),
            max_items: counter(wire.max_items),
            max_value_bytes: counter(wire.max_value_bytes),
            lru_evictions: counter(wire.lru_evictions),
            expired_removals: counter(wire.expired_removals),
            rejected_oversize: counter(wire.rejected_oversize),
            rejected_capacity: counter(wire.rejected_capacity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_counters_widen_and_negative_ones_read_as_zero() {
        let stats = Stats::from(CacheStats {
            size: 3,
            hits: -1,
            memory_usage_bytes: 5_000_000_000,
            hit_rate: 0.25,
            ..CacheStats::default()
        });
        assert_eq!(stats.size, 3);
        assert_eq!(stats.hits, 0);
        assert_eq!(stats.memory_usage_bytes, 5_000_000_000);
        assert_eq!(stats.hit_rate, 0.25);
    }
}
