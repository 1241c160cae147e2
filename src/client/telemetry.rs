//! What the raw client tells the outside about its calls: metrics through
//! the `metrics` facade (feature `metrics`), spans and events through
//! `tracing` (feature `tracing`), and a snapshot of its own counters.
//!
//! With both features off, every hook here is an empty inline function on
//! zero-sized types: the call path pays nothing.
//!
//! Each metric handle is registered once per client and kept, as the
//! `metrics` crate's own examples do, so a call never formats a name or
//! looks a metric up in the recorder. A handle is registered when its
//! series first moves (the first call of a method, the first call of a
//! method to end with a code, the first retry, the first reconnect), so the
//! recorder sees the same series as when every call looked them up, and
//! none that never moved: install the recorder before making calls.

#[cfg(feature = "metrics")]
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
#[cfg(feature = "metrics")]
use std::sync::{Arc, OnceLock};
#[cfg(feature = "metrics")]
use std::time::Instant;

#[cfg(any(feature = "metrics", feature = "tracing"))]
use crate::codec::Code;
use crate::codec::Method;
use crate::error::{Error, Result};

/// The metrics prefix used unless the builder names another. An
/// [`EntityCache`](crate::cache::EntityCache)'s default is the same value,
/// so a layer's metrics sit next to its client's.
///
/// ```
/// # #[cfg(feature = "metrics")] {
/// use tiny_cache_client::{Client, DEFAULT_METRICS_PREFIX};
///
/// assert_eq!(DEFAULT_METRICS_PREFIX, "tiny_cache_client");
/// // Naming it is the same as naming nothing: `tiny_cache_client_calls_total`.
/// let client = Client::builder("127.0.0.1:50051")
///     .metrics_prefix(DEFAULT_METRICS_PREFIX)
///     .build()?;
/// # drop(client);
/// # }
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
#[cfg(any(feature = "metrics", feature = "entity-cache"))]
pub const DEFAULT_METRICS_PREFIX: &str = "tiny_cache_client";

/// Checks a metrics prefix, a client's or an entity cache's: every name is
/// `{prefix}_...`, so the prefix must be a Prometheus metric name's first
/// part or every exporter would have to mangle it.
#[cfg(any(feature = "metrics", feature = "entity-cache"))]
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    let mut chars = prefix.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::Validation(format!(
            "metrics prefix {prefix:?} must be [a-zA-Z_][a-zA-Z0-9_]*"
        )))
    }
}

/// What every clone of a client shares for its telemetry.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    #[cfg(feature = "metrics")]
    metrics: Option<Metrics>,
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Metrics {
    names: &'static MetricNames,
    counts: Arc<Counts>,
    handles: Box<Handles>,
}

/// The metric names under one prefix, made once per prefix for the life of
/// the process so that registering a handle never formats a name.
#[cfg(feature = "metrics")]
#[derive(Debug)]
struct MetricNames {
    calls: &'static str,
    errors: &'static str,
    retries: &'static str,
    reconnects: &'static str,
    in_flight: &'static str,
    duration: &'static str,
}

#[cfg(feature = "metrics")]
impl MetricNames {
    /// The names under `prefix`, described to the current recorder the
    /// first time the process sees the prefix.
    fn for_prefix(prefix: &str) -> &'static MetricNames {
        use std::sync::{Mutex, PoisonError};
        // A handful of prefixes per process at most: each is leaked once.
        static MADE: Mutex<Vec<(String, &'static MetricNames)>> = Mutex::new(Vec::new());
        let names = {
            let mut made = MADE.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, names)) = made.iter().find(|(p, _)| p == prefix) {
                return names;
            }
            let name = |suffix: &str| -> &'static str {
                Box::leak(format!("{prefix}_{suffix}").into_boxed_str())
            };
            let names: &'static MetricNames = Box::leak(Box::new(MetricNames {
                calls: name("calls_total"),
                errors: name("errors_total"),
                retries: name("retries_total"),
                reconnects: name("reconnects_total"),
                in_flight: name("calls_in_flight"),
                duration: name("call_duration_seconds"),
            }));
            made.push((prefix.to_owned(), names));
            names
        };
        // Outside the lock: a recorder is foreign code, and a client made
        // meanwhile with this prefix only misses a description it does not
        // need to count.
        names.describe();
        names
    }

    /// Tells the recorder each metric's unit and meaning (an exporter's
    /// `# HELP`), as the README's table does.
    fn describe(&self) {
        use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        describe_counter!(
            self.calls,
            Unit::Count,
            "Calls finished, by gRPC method and final status code."
        );
        describe_counter!(
            self.errors,
            Unit::Count,
            "Calls that ended in an error, by gRPC method and status code."
        );
        describe_counter!(
            self.retries,
            Unit::Count,
            "Attempts made again after a failure, by gRPC method."
        );
        describe_counter!(
            self.reconnects,
            Unit::Count,
            "Connections made again after a pool worker's first."
        );
        describe_gauge!(
            self.in_flight,
            Unit::Count,
            "Calls under way, by gRPC method."
        );
        describe_histogram!(
            self.duration,
            Unit::Seconds,
            "A call's latency, retries included, by gRPC method."
        );
    }
}

