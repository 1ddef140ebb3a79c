//! Human units in the config file: durations (`"30s"`, `"250ms"`) and byte sizes (`2097152`,
//! `"2MB"`, `"16KiB"`). Owns parsing only.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

const DURATION_EXPECTED: &str = "a duration such as \"30s\", \"250ms\" or \"5m\"";

fn parse_duration<E: de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text.trim()).map_err(|_| {
        E::custom(format!(
            "invalid duration {text:?}, expected {DURATION_EXPECTED}"
        ))
    })
}

pub fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)
        .map_err(|_| de::Error::custom(format!("expected {DURATION_EXPECTED}")))?;
    parse_duration(&text)
}

pub fn deserialize_opt_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserialize_duration(deserializer).map(Some)
}

/// A number of bytes, written as an integer or as a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Option<u64> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().ok()?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1_000,
            "kib" => 1 << 10,
            "mb" | "m" => 1_000_000,
            "mib" => 1 << 20,
            "gb" | "g" => 1_000_000_000,
            "gib" => 1 << 30,
            _ => return None,
        };
        number.checked_mul(multiplier)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte size such as 2097152, \"2MB\" or \"16KiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v)
                    .map(ByteSize)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("2MB"), Some(2_000_000));
        assert_eq!(ByteSize::parse("2 MiB"), Some(2 * 1024 * 1024));
        assert_eq!(ByteSize::parse("16kib"), Some(16 * 1024));
        assert_eq!(ByteSize::parse("123"), Some(123));
        assert_eq!(ByteSize::parse("12 parsecs"), None);
        assert_eq!(ByteSize::parse(""), None);
    }

    #[test]
    fn durations() {
        let ok: Result<Duration, de::value::Error> = parse_duration("250ms");
        assert_eq!(ok.unwrap(), Duration::from_millis(250));
        let bad: Result<Duration, de::value::Error> = parse_duration("soon");
        assert!(bad.unwrap_err().to_string().contains("expected a duration"));
    }
}
