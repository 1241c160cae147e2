//! Peers that break the gRPC or HTTP/2 protocol, over real loopback
//! sockets: a rogue `h2` server scripted per stream (and a raw TCP server
//! speaking junk). Every scenario ends in one exact, typed `Error` (or a
//! transparent success), inside the call's deadline, without a panic or a
//! hang; attempts are counted on the server to prove what was retried.

#![cfg(feature = "unstable-internals")]

mod common;

use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::Reason;
use prost::Message;
use tiny_cache_client::proto::cache::{
    CacheValue, ConditionalCacheResponse, ConditionalCacheStatus,
};
use tiny_cache_client::{CasOutcome, Client, Code, Error};

use common::rogue::{
    frame, grpc_head, message, ok_reply, status_trailers, Command, JunkServer, Rogue, Seen, Step,
};

/// Deadline of most calls here: far above any answer a scenario expects,
/// even on two busy shared cores.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What "quickly" means for a failure decided without waiting: generous
/// for a loaded machine, yet far under `TIMEOUT`, so it cannot be a
/// deadline in disguise.
const QUICK: Duration = Duration::from_secs(3);

/// How late past its deadline a call may return (scheduling noise).
const DEADLINE_SLACK: Duration = Duration::from_millis(750);

/// How long a test waits for an event it caused before it fails.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// Retries used unless a test says otherwise; attempts = 1 + this.
const RETRIES: u32 = 3;

/// The value every well-behaved `Get` reply here carries.
const VALUE: &[u8] = b"hello";

fn client_of(address: &str) -> Client {
    Client::builder(address)
        .timeout(TIMEOUT)
        .max_retries(RETRIES)
        // One worker, one connection: stream ids and attempts stay
        // predictable.
        .pool_size(1)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .expect("client")
}

/// The body of a correct successful reply to the call the server saw.
fn good_body(seen: &Seen) -> Vec<u8> {
    match seen.method() {
        "Get" => CacheValue {
            found: true,
            value: Bytes::from_static(VALUE),
        }
        .encode_to_vec(),
        "SetIfAbsent" | "CompareAndSet" => ConditionalCacheResponse {
            status: ConditionalCacheStatus::Stored as i32,
        }
        .encode_to_vec(),
        other => panic!("no scripted reply for {other}"),
    }
}

fn good_reply(seen: &Seen) -> Vec<Step> {
    ok_reply(&good_body(seen))
}

fn timed<T>(call: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let outcome = call();
    (outcome, started.elapsed())
}

/// A Get through a fresh client against `rogue` that must end quickly,
/// after exactly one attempt (a broken reply is never retried): its outcome.
#[track_caller]
fn single_quick_get(rogue: &Rogue) -> Result<Option<Bytes>, Error> {
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.get("k"));
    assert_eq!(rogue.attempts(), 1, "got {outcome:?}");
    assert_quick(elapsed);
    outcome
}

fn assert_quick(elapsed: Duration) {
    assert!(
        elapsed < QUICK,
        "took {elapsed:?}, expected well under {TIMEOUT:?}"
    );
}

fn http_head(status: u16, content_type: &str) -> Step {
    Step::Head {
        status,
        headers: vec![("content-type", content_type.to_owned())],
        end_stream: false,
    }
}

fn text_body(text: &str) -> Step {
    Step::Data {
        bytes: Bytes::copy_from_slice(text.as_bytes()),
        end_stream: true,
    }
}

/// A bare HTTP error, as a proxy or load balancer answers: no gRPC status.
fn plain_http_error(status: u16) -> Vec<Step> {
    vec![
        http_head(status, "text/plain"),
        text_body("upstream says no"),
    ]
}

/// A gRPC reply that ends with these trailers after `messages`.
fn reply_with(messages: &[&[u8]], trailers: Step) -> Vec<Step> {
    let mut steps = vec![grpc_head()];
    steps.extend(messages.iter().map(|body| message(0, body)));
    steps.push(trailers);
    steps
}

/// The status error the client reports for a non-OK status without a kind
/// of its own.
fn status(code: Code, message: &str) -> Error {
    Error::Status {
        code,
        message: message.into(),
        details: None,
    }
}

// ----- not HTTP/2 at all ---------------------------------------------------
//
// A peer that does not speak HTTP/2 is a wrong port or peer: the connection
// failed, as when it is refused, so the caller sees `Unavailable` (what
// grpc-go and tonic report too), which `is_retryable()`. `Protocol` is kept
// for HTTP/2 peers that break gRPC.

