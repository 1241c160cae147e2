//! Reading a unary gRPC response: head, DATA chunks, trailers.

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_TYPE};
use http::StatusCode;

use super::framing::MessageDecoder;
use super::status::Status;
use crate::error::Code;
use crate::error::Error;

/// Why a unary response did not produce a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The server (or an HTTP intermediary in front of it) reported this
    /// status: the call reached something that answered deliberately.
    Status(Status),
    /// The peer broke the gRPC protocol (wrong content type, bad framing,
    /// missing status, wrong message count); the inner status carries the
    /// code the gRPC spec assigns to that violation.
    Protocol(Status),
}

impl ResponseError {
    /// The status, whichever way it arose.
    pub fn status(&self) -> &Status {
        match self {
            ResponseError::Status(s) | ResponseError::Protocol(s) => s,
        }
    }

    /// Whether the peer broke the protocol rather than reporting a status.
    pub fn is_protocol(&self) -> bool {
        matches!(self, ResponseError::Protocol(_))
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Status(s) => write!(f, "{s}"),
            ResponseError::Protocol(s) => write!(f, "protocol error: {s}"),
        }
    }
}

impl std::error::Error for ResponseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.status())
    }
}

fn protocol(code: Code, message: impl Into<String>) -> ResponseError {
    ResponseError::Protocol(Status::new(code, message))
}

/// Turns the parts of one unary response into its single message body.
///
/// Feed it the head ([`UnaryDecoder::on_head`]), every DATA chunk
/// ([`UnaryDecoder::on_data`]), then the trailers ([`UnaryDecoder::finish`]).
/// The first error is sticky: once a step fails, `finish` returns that same
/// error, so a caller that keeps going cannot turn a failure into success.
#[derive(Debug)]
pub struct UnaryDecoder {
    messages: MessageDecoder,
    first: Option<Bytes>,
    /// Complete messages after the first; their bytes are dropped because a
    /// unary reply with more than one message is an error anyway (unless the
    /// trailers report a failure, which wins).
    extra: usize,
    error: Option<ResponseError>,
}

