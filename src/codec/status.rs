//! gRPC status codes, the `Status` error, and the `grpc-status`,
//! `grpc-message` and `grpc-status-details-bin` headers that carry it.

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS};

use super::binary::{decode_bin, encode_bin};
use crate::error::Code;

use crate::error::{Error, StatusText};

/// `grpc-status` header (decimal status code).
pub(crate) const GRPC_STATUS: &str = "grpc-status";
/// `grpc-message` header (percent-encoded UTF-8).
pub(crate) const GRPC_MESSAGE: &str = "grpc-message";
/// `grpc-status-details-bin` header (base64 of a `google.rpc.Status`).
pub(crate) const GRPC_STATUS_DETAILS: &str = "grpc-status-details-bin";

impl Code {
    /// The code for an HTTP response that carries no `grpc-status`, per the
    /// gRPC "HTTP to gRPC status code mapping" document.
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// The code for a stream reset by the peer with this HTTP/2 error code.
    ///
    /// `REFUSED_STREAM` maps to `Unavailable` because the server promises it
    /// never processed the stream, which makes the call safe to retry.
    pub fn from_h2_reason(reason: u32) -> Code {
        match reason {
            0x7 => Code::Unavailable,
            0x8 => Code::Cancelled,
            0xb => Code::ResourceExhausted,
            0xc => Code::PermissionDenied,
            _ => Code::Internal,
        }
    }
}

/// The outcome of a gRPC call that did not succeed (or, with `Code::Ok`, of
/// one that did): a code, a human-readable message and optional opaque
/// details (a serialized `google.rpc.Status`, never interpreted here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    code: Code,
    message: String,
    details: Option<Bytes>,
}

impl Status {
    /// A status with this code and message and no details.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// The status code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message, already percent-decoded; empty when none was sent.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The raw (base64-decoded) `grpc-status-details-bin`, when one was
    /// sent and was well-formed base64.
    pub fn details(&self) -> Option<&Bytes> {
        self.details.as_ref()
    }

    /// This status with `details` attached.
    pub fn with_details(mut self, details: Bytes) -> Status {
        self.details = Some(details);
        self
    }

    /// Reads a status out of a trailer block (or a Trailers-Only head).
    ///
    /// Returns `None` when there is no `grpc-status`, so the caller can
    /// decide what a missing status means in its context. Everything else is
    /// lenient because it comes from the peer: a `grpc-status` that is not a
    /// decimal number gives `Unknown` (saying so in the message), a code
    /// outside 0..=16 gives `Unknown`, a badly percent-encoded message is
    /// kept as received, and malformed details are dropped.
    pub fn from_header_map(headers: &HeaderMap) -> Option<Status> {
        let raw_code = headers.get(GRPC_STATUS)?;
        let message = headers
            .get(GRPC_MESSAGE)
            .map(|v| percent_decode_message(v.as_bytes()))
            .unwrap_or_default();
        let mut status = match parse_status_code(raw_code.as_bytes()) {
            Some(code) => Status::new(code, message),
            None => {
                let shown = percent_decode_message(raw_code.as_bytes());
                let mut text = format!("malformed grpc-status {shown:?} from peer");
                if !message.is_empty() {
                    text.push_str(": ");
                    text.push_str(&message);
                }
                Status::new(Code::Unknown, text)
            }
        };
        status.details = headers
            .get(GRPC_STATUS_DETAILS)
            .and_then(|v| decode_bin(v.as_bytes()))
            .map(Bytes::from);
        Some(status)
    }