#[test]
fn http1_answer_instead_of_http2_is_unavailable_at_once() {
    let junk = JunkServer::start(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let client = client_of(&junk.address());
    let (outcome, elapsed) = timed(|| client.get("k"));
    match outcome {
        // A connection-level failure names the server it could not use.
        Err(error @ Error::Unavailable(_)) => {
            assert!(error.to_string().contains(&junk.address()), "{error}");
            // A wrong port or peer: worth trying again later, unlike a
            // server that speaks HTTP/2 but breaks gRPC (`Protocol`).
            assert!(error.is_retryable());
            assert_eq!(error.code(), Code::Unavailable);
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_quick(elapsed);
    assert!(junk.connections() >= 1);
}

#[test]
fn random_bytes_instead_of_http2_are_unavailable_at_once() {
    let junk = JunkServer::start(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x13, 0x37, 0x42, 0x99]);
    let client = client_of(&junk.address());
    let (outcome, elapsed) = timed(|| client.get("k"));
    match outcome {
        // A connection-level failure names the server it could not use.
        Err(error @ Error::Unavailable(_)) => {
            assert!(error.to_string().contains(&junk.address()), "{error}");
            // A wrong port or peer: worth trying again later, unlike a
            // server that speaks HTTP/2 but breaks gRPC (`Protocol`).
            assert!(error.is_retryable());
            assert_eq!(error.code(), Code::Unavailable);
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_quick(elapsed);
    assert!(junk.connections() >= 1);
}

// ----- HTTP statuses without grpc-status -------------------------------------

/// A Get answered with a bare HTTP error status: the error (whose text
/// names the status) and how many attempts the server saw.
fn plain_http_status_scenario(http: u16) -> (Error, usize) {
    let rogue = Rogue::start(move |_| plain_http_error(http));
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.get("k"));
    assert_quick(elapsed);
    let error = outcome.expect_err("an HTTP error status is not a reply");
    assert!(error.to_string().contains(&http.to_string()), "{error}");
    (error, rogue.attempts())
}

#[test]
fn http_503_without_grpc_status_is_unavailable_and_retried() {
    let (error, attempts) = plain_http_status_scenario(503);
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    assert_eq!(attempts, 1 + RETRIES as usize);
}

#[test]
fn http_429_without_grpc_status_is_unavailable_and_retried() {
    let (error, attempts) = plain_http_status_scenario(429);
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    assert_eq!(attempts, 1 + RETRIES as usize);
}

/// A bare HTTP status that the gRPC spec maps to a code no retry can fix:
/// that code, without details, after one attempt.
#[track_caller]
fn assert_http_status_is_final(http: u16, code: Code) {
    let (error, attempts) = plain_http_status_scenario(http);
    assert!(
        matches!(&error, Error::Status { code: c, details: None, .. } if *c == code),
        "{http}: {error:?}"
    );
    assert_eq!(attempts, 1, "an HTTP {http} is not retried");
}

#[test]
fn http_502_and_504_without_grpc_status_are_unavailable_and_retried() {
    for http in [502, 504] {
        let (error, attempts) = plain_http_status_scenario(http);
        assert!(matches!(error, Error::Unavailable(_)), "{http}: {error:?}");
        assert_eq!(attempts, 1 + RETRIES as usize, "{http}");
    }
}

#[test]
fn http_403_without_grpc_status_is_permission_denied() {
    assert_http_status_is_final(403, Code::PermissionDenied);
}

#[test]
fn http_404_without_grpc_status_is_unimplemented() {
    assert_http_status_is_final(404, Code::Unimplemented);
}

#[test]
fn http_401_without_grpc_status_is_unauthenticated() {
    assert_http_status_is_final(401, Code::Unauthenticated);
}

#[test]
fn ok_reply_whose_trailers_lack_grpc_status_is_an_unknown_protocol_error() {
    let rogue = Rogue::start(|seen| {
        let mut steps = vec![grpc_head(), message(0, &good_body(seen))];
        steps.push(Step::Trailers(vec![("x-note", "no status here".into())]));
        steps
    });
    let outcome = single_quick_get(&rogue);
    assert!(
        matches!(
            outcome,
            Err(Error::Protocol {
                code: Code::Unknown,
                ..
            })
        ),
        "got {outcome:?}"
    );
}

#[test]
fn ok_reply_ending_without_trailers_is_an_unknown_protocol_error() {
    let rogue = Rogue::start(|seen| {
        vec![
            grpc_head(),
            Step::Data {
                bytes: frame(0, &good_body(seen)),
                end_stream: true,
            },
        ]
    });
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.get("k"));
    assert!(
        matches!(
            outcome,
            Err(Error::Protocol {
                code: Code::Unknown,
                ..
            })
        ),
        "got {outcome:?}"
    );
    assert_quick(elapsed);
}

// ----- broken gRPC replies ----------------------------------------------------

#[test]
fn html_content_type_is_an_internal_protocol_error() {
    let rogue = Rogue::start(|_| {
        vec![
            http_head(200, "text/html; charset=utf-8"),
            text_body("<html><body>Welcome to nginx!</body></html>"),
        ]
    });
    let outcome = single_quick_get(&rogue);
    match outcome {
        Err(Error::Protocol {
            code: Code::Internal,
            message,
        }) => assert!(message.contains("text/html"), "{message}"),
        other => panic!("expected Protocol(Internal), got {other:?}"),
    }
}

#[test]
fn compressed_flag_without_grpc_encoding_is_an_internal_protocol_error() {
    let rogue = Rogue::start(|seen| {
        vec![
            grpc_head(),
            message(1, &good_body(seen)),
            status_trailers("0", &[]),
        ]
    });
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.get("k"));
    match outcome {
        Err(Error::Protocol {
            code: Code::Internal,
            message,
        }) => assert!(message.contains("compressed"), "{message}"),
        other => panic!("expected Protocol(Internal), got {other:?}"),
    }
    assert_quick(elapsed);
}

#[test]
fn reply_announced_over_the_receive_limit_is_refused_from_its_prefix() {
    // 10 MB announced, 3 bytes sent, the stream left open: a client that
    // waited for the body would sit here until its deadline.
    let mut oversize = vec![0u8];
    oversize.extend_from_slice(&10_000_000u32.to_be_bytes());
    oversize.extend_from_slice(b"abc");
    let oversize = Bytes::from(oversize);
    let rogue = Rogue::start(move |_| {
        vec![
            grpc_head(),
            Step::Data {
                bytes: oversize.clone(),
                end_stream: false,
            },
            Step::Stall,
        ]
    });
    let client = Client::builder(&rogue.address())
        .timeout(TIMEOUT)
        .max_receive_message_bytes(1024)
        .pool_size(1)
        .build()
        .unwrap();
    let (outcome, elapsed) = timed(|| client.get("k"));
    match outcome {
        Err(Error::ResourceExhausted(message)) => {
            assert!(message.contains("10000000"), "{message}")
        }
        other => panic!("expected ResourceExhausted, got {other:?}"),
    }
    assert_eq!(rogue.attempts(), 1);
    assert_quick(elapsed);
}

#[test]
fn zero_messages_with_ok_status_is_an_unimplemented_protocol_error() {
    let rogue = Rogue::start(|_| reply_with(&[], status_trailers("0", &[])));
    let outcome = single_quick_get(&rogue);
    assert!(
        matches!(
            outcome,
            Err(Error::Protocol {
                code: Code::Unimplemented,
                ..
            })
        ),
        "got {outcome:?}"
    );
}

#[test]
fn trailers_only_ok_status_is_an_unimplemented_protocol_error() {
    let rogue = Rogue::start(|_| {
        vec![Step::Head {
            status: 200,
            headers: vec![
                ("content-type", "application/grpc".into()),
                ("grpc-status", "0".into()),
            ],
            end_stream: true,
        }]
    });
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.get("k"));
    assert!(
        matches!(
            outcome,
            Err(Error::Protocol {
                code: Code::Unimplemented,
                ..
            })
        ),
        "got {outcome:?}"
    );
    assert_quick(elapsed);
}

