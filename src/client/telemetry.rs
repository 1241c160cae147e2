//! What the raw client tells the outside about its calls: metrics through
//! the `metrics` facade (feature `metrics`), spans and events through
//! `tracing` (feature `tracing`), and a snapshot of its own counters.
//!
//! With both features off, every hook here is an empty inline function on
//! zero-sized types: the call path pays nothing.

#[cfg(feature = "metrics")]
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
#[cfg(feature = "metrics")]
use std::sync::Arc;
#[cfg(feature = "metrics")]
use std::time::Instant;

#[cfg(any(feature = "metrics", feature = "tracing"))]
use crate::codec::Code;
use crate::codec::Method;
use crate::error::{Error, Result};

/// The metrics prefix used unless the builder names another.
#[cfg(feature = "metrics")]
pub const DEFAULT_METRICS_PREFIX: &str = "tiny_cache_client";

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
}

/// The metric names under one prefix, made once per prefix for the life of
/// the process so that emitting a metric never formats a name.
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
    fn for_prefix(prefix: &str) -> &'static MetricNames {
        use std::sync::{Mutex, PoisonError};
        // A handful of prefixes per process at most: each is leaked once.
        static MADE: Mutex<Vec<(String, &'static MetricNames)>> = Mutex::new(Vec::new());
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
    pub fn errors_with(&self, code: Code) -> u64 {
        self.errors_by_code
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(0, |(_, n)| *n)
    }
}

/// Checks a metrics prefix: a Prometheus metric name's first part.
#[cfg(feature = "metrics")]
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

impl Telemetry {
    /// Telemetry for a client whose metrics, when the feature is on, go
    /// under `prefix`.
    #[cfg(feature = "metrics")]
    pub(crate) fn new(prefix: &str) -> Telemetry {
        Telemetry {
            metrics: Some(Metrics {
                names: MetricNames::for_prefix(prefix),
                counts: Arc::default(),
            }),
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
            return Some(crate::pool::ReconnectHook(Arc::new(move || {
                counts.reconnects.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(name).increment(1);
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
            labels::gauge(metrics.names.in_flight, labels::of_method(method)).increment(1.0);
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
            labels::counter(metrics.names.retries, labels::of_method(self.method)).increment(1);
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
            let names = metrics.names;
            let method = labels::of_method(self.method);
            let method_and_code = labels::of_call(self.method, code);
            counts.calls.fetch_add(1, Ordering::Relaxed);
            counts.in_flight.fetch_sub(1, Ordering::Relaxed);
            if code != Code::Ok {
                counts.errors_by_code[code as usize].fetch_add(1, Ordering::Relaxed);
                labels::counter(names.errors, method_and_code).increment(1);
            }
            labels::counter(names.calls, method_and_code).increment(1);
            labels::gauge(names.in_flight, method).decrement(1.0);
            labels::histogram(names.duration, method).record(self.started.elapsed().as_secs_f64());
        }
        #[cfg(not(any(feature = "metrics", feature = "tracing")))]
        let _ = outcome;
    }
}

/// Every label set the client emits, built at compile time, so a call's
/// metrics allocate nothing: `metrics`' macros collect runtime labels into
/// a fresh `Vec` on every emission (four per call), while a key made of a
/// `'static` name and `'static` labels borrows both.
#[cfg(feature = "metrics")]
mod labels {
    use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata};

    use crate::codec::{Code, Method};

    /// Where the client's metrics say they come from.
    static METADATA: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

    /// gRPC codes, in numeric order (`Code as usize`).
    macro_rules! by_code {
        ($method:literal) => {
            by_code!(@ $method; "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
                "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
                "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
        };
        (@ $method:literal; $($code:literal),*) => {
            [$([
                Label::from_static_parts("method", $method),
                Label::from_static_parts("code", $code),
            ]),*]
        };
    }

    /// `method` labels, in `Method::ALL` order.
    static METHOD: [[Label; 1]; 10] = [
        [Label::from_static_parts("method", "Get")],
        [Label::from_static_parts("method", "MultiGet")],
        [Label::from_static_parts("method", "Set")],
        [Label::from_static_parts("method", "SetIfAbsent")],
        [Label::from_static_parts("method", "CompareAndSet")],
        [Label::from_static_parts("method", "MultiSet")],
        [Label::from_static_parts("method", "Delete")],
        [Label::from_static_parts("method", "MultiDelete")],
        [Label::from_static_parts("method", "Stats")],
        [Label::from_static_parts("method", "Check")],
    ];

    /// `method` and `code` labels, by method (`Method::ALL` order) and code.
    static CALL: [[[Label; 2]; 17]; 10] = [
        by_code!("Get"),
        by_code!("MultiGet"),
        by_code!("Set"),
        by_code!("SetIfAbsent"),
        by_code!("CompareAndSet"),
        by_code!("MultiSet"),
        by_code!("Delete"),
        by_code!("MultiDelete"),
        by_code!("Stats"),
        by_code!("Check"),
    ];

    fn index(method: Method) -> usize {
        Method::ALL
            .iter()
            .position(|m| *m == method)
            .unwrap_or_default()
    }

    pub(super) fn of_method(method: Method) -> &'static [Label] {
        &METHOD[index(method)]
    }

    pub(super) fn of_call(method: Method, code: Code) -> &'static [Label] {
        &CALL[index(method)][(code as usize).min(16)]
    }

    pub(super) fn counter(name: &'static str, labels: &'static [Label]) -> Counter {
        metrics::with_recorder(|r| {
            r.register_counter(&Key::from_static_parts(name, labels), &METADATA)
        })
    }

    pub(super) fn gauge(name: &'static str, labels: &'static [Label]) -> Gauge {
        metrics::with_recorder(|r| {
            r.register_gauge(&Key::from_static_parts(name, labels), &METADATA)
        })
    }

    pub(super) fn histogram(name: &'static str, labels: &'static [Label]) -> Histogram {
        metrics::with_recorder(|r| {
            r.register_histogram(&Key::from_static_parts(name, labels), &METADATA)
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_tables_name_every_method_and_code_in_order() {
            for method in Method::ALL {
                assert_eq!(of_method(method)[0].value(), method.name());
                for n in 0..17 {
                    let code = Code::from_i32(n);
                    let labels = of_call(method, code);
                    assert_eq!(labels[0].value(), method.name());
                    assert_eq!(labels[1].value(), code.as_str());
                }
            }
        }
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn prefixes_must_be_metric_names() {
        assert!(check_prefix("tiny_cache_client").is_ok());
        assert!(check_prefix("_x9").is_ok());
        for bad in ["", "9x", "a-b", "a b", "a:b"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_made_once_per_prefix() {
        let a = MetricNames::for_prefix("svc");
        let b = MetricNames::for_prefix("svc");
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.calls, "svc_calls_total");
        assert_eq!(a.duration, "svc_call_duration_seconds");
    }
}
