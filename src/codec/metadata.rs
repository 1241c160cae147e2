//! Custom call metadata (request headers such as `x-request-id`), validated
//! before it reaches the wire.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::binary::encode_bin;

use crate::error::Error;

/// Budget for custom metadata, counted the way HPACK counts a header list
/// (name + value + 32 per entry). Servers refuse header lists beyond a few
/// KiB (grpc's default limit is 8 KiB for the whole list, pseudo-headers
/// included), and a refused list fails the call in a confusing way, so we
/// refuse it first with a clear `InvalidArgument`.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// HPACK's per-entry overhead (RFC 7541 §4.1).
const HPACK_ENTRY_OVERHEAD: usize = 32;

/// Why a metadata entry was refused: a name or value that breaks the
/// gRPC rules, or an entry that takes the metadata over its budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidMetadata(pub String);

/// Headers owned by HTTP/2 or by the gRPC transport itself; letting callers
/// set them would corrupt the request or be refused by the server.
const RESERVED_NAMES: [&str; 9] = [
    "te",
    "content-type",
    "user-agent",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Custom metadata for a call: an ordered list of headers, each name at most
/// once. Every entry added through [`Metadata::insert`] or
/// [`Metadata::insert_bin`] has been validated against the gRPC rules, so
/// appending it to a request cannot produce a header the server refuses.
///
/// Names are compared exactly; valid names are lower-case, so look them up
/// in lower case.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    // A Vec beats a map here: a call carries a handful of entries, and the
    // order we send them in stays the order they were set in.
    entries: Vec<(HeaderName, HeaderValue)>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Metadata::default()
    }

    /// Sets an ASCII metadata entry, replacing any entry of the same name.
    ///
    /// Fails with [`InvalidMetadata`] when the name is not lower-case
    /// `[0-9a-z_.-]`, is reserved (`grpc-*`, `te`, `content-type`, ...),
    /// ends in `-bin` (use [`Metadata::insert_bin`]), when the value holds a
    /// byte outside printable ASCII 0x20..=0x7E, or when the entry would take
    /// the metadata over [`MAX_METADATA_BYTES`]. On failure nothing changes.
    pub fn insert(&mut self, name: &str, value: &str) -> Result<(), InvalidMetadata> {
        let header_name = validate_name(name)?;
        if name.ends_with("-bin") {
            return Err(invalid(format!(
                "metadata name {name:?} ends in \"-bin\": binary values must go through insert_bin"
            )));
        }
        if let Some(bad) = value.bytes().find(|b| !(0x20..=0x7e).contains(b)) {
            return Err(invalid(format!(
                "metadata value for {name:?} contains byte {bad:#04x}; \
                 ASCII metadata must be printable (0x20-0x7E), use a -bin name for other data"
            )));
        }
        let header_value = HeaderValue::from_str(value).map_err(|_| {
            invalid(format!(
                "metadata value for {name:?} is not a valid header value"
            ))
        })?;
        self.set_checked(header_name, header_value)
    }

    /// Sets a binary metadata entry, replacing any entry of the same name.
    /// The name must end in `-bin`; the value travels as unpadded standard
    /// base64. Fails with [`InvalidMetadata`] on a bad name or when the entry
    /// would take the metadata over [`MAX_METADATA_BYTES`].
    pub fn insert_bin(&mut self, name: &str, value: &[u8]) -> Result<(), InvalidMetadata> {
        let header_name = validate_name(name)?;
        if !name.ends_with("-bin") {
            return Err(invalid(format!(
                "binary metadata name {name:?} must end in \"-bin\""
            )));
        }
        let header_value = HeaderValue::from_str(&encode_bin(value)).map_err(|_| {
            invalid(format!(
                "metadata value for {name:?} is not a valid header value"
            ))
        })?;
        self.set_checked(header_name, header_value)
    }

    /// The value of the entry called `name`, if any. Binary values are
    /// returned still base64-encoded; see [`decode_bin`](super::decode_bin).
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.entries
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v)
    }

    /// Removes the entry called `name`, if any.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| n.as_str() != name);
    }

    /// The entries, in the order they will be sent.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.entries.iter().map(|(n, v)| (n, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Size of the entries as HPACK counts them: name + value + 32 each.
    pub fn encoded_len(&self) -> usize {
        self.entries.iter().map(|(n, v)| entry_len(n, v)).sum()
    }

    /// Appends every entry to `headers`, after whatever is already there.
    pub fn append_to(&self, headers: &mut HeaderMap) {
        headers.reserve(self.entries.len());
        for (name, value) in &self.entries {
            headers.append(name.clone(), value.clone());
        }
    }

    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name, value)),
        }
    }

    fn set_checked(&mut self, name: HeaderName, value: HeaderValue) -> Result<(), InvalidMetadata> {
        let replaced = self
            .entries
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(n, v)| entry_len(n, v));
        let total = self.encoded_len() - replaced + entry_len(&name, &value);
        check_total(total)?;
        self.set(name, value);
        Ok(())
    }
}