#[test]
fn two_messages_with_ok_status_is_an_unimplemented_protocol_error() {
    let rogue = Rogue::start(|seen| {
        let body = good_body(seen);
        reply_with(&[&body, &body], status_trailers("0", &[]))
    });
    let outcome = single_quick_get(&rogue);
    assert!(
        matches!(
            outcome,
            Err(Error::Protocol {
                code: Code::Unimplemented,
                ..
            })
        ),
        "got {outcome:?}"
    );
}

#[test]
fn unparseable_protobuf_in_an_ok_reply_is_an_internal_protocol_error() {
    // Field 2 (bytes) announcing 5 bytes and carrying 1: not a CacheValue.
    let rogue = Rogue::start(|_| ok_reply(&[0x12, 0x05, b'a']));
    let outcome = single_quick_get(&rogue);
    assert!(
        matches!(
            outcome,
            Err(Error::Protocol {
                code: Code::Internal,
                ..
            })
        ),
        "got {outcome:?}"
    );
}

#[test]
fn truncated_message_with_ok_status_is_an_internal_protocol_error() {
    let rogue = Rogue::start(|seen| {
        let whole = frame(0, &good_body(seen));
        vec![
            grpc_head(),
            Step::Data {
                bytes: whole.slice(..whole.len() - 2),
                end_stream: false,
            },
            status_trailers("0", &[]),
        ]
    });
    let outcome = single_quick_get(&rogue);
    assert!(
        matches!(
            outcome,
            Err(Error::Protocol {
                code: Code::Internal,
                ..
            })
        ),
        "got {outcome:?}"
    );
}

