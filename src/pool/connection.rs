//! Establishing and driving one HTTP/2 connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use h2::PingPong;
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::transport::{Probe, Transport};
use super::PoolConfig;
use crate::error::Error;

/// Streams this client may open before the server's first SETTINGS
/// arrive. No call is sent that early (the connection is up only once its
/// first PING is answered, after the SETTINGS), and from then on h2 follows
/// the server: its `MAX_CONCURRENT_STREAMS`, or no limit when it sets none.
const INITIAL_MAX_SEND_STREAMS: usize = 100;

/// Biggest response header block accepted: far above any real gRPC reply,
/// small enough that a hostile server cannot make us buffer megabytes.
const MAX_RESPONSE_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// What a connection task tells its worker.
pub(super) enum Event {
    /// The connection is established and the server answered a PING (so its
    /// SETTINGS, which must come first, have arrived): calls may use it.
    Up {
        generation: u64,
        sender: SendRequest<Bytes>,
    },
    /// Establishing the connection failed; calls see `error` until the
    /// next attempt.
    Failed { generation: u64, error: Error },
    /// An established connection ended.
    Lost { generation: u64, ending: Ending },
    /// A call found the connection unusable for new streams (GOAWAY
    /// received, or closed) before its own task noticed.
    Broken { generation: u64 },
    /// A call sent on the connection got no answer before its deadline.
    Stalled { generation: u64 },
}

/// What a connection task needs to watch its connection's health.
pub(super) struct Health {
    /// Calls in flight on this worker: keepalive pings go out only while
    /// there are some (an idle connection is checked by its next call).
    pub in_flight: Arc<AtomicUsize>,
    /// Time between pings while calls are in flight; `None` turns periodic
    /// pings off (probes still happen).
    pub interval: Option<Duration>,
    /// How long a periodic ping may go unanswered before the connection
    /// is dead.
    pub timeout: Duration,
    /// How long the ping after a timed-out call may go unanswered: short,
    /// since a call already waited out its deadline on this connection.
    pub probe_timeout: Duration,
    /// The least time between two probes, so that many calls timing out
    /// together cost one ping, not one each.
    pub min_gap: Duration,
    /// Signalled by the worker when a call timed out after it was sent:
    /// ping at once to learn whether the connection is still alive.
    pub probe: Arc<Notify>,
}

/// How an established connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Closed by either side, or failed with an error.
    Closed,
    /// The server sent GOAWAY ENHANCE_YOUR_CALM ("too_many_pings"): ping
    /// less often on the next connection.
    TooManyPings,
    /// A ping went unanswered: the peer or the path is gone (half-open TCP,
    /// a wedged server). The connection was dropped, failing its calls.
    Unresponsive,
}

/// Connects, proves the peer speaks HTTP/2, reports `Up`, then drives the
/// connection until it ends and reports `Lost`. Everything until `Up` is
/// bounded by `attempt_timeout` (the worker's choice: the connect timeout
/// for a first attempt, less for a reconnect).
pub(super) async fn run(
    config: Arc<PoolConfig>,
    generation: u64,
    attempt_timeout: Duration,
    events: UnboundedSender<Event>,
    health: Health,
) {
    let connect_deadline = Instant::now() + attempt_timeout;
    let established = tokio::time::timeout_at(connect_deadline, handshake(&config)).await;
    let (sender, mut connection, probe) = match established {
        Ok(Ok(established)) => established,
        Ok(Err(error)) => {
            let _ = events.send(Event::Failed { generation, error });
            return;
        }
        Err(_) => {
            let _ = events.send(Event::Failed {
                generation,
                error: Error::Unavailable(
                    format!(
                        "connecting to {} took longer than {attempt_timeout:?}",
                        config.address
                    )
                    .into(),
                ),
            });
            return;
        }
    };

    // A TCP accept proves little (a proxy, a half-dead server, a non-HTTP/2
    // listener); a PING answer proves a live HTTP/2 peer. h2 hands out the
    // ping handle once, so it is kept for keepalive afterwards.
    let Some(mut ping_pong) = connection.ping_pong() else {
        let _ = events.send(Event::Failed {
            generation,
            error: Error::Unavailable("HTTP/2 ping handle unavailable".into()),
        });
        return;
    };
    // Err((whether the server ended the connection, what happened)).
    let answered = {
        let pong = tokio::time::timeout_at(connect_deadline, ping_pong.ping(h2::Ping::opaque()));
        tokio::pin!(pong);
        tokio::select! {
            ended = &mut connection => Err((true, match ended {
                Ok(()) => "the server closed the connection during the handshake".to_owned(),
                Err(error) => describe(&error),
            })),
            pong = &mut pong => match pong {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err((true, describe(&error))),
                Err(_) => Err((false, format!(
                    "{} did not answer the HTTP/2 handshake within {attempt_timeout:?}",
                    config.address
                ))),
            },
        }
    };
    if let Err((closed, message)) = answered {
        // A TLS mismatch or a refused client certificate only shows once
        // HTTP/2 starts reading; the probe says which it was.
        let diagnosed = if closed {
            probe.diagnose_closed(&config.address)
        } else {
            probe.diagnose(&config.address)
        };
        let _ = events.send(Event::Failed {
            generation,
            error: diagnosed.unwrap_or_else(|| {
                Error::Unavailable(format!("connecting to {}: {message}", config.address).into())
            }),
        });
        return;
    }

    if events.send(Event::Up { generation, sender }).is_err() {
        return;
    }
    // Calls on the lost connection see its error on their own streams; the
    // worker only needs to know it must connect again, and how it ended.
    let ending = drive(connection, ping_pong, &health).await;
    let _ = events.send(Event::Lost { generation, ending });
}

