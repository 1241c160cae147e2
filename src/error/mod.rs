//! The one error type of the crate.
//!
//! Every failure a caller can see is an [`Error`]: match on its variant to
//! decide what to do, ask [`Error::code`] for the gRPC status code, and
//! [`Error::is_retryable`] whether trying again later could help.

use std::time::Duration;

use bytes::Bytes;

mod code;

pub use code::Code;

/// What went wrong with a call or with building a client.
///
/// ```
/// use tiny_cache_client::{Client, Error};
///
/// // Nothing listens on port 1: the client reports the server as unavailable.
/// let client = Client::builder("127.0.0.1:1")
///     .timeout(std::time::Duration::from_secs(2))
///     .max_retries(0)
///     .build()?;
/// match client.get("greeting") {
///     Err(Error::Unavailable(why)) => println!("cache is down: {why}"),
///     other => panic!("unexpected: {other:?}"),
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client refused the input before any network I/O: an empty or too
    /// long key, an invalid namespace, a bad metadata header, a malformed
    /// address or configuration value.
    #[error("invalid input: {0}")]
    Validation(String),

    /// The server answered `INVALID_ARGUMENT`: it considers the request
    /// invalid (for example a key that is too long once namespaced).
    #[error("server rejected the request as invalid: {0}")]
    InvalidArgument(StatusText),

    /// The server (`RESOURCE_EXHAUSTED`) or this client refused a message for
    /// its size: a value over the server's per-entry limit, a cache that
    /// cannot make room, or a message over a send or receive limit.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(StatusText),

    /// The server could not be reached or the connection was lost
    /// (`UNAVAILABLE`). Retrying later may help.
    #[error("server unavailable: {0}")]
    Unavailable(StatusText),

    /// The call's deadline passed before a reply arrived
    /// (`DEADLINE_EXCEEDED`); the text says which phase it was in.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(StatusText),

    /// The client was shut down (its last handle dropped, or
    /// [`Client::close`](crate::Client::close) called) before the call ended.
    #[error("the client is closed")]
    Closed,

    /// The peer broke the gRPC or HTTP/2 protocol: a non-gRPC response, a
    /// unary response with zero or two messages, an unparseable message, a
    /// compressed message nobody asked for. `code` is what the gRPC
    /// specification assigns to the violation.
    #[error("protocol violation ({code}): {message}")]
    Protocol {
        /// The gRPC status code assigned to the violation.
        code: Code,
        /// What was wrong.
        message: String,
    },

    /// A stored value read through a text accessor
    /// ([`Client::get_string`](crate::Client::get_string)) is not UTF-8.
    #[error("the value of key {key:?} is not valid UTF-8")]
    NotUtf8 {
        /// The key whose value is not text.
        key: String,
    },

    /// TLS could not be set up: a certificate the client refuses, a server
    /// that refuses the client, one side speaking TLS and the other not, or
    /// TLS settings that cannot be used (an unreadable PEM file, a key that
    /// does not parse). `kind` says which; `message` says what exactly.
    ///
    /// Never retryable: trying the same handshake again cannot fix a
    /// certificate or a configuration.
    #[error("TLS failure ({kind}): {message}")]
    Tls {
        /// Which TLS failure it was.
        kind: TlsFailure,
        /// What exactly went wrong, with the peer and the names involved.
        message: String,
    },

    /// The store does not offer this operation: a [`CacheStore`](crate::CacheStore)
    /// of your own that has no atomic compare-and-set, for example. Never
    /// retryable.
    #[error("this store does not support {operation}")]
    Unsupported {
        /// The operation asked for, as the trait names it.
        operation: &'static str,
    },

    /// Any other status the server answered with, with its code and message.
    #[error("server returned {code}: {message}")]
    Status {
        /// The gRPC status code.
        code: Code,
        /// The status message, percent-decoded, with the server's request
        /// id.
        message: StatusText,
        /// The raw `grpc-status-details-bin` payload, when the server sent a
        /// well-formed one.
        details: Option<Bytes>,
    },
}

