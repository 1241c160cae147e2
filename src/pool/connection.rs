//! Establishing and driving one HTTP/2 connection.

use std::sync::Arc;

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::PoolConfig;
use crate::error::Error;

/// Streams the client lets the server open toward it: none, gRPC clients
/// never accept pushes; h2 needs a number, and this is also what it
/// advertises before the server's SETTINGS arrive.
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
    Lost { generation: u64 },
    /// A call found the connection unusable for new streams (GOAWAY
    /// received, or closed) before its own task noticed.
    Broken { generation: u64 },
}

/// Connects, proves the peer speaks HTTP/2, reports `Up`, then drives the
/// connection until it ends and reports `Lost`. Everything is bounded by
/// the connect timeout until `Up`.
pub(super) async fn run(config: Arc<PoolConfig>, generation: u64, events: UnboundedSender<Event>) {
    let connect_deadline = Instant::now() + config.connect_timeout;
    let established = tokio::time::timeout_at(connect_deadline, handshake(&config)).await;
    let (sender, mut connection) = match established {
        Ok(Ok(pair)) => pair,
        Ok(Err(error)) => {
            let _ = events.send(Event::Failed { generation, error });
            return;
        }
        Err(_) => {
            let _ = events.send(Event::Failed {
                generation,
                error: Error::Unavailable(format!(
                    "connecting to {} took longer than {:?}",
                    config.address, config.connect_timeout
                )),
            });
            return;
        }
    };

    // A TCP accept proves little (a proxy, a half-dead server, a non-HTTP/2
    // listener); a PING answer proves a live HTTP/2 peer.
    if let Some(mut ping_pong) = connection.ping_pong() {
        let pong = tokio::time::timeout_at(connect_deadline, ping_pong.ping(h2::Ping::opaque()));
        tokio::pin!(pong);
        let answered = tokio::select! {
            ended = &mut connection => Err(match ended {
                Ok(()) => "the server closed the connection during the handshake".to_owned(),
                Err(error) => describe(&error),
            }),
            pong = &mut pong => match pong {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(describe(&error)),
                Err(_) => Err(format!(
                    "{} did not answer the HTTP/2 handshake within {:?}",
                    config.address, config.connect_timeout
                )),
            },
        };
        if let Err(message) = answered {
            let _ = events.send(Event::Failed {
                generation,
                error: Error::Unavailable(format!("connecting to {}: {message}", config.address)),
            });
            return;
        }
    }

    if events.send(Event::Up { generation, sender }).is_err() {
        return;
    }
    // Calls on the lost connection see its error on their own streams; the
    // worker only needs to know it must connect again.
    let _ = connection.await;
    let _ = events.send(Event::Lost { generation });
}

async fn handshake(
    config: &PoolConfig,
) -> Result<(SendRequest<Bytes>, Connection<TcpStream, Bytes>), Error> {
    let tcp = connect_tcp(config).await?;
    h2::client::Builder::new()
        .initial_window_size(config.stream_window_bytes)
        .initial_connection_window_size(config.connection_window_bytes)
        .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .max_header_list_size(MAX_RESPONSE_HEADER_LIST_BYTES)
        .enable_push(false)
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(|error| {
            Error::Unavailable(format!(
                "HTTP/2 handshake with {} failed: {}",
                config.address,
                describe(&error)
            ))
        })
}

/// Resolves the host afresh on every attempt (so a moved server is found
/// again) and tries each address in turn.
async fn connect_tcp(config: &PoolConfig) -> Result<TcpStream, Error> {
    let target = (config.address.host(), config.address.port());
    let addresses = tokio::net::lookup_host(target).await.map_err(|error| {
        Error::Unavailable(format!("cannot resolve {}: {error}", config.address))
    })?;
    let mut last_error = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                // Without it Nagle's algorithm holds small frames back for
                // up to ~40 ms per call.
                stream.set_nodelay(true).map_err(|error| {
                    Error::Unavailable(format!("cannot set TCP_NODELAY: {error}"))
                })?;
                return Ok(stream);
            }
            Err(error) => last_error = Some(format!("{address}: {error}")),
        }
    }
    Err(Error::Unavailable(match last_error {
        Some(error) => format!("cannot connect to {}: {error}", config.address),
        None => format!("{} resolved to no address", config.address),
    }))
}

/// An h2 error in words a user can act on.
pub(super) fn describe(error: &h2::Error) -> String {
    if let Some(io) = error.get_io() {
        return io.to_string();
    }
    error.to_string()
}
