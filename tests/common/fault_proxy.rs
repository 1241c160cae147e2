//! A TCP proxy with faults switched at run time, after Toxiproxy: it sits
//! on 127.0.0.1 in front of one upstream address, forwards bytes both
//! ways, and the test thread turns faults on and off with [`FaultProxy::set`]
//! and [`FaultProxy::clear`] while connections are open.
//!
//! Each connection runs four threads: for each direction a reader that
//! stamps every chunk with its arrival time and queues it, and a writer
//! that looks at the fault in force when the chunk comes out of the queue
//! and decides what to do with it (drop it, hold it for a delay, pace it,
//! cut the connection after it). Splitting reader and writer is what makes
//! latency a delay line (every chunk late by the same amount, throughput
//! kept) rather than a pause per chunk that would add up. Because writers
//! ask for the fault per chunk, a new fault applies to existing connections
//! at once, and to new ones alike.
//!
//! Every blocking step (accept aside, which Drop wakes by connecting)
//! looks up at least every [`POLL`] to see whether its connection or the
//! proxy is closing, so Drop ends and joins every thread promptly.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};

/// How often a blocked step looks up to see whether it should stop: the
/// bound on how long closing a connection or dropping the proxy waits.
const POLL: Duration = Duration::from_millis(20);
/// The most a reader takes from a socket at once.
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks queued between a direction's reader and writer: plenty for a
/// delay line at test traffic, few enough that a paced or stuck writer
/// pushes back on the sender through TCP instead of buffering without end.
const QUEUE_CHUNKS: usize = 256;
/// How long connecting to the upstream may take: on loopback it succeeds
/// or is refused at once, so this only guards against a wedged host.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The window over which [`Fault::LatencyOverRate`] measures the request
/// rate: a second, so that a run kept on an even schedule is judged by its
/// rate and not by the bursts a busy machine makes of it.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// The HTTP/2 client connection preface, which comes before the first
/// frame (RFC 9113, 3.4).
const CLIENT_PREFACE_BYTES: usize = 24;
/// The length of an HTTP/2 frame header (RFC 9113, 4.1).
const FRAME_HEADER_BYTES: usize = 9;
/// The type of an HTTP/2 HEADERS frame: one opens each request.
const HEADERS_FRAME: u8 = 0x1;
/// How finely a bandwidth limit slices its writes: a hundredth of a second
/// of budget per write keeps the pace smooth without a write per byte.
const BANDWIDTH_SLICES_PER_SECOND: u64 = 100;

/// Which way bytes travel through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server (requests).
    Upstream,
    /// Server to client (responses).
    Downstream,
    /// Both ways.
    Both,
}

impl Direction {
    fn covers(self, way: Way) -> bool {
        matches!(
            (self, way),
            (Direction::Both, _)
                | (Direction::Upstream, Way::Up)
                | (Direction::Downstream, Way::Down)
        )
    }
}

/// A fault in force on every connection of a proxy, existing and new. One
/// at a time: [`FaultProxy::set`] replaces the previous one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Toxiproxy's `latency`: every chunk going `direction` is delivered
    /// `latency` ± `jitter` (uniform) after it arrived, in order.
    Latency {
        latency: Duration,
        jitter: Duration,
        direction: Direction,
    },
    /// Toxiproxy's `timeout` with a zero timeout: connections are accepted
    /// (new ones too) and read, but nothing is forwarded either way,
    /// closes included: to the client, the shape of a SIGSTOPped server.
    BlackHole,
    /// Requests reach the server, nothing comes back: the client's writes
    /// are forwarded, every byte (and close) from the server is dropped.
    HalfOpen,
    /// Toxiproxy's `reset_peer` after `limit_data`: once a connection has
    /// carried `after_bytes` bytes downstream (counted from when the fault
    /// was set, or from the start of a newer connection), it is reset: the
    /// client gets an RST, mid-response if one was under way.
    ResetPeer { after_bytes: u64 },
    /// Toxiproxy's `slow_close`: when either side closes, the other side
    /// is closed `delay` later.
    SlowClose { delay: Duration },
    /// Toxiproxy's `bandwidth`: each connection delivers at most
    /// `bytes_per_second` downstream.
    Bandwidth { bytes_per_second: u64 },
    /// Setting it closes every current connection (an RST to the client);
    /// while it is in force, with `refuse_new`, new connections are
    /// accepted and closed at once (like a process that accepts and
    /// crashes), else forwarded as usual.
    DropConnections { refuse_new: bool },
    /// A network partition: like [`Fault::BlackHole`], and with
    /// `drop_existing` the current connections are also reset when it is
    /// set (a middlebox that lost its state), so the client must connect
    /// again, into the black hole.
    Partition { drop_existing: bool },
    /// A server that takes a load up to a point: while more than
    /// `requests_per_second` requests (HTTP/2 HEADERS frames from clients,
    /// over every connection) arrived in the last second, every chunk
    /// going downstream is delivered `latency` after it arrived; at or
    /// below it, at once. A knee on demand for load tools.
    LatencyOverRate {
        requests_per_second: u64,
        latency: Duration,
    },
}

