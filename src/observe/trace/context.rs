//! W3C Trace Context level 1: parsing an incoming `traceparent` and writing the one sent
//! upstream. Owns only the header's text form; it must not decide sampling nor touch any
//! other header (`tracestate` passes through untouched; [`super`] drops it with an invalid
//! parent).

use http::HeaderMap;

pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// A valid incoming `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

/// The request's `traceparent`, or `None` when it is absent, repeated or invalid (then a new
/// trace starts, as the specification asks).
pub fn incoming(headers: &HeaderMap) -> Option<Parent> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse(value.as_bytes())
}

/// Parses `version-traceid-parentid-flags`: lowercase hex, version `00` exactly 55 bytes; a
/// later version (never `ff`) may append `-…` fields, which are ignored. All-zero ids are
/// invalid.
pub fn parse(text: &[u8]) -> Option<Parent> {
    if text.len() < 55 {
        return None;
    }
    let version = hex(&text[0..2])? as u8;
    match version {
        0 if text.len() != 55 => return None,
        0xff => return None,
        _ if text.len() > 55 && text[55] != b'-' => return None,
        _ => {}
    }
    if text[2] != b'-' || text[35] != b'-' || text[52] != b'-' {
        return None;
    }
    let trace_id = hex(&text[3..35])?;
    let span_id = hex(&text[36..52])? as u64;
    let flags = hex(&text[53..55])? as u8;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Lowercase hex digits (at most 32) as a number.
fn hex(digits: &[u8]) -> Option<u128> {
    let mut value: u128 = 0;
    for &d in digits {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u128::from(nibble);
    }
    Some(value)
}

/// `00-<trace id>-<span id>-<01|00>`, written without allocating.
pub fn format(trace_id: u128, span_id: u64, sampled: bool) -> [u8; 55] {
    let mut out = [b'-'; 55];
    out[0] = b'0';
    out[1] = b'0';
    write_hex(&mut out[3..35], trace_id);
    write_hex(&mut out[36..52], u128::from(span_id));
    out[53] = b'0';
    out[54] = if sampled { b'1' } else { b'0' };
    out
}

/// Writes the low `out.len()` hex digits of `value` into `out`.
pub fn write_hex(out: &mut [u8], mut value: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// A trace id as 32 hex digits (for the access log and export).
pub fn trace_id_hex(trace_id: u128) -> [u8; 32] {
    let mut out = [0u8; 32];
    write_hex(&mut out, trace_id);
    out
}

/// A span id as 16 hex digits.
pub fn span_id_hex(span_id: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    write_hex(&mut out, u128::from(span_id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any input is parsed without panicking, and whatever parses formats back to itself
        /// (for version 00).
        #[test]
        fn parsing_arbitrary_input_never_panics(text in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(parent) = parse(&text) {
                prop_assert!(parent.trace_id != 0 && parent.span_id != 0);
            }
        }

        #[test]
        fn formatted_values_parse_back(trace_id in 1u128.., span_id in 1u64.., sampled: bool) {
            let parent = parse(&format(trace_id, span_id, sampled)).unwrap();
            prop_assert_eq!((parent.trace_id, parent.span_id, parent.sampled), (trace_id, span_id, sampled));
        }
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_specification_example() {
        let parent = parse(VALID.as_bytes()).unwrap();
        assert_eq!(parent.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parent.span_id, 0x00f067aa0ba902b7);
        assert!(parent.sampled);
        let unsampled = parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled);
        // Other flag bits are ignored; only the sampled bit counts.
        assert!(
            parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
                .unwrap()
                .sampled
        );
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "00",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // uppercase, bad hex
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            // wrong lengths and separators
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // version ff is forbidden
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let parent =
            parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").unwrap();
        assert_eq!(parent.span_id, 0x00f067aa0ba902b7);
        assert!(parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x").is_none());
    }

    #[test]
    fn repeated_headers_are_invalid() {
        let mut headers = HeaderMap::new();
        headers.append(TRACEPARENT, VALID.parse().unwrap());
        assert!(incoming(&headers).is_some());
        headers.append(TRACEPARENT, VALID.parse().unwrap());
        assert!(incoming(&headers).is_none());
    }

    #[test]
    fn formats_round_trip() {
        let written = format(0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, true);
        assert_eq!(&written[..], VALID.as_bytes());
        let written = format(1, 2, false);
        let parent = parse(&written).unwrap();
        assert_eq!(
            (parent.trace_id, parent.span_id, parent.sampled),
            (1, 2, false)
        );
        assert_eq!(&trace_id_hex(0xab)[28..], b"00ab");
        assert_eq!(&span_id_hex(u64::MAX), b"ffffffffffffffff");
    }
}
