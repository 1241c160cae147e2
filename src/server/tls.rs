//! TLS for the embedded server: rustls on its `ring` provider, ALPN h2,
//! and optionally client certificates required and verified against a CA.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::error::ServerError;

type Result<T> = std::result::Result<T, ServerError>;

/// Longest a client may take over its TLS handshake, so a silent or slow
/// peer cannot hold a connection task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a refused connection is kept open, draining what the client
/// still sends, after the alert explaining the refusal was written. Closing
/// at once with unread bytes makes the kernel send a reset, which can
/// destroy the alert before the client reads it; a client that sees it
/// reports the precise cause instead of "connection reset".
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// Bytes drained per read while lingering.
const DRAIN_CHUNK_BYTES: usize = 4096;

/// The PEM documents a TLS server is configured with.
#[derive(Debug, Clone)]
pub(super) struct TlsSettings {
    pub certificate_chain: Vec<u8>,
    pub private_key: Vec<u8>,
    /// When set, clients must present a certificate issued by this CA.
    pub client_ca: Option<Vec<u8>>,
}

impl TlsSettings {
    /// The acceptor for these settings, or why they cannot be used.
    pub(super) fn acceptor(&self) -> Result<TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|error| invalid(format!("no usable TLS version: {error}")))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for certificate in certificates(ca, "client CA")? {
                    roots.add(certificate).map_err(|error| {
                        invalid(format!(
                            "the client CA is not a usable CA certificate: {error}"
                        ))
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|error| invalid(format!("the client CA cannot be used: {error}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = certificates(&self.certificate_chain, "server certificate")?;
        let key = PrivateKeyDer::from_pem_slice(&self.private_key).map_err(|error| {
            invalid(format!(
                "the server key holds no usable private key: {error}"
            ))
        })?;
        let mut config = builder.with_single_cert(chain, key).map_err(|error| {
            invalid(format!(
                "the server certificate and key cannot be used together: {error}"
            ))
        })?;
        // gRPC runs over HTTP/2 only; a client offering nothing else is
        // refused by rustls with a no_application_protocol alert.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Runs the TLS handshake on an accepted socket. `None` when it failed:
/// the client was told why by a TLS alert, and the socket is closed.
pub(super) async fn accept(
    acceptor: &TlsAcceptor,
    socket: TcpStream,
) -> Option<TlsStream<TcpStream>> {
    let handshake = acceptor.accept(socket).into_fallible();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err((_, socket))) => {
            close_after_refusal(socket).await;
            None
        }
        Err(_) => None,
    }
}

/// Sends FIN after the alert, then reads and discards whatever the client
/// still sends until it closes too or the linger time is up.
async fn close_after_refusal(mut socket: TcpStream) {
    let _ = poll_fn(|cx| Pin::new(&mut socket).poll_shutdown(cx)).await;
    let drain = async {
        let mut buf = [0u8; DRAIN_CHUNK_BYTES];
        loop {
            if socket.readable().await.is_err() {
                return;
            }
            match socket.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, drain).await;
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let parsed = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("the {what} is not valid PEM: {error}")))?;
    if parsed.is_empty() {
        return Err(invalid(format!(
            "the {what} PEM holds no CERTIFICATE block"
        )));
    }
    Ok(parsed)
}

fn invalid(message: String) -> ServerError {
    ServerError::Tls(message)
}
