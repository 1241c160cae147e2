//! The HTTP/1.1 side port, as the reference server runs one: `/health`,
//! `/ready` and `/live` for probes, `/stats` as JSON and `/metrics` as
//! Prometheus text. hyper does the HTTP; this file only says what each path
//! answers. Every answer carries an `x-request-id` header.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::accept::{accept_until_stopped, Stop};
use super::handler::{self, Context};
use super::store::{StoreStats, ENTRY_OVERHEAD_BYTES};
use crate::rules::REQUEST_ID_HEADER;

/// Longest a client may take to send its request headers, so an idle or
/// slow connection cannot hold a task forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes in a mebibyte, for the `*_mb` fields.
const MIB_BYTES: f64 = 1024.0 * 1024.0;

/// The Prometheus text exposition format's content type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const JSON_CONTENT_TYPE: &str = "application/json";

/// Serves the side port until `until` changes: after the gRPC side has
/// drained, so that `/ready` can say "draining" meanwhile (`server` is the
/// gRPC side's stop signal). Connections still open then are dropped:
/// probes are short and retried.
pub(super) async fn serve(
    listener: TcpListener,
    context: Arc<Context>,
    mut until: watch::Receiver<Stop>,
    server: watch::Receiver<Stop>,
) {
    let _still_open = accept_until_stopped(listener, &mut until, |socket| {
        let context = Arc::clone(&context);
        let server = server.clone();
        async move {
            let service = service_fn(move |request| {
                let draining = *server.borrow() != Stop::Running;
                let response = answer(&request, &context, draining);
                async move { Ok::<_, Infallible>(response) }
            });
            // A connection ends in an error when the peer goes away
            // mid-request: nobody is left to tell.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(socket), service)
                .await;
        }
    })
    .await;
}

/// The answer to one request; never fails (an unknown path is a 404).
/// While the server drains, `/ready` answers 503 so a load balancer stops
/// sending it calls; `/health` stays the liveness answer.
fn answer<B>(request: &Request<B>, context: &Context, draining: bool) -> Response<Full<Bytes>> {
    let request_id = handler::request_id(request.headers());
    let mut response = if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut refused = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        refused
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        refused
    } else {
        match request.uri().path() {
            "/health" => json(&Health::new(&Snapshot::take(context), HEALTHY)),
            "/ready" if draining => {
                let mut response = json(&Health::new(&Snapshot::take(context), DRAINING));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response
            }
            "/ready" => json(&Health::new(&Snapshot::take(context), HEALTHY)),
            "/live" => json(&Live::new(&Snapshot::take(context))),
            "/stats" => json(&StatsBody::new(&Snapshot::take(context))),
            "/metrics" => {
                let mut response = plain(StatusCode::OK, metrics(&Snapshot::take(context)));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
                response
            }
            _ => plain(
                StatusCode::NOT_FOUND,
                "not found: try /health, /ready, /live, /stats or /metrics\n",
            ),
        }
    };
    response.headers_mut().insert(REQUEST_ID_HEADER, request_id);
    response
}

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(body: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
            response
        }
        // Plain structs of numbers and strings always serialise; answer
        // honestly rather than panic if that ever changes.
        Err(error) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {error}\n"),
        ),
    }
}

/// Everything the side port reports, read once per request.
struct Snapshot {
    store: StoreStats,
    active_requests: u64,
    /// Unix time in seconds, fractional.
    timestamp: f64,
}

impl Snapshot {
    fn take(context: &Context) -> Snapshot {
        Snapshot {
            store: context.service.store().stats(),
            active_requests: context.active_requests.load(Ordering::Relaxed),
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
        }
    }

    fn uptime_seconds(&self) -> f64 {
        self.store.uptime.as_secs_f64()
    }
}

/// `/health` and `/ready`'s status while serving.
const HEALTHY: &str = "healthy";
/// `/ready`'s status once a shutdown began (with HTTP 503).
const DRAINING: &str = "draining";

/// `/health` and `/ready`.
#[derive(Serialize)]
struct Health {
    status: &'static str,
    uptime_seconds: f64,
    cache_size: u64,
    cache_hits: u64,
    cache_misses: u64,
    active_requests: u64,
    timestamp: f64,
}

