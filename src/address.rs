//! Server addresses: the forms users write (`host:port`, `[::1]:port`,
//! `grpc://`, `grpcs://`) parsed once into what a connection needs.

use http::uri::{Authority, Scheme};

use crate::error::{Error, Result};

/// A parsed server address: where to connect and what to put in `:scheme`
/// and `:authority`.
///
/// Accepted forms: `host:port`, `[::1]:port`, `grpc://host:port` (plain
/// HTTP/2) and `grpcs://host:port` (TLS).
///
/// ```
/// use tiny_cache_client::Address;
///
/// let address: Address = "grpc://cache.internal:50051".parse()?;
/// assert_eq!(address.host(), "cache.internal");
/// assert_eq!(address.port(), 50051);
/// assert!(!address.is_tls());
/// assert_eq!("[::1]:7000".parse::<Address>()?.host(), "::1");
/// assert!("localhost".parse::<Address>().is_err()); // no port
/// # Ok::<(), tiny_cache_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    tls: bool,
    host: String,
    port: u16,
    authority: Authority,
}

impl Address {
    /// The host name or IP address, without brackets.
    ///
    /// ```
    /// use tiny_cache_client::Address;
    ///
    /// assert_eq!("grpc://cache.internal:50051".parse::<Address>()?.host(), "cache.internal");
    /// assert_eq!("[::1]:7000".parse::<Address>()?.host(), "::1"); // no brackets
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    ///
    /// ```
    /// use tiny_cache_client::Address;
    ///
    /// assert_eq!("cache.internal:50051".parse::<Address>()?.port(), 50051);
    /// assert!("cache.internal:0".parse::<Address>().is_err());
    /// assert!("cache.internal:65536".parse::<Address>().is_err());
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the address asks for TLS (`grpcs://`).
    ///
    /// ```
    /// use tiny_cache_client::Address;
    ///
    /// assert!("grpcs://cache.internal:50051".parse::<Address>()?.is_tls());
    /// assert!(!"grpc://cache.internal:50051".parse::<Address>()?.is_tls());
    /// assert!(!"cache.internal:50051".parse::<Address>()?.is_tls()); // plain by default
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `host:port` as sent in `:authority` (IPv6 hosts in brackets).
    ///
    /// ```
    /// use tiny_cache_client::Address;
    ///
    /// let address: Address = "grpcs://cache.internal:50051".parse()?;
    /// assert_eq!(address.authority().as_str(), "cache.internal:50051");
    /// let ipv6: Address = "[::1]:7000".parse()?;
    /// assert_eq!(ipv6.authority().as_str(), "[::1]:7000");
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The `:scheme` of requests to this address.
    ///
    /// ```
    /// use tiny_cache_client::Address;
    ///
    /// assert_eq!("grpcs://cache.internal:50051".parse::<Address>()?.scheme().as_str(), "https");
    /// assert_eq!("cache.internal:50051".parse::<Address>()?.scheme().as_str(), "http");
    /// # Ok::<(), tiny_cache_client::Error>(())
    /// ```
    pub fn scheme(&self) -> Scheme {
        if self.tls {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        write!(f, "{scheme}://{}", self.authority)
    }
}

impl std::str::FromStr for Address {
    type Err = Error;

    fn from_str(raw: &str) -> Result<Address> {
        let invalid = |why: &str| Error::Validation(format!("invalid address {raw:?}: {why}"));
        let trimmed = raw.trim();
        let (tls, rest) = if let Some(rest) = trimmed.strip_prefix("grpcs://") {
            (true, rest)
        } else if let Some(rest) = trimmed.strip_prefix("grpc://") {
            (false, rest)
        } else if trimmed.contains("://") {
            return Err(invalid("the scheme must be grpc:// or grpcs://"));
        } else {
            (false, trimmed)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '['"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| invalid("expected [host]:port"))?;
            (host, port)
        } else {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| invalid("expected host:port"))?;
            if host.contains(':') {
                return Err(invalid("an IPv6 host must be in brackets: [::1]:port"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("the port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(invalid("the port must be a number from 1 to 65535"));
        }
        let authority_text = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let authority: Authority = authority_text
            .parse()
            .map_err(|_| invalid("the host is not a valid name or IP address"))?;
        Ok(Address {
            tls,
            host: host.to_owned(),
            port,
            authority,
        })
    }
}

impl Address {
    /// The same address reached over TLS: `:scheme` follows the transport
    /// when TLS is turned on by the builder rather than by `grpcs://`.
    pub(crate) fn with_tls(self) -> Address {
        Address { tls: true, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_address_form_parses() {
        let plain: Address = "localhost:50051".parse().unwrap();
        assert_eq!(
            (plain.host(), plain.port(), plain.is_tls()),
            ("localhost", 50051, false)
        );
        let v6: Address = "[::1]:7000".parse().unwrap();
        assert_eq!((v6.host(), v6.authority().as_str()), ("::1", "[::1]:7000"));
        let scheme: Address = "grpc://10.0.0.1:9".parse().unwrap();
        assert_eq!(scheme.authority().as_str(), "10.0.0.1:9");
        let tls: Address = "grpcs://cache.example:443".parse().unwrap();
        assert!(tls.is_tls());
        assert_eq!(tls.scheme(), Scheme::HTTPS);
    }

    #[test]
    fn malformed_addresses_are_validation_errors() {
        for bad in [
            "",
            "localhost",
            "host:",
            ":80",
            "host:0",
            "host:70000",
            "http://host:80",
            "::1:80",
            "[::1:80",
            "bad host:80",
        ] {
            match bad.parse::<Address>() {
                Err(Error::Validation(_)) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
