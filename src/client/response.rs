//! Response metadata: what the server sent in a call's response headers
//! (its `x-request-id` above all), for the callers who ask for it.
//!
//! Plain calls never copy the headers: a caller asks with
//! [`Client::call_with_metadata`](crate::Client::call_with_metadata), which
//! marks the calls its closure makes on this thread, and only those bring
//! their headers back.

use std::cell::{Cell, RefCell};

use http::HeaderMap;

use crate::codec::decode_bin;
use crate::rules::REQUEST_ID_HEADER;

/// A call's value together with the server's response metadata, as
/// returned by [`Client::call_with_metadata`](crate::Client::call_with_metadata).
///
/// Shaped like tonic's `Response`: [`get_ref`](Response::get_ref),
/// [`into_inner`](Response::into_inner) and [`metadata`](Response::metadata).
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// client.set("k", "v")?;
/// let response = client.call_with_metadata(|c| c.get("k"))?;
/// println!("served as request {:?}", response.metadata().request_id());
/// assert_eq!(response.into_inner().as_deref(), Some(&b"v"[..]));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Response<T> {
    value: T,
    metadata: ResponseMetadata,
}

impl<T> Response<T> {
    /// The call's value.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let response = client.call_with_metadata(|c| c.get("missing"))?;
    /// assert_eq!(response.get_ref(), &None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_ref(&self) -> &T {
        &self.value
    }

    /// The server's response metadata.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let response = client.with_request_id("req-1")?.call_with_metadata(|c| c.stats())?;
    /// assert_eq!(response.metadata().request_id(), Some("req-1"));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metadata(&self) -> &ResponseMetadata {
        &self.metadata
    }

    /// The call's value, dropping the metadata.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let stats = client.call_with_metadata(|c| c.stats())?.into_inner();
    /// # let _ = stats;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The value and the metadata, apart.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let (written, metadata) = client.call_with_metadata(|c| c.set_if_absent("k", "v"))?.into_parts();
    /// assert!(written);
    /// assert!(metadata.request_id().is_some());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_parts(self) -> (T, ResponseMetadata) {
        (self.value, self.metadata)
    }
}

/// The response headers of a call: its initial metadata.
///
/// Empty when the closure given to
/// [`Client::call_with_metadata`](crate::Client::call_with_metadata) made
/// no call that reached a server.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// let response = client.call_with_metadata(|c| c.delete("k"))?;
/// let metadata = response.metadata();
/// // With no id sent, the server makes a 32-hex one up.
/// assert_eq!(metadata.request_id().map(str::len), Some(32));
/// assert_eq!(metadata.get("content-type"), Some("application/grpc"));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseMetadata {
    headers: HeaderMap,
}

impl ResponseMetadata {
    /// The server's `x-request-id` for the call: the one the caller sent
    /// (see [`Client::with_request_id`](crate::Client::with_request_id)), or
    /// the one the server made up.
    ///
    /// ```
    /// use tiny_cache_client::ResponseMetadata;
    ///
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let tagged = client.with_request_id("order-1234")?;
    /// let response = tagged.call_with_metadata(|c| c.get("k"))?;
    /// assert_eq!(response.metadata().request_id(), Some("order-1234"));
    /// # }
    /// // Metadata of no call at all has no id.
    /// assert_eq!(ResponseMetadata::default().request_id(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_id(&self) -> Option<&str> {
        self.get(REQUEST_ID_HEADER)
    }

    /// An ASCII metadata value by its lower-case name; `None` when absent
    /// or not visible ASCII.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let response = client.call_with_metadata(|c| c.stats())?;
    /// let metadata = response.metadata();
    /// assert_eq!(metadata.get("content-type"), Some("application/grpc"));
    /// assert_eq!(metadata.get("x-not-sent"), None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A binary (`-bin`) metadata value, decoded from its base64; `None`
    /// when absent or not base64.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let response = client.with_request_id("req-9")?.call_with_metadata(|c| c.stats())?;
    /// let metadata = response.metadata();
    /// // The embedded server sends no binary metadata.
    /// assert_eq!(metadata.get_bin("x-trace-bin"), None);
    /// // A value that is not base64 ("-" is not in its alphabet) is `None` too.
    /// assert_eq!(metadata.get_bin("x-request-id"), None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_bin(&self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .get(name)
            .and_then(|v| decode_bin(v.as_bytes()))
    }

    /// Every response header, as received.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// # let server = tiny_cache_client::server::Server::local()?;
    /// # let client = tiny_cache_client::Client::new(&server.address())?;
    /// let response = client.call_with_metadata(|c| c.stats())?;
    /// let headers = response.metadata().headers();
    /// assert!(headers.contains_key("x-request-id"));
    /// for (name, value) in headers {
    ///     println!("{name}: {value:?}");
    /// }
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

