//! The byte stream under one HTTP/2 connection: plain TCP or TLS over TCP,
//! watched closely enough to say why a connection attempt failed.
//!
//! h2 keeps only the kind and text of an I/O error, so by the time a failed
//! handshake reaches us the rustls error inside it is gone, and a
//! plain-text client facing a TLS server sees nothing better than a bad
//! frame size. The transport therefore remembers, in a [`Probe`] the
//! connection task keeps, the first bytes the server sent and the first
//! rustls error, and [`Probe::diagnose`] turns them into a [`TlsFailure`].

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::error::{Error, TlsFailure};
use crate::tls::{self, ClientTls, ALPN_H2};

/// Bytes kept of what the server sends first: a TLS record header is 5.
const SNIFF_BYTES: usize = 5;

/// TLS record content types a server can open with (alert, handshake); a
/// record header then carries major version 3.
const TLS_ALERT: u8 = 0x15;
const TLS_HANDSHAKE: u8 = 0x16;
const TLS_MAJOR_VERSION: u8 = 0x03;

/// What the connection saw, shared by the transport and its [`Probe`].
#[derive(Default)]
pub(super) struct Seen {
    /// The first bytes received from the server, raw (under TLS).
    first_bytes: Vec<u8>,
    /// The server closed the connection before sending anything.
    closed_silently: bool,
    /// The first rustls error the TLS layer reported.
    tls_error: Option<rustls::Error>,
    /// The TLS handshake completed (and ALPN chose h2).
    tls_established: bool,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(seen: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The connection task's view of what its transport saw.
#[derive(Clone)]
pub(super) struct Probe {
    seen: Shared,
    tls: Option<(ServerName<'static>, bool)>,
}

impl Probe {
    /// The error that explains a failed connection attempt, if what the
    /// transport saw explains it: a typed TLS error, or an `Unavailable`
    /// with a hint when the evidence is not conclusive.
    pub(super) fn diagnose(&self, address: &impl std::fmt::Display) -> Option<Error> {
        let seen = lock(&self.seen);
        let (kind, message) = match &self.tls {
            Some((server_name, has_identity)) => {
                if let Some(&first) = seen.first_bytes.first() {
                    if !(0x14..=0x17).contains(&first) {
                        return Some(tls_error(
                            TlsFailure::ServerNotTls,
                            format!(
                                "{address} answered the TLS hello with bytes that are not TLS \
                                 ({}): it looks like a plain-text server, use grpc://",
                                hex(&seen.first_bytes)
                            ),
                        ));
                    }
                }
                if let Some(error) = &seen.tls_error {
                    let (kind, message) = tls::classify(error, server_name, *has_identity);
                    (kind, format!("{address}: {message}"))
                } else if seen.closed_silently {
                    // A plain-text server would usually have sent its own
                    // SETTINGS first; silence may as well be a proxy whose
                    // backend is down, so this stays a retryable failure.
                    return Some(Error::Unavailable(
                        format!(
                            "{address} closed the connection without answering the TLS hello \
                         (if it is a plain-text server, use grpc://)"
                        )
                        .into(),
                    ));
                } else {
                    return None;
                }
            }
            None => {
                let first = &seen.first_bytes;
                if seen.closed_silently {
                    return Some(hung_up_on_plain_text(address));
                }
                let looks_like_tls = first.len() >= 2
                    && (first[0] == TLS_ALERT || first[0] == TLS_HANDSHAKE)
                    && first[1] == TLS_MAJOR_VERSION;
                if !looks_like_tls {
                    return None;
                }
                (
                    TlsFailure::ServerRequiresTls,
                    format!(
                        "{address} answered with TLS ({}): the server requires TLS, \
                         connect with grpcs://",
                        hex(first)
                    ),
                )
            }
        };
        Some(tls_error(kind, message))
    }

    /// [`diagnose`](Self::diagnose) for a connection the server closed
    /// before answering HTTP/2. Closing right after a completed TLS
    /// handshake, without an alert, is how some servers that require
    /// mutual TLS turn away a client without an acceptable certificate
    /// (TLS 1.3 lets them judge it only after the client thinks the
    /// handshake is done). An overloaded server can do the same, so this
    /// stays a retryable `Unavailable`, with the hint.
    pub(super) fn diagnose_closed(&self, address: &impl std::fmt::Display) -> Option<Error> {
        if let Some(error) = self.diagnose(address) {
            return Some(error);
        }
        let Some((_, has_identity)) = self.tls.as_ref() else {
            // Closed (a reset, a broken pipe on our preface) before a byte
            // came back.
            let silent = lock(&self.seen).first_bytes.is_empty();
            return silent.then(|| hung_up_on_plain_text(address));
        };
        if !lock(&self.seen).tls_established {
            return None;
        }
        let hint = if *has_identity {
            "a server that requires mutual TLS does this when it does not trust the client \
             certificate: check that its client CA issued the one configured"
        } else {
            "a server that requires mutual TLS does this when the client presents no \
             certificate: configure one with tls_client_identity_pem or \
             tls_client_identity_files"
        };
        Some(Error::Unavailable(
            format!(
                "{address} closed the connection right after the TLS handshake, before \
                 answering HTTP/2; {hint}"
            )
            .into(),
        ))
    }

    /// Records a rustls error found inside an I/O error; later errors are
    /// consequences of the first.
    fn record(&self, error: &io::Error) {
        record_tls_error(&self.seen, error);
    }
}

fn record_tls_error(seen: &Shared, error: &io::Error) {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    if let Some(rustls_error) = rustls_error {
        lock(seen)
            .tls_error
            .get_or_insert_with(|| rustls_error.clone());
    }
}

/// A plain-text client hung up on before the server said a word: what a
/// TLS-only server may do with a plain-text preface. A proxy whose backend
/// is down does the same, so this stays retryable, with the hint.
fn hung_up_on_plain_text(address: &impl std::fmt::Display) -> Error {
    Error::Unavailable(
        format!(
            "{address} closed the connection without a byte during the HTTP/2 handshake \
             (if the server requires TLS, connect with grpcs://)"
        )
        .into(),
    )
}

fn tls_error(kind: TlsFailure, message: String) -> Error {
    Error::Tls { kind, message }
}

fn hex(bytes: &[u8]) -> String {
    let digits: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("first bytes {}", digits.join(" "))
}

/// A TCP stream that remembers the first bytes it reads.
pub(super) struct Sniffer {
    tcp: TcpStream,
    seen: Shared,
    /// Set once the first bytes are recorded: from then on reads cost
    /// nothing extra.
    done: bool,
}

impl AsyncRead for Sniffer {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if !this.done {
            if let Poll::Ready(Ok(())) = polled {
                let fresh = &buf.filled()[before..];
                let mut seen = lock(&this.seen);
                if fresh.is_empty() {
                    seen.closed_silently = seen.first_bytes.is_empty();
                    this.done = true;
                } else {
                    let room = SNIFF_BYTES - seen.first_bytes.len();
                    seen.first_bytes
                        .extend_from_slice(&fresh[..fresh.len().min(room)]);
                    this.done = seen.first_bytes.len() == SNIFF_BYTES;
                }
            }
        }
        polled
    }
}

impl AsyncWrite for Sniffer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The stream h2 runs on.
pub(super) enum Transport {
    /// Plain HTTP/2 (h2c with prior knowledge).
    Plain(Sniffer),
    /// HTTP/2 over TLS, ALPN h2 agreed.
    Tls {
        stream: Box<TlsStream<Sniffer>>,
        seen: Shared,
    },
}

impl Transport {
    /// Wraps a connected socket; for TLS, runs the handshake and checks
    /// that the server agreed to HTTP/2.
    ///
    /// The probe comes back even on failure, because what the transport saw
    /// is the best explanation of the failure.
    pub(super) async fn connect(
        tcp: TcpStream,
        tls: Option<&ClientTls>,
        address: &impl std::fmt::Display,
    ) -> (Result<Transport, Error>, Probe) {
        let seen = Shared::default();
        let probe = Probe {
            seen: Arc::clone(&seen),
            tls: tls.map(|tls| (tls.server_name.clone(), tls.has_identity)),
        };
        let sniffer = Sniffer {
            tcp,
            seen: Arc::clone(&seen),
            done: false,
        };
        let Some(tls) = tls else {
            return (Ok(Transport::Plain(sniffer)), probe);
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
        let stream = match connector.connect(tls.server_name.clone(), sniffer).await {
            Ok(stream) => stream,
            Err(error) => {
                probe.record(&error);
                let failure = probe.diagnose(address).unwrap_or_else(|| {
                    Error::Unavailable(
                        format!("TLS handshake with {address} failed: {error}").into(),
                    )
                });
                return (Err(failure), probe);
            }
        };
        let alpn = stream.get_ref().1.alpn_protocol();
        lock(&seen).tls_established = alpn == Some(ALPN_H2);
        if alpn != Some(ALPN_H2) {
            let chosen = match alpn {
                Some(protocol) => format!("it chose {:?}", String::from_utf8_lossy(protocol)),
                None => "it chose no protocol".to_owned(),
            };
            let failure = tls_error(
                TlsFailure::NoAlpnH2,
                format!(
                    "{address} did not agree to HTTP/2 by ALPN ({chosen}); gRPC over TLS needs h2"
                ),
            );
            return (Err(failure), probe);
        }
        let transport = Transport::Tls {
            stream: Box::new(stream),
            seen,
        };
        (Ok(transport), probe)
    }
}

/// Passes a TLS-layer error through after noting any rustls error in it.
fn noted<T>(seen: &Shared, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
    if let Poll::Ready(Err(error)) = &polled {
        record_tls_error(seen, error);
    }
    polled
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(plain) => Pin::new(plain).poll_read(cx, buf),
            Transport::Tls { stream, seen } => {
                noted(seen, Pin::new(stream.as_mut()).poll_read(cx, buf))
            }
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(plain) => Pin::new(plain).poll_write(cx, buf),
            Transport::Tls { stream, seen } => {
                noted(seen, Pin::new(stream.as_mut()).poll_write(cx, buf))
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(plain) => Pin::new(plain).poll_write_vectored(cx, bufs),
            Transport::Tls { stream, seen } => noted(
                seen,
                Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
            ),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(plain) => plain.is_write_vectored(),
            Transport::Tls { stream, .. } => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(plain) => Pin::new(plain).poll_flush(cx),
            Transport::Tls { stream, seen } => {
                noted(seen, Pin::new(stream.as_mut()).poll_flush(cx))
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(plain) => Pin::new(plain).poll_shutdown(cx),
            Transport::Tls { stream, seen } => {
                noted(seen, Pin::new(stream.as_mut()).poll_shutdown(cx))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(tls: bool, first_bytes: &[u8], closed_silently: bool) -> Probe {
        let seen = Seen {
            first_bytes: first_bytes.to_vec(),
            closed_silently,
            tls_error: None,
            tls_established: false,
        };
        Probe {
            seen: Arc::new(Mutex::new(seen)),
            tls: tls.then(|| (ServerName::try_from("localhost").unwrap(), false)),
        }
    }

    fn kind(error: Option<Error>) -> Option<TlsFailure> {
        match error {
            Some(Error::Tls { kind, .. }) => Some(kind),
            Some(other) => panic!("not a TLS error: {other:?}"),
            None => None,
        }
    }

    #[test]
    fn a_tls_record_to_a_plain_client_means_the_server_requires_tls() {
        let alert = probe(false, &[0x15, 0x03, 0x03, 0x00, 0x02], false);
        assert_eq!(
            kind(alert.diagnose(&"x:1")),
            Some(TlsFailure::ServerRequiresTls)
        );
        // An HTTP/2 SETTINGS frame is what a plain server sends first.
        let settings = probe(false, &[0x00, 0x00, 0x12, 0x04, 0x00], false);
        assert_eq!(kind(settings.diagnose(&"x:1")), None);
    }

    #[test]
    fn plain_bytes_to_a_tls_client_mean_the_server_is_not_tls() {
        let frame = probe(true, &[0x00, 0x00, 0x08, 0x07, 0x00], false);
        assert_eq!(kind(frame.diagnose(&"x:1")), Some(TlsFailure::ServerNotTls));
        // Silence proves nothing (a proxy with its backend down does the
        // same): retryable, with a hint.
        let silence = probe(true, &[], true);
        assert!(matches!(
            silence.diagnose(&"x:1"),
            Some(Error::Unavailable(ref m)) if m.contains("grpc://")
        ));
        let handshake = probe(true, &[0x16, 0x03, 0x03, 0x00, 0x7a], false);
        assert_eq!(kind(handshake.diagnose(&"x:1")), None);
    }

    #[test]
    fn a_plain_client_hung_up_on_without_a_byte_is_told_about_grpcs() {
        let silence = probe(false, &[], true);
        assert!(matches!(
            silence.diagnose(&"x:1"),
            Some(Error::Unavailable(ref m)) if m.contains("grpcs://")
        ));
    }

    #[test]
    fn a_close_right_after_the_tls_handshake_suggests_a_client_certificate() {
        let established = probe(true, &[0x16, 0x03, 0x03, 0x00, 0x7a], false);
        // Not before the handshake completed: no evidence then.
        assert!(established.diagnose_closed(&"x:1").is_none());
        lock(&established.seen).tls_established = true;
        assert!(matches!(
            established.diagnose_closed(&"x:1"),
            Some(Error::Unavailable(ref m)) if m.contains("tls_client_identity_pem")
        ));
        // A plain connection has no TLS handshake to speak of.
        assert!(probe(false, &[0x00, 0x00, 0x12, 0x04, 0x00], false)
            .diagnose_closed(&"x:1")
            .is_none());
    }
}
