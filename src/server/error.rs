//! Why the embedded server could not start. The server has its own error
//! type so that it depends on nothing of the client; the client's
//! `tiny_cache_client::Error` converts from it for callers that use `?` in
//! functions returning `tiny_cache_client::Result`.

use crate::error::{Error, TlsFailure};

/// Why `ServerBuilder::start` failed.
///
/// ```
/// use tiny_cache_client::server::{Server, ServerError};
///
/// let refused = Server::builder().listen("not an address").start();
/// assert!(matches!(refused, Err(ServerError::InvalidAddress { .. })));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listen address that is not `ip:port`.
    #[error("invalid listen address {address:?}")]
    InvalidAddress {
        /// The address as given.
        address: String,
    },

    /// The address parsed but could not be bound (in use, not local, no
    /// permission).
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address that was refused.
        address: String,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// A certificate, key or client CA that cannot be used, or a client CA
    /// without a server certificate.
    #[error("invalid TLS configuration: {0}")]
    Tls(String),

    /// The server's runtime or threads could not be started.
    #[error("cannot start the server: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ServerError> for Error {
    /// Lets `Server::local()?` work in functions returning this crate's
    /// [`Result`](crate::Result); each failure keeps the kind it had when
    /// the server reported client errors itself.
    fn from(error: ServerError) -> Self {
        match error {
            ServerError::InvalidAddress { .. } => Error::Validation(error.to_string()),
            ServerError::Tls(message) => Error::Tls {
                kind: TlsFailure::InvalidConfiguration,
                message,
            },
            other => Error::Unavailable(other.to_string().into()),
        }
    }
}