#[test]
fn oversized_response_headers_are_an_internal_protocol_error_and_not_retried() {
    // 70 KiB of headers, over the client's 64 KiB cap on a header list.
    let rogue = Rogue::start(|seen| {
        vec![
            Step::Head {
                status: 200,
                headers: vec![
                    ("content-type", "application/grpc".into()),
                    ("x-padding", "a".repeat(70 * 1024)),
                ],
                end_stream: false,
            },
            message(0, &good_body(seen)),
            status_trailers("0", &[]),
        ]
    });
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.compare_and_set("k", "old", "new"));
    assert!(
        matches!(
            outcome,
            Err(Error::Protocol {
                code: Code::Internal,
                ..
            })
        ),
        "got {outcome:?}"
    );
    assert_eq!(rogue.attempts(), 1);
    assert_quick(elapsed);
}

// ----- well-formed replies in unusual shapes -------------------------------------

#[test]
fn informational_headers_before_the_reply_are_skipped() {
    let rogue = Rogue::start(|seen| {
        let mut steps = vec![Step::Informational(100), Step::Informational(103)];
        steps.extend(good_reply(seen));
        steps
    });
    let outcome = single_quick_get(&rogue);
    assert_eq!(outcome, Ok(Some(Bytes::from_static(VALUE))));
}

#[test]
fn reply_split_into_one_byte_data_frames_is_reassembled() {
    let rogue = Rogue::start(|seen| {
        let whole = frame(0, &good_body(seen));
        let mut steps = vec![grpc_head()];
        for i in 0..whole.len() {
            // Empty DATA frames in between are legal and carry nothing.
            steps.push(Step::Data {
                bytes: Bytes::new(),
                end_stream: false,
            });
            steps.push(Step::Data {
                bytes: whole.slice(i..i + 1),
                end_stream: false,
            });
        }
        steps.push(status_trailers("0", &[]));
        steps
    });
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.get("k"));
    assert_eq!(outcome, Ok(Some(Bytes::from_static(VALUE))));
    assert_quick(elapsed);
}

// ----- statuses, well-formed and not ------------------------------------------

#[test]
fn trailers_only_error_is_the_status_with_its_message() {
    let rogue = Rogue::start(|_| {
        vec![Step::Head {
            status: 200,
            headers: vec![
                ("content-type", "application/grpc".into()),
                ("grpc-status", "7".into()),
                ("grpc-message", "not your key".into()),
            ],
            end_stream: true,
        }]
    });
    let outcome = single_quick_get(&rogue);
    assert_eq!(outcome, Err(status(Code::PermissionDenied, "not your key")));
}

#[test]
fn empty_message_then_invalid_argument_trailers_is_invalid_argument() {
    // The reference server's shape for handler errors.
    let rogue = Rogue::start(|_| {
        reply_with(
            &[b""],
            status_trailers(
                "3",
                &[("grpc-message", "key must be at most 256 characters")],
            ),
        )
    });
    let outcome = single_quick_get(&rogue);
    assert_eq!(
        outcome,
        Err(Error::InvalidArgument(
            "key must be at most 256 characters".into()
        ))
    );
}

#[test]
fn malformed_grpc_message_percent_encoding_is_decoded_leniently() {
    // (as sent, as the caller must see it)
    const CASES: [(&str, &str); 6] = [
        ("%", "%"),
        ("%G1", "%G1"),
        ("%E2%82", "\u{FFFD}"),
        ("100%25 sure%", "100% sure%"),
        ("na%C3%AFve %zz end", "naïve %zz end"),
        // Raw UTF-8 instead of percent-encoding: kept as it is.
        ("raw naïve", "raw naïve"),
    ];
    let rogue = Rogue::start(|seen| {
        let (sent, _) = CASES[seen.attempt % CASES.len()];
        reply_with(&[], status_trailers("9", &[("grpc-message", sent)]))
    });
    let client = client_of(&rogue.address());
    for (sent, shown) in CASES {
        let (outcome, elapsed) = timed(|| client.get("k"));
        assert_eq!(
            outcome,
            Err(status(Code::FailedPrecondition, shown)),
            "grpc-message {sent:?}"
        );
        assert_quick(elapsed);
    }
    assert_eq!(rogue.attempts(), CASES.len());
}

