//! Plain TCP peers: a port nothing answers on, and a server that accepts
//! connections but never writes a byte.

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A loopback port that refuses connections for as long as this value
/// lives: a socket bound to it and never listening holds the number, so no
/// other test (nor the kernel's choice of ephemeral ports) can take it
/// meanwhile, as could happen to a number released after binding.
pub struct ClosedPort {
    address: SocketAddr,
    _held: tokio::net::TcpSocket,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let address = socket.local_addr().expect("address");
        ClosedPort {
            address,
            _held: socket,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Frees the number for a server that starts on it now: the one moment
    /// it is unheld is the few microseconds before that server binds it.
    pub fn release(self) -> SocketAddr {
        self.address
    }
}

/// A TCP server that accepts connections and reads them but never writes a
/// byte: the shape of a wedged process or a black-holing proxy.
pub struct SilentServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (stop_flag, count, sockets) =
            (Arc::clone(&stop), Arc::clone(&accepted), Arc::clone(&held));
        thread::spawn(move || {
            while !stop_flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => {
                        let _ = socket.set_nonblocking(false);
                        let mut reader = socket.try_clone().expect("clone");
                        sockets.lock().unwrap().push(socket);
                        count.fetch_add(1, Ordering::SeqCst);
                        // Drain what the client sends so its writes never
                        // block; answer nothing.
                        thread::spawn(move || {
                            let mut sink = [0u8; 4096];
                            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SilentServer {
            address,
            stop,
            accepted,
            held,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// How many TCP connections it accepted.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for socket in self.held.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// A TCP relay to `upstream` that counts the connections it accepted: each
/// one is a connection attempt (and, for TLS, a handshake) by the client.
pub struct CountingRelay {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl CountingRelay {
    pub fn start(upstream: SocketAddr) -> CountingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        // Detached: the listener lives until the test process ends.
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        CountingRelay { address, accepted }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// How many connections the client opened through the relay.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}
