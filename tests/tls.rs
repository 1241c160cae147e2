#![cfg(feature = "server")]
//! TLS and mutual TLS over real loopback sockets, with certificates made
//! here by rcgen (no key file is ever written). Every refused handshake
//! fails fast, well inside its deadline, with an `Error::Tls` whose kind
//! says which case it was.

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, ClientBuilder, Code, Error, TlsFailure};

mod common;

use common::net::CountingRelay;

/// The deadline of calls that must fail: long, so a failure that waits for
/// it is obvious.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How soon a refused handshake must be reported.
const FAIL_FAST: Duration = Duration::from_secs(2);

/// A certificate and its private key, PEM.
struct Identity {
    certificate: String,
    key: String,
}

/// A private CA issuing server and client certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose, expired: bool) -> Identity {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "tiny-cache test");
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            certificate: certificate.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for localhost and 127.0.0.1.
    fn server(&self) -> Identity {
        self.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            false,
        )
    }

    fn client(&self) -> Identity {
        self.issue(&["client.test"], ExtendedKeyUsagePurpose::ClientAuth, false)
    }
}

fn tls_server(identity: &Identity) -> Server {
    Server::builder()
        .tls(&identity.certificate, &identity.key)
        .start()
        .unwrap()
}

fn mtls_server(identity: &Identity, client_ca: &Ca) -> Server {
    Server::builder()
        .tls(&identity.certificate, &identity.key)
        .client_ca(client_ca.pem())
        .start()
        .unwrap()
}

/// A client of `address` with a 10 s deadline and one worker.
fn builder(address: &str) -> ClientBuilder {
    Client::builder(address).timeout(CALL_TIMEOUT).pool_size(1)
}

/// Asserts that a call fails within [`FAIL_FAST`] with a TLS error of
/// `kind`, and returns its message. A second call (made while the worker
/// backs off) must fail the same way, as fast.
#[track_caller]
fn assert_fails_fast(client: &Client, kind: TlsFailure) -> String {
    let mut first_message = String::new();
    for attempt in 0..2 {
        let started = Instant::now();
        let result = client.get("k");
        let elapsed = started.elapsed();
        match result {
            Err(Error::Tls {
                kind: actual,
                message,
            }) => {
                assert_eq!(actual, kind, "attempt {attempt}: {message}");
                if attempt == 0 {
                    first_message = message;
                }
            }
            other => panic!("attempt {attempt}: expected a {kind:?} TLS error, got {other:?}"),
        }
        assert!(
            elapsed < FAIL_FAST,
            "attempt {attempt} took {elapsed:?} to fail"
        );
    }
    first_message
}

#[test]
fn tls_call_succeeds_with_a_trusted_private_ca() {
    let ca = Ca::new("test CA");
    let server = tls_server(&ca.server());
    assert!(server.url().starts_with("grpcs://"));
    let client = builder(&server.url())
        .tls_ca_certificate_pem(ca.pem())
        .build()
        .unwrap();
    client.set("greeting", "hello").unwrap();
    assert_eq!(
        client.get_string("greeting").unwrap().as_deref(),
        Some("hello")
    );

    // The builder option turns TLS on for an address without a scheme, and
    // the private CA alone (no built-in roots) is enough.
    let by_option = builder(&server.address())
        .tls(true)
        .tls_built_in_roots(false)
        .tls_ca_certificate_pem(ca.pem())
        .build()
        .unwrap();
    assert_eq!(
        by_option.get_string("greeting").unwrap().as_deref(),
        Some("hello")
    );
}

#[test]
fn server_name_override_is_what_the_certificate_is_checked_against() {
    let ca = Ca::new("test CA");
    let identity = ca.issue(
        &["cache.internal"],
        ExtendedKeyUsagePurpose::ServerAuth,
        false,
    );
    let server = tls_server(&identity);
    let client = builder(&server.url())
        .tls_ca_certificate_pem(ca.pem())
        .tls_server_name("cache.internal")
        .build()
        .unwrap();
    client.set("k", "v").unwrap();
}

#[test]
fn mutual_tls_call_succeeds_with_a_client_certificate() {
    let ca = Ca::new("test CA");
    let server = mtls_server(&ca.server(), &ca);
    let client_identity = ca.client();
    let client = builder(&server.url())
        .tls_ca_certificate_pem(ca.pem())
        .tls_client_identity_pem(&client_identity.certificate, &client_identity.key)
        .build()
        .unwrap();
    client.set("k", "v").unwrap();
    assert_eq!(client.get_string("k").unwrap().as_deref(), Some("v"));
}

#[test]
fn wrong_host_name_fails_fast_as_hostname_mismatch() {
    let ca = Ca::new("test CA");
    let server = tls_server(&ca.server());
    let client = builder(&server.url())
        .tls_ca_certificate_pem(ca.pem())
        .tls_server_name("cache.example")
        .build()
        .unwrap();
    let message = assert_fails_fast(&client, TlsFailure::HostnameMismatch);
    assert!(message.contains("cache.example"), "{message}");
}

