//! README "Failure behaviour" rows that need a peer watching the wire: the
//! phase a deadline names, the RST_STREAM(CANCEL) it sends, `grpc-timeout`
//! as the server reads it, calls queued behind a stream limit, the connect
//! timeout, and GOAWAY `too_many_pings` slowing keepalive pings down.
//! Every peer here runs on loopback and records what it saw, so each test
//! waits on events and checks what went over the wire.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use tiny_cache_client::{Client, Error};

use common::net::SilentServer;
use common::pings::PingCounter;
use common::rogue::{grpc_head, ok_reply, Rogue, Seen, Step};

/// How late past its deadline a call may return: scheduling noise on two
/// busy shared cores, far below anything a user would call a hang.
const DEADLINE_SLACK: Duration = Duration::from_millis(750);

/// Deadline of calls that must not end by it: any failure of the test
/// itself shows long before this.
const LONG_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a test waits for an event it caused before it fails.
const EVENT_WAIT: Duration = Duration::from_secs(10);

fn client_of(address: &str, timeout: Duration) -> Client {
    Client::builder(address)
        .timeout(timeout)
        .max_retries(0)
        // One worker, one connection: streams and pings stay countable.
        .pool_size(1)
        .build()
        .expect("client")
}

fn timed<T>(call: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let outcome = call();
    (outcome, started.elapsed())
}

/// The caller's own verdict, when the worker's report (which names the
/// phase) is more than 10 ms late: a starved machine.
const CALLER_FALLBACK: &str = "(waiting for the reply)";

/// How many calls a phase test makes, at most, for one verdict of the
/// worker's: on a starved machine the caller's own timer may win a few.
const PHASE_ATTEMPTS: usize = 8;

/// Makes calls (each ending at its deadline with `DeadlineExceeded`, either
/// the worker's "deadline passed while <phase>" or the caller's fallback)
/// until the worker's verdict names `phase`. Returns how many calls it took.
#[track_caller]
fn assert_deadline_names_phase(client: &Client, timeout: Duration, phase: &str) -> usize {
    let named = format!("deadline passed while {phase}");
    for attempt in 1..=PHASE_ATTEMPTS {
        let (outcome, elapsed) = timed(|| client.get("k"));
        assert!(elapsed >= timeout, "gave up early, after {elapsed:?}");
        assert!(elapsed < timeout + DEADLINE_SLACK, "took {elapsed:?}");
        match outcome {
            Err(Error::DeadlineExceeded(message)) if message == named => return attempt,
            Err(Error::DeadlineExceeded(message)) => assert!(
                message.ends_with(CALLER_FALLBACK),
                "expected {named:?} (or the caller's fallback), got {message:?}"
            ),
            other => panic!("expected DeadlineExceeded, got {other:?}"),
        }
    }
    panic!("in {PHASE_ATTEMPTS} calls the worker never reported {named:?} in time");
}

// ----- a deadline names its phase and cancels the stream ---------------------

#[test]
fn deadline_while_connecting_names_the_connection_phase() {
    // TCP is accepted, the HTTP/2 handshake never answered, and the connect
    // timeout (20 s by default) is far away: the call's deadline ends it.
    let silent = SilentServer::start();
    let timeout = Duration::from_millis(600);
    let client = client_of(&silent.address().to_string(), timeout);
    assert_deadline_names_phase(&client, timeout, "waiting for a connection");
    assert!(silent.connections() >= 1);
}

#[test]
fn deadline_while_waiting_for_the_response_names_that_phase_and_cancels_the_stream() {
    let rogue = Rogue::start(|_| vec![Step::AwaitReset]);
    let timeout = Duration::from_millis(600);
    let client = client_of(&rogue.address(), timeout);
    let calls = assert_deadline_names_phase(&client, timeout, "waiting for the response");
    // The server stops working for nobody: the client reset the stream
    // with CANCEL when the deadline passed.
    assert!(
        rogue.wait_for_event("reset 0 CANCEL", EVENT_WAIT),
        "no RST_STREAM(CANCEL) arrived: {:?}",
        rogue.events()
    );
    assert_eq!(rogue.attempts(), calls, "one stream per call, none retried");
}

