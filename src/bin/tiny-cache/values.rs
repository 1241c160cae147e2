//! Values in and out of the command line: where a written value comes from
//! (text, base64, hex, a file, stdin) and how a read value is shown
//! (`--format`).
//!
//! Everything here is byte for byte: a value read from a file or stdin is
//! stored exactly as read, with no newline added or removed.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::Failure;

/// Largest value read from a file or stdin, in bytes: a write carries its
/// value in one gRPC message, which the client and the reference server cap
/// at 4 MiB, so reading more would only fill memory to be refused.
pub const MAX_VALUE_INPUT_BYTES: u64 = 4 * 1024 * 1024;

/// What a value argument of `-` (or a `--value-file -`) reads.
pub const STDIN_MARK: &str = "-";

/// The value of `set` and `set-if-absent`: exactly one of a text argument
/// or one of the options.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ValueInput {
    /// The value as text, stored as its UTF-8 bytes; `-` reads the value
    /// from stdin, byte for byte (use `--` before a VALUE that starts with
    /// '-').
    #[arg(value_name = "VALUE")]
    text: Option<String>,
    /// The value in base64 (standard alphabet, padded).
    #[arg(long, value_name = "BASE64")]
    value_base64: Option<String>,
    /// The value in hexadecimal (two digits a byte, either case).
    #[arg(long, value_name = "HEX")]
    value_hex: Option<String>,
    /// Read the value from FILE, byte for byte (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    value_file: Option<PathBuf>,
}

impl ValueInput {
    /// The value's bytes.
    pub fn read(&self) -> Result<Vec<u8>, Failure> {
        let source = Source::pick(
            self.text.as_deref(),
            self.value_base64.as_deref(),
            self.value_hex.as_deref(),
            self.value_file.as_deref(),
        );
        match source {
            Some(source) => source.read(),
            // clap's required group makes this unreachable from the command
            // line; say so plainly rather than panic.
            None => Err(Failure::Usage("a value is required".into())),
        }
    }
}

/// The two values of `compare-and-set`. Each is given by an option or by
/// text; the text arguments fill, in order, the values no option gave.
#[derive(Debug, Args)]
pub struct CasInput {
    /// The expected and the new value as text, in that order; a value
    /// given by an option takes no text, so `--expected-value-hex 00 NEW`
    /// leaves one text, the new value. `-` reads from stdin.
    #[arg(value_name = "EXPECTED VALUE", num_args = 0..=2)]
    texts: Vec<String>,
    /// The expected value in base64.
    #[arg(long, value_name = "BASE64", group = "expected")]
    expected_value_base64: Option<String>,
    /// The expected value in hexadecimal.
    #[arg(long, value_name = "HEX", group = "expected")]
    expected_value_hex: Option<String>,
    /// Read the expected value from FILE (`-` for stdin).
    #[arg(long, value_name = "FILE", group = "expected")]
    expected_value_file: Option<PathBuf>,
    /// The new value in base64.
    #[arg(long, value_name = "BASE64", group = "new")]
    value_base64: Option<String>,
    /// The new value in hexadecimal.
    #[arg(long, value_name = "HEX", group = "new")]
    value_hex: Option<String>,
    /// Read the new value from FILE (`-` for stdin).
    #[arg(long, value_name = "FILE", group = "new")]
    value_file: Option<PathBuf>,
}

impl CasInput {
    /// The expected and the new value's bytes.
    pub fn read(&self) -> Result<(Vec<u8>, Vec<u8>), Failure> {
        let expected = Source::pick(
            None,
            self.expected_value_base64.as_deref(),
            self.expected_value_hex.as_deref(),
            self.expected_value_file.as_deref(),
        );
        let new = Source::pick(
            None,
            self.value_base64.as_deref(),
            self.value_hex.as_deref(),
            self.value_file.as_deref(),
        );
        let wanted = usize::from(expected.is_none()) + usize::from(new.is_none());
        if self.texts.len() != wanted {
            return Err(Failure::Usage(format!(
                "compare-and-set needs an expected and a new value: {wanted} as text \
                 argument(s) besides the options given, got {}",
                self.texts.len()
            )));
        }
        let mut texts = self.texts.iter().map(|t| Source::Text(t));
        let expected = expected.or_else(|| texts.next());
        let new = new.or_else(|| texts.next());
        let (expected, new) = match (expected, new) {
            (Some(expected), Some(new)) => (expected, new),
            // The count check above gave each a source.
            _ => return Err(Failure::Usage("two values are required".into())),
        };
        if expected.is_stdin() && new.is_stdin() {
            return Err(Failure::Usage(
                "stdin can give only one of the two values".into(),
            ));
        }
        Ok((expected.read()?, new.read()?))
    }
}