    /// Writes this status as trailers: `grpc-status`, `grpc-message` when the
    /// message is not empty, and `grpc-status-details-bin` when there are
    /// details. Replaces (or removes) any of those already in `headers`.
    pub fn write_to(&self, headers: &mut HeaderMap) {
        headers.insert(
            HeaderName::from_static(GRPC_STATUS),
            HeaderValue::from(self.code.as_i32()),
        );

        let message = HeaderName::from_static(GRPC_MESSAGE);
        // Percent-encoding leaves only 0x20..=0x7E, which is always a valid
        // header value, so the error branch cannot be taken.
        match HeaderValue::from_str(&percent_encode_message(&self.message)) {
            Ok(value) if !self.message.is_empty() => {
                headers.insert(message, value);
            }
            _ => {
                headers.remove(message);
            }
        }

        let details_name = HeaderName::from_static(GRPC_STATUS_DETAILS);
        let details = self
            .details
            .as_ref()
            .and_then(|d| HeaderValue::from_str(&encode_bin(d)).ok());
        match details {
            Some(value) => {
                headers.insert(details_name, value);
            }
            None => {
                headers.remove(details_name);
            }
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(self.code.as_str())
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for Status {}

/// `grpc-status` is `1*DIGIT`. Surrounding blanks are tolerated because they
/// cannot change the meaning; a number too large for `i32` is still a
/// number, just not a known code, so it maps to `Unknown` like 17 would.
fn parse_status_code(raw: &[u8]) -> Option<Code> {
    let digits = raw.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: i32 = 0;
    for &d in digits {
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i32::from(d - b'0')))
        {
            Some(v) => value = v,
            None => return Some(Code::Unknown),
        }
    }
    Some(Code::from_i32(value))
}

/// Bytes the gRPC spec says must be escaped in `grpc-message`: everything
/// outside 0x20..=0x7E (the set also escapes all non-ASCII bytes), and `%`
/// itself so decoding is unambiguous. Spaces stay raw, as grpc sends them.
const GRPC_MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// Percent-encodes a status message for `grpc-message`: UTF-8 bytes outside
/// 0x20..=0x7E and `%` become `%XX` (upper-case hex), everything else stays.
///
/// `"naïve 100%"` becomes `"na%C3%AFve 100%25"`.
pub fn percent_encode_message(message: &str) -> String {
    percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE_ESCAPES).to_string()
}