impl Error {
    /// The gRPC status code closest to this error.
    ///
    /// ```
    /// use tiny_cache_client::{Code, Error};
    ///
    /// assert_eq!(Error::Unavailable("down".into()).code(), Code::Unavailable);
    /// assert_eq!(Error::Validation("empty key".into()).code(), Code::InvalidArgument);
    /// ```
    pub fn code(&self) -> Code {
        match self {
            Error::Validation(_) | Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unavailable(_) => Code::Unavailable,
            // Settings the client refuses before any I/O are the caller's
            // input, like any other invalid setting.
            Error::Tls {
                kind: TlsFailure::InvalidConfiguration,
                ..
            } => Code::InvalidArgument,
            Error::Tls { .. } => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Closed => Code::Cancelled,
            Error::NotUtf8 { .. } => Code::FailedPrecondition,
            Error::Unsupported { .. } => Code::Unimplemented,
            Error::Protocol { code, .. } | Error::Status { code, .. } => *code,
        }
    }

    /// Whether the same call, tried again later, could succeed.
    ///
    /// True for an unreachable server, a passed deadline and an aborted
    /// call; false for everything the request itself or the server's data
    /// decides (validation, invalid argument, resource limits, protocol
    /// violations), for TLS failures (a retry cannot fix a certificate) and
    /// for a closed client.
    ///
    /// ```
    /// use tiny_cache_client::Error;
    ///
    /// assert!(Error::Unavailable("connection refused".into()).is_retryable());
    /// assert!(!Error::InvalidArgument("key too long".into()).is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        // Exhaustive on purpose: a new variant must be classified here,
        // and this is the error's whole say in the retry policy
        // (`retry.rs` combines it with how far the request got).
        match self {
            Error::Unavailable(_) | Error::DeadlineExceeded(_) => true,
            Error::Status { code, .. } => *code == Code::Aborted,
            Error::Validation(_)
            | Error::InvalidArgument(_)
            | Error::ResourceExhausted(_)
            | Error::Closed
            | Error::Protocol { .. }
            | Error::NotUtf8 { .. }
            | Error::Unsupported { .. }
            | Error::Tls { .. } => false,
        }
    }

    /// The `x-request-id` the server answered this call with, when the
    /// error came from a server that sent one (the reference and the
    /// embedded server always do, on errors too). Also shown by `Display`,
    /// so a logged error names the id to look up in the server's logs.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// use tiny_cache_client::{server::Server, Client, Error};
    ///
    /// // A server that takes values of at most 16 bytes.
    /// let server = Server::builder().max_value_bytes(16).start()?;
    /// let client = Client::new(&server.address())?.with_request_id("req-7")?;
    /// let error = client.set("k", [0u8; 64]).unwrap_err();
    /// assert!(matches!(error, Error::ResourceExhausted(_)));
    /// assert_eq!(error.request_id(), Some("req-7"));
    /// assert!(error.to_string().ends_with("(request id req-7)"));
    ///
    /// // Refused by the client before sending: no server, no request id.
    /// assert_eq!(client.get("").unwrap_err().request_id(), None);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::InvalidArgument(text)
            | Error::ResourceExhausted(text)
            | Error::Unavailable(text)
            | Error::DeadlineExceeded(text)
            | Error::Status { message: text, .. } => text.request_id(),
            Error::Validation(_)
            | Error::Unsupported { .. }
            | Error::Closed
            | Error::Protocol { .. }
            | Error::NotUtf8 { .. }
            | Error::Tls { .. } => None,
        }
    }

    /// The same error, naming the request id the server answered with.
    pub(crate) fn with_request_id(mut self, id: Option<&str>) -> Error {
        if let Some(id) = id {
            if let Error::InvalidArgument(text)
            | Error::ResourceExhausted(text)
            | Error::Unavailable(text)
            | Error::DeadlineExceeded(text)
            | Error::Status { message: text, .. } = &mut self
            {
                text.request_id = Some(id.to_owned());
            }
        }
        self
    }

    /// A deadline error naming the timeout and the phase that ran out.
    pub(crate) fn deadline(timeout: Duration, phase: &str) -> Error {
        Error::DeadlineExceeded(format!("no reply within {timeout:?} ({phase})").into())
    }
}