impl Health {
    fn new(now: &Snapshot, status: &'static str) -> Health {
        Health {
            status,
            uptime_seconds: now.uptime_seconds(),
            cache_size: now.store.size,
            cache_hits: now.store.hits,
            cache_misses: now.store.misses,
            active_requests: now.active_requests,
            timestamp: now.timestamp,
        }
    }
}

/// `/live`.
#[derive(Serialize)]
struct Live {
    status: &'static str,
    uptime_seconds: f64,
    timestamp: f64,
}

impl Live {
    fn new(now: &Snapshot) -> Live {
        Live {
            status: "alive",
            uptime_seconds: now.uptime_seconds(),
            timestamp: now.timestamp,
        }
    }
}

/// `/stats`: the gRPC `Stats` counters in full `u64`, plus sizes in MiB,
/// uptime and calls in progress.
#[derive(Serialize)]
struct StatsBody {
    size: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
    lru_evictions: u64,
    expired_removals: u64,
    rejected_oversize: u64,
    rejected_capacity: u64,
    hit_rate: f64,
    memory_usage_bytes: u64,
    memory_usage_mb: f64,
    max_memory_bytes: u64,
    max_memory_mb: f64,
    max_value_bytes: u64,
    max_items: u64,
    uptime_seconds: f64,
    active_requests: u64,
    timestamp: f64,
}

impl StatsBody {
    fn new(now: &Snapshot) -> StatsBody {
        let s = &now.store;
        StatsBody {
            size: s.size,
            hits: s.hits,
            misses: s.misses,
            evictions: s.evictions(),
            lru_evictions: s.lru_evictions,
            expired_removals: s.expired_removals,
            rejected_oversize: s.rejected_oversize,
            rejected_capacity: s.rejected_capacity,
            hit_rate: s.hit_rate(),
            memory_usage_bytes: s.memory_usage_bytes,
            memory_usage_mb: mebibytes(s.memory_usage_bytes),
            max_memory_bytes: s.max_memory_bytes,
            max_memory_mb: mebibytes(s.max_memory_bytes),
            max_value_bytes: s.max_value_bytes,
            max_items: s.max_items,
            uptime_seconds: now.uptime_seconds(),
            active_requests: now.active_requests,
            timestamp: now.timestamp,
        }
    }
}

/// Bytes as MiB rounded to two decimals, as the reference server shows them.
fn mebibytes(bytes: u64) -> f64 {
    (bytes as f64 / MIB_BYTES * 100.0).round() / 100.0
}

/// `used / limit`; a zero limit admits nothing, so it reads as full.
fn saturation(used: u64, limit: u64) -> f64 {
    if limit == 0 {
        1.0
    } else {
        used as f64 / limit as f64
    }
}

/// One metric of `/metrics`.
struct Metric {
    name: &'static str,
    kind: &'static str,
    help: Cow<'static, str>,
    value: f64,
}

const COUNTER: &str = "counter";
const GAUGE: &str = "gauge";