impl Fault {
    /// `latency` ± `jitter` on responses only.
    pub fn latency(latency: Duration, jitter: Duration) -> Fault {
        Fault::Latency {
            latency,
            jitter,
            direction: Direction::Downstream,
        }
    }

    /// Whether bytes going `way` are dropped under this fault.
    fn silences(self, way: Way) -> bool {
        match self {
            Fault::BlackHole | Fault::Partition { .. } => true,
            Fault::HalfOpen => way == Way::Down,
            _ => false,
        }
    }

    fn silences_anything(self) -> bool {
        self.silences(Way::Up) || self.silences(Way::Down)
    }
}

/// The two directions of one connection, as the pumps see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Up,
    Down,
}

/// The fault in force, with a generation that moves at every change so a
/// writer can restart its per-fault counters (bytes before a reset).
#[derive(Clone, Copy)]
struct Setting {
    fault: Option<Fault>,
    generation: u64,
}

struct Shared {
    upstream: SocketAddr,
    setting: Mutex<Setting>,
    stop: AtomicBool,
    connections: Mutex<Vec<Weak<Conn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicU64,
    /// When each request of the last [`RATE_WINDOW`] arrived, oldest first.
    requests: Mutex<std::collections::VecDeque<Instant>>,
    /// Requests seen since the proxy started.
    requests_total: AtomicU64,
}

impl Shared {
    fn setting(&self) -> Setting {
        *self.setting.lock().unwrap()
    }

    /// Counts `count` requests arriving at `at`.
    fn requests_arrived(&self, count: u64, at: Instant) {
        if count == 0 {
            return;
        }
        self.requests_total.fetch_add(count, Ordering::SeqCst);
        let mut requests = self.requests.lock().unwrap();
        for _ in 0..count {
            requests.push_back(at);
        }
        forget_before(&mut requests, at);
    }

    /// Requests that arrived in the last [`RATE_WINDOW`].
    fn request_rate(&self) -> u64 {
        let mut requests = self.requests.lock().unwrap();
        forget_before(&mut requests, Instant::now());
        requests.len() as u64
    }

    fn live(&self) -> Vec<Arc<Conn>> {
        let mut connections = self.connections.lock().unwrap();
        connections.retain(|weak| weak.upgrade().is_some_and(|conn| !conn.is_closed()));
        connections.iter().filter_map(Weak::upgrade).collect()
    }

    fn spawn(&self, name: &str, body: impl FnOnce() + Send + 'static) {
        let handle = thread::Builder::new()
            .name(format!("fault-proxy-{name}"))
            .spawn(body)
            .expect("spawn a proxy thread");
        let mut threads = self.threads.lock().unwrap();
        // Join what has ended as we go, so a long test does not pile up
        // handles of finished connections.
        let (done, running): (Vec<_>, Vec<_>) =
            threads.drain(..).partition(JoinHandle::is_finished);
        for finished in done {
            let _ = finished.join();
        }
        *threads = running;
        threads.push(handle);
    }
}