/// The client's own counters, behind [`ClientMetrics`].
#[cfg(feature = "metrics")]
#[derive(Debug, Default)]
struct Counts {
    calls: AtomicU64,
    errors_by_code: [AtomicU64; CODES],
    retries: AtomicU64,
    reconnects: AtomicU64,
    in_flight: AtomicI64,
}

/// gRPC codes 0..=16.
#[cfg(feature = "metrics")]
const CODES: usize = 17;

/// Methods, indexed `Method as usize` (`Method::ALL` is in declaration
/// order).
#[cfg(feature = "metrics")]
const METHODS: usize = Method::ALL.len();

/// A client's metric handles. Each is registered at its series' first
/// event and kept: after that, a call reads an initialized `OnceLock` (one
/// atomic load, no lock) instead of asking the recorder for the metric.
/// Tables over methods and codes rather than a map: both sets are closed,
/// so a slot is an array index away.
#[cfg(feature = "metrics")]
struct Handles {
    /// By method.
    methods: [OnceLock<MethodHandles>; METHODS],
    /// By method; apart from `methods` because most methods never retry
    /// and a series that never moved should not be exported.
    retries: [OnceLock<metrics::Counter>; METHODS],
    /// By method, then code (`Code as usize`).
    outcomes: [[OnceLock<Outcome>; CODES]; METHODS],
}

/// Every call of a method moves both, so they are registered together.
#[cfg(feature = "metrics")]
struct MethodHandles {
    in_flight: metrics::Gauge,
    duration: metrics::Histogram,
}

/// The counters of calls of one method that ended with one code.
#[cfg(feature = "metrics")]
struct Outcome {
    calls: metrics::Counter,
    /// A no-op for `OK`, which is not an error.
    errors: metrics::Counter,
}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for Handles {
    // 200-odd slots would drown a client's `Debug` output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handles").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
impl Metrics {
    fn new(prefix: &str) -> Metrics {
        Metrics {
            names: MetricNames::for_prefix(prefix),
            counts: Arc::default(),
            handles: Box::new(Handles {
                methods: [const { OnceLock::new() }; METHODS],
                retries: [const { OnceLock::new() }; METHODS],
                outcomes: [const { [const { OnceLock::new() }; CODES] }; METHODS],
            }),
        }
    }

    #[inline]
    fn of_method(&self, method: Method) -> &MethodHandles {
        self.handles.methods[method as usize].get_or_init(|| {
            let (names, method) = (self.names, method.name());
            MethodHandles {
                in_flight: metrics::gauge!(names.in_flight, "method" => method),
                duration: metrics::histogram!(names.duration, "method" => method),
            }
        })
    }

    #[inline]
    fn retries(&self, method: Method) -> &metrics::Counter {
        self.handles.retries[method as usize]
            .get_or_init(|| metrics::counter!(self.names.retries, "method" => method.name()))
    }

    #[inline]
    fn outcome(&self, method: Method, code: Code) -> &Outcome {
        self.handles.outcomes[method as usize][code as usize].get_or_init(|| {
            let names = self.names;
            let labels = [("method", method.name()), ("code", code.as_str())];
            Outcome {
                calls: metrics::counter!(names.calls, &labels),
                errors: if code == Code::Ok {
                    metrics::Counter::noop()
                } else {
                    metrics::counter!(names.errors, &labels)
                },
            }
        })
    }
}

/// A snapshot of a client's counters, shared by all its clones: what a
/// program without a metrics stack can log or expose itself. Taking one
/// reads a few atomics.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// use tiny_cache_client::{Client, Code};
///
/// let client = Client::new(&server.address())?;
/// client.set("k", "v")?;
/// let _ = client.get("");          // refused before sending: not a call
/// let metrics = client.metrics();
/// assert_eq!(metrics.calls, 1);
/// assert_eq!(metrics.errors, 0);
/// assert_eq!(metrics.in_flight, 0);
/// assert_eq!(metrics.errors_with(Code::Unavailable), 0);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "metrics")]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClientMetrics {
    /// Calls finished (each counted once, however many attempts it took).
    pub calls: u64,
    /// Calls that ended in an error.
    pub errors: u64,
    /// Failed calls by gRPC code, codes with none left out.
    pub errors_by_code: Vec<(Code, u64)>,
    /// Attempts made again after a failure (transparent resends included).
    pub retries: u64,
    /// Connections made again after the first one, by every worker.
    pub reconnects: u64,
    /// Calls under way now.
    pub in_flight: u64,
}

