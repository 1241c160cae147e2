//! Which servers the cluster has: the fixed ones, plus every record of the
//! DNS names it discovers (a Kubernetes headless service answers with one
//! A/AAAA record per ready pod).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::Address;

/// Looks up a host name: every socket address it resolves to, for `port`.
/// [`ClusterBuilder::resolver`](super::ClusterBuilder::resolver) replaces the
/// system's (for tests, or a service registry).
pub type Resolver = Arc<dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>> + Send + Sync>;

/// The system resolver (`getaddrinfo`), as `std` offers it.
pub(crate) fn system_resolver() -> Resolver {
    Arc::new(|host: &str, port: u16| Ok((host, port).to_socket_addrs()?.collect()))
}

/// Where servers come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// One server, connected to by its address as given (its client
    /// resolves a name itself).
    Fixed { address: Address, weight: f64 },
    /// A name whose every record is a server.
    Discovered { address: Address, weight: f64 },
}

/// A server the cluster should have.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wanted {
    /// `host:port` (IPv6 in brackets): the server's name in placement.
    pub(crate) name: String,
    pub(crate) weight: f64,
    /// What its client connects to.
    pub(crate) connect: String,
    /// For TLS to a resolved address: the name its certificate carries.
    pub(crate) tls_name: Option<String>,
}

/// The servers one source stands for now. A failed or empty lookup gives
/// `None`: the caller keeps what the source gave last time rather than
/// dropping every server over a DNS hiccup.
pub(crate) fn expand(source: &Source, resolver: &Resolver) -> Option<Vec<Wanted>> {
    match source {
        Source::Fixed { address, weight } => Some(vec![Wanted {
            name: address.authority().as_str().to_owned(),
            weight: *weight,
            connect: address.to_string(),
            tls_name: None,
        }]),
        Source::Discovered { address, weight } => {
            let mut records = resolver(address.host(), address.port()).ok()?;
            if records.is_empty() {
                return None;
            }
            records.sort();
            records.dedup();
            let scheme = if address.is_tls() { "grpcs" } else { "grpc" };
            Some(
                records
                    .into_iter()
                    .map(|record: SocketAddr| Wanted {
                        name: record.to_string(),
                        weight: *weight,
                        connect: format!("{scheme}://{record}"),
                        tls_name: address.is_tls().then(|| address.host().to_owned()),
                    })
                    .collect(),
            )
        }
    }
}