#[test]
fn malformed_status_details_are_dropped_and_the_status_kept() {
    const MALFORMED: [&str; 3] = ["!!not base64!!", "a===", "aG-k"];
    let rogue = Rogue::start(|seen| {
        let details = MALFORMED[seen.attempt % MALFORMED.len()];
        reply_with(
            &[],
            status_trailers(
                "9",
                &[
                    ("grpc-message", "precondition"),
                    ("grpc-status-details-bin", details),
                ],
            ),
        )
    });
    let client = client_of(&rogue.address());
    for details in MALFORMED {
        let (outcome, elapsed) = timed(|| client.get("k"));
        assert_eq!(
            outcome,
            Err(status(Code::FailedPrecondition, "precondition")),
            "details {details:?}"
        );
        assert_quick(elapsed);
    }
}

#[test]
fn well_formed_status_details_are_returned_as_bytes() {
    // base64 of 08 05 12 03 'a' 'b' 'c', padded and unpadded.
    const ENCODED: [&str; 2] = ["CAUSA2FiYw==", "CAUSA2FiYw"];
    let rogue = Rogue::start(|seen| {
        let details = ENCODED[seen.attempt % ENCODED.len()];
        reply_with(
            &[],
            status_trailers(
                "5",
                &[
                    ("grpc-message", "no such thing"),
                    ("grpc-status-details-bin", details),
                ],
            ),
        )
    });
    let client = client_of(&rogue.address());
    for encoded in ENCODED {
        let outcome = client.get("k");
        assert_eq!(
            outcome,
            Err(Error::Status {
                code: Code::NotFound,
                message: "no such thing".into(),
                details: Some(Bytes::from_static(b"\x08\x05\x12\x03abc")),
            }),
            "details {encoded:?}"
        );
    }
}

#[test]
fn non_numeric_grpc_status_is_unknown() {
    let rogue =
        Rogue::start(|_| reply_with(&[], status_trailers("abc", &[("grpc-message", "odd peer")])));
    let outcome = single_quick_get(&rogue);
    match outcome {
        Err(Error::Status {
            code: Code::Unknown,
            message,
            details: None,
        }) => assert!(
            message.contains("abc") && message.contains("odd peer"),
            "{message}"
        ),
        other => panic!("expected Status(Unknown), got {other:?}"),
    }
}

// ----- RST_STREAM ---------------------------------------------------------------

/// Refuses the first `refusals` streams, then answers well.
fn refusing(refusals: usize) -> impl Fn(&Seen) -> Vec<Step> + Send + Sync + 'static {
    move |seen| {
        if seen.attempt < refusals {
            vec![Step::Reset(Reason::REFUSED_STREAM)]
        } else {
            good_reply(seen)
        }
    }
}

#[test]
fn refused_streams_are_retried_until_answered_for_an_idempotent_call() {
    let rogue = Rogue::start(refusing(2));
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.get("k"));
    assert_eq!(outcome, Ok(Some(Bytes::from_static(VALUE))));
    assert_eq!(rogue.attempts(), 3);
    assert_quick(elapsed);
}

#[test]
fn refused_streams_are_retried_for_set_if_absent_because_never_processed() {
    let rogue = Rogue::start(refusing(2));
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.set_if_absent("lock", "me"));
    assert_eq!(outcome, Ok(true));
    assert_eq!(rogue.attempts(), 3);
    assert_quick(elapsed);
}

#[test]
fn refused_streams_beyond_the_retry_budget_are_unavailable() {
    let rogue = Rogue::start(refusing(usize::MAX));
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.set_if_absent("lock", "me"));
    assert!(
        matches!(outcome, Err(Error::Unavailable(_))),
        "got {outcome:?}"
    );
    // The first attempt, two transparent resends (never processed, so not
    // charged to max_retries), then the ordinary retries.
    assert_eq!(rogue.attempts(), 1 + 2 + RETRIES as usize);
    assert_quick(elapsed);
}

#[test]
fn reset_with_cancel_is_a_cancelled_status() {
    let rogue = Rogue::start(|_| vec![Step::Reset(Reason::CANCEL)]);
    let outcome = single_quick_get(&rogue);
    assert!(
        matches!(
            outcome,
            Err(Error::Status {
                code: Code::Cancelled,
                details: None,
                ..
            })
        ),
        "got {outcome:?}"
    );
}

#[test]
fn reset_with_enhance_your_calm_is_resource_exhausted() {
    let rogue = Rogue::start(|_| vec![Step::Reset(Reason::ENHANCE_YOUR_CALM)]);
    let outcome = single_quick_get(&rogue);
    assert!(
        matches!(outcome, Err(Error::ResourceExhausted(_))),
        "got {outcome:?}"
    );
}

