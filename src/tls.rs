//! Client TLS: the rustls configuration built from the builder's options,
//! PEM loading, and naming a failed handshake as a [`TlsFailure`].
//!
//! rustls runs on its `ring` provider (no aws-lc, no cmake). The trust
//! store is webpki-roots (Mozilla's roots, compiled in, so the result does
//! not depend on the host's certificate files) plus any CA the caller adds.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::address::Address;
use crate::error::{Error, Result, TlsFailure};

/// The ALPN protocol id of HTTP/2, which gRPC over TLS requires.
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// Where a PEM document comes from. Files are read by `build()`, so a
/// missing file is reported there, with its path.
#[derive(Debug, Clone)]
pub(crate) enum Pem {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Pem {
    fn load(&self, what: &str) -> Result<Vec<u8>> {
        match self {
            Pem::Bytes(bytes) => Ok(bytes.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|error| {
                invalid(format!(
                    "cannot read the {what} {}: {error}",
                    path.display()
                ))
            }),
        }
    }

    fn describe(&self, what: &str) -> String {
        match self {
            Pem::File(path) => format!("the {what} {}", path.display()),
            Pem::Bytes(_) => format!("the {what} PEM"),
        }
    }
}

/// The TLS options a [`ClientBuilder`](crate::ClientBuilder) gathers.
#[derive(Debug, Clone)]
pub(crate) struct TlsOptions {
    /// `.tls(..)`: `None` leaves it to the address's scheme.
    pub enabled: Option<bool>,
    /// CA certificates trusted besides (or, without the built-in roots,
    /// instead of) webpki-roots.
    pub extra_roots: Vec<Pem>,
    /// Whether webpki-roots are trusted. Default true.
    pub built_in_roots: bool,
    /// Certificate chain and private key presented to the server (mTLS).
    pub identity: Option<(Pem, Pem)>,
    /// The name sent by SNI and verified in the server's certificate;
    /// `None` means the address's host.
    pub server_name: Option<String>,
    /// Certificates the server must present exactly (pinning); when any is
    /// given, no CA can vouch for another.
    pub pinned: Vec<Pem>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            enabled: None,
            extra_roots: Vec::new(),
            built_in_roots: true,
            identity: None,
            server_name: None,
            pinned: Vec::new(),
        }
    }
}

impl TlsOptions {
    /// Whether any option beyond on/off was set: such options on a
    /// plain-text connection are a mistake worth reporting.
    pub fn has_settings(&self) -> bool {
        !self.extra_roots.is_empty()
            || !self.built_in_roots
            || self.identity.is_some()
            || self.server_name.is_some()
            || !self.pinned.is_empty()
    }

    /// The rustls configuration for connections to `address`.
    ///
    /// Errors with [`TlsFailure::InvalidConfiguration`] for an unreadable
    /// or malformed PEM, a key that does not fit, an invalid server name or
    /// an empty trust store.
    pub fn build(&self, address: &Address) -> Result<ClientTls> {
        let mut roots = RootCertStore::empty();
        if self.built_in_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        // A certificate the user names as trusted is also trusted exactly:
        // the reference server's development certificate is its own CA
        // (CA:TRUE), which no chain check accepts as a server certificate.
        let mut exact = Vec::new();
        for pem in &self.extra_roots {
            for certificate in load_certificates(pem, "CA certificate")? {
                roots.add(certificate.clone()).map_err(|error| {
                    invalid(format!(
                        "{} is not a usable CA certificate: {error}",
                        pem.describe("CA certificate")
                    ))
                })?;
                exact.push(certificate);
            }
        }
        let mut pinned = Vec::new();
        for pem in &self.pinned {
            pinned.extend(load_certificates(pem, "pinned certificate")?);
        }
        if roots.is_empty() && pinned.is_empty() {
            return Err(invalid(
                "no CA is trusted: the built-in roots are off and no CA certificate was given"
                    .into(),
            ));
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chains = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|error| invalid(format!("cannot verify certificates: {error}")))?,
            )
        };
        let verifier = Arc::new(Verifier {
            chains,
            exact,
            pinned,
            provider: Arc::clone(&provider),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| invalid(format!("no usable TLS version: {error}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain_der = load_certificates(chain, "client certificate")?;
                let key_der = load_private_key(key)?;
                builder
                    .with_client_auth_cert(chain_der, key_der)
                    .map_err(|error| {
                        invalid(format!(
                            "the client certificate and key cannot be used together: {error}"
                        ))
                    })?
            }
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];

        let name = self.server_name.as_deref().unwrap_or(address.host());
        let server_name = ServerName::try_from(name.to_owned()).map_err(|_| {
            invalid(format!(
                "{name:?} is not a valid TLS server name (a DNS name or an IP address)"
            ))
        })?;
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
            has_identity: self.identity.is_some(),
        })
    }
}