/// The Prometheus text exposition: every metric with its `# HELP` and
/// `# TYPE` lines, names as the reference server's.
fn metrics(now: &Snapshot) -> String {
    let s = &now.store;
    let counter = |name, help: &'static str, value: u64| Metric {
        name,
        kind: COUNTER,
        help: help.into(),
        value: value as f64,
    };
    let gauge = |name, help: &'static str, value: f64| Metric {
        name,
        kind: GAUGE,
        help: help.into(),
        value,
    };
    let all = [
        counter(
            "tiny_cache_hits_total",
            "Reads that found a live entry.",
            s.hits,
        ),
        counter(
            "tiny_cache_misses_total",
            "Reads that found nothing (missing or expired).",
            s.misses,
        ),
        counter(
            "tiny_cache_evictions_total",
            "Entries removed by the cache itself (LRU evictions plus expired removals).",
            s.evictions(),
        ),
        counter(
            "tiny_cache_lru_evictions_total",
            "Entries evicted as least recently used to make room.",
            s.lru_evictions,
        ),
        counter(
            "tiny_cache_expired_removals_total",
            "Entries removed because their TTL ran out.",
            s.expired_removals,
        ),
        counter(
            "tiny_cache_rejected_oversize_total",
            "Writes refused for an entry over the per-entry limit.",
            s.rejected_oversize,
        ),
        counter(
            "tiny_cache_rejected_capacity_total",
            "Writes refused because the entry cannot fit under the item and memory limits.",
            s.rejected_capacity,
        ),
        gauge("tiny_cache_entries", "Live entries.", s.size as f64),
        Metric {
            name: "tiny_cache_memory_usage_bytes",
            kind: GAUGE,
            help: format!(
                "Bytes accounted to live entries (value length + {ENTRY_OVERHEAD_BYTES} each)."
            )
            .into(),
            value: s.memory_usage_bytes as f64,
        },
        gauge(
            "tiny_cache_capacity_max_items",
            "Most entries kept before LRU eviction.",
            s.max_items as f64,
        ),
        gauge(
            "tiny_cache_capacity_max_memory_bytes",
            "Most bytes accounted to entries before LRU eviction.",
            s.max_memory_bytes as f64,
        ),
        gauge(
            "tiny_cache_capacity_max_value_bytes",
            "Largest entry accepted, in bytes (value length + 33).",
            s.max_value_bytes as f64,
        ),
        gauge(
            "tiny_cache_capacity_item_saturation_ratio",
            "Live entries over the item limit.",
            saturation(s.size, s.max_items),
        ),
        gauge(
            "tiny_cache_capacity_memory_saturation_ratio",
            "Bytes accounted to entries over the memory limit.",
            saturation(s.memory_usage_bytes, s.max_memory_bytes),
        ),
        gauge(
            "tiny_cache_active_requests",
            "gRPC calls in progress.",
            now.active_requests as f64,
        ),
        gauge(
            "tiny_cache_uptime_seconds",
            "Seconds since the server started.",
            now.uptime_seconds(),
        ),
    ];
    let mut text = String::with_capacity(all.len() * 160);
    for metric in all {
        // Writing into a String cannot fail.
        let _ = write!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n",
            name = metric.name,
            help = metric.help,
            kind = metric.kind,
            value = metric.value,
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            store: StoreStats {
                size: 3,
                hits: 5,
                misses: 1,
                memory_usage_bytes: 3 * 1024 * 1024,
                max_memory_bytes: 12 * 1024 * 1024,
                max_items: 4,
                max_value_bytes: 1024,
                lru_evictions: 2,
                expired_removals: 7,
                rejected_oversize: 1,
                rejected_capacity: 0,
                uptime: Duration::from_millis(1500),
            },
            active_requests: 2,
            timestamp: 1_700_000_000.25,
        }
    }

    #[test]
    fn metrics_have_help_type_and_a_value_line_each() {
        let text = metrics(&snapshot());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 16 * 3);
        for chunk in lines.chunks(3) {
            let name = chunk[2].split(' ').next().unwrap();
            assert!(
                chunk[0].starts_with(&format!("# HELP {name} ")),
                "{chunk:?}"
            );
            let kind = if name.ends_with("_total") {
                COUNTER
            } else {
                GAUGE
            };
            assert_eq!(chunk[1], format!("# TYPE {name} {kind}"));
        }
        for expected in [
            "tiny_cache_evictions_total 9",
            "tiny_cache_entries 3",
            "tiny_cache_capacity_item_saturation_ratio 0.75",
            "tiny_cache_capacity_memory_saturation_ratio 0.25",
            "tiny_cache_active_requests 2",
            "tiny_cache_uptime_seconds 1.5",
        ] {
            assert!(lines.contains(&expected), "{expected} missing in\n{text}");
        }
    }

    #[test]
    fn stats_body_reports_mebibytes_rounded_and_the_derived_fields() {
        let body = serde_json::to_value(StatsBody::new(&snapshot())).unwrap();
        assert_eq!(body["memory_usage_mb"], 3.0);
        assert_eq!(body["max_memory_mb"], 12.0);
        assert_eq!(body["evictions"], 9);
        assert_eq!(body["hit_rate"], 5.0 / 6.0);
        assert_eq!(body["timestamp"], 1_700_000_000.25);
        assert_eq!(mebibytes(1_234_567), 1.18);
    }

    #[test]
    fn a_zero_limit_reads_as_saturated() {
        assert_eq!(saturation(0, 0), 1.0);
        assert_eq!(saturation(1, 4), 0.25);
    }
}