/// One proxied connection. The pumps share its two sockets through an
/// `Arc` (`&TcpStream` reads and writes), so each socket has one
/// descriptor and closes when the last pump lets go of the connection:
/// that single close is what carries an RST after [`Conn::reset`].
struct Conn {
    client: TcpStream,
    server: TcpStream,
    closed: AtomicBool,
    /// Bytes were dropped on it (black hole, partition, half-open): what
    /// is left of its byte streams is garbage to HTTP/2, so it is reset
    /// when the fault ends instead of carrying on with a hole in it.
    torn: AtomicBool,
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Ends the connection with a FIN to both ends, unless it already
    /// ended (a FIN after [`Conn::reset`] would reach the client first).
    fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    /// Ends the connection with an RST to the client (the server gets a
    /// FIN). SO_LINGER 0 makes the final close send an RST; shutting down
    /// the client socket's read side only wakes its reader (no FIN), and
    /// its writer stops at the flag, so nothing sends a FIN first.
    fn reset(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = set_zero_linger(&self.client);
        let _ = self.client.shutdown(Shutdown::Read);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

/// SO_LINGER 0 on `stream` through tokio's `TcpSocket` (std's `set_linger`
/// is unstable and socket2 is no direct dependency). The option belongs to
/// the socket, so setting it through a duplicate descriptor and closing
/// that duplicate leaves it on the original.
fn set_zero_linger(stream: &TcpStream) -> std::io::Result<()> {
    tokio::net::TcpSocket::from_std_stream(stream.try_clone()?).set_zero_linger()
}

/// What a reader hands its writer.
enum Event {
    Data(Bytes),
    /// The sender closed its side (or its socket failed).
    Closed,
}

/// A Toxiproxy-style proxy in front of one upstream on 127.0.0.1 (see the
/// module docs). Dropping it closes every connection and joins every
/// thread.
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on a free loopback port, forwarding cleanly to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            setting: Mutex::new(Setting {
                fault: None,
                generation: 0,
            }),
            stop: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            requests: Mutex::new(std::collections::VecDeque::new()),
            requests_total: AtomicU64::new(0),
        });
        let accepting = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn(move || accept_loop(&listener, &accepting))
            .expect("spawn the proxy's acceptor");
        FaultProxy {
            address,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// A proxy in front of `upstream` given as `host:port` text (what
    /// `Server::address` returns).
    pub fn to(upstream: &str) -> FaultProxy {
        FaultProxy::start(upstream.parse().expect("an upstream ip:port"))
    }

    /// The proxy's address as `127.0.0.1:port`, for `Client::new` or a
    /// cluster's server list.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Puts `fault` in force on every connection, existing and new,
    /// replacing the previous fault.
    pub fn set(&self, fault: Fault) {
        self.change(Some(fault));
        match fault {
            Fault::DropConnections { .. }
            | Fault::Partition {
                drop_existing: true,
            } => self.drop_connections(),
            _ => {}
        }
    }

    /// Back to clean forwarding. Connections that lost bytes to a black
    /// hole, partition or half-open are reset (see [`Conn::torn`]).
    pub fn clear(&self) {
        self.change(None);
    }

    /// Toxiproxy's name for [`clear`](Self::clear).
    pub fn reset(&self) {
        self.clear();
    }

    /// The fault in force.
    pub fn fault(&self) -> Option<Fault> {
        self.shared.setting().fault
    }

    /// Resets every current connection now (an RST to the client), without
    /// changing the fault.
    pub fn drop_connections(&self) {
        for conn in self.shared.live() {
            conn.reset();
        }
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.shared.live().len()
    }

    /// Requests (HTTP/2 HEADERS frames from clients) forwarded or not since
    /// the proxy started.
    pub fn requests(&self) -> u64 {
        self.shared.requests_total.load(Ordering::SeqCst)
    }

    /// Connections accepted since the proxy started, refused ones included.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    fn change(&self, fault: Option<Fault>) {
        {
            let mut setting = self.shared.setting.lock().unwrap();
            setting.fault = fault;
            setting.generation += 1;
        }
        // Torn connections cannot resume: their streams have holes. They
        // stay while another silencing fault keeps them quiet anyway.
        if !fault.is_some_and(Fault::silences_anything) {
            for conn in self.shared.live() {
                if conn.torn.load(Ordering::SeqCst) {
                    conn.reset();
                }
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // The acceptor blocks in accept(): one connection wakes it, and it
        // sees the flag before doing anything with it.
        let _ = TcpStream::connect_timeout(&self.address, UPSTREAM_CONNECT_TIMEOUT);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for conn in self.shared.live() {
            conn.close();
        }
        let threads: Vec<_> = self.shared.threads.lock().unwrap().drain(..).collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let client = match incoming {
            Ok(client) => client,
            Err(_) => {
                // Out of descriptors or an aborted handshake: try again
                // shortly rather than spin.
                thread::sleep(POLL);
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if let Some(Fault::DropConnections { refuse_new: true }) = shared.setting().fault {
            drop(client);
            continue;
        }
        // A dead upstream: close the client at once, as a proxy with
        // nothing behind it does.
        let Ok(server) = TcpStream::connect_timeout(&shared.upstream, UPSTREAM_CONNECT_TIMEOUT)
        else {
            continue;
        };
        start_connection(shared, client, server);
    }
}

fn start_connection(shared: &Arc<Shared>, client: TcpStream, server: TcpStream) {
    for socket in [&client, &server] {
        // Nagle would add tens of milliseconds to small HTTP/2 frames.
        let _ = socket.set_nodelay(true);
        let _ = socket.set_read_timeout(Some(POLL));
        let _ = socket.set_write_timeout(Some(POLL));
    }
    let conn = Arc::new(Conn {
        client,
        server,
        closed: AtomicBool::new(false),
        torn: AtomicBool::new(false),
    });
    shared
        .connections
        .lock()
        .unwrap()
        .push(Arc::downgrade(&conn));
    for way in [Way::Up, Way::Down] {
        let (queue, queued) = bounded(QUEUE_CHUNKS);
        let (reader_conn, reader_shared) = (Arc::clone(&conn), Arc::clone(shared));
        shared.spawn(&format!("{way:?}-read").to_lowercase(), move || {
            read_loop(&reader_conn, &reader_shared, way, &queue);
        });
        let (writer_conn, writer_shared) = (Arc::clone(&conn), Arc::clone(shared));
        shared.spawn(&format!("{way:?}-write").to_lowercase(), move || {
            write_loop(&writer_conn, &writer_shared, way, &queued);
        });
    }
}

fn stopping(conn: &Conn, shared: &Shared) -> bool {
    conn.is_closed() || shared.stop.load(Ordering::SeqCst)
}

/// Reads `way`'s source and queues what it reads, stamped; the fault is
/// the writer's business, so the source is always read (a black hole
/// reads and drops, it does not stop reading).
fn read_loop(conn: &Conn, shared: &Shared, way: Way, queue: &Sender<(Instant, Event)>) {
    let mut source = match way {
        Way::Up => &conn.client,
        Way::Down => &conn.server,
    };
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut frames = FrameCounter::default();
    loop {
        let event = match source.read(&mut buffer) {
            Ok(0) => Event::Closed,
            Ok(n) => {
                if way == Way::Up {
                    shared.requests_arrived(frames.headers_in(&buffer[..n]), Instant::now());
                }
                Event::Data(Bytes::copy_from_slice(&buffer[..n]))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stopping(conn, shared) {
                    return;
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A reset or other failure of the source ends its direction
            // like a close: the writer passes it on.
            Err(_) => Event::Closed,
        };
        let last = matches!(event, Event::Closed);
        let mut item = (Instant::now(), event);
        loop {
            match queue.send_timeout(item, POLL) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) => {
                    if stopping(conn, shared) {
                        return;
                    }
                    item = back;
                }
                Err(SendTimeoutError::Disconnected(_)) => return,
            }
        }
        if last || stopping(conn, shared) {
            return;
        }
    }
}

/// Delivers `way`'s queued chunks to its destination under the fault in
/// force when each comes out of the queue.
fn write_loop(conn: &Conn, shared: &Shared, way: Way, queued: &Receiver<(Instant, Event)>) {
    let destination = match way {
        Way::Up => &conn.server,
        Way::Down => &conn.client,
    };
    // Latency: the latest delivery time given so far. Jitter could give a
    // later chunk an earlier time; it waits for this one instead, so order
    // holds.
    let mut last_due = Instant::now();
    // Bandwidth: when the next byte may leave. Never in the past by more
    // than now, so idle time earns no burst.
    let mut next_send = Instant::now();
    // ResetPeer: bytes sent downstream since the fault was set.
    let mut generation = shared.setting().generation;
    let mut sent_under_fault: u64 = 0;
    loop {
        let (arrived, event) = match queued.recv_timeout(POLL) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => {
                if stopping(conn, shared) {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let setting = shared.setting();
        if setting.generation != generation {
            generation = setting.generation;
            sent_under_fault = 0;
        }
        let fault = setting.fault;
        if fault.is_some_and(|f| f.silences(way)) {
            conn.torn.store(true, Ordering::SeqCst);
            if matches!(event, Event::Closed) {
                // The close is swallowed too; this direction is over.
                return;
            }
            continue;
        }
        if let Some(Fault::Latency {
            latency,
            jitter,
            direction,
        }) = fault
        {
            if direction.covers(way) {
                let due = (arrived + jittered(latency, jitter)).max(last_due);
                last_due = due;
                if !pause_until(due, conn, shared) {
                    return;
                }
            }
        }
        let bytes = match event {
            Event::Data(bytes) => bytes,
            Event::Closed => {
                if let Some(Fault::SlowClose { delay }) = fault {
                    if !pause_until(Instant::now() + delay, conn, shared) {
                        return;
                    }
                }
                // Pass the half-close on; the other direction carries on
                // until its own side closes.
                let _ = destination.shutdown(Shutdown::Write);
                return;
            }
        };
        if let Some(Fault::LatencyOverRate {
            requests_per_second,
            latency,
        }) = fault
        {
            if way == Way::Down && shared.request_rate() > requests_per_second {
                let due = (arrived + latency).max(last_due);
                last_due = due;
                if !pause_until(due, conn, shared) {
                    return;
                }
            }
        }
        match fault {
            Some(Fault::ResetPeer { after_bytes }) if way == Way::Down => {
                let room = after_bytes.saturating_sub(sent_under_fault);
                if bytes.len() as u64 >= room {
                    let _ = write_all(destination, &bytes[..room as usize], conn, shared);
                    conn.reset();
                    return;
                }
                sent_under_fault += bytes.len() as u64;
                if !write_all(destination, &bytes, conn, shared) {
                    return conn.close();
                }
            }
            Some(Fault::Bandwidth { bytes_per_second }) if way == Way::Down => {
                let rate = bytes_per_second.max(1);
                let slice = (rate / BANDWIDTH_SLICES_PER_SECOND).max(1) as usize;
                for piece in bytes.chunks(slice) {
                    if !pause_until(next_send, conn, shared) {
                        return;
                    }
                    if !write_all(destination, piece, conn, shared) {
                        return conn.close();
                    }
                    next_send = next_send.max(Instant::now())
                        + Duration::from_secs_f64(piece.len() as f64 / rate as f64);
                }
            }
            _ => {
                if !write_all(destination, &bytes, conn, shared) {
                    return conn.close();
                }
            }
        }
    }
}

/// Drops the arrival times older than [`RATE_WINDOW`] before `now`.
fn forget_before(requests: &mut std::collections::VecDeque<Instant>, now: Instant) {
    while requests
        .front()
        .is_some_and(|&at| now.saturating_duration_since(at) > RATE_WINDOW)
    {
        requests.pop_front();
    }
}

/// Follows a client's HTTP/2 byte stream across chunks (preface, then
/// frame headers and the payloads they announce) to count the HEADERS
/// frames, one per request. TLS or anything not HTTP/2 counts nothing
/// meaningful, which only [`Fault::LatencyOverRate`] looks at.
#[derive(Debug, Default)]
struct FrameCounter {
    preface_seen: usize,
    header: [u8; FRAME_HEADER_BYTES],
    header_len: usize,
    payload_left: usize,
}

impl FrameCounter {
    /// The HEADERS frames that begin in `bytes`.
    fn headers_in(&mut self, mut bytes: &[u8]) -> u64 {
        let mut headers = 0;
        while !bytes.is_empty() {
            if self.preface_seen < CLIENT_PREFACE_BYTES {
                let n = (CLIENT_PREFACE_BYTES - self.preface_seen).min(bytes.len());
                self.preface_seen += n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let n = (FRAME_HEADER_BYTES - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER_BYTES {
                    let h = self.header;
                    self.payload_left =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    headers += u64::from(h[3] == HEADERS_FRAME);
                    self.header_len = 0;
                }
            }
        }
        headers
    }
}

/// `latency` ± up to `jitter`, uniform, never below zero.
fn jittered(latency: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return latency;
    }
    let spread = fastrand::u64(0..=2 * jitter.as_micros() as u64);
    (latency + Duration::from_micros(spread)).saturating_sub(jitter)
}

/// Sleeps until `deadline` in steps of at most [`POLL`]; false if the
/// connection or the proxy started closing meanwhile.
fn pause_until(deadline: Instant, conn: &Conn, shared: &Shared) -> bool {
    loop {
        if stopping(conn, shared) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(POLL));
    }
}

/// Writes all of `bytes`; false if the destination failed or the
/// connection started closing. A write blocks at most [`POLL`] at a time
/// (the socket's write timeout), so a peer that stopped reading cannot
/// hold this thread past a close.
fn write_all(mut destination: &TcpStream, mut bytes: &[u8], conn: &Conn, shared: &Shared) -> bool {
    while !bytes.is_empty() {
        if stopping(conn, shared) {
            return false;
        }
        match destination.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return false,
        }
    }
    true
}