#[test]
fn untrusted_ca_fails_fast_as_untrusted_certificate() {
    let ca = Ca::new("test CA");
    let server = tls_server(&ca.server());
    // Only the built-in public roots, which never issued this certificate.
    let client = builder(&server.url()).build().unwrap();
    assert_fails_fast(&client, TlsFailure::UntrustedCertificate);
    // Trusting another private CA instead does not help either.
    let other = Ca::new("other CA");
    let client = builder(&server.url())
        .tls_built_in_roots(false)
        .tls_ca_certificate_pem(other.pem())
        .build()
        .unwrap();
    assert_fails_fast(&client, TlsFailure::UntrustedCertificate);
}

#[test]
fn expired_certificate_fails_fast_as_certificate_expired() {
    let ca = Ca::new("test CA");
    let expired = ca.issue(
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        true,
    );
    let server = tls_server(&expired);
    let client = builder(&server.url())
        .tls_ca_certificate_pem(ca.pem())
        .build()
        .unwrap();
    assert_fails_fast(&client, TlsFailure::CertificateExpired);
}

/// A rustls server configuration for `identity` offering the given ALPN
/// protocols (none at all when empty).
fn rustls_server_config(identity: &Identity, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(identity.certificate.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS server that is not a gRPC server: it completes handshakes with the
/// given ALPN protocols (none at all when empty), then only reads.
fn start_rustls_server(identity: &Identity, alpn: &[&[u8]]) -> String {
    let config = rustls_server_config(identity, alpn);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    // Detached: the listener lives until the test process ends.
    thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(socket) = socket else { continue };
            let config = Arc::clone(&config);
            thread::spawn(move || {
                let Ok(connection) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut stream = rustls::StreamOwned::new(connection, socket);
                let mut sink = [0u8; 4096];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    format!("grpcs://{address}")
}

#[test]
fn server_without_alpn_h2_fails_fast_as_no_alpn_h2() {
    let ca = Ca::new("test CA");
    let identity = ca.server();
    // A server that negotiates no protocol at all: the handshake completes
    // and the client refuses to go on.
    let silent = start_rustls_server(&identity, &[]);
    let client = builder(&silent)
        .tls_ca_certificate_pem(ca.pem())
        .build()
        .unwrap();
    let message = assert_fails_fast(&client, TlsFailure::NoAlpnH2);
    assert!(message.contains("ALPN"), "{message}");
    // A server that speaks only HTTP/1.1 refuses the handshake itself.
    let http1 = start_rustls_server(&identity, &[b"http/1.1"]);
    let client = builder(&http1)
        .tls_ca_certificate_pem(ca.pem())
        .build()
        .unwrap();
    assert_fails_fast(&client, TlsFailure::NoAlpnH2);
}

#[test]
fn missing_client_certificate_fails_fast_as_client_certificate_required() {
    let ca = Ca::new("test CA");
    let server = mtls_server(&ca.server(), &ca);
    let client = builder(&server.url())
        .tls_ca_certificate_pem(ca.pem())
        .build()
        .unwrap();
    assert_fails_fast(&client, TlsFailure::ClientCertificateRequired);
}

#[test]
fn client_certificate_from_another_ca_fails_fast_as_rejected() {
    let ca = Ca::new("test CA");
    let server = mtls_server(&ca.server(), &ca);
    let stranger = Ca::new("stranger CA").client();
    let client = builder(&server.url())
        .tls_ca_certificate_pem(ca.pem())
        .tls_client_identity_pem(&stranger.certificate, &stranger.key)
        .build()
        .unwrap();
    assert_fails_fast(&client, TlsFailure::ClientCertificateRejected);
}

#[test]
fn plain_client_against_a_tls_server_fails_fast_as_server_requires_tls() {
    let ca = Ca::new("test CA");
    let server = tls_server(&ca.server());
    let client = builder(&server.address()).build().unwrap();
    let message = assert_fails_fast(&client, TlsFailure::ServerRequiresTls);
    assert!(message.contains("grpcs://"), "{message}");
}

#[test]
fn tls_client_against_a_plain_server_fails_fast_as_server_not_tls() {
    let server = Server::local().unwrap();
    let client = builder(&format!("grpcs://{}", server.address()))
        .build()
        .unwrap();
    let message = assert_fails_fast(&client, TlsFailure::ServerNotTls);
    assert!(message.contains("grpc://"), "{message}");
}

#[test]
fn tls_failures_are_unavailable_and_never_retried() {
    let ca = Ca::new("test CA");
    let expired = ca.issue(
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        true,
    );
    let server = tls_server(&expired);
    let relay = CountingRelay::start(server.local_addr());
    // Retries as eager as can be: were a TLS failure retried, the call would
    // spin until the worker's next connection attempt (about 1 s later, a
    // second handshake) and on toward its 10 s deadline.
    let client = builder(&format!("grpcs://{}", relay.address()))
        .tls_ca_certificate_pem(ca.pem())
        .max_retries(1_000)
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(5))
        .retry_throttle(None)
        .build()
        .unwrap();
    let started = Instant::now();
    let error = client
        .get("k")
        .expect_err("an expired certificate is refused");
    let elapsed = started.elapsed();
    let handshakes = relay.connections();
    assert!(
        matches!(
            error,
            Error::Tls {
                kind: TlsFailure::CertificateExpired,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.code(), Code::Unavailable);
    assert!(!error.is_retryable());
    assert_eq!(handshakes, 1, "the failed handshake was tried again");
    assert!(elapsed < FAIL_FAST, "took {elapsed:?}");
}

#[test]
fn unusable_tls_settings_are_reported_by_build() {
    let invalid = |result: Result<Client, Error>| match result {
        Err(Error::Tls {
            kind: TlsFailure::InvalidConfiguration,
            message,
        }) => message,
        other => panic!("expected InvalidConfiguration, got {other:?}"),
    };
    let message = invalid(
        builder("grpcs://127.0.0.1:1")
            .tls_ca_certificate_pem("not PEM at all")
            .build(),
    );
    assert!(message.contains("CA certificate"), "{message}");
    let message = invalid(
        builder("grpcs://127.0.0.1:1")
            .tls_ca_certificate_file("/nonexistent/ca.pem")
            .build(),
    );
    assert!(message.contains("/nonexistent/ca.pem"), "{message}");
    let ca = Ca::new("test CA");
    let one = ca.client();
    let other = ca.client();
    invalid(
        builder("grpcs://127.0.0.1:1")
            .tls_client_identity_pem(&one.certificate, &other.key)
            .build(),
    );
    invalid(
        builder("grpcs://127.0.0.1:1")
            .tls_client_identity_pem(&one.certificate, "no key here")
            .build(),
    );
    // The server refuses unusable settings at start.
    match Server::builder()
        .tls(&one.certificate, "no key")
        .start()
        .map_err(Error::from)
    {
        Err(Error::Tls {
            kind: TlsFailure::InvalidConfiguration,
            ..
        }) => {}
        other => panic!("expected InvalidConfiguration, got {other:?}"),
    }
}

#[test]
fn tls_options_on_a_plain_address_are_a_validation_error() {
    let result = builder("grpc://127.0.0.1:1")
        .tls_server_name("cache.internal")
        .build();
    assert!(
        matches!(result, Err(Error::Validation(ref m)) if m.contains("grpcs://")),
        "{result:?}"
    );
    let result = builder("grpcs://127.0.0.1:1").tls(false).build();
    assert!(matches!(result, Err(Error::Validation(_))), "{result:?}");
}

/// A TLS server that completes each handshake (h2 by ALPN), then hangs up
/// without an alert: what some servers that require mutual TLS do to a
/// client without an acceptable certificate.
fn start_rustls_server_that_hangs_up(identity: &Identity) -> String {
    let config = rustls_server_config(identity, &[b"h2"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { continue };
            let Ok(mut connection) = rustls::ServerConnection::new(Arc::clone(&config)) else {
                continue;
            };
            while connection.is_handshaking() {
                if connection.complete_io(&mut socket).is_err() {
                    break;
                }
            }
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    });
    format!("grpcs://{address}")
}

#[test]
fn a_server_that_hangs_up_right_after_the_tls_handshake_suggests_a_client_certificate() {
    let ca = Ca::new("test CA");
    let server = start_rustls_server_that_hangs_up(&ca.server());
    let client = builder(&server)
        .tls_ca_certificate_pem(ca.pem())
        .max_retries(0)
        .build()
        .unwrap();
    // Retryable: an overloaded server can hang up the same way.
    assert_unavailable_with_hint(
        client.get("k"),
        &["right after the TLS handshake", "tls_client_identity_pem"],
    );
}

#[test]
fn a_plain_client_hung_up_on_without_a_byte_is_told_about_grpcs() {
    // What a TLS-only server may do with a plain-text HTTP/2 preface.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { continue };
            let _ = socket.read(&mut [0u8; 64]);
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    });
    let client = builder(&format!("grpc://{address}"))
        .max_retries(0)
        .build()
        .unwrap();
    assert_unavailable_with_hint(client.get("k"), &["grpcs://"]);
}

/// The call failed as `Unavailable`, with every one of `hints` in its text.
fn assert_unavailable_with_hint<T: std::fmt::Debug>(outcome: Result<T, Error>, hints: &[&str]) {
    match outcome {
        Err(Error::Unavailable(message)) => {
            let message = message.to_string();
            for hint in hints {
                assert!(message.contains(hint), "{hint:?} not in {message}");
            }
        }
        other => panic!("expected Unavailable with a hint, got {other:?}"),
    }
}
