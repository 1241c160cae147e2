//! The `grpc-timeout` header: `1*8DIGIT` followed by one unit letter.

use std::time::Duration;

use http::header::HeaderValue;

/// The largest value the header may carry: eight digits.
const MAX_TIMEOUT_VALUE: u64 = 99_999_999;

/// Units from finest to coarsest, with their length in nanoseconds.
const UNITS: [(u8, u64); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60 * 1_000_000_000),
    (b'H', 3_600 * 1_000_000_000),
];

/// Encodes a call's remaining time for `grpc-timeout`.
///
/// Picks the finest unit whose value fits in eight digits and rounds up, so
/// the server never believes it has less time than the caller gives it (the
/// caller's own deadline decides when the call fails; the server's copy only
/// lets it give up early). Durations beyond `99999999H` (about 11,400 years)
/// are capped there.
///
/// A zero duration is sent as `0n`: the deadline has already passed, and
/// telling the server so (it then answers `DEADLINE_EXCEEDED` at once) is
/// more honest than inventing a nanosecond. Callers normally fail such a call
/// locally before sending anything.
pub fn encode_timeout(timeout: Duration) -> HeaderValue {
    let nanos = timeout.as_nanos();
    for (unit, unit_nanos) in UNITS {
        let value = nanos.div_ceil(u128::from(unit_nanos));
        if let Ok(value) = u64::try_from(value) {
            if value <= MAX_TIMEOUT_VALUE {
                return format_timeout(value, unit);
            }
        }
    }
    HeaderValue::from_static("99999999H")
}

fn format_timeout(value: u64, unit: u8) -> HeaderValue {
    // Written into a stack buffer: the header value's own copy is then the
    // only allocation.
    let mut text = [0u8; 9];
    let mut start = 8;
    text[8] = unit;
    let mut rest = value.min(MAX_TIMEOUT_VALUE);
    loop {
        start -= 1;
        text[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // Digits and a unit letter always make a valid header value; the
    // fallback only keeps this function free of panics.
    HeaderValue::from_bytes(&text[start..])
        .unwrap_or_else(|_| HeaderValue::from_static("99999999H"))
}

/// Parses a `grpc-timeout` value; `None` when it is not one to eight ASCII
/// digits followed by one of `H M S m u n`.
pub fn decode_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Eight digits fit easily in a u64, so this cannot overflow.
    let n = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    let duration = match unit {
        b'n' => Duration::from_nanos(n),
        b'u' => Duration::from_micros(n),
        b'm' => Duration::from_millis(n),
        b'S' => Duration::from_secs(n),
        b'M' => Duration::from_secs(n * 60),
        b'H' => Duration::from_secs(n * 3_600),
        _ => return None,
    };
    Some(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(d: Duration) -> String {
        encode_timeout(d)
            .to_str()
            .unwrap_or("<non-ascii>")
            .to_owned()
    }

    #[test]
    fn small_durations_use_nanoseconds() {
        assert_eq!(encoded(Duration::from_nanos(1)), "1n");
        assert_eq!(encoded(Duration::from_nanos(99_999_999)), "99999999n");
    }

    #[test]
    fn zero_timeout_is_sent_as_zero_nanoseconds() {
        assert_eq!(encoded(Duration::ZERO), "0n");
        assert_eq!(decode_timeout(b"0n"), Some(Duration::ZERO));
    }

    #[test]
    fn finest_unit_that_fits_in_eight_digits_is_chosen() {
        assert_eq!(encoded(Duration::from_millis(100)), "100000u");
        assert_eq!(encoded(Duration::from_secs(1)), "1000000u");
        assert_eq!(encoded(Duration::from_secs(30)), "30000000u");
        assert_eq!(encoded(Duration::from_secs(100)), "100000m");
        assert_eq!(encoded(Duration::from_secs(100_000)), "100000S");
        assert_eq!(encoded(Duration::from_secs(200_000_000)), "3333334M");
        assert_eq!(encoded(Duration::from_secs(10_000_000_000)), "2777778H");
    }

    #[test]
    fn values_never_exceed_eight_digits() {
        let mut d = Duration::from_nanos(1);
        while d < Duration::from_secs(400_000_000_000) {
            let text = encoded(d);
            let (digits, unit) = text.split_at(text.len() - 1);
            assert!(digits.len() <= 8, "{text}");
            assert!("numSMH".contains(unit), "{text}");
            d = d * 3 + Duration::from_nanos(7);
        }
    }

    #[test]
    fn encoding_rounds_up_so_the_server_never_gets_less_time() {
        // 100000000ns does not fit, so microseconds, rounded up.
        assert_eq!(encoded(Duration::from_nanos(100_000_001)), "100001u");
        assert_eq!(encoded(Duration::from_nanos(100_000_000)), "100000u");
        let mut d = Duration::from_nanos(3);
        while d < Duration::from_secs(300_000_000_000) {
            let back = decode_timeout(encode_timeout(d).as_bytes()).expect("valid");
            assert!(back >= d, "{d:?} encoded as {}", encoded(d));
            d = d * 7 + Duration::from_nanos(13);
        }
    }

    #[test]
    fn encoding_is_exact_when_the_unit_divides_the_duration() {
        for d in [
            Duration::from_nanos(12_345),
            Duration::from_micros(12_345_678),
            Duration::from_secs(5),
            Duration::from_secs(7_200),
        ] {
            assert_eq!(decode_timeout(encode_timeout(d).as_bytes()), Some(d));
        }
    }

    #[test]
    fn huge_durations_are_capped_at_99999999_hours() {
        assert_eq!(encoded(Duration::MAX), "99999999H");
        assert_eq!(
            encoded(Duration::from_secs(99_999_999 * 3_600)),
            "99999999H"
        );
        assert_eq!(
            encoded(Duration::from_secs(99_999_999 * 3_600 + 1)),
            "99999999H"
        );
    }

    #[test]
    fn every_unit_decodes() {
        assert_eq!(decode_timeout(b"5n"), Some(Duration::from_nanos(5)));
        assert_eq!(decode_timeout(b"5u"), Some(Duration::from_micros(5)));
        assert_eq!(decode_timeout(b"5m"), Some(Duration::from_millis(5)));
        assert_eq!(decode_timeout(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(decode_timeout(b"5M"), Some(Duration::from_secs(300)));
        assert_eq!(decode_timeout(b"5H"), Some(Duration::from_secs(18_000)));
        assert_eq!(decode_timeout(b"00000001S"), Some(Duration::from_secs(1)));
    }

    #[test]
    fn largest_value_decodes_without_overflow() {
        assert_eq!(
            decode_timeout(b"99999999H"),
            Some(Duration::from_secs(99_999_999 * 3_600))
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        for raw in [
            &b""[..],
            b"S",
            b"1",
            b"123456789S",
            b"99999999999999999999999H",
            b"1s",
            b"1h",
            b"1x",
            b"-1S",
            b"+1S",
            b"1 S",
            b" 1S",
            b"1S ",
            b"1.5S",
            b"1SS",
            b"\xff\xfe",
            b"\xd9\xa1S",
        ] {
            assert_eq!(decode_timeout(raw), None, "{raw:?}");
        }
    }
}
