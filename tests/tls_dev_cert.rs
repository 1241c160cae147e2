#![cfg(feature = "server")]
//! The reference server's development TLS setup: a self-signed certificate
//! that is its own CA (`CA:TRUE`), used directly as the server certificate
//! (what `openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost
//! -addext subjectAltName=DNS:localhost` makes), and certificate pinning.
//! Certificates are made here by rcgen; every refusal is typed and fast.

use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, ClientBuilder, Error, TlsFailure};

/// The deadline of calls that must fail: long, so a failure that waits for
/// it is obvious.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How soon a refused handshake must be reported: far below the deadline,
/// generous for a busy machine.
const FAIL_FAST: Duration = Duration::from_secs(3);

/// A certificate and its key, PEM.
struct DevCertificate {
    certificate: String,
    key: String,
}

/// What `openssl req -x509 … -subj /CN=localhost -addext
/// subjectAltName=DNS:localhost` makes: self-signed, CA:TRUE.
fn dev_certificate(expired: bool) -> DevCertificate {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 12, 31);
    }
    let key = KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key).unwrap();
    DevCertificate {
        certificate: certificate.pem(),
        key: key.serialize_pem(),
    }
}

fn tls_server(identity: &DevCertificate) -> Server {
    Server::builder()
        .tls(&identity.certificate, &identity.key)
        .start()
        .unwrap()
}

/// A TLS client of `server`, checking the certificate against `name`.
fn builder(server: &Server, name: &str) -> ClientBuilder {
    Client::builder(&format!("grpcs://{}", server.address()))
        .tls_server_name(name)
        .timeout(CALL_TIMEOUT)
        .pool_size(1)
}

#[track_caller]
fn assert_fails_fast(client: &Client, kind: TlsFailure) -> String {
    let started = Instant::now();
    let result = client.get("k");
    let elapsed = started.elapsed();
    let message = match result {
        Err(Error::Tls {
            kind: actual,
            message,
        }) => {
            assert_eq!(actual, kind, "{message}");
            message
        }
        other => panic!("expected a {kind:?} TLS error, got {other:?}"),
    };
    assert!(elapsed < FAIL_FAST, "took {elapsed:?} to fail");
    message
}

#[test]
fn a_self_signed_ca_certificate_given_as_trusted_is_accepted() {
    let dev = dev_certificate(false);
    let server = tls_server(&dev);
    for built_in_roots in [true, false] {
        let client = builder(&server, "localhost")
            .tls_ca_certificate_pem(&dev.certificate)
            .tls_built_in_roots(built_in_roots)
            .build()
            .unwrap();
        client.set("k", "v").unwrap();
        assert_eq!(client.get_string("k").unwrap().as_deref(), Some("v"));
    }
}

#[test]
fn the_same_certificate_from_a_file_is_accepted_too() {
    let dev = dev_certificate(false);
    let server = tls_server(&dev);
    let path = std::env::temp_dir().join(format!("dev-cert-{}.pem", std::process::id()));
    std::fs::write(&path, &dev.certificate).unwrap();
    let client = builder(&server, "localhost")
        .tls_ca_certificate_file(&path)
        .build()
        .unwrap();
    let outcome = client.ping();
    let _ = std::fs::remove_file(&path);
    outcome.unwrap();
}

#[test]
fn an_expired_self_signed_certificate_is_refused_as_expired() {
    let dev = dev_certificate(true);
    let server = tls_server(&dev);
    let client = builder(&server, "localhost")
        .tls_ca_certificate_pem(&dev.certificate)
        .build()
        .unwrap();
    assert_fails_fast(&client, TlsFailure::CertificateExpired);
}

#[test]
fn a_self_signed_certificate_for_another_name_is_a_hostname_mismatch() {
    let dev = dev_certificate(false);
    let server = tls_server(&dev);
    let client = builder(&server, "cache.example")
        .tls_ca_certificate_pem(&dev.certificate)
        .build()
        .unwrap();
    let message = assert_fails_fast(&client, TlsFailure::HostnameMismatch);
    assert!(message.contains("cache.example"), "{message}");
}

#[test]
fn an_untrusted_ca_certificate_as_server_certificate_has_its_own_kind_and_hint() {
    let dev = dev_certificate(false);
    let server = tls_server(&dev);
    let client = builder(&server, "localhost").build().unwrap();
    let message = assert_fails_fast(&client, TlsFailure::CaCertificateAsServerCertificate);
    assert!(message.contains("pin"), "{message}");
    assert!(message.contains("CA certificate option"), "{message}");
}

#[test]
fn a_pinned_certificate_is_accepted_without_any_ca() {
    let dev = dev_certificate(false);
    let server = tls_server(&dev);
    let client = builder(&server, "localhost")
        .tls_built_in_roots(false)
        .tls_pinned_certificate_pem(&dev.certificate)
        .build()
        .unwrap();
    client.set("pinned", "yes").unwrap();
    assert_eq!(client.get_string("pinned").unwrap().as_deref(), Some("yes"));
}

#[test]
fn a_pin_that_does_not_match_is_refused_fast() {
    let served = dev_certificate(false);
    let other = dev_certificate(false);
    let server = tls_server(&served);
    // Even a certificate trusted as a CA does not get past a pin.
    let client = builder(&server, "localhost")
        .tls_ca_certificate_pem(&served.certificate)
        .tls_pinned_certificate_pem(&other.certificate)
        .build()
        .unwrap();
    let message = assert_fails_fast(&client, TlsFailure::PinnedCertificateMismatch);
    assert!(message.contains("pinned"), "{message}");
}

#[test]
fn a_pinned_certificate_still_has_its_name_and_dates_checked() {
    let expired = dev_certificate(true);
    let server = tls_server(&expired);
    let client = builder(&server, "localhost")
        .tls_pinned_certificate_pem(&expired.certificate)
        .build()
        .unwrap();
    assert_fails_fast(&client, TlsFailure::CertificateExpired);

    let valid = dev_certificate(false);
    let server = tls_server(&valid);
    let client = builder(&server, "cache.example")
        .tls_pinned_certificate_pem(&valid.certificate)
        .build()
        .unwrap();
    assert_fails_fast(&client, TlsFailure::HostnameMismatch);
}

#[test]
fn a_pin_that_is_not_pem_is_reported_by_build() {
    let result = Client::builder("grpcs://localhost:1")
        .tls_pinned_certificate_pem("not a certificate")
        .build();
    assert!(
        matches!(
            result,
            Err(Error::Tls {
                kind: TlsFailure::InvalidConfiguration,
                ..
            })
        ),
        "{result:?}"
    );
    // Pinning on a plain-text address is a contradiction too.
    assert!(matches!(
        Client::builder("grpc://localhost:1")
            .tls_pinned_certificate_pem("x")
            .build(),
        Err(Error::Validation(_))
    ));
}
