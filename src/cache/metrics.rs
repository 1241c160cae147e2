//! What the use cases count: atomics always (for [`UseCaseStats`]), and the
//! `metrics` facade when the `metrics` feature is on.
//!
//! Handles are registered once per use case, when it is made, so a call
//! never formats a name or looks a metric up: install the application's
//! recorder before making use cases. A layer's own events (invalidations,
//! flushes) register theirs at their first occurrence and keep them.
//! Labels are `use_case` and `key_type` (plus `reason` on `disabled`),
//! never a key or an id. Every metric is described (unit and help text)
//! once per process and prefix, when a layer first emits one.

use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "metrics")]
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use super::use_case::DisabledReason;

/// One check for a client's prefix and a layer's: their names end up side
/// by side in one exporter.
pub(crate) use crate::client::telemetry::check_prefix;

/// The metrics prefix of an [`EntityCache`](crate::cache::EntityCache)
/// unless its builder names another: the raw client's (the same constant),
/// so a layer's `{prefix}_cache_...` metrics sit next to its client's.
///
/// ```
/// use tiny_cache_client::cache::DEFAULT_CACHE_METRICS_PREFIX;
///
/// // `tiny_cache_client_cache_requests_total` and so on.
/// assert_eq!(DEFAULT_CACHE_METRICS_PREFIX, "tiny_cache_client");
/// # #[cfg(feature = "metrics")]
/// assert_eq!(DEFAULT_CACHE_METRICS_PREFIX, tiny_cache_client::DEFAULT_METRICS_PREFIX);
/// ```
pub const DEFAULT_CACHE_METRICS_PREFIX: &str = crate::client::telemetry::DEFAULT_METRICS_PREFIX;

/// A snapshot of what use cases counted: one use case's
/// ([`UseCase::local_stats`](crate::cache::UseCase::local_stats)) or a
/// whole layer's
/// ([`EntityCache::local_stats`](crate::cache::EntityCache::local_stats)).
/// Taking one reads a few atomics; it needs no metrics stack.
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

/// The metric names of one layer, made once when it is built, and the
/// handles of the layer's own events.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    #[cfg(feature = "metrics")]
    prefix: String,
    /// Set once this layer has made sure its prefix is described, so that
    /// only its first metric pays for the process-wide set's lock.
    #[cfg(feature = "metrics")]
    described: OnceLock<()>,
    #[cfg(feature = "metrics")]
    flushes: OnceLock<metrics::Counter>,
    /// By key type. Key types are open (any `&str`), unlike use cases,
    /// which register theirs when made; a layer sees a handful, so a short
    /// list behind a lock will do: an invalidation's round trip to the
    /// store dwarfs it. Shared by clones, like the series it counts.
    #[cfg(feature = "metrics")]
    invalidations: Arc<Mutex<Vec<(String, metrics::Counter)>>>,
}

/// Which `describe_*` a metric takes.
#[cfg(feature = "metrics")]
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Histogram,
}

/// Every metric of a layer: name suffix, kind, unit, help text (the
/// README's table).
#[cfg(feature = "metrics")]
const DESCRIPTIONS: [(&str, Kind, metrics::Unit, &str); 12] = {
    use metrics::Unit::{Bytes, Count, Seconds};
    use Kind::{Counter, Histogram};
    [
        ("requests_total", Counter, Count, "Calls of a use case."),
        (
            "local_hits_total",
            Counter,
            Count,
            "Use case calls answered by the in-process layer.",
        ),
        (
            "remote_hits_total",
            Counter,
            Count,
            "Use case calls answered by the remote layer.",
        ),
        (
            "misses_total",
            Counter,
            Count,
            "Use case calls that used the cache and ran the function.",
        ),
        (
            "disabled_total",
            Counter,
            Count,
            "Use case calls that went straight to the function, by reason (scope, config, ramp).",
        ),
        (
            "errors_total",
            Counter,
            Count,
            "Cache failures (store, encoding, decoding) absorbed by failing open.",
        ),
        (
            "invalidations_total",
            Counter,
            Count,
            "Entities invalidated, by key type.",
        ),
        ("flushes_total", Counter, Count, "Calls of flush_all."),
        (
            "get_duration_seconds",
            Histogram,
            Seconds,
            "A use case call's latency, whatever answered.",
        ),
        (
            "function_duration_seconds",
            Histogram,
            Seconds,
            "The cached function's own latency, when it ran.",
        ),
        (
            "serialization_duration_seconds",
            Histogram,
            Seconds,
            "Encoding a value or decoding an entry.",
        ),
        (
            "value_bytes",
            Histogram,
            Bytes,
            "Encoded value sizes, stored or read.",
        ),
    ]
};

impl Names {
    pub(crate) fn new(prefix: &str) -> Names {
        #[cfg(not(feature = "metrics"))]
        let _ = prefix;
        Names {
            #[cfg(feature = "metrics")]
            prefix: prefix.to_owned(),
            #[cfg(feature = "metrics")]
            described: OnceLock::new(),
            #[cfg(feature = "metrics")]
            flushes: OnceLock::new(),
            #[cfg(feature = "metrics")]
            invalidations: Arc::default(),
        }
    }

    #[cfg(feature = "metrics")]
    fn name(&self, suffix: &str) -> String {
        format!("{}_cache_{suffix}", self.prefix)
    }

