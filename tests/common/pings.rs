//! A bare-bones HTTP/2 server, written frame by frame, that notes when each
//! PING arrives: h2 answers pings on its own and never shows them to a
//! server, so a test about ping spacing needs its own peer.
//!
//! It answers the preface with empty SETTINGS, acknowledges SETTINGS and
//! PINGs, and never answers a request (calls stay in flight, which is when
//! the client sends keepalive pings). On its first connection, once it has
//! seen `pings_before_goaway` PINGs, it sends what grpc servers send to a
//! client that pings too often, GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings")
//! with last stream id 0 (nothing processed), and closes its side.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The running server. Dropping it stops accepting; its connections end
/// when the client closes them.
pub struct PingCounter {
    address: SocketAddr,
    /// Arrival of every PING (not PING ACK), by connection in accept order.
    pings: Arc<Mutex<Vec<Vec<Instant>>>>,
    stop: Arc<AtomicBool>,
}

impl PingCounter {
    pub fn start(pings_before_goaway: usize) -> PingCounter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        let pings: Arc<Mutex<Vec<Vec<Instant>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopping) = (Arc::clone(&pings), Arc::clone(&stop));
        thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => {
                        let index = {
                            let mut log = log.lock().unwrap();
                            log.push(Vec::new());
                            log.len() - 1
                        };
                        let log = Arc::clone(&log);
                        let limit = (index == 0).then_some(pings_before_goaway);
                        thread::spawn(move || serve(socket, index, limit, log));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        PingCounter {
            address,
            pings,
            stop,
        }
    }

    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// When each PING of every connection arrived.
    pub fn pings(&self) -> Vec<Vec<Instant>> {
        self.pings.lock().unwrap().clone()
    }

    /// Waits (at most `within`) until connection `index` has sent `count`
    /// PINGs. Returns whether it did.
    pub fn wait_for_pings(&self, index: usize, count: usize, within: Duration) -> bool {
        let give_up = Instant::now() + within;
        loop {
            let seen = self.pings.lock().unwrap().get(index).map_or(0, Vec::len);
            if seen >= count {
                return true;
            }
            if Instant::now() >= give_up {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for PingCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("small frame");
    let mut out = length.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags, 0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

fn serve(
    mut socket: TcpStream,
    index: usize,
    goaway_after: Option<usize>,
    log: Arc<Mutex<Vec<Vec<Instant>>>>,
) {
    let _ = socket.set_nodelay(true);
    let mut preface = [0u8; PREFACE.len()];
    if socket.read_exact(&mut preface).is_err() || preface != PREFACE {
        return;
    }
    if socket.write_all(&frame(SETTINGS, 0, &[])).is_err() {
        return;
    }
    let mut header = [0u8; 9];
    while socket.read_exact(&mut header).is_ok() {
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (kind, flags) = (header[3], header[4]);
        let mut payload = vec![0u8; length];
        if socket.read_exact(&mut payload).is_err() {
            return;
        }
        let answer = match (kind, flags & ACK) {
            (SETTINGS, 0) => frame(SETTINGS, ACK, &[]),
            (PING, 0) => {
                let seen = {
                    let mut log = log.lock().unwrap();
                    log[index].push(Instant::now());
                    log[index].len()
                };
                let mut answer = frame(PING, ACK, &payload);
                if goaway_after == Some(seen) {
                    let mut goaway = 0u32.to_be_bytes().to_vec();
                    goaway.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
                    goaway.extend_from_slice(b"too_many_pings");
                    answer.extend(frame(GOAWAY, 0, &goaway));
                    let _ = socket.write_all(&answer);
                    // FIN, then read until the client hangs up: closing with
                    // unread bytes would send RST instead.
                    let _ = socket.shutdown(std::net::Shutdown::Write);
                    let _ = socket.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut sink = [0u8; 4096];
                    while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
                    return;
                }
                answer
            }
            // Requests, window updates, acks: read and left unanswered.
            _ => continue,
        };
        if socket.write_all(&answer).is_err() {
            return;
        }
    }
}
