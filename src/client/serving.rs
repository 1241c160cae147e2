//! What the standard health service says of a service.

use std::fmt;

/// A service's state, as returned by
/// [`Client::health_check`](crate::Client::health_check): the values of
/// `grpc.health.v1`, as the crate's own type.
///
/// ```
/// use tiny_cache_client::ServingStatus;
///
/// assert_eq!(ServingStatus::Serving.to_string(), "SERVING");
/// assert_eq!(ServingStatus::from_wire(2), Some(ServingStatus::NotServing));
/// assert_eq!(ServingStatus::from_wire(9), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServingStatus {
    /// The server does not know (the reference server answers this for
    /// every service today).
    Unknown,
    /// The service is serving.
    Serving,
    /// The service is known but not serving.
    NotServing,
    /// The server does not know the service asked about (a `Watch`
    /// answer; a `Check` answers `NOT_FOUND` instead).
    ServiceUnknown,
}

impl ServingStatus {
    /// The status for the wire's number, `None` for a number the health
    /// protocol does not define.
    pub fn from_wire(value: i32) -> Option<ServingStatus> {
        match value {
            0 => Some(ServingStatus::Unknown),
            1 => Some(ServingStatus::Serving),
            2 => Some(ServingStatus::NotServing),
            3 => Some(ServingStatus::ServiceUnknown),
            _ => None,
        }
    }

    /// The protocol's name of the status: `SERVING`, `NOT_SERVING`, ...
    ///
    /// ```
    /// use tiny_cache_client::ServingStatus;
    /// assert_eq!(ServingStatus::NotServing.as_str(), "NOT_SERVING");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ServingStatus::Unknown => "UNKNOWN",
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
        }
    }
}

impl fmt::Display for ServingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