/// Polls the connection until it ends, pinging it while calls are in
/// flight and whenever the worker asks for a probe.
async fn drive<T>(
    mut connection: Connection<T, Bytes>,
    mut ping_pong: PingPong,
    health: &Health,
) -> Ending
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut last_ping = Instant::now();
    // Not the last ping of any kind: the handshake's or a periodic one
    // just before a stall must not delay the stall's own probe.
    let mut last_probe: Option<Instant> = None;
    loop {
        let next_periodic = health.interval.map(|interval| last_ping + interval);
        let timeout = tokio::select! {
            ended = &mut connection => return ending_of(ended),
            () = sleep_until_some(next_periodic), if next_periodic.is_some() => {
                if health.in_flight.load(Ordering::Relaxed) == 0 {
                    last_ping = Instant::now();
                    continue;
                }
                health.timeout
            }
            () = health.probe.notified() => {
                if last_probe.is_some_and(|at| at.elapsed() < health.min_gap) {
                    continue;
                }
                last_probe = Some(Instant::now());
                health.probe_timeout
            }
        };
        last_ping = Instant::now();
        let pong = tokio::time::timeout(timeout, ping_pong.ping(h2::Ping::opaque()));
        tokio::pin!(pong);
        tokio::select! {
            ended = &mut connection => return ending_of(ended),
            answered = &mut pong => {
                if !matches!(answered, Ok(Ok(_))) {
                    // Dropping the connection fails every stream on it, so
                    // their calls end now (and idempotent ones are retried
                    // on a fresh connection) instead of at their deadlines.
                    return Ending::Unresponsive;
                }
            }
        }
    }
}

fn ending_of(ended: Result<(), h2::Error>) -> Ending {
    #[cfg(feature = "tracing")]
    match &ended {
        Err(error) if error.is_go_away() && error.is_remote() => tracing::info!(
            reason = ?error.reason(),
            "tiny-cache connection: the server sent GOAWAY"
        ),
        Err(error) => tracing::info!(%error, "tiny-cache connection: lost"),
        Ok(()) => tracing::debug!("tiny-cache connection: closed"),
    }
    match ended {
        Err(error)
            if error.is_go_away()
                && error.is_remote()
                && error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) =>
        {
            Ending::TooManyPings
        }
        _ => Ending::Closed,
    }
}

/// Sleeps until `at`, or forever when there is no `at`: a `select!` arm
/// for a timer that may be off.
pub(super) async fn sleep_until_some(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// TCP, then TLS when configured, then the HTTP/2 preface. The probe tells
/// what the transport saw, to explain a failure that shows up later.
async fn handshake(
    config: &PoolConfig,
) -> Result<(SendRequest<Bytes>, Connection<Transport, Bytes>, Probe), Error> {
    let tcp = connect_tcp(config).await?;
    let (transport, probe) = Transport::connect(tcp, config.tls.as_ref(), &config.address).await;
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(config.stream_window_bytes)
        .initial_connection_window_size(config.connection_window_bytes)
        .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .max_header_list_size(MAX_RESPONSE_HEADER_LIST_BYTES)
        .enable_push(false)
        .handshake::<_, Bytes>(transport?)
        .await
        .map_err(|error| {
            probe.diagnose(&config.address).unwrap_or_else(|| {
                Error::Unavailable(
                    format!(
                        "HTTP/2 handshake with {} failed: {}",
                        config.address,
                        describe(&error)
                    )
                    .into(),
                )
            })
        })?;
    Ok((sender, connection, probe))
}

/// Resolves the host afresh on every attempt (so a moved server is found
/// again) and tries each address in turn.
async fn connect_tcp(config: &PoolConfig) -> Result<TcpStream, Error> {
    let target = (config.address.host(), config.address.port());
    let addresses = tokio::net::lookup_host(target).await.map_err(|error| {
        Error::Unavailable(format!("cannot resolve {}: {error}", config.address).into())
    })?;
    let mut last_error = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                // Without it Nagle's algorithm holds small frames back for
                // up to ~40 ms per call.
                stream.set_nodelay(true).map_err(|error| {
                    Error::Unavailable(format!("cannot set TCP_NODELAY: {error}").into())
                })?;
                return Ok(stream);
            }
            Err(error) => last_error = Some(format!("{address}: {error}")),
        }
    }
    Err(Error::Unavailable(
        match last_error {
            Some(error) => format!("cannot connect to {}: {error}", config.address),
            None => format!("{} resolved to no address", config.address),
        }
        .into(),
    ))
}

/// An h2 error in words a user can act on.
pub(super) fn describe(error: &h2::Error) -> String {
    if let Some(io) = error.get_io() {
        return io.to_string();
    }
    error.to_string()
}