impl UnaryDecoder {
    /// A decoder refusing a response message over `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        UnaryDecoder {
            messages: MessageDecoder::new(max_message_bytes),
            first: None,
            extra: 0,
            error: None,
        }
    }

    /// Checks the response head (1xx heads never get here: h2 skips them).
    ///
    /// * Not 200: a non-OK `grpc-status` in the head is the answer; without
    ///   one the code comes from the HTTP status (503 → `Unavailable`, ...).
    /// * 200 with a content type other than `application/grpc`,
    ///   `application/grpc+...` or `application/grpc;...`: protocol error
    ///   (`Internal`). A head with no content type is accepted only when it
    ///   is a Trailers-Only response, whose status says everything.
    /// * 200 with `grpc-status` (Trailers-Only): a non-OK status is the
    ///   answer; OK means a unary call got no message, `Unimplemented`.
    pub fn on_head(&mut self, head: &http::response::Parts) -> Result<(), ResponseError> {
        self.check_sticky()?;
        let result = check_head(head);
        self.record(result)
    }

    /// Feeds one DATA chunk. Framing errors (compressed or oversize message,
    /// bad flag) are protocol errors with the framing's code, so an oversize
    /// reply is `Protocol(ResourceExhausted)`.
    pub fn on_data(&mut self, chunk: Bytes) -> Result<(), ResponseError> {
        self.check_sticky()?;
        let pushed = self.messages.push(chunk);
        while let Some(message) = self.messages.next_message() {
            if self.first.is_none() {
                self.first = Some(message);
            } else {
                self.extra = self.extra.saturating_add(1);
            }
        }
        self.record(pushed.map_err(ResponseError::Protocol))
    }

    /// Ends the response with its trailers (`None` when the stream ended
    /// without any) and returns the one message body.
    ///
    /// A non-OK `grpc-status` wins over whatever data came before: the
    /// reference server sends an empty message ahead of its error trailers,
    /// and that message is not a reply.
    pub fn finish(self, trailers: Option<&HeaderMap>) -> Result<Bytes, ResponseError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let Some(trailers) = trailers else {
            return Err(protocol(
                Code::Unknown,
                "response stream ended without trailers (no grpc-status)",
            ));
        };
        let Some(status) = Status::from_header_map(trailers) else {
            return Err(protocol(
                Code::Unknown,
                "response trailers carry no grpc-status",
            ));
        };
        if status.code() != Code::Ok {
            return Err(ResponseError::Status(status));
        }
        if self.messages.has_partial() {
            return Err(protocol(
                Code::Internal,
                "response message truncated: the stream ended inside a message",
            ));
        }
        match (self.first, self.extra) {
            (Some(body), 0) => Ok(body),
            (None, _) => Err(protocol(Code::Unimplemented, "no response message")),
            (Some(_), extra) => Err(protocol(
                Code::Unimplemented,
                format!(
                    "unary response carried {} messages, expected exactly one",
                    extra.saturating_add(1)
                ),
            )),
        }
    }

    fn check_sticky(&self) -> Result<(), ResponseError> {
        match &self.error {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn record(&mut self, result: Result<(), ResponseError>) -> Result<(), ResponseError> {
        if let Err(error) = &result {
            self.error = Some(error.clone());
        }
        result
    }
}

fn check_head(head: &http::response::Parts) -> Result<(), ResponseError> {
    let grpc_status = Status::from_header_map(&head.headers);

    if head.status != StatusCode::OK {
        return Err(match grpc_status {
            Some(status) if status.code() != Code::Ok => ResponseError::Status(status),
            // An OK status on a failed HTTP response is contradictory; the
            // HTTP status is the part we can trust.
            _ => ResponseError::Status(Status::new(
                Code::from_http_status(head.status.as_u16()),
                format!("HTTP status {} without grpc-status", head.status.as_u16()),
            )),
        });
    }

    let content_type = head.headers.get(CONTENT_TYPE);
    if let Some(value) = content_type {
        if !is_grpc_content_type(value.as_bytes()) {
            let shown = String::from_utf8_lossy(value.as_bytes());
            return Err(protocol(
                Code::Internal,
                format!("unexpected content-type {shown:?} in a gRPC response"),
            ));
        }
    }

    match grpc_status {
        Some(status) if status.code() != Code::Ok => Err(ResponseError::Status(status)),
        Some(_) => Err(protocol(Code::Unimplemented, "no response message")),
        None if content_type.is_none() => Err(protocol(
            Code::Internal,
            "gRPC response head without content-type",
        )),
        None => Ok(()),
    }
}

/// `application/grpc`, optionally followed by `+codec` or `;params`. Media
/// types are case-insensitive, so the comparison is too.
fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    match value.split_at_checked(GRPC.len()) {
        Some((head, rest)) => {
            head.eq_ignore_ascii_case(GRPC) && matches!(rest.first(), None | Some(b'+' | b';'))
        }
        None => false,
    }
}

