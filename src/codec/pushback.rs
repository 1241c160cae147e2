//! `grpc-retry-pushback-ms`: the server's word on when (or whether) to
//! retry a failed call (gRPC retry design A6).

use std::time::Duration;

use http::HeaderMap;

/// The trailer (or Trailers-Only header) carrying the pushback.
pub const RETRY_PUSHBACK_HEADER: &str = "grpc-retry-pushback-ms";

/// What the server asked of the client's retry logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// Retry after exactly this long, instead of the client's own backoff.
    After(Duration),
    /// Do not retry this call (a negative or malformed value).
    Stop,
}

/// Reads the pushback from a response's trailers or Trailers-Only headers;
/// `None` when the server sent none. Per A6 anything that is not a
/// non-negative decimal number means "do not retry".
///
/// ```
/// # #[cfg(feature = "unstable-internals")] {
/// use http::HeaderMap;
/// use std::time::Duration;
/// use tiny_cache_client::codec::{retry_pushback, Pushback};
///
/// let mut trailers = HeaderMap::new();
/// assert_eq!(retry_pushback(&trailers), None);
/// trailers.insert("grpc-retry-pushback-ms", "250".parse().unwrap());
/// assert_eq!(retry_pushback(&trailers), Some(Pushback::After(Duration::from_millis(250))));
/// trailers.insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
/// assert_eq!(retry_pushback(&trailers), Some(Pushback::Stop));
/// # }
/// ```
pub fn retry_pushback(headers: &HeaderMap) -> Option<Pushback> {
    let raw = headers.get(RETRY_PUSHBACK_HEADER)?;
    let text = std::str::from_utf8(raw.as_bytes()).ok().map(str::trim);
    Some(
        match text.filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())) {
            // Saturate absurd values instead of overflowing; the caller's
            // deadline bounds the wait anyway.
            Some(digits) => Pushback::After(Duration::from_millis(
                digits.parse::<u64>().unwrap_or(u64::MAX),
            )),
            None => Pushback::Stop,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_PUSHBACK_HEADER, http::HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn non_negative_milliseconds_mean_retry_after_that_long() {
        assert_eq!(
            retry_pushback(&with("0")),
            Some(Pushback::After(Duration::ZERO))
        );
        assert_eq!(
            retry_pushback(&with(" 1500 ")),
            Some(Pushback::After(Duration::from_millis(1500)))
        );
    }

    #[test]
    fn negative_or_malformed_values_mean_do_not_retry() {
        for bad in ["-1", "-0", "1.5", "abc", "", "12ms", "+5"] {
            assert_eq!(retry_pushback(&with(bad)), Some(Pushback::Stop), "{bad:?}");
        }
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        assert_eq!(
            retry_pushback(&with("99999999999999999999999")),
            Some(Pushback::After(Duration::from_millis(u64::MAX)))
        );
    }

    #[test]
    fn absent_header_means_no_pushback() {
        assert_eq!(retry_pushback(&HeaderMap::new()), None);
    }
}