#[cfg(feature = "metrics")]
impl ClientMetrics {
    /// Failed calls with `code`.
    ///
    /// ```
    /// use tiny_cache_client::{ClientMetrics, Code};
    ///
    /// // A client that made no call yet.
    /// let metrics = ClientMetrics::default();
    /// assert_eq!(metrics.errors_with(Code::DeadlineExceeded), 0);
    /// ```
    pub fn errors_with(&self, code: Code) -> u64 {
        self.errors_by_code
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(0, |(_, n)| *n)
    }
}

impl Telemetry {
    /// Telemetry for a client whose metrics, when the feature is on, go
    /// under `prefix`.
    #[cfg(feature = "metrics")]
    pub(crate) fn new(prefix: &str) -> Telemetry {
        Telemetry {
            metrics: Some(Metrics::new(prefix)),
        }
    }

    /// Telemetry without metrics.
    #[cfg(not(feature = "metrics"))]
    pub(crate) fn new() -> Telemetry {
        Telemetry::default()
    }

    /// What the pool calls when a worker connects again after its first
    /// connection.
    pub(crate) fn reconnect_hook(&self) -> Option<crate::pool::ReconnectHook> {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            let counts = Arc::clone(&metrics.counts);
            let name = metrics.names.reconnects;
            // Registered at the first reconnect, on the pool worker that
            // made it: series that never moved stay unexported, and a
            // worker thread records to the process's recorder.
            let reconnects = OnceLock::new();
            return Some(crate::pool::ReconnectHook(Arc::new(move || {
                counts.reconnects.fetch_add(1, Ordering::Relaxed);
                reconnects
                    .get_or_init(|| metrics::counter!(name))
                    .increment(1);
            })));
        }
        None
    }

    /// The client's counters now.
    #[cfg(feature = "metrics")]
    pub(crate) fn snapshot(&self) -> ClientMetrics {
        let Some(metrics) = &self.metrics else {
            return ClientMetrics::default();
        };
        let counts = &metrics.counts;
        let errors_by_code: Vec<(Code, u64)> = counts
            .errors_by_code
            .iter()
            .enumerate()
            .filter_map(|(code, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then(|| (Code::from_i32(code as i32), n))
            })
            .collect();
        ClientMetrics {
            calls: counts.calls.load(Ordering::Relaxed),
            errors: errors_by_code.iter().map(|(_, n)| n).sum(),
            errors_by_code,
            retries: counts.retries.load(Ordering::Relaxed),
            reconnects: counts.reconnects.load(Ordering::Relaxed),
            in_flight: u64::try_from(counts.in_flight.load(Ordering::Relaxed)).unwrap_or(0),
        }
    }

    /// Starts observing one call.
    #[inline]
    pub(crate) fn start(&self, method: Method) -> Observation<'_> {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics.counts.in_flight.fetch_add(1, Ordering::Relaxed);
            metrics.of_method(method).in_flight.increment(1.0);
        }
        Observation {
            #[cfg(feature = "metrics")]
            telemetry: self,
            #[cfg(feature = "metrics")]
            started: Instant::now(),
            #[cfg(any(feature = "metrics", feature = "tracing"))]
            method,
            #[cfg(feature = "tracing")]
            span: tracing::debug_span!(
                "tiny_cache_client.call",
                method = method.name(),
                attempt = tracing::field::Empty,
                code = tracing::field::Empty,
                request_id = tracing::field::Empty,
            ),
            #[cfg(not(feature = "metrics"))]
            _telemetry: {
                #[cfg(not(feature = "tracing"))]
                let _ = method;
                std::marker::PhantomData
            },
        }
    }
}

/// One call being observed, from its start to its outcome.
pub(crate) struct Observation<'a> {
    #[cfg(feature = "metrics")]
    telemetry: &'a Telemetry,
    #[cfg(feature = "metrics")]
    started: Instant,
    #[cfg(any(feature = "metrics", feature = "tracing"))]
    method: Method,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(not(feature = "metrics"))]
    _telemetry: std::marker::PhantomData<&'a Telemetry>,
}

