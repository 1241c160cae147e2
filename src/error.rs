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
    /// violations) and for a closed client.
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
        assert!(!Error::Validation(String::new()).is_retryable());
        assert!(!Error::ResourceExhausted(String::new()).is_retryable());
        assert!(!Error::Protocol {
            code: Code::Internal,
            message: String::new()
        }
        .is_retryable());
    }
}