/// What a connection needs to speak TLS: built once by `build()`, shared by
/// every worker (so session tickets are shared too).
#[derive(Debug, Clone)]
pub(crate) struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// Sent by SNI and verified in the server's certificate.
    pub server_name: ServerName<'static>,
    /// Whether a client certificate is presented, to tell "the server wants
    /// one" from "the server refused ours".
    pub has_identity: bool,
}

/// Checks the server's certificate: against the pinned certificates when
/// there are any, else as a certificate the user trusts exactly, else by
/// its chain to a trusted CA.
#[derive(Debug)]
struct Verifier {
    /// Chain verification against the trusted CAs; `None` when only pins
    /// are trusted.
    chains: Option<Arc<WebPkiServerVerifier>>,
    /// The CA certificates the user gave, accepted as server certificates
    /// when presented byte for byte.
    exact: Vec<CertificateDer<'static>>,
    /// When not empty, the only certificates accepted.
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

/// The pinned certificates did not include the one the server presented.
#[derive(Debug)]
struct PinMismatch;

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server's certificate is not the pinned one")
    }
}

impl std::error::Error for PinMismatch {}

impl Verifier {
    /// A certificate trusted for its exact bytes: no issuer is needed, but
    /// it must be within its validity period and name the server.
    fn verify_exact(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let certificate = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        // webpki reads the end entity's validity before anything about its
        // issuer or its CA flag, so any later complaint (unknown issuer, a
        // CA used as end entity) means the dates were fine; the test suite
        // holds an expired, exactly trusted certificate to keep this true.
        let anchor = webpki::anchor_from_trusted_cert(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        match certificate.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &[anchor],
            &[],
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        ) {
            Err(webpki::Error::CertExpired { .. } | webpki::Error::InvalidCertValidity) => {
                return Err(CertificateError::Expired.into())
            }
            Err(webpki::Error::CertNotValidYet { .. }) => {
                return Err(CertificateError::NotValidYet.into())
            }
            Err(webpki::Error::BadDer | webpki::Error::BadDerTime) => {
                return Err(CertificateError::BadEncoding.into())
            }
            Ok(_) | Err(_) => {}
        }
        certificate
            .verify_is_valid_for_subject_name(server_name)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        Ok(ServerCertVerified::assertion())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let presented = |trusted: &[CertificateDer<'static>]| {
            trusted.iter().any(|c| c.as_ref() == end_entity.as_ref())
        };
        if !self.pinned.is_empty() {
            if presented(&self.pinned) {
                return self.verify_exact(end_entity, server_name, now);
            }
            return Err(CertificateError::Other(OtherError(Arc::new(PinMismatch))).into());
        }
        if presented(&self.exact) {
            return self.verify_exact(end_entity, server_name, now);
        }
        match &self.chains {
            Some(chains) => chains.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(CertificateError::UnknownIssuer.into()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Names a rustls error seen while connecting, with a message saying what
/// to fix. `server_name` is the name the certificate was checked against.
pub(crate) fn classify(
    error: &rustls::Error,
    server_name: &ServerName<'_>,
    has_identity: bool,
) -> (TlsFailure, String) {
    use rustls::Error as E;
    let name = server_name.to_str();
    match error {
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => (
            TlsFailure::HostnameMismatch,
            format!(
                "the server's certificate is not valid for {name:?} ({error}); \
                 connect by a name the certificate lists, or set the TLS server name"
            ),
        ),
        E::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => (
            TlsFailure::CertificateExpired,
            format!("the server's certificate is outside its validity period ({error})"),
        ),
        E::InvalidCertificate(CertificateError::Other(other))
            if other.0.downcast_ref::<PinMismatch>().is_some() =>
        {
            (
                TlsFailure::PinnedCertificateMismatch,
                "the server's certificate is not the pinned certificate; \
                 if the server's certificate was renewed, pin the new one"
                    .to_owned(),
            )
        }
        E::InvalidCertificate(CertificateError::Other(other))
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            (
                TlsFailure::CaCertificateAsServerCertificate,
                format!(
                    "the server presents a CA certificate (CA:TRUE) as its own ({error}); \
                     if it is the server's self-signed development certificate, trust \
                     exactly that certificate with the CA certificate option, or pin it"
                ),
            )
        }
        E::InvalidCertificate(_) => (
            TlsFailure::UntrustedCertificate,
            format!(
                "the server's certificate is not trusted ({error}); \
                 add its CA with the CA certificate option"
            ),
        ),
        E::NoApplicationProtocol | E::AlertReceived(AlertDescription::NoApplicationProtocol) => (
            TlsFailure::NoAlpnH2,
            format!("the server does not offer HTTP/2 by ALPN, which gRPC needs ({error})"),
        ),
        E::AlertReceived(AlertDescription::CertificateRequired) => (
            TlsFailure::ClientCertificateRequired,
            format!(
                "the server requires a client certificate ({error}); \
                 configure a client certificate and key"
            ),
        ),
        // TLS 1.2 servers have no certificate_required alert: a handshake
        // failure right after a certificate request is how they say it.
        E::AlertReceived(AlertDescription::HandshakeFailure) if !has_identity => (
            TlsFailure::ClientCertificateRequired,
            format!(
                "the server ended the handshake ({error}); no client certificate was \
                 presented, and the usual reason is that the server requires one"
            ),
        ),
        E::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied,
        ) if has_identity => (
            TlsFailure::ClientCertificateRejected,
            format!("the server rejected the client certificate ({error})"),
        ),
        _ => (TlsFailure::Other, error.to_string()),
    }
}

/// The certificates of a PEM document, refusing one with none.
fn load_certificates(pem: &Pem, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = pem.load(what)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("{} is not valid PEM: {error}", pem.describe(what))))?;
    if certificates.is_empty() {
        return Err(invalid(format!(
            "{} holds no CERTIFICATE block",
            pem.describe(what)
        )));
    }
    Ok(certificates)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM document.
fn load_private_key(pem: &Pem) -> Result<PrivateKeyDer<'static>> {
    let what = "client key";
    let bytes = pem.load(what)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| {
        invalid(format!(
            "{} holds no usable private key: {error}",
            pem.describe(what)
        ))
    })
}

