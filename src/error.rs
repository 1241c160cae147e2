//! The one error type of the crate.
//!
//! Every failure a caller can see is an [`Error`]: match on its variant to
//! decide what to do, ask [`Error::code`] for the gRPC status code, and
//! [`Error::is_retryable`] whether trying again later could help.

use std::time::Duration;

use bytes::Bytes;

use crate::codec::{Code, ResponseError, Status};

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
    InvalidArgument(String),

    /// The server (`RESOURCE_EXHAUSTED`) or this client refused a message for
    /// its size: a value over the server's per-entry limit, a cache that
    /// cannot make room, or a message over a send or receive limit.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),

    /// The server could not be reached or the connection was lost
    /// (`UNAVAILABLE`). Retrying later may help.
    #[error("server unavailable: {0}")]
    Unavailable(String),

    /// The call's deadline passed before a reply arrived
    /// (`DEADLINE_EXCEEDED`); the text says which phase it was in.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),

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

    /// Any other status the server answered with, with its code and message.
    #[error("server returned {code}: {message}")]
    Status {
        /// The gRPC status code.
        code: Code,
        /// The status message, percent-decoded.
        message: String,
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
        match self {
            Error::Unavailable(_) | Error::DeadlineExceeded(_) => true,
            Error::Status { code, .. } => *code == Code::Aborted,
            _ => false,
        }
    }

    /// Maps a status the server (or an HTTP intermediary) reported.
    pub(crate) fn from_status(status: Status) -> Error {
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument => Error::InvalidArgument(message),
            Code::ResourceExhausted => Error::ResourceExhausted(message),
            Code::Unavailable => Error::Unavailable(message),
            Code::DeadlineExceeded => Error::DeadlineExceeded(message),
            code => Error::Status {
                code,
                message,
                details: status.details().cloned(),
            },
        }
    }

    /// Maps what the codec made of a response.
    pub(crate) fn from_response(error: ResponseError) -> Error {
        match error {
            ResponseError::Status(status) => Error::from_status(status),
            // A message over our own receive limit is a size problem, not a
            // broken peer: report it as the size error callers already handle.
            ResponseError::Protocol(status) if status.code() == Code::ResourceExhausted => {
                Error::ResourceExhausted(status.message().to_owned())
            }
            ResponseError::Protocol(status) => Error::Protocol {
                code: status.code(),
                message: status.message().to_owned(),
            },
        }
    }

    /// A deadline error naming the timeout and the phase that ran out.
    pub(crate) fn deadline(timeout: Duration, phase: &str) -> Error {
        Error::DeadlineExceeded(format!("no reply within {timeout:?} ({phase})"))
    }
}

#[cfg(feature = "server")]
impl From<crate::server::ServerError> for Error {
    /// Lets `Server::local()?` work in functions returning this crate's
    /// [`Result`](crate::Result); each failure keeps the kind it had when
    /// the server reported client errors itself.
    fn from(error: crate::server::ServerError) -> Self {
        use crate::server::ServerError;
        match error {
            ServerError::InvalidAddress { .. } => Error::Validation(error.to_string()),
            ServerError::Tls(message) => Error::Tls {
                kind: TlsFailure::InvalidConfiguration,
                message,
            },
            other => Error::Unavailable(other.to_string()),
        }
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
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_statuses_map_to_the_kinds_callers_match_on() {
        let cases = [
            (Code::InvalidArgument, "InvalidArgument"),
            (Code::ResourceExhausted, "ResourceExhausted"),
            (Code::Unavailable, "Unavailable"),
            (Code::DeadlineExceeded, "DeadlineExceeded"),
        ];
        for (code, kind) in cases {
            let error = Error::from_status(Status::new(code, "x"));
            assert!(
                format!("{error:?}").starts_with(kind),
                "{code} gave {error:?}"
            );
            assert_eq!(error.code(), code);
        }
        let other = Error::from_status(Status::new(Code::Internal, "boom id=7"));
        assert_eq!(
            other,
            Error::Status {
                code: Code::Internal,
                message: "boom id=7".into(),
                details: None
            }
        );
    }

    #[test]
    fn oversize_reply_is_a_resource_error_and_other_violations_are_protocol_errors() {
        let oversize = ResponseError::Protocol(Status::new(Code::ResourceExhausted, "too big"));
        assert_eq!(
            Error::from_response(oversize),
            Error::ResourceExhausted("too big".into())
        );
        let two = ResponseError::Protocol(Status::new(Code::Unimplemented, "two messages"));
        assert_eq!(
            Error::from_response(two),
            Error::Protocol {
                code: Code::Unimplemented,
                message: "two messages".into()
            }
        );
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        assert!(Error::Unavailable(String::new()).is_retryable());
        assert!(Error::DeadlineExceeded(String::new()).is_retryable());
        assert!(!Error::Closed.is_retryable());
        assert!(!Error::Tls {
            kind: TlsFailure::UntrustedCertificate,
            message: String::new()
        }
        .is_retryable());
        assert!(!Error::Validation(String::new()).is_retryable());
        assert!(!Error::ResourceExhausted(String::new()).is_retryable());
        assert!(!Error::Protocol {
            code: Code::Internal,
            message: String::new()
        }
        .is_retryable());
    }
}
