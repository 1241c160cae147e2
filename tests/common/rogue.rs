//! A misbehaving HTTP/2 server for fault tests, built on `h2::server`.
//!
//! Each test hands [`Rogue::start`] a function that picks a [`Step`] list
//! for every stream it accepts, from what the server [`Seen`] of it (which
//! connection, which attempt, which method). The server runs on a
//! current-thread tokio runtime in a background thread, records every
//! stream and connection it accepts so tests can count attempts, and stops
//! (dropping every connection) when the `Rogue` is dropped.
//!
//! [`JunkServer`] is the other kind of peer: a raw TCP listener that answers
//! with bytes that are not HTTP/2 at all.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use tokio::sync::{mpsc, oneshot, watch};

/// What the server knows of a stream when it picks its script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Index of the connection, in accept order (0 is the first).
    pub connection: usize,
    /// Index of the stream on its connection (0 is the first).
    pub stream: usize,
    /// Index of the stream among all streams the server accepted.
    pub attempt: usize,
    /// The request path, for example `/cache.CacheService/Get`.
    pub path: String,
    /// The request headers as they arrived (`grpc-timeout`, metadata).
    pub headers: HeaderMap,
}

impl Seen {
    /// The method name: the last segment of the path.
    pub fn method(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

/// One thing the server does on a stream, in script order.
#[derive(Debug, Clone)]
pub enum Step {
    /// Response HEADERS with this HTTP status and these headers.
    Head {
        status: u16,
        headers: Vec<(&'static str, String)>,
        end_stream: bool,
    },
    /// An informational (1xx) HEADERS block ahead of the response.
    Informational(u16),
    /// A DATA frame with these exact bytes (framing is up to the test).
    Data { bytes: Bytes, end_stream: bool },
    /// A trailer HEADERS frame (always ends the stream).
    Trailers(Vec<(&'static str, String)>),
    /// RST_STREAM with this code, before or after the response headers.
    Reset(Reason),
    /// Waits, still serving the connection's other streams.
    Sleep(Duration),
    /// Does nothing more on this stream, ever, and keeps it open.
    Stall,
    /// Waits until the test calls [`Rogue::release`] (at once if it has).
    AwaitRelease,
    /// Waits until the client resets the stream, then logs the event
    /// `"reset <attempt> <reason>"` (for example `"reset 0 CANCEL"`).
    AwaitReset,
    /// Hands a command to the stream's connection.
    Connection(Command),
}

/// Something a stream asks its whole connection to do.
#[derive(Debug, Clone, Copy)]
pub enum Command {
    /// Stops reading and writing the connection (logging `"freeze
    /// <connection>"`) until the client has written more bytes, which then
    /// stay unread in the socket (logging `"unread <connection>"`), or for
    /// ten seconds at most.
    FreezeUntilMoreArrives,
    /// h2's graceful shutdown: GOAWAY(2^31-1), a PING round trip, then
    /// GOAWAY(last processed stream); open streams may finish. Logs
    /// `"graceful-shutdown <connection>"` when the first GOAWAY is queued,
    /// and `"goaway-acknowledged <connection>"` once the client answered a
    /// PING sent after it: frames are read in order, so by then the client
    /// has read the GOAWAY.
    GracefulShutdown,
    /// GOAWAY(last processed stream, reason), then close the connection.
    AbruptShutdown(Reason),
    /// Closes the TCP connection without another frame.
    Drop,
}

/// The response HEADERS of a gRPC reply: 200, `application/grpc`.
pub fn grpc_head() -> Step {
    Step::Head {
        status: 200,
        headers: vec![("content-type", "application/grpc".into())],
        end_stream: false,
    }
}

/// A DATA frame holding one message: flag byte, big-endian length, body.
pub fn message(flag: u8, body: &[u8]) -> Step {
    Step::Data {
        bytes: frame(flag, body),
        end_stream: false,
    }
}

/// One length-prefixed message.
pub fn frame(flag: u8, body: &[u8]) -> Bytes {
    let length = u32::try_from(body.len()).expect("test message fits a prefix");
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(flag);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// Trailers with this `grpc-status` (as sent, so it may be malformed) and
/// any further headers.
pub fn status_trailers(status: &str, more: &[(&'static str, &str)]) -> Step {
    let mut headers = vec![("grpc-status", status.to_owned())];
    headers.extend(
        more.iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    Step::Trailers(headers)
}

/// A well-formed successful reply carrying `body` as its one message.
pub fn ok_reply(body: &[u8]) -> Vec<Step> {
    vec![grpc_head(), message(0, body), status_trailers("0", &[])]
}

/// A running rogue server. Dropping it stops it and closes its connections.
pub struct Rogue {
    address: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

type Script = dyn Fn(&Seen) -> Vec<Step> + Send + Sync;

struct State {
    script: Box<Script>,
    max_concurrent_streams: Option<u32>,
    seen: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
    events: Mutex<Vec<String>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    released: watch::Sender<bool>,
}

impl State {
    fn event(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
}

impl Rogue {
    /// Starts a server answering each stream with `script(&seen)`.
    pub fn start(script: impl Fn(&Seen) -> Vec<Step> + Send + Sync + 'static) -> Rogue {
        Rogue::launch(None, Box::new(script))
    }

    /// Like [`Rogue::start`], announcing SETTINGS_MAX_CONCURRENT_STREAMS.
    pub fn with_max_concurrent_streams(
        limit: u32,
        script: impl Fn(&Seen) -> Vec<Step> + Send + Sync + 'static,
    ) -> Rogue {
        Rogue::launch(Some(limit), Box::new(script))
    }

    fn launch(max_concurrent_streams: Option<u32>, script: Box<Script>) -> Rogue {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        let state = Arc::new(State {
            script,
            max_concurrent_streams,
            seen: Mutex::default(),
            connections: AtomicUsize::new(0),
            events: Mutex::default(),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            released: watch::channel(false).0,
        });
        let (stop, stopped) = oneshot::channel();
        let served = Arc::clone(&state);
        let thread = thread::Builder::new()
            .name("rogue-h2-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("rogue runtime");
                runtime.block_on(serve(listener, served, stopped));
                // Dropping the runtime drops every connection and stream.
            })
            .expect("rogue thread");
        Rogue {
            address,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `host:port` to give the client.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Every stream accepted so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// How many streams (call attempts) the server accepted.
    pub fn attempts(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// How many TCP connections the server accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Waits (at most `within`) until the server accepted `count` streams:
    /// the proof that that many calls reached it. Returns whether it did.
    pub fn wait_for_attempts(&self, count: usize, within: Duration) -> bool {
        let give_up = Instant::now() + within;
        while self.attempts() < count {
            if Instant::now() >= give_up {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Lets every stream waiting in [`Step::AwaitRelease`] go on, now and
    /// later.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    /// Every event logged so far, in order.
    pub fn events(&self) -> Vec<String> {
        self.state.events.lock().unwrap().clone()
    }

    /// The most streams that were being answered at the same moment.
    pub fn max_concurrent(&self) -> usize {
        self.state.max_active.load(Ordering::SeqCst)
    }

    /// Waits (at most `within`) until the server logged `event`, for
    /// example `"freeze 0"` or `"graceful-shutdown 0"` (with the connection
    /// index). Returns whether it did.
    pub fn wait_for_event(&self, event: &str, within: Duration) -> bool {
        let give_up = Instant::now() + within;
        loop {
            if self.state.events.lock().unwrap().iter().any(|e| e == event) {
                return true;
            }
            if Instant::now() >= give_up {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                if let Ok((tcp, _)) = accepted {
                    let _ = tcp.set_nodelay(true);
                    let index = state.connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(run_connection(tcp, index, Arc::clone(&state)));
                }
            }
        }
    }
}

/// The longest [`Command::FreezeUntilMoreArrives`] waits.
const FREEZE_LIMIT: Duration = Duration::from_secs(10);

async fn run_connection(tcp: tokio::net::TcpStream, index: usize, state: Arc<State>) {
    let mut builder = h2::server::Builder::new();
    if let Some(limit) = state.max_concurrent_streams {
        builder.max_concurrent_streams(limit);
    }
    // h2 owns the connection's I/O; a second handle lets a freeze peek at
    // what waits unread in the socket.
    let tcp = Arc::new(tcp);
    let io = SharedTcp(Arc::clone(&tcp));
    let Ok(mut connection) = builder.handshake::<_, Bytes>(io).await else {
        return;
    };
    let mut ping_pong = connection.ping_pong();
    let mut awaiting_goaway_ack = false;
    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    let mut streams = 0;
    loop {
        tokio::select! {
            // Commands first: a queued shutdown must happen before any more
            // frames are read.
            biased;
            pong = std::future::poll_fn(|cx| match ping_pong.as_mut() {
                Some(ping_pong) => ping_pong.poll_pong(cx),
                None => std::task::Poll::Pending,
            }), if awaiting_goaway_ack => {
                awaiting_goaway_ack = false;
                if pong.is_ok() {
                    state.event(format!("goaway-acknowledged {index}"));
                }
            }
            Some(command) = commands.recv() => match command {
                Command::FreezeUntilMoreArrives => {
                    state.event(format!("freeze {index}"));
                    let mut byte = [0u8; 1];
                    let peeked = tokio::time::timeout(FREEZE_LIMIT, tcp.peek(&mut byte)).await;
                    if matches!(peeked, Ok(Ok(1))) {
                        state.event(format!("unread {index}"));
                    }
                }
                Command::GracefulShutdown => {
                    connection.graceful_shutdown();
                    // Queued after the GOAWAY, so written after it.
                    if let Some(ping_pong) = ping_pong.as_mut() {
                        awaiting_goaway_ack = ping_pong.send_ping(h2::Ping::opaque()).is_ok();
                    }
                    state.event(format!("graceful-shutdown {index}"));
                }
                Command::AbruptShutdown(reason) => {
                    connection.abrupt_shutdown(reason);
                    state.event(format!("abrupt-shutdown {index}"));
                }
                Command::Drop => {
                    state.event(format!("drop {index}"));
                    return;
                }
            },
            next = connection.accept() => {
                let Some(Ok((request, respond))) = next else { return };
                let seen = {
                    let mut log = state.seen.lock().unwrap();
                    let seen = Seen {
                        connection: index,
                        stream: streams,
                        attempt: log.len(),
                        path: request.uri().path().to_owned(),
                        headers: request.headers().clone(),
                    };
                    log.push(seen.clone());
                    seen
                };
                streams += 1;
                let active = state.active.fetch_add(1, Ordering::SeqCst) + 1;
                state.max_active.fetch_max(active, Ordering::SeqCst);
                let steps = (state.script)(&seen);
                tokio::spawn(run_stream(
                    request,
                    respond,
                    seen,
                    steps,
                    commands_tx.clone(),
                    Arc::clone(&state),
                ));
            }
        }
    }
}

async fn run_stream(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    seen: Seen,
    steps: Vec<Step>,
    commands: mpsc::UnboundedSender<Command>,
    state: Arc<State>,
) {
    // Read the whole request first, as a real server does.
    let mut body = request.into_body();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let mut sending: Option<SendStream<Bytes>> = None;
    for step in steps {
        let sent = match step {
            Step::Head {
                status,
                headers,
                end_stream,
            } => {
                let mut response = Response::new(());
                *response.status_mut() = StatusCode::from_u16(status).expect("status");
                *response.headers_mut() = header_map(&headers);
                respond
                    .send_response(response, end_stream)
                    .map(|stream| sending = Some(stream))
            }
            Step::Informational(status) => {
                let mut response = Response::new(());
                *response.status_mut() = StatusCode::from_u16(status).expect("status");
                respond.send_informational(response)
            }
            Step::Data { bytes, end_stream } => match sending.as_mut() {
                Some(stream) => stream.send_data(bytes, end_stream),
                None => panic!("script error: DATA before HEADERS"),
            },
            Step::Trailers(headers) => match sending.as_mut() {
                Some(stream) => stream.send_trailers(header_map(&headers)),
                None => panic!("script error: trailers before HEADERS"),
            },
            Step::Reset(reason) => {
                match sending.as_mut() {
                    Some(stream) => stream.send_reset(reason),
                    None => respond.send_reset(reason),
                }
                Ok(())
            }
            Step::Sleep(pause) => {
                tokio::time::sleep(pause).await;
                Ok(())
            }
            Step::Stall => std::future::pending().await,
            Step::AwaitRelease => {
                let mut released = state.released.subscribe();
                let _ = released.wait_for(|released| *released).await;
                Ok(())
            }
            Step::AwaitReset => {
                let reset = match sending.as_mut() {
                    Some(stream) => std::future::poll_fn(|cx| stream.poll_reset(cx)).await,
                    None => std::future::poll_fn(|cx| respond.poll_reset(cx)).await,
                };
                if let Ok(reason) = reset {
                    state.event(format!("reset {} {reason:?}", seen.attempt));
                }
                Ok(())
            }
            Step::Connection(command) => {
                let _ = commands.send(command);
                Ok(())
            }
        };
        if sent.is_err() {
            // The client went away (reset, deadline): nothing more to do.
            break;
        }
    }
    state.active.fetch_sub(1, Ordering::SeqCst);
}

/// A TCP stream h2 can own while the connection task keeps a handle to it.
struct SharedTcp(Arc<tokio::net::TcpStream>);

impl tokio::io::AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl tokio::io::AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(data) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    // The socket closes when the connection task ends and drops both
    // handles.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn header_map(headers: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("script header value"),
        );
    }
    map
}

/// A TCP server that answers every connection with fixed bytes that are
/// not HTTP/2, then reads (and drops) what the client sends until it
/// hangs up.
pub struct JunkServer {
    address: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl JunkServer {
    /// Starts a server answering `junk` to every connection.
    pub fn start(junk: &'static [u8]) -> JunkServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (Arc::clone(&connections), Arc::clone(&stop));
        thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut socket, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        thread::spawn(move || {
                            let _ = socket.set_nonblocking(false);
                            let _ = socket.set_read_timeout(Some(Duration::from_secs(5)));
                            let _ = socket.write_all(junk);
                            let mut sink = [0u8; 4096];
                            while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        JunkServer {
            address,
            connections,
            stop,
        }
    }

    /// `host:port` to give the client.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// How many TCP connections the server accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for JunkServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