fn invalid(message: String) -> Error {
    Error::Tls {
        kind: TlsFailure::InvalidConfiguration,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(raw: &str) -> Address {
        raw.parse().unwrap()
    }

    fn kind(result: Result<ClientTls>) -> TlsFailure {
        match result {
            Err(Error::Tls { kind, .. }) => kind,
            other => panic!("expected a TLS error, got {other:?}"),
        }
    }

    #[test]
    fn default_options_trust_the_built_in_roots_and_offer_h2() {
        let tls = TlsOptions::default()
            .build(&address("grpcs://cache.example:443"))
            .unwrap();
        assert_eq!(tls.config.alpn_protocols, vec![b"h2".to_vec()]);
        assert_eq!(tls.server_name.to_str(), "cache.example");
        assert!(!tls.has_identity);
    }

    #[test]
    fn ip_hosts_and_overrides_become_server_names() {
        let ip = TlsOptions::default()
            .build(&address("grpcs://127.0.0.1:1"))
            .unwrap();
        assert!(matches!(ip.server_name, ServerName::IpAddress(_)));
        let named = TlsOptions {
            server_name: Some("cache.internal".into()),
            ..TlsOptions::default()
        }
        .build(&address("grpcs://127.0.0.1:1"))
        .unwrap();
        assert_eq!(named.server_name.to_str(), "cache.internal");
    }

    #[test]
    fn unusable_settings_are_invalid_configuration() {
        let at = address("grpcs://cache.example:443");
        let bad_pem = TlsOptions {
            extra_roots: vec![Pem::Bytes(b"not a certificate".to_vec())],
            ..TlsOptions::default()
        };
        assert_eq!(kind(bad_pem.build(&at)), TlsFailure::InvalidConfiguration);
        let missing_file = TlsOptions {
            extra_roots: vec![Pem::File("/nonexistent/ca.pem".into())],
            ..TlsOptions::default()
        };
        assert_eq!(
            kind(missing_file.build(&at)),
            TlsFailure::InvalidConfiguration
        );
        let no_roots = TlsOptions {
            built_in_roots: false,
            ..TlsOptions::default()
        };
        assert_eq!(kind(no_roots.build(&at)), TlsFailure::InvalidConfiguration);
        let bad_name = TlsOptions {
            server_name: Some("not a name!".into()),
            ..TlsOptions::default()
        };
        assert_eq!(kind(bad_name.build(&at)), TlsFailure::InvalidConfiguration);
    }

    #[test]
    fn rustls_errors_name_the_failure() {
        let name = ServerName::try_from("cache.example").unwrap();
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                false,
                TlsFailure::HostnameMismatch,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                false,
                TlsFailure::UntrustedCertificate,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                false,
                TlsFailure::CertificateExpired,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol),
                false,
                TlsFailure::NoAlpnH2,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                false,
                TlsFailure::ClientCertificateRequired,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                true,
                TlsFailure::ClientCertificateRejected,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
                false,
                TlsFailure::Other,
            ),
        ];
        for (error, has_identity, expected) in cases {
            assert_eq!(classify(&error, &name, has_identity).0, expected, "{error}");
        }
    }
}