fn entry_len(name: &HeaderName, value: &HeaderValue) -> usize {
    name.as_str().len() + value.len() + HPACK_ENTRY_OVERHEAD
}

fn check_total(total: usize) -> Result<(), InvalidMetadata> {
    if total > MAX_METADATA_BYTES {
        return Err(invalid(format!(
            "metadata takes {total} bytes (name + value + 32 per entry), \
             over the limit of {MAX_METADATA_BYTES} bytes"
        )));
    }
    Ok(())
}

fn is_reserved(name: &str) -> bool {
    name.starts_with("grpc-") || RESERVED_NAMES.contains(&name)
}

fn validate_name(name: &str) -> Result<HeaderName, InvalidMetadata> {
    if name.is_empty() {
        return Err(invalid("metadata name must not be empty".to_string()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !matches!(c, '0'..='9' | 'a'..='z' | '_' | '.' | '-'))
    {
        return Err(invalid(format!(
            "metadata name {name:?} contains {bad:?}; names are lower-case [0-9a-z_.-]"
        )));
    }
    if is_reserved(name) {
        return Err(invalid(format!(
            "metadata name {name:?} is reserved for the transport"
        )));
    }
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| invalid(format!("metadata name {name:?} is not a valid header name")))
}

fn invalid(message: String) -> InvalidMetadata {
    InvalidMetadata(message)
}

/// A metadata entry the client refuses before sending.
impl From<InvalidMetadata> for Error {
    fn from(invalid: InvalidMetadata) -> Error {
        Error::Validation(invalid.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::binary::decode_bin;

    fn assert_invalid(result: Result<(), InvalidMetadata>, mentions: &str) {
        let refused = result.expect_err("should be refused");
        assert!(
            refused.0.contains(mentions),
            "{refused} should mention {mentions}"
        );
    }

    #[test]
    fn ascii_entry_is_stored_and_read_back() {
        let mut md = Metadata::new();
        assert!(md.is_empty());
        md.insert("x-request-id", "abc 123").expect("valid");
        assert_eq!(md.len(), 1);
        assert_eq!(
            md.get("x-request-id").map(|v| v.as_bytes()),
            Some(&b"abc 123"[..])
        );
        assert_eq!(md.get("x-other"), None);
    }

    #[test]
    fn insert_replaces_an_entry_of_the_same_name_in_place() {
        let mut md = Metadata::new();
        md.insert("a", "1").expect("valid");
        md.insert("b", "2").expect("valid");
        md.insert("a", "3").expect("valid");
        let pairs: Vec<_> = md.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        assert_eq!(pairs, vec![("a", &b"3"[..]), ("b", &b"2"[..])]);
    }

    #[test]
    fn every_allowed_name_character_is_accepted() {
        let mut md = Metadata::new();
        md.insert("0123456789abcdefghijklmnopqrstuvwxyz_.-", "v")
            .expect("valid");
    }

    #[test]
    fn empty_name_is_refused() {
        assert_invalid(Metadata::new().insert("", "v"), "empty");
    }

    #[test]
    fn upper_case_and_other_characters_in_names_are_refused() {
        for name in [
            "X-Request-Id",
            "x id",
            "x:y",
            ":path",
            "x/y",
            "ключ",
            "x\n",
            "x\u{0}",
        ] {
            assert_invalid(Metadata::new().insert(name, "v"), "metadata name");
        }
    }

    #[test]
    fn reserved_names_are_refused() {
        // Spelled out here, not read from RESERVED_NAMES: a name dropped
        // from the constant must fail this test.
        for name in [
            "grpc-timeout",
            "grpc-status",
            "grpc-custom",
            "te",
            "content-type",
            "user-agent",
            "host",
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            assert_invalid(Metadata::new().insert(name, "v"), "reserved");
        }
        assert_invalid(Metadata::new().insert_bin("grpc-x-bin", b"v"), "reserved");
    }

    #[test]
    fn names_merely_containing_reserved_words_are_allowed() {
        for name in ["x-grpc-thing", "tee", "my-host"] {
            Metadata::new().insert(name, "v").expect(name);
        }
    }

    #[test]
    fn ascii_value_must_be_printable() {
        for value in ["caf\u{e9}", "a\tb", "a\r\nb", "\u{7f}", "\u{0}"] {
            assert_invalid(Metadata::new().insert("x-v", value), "\"x-v\"");
        }
    }

    #[test]
    fn raw_non_ascii_value_is_refused_because_the_server_stalls_on_it() {
        let mut md = Metadata::new();
        assert_invalid(md.insert("x-cache-namespace", "naïve"), "0xc3");
        assert!(md.is_empty());
    }

    #[test]
    fn printable_ascii_values_including_spaces_and_empty_are_accepted() {
        let all: String = (0x20u8..=0x7e).map(char::from).collect();
        let mut md = Metadata::new();
        md.insert("x-all", &all).expect("valid");
        md.insert("x-empty", "").expect("valid");
        md.insert("x-ns", "  padded  ").expect("valid");
    }

    #[test]
    fn ascii_insert_of_a_bin_name_is_refused() {
        assert_invalid(Metadata::new().insert("trace-bin", "AAAA"), "insert_bin");
    }

    #[test]
    fn binary_value_is_sent_as_unpadded_base64() {
        let mut md = Metadata::new();
        md.insert_bin("trace-bin", b"hi!!").expect("valid");
        md.insert_bin("empty-bin", b"").expect("valid");
        md.insert_bin("raw-bin", &[0xff, 0x00, 0xfe])
            .expect("valid");
        assert_eq!(
            md.get("trace-bin").map(|v| v.as_bytes()),
            Some(&b"aGkhIQ"[..])
        );
        assert_eq!(md.get("empty-bin").map(|v| v.as_bytes()), Some(&b""[..]));
        assert_eq!(md.get("raw-bin").map(|v| v.as_bytes()), Some(&b"/wD+"[..]));
    }

    #[test]
    fn binary_name_must_end_in_bin() {
        assert_invalid(Metadata::new().insert_bin("trace", b"x"), "-bin");
        assert_invalid(
            Metadata::new().insert_bin("trace-BIN", b"x"),
            "metadata name",
        );
    }

    #[test]
    fn binary_values_round_trip() {
        let data: Vec<u8> = (0..=255).collect();
        let mut md = Metadata::new();
        md.insert_bin("blob-bin", &data).expect("valid");
        let sent = md.get("blob-bin").expect("present");
        assert_eq!(decode_bin(sent.as_bytes()), Some(data));
    }

    #[test]
    fn remove_drops_the_entry_and_ignores_missing_names() {
        let mut md = Metadata::new();
        md.insert("a", "1").expect("valid");
        md.remove("missing");
        assert_eq!(md.len(), 1);
        md.remove("a");
        assert!(md.is_empty());
    }

    #[test]
    fn encoded_len_counts_name_value_and_32_per_entry() {
        let mut md = Metadata::new();
        assert_eq!(md.encoded_len(), 0);
        md.insert("ab", "cde").expect("valid");
        md.insert_bin("x-bin", b"hi!!").expect("valid");
        assert_eq!(md.encoded_len(), (2 + 3 + 32) + (5 + 6 + 32));
    }

    #[test]
    fn insert_refuses_an_entry_that_exceeds_the_budget_and_keeps_the_old_state() {
        let mut md = Metadata::new();
        let name = "x-big";
        let fits = "v".repeat(MAX_METADATA_BYTES - name.len() - 32);
        md.insert(name, &fits).expect("exactly at the limit");
        assert_eq!(md.encoded_len(), MAX_METADATA_BYTES);
        assert_invalid(md.insert("y", ""), "limit");
        assert_eq!(md.len(), 1);
        // Replacing the big entry with a smaller one frees its budget.
        md.insert(name, "small").expect("replacement shrinks");
        md.insert("y", "").expect("room again");
    }

    #[test]
    fn one_byte_over_the_budget_is_refused() {
        let mut md = Metadata::new();
        let too_big = "v".repeat(MAX_METADATA_BYTES - 1 - 32 + 1);
        assert_invalid(md.insert("x", &too_big), "limit");
        assert_invalid(
            md.insert_bin("x-bin", &vec![0u8; MAX_METADATA_BYTES]),
            "limit",
        );
        assert!(md.is_empty());
    }

    #[test]
    fn append_to_keeps_order_after_existing_headers() {
        let mut md = Metadata::new();
        md.insert("x-b", "2").expect("valid");
        md.insert("x-a", "1").expect("valid");
        let mut headers = HeaderMap::new();
        headers.insert("te", HeaderValue::from_static("trailers"));
        md.append_to(&mut headers);
        let names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["te", "x-b", "x-a"]);
    }
}
