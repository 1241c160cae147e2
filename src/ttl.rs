//! How long an entry lives: the one TTL type of the client, the cluster
//! and the caching layers.

use std::time::Duration;

use crate::error::{Error, Result};

/// TTL of writes that do not name one: the Python client's default.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::{Ttl, DEFAULT_TTL};
///
/// assert_eq!(DEFAULT_TTL, Duration::from_secs(3600));
/// assert_eq!(Ttl::from(DEFAULT_TTL).wire_seconds()?, 3600);
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The TTL of a write.
///
/// The Python client's convention is "`None` means the default TTL, `0`
/// means never expire". In Rust that is spelled out: methods without a TTL
/// use the client's default TTL, and a TTL is either [`Ttl::Never`] or a
/// positive duration. A `Duration` converts into a `Ttl`, so
/// `client.set_with_ttl(key, value, Duration::from_secs(60))` reads naturally.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::Ttl;
///
/// assert_eq!(Ttl::from(Duration::from_secs(60)), Ttl::After(Duration::from_secs(60)));
/// assert_eq!(Ttl::After(Duration::from_millis(1500)).wire_seconds().unwrap(), 2);
/// assert_eq!(Ttl::Never.wire_seconds().unwrap(), 0);
/// assert!(Ttl::After(Duration::ZERO).wire_seconds().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ttl {
    /// The entry never expires.
    Never,
    /// The entry expires this long after the write. The server counts whole
    /// seconds, so a fraction is rounded up (an entry never expires earlier
    /// than asked); zero is refused: say [`Ttl::Never`] to mean "no expiry".
    After(Duration),
}

impl Ttl {
    /// The TTL as the wire's `int32` seconds, validated.
    ///
    /// Errors with [`Error::Validation`] for a zero duration (ambiguous: the
    /// wire would read it as "never") or one beyond `i32::MAX` seconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::{Error, Ttl};
    ///
    /// assert_eq!(Ttl::Never.wire_seconds()?, 0);
    /// assert_eq!(Ttl::After(Duration::from_secs(90)).wire_seconds()?, 90);
    /// assert_eq!(Ttl::After(Duration::from_millis(100)).wire_seconds()?, 1); // rounded up
    /// assert!(matches!(Ttl::After(Duration::ZERO).wire_seconds(), Err(Error::Validation(_))));
    /// let too_long = Ttl::After(Duration::from_secs(1 << 31));
    /// assert!(matches!(too_long.wire_seconds(), Err(Error::Validation(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn wire_seconds(self) -> Result<i32> {
        match self {
            Ttl::Never => Ok(0),
            Ttl::After(duration) if duration.is_zero() => Err(Error::Validation(
                "a TTL of zero is ambiguous: use Ttl::Never for no expiry".into(),
            )),
            Ttl::After(duration) => {
                let rounded_up = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
                i32::try_from(rounded_up).map_err(|_| {
                    Error::Validation(format!(
                        "TTL of {rounded_up} s is longer than the wire allows ({} s)",
                        i32::MAX
                    ))
                })
            }
        }
    }
}

/// `never`, or whole seconds as the server will count them (`90s`).
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::Ttl;
///
/// assert_eq!(Ttl::Never.to_string(), "never");
/// assert_eq!(Ttl::from(Duration::from_millis(1500)).to_string(), "2s");
/// ```
impl std::fmt::Display for Ttl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.wire_seconds() {
            Ok(0) => f.write_str("never"),
            Ok(seconds) => write!(f, "{seconds}s"),
            // Not a TTL the wire can carry: show what was asked for.
            Err(_) => match self {
                Ttl::Never => f.write_str("never"),
                Ttl::After(duration) => write!(f, "{duration:?}"),
            },
        }
    }
}

impl From<Duration> for Ttl {
    fn from(duration: Duration) -> Ttl {
        Ttl::After(duration)
    }
}
