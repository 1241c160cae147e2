//! The server's counters, as this crate's own type: the generated message
//! can change with prost or the proto, this cannot without a release note.

use std::fmt;

/// Counters of the whole server, as returned by
/// [`Client::stats`](crate::Client::stats).
///
/// The wire carries most counters as `int32`; they arrive here as `u64`, so
/// a later wire change cannot break callers, and a negative value (which a
/// correct server never sends) reads as 0.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// client.set("k", "v")?;
/// client.get("k")?;
/// client.get("missing")?;
/// let stats = client.stats()?;
/// assert_eq!((stats.size, stats.hits, stats.misses), (1, 1, 1));
/// assert_eq!(stats.hit_rate, 0.5);
/// println!("{stats}");
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Entries stored now.
    pub size: u64,
    /// Reads that found their key.
    pub hits: u64,
    /// Reads that did not (missing or expired).
    pub misses: u64,
    /// Entries removed to make room or because they expired.
    pub evictions: u64,
    /// `hits / (hits + misses)`, 0 before the first read.
    pub hit_rate: f64,
    /// Bytes the entries take, as the server counts them (value + 33 each
    /// on the reference server).
    pub memory_usage_bytes: u64,
    /// The server's memory limit for entries, in bytes.
    pub max_memory_bytes: u64,
    /// The server's limit on the number of entries.
    pub max_items: u64,
    /// The largest value the server accepts, in bytes.
    pub max_value_bytes: u64,
    /// Entries evicted as least recently used, to stay within the limits.
    pub lru_evictions: u64,
    /// Entries removed because their TTL ran out.
    pub expired_removals: u64,
    /// Writes refused because the value was over `max_value_bytes`.
    pub rejected_oversize: u64,
    /// Writes refused because no room could be made.
    pub rejected_capacity: u64,
}

/// One line, for logs: `12 entries, 1234 B of 100 MiB; 90 hits, 10 misses
/// (90.0 % hit rate); 3 evictions`.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries, {} B of {} B; {} hits, {} misses ({:.1} % hit rate); {} evictions",
            self.size,
            self.memory_usage_bytes,
            self.max_memory_bytes,
            self.hits,
            self.misses,
            self.hit_rate * 100.0,
            self.evictions
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_with_the_hit_rate_as_a_percentage() {
        let stats = Stats {
            size: 2,
            hits: 9,
            misses: 1,
            hit_rate: 0.9,
            ..Stats::default()
        };
        let line = stats.to_string();
        assert!(line.contains("2 entries"), "{line}");
        assert!(line.contains("90.0 % hit rate"), "{line}");
        assert!(!line.contains('\n'));
    }
}