thread_local! {
    /// Whether calls on this thread keep their response headers.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// The headers of the last call made while capturing.
    static LAST: RefCell<Option<HeaderMap>> = const { RefCell::new(None) };
}

/// Whether the call about to be made on this thread should bring its
/// headers back.
pub(crate) fn capturing() -> bool {
    CAPTURING.with(Cell::get)
}

/// Keeps the headers of a call made while capturing.
pub(crate) fn record(headers: HeaderMap) {
    LAST.with(|last| *last.borrow_mut() = Some(headers));
}

/// Runs `call` with capture on, and pairs its value with the headers of
/// the last call it made. Nests: an outer capture gets its own last call
/// back afterwards.
pub(crate) fn capture<T, E>(call: impl FnOnce() -> Result<T, E>) -> Result<Response<T>, E> {
    /// Restores the outer state even if `call` panics.
    struct Restore {
        capturing: bool,
        last: Option<HeaderMap>,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            CAPTURING.with(|c| c.set(self.capturing));
            LAST.with(|last| *last.borrow_mut() = self.last.take());
        }
    }
    let _restore = Restore {
        capturing: CAPTURING.with(|c| c.replace(true)),
        last: LAST.with(|last| last.borrow_mut().take()),
    };
    let value = call()?;
    let headers = LAST
        .with(|last| last.borrow_mut().take())
        .unwrap_or_default();
    Ok(Response {
        value,
        metadata: ResponseMetadata { headers },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn capture_pairs_the_value_with_the_last_recorded_headers_and_nests() {
        assert!(!capturing());
        let outer = capture(|| {
            assert!(capturing());
            let mut first = HeaderMap::new();
            first.insert(REQUEST_ID_HEADER, HeaderValue::from_static("outer"));
            record(first);
            let inner = capture(|| {
                let mut second = HeaderMap::new();
                second.insert(REQUEST_ID_HEADER, HeaderValue::from_static("inner"));
                record(second);
                Ok::<_, ()>(2)
            })?;
            assert_eq!(inner.metadata().request_id(), Some("inner"));
            assert!(capturing(), "the outer capture is still on");
            Ok::<_, ()>(1)
        })
        .unwrap();
        assert_eq!(outer.metadata().request_id(), Some("outer"));
        assert_eq!(*outer.get_ref(), 1);
        assert!(!capturing());
    }

    #[test]
    fn a_capture_without_calls_has_empty_metadata_and_errors_pass_through() {
        let empty = capture(|| Ok::<_, ()>(())).unwrap();
        assert_eq!(empty.metadata(), &ResponseMetadata::default());
        assert_eq!(capture(|| Err::<(), _>("failed")).unwrap_err(), "failed");
        assert!(!capturing());
    }

    #[test]
    fn binary_values_are_decoded() {
        let mut headers = HeaderMap::new();
        headers.insert("trace-bin", HeaderValue::from_static("aGkhIQ"));
        let metadata = ResponseMetadata { headers };
        assert_eq!(metadata.get_bin("trace-bin"), Some(b"hi!!".to_vec()));
        assert_eq!(metadata.get("missing"), None);
    }
}
