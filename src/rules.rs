//! The contract's rules for keys, namespaces and TTLs, in one place.
//!
//! The client checks them before any network I/O so a bad key never costs a
//! round trip, and the embedded server applies the very same functions, so
//! the two can never disagree about what is valid.

use std::fmt::Write as _;
use std::time::Duration;

use crate::error::Error;

/// Longest key, in Unicode scalar values (not bytes), including the
/// namespace prefix once namespaced: the reference server's limit.
///
/// ```
/// use tiny_cache_client::rules::{check_key, MAX_KEY_CHARS};
///
/// // Characters, not bytes: 256 two-byte characters are a valid key.
/// assert!(check_key(&"é".repeat(MAX_KEY_CHARS), None).is_ok());
/// assert!(check_key(&"k".repeat(MAX_KEY_CHARS + 1), None).is_err());
/// ```
pub const MAX_KEY_CHARS: usize = 256;

/// Longest namespace, in characters, after trimming white space.
///
/// ```
/// use tiny_cache_client::rules::{parse_namespace, MAX_NAMESPACE_CHARS};
///
/// let longest = "n".repeat(MAX_NAMESPACE_CHARS);
/// assert!(parse_namespace(&longest).is_ok());
/// assert!(parse_namespace(&format!("{longest}n")).is_err());
/// // Trimmed before counting.
/// assert!(parse_namespace(&format!("  {longest}  ")).is_ok());
/// ```
pub const MAX_NAMESPACE_CHARS: usize = 64;

/// The request header that carries the caller's namespace.
///
/// ```
/// use tiny_cache_client::rules::NAMESPACE_HEADER;
///
/// // What `ClientBuilder::namespace` and `Client::with_namespace` send.
/// assert_eq!(NAMESPACE_HEADER, "x-cache-namespace");
/// ```
pub const NAMESPACE_HEADER: &str = "x-cache-namespace";

/// The request header that carries a correlation id.
///
/// ```
/// # #[cfg(feature = "server")] {
/// # let server = tiny_cache_client::server::Server::local()?;
/// # let client = tiny_cache_client::Client::new(&server.address())?;
/// use tiny_cache_client::rules::REQUEST_ID_HEADER;
///
/// // Sent as plain metadata, the id comes back in the response headers.
/// let traced = client.with_metadata(REQUEST_ID_HEADER, "req-42")?;
/// let response = traced.call_with_metadata(|c| c.stats())?;
/// assert_eq!(response.metadata().get(REQUEST_ID_HEADER), Some("req-42"));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Why a key or namespace breaks the rules. The text is the reference
/// server's own details text, word for word (`Key cannot be empty`, ...), so
/// the client's validation errors and the embedded server's
/// `INVALID_ARGUMENT` details read the same as the reference server's.
///
/// ```
/// use tiny_cache_client::rules::{check_key, RuleViolation};
/// use tiny_cache_client::{Client, Error};
///
/// assert_eq!(check_key("", None), Err(RuleViolation("Key cannot be empty".into())));
/// // The client reports the same text as a validation error, before any I/O.
/// let client = Client::new("127.0.0.1:50051")?;
/// assert_eq!(client.get(""), Err(Error::Validation("Key cannot be empty".into())));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation(pub String);

impl std::fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses an `x-cache-namespace` value: trimmed; blank means the shared key
/// space (`None`); otherwise at most 64 characters, starting with a letter
/// or digit, made of letters, digits, `.`, `_` and `-` (ASCII only: the
/// value travels as an ASCII header).
///
/// ```
/// use tiny_cache_client::rules::parse_namespace;
///
/// assert_eq!(parse_namespace("  app ").unwrap(), Some("app"));
/// assert_eq!(parse_namespace("   ").unwrap(), None);
/// assert!(parse_namespace("-app").is_err());
/// ```
pub fn parse_namespace(raw: &str) -> Result<Option<&str>, RuleViolation> {
    let namespace = raw.trim();
    if namespace.is_empty() {
        return Ok(None);
    }
    let chars = namespace.chars().count();
    if chars > MAX_NAMESPACE_CHARS {
        return Err(RuleViolation(format!(
            "Namespace is too long (max {MAX_NAMESPACE_CHARS})"
        )));
    }
    let starts_well = namespace
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let well_formed = namespace
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !starts_well || !well_formed {
        return Err(RuleViolation(
            "Namespace must contain only letters, numbers, dots, dashes, or underscores".into(),
        ));
    }
    Ok(Some(namespace))
}

/// Checks a key on its own and as stored under `namespace`
/// (`<namespace length>:<namespace>:<key>`), both within
/// [`MAX_KEY_CHARS`].
///
/// ```
/// use tiny_cache_client::rules::check_key;
///
/// assert!(check_key("user:42", None).is_ok());
/// assert!(check_key("", None).is_err());
/// let long = "k".repeat(251);
/// assert!(check_key(&long, None).is_ok());
/// assert!(check_key(&long, Some("app")).is_err()); // "3:app:" + 251 = 257
/// ```
pub fn check_key(key: &str, namespace: Option<&str>) -> Result<(), RuleViolation> {
    let key_chars = char_len(key);
    if key_chars == 0 {
        return Err(RuleViolation("Key cannot be empty".into()));
    }
    if key_chars > MAX_KEY_CHARS {
        return Err(RuleViolation(format!(
            "Key is too long (max {MAX_KEY_CHARS})"
        )));
    }
    if let Some(namespace) = namespace {
        let prefix_chars = namespace_prefix_chars(namespace);
        if key_chars + prefix_chars > MAX_KEY_CHARS {
            return Err(RuleViolation(format!(
                "Namespaced key is too long (max storage key length {MAX_KEY_CHARS}; \
                 namespace prefix adds {prefix_chars} characters)"
            )));
        }
    }
    Ok(())
}

