//! What the use cases count: atomics always (for [`UseCaseStats`]), and the
//! `metrics` facade when the `metrics` feature is on.
//!
//! Handles are registered once per use case, when it is made, so a call
//! never formats a name or looks a metric up: install the application's
//! recorder before making use cases. Labels are `use_case` and `key_type`
//! (plus `reason` on `disabled`), never a key or an id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::use_case::DisabledReason;

/// The metrics prefix of an [`EntityCache`](crate::cache::EntityCache)
/// unless its builder names another: the raw client's.
pub const DEFAULT_CACHE_METRICS_PREFIX: &str = "tiny_cache_client";

/// A snapshot of what use cases counted: one use case's
/// ([`UseCase::stats`](crate::cache::UseCase::stats)) or a whole layer's
/// ([`EntityCache::stats`](crate::cache::EntityCache::stats)). Taking one
/// reads a few atomics; it needs no metrics stack.
///
/// ```
/// use tiny_cache_client::cache::UseCaseStats;
///
/// let stats = UseCaseStats::default();
/// assert_eq!(stats.hits(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UseCaseStats {
    /// Calls.
    pub requests: u64,
    /// Calls answered by the in-process layer.
    pub local_hits: u64,
    /// Calls answered by the remote layer.
    pub remote_hits: u64,
    /// Calls that used the cache and ran the function.
    pub misses: u64,
    /// Calls outside an enable scope.
    pub disabled_scope: u64,
    /// Calls of a use case its provider disabled.
    pub disabled_config: u64,
    /// Calls outside every layer's ramp.
    pub disabled_ramp: u64,
    /// Failures of the cache itself (store, encoding, decoding), each
    /// absorbed by failing open. The function's own errors are not counted.
    pub errors: u64,
    /// Entities invalidated (layer totals only).
    pub invalidations: u64,
    /// Calls of `flush_all` (layer totals only).
    pub flushes: u64,
}

impl UseCaseStats {
    /// Calls answered by either layer.
    ///
    /// ```
    /// use tiny_cache_client::cache::UseCaseStats;
    ///
    /// assert_eq!(UseCaseStats::default().hits(), 0);
    /// ```
    pub fn hits(&self) -> u64 {
        self.local_hits + self.remote_hits
    }

    /// Calls that went straight to the function, for any reason.
    ///
    /// ```
    /// use tiny_cache_client::cache::UseCaseStats;
    ///
    /// assert_eq!(UseCaseStats::default().disabled(), 0);
    /// ```
    pub fn disabled(&self) -> u64 {
        self.disabled_scope + self.disabled_config + self.disabled_ramp
    }

    fn add(&mut self, other: &UseCaseStats) {
        self.requests += other.requests;
        self.local_hits += other.local_hits;
        self.remote_hits += other.remote_hits;
        self.misses += other.misses;
        self.disabled_scope += other.disabled_scope;
        self.disabled_config += other.disabled_config;
        self.disabled_ramp += other.disabled_ramp;
        self.errors += other.errors;
        self.invalidations += other.invalidations;
        self.flushes += other.flushes;
    }
}

/// Sums snapshots.
pub(crate) fn total<'a>(all: impl IntoIterator<Item = &'a UseCaseStats>) -> UseCaseStats {
    let mut sum = UseCaseStats::default();
    for stats in all {
        sum.add(stats);
    }
    sum
}