impl Observation<'_> {
    /// Attempt `number` (1 for the first) is about to be sent.
    #[inline]
    pub(crate) fn attempt(&self, number: u32) {
        #[cfg(feature = "tracing")]
        self.span.record("attempt", number);
        #[cfg(not(feature = "tracing"))]
        let _ = number;
    }

    /// The attempt failed with `error` and the call will try again after
    /// `pause`.
    #[inline]
    pub(crate) fn retry(&self, error: &Error, pause: std::time::Duration) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.telemetry.metrics {
            metrics.counts.retries.fetch_add(1, Ordering::Relaxed);
            metrics.retries(self.method).increment(1);
        }
        #[cfg(feature = "tracing")]
        self.span.in_scope(|| {
            tracing::debug!(
                method = self.method.name(),
                code = error.code().as_str(),
                ?pause,
                %error,
                "retrying the call"
            )
        });
        #[cfg(not(feature = "tracing"))]
        let _ = (error, pause);
    }

    /// The server's request id for a successful attempt.
    #[inline]
    pub(crate) fn answered_as(&self, request_id: Option<&http::HeaderValue>) {
        #[cfg(feature = "tracing")]
        if let Some(id) = request_id.and_then(|id| id.to_str().ok()) {
            self.span.record("request_id", id);
        }
        #[cfg(not(feature = "tracing"))]
        let _ = request_id;
    }

    /// The call ended with `outcome`.
    #[inline]
    pub(crate) fn finish<T>(self, outcome: &Result<T>) {
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        let code = match outcome {
            Ok(_) => Code::Ok,
            Err(error) => error.code(),
        };
        #[cfg(feature = "tracing")]
        {
            self.span.record("code", code.as_str());
            if let Err(error) = outcome {
                if let Some(id) = error.request_id() {
                    self.span.record("request_id", id);
                }
                self.span
                    .in_scope(|| tracing::debug!(code = code.as_str(), %error, "call failed"));
            }
        }
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.telemetry.metrics {
            let counts = &metrics.counts;
            counts.calls.fetch_add(1, Ordering::Relaxed);
            counts.in_flight.fetch_sub(1, Ordering::Relaxed);
            let ended = metrics.outcome(self.method, code);
            if code != Code::Ok {
                counts.errors_by_code[code as usize].fetch_add(1, Ordering::Relaxed);
                ended.errors.increment(1);
            }
            ended.calls.increment(1);
            let of_method = metrics.of_method(self.method);
            of_method.in_flight.decrement(1.0);
            of_method
                .duration
                .record(self.started.elapsed().as_secs_f64());
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = outcome;
    }
}

#[cfg(all(test, any(feature = "metrics", feature = "entity-cache")))]
mod prefix_tests {
    use super::*;