#[test]
fn deadline_while_reading_the_response_names_that_phase_and_cancels_the_stream() {
    let rogue = Rogue::start(|_| vec![grpc_head(), Step::AwaitReset]);
    let timeout = Duration::from_millis(600);
    let client = client_of(&rogue.address(), timeout);
    assert_deadline_names_phase(&client, timeout, "reading the response");
    assert!(
        rogue.wait_for_event("reset 0 CANCEL", EVENT_WAIT),
        "no RST_STREAM(CANCEL) arrived: {:?}",
        rogue.events()
    );
}

// ----- grpc-timeout on the wire ----------------------------------------------

/// Parses a `grpc-timeout` value as the gRPC spec writes it: up to eight
/// digits and a unit letter.
fn grpc_timeout(seen: &Seen) -> Duration {
    let value = seen
        .headers
        .get("grpc-timeout")
        .unwrap_or_else(|| panic!("attempt {} carried no grpc-timeout", seen.attempt))
        .to_str()
        .expect("ASCII");
    let (digits, unit) = value.split_at(value.len() - 1);
    assert!(
        (1..=8).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()),
        "malformed grpc-timeout {value:?}"
    );
    let amount: u64 = digits.parse().expect("digits");
    match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        other => panic!("unknown grpc-timeout unit {other:?} in {value:?}"),
    }
}

#[test]
fn grpc_timeout_on_the_wire_is_the_time_left_and_shrinks_across_retries() {
    // The first attempt is answered UNAVAILABLE (retryable), the second OK.
    let rogue = Rogue::start(|seen| {
        if seen.attempt == 0 {
            vec![Step::Head {
                status: 200,
                headers: vec![
                    ("content-type", "application/grpc".into()),
                    ("grpc-status", "14".into()),
                ],
                end_stream: true,
            }]
        } else {
            ok_reply(&[])
        }
    });
    let timeout = Duration::from_millis(3000);
    let client = Client::builder(&rogue.address())
        .timeout(timeout)
        .max_retries(1)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(20))
        .pool_size(1)
        .build()
        .unwrap();
    assert_eq!(client.get("k"), Ok(None));
    let seen = rogue.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (first, second) = (grpc_timeout(&seen[0]), grpc_timeout(&seen[1]));
    // Never more than the caller gives, and not much less: it is the time
    // left when the request was sent.
    assert!(first <= timeout, "first attempt sent {first:?}");
    assert!(
        first > timeout - DEADLINE_SLACK,
        "first attempt sent only {first:?}"
    );
    // One deadline spans every attempt: the retry carries what is left.
    assert!(second < first, "the retry sent {second:?} after {first:?}");
    assert!(second > Duration::ZERO);
}

// ----- the server's concurrent-stream limit ----------------------------------

#[test]
fn a_call_queued_behind_the_stream_limit_ends_at_its_own_deadline() {
    // Limit one stream; the first call holds it and never gets an answer.
    let rogue = Rogue::with_max_concurrent_streams(1, |_| vec![Step::Stall]);
    let client = client_of(&rogue.address(), LONG_TIMEOUT);
    let holder = {
        let client = client.clone();
        thread::spawn(move || client.get("held"))
    };
    assert!(
        rogue.wait_for_attempts(1, EVENT_WAIT),
        "the first call never arrived"
    );

    let timeout = Duration::from_millis(600);
    let queued = client.with_timeout(timeout).unwrap();
    let (outcome, elapsed) = timed(|| queued.get("queued"));
    assert!(
        matches!(outcome, Err(Error::DeadlineExceeded(_))),
        "got {outcome:?}"
    );
    // Its own deadline, not the holder's (30 s) and not an early error for
    // lack of a stream.
    assert!(elapsed >= timeout, "gave up early, after {elapsed:?}");
    assert!(elapsed < timeout + DEADLINE_SLACK, "took {elapsed:?}");
    assert!(
        !holder.is_finished(),
        "the first call must still hold its stream"
    );
    assert_eq!(
        rogue.attempts(),
        1,
        "the queued call never reached the server"
    );
    assert_eq!(rogue.max_concurrent(), 1);

    client.close();
    assert_eq!(holder.join().unwrap(), Err(Error::Closed));
}