/// Where one value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source<'a> {
    Text(&'a str),
    Base64(&'a str),
    Hex(&'a str),
    File(&'a Path),
}

impl<'a> Source<'a> {
    /// The one source given, if any (clap refuses more than one).
    fn pick(
        text: Option<&'a str>,
        base64: Option<&'a str>,
        hex: Option<&'a str>,
        file: Option<&'a Path>,
    ) -> Option<Source<'a>> {
        text.map(Source::Text)
            .or(base64.map(Source::Base64))
            .or(hex.map(Source::Hex))
            .or(file.map(Source::File))
    }

    fn is_stdin(&self) -> bool {
        match self {
            Source::Text(text) => *text == STDIN_MARK,
            Source::File(path) => path.as_os_str() == STDIN_MARK,
            Source::Base64(_) | Source::Hex(_) => false,
        }
    }

    /// The bytes; input that cannot be read or decoded is a usage error
    /// (exit 2): the command line needs fixing, nothing was sent.
    fn read(self) -> Result<Vec<u8>, Failure> {
        if self.is_stdin() {
            return read_capped(std::io::stdin().lock(), "stdin");
        }
        match self {
            Source::Text(text) => Ok(text.as_bytes().to_vec()),
            Source::Base64(text) => base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| Failure::Usage(format!("the value is not valid base64: {e}"))),
            Source::Hex(text) => hex::decode(text.trim())
                .map_err(|e| Failure::Usage(format!("the value is not valid hexadecimal: {e}"))),
            Source::File(path) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    Failure::Usage(format!(
                        "cannot read the value from {}: {e}",
                        path.display()
                    ))
                })?;
                read_capped(file, &path.display().to_string())
            }
        }
    }
}

/// Reads all of `input`, refusing more than [`MAX_VALUE_INPUT_BYTES`].
fn read_capped(input: impl Read, name: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    input
        .take(MAX_VALUE_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::Usage(format!("cannot read the value from {name}: {e}")))?;
    if bytes.len() as u64 > MAX_VALUE_INPUT_BYTES {
        return Err(Failure::Usage(format!(
            "the value from {name} is over {MAX_VALUE_INPUT_BYTES} bytes, the largest a \
             write can carry"
        )));
    }
    Ok(bytes)
}

/// How a read value is shown: `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The value as UTF-8 text; a value that is not UTF-8 is an error.
    Utf8,
    /// Base64, standard alphabet, padded.
    Base64,
    /// Lower-case hexadecimal, two digits a byte.
    Hex,
}

impl Format {
    /// The format JSON output uses when none was asked for: text when the
    /// value is UTF-8, else base64 (the `format` field says which).
    pub fn fitting(value: &[u8]) -> Format {
        if std::str::from_utf8(value).is_ok() {
            Format::Utf8
        } else {
            Format::Base64
        }
    }

    /// `value` in this format; only [`Format::Utf8`] can fail, for a value
    /// that is not UTF-8 (exit 3: the value cannot be shown as asked).
    pub fn encode(self, key: &str, value: &[u8]) -> Result<String, Failure> {
        match self {
            Format::Utf8 => std::str::from_utf8(value).map(str::to_owned).map_err(|_| {
                Failure::Other(format!(
                    "the value of key {key:?} is not valid UTF-8; use --format base64 or hex"
                ))
            }),
            Format::Base64 => Ok(base64::engine::general_purpose::STANDARD.encode(value)),
            Format::Hex => Ok(hex::encode(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_decodes_to_the_same_bytes() {
        let bytes = b"a\x00\xff\n".to_vec();
        assert_eq!(Source::Base64("YQD/Cg==").read().ok(), Some(bytes.clone()));
        assert_eq!(Source::Hex("6100FF0a").read().ok(), Some(bytes));
        assert_eq!(Source::Text("héllo").read().ok(), Some("héllo".into()));
        assert!(matches!(Source::Hex("abc").read(), Err(Failure::Usage(_))));
        assert!(matches!(
            Source::Base64("!!").read(),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn reading_stops_past_the_cap() {
        let just_fits = std::io::repeat(7).take(MAX_VALUE_INPUT_BYTES);
        assert_eq!(
            read_capped(just_fits, "x").map(|b| b.len() as u64).ok(),
            Some(MAX_VALUE_INPUT_BYTES)
        );
        let too_long = std::io::repeat(7).take(MAX_VALUE_INPUT_BYTES + 1);
        assert!(matches!(read_capped(too_long, "x"), Err(Failure::Usage(_))));
    }

    #[test]
    fn formats_encode_and_utf8_refuses_binary() {
        let value = [0u8, 0xfe, b'A'];
        assert_eq!(Format::Hex.encode("k", &value).ok(), Some("00fe41".into()));
        assert_eq!(Format::Base64.encode("k", &value).ok(), Some("AP5B".into()));
        assert!(Format::Utf8.encode("k", &value).is_err());
        assert_eq!(Format::fitting(&value), Format::Base64);
        assert_eq!(Format::fitting(b"text"), Format::Utf8);
    }
}