#[test]
fn reset_with_internal_error_after_headers_is_not_retried_for_compare_and_set() {
    let rogue = Rogue::start(|_| vec![grpc_head(), Step::Reset(Reason::INTERNAL_ERROR)]);
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.compare_and_set("k", "old", "new"));
    assert!(
        matches!(
            outcome,
            Err(Error::Status {
                code: Code::Internal,
                details: None,
                ..
            })
        ),
        "got {outcome:?}"
    );
    assert_eq!(rogue.attempts(), 1);
    assert_quick(elapsed);
}

// ----- grpc-retry-pushback-ms ---------------------------------------------------

/// A Get answered UNAVAILABLE (trailers-only) with this pushback header:
/// how many attempts the server saw.
fn pushback_scenario(pushback: &'static str) -> usize {
    let rogue = Rogue::start(move |_| {
        vec![Step::Head {
            status: 200,
            headers: vec![
                ("content-type", "application/grpc".into()),
                ("grpc-status", "14".into()),
                ("grpc-retry-pushback-ms", pushback.into()),
            ],
            end_stream: true,
        }]
    });
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.get("k"));
    assert!(
        matches!(outcome, Err(Error::Unavailable(_))),
        "{pushback}: {outcome:?}"
    );
    assert_quick(elapsed);
    rogue.attempts()
}

#[test]
fn malformed_or_negative_retry_pushback_stops_retries() {
    for pushback in ["soon", "-1", "12ms", ""] {
        assert_eq!(pushback_scenario(pushback), 1, "pushback {pushback:?}");
    }
    // The same failure without a bad pushback is retried.
    assert_eq!(pushback_scenario("0"), 1 + RETRIES as usize);
}

// ----- connections: stream limit, GOAWAY, lost TCP, stalls ----------------------

#[test]
fn sixteen_callers_queue_behind_a_server_limit_of_one_stream() {
    const CALLERS: usize = 16;
    const ANSWER_DELAY: Duration = Duration::from_millis(50);
    let rogue = Rogue::with_max_concurrent_streams(1, |seen| {
        let mut steps = vec![Step::Sleep(ANSWER_DELAY)];
        steps.extend(good_reply(seen));
        steps
    });
    let client = client_of(&rogue.address());
    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let client = client.clone();
            thread::spawn(move || client.get(&format!("k{i}")))
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.join().unwrap(), Ok(Some(Bytes::from_static(VALUE))));
    }
    let elapsed = started.elapsed();
    assert_eq!(rogue.max_concurrent(), 1);
    assert_eq!(
        rogue.attempts(),
        CALLERS,
        "no stream was refused and retried"
    );
    assert_eq!(rogue.connections(), 1);
    assert!(elapsed >= ANSWER_DELAY * CALLERS as u32, "took {elapsed:?}");
    assert!(elapsed < TIMEOUT, "took {elapsed:?}");
}

#[test]
fn graceful_goaway_lets_the_call_in_flight_finish_and_moves_new_calls_to_a_new_connection() {
    let rogue = Rogue::start(|seen| {
        if seen.connection == 0 {
            // The call in flight is answered only once the test says so:
            // the new call cannot be waiting for the old connection to drain.
            let mut steps = vec![
                Step::Connection(Command::GracefulShutdown),
                Step::AwaitRelease,
            ];
            steps.extend(good_reply(seen));
            steps
        } else {
            good_reply(seen)
        }
    });
    let client = client_of(&rogue.address());
    let in_flight = {
        let client = client.clone();
        thread::spawn(move || timed(|| client.compare_and_set("k", "old", "new")))
    };
    // The client answered a PING sent after the GOAWAY, so it has read it.
    assert!(rogue.wait_for_event("goaway-acknowledged 0", EVENT_WAIT));

    let (later, elapsed) = timed(|| client.get("k"));
    assert_eq!(later, Ok(Some(Bytes::from_static(VALUE))));
    assert_quick(elapsed);
    assert!(
        !in_flight.is_finished(),
        "the call in flight is held by the server until released"
    );

    rogue.release();
    let (first, first_elapsed) = in_flight.join().unwrap();
    assert_eq!(first, Ok(CasOutcome::Stored));
    assert!(first_elapsed < TIMEOUT, "took {first_elapsed:?}");
    let seen: Vec<_> = rogue
        .seen()
        .into_iter()
        .map(|s| (s.connection, s.path))
        .collect();
    assert_eq!(
        seen,
        [
            (0, "/cache.CacheService/CompareAndSet".to_owned()),
            (1, "/cache.CacheService/Get".to_owned()),
        ]
    );
}