/// The metric names of one layer, made once when it is built.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    #[cfg(feature = "metrics")]
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Names {
        #[cfg(not(feature = "metrics"))]
        let _ = prefix;
        Names {
            #[cfg(feature = "metrics")]
            prefix: prefix.to_owned(),
        }
    }

    #[cfg(feature = "metrics")]
    fn name(&self, suffix: &str) -> String {
        format!("{}_cache_{suffix}", self.prefix)
    }

    /// Counts one invalidation of an entity of `key_type`.
    pub(crate) fn invalidated(&self, enabled: bool, key_type: &str) {
        #[cfg(feature = "metrics")]
        if enabled {
            metrics::counter!(self.name("invalidations_total"), "key_type" => key_type.to_owned())
                .increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (enabled, key_type);
    }

    /// Counts one `flush_all`.
    pub(crate) fn flushed(&self, enabled: bool) {
        #[cfg(feature = "metrics")]
        if enabled {
            metrics::counter!(self.name("flushes_total")).increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = enabled;
    }
}

/// One use case's counters and metric handles.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    requests: AtomicU64,
    local_hits: AtomicU64,
    remote_hits: AtomicU64,
    misses: AtomicU64,
    disabled: [AtomicU64; 3],
    errors: AtomicU64,
    #[cfg(feature = "metrics")]
    handles: Option<Handles>,
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Handles {
    requests: metrics::Counter,
    local_hits: metrics::Counter,
    remote_hits: metrics::Counter,
    misses: metrics::Counter,
    disabled: [metrics::Counter; 3],
    errors: metrics::Counter,
    get_duration: metrics::Histogram,
    function_duration: metrics::Histogram,
    serialization_duration: metrics::Histogram,
    value_bytes: metrics::Histogram,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Meter {
    /// The counters of use case `use_case` on `key_type`; metric handles
    /// registered with the current recorder when `emit`.
    pub(crate) fn new(names: &Names, emit: bool, use_case: &str, key_type: &str) -> Meter {
        #[cfg(not(feature = "metrics"))]
        let _ = (names, emit, use_case, key_type);
        Meter {
            #[cfg(feature = "metrics")]
            handles: emit.then(|| {
                let labels = [
                    ("use_case", use_case.to_owned()),
                    ("key_type", key_type.to_owned()),
                ];
                let counter = |suffix: &str| metrics::counter!(names.name(suffix), &labels);
                let histogram = |suffix: &str| metrics::histogram!(names.name(suffix), &labels);
                let disabled = |reason: DisabledReason| {
                    metrics::counter!(
                        names.name("disabled_total"),
                        "use_case" => use_case.to_owned(),
                        "key_type" => key_type.to_owned(),
                        "reason" => reason.as_str()
                    )
                };
                Handles {
                    requests: counter("requests_total"),
                    local_hits: counter("local_hits_total"),
                    remote_hits: counter("remote_hits_total"),
                    misses: counter("misses_total"),
                    disabled: DisabledReason::ALL.map(disabled),
                    errors: counter("errors_total"),
                    get_duration: histogram("get_duration_seconds"),
                    function_duration: histogram("function_duration_seconds"),
                    serialization_duration: histogram("serialization_duration_seconds"),
                    value_bytes: histogram("value_bytes"),
                }
            }),
            ..Meter::default()
        }
    }

    pub(crate) fn snapshot(&self) -> UseCaseStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        UseCaseStats {
            requests: read(&self.requests),
            local_hits: read(&self.local_hits),
            remote_hits: read(&self.remote_hits),
            misses: read(&self.misses),
            disabled_scope: read(&self.disabled[0]),
            disabled_config: read(&self.disabled[1]),
            disabled_ramp: read(&self.disabled[2]),
            errors: read(&self.errors),
            invalidations: 0,
            flushes: 0,
        }
    }

    /// Whether timings are wanted (measuring costs two clock reads).
    #[inline]
    pub(crate) fn timed(&self) -> bool {
        #[cfg(feature = "metrics")]
        return self.handles.is_some();
        #[cfg(not(feature = "metrics"))]
        false
    }
}

/// Emits one event to the atomics and, when registered, the handle.
macro_rules! event {
    ($name:ident, $field:ident) => {
        impl Meter {
            #[inline]
            pub(crate) fn $name(&self) {
                bump(&self.$field);
                #[cfg(feature = "metrics")]
                if let Some(handles) = &self.handles {
                    handles.$field.increment(1);
                }
            }
        }
    };
}

event!(request, requests);
event!(local_hit, local_hits);
event!(remote_hit, remote_hits);
event!(miss, misses);
event!(error, errors);

/// Emits one timing or size to its histogram, when registered.
macro_rules! sample {
    ($name:ident, $field:ident, $unit:ty, $as_f64:expr) => {
        impl Meter {
            #[inline]
            pub(crate) fn $name(&self, sample: $unit) {
                #[cfg(feature = "metrics")]
                if let Some(handles) = &self.handles {
                    let as_f64: fn($unit) -> f64 = $as_f64;
                    handles.$field.record(as_f64(sample));
                }
                #[cfg(not(feature = "metrics"))]
                let _ = sample;
            }
        }
    };
}

sample!(get_took, get_duration, Duration, |d| d.as_secs_f64());
sample!(function_took, function_duration, Duration, |d| d
    .as_secs_f64());
sample!(serialization_took, serialization_duration, Duration, |d| d
    .as_secs_f64());
sample!(value_size, value_bytes, usize, |n| n as f64);

impl Meter {
    /// Counts one call that did not use the cache.
    #[inline]
    pub(crate) fn disabled(&self, reason: DisabledReason) {
        let at = reason as usize;
        bump(&self.disabled[at]);
        #[cfg(feature = "metrics")]
        if let Some(handles) = &self.handles {
            handles.disabled[at].increment(1);
        }
    }
}

/// Checks a metrics prefix: a Prometheus metric name's first part.
pub(crate) fn check_prefix(prefix: &str) -> crate::Result<()> {
    let mut chars = prefix.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(crate::Error::Validation(format!(
            "metrics prefix {prefix:?} must be [a-zA-Z_][a-zA-Z0-9_]*"
        )))
    }
}