/// The text of an error, and the request id of the server that sent it.
///
/// It reads as the text (it dereferences to `str`, so `text.contains(..)`
/// works); `Display` adds ` (request id …)` when there is one.
///
/// ```
/// use tiny_cache_client::{Error, StatusText};
///
/// let error = Error::Unavailable(StatusText::from("connection refused"));
/// if let Error::Unavailable(text) = &error {
///     assert!(text.contains("refused"));
///     assert_eq!(text.request_id(), None);
/// }
/// assert_eq!(error.to_string(), "server unavailable: connection refused");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusText {
    text: String,
    request_id: Option<String>,
}

impl StatusText {
    /// The message alone.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// use tiny_cache_client::{server::Server, Client, Error};
    ///
    /// let server = Server::builder().max_value_bytes(16).start()?;
    /// let client = Client::new(&server.address())?.with_request_id("req-3")?;
    /// match client.set("k", [0u8; 64]) {
    ///     Err(Error::ResourceExhausted(text)) => {
    ///         // The server's message alone; `Display` adds the request id.
    ///         assert_eq!(text.text(), "Value exceeds maximum allowed cache entry size");
    ///         assert_eq!(text.to_string(), format!("{} (request id req-3)", text.text()));
    ///     }
    ///     other => panic!("expected an oversize refusal, got {other:?}"),
    /// }
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The server's `x-request-id` for the call, when a server sent one.
    ///
    /// ```
    /// # #[cfg(feature = "server")] {
    /// use tiny_cache_client::{server::Server, Client, Error};
    ///
    /// let server = Server::builder().max_value_bytes(16).start()?;
    /// let client = Client::new(&server.address())?;
    /// match client.set("k", [0u8; 64]) {
    ///     Err(Error::ResourceExhausted(text)) => {
    ///         // No id was sent, so the server made up a 32-hex one.
    ///         let id = text.request_id().unwrap_or_default();
    ///         assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()));
    ///     }
    ///     other => panic!("expected an oversize refusal, got {other:?}"),
    /// }
    /// # }
    /// // A text made here never came from a server.
    /// assert_eq!(tiny_cache_client::StatusText::from("down").request_id(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

impl std::ops::Deref for StatusText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for StatusText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)?;
        match &self.request_id {
            Some(id) => write!(f, " (request id {id})"),
            None => Ok(()),
        }
    }
}

impl From<String> for StatusText {
    fn from(text: String) -> StatusText {
        StatusText {
            text,
            request_id: None,
        }
    }
}

impl From<&str> for StatusText {
    fn from(text: &str) -> StatusText {
        StatusText::from(text.to_owned())
    }
}