/// A GOAWAY(`reason`, last stream = the stream in flight) while a second
/// call sits unread in the socket: the first call finishes, the second
/// (above the last stream id, so never processed) is resent on a new
/// connection, even though `set_if_absent` is not idempotent.
fn goaway_above_last_stream_id_scenario(reason: Reason) {
    let rogue = Rogue::start(move |seen| {
        if seen.connection == 0 {
            // Stop reading until the next stream waits unread in the
            // socket, then GOAWAY(last stream = this one) and close.
            vec![
                Step::Connection(Command::FreezeUntilMoreArrives),
                Step::Connection(Command::AbruptShutdown(reason)),
                Step::Stall,
            ]
        } else {
            good_reply(seen)
        }
    });
    let client = client_of(&rogue.address());
    let below = {
        let client = client.clone();
        thread::spawn(move || timed(|| client.get("k")))
    };
    assert!(rogue.wait_for_event("freeze 0", EVENT_WAIT));
    let above = {
        let client = client.clone();
        thread::spawn(move || timed(|| client.set_if_absent("lock", "me")))
    };
    // The second call went out on the first connection before its GOAWAY.
    assert!(rogue.wait_for_event("unread 0", EVENT_WAIT));

    let (got, got_elapsed) = below.join().unwrap();
    let (stored, stored_elapsed) = above.join().unwrap();
    assert_eq!(got, Ok(Some(Bytes::from_static(VALUE))));
    assert_eq!(stored, Ok(true));
    assert!(got_elapsed < TIMEOUT && stored_elapsed < TIMEOUT);
    let seen = rogue.seen();
    assert_eq!(
        seen.iter()
            .filter(|s| s.connection == 0)
            .map(|s| s.method())
            .collect::<Vec<_>>(),
        ["Get"],
        "the first connection processed only the stream at its last id"
    );
    assert_eq!(
        seen.iter()
            .filter(|s| s.method() == "SetIfAbsent")
            .map(|s| s.connection)
            .collect::<Vec<_>>(),
        [1],
        "set_if_absent was processed exactly once, on the new connection: {seen:?}"
    );
    assert!(rogue.wait_for_event("abrupt-shutdown 0", Duration::ZERO));
}

#[test]
fn goaway_above_last_stream_id_is_retried_transparently_even_for_set_if_absent() {
    goaway_above_last_stream_id_scenario(Reason::NO_ERROR);
}

#[test]
fn connection_closed_mid_response_is_retried_for_an_idempotent_call() {
    let rogue = Rogue::start(|seen| {
        if seen.connection == 0 {
            vec![
                grpc_head(),
                Step::Sleep(Duration::from_millis(20)),
                Step::Connection(Command::Drop),
                Step::Stall,
            ]
        } else {
            good_reply(seen)
        }
    });
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.get("k"));
    assert_eq!(outcome, Ok(Some(Bytes::from_static(VALUE))));
    assert_eq!(rogue.attempts(), 2);
    assert_eq!(rogue.connections(), 2);
    assert_quick(elapsed);
}

#[test]
fn connection_closed_mid_response_is_unavailable_without_retry_for_compare_and_set() {
    let rogue = Rogue::start(|_| {
        vec![
            grpc_head(),
            Step::Sleep(Duration::from_millis(20)),
            Step::Connection(Command::Drop),
            Step::Stall,
        ]
    });
    let client = client_of(&rogue.address());
    let (outcome, elapsed) = timed(|| client.compare_and_set("k", "old", "new"));
    assert!(
        matches!(outcome, Err(Error::Unavailable(_))),
        "got {outcome:?}"
    );
    assert_eq!(
        rogue.attempts(),
        1,
        "a committed compare_and_set is never retried"
    );
    assert_quick(elapsed);
}

#[test]
fn response_stalled_after_headers_is_deadline_exceeded_on_time() {
    let rogue = Rogue::start(|_| vec![grpc_head(), Step::Stall]);
    let timeout = Duration::from_millis(600);
    let client = client_of(&rogue.address()).with_timeout(timeout).unwrap();
    let (outcome, elapsed) = timed(|| client.get("k"));
    assert!(
        matches!(outcome, Err(Error::DeadlineExceeded(_))),
        "got {outcome:?}"
    );
    assert!(elapsed >= timeout, "gave up early after {elapsed:?}");
    assert!(elapsed < timeout + DEADLINE_SLACK, "took {elapsed:?}");
    assert_eq!(rogue.attempts(), 1);
}