/// The storage key the server files `key` under: the key itself in the
/// shared key space, `<namespace length>:<namespace>:<key>` otherwise.
///
/// `storage_key("k", Some("app"))` is `"3:app:k"`; `storage_key("k",
/// None)` is `"k"`. The server's business: the client sends the key and the
/// namespace apart.
// Only the embedded server files keys under it (and the tests check the
// client's limits against it).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn storage_key(key: &str, namespace: Option<&str>) -> String {
    let Some(namespace) = namespace else {
        return key.to_owned();
    };
    let namespace_chars = char_len(namespace);
    // One exact allocation: the server builds this on every namespaced call.
    let mut stored =
        String::with_capacity(decimal_digits(namespace_chars) + 2 + namespace.len() + key.len());
    // Writing into a String cannot fail.
    let _ = write!(stored, "{namespace_chars}:{namespace}:{key}");
    stored
}

/// Characters the `<namespace length>:<namespace>:` prefix adds to a key.
fn namespace_prefix_chars(namespace: &str) -> usize {
    let namespace_chars = char_len(namespace);
    decimal_digits(namespace_chars) + 1 + namespace_chars + 1
}

/// Length in Unicode scalar values; ASCII text (every valid namespace, most
/// keys) skips the character walk.
fn char_len(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    }
}

fn decimal_digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// The reference server's details text for an entry over the per-entry
/// limit, word for word.
pub(crate) const OVERSIZE_TEXT: &str = "Value exceeds maximum allowed cache entry size";

/// The reference server's details text for an entry that cannot fit under
/// the item and memory limits, word for word.
pub(crate) const NO_ROOM_TEXT: &str = "Cache capacity exhausted and cannot accommodate new entry";

/// A positive, finite number of seconds, fractions allowed (`"0.5"`,
/// `"30"`): how the environment (`CACHE_TIMEOUT`) and the command-line
/// tool's flags spell a duration.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::rules::parse_seconds;
///
/// assert_eq!(parse_seconds(" 0.25 "), Ok(Duration::from_millis(250)));
/// assert!(parse_seconds("0").is_err());
/// assert!(parse_seconds("soon").is_err());
/// ```
pub fn parse_seconds(raw: &str) -> Result<Duration, RuleViolation> {
    let seconds: f64 = raw
        .trim()
        .parse()
        .map_err(|_| RuleViolation(format!("{raw:?} is not a number of seconds")))?;
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(RuleViolation(format!(
            "{raw:?} must be a positive number of seconds"
        )));
    }
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| RuleViolation(format!("{raw:?} seconds is too long")))
}

/// A key or namespace the client refuses before sending.
impl From<RuleViolation> for Error {
    fn from(violation: RuleViolation) -> Error {
        Error::Validation(violation.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_length_counts_characters_not_bytes() {
        let snowmen = "☃".repeat(256);
        assert_eq!(snowmen.len(), 768);
        assert!(check_key(&snowmen, None).is_ok());
        assert!(check_key(&"☃".repeat(257), None).is_err());
    }

    #[test]
    fn keys_of_256_characters_pass_and_257_fail() {
        assert!(check_key(&"a".repeat(256), None).is_ok());
        assert!(check_key(&"a".repeat(257), None).is_err());
    }

    #[test]
    fn empty_key_fails() {
        assert!(check_key("", None).is_err());
        assert!(check_key("", Some("app")).is_err());
    }

    #[test]
    fn namespaced_key_length_matches_the_storage_key() {
        for namespace in ["a", "app", &"n".repeat(10), &"n".repeat(64)] {
            let limit = MAX_KEY_CHARS - storage_key("", Some(namespace)).chars().count();
            assert!(check_key(&"k".repeat(limit), Some(namespace)).is_ok());
            assert!(check_key(&"k".repeat(limit + 1), Some(namespace)).is_err());
        }
    }

    #[test]
    fn namespace_is_trimmed_and_blank_means_shared() {
        assert_eq!(parse_namespace(" tenant-1 "), Ok(Some("tenant-1")));
        assert_eq!(parse_namespace(""), Ok(None));
        assert_eq!(parse_namespace("\t \n"), Ok(None));
    }

    #[test]
    fn namespace_rules_reject_bad_names() {
        for bad in [
            ".app",
            "_app",
            "-app",
            "a b",
            "a/b",
            "a:b",
            "café",
            &"n".repeat(65),
        ] {
            assert!(parse_namespace(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "9lives", "app.v2_x-y", &"n".repeat(64)] {
            assert!(parse_namespace(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn violations_are_worded_as_the_reference_server_words_them() {
        let text = |result: Result<(), RuleViolation>| result.unwrap_err().0;
        assert_eq!(text(check_key("", None)), "Key cannot be empty");
        assert_eq!(
            text(check_key(&"k".repeat(257), None)),
            "Key is too long (max 256)"
        );
        // "3:app:" is 6 characters; "10:nnnnnnnnnn:" is 14.
        assert_eq!(
            text(check_key(&"k".repeat(251), Some("app"))),
            "Namespaced key is too long (max storage key length 256; namespace prefix adds 6 characters)"
        );
        assert_eq!(
            text(check_key(&"k".repeat(243), Some(&"n".repeat(10)))),
            "Namespaced key is too long (max storage key length 256; namespace prefix adds 14 characters)"
        );
        let namespace = |raw: &str| parse_namespace(raw).map(|_| ()).unwrap_err().0;
        assert_eq!(namespace(&"n".repeat(65)), "Namespace is too long (max 64)");
        for bad in ["-app", "a b", "café"] {
            assert_eq!(
                namespace(bad),
                "Namespace must contain only letters, numbers, dots, dashes, or underscores"
            );
        }
    }
}