impl PartialEq<str> for StatusText {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<String> for StatusText {
    fn eq(&self, other: &String) -> bool {
        self.text == *other
    }
}

impl PartialEq<&str> for StatusText {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

/// Which TLS failure an [`Error::Tls`] is.
///
/// Each kind names what to fix. New kinds may be added, so a `match` needs
/// a wildcard arm.
///
/// ```
/// use tiny_cache_client::{Code, Error, TlsFailure};
///
/// let error = Error::Tls {
///     kind: TlsFailure::HostnameMismatch,
///     message: "certificate is for cache.internal, not cache.example".into(),
/// };
/// assert_eq!(error.code(), Code::Unavailable);
/// assert!(!error.is_retryable());
/// assert_eq!(TlsFailure::ServerNotTls.to_string(), "the server does not speak TLS");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate is not valid for the name the client
    /// verifies (the address's host, or the server-name override).
    HostnameMismatch,
    /// The server's certificate does not chain to a trusted CA, or its
    /// chain is broken (bad signature, wrong key usage).
    UntrustedCertificate,
    /// The server's certificate has expired or is not valid yet.
    CertificateExpired,
    /// The server presents a CA certificate (`CA:TRUE`) as its own, which
    /// no chain check accepts, and the client was not told to trust
    /// exactly that certificate. A self-signed development certificate
    /// (what `openssl req -x509` makes) is one: pass it as a trusted CA
    /// certificate, which trusts it exactly, or pin it.
    CaCertificateAsServerCertificate,
    /// Certificates are pinned and the server's is none of them.
    PinnedCertificateMismatch,
    /// The server did not agree to HTTP/2 by ALPN, which gRPC over TLS
    /// requires.
    NoAlpnH2,
    /// The server requires a client certificate and the client has none
    /// configured.
    ClientCertificateRequired,
    /// The server refused the client certificate presented (unknown CA,
    /// expired, wrong usage).
    ClientCertificateRejected,
    /// The client speaks TLS (`grpcs://`) and the server answered in plain
    /// text (a server that hangs up without a word is `Unavailable`: a
    /// proxy whose backend is down does the same).
    ServerNotTls,
    /// The client speaks plain text (`grpc://`) and the server answered
    /// with TLS.
    ServerRequiresTls,
    /// The TLS settings cannot be used: an unreadable or malformed PEM
    /// file, a key that does not match its certificate, an invalid server
    /// name. Reported by `build()` (or the server's `start()`).
    InvalidConfiguration,
    /// Any other TLS failure (no common cipher or version, a corrupt
    /// record); the message has the details.
    Other,
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsFailure::HostnameMismatch => "the certificate is not valid for the server name",
            TlsFailure::UntrustedCertificate => "the certificate is not trusted",
            TlsFailure::CertificateExpired => "the certificate is expired or not yet valid",
            TlsFailure::CaCertificateAsServerCertificate => {
                "the server presents a CA certificate as its own"
            }
            TlsFailure::PinnedCertificateMismatch => {
                "the certificate is not the pinned certificate"
            }
            TlsFailure::NoAlpnH2 => "the server did not agree to HTTP/2 (ALPN h2)",
            TlsFailure::ClientCertificateRequired => "the server requires a client certificate",
            TlsFailure::ClientCertificateRejected => "the server rejected the client certificate",
            TlsFailure::ServerNotTls => "the server does not speak TLS",
            TlsFailure::ServerRequiresTls => "the server requires TLS",
            TlsFailure::InvalidConfiguration => "invalid TLS configuration",
            TlsFailure::Other => "TLS error",
        })
    }
}

/// `Result` with this crate's [`Error`].
///
/// ```
/// use tiny_cache_client::{Client, Result};
///
/// /// The greeting, or a fallback when none is cached.
/// fn greeting(client: &Client) -> Result<String> {
///     Ok(client.get_string("greeting")?.unwrap_or_else(|| "hello".to_owned()))
/// }
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = Client::new(&server.address())?;
/// assert_eq!(greeting(&client)?, "hello");
/// client.set("greeting", "bonjour")?;
/// assert_eq!(greeting(&client)?, "bonjour");
/// # }
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retryable() {
        assert!(Error::Unavailable(String::new().into()).is_retryable());
        assert!(Error::DeadlineExceeded(String::new().into()).is_retryable());
        assert!(!Error::Closed.is_retryable());
        assert!(!Error::Tls {
            kind: TlsFailure::UntrustedCertificate,
            message: String::new()
        }
        .is_retryable());
        assert!(!Error::Validation(String::new()).is_retryable());
        assert!(!Error::ResourceExhausted(String::new().into()).is_retryable());
        assert!(!Error::Protocol {
            code: Code::Internal,
            message: String::new()
        }
        .is_retryable());
    }
}