#[test]
fn goaway_with_an_error_code_is_retried_above_last_stream_id_even_for_set_if_absent() {
    // ENHANCE_YOUR_CALM is what grpc servers send for too many pings:
    // streams above the last stream id were still never processed (RFC 9113
    // section 6.8), whatever the code.
    goaway_above_last_stream_id_scenario(Reason::ENHANCE_YOUR_CALM);
}

#[test]
fn new_call_after_graceful_goaway_goes_to_a_new_connection_without_spending_retries() {
    let rogue = Rogue::start(|seen| {
        if seen.connection == 0 {
            let mut steps = vec![
                Step::Connection(Command::GracefulShutdown),
                Step::AwaitRelease,
            ];
            steps.extend(good_reply(seen));
            steps
        } else {
            good_reply(seen)
        }
    });
    let client = client_of(&rogue.address()).with_max_retries(0);
    let in_flight = {
        let client = client.clone();
        thread::spawn(move || client.compare_and_set("k", "old", "new"))
    };
    assert!(rogue.wait_for_event("goaway-acknowledged 0", EVENT_WAIT));

    let (later, elapsed) = timed(|| client.get("k"));
    assert_eq!(later, Ok(Some(Bytes::from_static(VALUE))));
    assert_quick(elapsed);
    rogue.release();
    assert_eq!(in_flight.join().unwrap(), Ok(CasOutcome::Stored));
    assert_eq!(rogue.connections(), 2);
    assert_eq!(rogue.attempts(), 2, "nothing was retried");
}

/// The `Get` reply every held stream gets once released.
fn held_get(seen: &Seen) -> Vec<Step> {
    let mut steps = vec![Step::AwaitRelease];
    steps.extend(good_reply(seen));
    steps
}

#[test]
fn more_than_a_hundred_calls_share_one_connection_when_the_server_sets_no_stream_limit() {
    // HTTP/2 starts with no limit on concurrent streams, and this server
    // never sets one: all 150 calls must be open on the server at once,
    // none held back behind a client-side cap.
    const CALLERS: usize = 150;
    let rogue = Rogue::start(held_get);
    let client = client_of(&rogue.address());
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let client = client.clone();
            thread::spawn(move || client.get(&format!("k{i}")))
        })
        .collect();
    let all_open = rogue.wait_for_attempts(CALLERS, EVENT_WAIT);
    rogue.release();
    for caller in callers {
        assert_eq!(caller.join().unwrap(), Ok(Some(Bytes::from_static(VALUE))));
    }
    assert!(
        all_open,
        "only {} streams were opened before release",
        rogue.attempts()
    );
    assert_eq!(rogue.max_concurrent(), CALLERS);
    assert_eq!(rogue.connections(), 1);
}

#[test]
fn a_pool_fills_its_first_connection_before_it_spills_calls_onto_the_next() {
    let rogue = Rogue::start(|seen| {
        if seen.attempt < 10 {
            good_reply(seen)
        } else {
            held_get(seen)
        }
    });
    let client = Client::builder(&rogue.address())
        .timeout(TIMEOUT)
        .pool_size(2)
        .build()
        .expect("client");
    // One caller at a time: every call goes to the first connection.
    for i in 0..10 {
        assert_eq!(
            client.get(&format!("k{i}")),
            Ok(Some(Bytes::from_static(VALUE)))
        );
    }
    // Sixty held at once: past 24 on the first connection they spill over.
    let callers: Vec<_> = (0..60)
        .map(|i| {
            let client = client.clone();
            thread::spawn(move || client.get(&format!("held{i}")))
        })
        .collect();
    let all_open = rogue.wait_for_attempts(70, EVENT_WAIT);
    rogue.release();
    for caller in callers {
        assert_eq!(caller.join().unwrap(), Ok(Some(Bytes::from_static(VALUE))));
    }
    assert!(all_open, "only {} streams arrived", rogue.attempts());
    let seen = rogue.seen();
    let on = |connection: usize, attempts: std::ops::Range<usize>| {
        seen.iter()
            .filter(|s| s.connection == connection && attempts.contains(&s.attempt))
            .count()
    };
    // The first worker's connection is not always the first accepted:
    // both workers connect at once.
    let filled = seen.first().map_or(0, |s| s.connection);
    assert_eq!(
        on(filled, 0..10),
        10,
        "sequential calls stay on one connection"
    );
    let (first, second) = (on(filled, 10..70), on(1 - filled, 10..70));
    assert_eq!(first + second, 60);
    assert!(
        first >= 24 && second >= 1,
        "held calls split {first} / {second}"
    );
}