/// Maps what the codec made of a response.
impl From<ResponseError> for Error {
    fn from(error: ResponseError) -> Error {
        match error {
            ResponseError::Status(status) => Error::from(status),
            // A message over our own receive limit is a size problem, not a
            // broken peer: report it as the size error callers already handle.
            ResponseError::Protocol(status) if status.code() == Code::ResourceExhausted => {
                Error::ResourceExhausted(status.message().to_owned().into())
            }
            ResponseError::Protocol(status) => Error::Protocol {
                code: status.code(),
                message: status.message().to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::codec::framing::DEFAULT_MAX_MESSAGE_BYTES;
    use crate::codec::status::HTTP_STATUS_TABLE;
    use http::header::{HeaderName, HeaderValue};

    #[test]
    fn server_statuses_map_to_the_kinds_callers_match_on() {
        let cases = [
            (Code::InvalidArgument, "InvalidArgument"),
            (Code::ResourceExhausted, "ResourceExhausted"),
            (Code::Unavailable, "Unavailable"),
            (Code::DeadlineExceeded, "DeadlineExceeded"),
        ];
        for (code, kind) in cases {
            let error = Error::from(Status::new(code, "x"));
            assert!(
                format!("{error:?}").starts_with(kind),
                "{code} gave {error:?}"
            );
            assert_eq!(error.code(), code);
        }
        let other = Error::from(Status::new(Code::Internal, "boom id=7"));
        assert_eq!(
            other,
            Error::Status {
                code: Code::Internal,
                message: "boom id=7".into(),
                details: None
            }
        );
    }

    #[test]
    fn oversize_reply_is_a_resource_error_and_other_violations_are_protocol_errors() {
        let oversize = ResponseError::Protocol(Status::new(Code::ResourceExhausted, "too big"));
        assert_eq!(
            Error::from(oversize),
            Error::ResourceExhausted("too big".into())
        );
        let two = ResponseError::Protocol(Status::new(Code::Unimplemented, "two messages"));
        assert_eq!(
            Error::from(two),
            Error::Protocol {
                code: Code::Unimplemented,
                message: "two messages".into()
            }
        );
    }
    fn parts(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
        let mut response = http::Response::new(());
        *response.status_mut() = StatusCode::from_u16(status).expect("test status");
        for (name, value) in headers {
            response.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).expect("test name"),
                HeaderValue::from_str(value).expect("test value"),
            );
        }
        response.into_parts().0
    }

    fn grpc_head() -> http::response::Parts {
        parts(
            200,
            &[
                ("content-type", "application/grpc"),
                ("grpc-accept-encoding", "identity,deflate,gzip"),
                ("x-request-id", "0123456789abcdef0123456789abcdef"),
            ],
        )
    }

    fn trailer_map(headers: &[(&str, &str)]) -> HeaderMap {
        parts(200, headers).headers
    }

    fn framed(body: &[u8]) -> Bytes {
        let mut out = vec![0u8];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        Bytes::from(out)
    }

    fn decoder() -> UnaryDecoder {
        UnaryDecoder::new(DEFAULT_MAX_MESSAGE_BYTES)
    }

    fn ok_trailers() -> HeaderMap {
        trailer_map(&[("grpc-status", "0")])
    }

    /// A decoder past a normal gRPC head.
    fn started() -> UnaryDecoder {
        let mut d = decoder();
        d.on_head(&grpc_head()).expect("head");
        d
    }

    /// A whole response: a normal head, each of `frames` as a DATA frame,
    /// then `trailers`.
    fn finished(frames: &[Bytes], trailers: Option<&HeaderMap>) -> Result<Bytes, ResponseError> {
        let mut d = started();
        for frame in frames {
            d.on_data(frame.clone()).expect("data");
        }
        d.finish(trailers)
    }

    /// The error a head that ends the call (trailers-only, or an HTTP
    /// error) gives.
    fn head_error(status: u16, headers: &[(&str, &str)]) -> ResponseError {
        let head = parts(status, headers);
        decoder()
            .on_head(&head)
            .expect_err("the head ends the call")
    }

    #[test]
    fn one_message_with_ok_trailers_is_the_reply_however_it_is_framed() {
        let data = framed(b"hello world");
        let split = [data.slice(..2), data.slice(2..8), data.slice(8..)];
        let replies: [(&[Bytes], &[u8]); 3] = [
            (&[framed(b"\x08\x01")], b"\x08\x01"),
            // A message split across DATA frames is reassembled.
            (&split, b"hello world"),
            // An empty message is a valid empty reply.
            (&[framed(b"")], b""),
        ];
        for (frames, reply) in replies {
            let body = finished(frames, Some(&ok_trailers()));
            assert_eq!(body, Ok(Bytes::copy_from_slice(reply)));
        }
    }

    #[test]
    fn error_trailers_win_over_whatever_came_before() {
        let reference = trailer_map(&[
            ("grpc-status", "3"),
            ("grpc-message", "key must be at most 256 characters"),
        ]);
        let full = trailer_map(&[("grpc-status", "8"), ("grpc-message", "full")]);
        let unavailable = trailer_map(&[("grpc-status", "14")]);
        let cases: [(&[Bytes], &HeaderMap, Status); 3] = [
            // The reference server sends an empty message before its error.
            (
                &[Bytes::from_static(&[0, 0, 0, 0, 0])],
                &reference,
                Status::new(Code::InvalidArgument, "key must be at most 256 characters"),
            ),
            (
                &[framed(b"a"), framed(b"b")],
                &full,
                Status::new(Code::ResourceExhausted, "full"),
            ),
            (
                &[framed(b"abc").slice(..6)],
                &unavailable,
                Status::new(Code::Unavailable, ""),
            ),
        ];
        for (frames, trailers, status) in cases {
            let err = finished(frames, Some(trailers)).expect_err("error status wins");
            assert_eq!(err, ResponseError::Status(status));
        }
    }

    #[test]
    fn ok_trailers_after_anything_but_one_whole_message_are_a_protocol_error() {
        let mut both = framed(b"one").to_vec();
        both.extend_from_slice(&framed(b"two"));
        let truncated = [1, 4, 5, 7].map(|cut| vec![framed(b"abcdef").slice(..cut)]);
        let mut cases = vec![
            (vec![], Code::Unimplemented, "no response message"),
            // Three messages, two of them in one DATA frame.
            (
                vec![Bytes::from(both), framed(b"three")],
                Code::Unimplemented,
                "3",
            ),
            // A second message cut short.
            (
                vec![framed(b"one"), framed(b"two").slice(..3)],
                Code::Internal,
                "truncated",
            ),
        ];
        cases.extend(truncated.map(|frames| (frames, Code::Internal, "truncated")));
        for (frames, code, text) in cases {
            let err = finished(&frames, Some(&ok_trailers())).expect_err("protocol");
            assert!(err.is_protocol(), "{err}");
            assert_eq!(err.status().code(), code, "{frames:?}");
            assert!(err.status().message().contains(text), "{err}");
        }
    }

    #[test]
    fn trailers_without_a_readable_status_are_unknown() {
        let without_status = trailer_map(&[("grpc-message", "hm")]);
        let malformed = trailer_map(&[("grpc-status", "ok")]);
        // No trailers, or none naming a status, break the protocol; a
        // malformed status is an Unknown status.
        for (trailers, protocol) in [
            (None, true),
            (Some(&without_status), true),
            (Some(&malformed), false),
        ] {
            let err = finished(&[framed(b"x")], trailers).expect_err("no status");
            assert_eq!(err.is_protocol(), protocol, "{err}");
            assert_eq!(err.status().code(), Code::Unknown, "{err}");
        }
    }

    #[test]
    fn oversize_message_is_protocol_resource_exhausted() {
        let mut d = UnaryDecoder::new(4);
        d.on_head(&grpc_head()).expect("head");
        let err = d.on_data(framed(b"12345")).expect_err("too big");
        assert_eq!(
            err,
            ResponseError::Protocol(Status::new(
                Code::ResourceExhausted,
                "received message of 5 bytes exceeds the limit of 4 bytes"
            ))
        );
        // Sticky: later steps, even with OK trailers, report the same error.
        assert_eq!(d.on_data(framed(b"1")), Err(err.clone()));
        assert_eq!(d.finish(Some(&ok_trailers())), Err(err));
    }

    #[test]
    fn compressed_message_is_protocol_internal() {
        let err = started()
            .on_data(Bytes::from_static(&[1, 0, 0, 0, 1, 0x78]))
            .expect_err("compressed");
        assert!(err.is_protocol());
        assert_eq!(err.status().code(), Code::Internal);
    }

    #[test]
    fn trailers_only_error_in_the_head_is_the_status() {
        let head = parts(
            200,
            &[
                ("content-type", "application/grpc"),
                ("grpc-status", "12"),
                ("grpc-message", "Method not found!"),
            ],
        );
        let mut d = decoder();
        let err = d.on_head(&head).expect_err("trailers-only");
        assert_eq!(
            err,
            ResponseError::Status(Status::new(Code::Unimplemented, "Method not found!"))
        );
        assert_eq!(d.finish(None), Err(err));
    }

    #[test]
    fn a_head_with_a_grpc_status_ends_the_call_with_it() {
        let grpc = ("content-type", "application/grpc");
        let cases = [
            // Trailers-only, even without a content type.
            (
                200,
                &[("grpc-status", "16")][..],
                ResponseError::Status(Status::new(Code::Unauthenticated, "")),
            ),
            // Trailers-only OK: a call with no response message.
            (
                200,
                &[grpc, ("grpc-status", "0")],
                protocol(Code::Unimplemented, "no response message"),
            ),
            // An HTTP error with a grpc-status: the grpc-status.
            (
                503,
                &[("grpc-status", "8"), ("grpc-message", "slow down")],
                ResponseError::Status(Status::new(Code::ResourceExhausted, "slow down")),
            ),
        ];
        for (http_status, headers, expected) in cases {
            assert_eq!(head_error(http_status, headers), expected, "{headers:?}");
        }
    }

    #[test]
    fn http_error_without_grpc_status_maps_the_http_status() {
        let unknown = [500, 302, 204].map(|http_status| (http_status, Code::Unknown));
        for (http_status, code) in HTTP_STATUS_TABLE.into_iter().chain(unknown) {
            let err = head_error(http_status, &[("content-type", "text/html")]);
            assert!(!err.is_protocol(), "{http_status}");
            assert_eq!(err.status().code(), code, "{http_status}");
            assert_eq!(
                err.status().message(),
                format!("HTTP status {http_status} without grpc-status")
            );
        }
    }

    #[test]
    fn http_error_with_ok_grpc_status_falls_back_to_the_http_status() {
        let err = head_error(503, &[("grpc-status", "0")]);
        assert_eq!(err.status().code(), Code::Unavailable);
    }

    #[test]
    fn only_a_grpc_content_type_makes_a_normal_head() {
        let accepted = [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc;charset=utf-8",
            "Application/GRPC",
        ];
        for ct in accepted {
            decoder()
                .on_head(&parts(200, &[("content-type", ct)]))
                .expect(ct);
        }
        let refused = [
            "text/html",
            "application/json",
            "application/grpcx",
            "application/grpc-web",
            "application/grp",
            "",
        ];
        // A missing content type is refused the same way.
        let refused = refused.map(|ct| vec![("content-type", ct)]);
        for headers in refused.iter().map(Vec::as_slice).chain([&[][..]]) {
            let err = head_error(200, headers);
            assert!(err.is_protocol(), "{headers:?}");
            assert_eq!(err.status().code(), Code::Internal, "{headers:?}");
        }
    }

    #[test]
    fn non_utf8_content_type_does_not_panic() {
        let mut head = parts(200, &[]);
        head.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_bytes(b"application/\xffgrpc").expect("opaque bytes"),
        );
        let err = decoder().on_head(&head).expect_err("bad content-type");
        assert_eq!(err.status().code(), Code::Internal);
    }

    #[test]
    fn error_display_and_accessors() {
        let s = ResponseError::Status(Status::new(Code::NotFound, "gone"));
        assert_eq!(s.to_string(), "NOT_FOUND: gone");
        let p = ResponseError::Protocol(Status::new(Code::Internal, "bad"));
        assert_eq!(p.to_string(), "protocol error: INTERNAL: bad");
        assert_eq!(p.status(), &Status::new(Code::Internal, "bad"));
        assert!(std::error::Error::source(&p).is_some());
    }
}