// ----- the connect timeout ---------------------------------------------------

#[test]
fn connect_timeout_bounds_an_attempt_whose_handshake_is_never_answered() {
    let silent = SilentServer::start();
    let connect_timeout = Duration::from_millis(400);
    let address = silent.address().to_string();
    // The worker starts connecting when the client is built.
    let started = Instant::now();
    let client = Client::builder(&address)
        .timeout(LONG_TIMEOUT)
        .connect_timeout(connect_timeout)
        .max_retries(0)
        .pool_size(1)
        .build()
        .unwrap();
    let outcome = client.get("k");
    let elapsed = started.elapsed();
    match outcome {
        Err(Error::Unavailable(message)) => {
            assert!(message.contains(&address), "{message}");
            assert!(
                message.contains(&format!(
                    "did not answer the HTTP/2 handshake within {connect_timeout:?}"
                )),
                "{message}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        elapsed >= connect_timeout,
        "gave up early, after {elapsed:?}"
    );
    assert!(
        elapsed < connect_timeout + DEADLINE_SLACK,
        "took {elapsed:?} with a connect timeout of {connect_timeout:?}"
    );
    assert_eq!(silent.connections(), 1);
}

// ----- GOAWAY too_many_pings -----------------------------------------------

fn median_gap(pings: &[Instant]) -> Duration {
    let mut gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    gaps[gaps.len() / 2]
}

#[test]
fn goaway_too_many_pings_doubles_the_keepalive_interval_for_the_next_connection() {
    const INTERVAL: Duration = Duration::from_millis(250);
    // The handshake's PING, then four keepalive pings, then the GOAWAY.
    const PINGS_PER_CONNECTION: usize = 5;
    let peer = PingCounter::start(PINGS_PER_CONNECTION);
    let client = Client::builder(&peer.address())
        .timeout(LONG_TIMEOUT)
        .max_retries(0)
        .pool_size(1)
        .keepalive(Some(INTERVAL), Duration::from_secs(5))
        .build()
        .unwrap();
    // Keepalive pings go out only while a call is in flight: this one never
    // gets an answer. GOAWAY with last stream id 0 says it was never
    // processed, so it moves to the next connection by itself.
    let in_flight = {
        let client = client.clone();
        thread::spawn(move || client.get("k"))
    };
    assert!(
        peer.wait_for_pings(1, PINGS_PER_CONNECTION, Duration::from_secs(20)),
        "the second connection did not ping: {:?}",
        peer.pings()
    );
    client.close();
    assert_eq!(in_flight.join().unwrap(), Err(Error::Closed));

    let pings = peer.pings();
    // Skip each connection's handshake PING: keepalive spacing starts after.
    let before = median_gap(&pings[0][1..PINGS_PER_CONNECTION]);
    let after = median_gap(&pings[1][1..PINGS_PER_CONNECTION]);
    assert!(
        before >= INTERVAL * 4 / 5 && before < INTERVAL * 3 / 2,
        "first connection pinged every {before:?}, configured {INTERVAL:?}"
    );
    assert!(
        after >= INTERVAL * 7 / 4 && after < INTERVAL * 3,
        "after too_many_pings the pings came every {after:?}, expected about {:?}",
        INTERVAL * 2
    );
}