/// Decodes a `grpc-message` value leniently: a `%` not followed by two hex
/// digits is kept as it is, and bytes that do not form UTF-8 become U+FFFD.
/// The spec asks for exactly this, so that a sloppy peer's message never
/// turns into a different error.
pub fn percent_decode_message(raw: &[u8]) -> String {
    percent_encoding::percent_decode(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// Maps a status the server (or an HTTP intermediary) reported.
impl From<Status> for Error {
    fn from(status: Status) -> Error {
        let message = StatusText::from(status.message());
        match status.code() {
            Code::InvalidArgument => Error::InvalidArgument(message),
            Code::ResourceExhausted => Error::ResourceExhausted(message),
            Code::Unavailable => Error::Unavailable(message),
            Code::DeadlineExceeded => Error::DeadlineExceeded(message),
            code => Error::Status {
                code,
                message,
                details: status.details().cloned(),
            },
        }
    }
}

/// The gRPC spec's table of the HTTP statuses a response without
/// `grpc-status` stands for (any other is `Unknown`), for the tests of
/// [`Code::from_http_status`] and of the response head that uses it.
#[cfg(test)]
pub(crate) const HTTP_STATUS_TABLE: [(u16, Code); 8] = [
    (400, Code::Internal),
    (401, Code::Unauthenticated),
    (403, Code::PermissionDenied),
    (404, Code::Unimplemented),
    (429, Code::Unavailable),
    (502, Code::Unavailable),
    (503, Code::Unavailable),
    (504, Code::Unavailable),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
                HeaderValue::from_bytes(value).expect("test header value"),
            );
        }
        map
    }

    /// The status trailers with these `pairs` carry.
    fn parsed(pairs: &[(&str, &[u8])]) -> Status {
        Status::from_header_map(&headers(pairs)).expect("status")
    }

    const ALL_CODES: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    #[test]
    fn every_code_round_trips_through_its_wire_value() {
        for (i, code) in ALL_CODES.iter().enumerate() {
            assert_eq!(code.as_i32(), i as i32);
            assert_eq!(Code::from_i32(i as i32), *code);
        }
    }

    #[test]
    fn out_of_range_wire_values_are_unknown() {
        for v in [-1, 17, 100, i32::MAX, i32::MIN] {
            assert_eq!(Code::from_i32(v), Code::Unknown, "{v}");
        }
    }

    #[test]
    fn code_names_are_the_canonical_upper_case_names() {
        assert_eq!(Code::Ok.as_str(), "OK");
        assert_eq!(Code::Unavailable.as_str(), "UNAVAILABLE");
        assert_eq!(Code::InvalidArgument.as_str(), "INVALID_ARGUMENT");
        assert_eq!(Code::DeadlineExceeded.to_string(), "DEADLINE_EXCEEDED");
        assert_eq!(Code::Unauthenticated.to_string(), "UNAUTHENTICATED");
    }

    /// Asserts that `map` takes each input of `rows` to its code, and every
    /// input of `others` to `otherwise`.
    fn assert_maps<T: Copy + std::fmt::Debug>(
        map: impl Fn(T) -> Code,
        rows: &[(T, Code)],
        (others, otherwise): (&[T], Code),
    ) {
        for &(input, code) in rows {
            assert_eq!(map(input), code, "{input:?}");
        }
        for &input in others {
            assert_eq!(map(input), otherwise, "{input:?}");
        }
    }

    #[test]
    fn http_status_without_grpc_status_maps_per_the_spec_table() {
        let others = [0, 200, 204, 301, 500, 505, 999, u16::MAX];
        let table = HTTP_STATUS_TABLE;
        assert_maps(Code::from_http_status, &table, (&others, Code::Unknown));
    }

    #[test]
    fn rst_stream_reasons_map_per_the_spec() {
        let table = [
            (0x7, Code::Unavailable),
            (0x8, Code::Cancelled),
            (0xb, Code::ResourceExhausted),
            (0xc, Code::PermissionDenied),
        ];
        let others = [0x0, 0x1, 0x2, 0x3, 0x5, 0x6, 0x9, 0xa, 0xd, 0xff, u32::MAX];
        assert_maps(Code::from_h2_reason, &table, (&others, Code::Internal));
    }

    #[test]
    fn status_display_shows_code_and_message() {
        let s = Status::new(Code::Unavailable, "server going away");
        assert_eq!(s.to_string(), "UNAVAILABLE: server going away");
        assert_eq!(Status::new(Code::NotFound, "").to_string(), "NOT_FOUND");
    }

    #[test]
    fn status_accessors_and_details() {
        let s = Status::new(Code::Internal, "boom");
        assert_eq!(s.code(), Code::Internal);
        assert_eq!(s.message(), "boom");
        assert_eq!(s.details(), None);
        let s = s.with_details(Bytes::from_static(b"\x08\x01"));
        assert_eq!(s.details().map(|b| &b[..]), Some(&b"\x08\x01"[..]));
        let as_error: &dyn std::error::Error = &s;
        assert_eq!(as_error.to_string(), "INTERNAL: boom");
    }

    #[test]
    fn missing_grpc_status_gives_none() {
        assert_eq!(Status::from_header_map(&HeaderMap::new()), None);
        let only_message = headers(&[("grpc-message", b"hello")]);
        assert_eq!(Status::from_header_map(&only_message), None);
    }

    #[test]
    fn grpc_status_and_message_are_read() {
        let table: [(&[u8], Option<&str>, Code, &str); 5] = [
            (
                b"3",
                Some("key must not be empty"),
                Code::InvalidArgument,
                "key must not be empty",
            ),
            // No message: an empty one.
            (b"0", None, Code::Ok, ""),
            // The message is percent-decoded.
            (
                b"8",
                Some("na%C3%AFve 100%25"),
                Code::ResourceExhausted,
                "naïve 100%",
            ),
            // Blanks around the number and leading zeros are tolerated.
            (b" 14 ", None, Code::Unavailable, ""),
            (b"0005", None, Code::NotFound, ""),
        ];
        for (status, message, code, text) in table {
            let mut pairs = vec![("grpc-status", status)];
            pairs.extend(message.map(|message| ("grpc-message", message.as_bytes())));
            assert_eq!(parsed(&pairs), Status::new(code, text), "{status:?}");
        }
    }

    #[test]
    fn malformed_grpc_status_is_unknown_and_says_so() {
        for raw in [&b"abc"[..], b"", b"-1", b"+3", b"3.0", b"0x1", b"1 2"] {
            let s = parsed(&[("grpc-status", raw), ("grpc-message", b"orig")]);
            assert_eq!(s.code(), Code::Unknown, "{raw:?}");
            assert!(s.message().contains("malformed grpc-status"), "{s}");
            assert!(s.message().contains("orig"), "{s}");
        }
    }

    #[test]
    fn huge_or_unknown_numeric_grpc_status_is_unknown_without_panic() {
        for raw in [&b"17"[..], b"2147483648", b"99999999999999999999999999"] {
            let s = parsed(&[("grpc-status", raw), ("grpc-message", b"m")]);
            assert_eq!(s.code(), Code::Unknown, "{raw:?}");
            assert_eq!(s.message(), "m");
        }
    }

    #[test]
    fn details_are_decoded_padded_and_unpadded() {
        // "hi!!" is aGkhIQ== padded, aGkhIQ unpadded; short padding is
        // tolerated too.
        for raw in [&b"aGkhIQ=="[..], b"aGkhIQ", b"aGkhIQ="] {
            let s = parsed(&[("grpc-status", b"13"), ("grpc-status-details-bin", raw)]);
            assert_eq!(s.details().map(|b| &b[..]), Some(&b"hi!!"[..]), "{raw:?}");
        }
    }

    #[test]
    fn malformed_details_are_dropped_without_error() {
        for raw in crate::codec::binary::MALFORMED_BASE64 {
            let s = parsed(&[
                ("grpc-status", b"13"),
                ("grpc-message", b"kept"),
                ("grpc-status-details-bin", raw),
            ]);
            assert_eq!(s.code(), Code::Internal);
            assert_eq!(s.message(), "kept");
            assert_eq!(s.details(), None, "{raw:?}");
        }
    }

    #[test]
    fn non_utf8_header_bytes_never_panic() {
        let s = parsed(&[
            ("grpc-status", b"\xff\xfe"),
            ("grpc-message", b"\xff%zz%C3"),
            ("grpc-status-details-bin", b"\xff\x80"),
        ]);
        assert_eq!(s.code(), Code::Unknown);
        assert!(s.message().contains('\u{FFFD}'));
        assert_eq!(s.details(), None);
    }

    #[test]
    fn write_to_emits_status_encoded_message_and_unpadded_details() {
        let s = Status::new(Code::ResourceExhausted, "naïve 100%")
            .with_details(Bytes::from_static(b"hi!!"));
        let mut map = HeaderMap::new();
        s.write_to(&mut map);
        assert_eq!(map["grpc-status"], "8");
        assert_eq!(map["grpc-message"], "na%C3%AFve 100%25");
        assert_eq!(map["grpc-status-details-bin"], "aGkhIQ");
        assert_eq!(Status::from_header_map(&map), Some(s));
    }

    #[test]
    fn write_to_omits_empty_message_and_absent_details() {
        let mut map = headers(&[
            ("grpc-message", b"stale"),
            ("grpc-status-details-bin", b"aGkhIQ"),
        ]);
        Status::new(Code::Ok, "").write_to(&mut map);
        assert_eq!(map["grpc-status"], "0");
        assert!(map.get("grpc-message").is_none());
        assert!(map.get("grpc-status-details-bin").is_none());
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn write_to_then_read_round_trips_every_code() {
        for code in ALL_CODES {
            let s = Status::new(code, "line1\nline2\t\u{1F600}");
            let mut map = HeaderMap::new();
            s.write_to(&mut map);
            assert_eq!(Status::from_header_map(&map), Some(s));
        }
    }

    #[test]
    fn message_encoding_matches_the_reference_server() {
        assert_eq!(percent_encode_message("naïve 100%"), "na%C3%AFve 100%25");
    }

    #[test]
    fn message_encoding_keeps_printable_ascii_and_escapes_controls() {
        let printable: String = (0x20u8..=0x7e).map(char::from).collect();
        let expected = printable.replace('%', "%25");
        assert_eq!(percent_encode_message(&printable), expected);
        assert_eq!(percent_encode_message("a\r\nb\x7f"), "a%0D%0Ab%7F");
        assert_eq!(percent_encode_message(""), "");
    }

    #[test]
    fn message_encoding_uses_upper_case_hex() {
        assert_eq!(percent_encode_message("\u{ff}"), "%C3%BF");
    }

    #[test]
    fn lenient_decoding_keeps_malformed_escapes_literally() {
        assert_eq!(percent_decode_message(b"100%"), "100%");
        assert_eq!(percent_decode_message(b"%zz%4"), "%zz%4");
        assert_eq!(percent_decode_message(b"%%41"), "%A");
        assert_eq!(percent_decode_message(b"%c3%af"), "ï");
        assert_eq!(percent_decode_message(b""), "");
    }

    #[test]
    fn lenient_decoding_replaces_invalid_utf8() {
        assert_eq!(percent_decode_message(b"a%FFb"), "a\u{FFFD}b");
        assert_eq!(percent_decode_message(b"%C3"), "\u{FFFD}");
        assert_eq!(percent_decode_message(b"\xc3\xaf"), "ï");
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Bias towards '%' and hex digits to hit escape paths.
                    match seed % 4 {
                        0 => b'%',
                        1 => b"0123456789abcdefABCDEF"[(seed >> 8) as usize % 22],
                        _ => (seed >> 16) as u8,
                    }
                })
                .collect();
            let _ = percent_decode_message(&bytes);
        }
    }
}
