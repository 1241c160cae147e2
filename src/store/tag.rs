//! Hash tags: the part of a key that decides where a sharded store places
//! it, so keys that must live together (an entry and its generation, a key
//! and its lease) can be made to.

/// The part of `key` a sharded store places it by: the text between the
/// first `{` and the first `}` after it, when that text is not empty;
/// otherwise the whole key. Redis Cluster's rule, so keys already tagged
/// for Redis keep their grouping.
///
/// `Cluster` (feature `cluster`) places every key by its tag: keys
/// with the same tag live on the same servers, and a multi-key call over
/// them is one call to each of those servers. A plain
/// [`Client`](crate::Client) has one server and ignores tags.
///
/// ```
/// use tiny_cache_client::hash_tag;
///
/// assert_eq!(hash_tag("user:{42}:profile"), "42");
/// assert_eq!(hash_tag("lease:user:{42}:profile"), "42");
/// assert_eq!(hash_tag("plain-key"), "plain-key");
/// // An empty or unclosed tag is no tag: the whole key decides.
/// assert_eq!(hash_tag("a{}b"), "a{}b");
/// assert_eq!(hash_tag("a{b"), "a{b");
/// ```
pub fn hash_tag(key: &str) -> &str {
    let Some(open) = key.find('{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.find('}') {
        Some(close) if close > 0 => &rest[..close],
        _ => key,
    }
}

/// A key for `prefix` that lives on the same servers as `key` (shares its
/// [`hash_tag`]), within `max_chars` characters: `prefix:={key}` when `key`
/// carries a tag (the `=` keeps it apart from the other form: `x` and
/// `{x}` get different keys), `prefix:{key}` when it has no braces at
/// all, with the text after the tag replaced by its SHA-256 when too long.
/// `None` when
/// no such key fits (an untagged key too long to become a tag, or one
/// whose braces make no tag), for the caller to place the key apart.
#[cfg(feature = "cache")]
pub(crate) fn companion_key(prefix: &str, key: &str, max_chars: usize) -> Option<String> {
    let tag = hash_tag(key);
    let tagged = tag.len() != key.len();
    let verbatim = if tagged {
        format!("{prefix}:={key}")
    } else if key.contains(['{', '}']) {
        return None;
    } else {
        format!("{prefix}:{{{key}}}")
    };
    if verbatim.chars().count() <= max_chars {
        return Some(verbatim);
    }
    // `={tag}#<digest of the key>`: 69 characters besides the prefix and tag.
    let hashed = format!("{prefix}:={{{tag}}}#{}", sha256_hex(key));
    (hash_tag(&hashed) == tag && hashed.chars().count() <= max_chars).then_some(hashed)
}

/// The SHA-256 of `text`, in lower-case hex.
#[cfg(feature = "cache")]
pub(crate) fn sha256_hex(text: &str) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        // Writing into a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_non_empty_brace_pair_is_the_tag() {
        assert_eq!(hash_tag("{a}{b}"), "a");
        assert_eq!(hash_tag("x{a}b}"), "a");
        assert_eq!(hash_tag("}{a}"), "a");
        assert_eq!(hash_tag("{}{a}"), "{}{a}");
        assert_eq!(hash_tag(""), "");
        assert_eq!(hash_tag("{é}"), "é");
    }

    #[cfg(feature = "cache")]
    #[test]
    fn companion_keys_share_the_tag_or_are_refused() {
        assert_eq!(
            companion_key("lease", "user:7", 250).as_deref(),
            Some("lease:{user:7}")
        );
        assert_eq!(
            companion_key("lease", "c:{4:user7}1:x", 250).as_deref(),
            Some("lease:=c:{4:user7}1:x")
        );
        assert_ne!(
            companion_key("lease", "x", 250),
            companion_key("lease", "{x}", 250)
        );
        let long = format!("{{t}}{}", "x".repeat(300));
        let companion = companion_key("lease", &long, 250).unwrap();
        assert_eq!(hash_tag(&companion), "t");
        assert!(companion.len() <= 250);
        assert_eq!(companion_key("lease", "a}b", 250), None);
        assert_eq!(companion_key("lease", &"x".repeat(300), 250), None);
    }
}