    #[test]
    fn prefixes_must_be_metric_names() {
        assert!(check_prefix(DEFAULT_METRICS_PREFIX).is_ok());
        assert!(check_prefix("_x9").is_ok());
        for bad in ["", "9x", "a-b", "a b", "a:b", "é"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn names_are_made_once_per_prefix() {
        let a = MetricNames::for_prefix("svc");
        let b = MetricNames::for_prefix("svc");
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.calls, "svc_calls_total");
        assert_eq!(a.duration, "svc_call_duration_seconds");
    }

    #[test]
    fn methods_and_codes_are_their_tables_indexes() {
        for (at, method) in Method::ALL.into_iter().enumerate() {
            assert_eq!(method as usize, at, "{method:?}");
        }
        for at in 0..CODES {
            assert_eq!(Code::from_i32(at as i32) as usize, at);
        }
    }

    /// The debugging recorder, counting the handles it is asked for.
    struct Counting {
        inner: DebuggingRecorder,
        registered: AtomicUsize,
    }

    impl Counting {
        fn registered(&self) -> usize {
            self.registered.load(Ordering::Relaxed)
        }
    }

    impl Recorder for Counting {
        fn describe_counter(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
            self.inner.describe_counter(key, unit, text);
        }
        fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
            self.inner.describe_gauge(key, unit, text);
        }
        fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
            self.inner.describe_histogram(key, unit, text);
        }
        fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
            self.registered.fetch_add(1, Ordering::Relaxed);
            self.inner.register_counter(key, metadata)
        }
        fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
            self.registered.fetch_add(1, Ordering::Relaxed);
            self.inner.register_gauge(key, metadata)
        }
        fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
            self.registered.fetch_add(1, Ordering::Relaxed);
            self.inner.register_histogram(key, metadata)
        }
    }

    fn counting() -> Counting {
        Counting {
            inner: DebuggingRecorder::new(),
            registered: AtomicUsize::new(0),
        }
    }

    #[test]
    fn a_handle_is_registered_once_and_only_when_its_series_first_moves() {
        let recorder = counting();
        let snapshotter = recorder.inner.snapshotter();
        let failed: Result<()> = Err(Error::Unavailable("down".into()));
        metrics::with_local_recorder(&recorder, || {
            let telemetry = Telemetry::new("kept");
            assert_eq!(recorder.registered(), 0, "nothing moved yet");
            for _ in 0..100 {
                telemetry.start(Method::Get).finish(&Ok(()));
            }
            // In flight, latency, calls{Get, OK}.
            assert_eq!(recorder.registered(), 3);
            for _ in 0..100 {
                let call = telemetry.start(Method::Get);
                call.retry(&Error::Unavailable("down".into()), Duration::ZERO);
                call.finish(&failed);
            }
            // And retries{Get}, calls and errors{Get, UNAVAILABLE}.
            assert_eq!(recorder.registered(), 6);
            let hook = telemetry.reconnect_hook().expect("metrics on");
            for _ in 0..100 {
                (hook.0)();
            }
            assert_eq!(recorder.registered(), 7);
        });

        let seen: HashMap<(String, Vec<String>), DebugValue> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let (_, key) = key.into_parts();
                let labels = key.labels().map(|l| l.value().to_owned()).collect();
                ((key.name().to_owned(), labels), value)
            })
            .collect();
        let counter = |name: &str, labels: &[&str]| {
            let labels = labels.iter().map(|l| l.to_string()).collect();
            match seen.get(&(name.to_owned(), labels)) {
                Some(DebugValue::Counter(n)) => *n,
                other => panic!("{name}: {other:?}"),
            }
        };
        assert_eq!(counter("kept_calls_total", &["Get", "OK"]), 100);
        assert_eq!(counter("kept_calls_total", &["Get", "UNAVAILABLE"]), 100);
        assert_eq!(counter("kept_errors_total", &["Get", "UNAVAILABLE"]), 100);
        assert_eq!(counter("kept_retries_total", &["Get"]), 100);
        assert_eq!(counter("kept_reconnects_total", &[]), 100);
        match seen.get(&(
            "kept_call_duration_seconds".to_owned(),
            vec!["Get".to_owned()],
        )) {
            Some(DebugValue::Histogram(samples)) => assert_eq!(samples.len(), 200),
            other => panic!("latency: {other:?}"),
        }
        assert_eq!(seen.len(), 7, "no series that never moved: {seen:?}");
    }

    #[test]
    fn every_metric_is_described_with_its_unit_once_per_prefix() {
        let first = counting();
        let snapshotter = first.inner.snapshotter();
        metrics::with_local_recorder(&first, || {
            let telemetry = Telemetry::new("described");
            telemetry.start(Method::Set).finish(&Ok(()));
            let call = telemetry.start(Method::Set);
            call.retry(&Error::Unavailable("down".into()), Duration::ZERO);
            call.finish(&Err::<(), _>(Error::Unavailable("down".into())));
            let hook = telemetry.reconnect_hook().expect("metrics on");
            (hook.0)();
        });
        let described: HashMap<String, (Option<Unit>, bool)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, unit, text, _)| {
                let name = key.key().name().to_owned();
                (name, (unit, text.is_some_and(|t| !t.is_empty())))
            })
            .collect();
        for (suffix, unit) in [
            ("calls_total", Unit::Count),
            ("errors_total", Unit::Count),
            ("retries_total", Unit::Count),
            ("reconnects_total", Unit::Count),
            ("calls_in_flight", Unit::Count),
            ("call_duration_seconds", Unit::Seconds),
        ] {
            let name = format!("described_{suffix}");
            assert_eq!(described.get(&name), Some(&(Some(unit), true)), "{name}");
        }

        // A second client with the prefix describes nothing again.
        let second = counting();
        let snapshotter = second.inner.snapshotter();
        metrics::with_local_recorder(&second, || {
            Telemetry::new("described")
                .start(Method::Set)
                .finish(&Ok(()));
        });
        for (_, unit, text, _) in snapshotter.snapshot().into_vec() {
            assert_eq!((unit, text), (None, None));
        }
    }
}
