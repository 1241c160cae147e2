//! The accept loop both listeners share, and the stop signal they obey.

use std::future::Future;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long a failed accept (out of file descriptors and the like) pauses
/// the loop, so it does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What the server has been asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Running,
    /// GOAWAY, let calls in flight finish, then close.
    Graceful,
    /// Drop every connection now.
    Abrupt,
}

/// Accepts connections, each served by its own task, until the server is
/// told to stop; then closes the listener and hands back the tasks still
/// running, for the caller to drain or drop (which aborts them).
pub(super) async fn accept_until_stopped<F, Fut>(
    listener: TcpListener,
    stop: &mut watch::Receiver<Stop>,
    mut serve: F,
) -> JoinSet<()>
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    connections.spawn(serve(socket));
                }
                // Out of file descriptors and the like: pause instead of
                // spinning, then keep serving the connections we have.
                Err(_) => tokio::time::sleep(ACCEPT_RETRY_PAUSE).await,
            },
            // Reap finished connections so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections
}