    /// Describes every metric of the prefix to the current recorder, the
    /// first time any layer of the process emits under it: a recorder
    /// keeps descriptions for good, and layers of one prefix share them.
    #[cfg(feature = "metrics")]
    fn describe(&self) {
        self.described.get_or_init(|| {
            static DESCRIBED: Mutex<Vec<String>> = Mutex::new(Vec::new());
            {
                let mut described = DESCRIBED.lock().unwrap_or_else(PoisonError::into_inner);
                if described.contains(&self.prefix) {
                    return;
                }
                described.push(self.prefix.clone());
            }
            // Released first: layers of other prefixes need not wait for
            // this one's twelve descriptions.
            for (suffix, kind, unit, text) in DESCRIPTIONS {
                let name = self.name(suffix);
                match kind {
                    Kind::Counter => metrics::describe_counter!(name, unit, text),
                    Kind::Histogram => metrics::describe_histogram!(name, unit, text),
                }
            }
        });
    }

    /// Counts one invalidation of an entity of `key_type`.
    pub(crate) fn invalidated(&self, enabled: bool, key_type: &str) {
        #[cfg(feature = "metrics")]
        if enabled {
            self.describe();
            let mut known = self
                .invalidations
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((_, counter)) = known.iter().find(|(known, _)| known == key_type) {
                counter.increment(1);
            } else {
                let counter = metrics::counter!(
                    self.name("invalidations_total"),
                    "key_type" => key_type.to_owned()
                );
                counter.increment(1);
                known.push((key_type.to_owned(), counter));
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (enabled, key_type);
    }

    /// Counts one `flush_all`.
    pub(crate) fn flushed(&self, enabled: bool) {
        #[cfg(feature = "metrics")]
        if enabled {
            self.describe();
            self.flushes
                .get_or_init(|| metrics::counter!(self.name("flushes_total")))
                .increment(1);
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
                names.describe();
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

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use std::collections::HashMap;

    use metrics::Unit;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    type Seen = HashMap<(String, Vec<String>), (Option<Unit>, bool, DebugValue)>;

    fn seen(recorder: &DebuggingRecorder) -> Seen {
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, unit, text, value)| {
                let (_, key) = key.into_parts();
                let labels = key.labels().map(|l| l.value().to_owned()).collect();
                let described = text.is_some_and(|t| !t.is_empty());
                ((key.name().to_owned(), labels), (unit, described, value))
            })
            .collect()
    }

    #[test]
    fn a_layer_keeps_its_handles_and_describes_every_metric_with_its_unit() {
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            let names = Names::new("unit_layer");
            let meter = Meter::new(&names, true, "Profile", "user_id");
            meter.request();
            meter.miss();
            meter.get_took(Duration::from_millis(1));
            meter.value_size(100);
            for _ in 0..3 {
                names.invalidated(true, "user_id");
                names.flushed(true);
            }
            names.invalidated(true, "order_id");
            names.invalidated(false, "never");
        });
        let seen = seen(&recorder);
        let get = |name: &str, labels: &[&str]| {
            let key = (
                format!("unit_layer_cache_{name}"),
                labels.iter().map(|l| l.to_string()).collect(),
            );
            seen.get(&key)
                .unwrap_or_else(|| panic!("{key:?}: {seen:?}"))
        };
        let counted = |name: &str, labels: &[&str]| match get(name, labels) {
            (Some(Unit::Count), true, DebugValue::Counter(n)) => *n,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(counted("invalidations_total", &["user_id"]), 3);
        assert_eq!(counted("invalidations_total", &["order_id"]), 1);
        assert_eq!(counted("flushes_total", &[]), 3);
        assert_eq!(counted("requests_total", &["Profile", "user_id"]), 1);
        assert_eq!(
            counted("disabled_total", &["Profile", "user_id", "ramp"]),
            0
        );
        assert!(matches!(
            get("get_duration_seconds", &["Profile", "user_id"]),
            (Some(Unit::Seconds), true, DebugValue::Histogram(_))
        ));
        assert!(matches!(
            get("value_bytes", &["Profile", "user_id"]),
            (Some(Unit::Bytes), true, DebugValue::Histogram(_))
        ));
        assert!(!seen
            .keys()
            .any(|(_, labels)| labels.iter().any(|l| l == "never")));
    }

    #[test]
    fn a_prefix_is_described_once_per_process() {
        let first = DebuggingRecorder::new();
        metrics::with_local_recorder(&first, || {
            Names::new("unit_once").flushed(true);
        });
        let second = DebuggingRecorder::new();
        metrics::with_local_recorder(&second, || {
            Names::new("unit_once").flushed(true);
        });
        let flushes = ("unit_once_cache_flushes_total".to_owned(), Vec::new());
        assert!(matches!(
            seen(&first).get(&flushes),
            Some((Some(Unit::Count), true, _))
        ));
        assert!(matches!(
            seen(&second).get(&flushes),
            Some((None, false, _))
        ));
    }

    #[test]
    fn the_default_prefix_is_the_clients() {
        assert_eq!(
            DEFAULT_CACHE_METRICS_PREFIX,
            crate::client::telemetry::DEFAULT_METRICS_PREFIX
        );
        assert!(check_prefix(DEFAULT_CACHE_METRICS_PREFIX).is_ok());
        assert!(check_prefix("no-dash").is_err());
    }
}
