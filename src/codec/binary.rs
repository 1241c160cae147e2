//! The base64 of `-bin` metadata values (custom binary metadata and
//! `grpc-status-details-bin`), as the gRPC spec asks: sent unpadded,
//! accepted padded or not.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// Encodes `-bin` values: the gRPC spec says send base64 without padding.
const BIN_ENCODE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_encode_padding(false),
);

/// Decodes `-bin` values: the spec says accept padded and unpadded input.
/// Non-zero trailing bits are tolerated too, since they cannot change the
/// decoded bytes and refusing them would only lose data a peer sent.
const BIN_DECODE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The unpadded base64 of a `-bin` metadata value.
///
/// ```
/// # #[cfg(feature = "unstable-internals")] {
/// use tiny_cache_client::codec::encode_bin;
/// assert_eq!(encode_bin(b"hi!!"), "aGkhIQ");
/// # }
/// ```
pub fn encode_bin(value: &[u8]) -> String {
    BIN_ENCODE.encode(value)
}

/// Decodes the base64 of a `-bin` metadata value, padded or unpadded;
/// `None` when it is not valid base64.
///
/// ```
/// # #[cfg(feature = "unstable-internals")] {
/// use tiny_cache_client::codec::decode_bin;
/// assert_eq!(decode_bin(b"aGkhIQ==").as_deref(), Some(&b"hi!!"[..]));
/// assert_eq!(decode_bin(b"*"), None);
/// # }
/// ```
pub fn decode_bin(value: &[u8]) -> Option<Vec<u8>> {
    BIN_DECODE.decode(value).ok()
}

/// Values no `-bin` header may carry, for the tests of everything that
/// decodes one: a lone sextet, padding too long or inside, characters
/// outside the standard alphabet (URL-safe ones, spaces, non-ASCII).
#[cfg(test)]
pub(crate) const MALFORMED_BASE64: &[&[u8]] = &[
    b"a",
    b"a===",
    b"aGkhIQ===",
    b"aGk=hIQ",
    b"====",
    b"*abc",
    b"***",
    b"aG-k",
    b"aG_k",
    b"ab cd",
    b"a b c",
    b"\xff",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_unpadded_standard_base64() {
        assert_eq!(encode_bin(b"hi!!"), "aGkhIQ");
        assert_eq!(encode_bin(&[0xff, 0x00, 0xfe]), "/wD+");
        assert_eq!(encode_bin(b""), "");
    }

    #[test]
    fn decode_bin_accepts_padded_and_unpadded() {
        assert_eq!(decode_bin(b"aGkhIQ"), Some(b"hi!!".to_vec()));
        assert_eq!(decode_bin(b"aGkhIQ=="), Some(b"hi!!".to_vec()));
        assert_eq!(decode_bin(b"aGk"), Some(b"hi".to_vec()));
        assert_eq!(decode_bin(b"aGk="), Some(b"hi".to_vec()));
        assert_eq!(decode_bin(b""), Some(Vec::new()));
    }

    #[test]
    fn decode_bin_refuses_malformed_base64() {
        for raw in MALFORMED_BASE64 {
            assert_eq!(decode_bin(raw), None, "{raw:?}");
        }
    }
}
