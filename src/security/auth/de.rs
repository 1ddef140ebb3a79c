//! Serde helpers for the auth settings: humantime durations (`"30s"`, `"12h"`), a string-or-list
//! field, and a string whose `Debug` never shows its value.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

const DURATION_EXPECTED: &str = "a duration such as \"30s\", \"10m\" or \"12h\"";

pub(crate) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)
        .map_err(|_| de::Error::custom(format!("expected {DURATION_EXPECTED}")))?;
    humantime::parse_duration(text.trim()).map_err(|_| {
        de::Error::custom(format!(
            "invalid duration {text:?}, expected {DURATION_EXPECTED}"
        ))
    })
}

pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// `"a"` or `["a", "b"]`.
pub(crate) fn one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;
    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(OneOrMany)
}

/// A secret from the config (an HMAC secret): deserializes from a string, debug-prints redacted.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(secret: impl Into<String>) -> Self {
        SecretString(secret.into())
    }

    /// The secret itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Probe {
        #[serde(deserialize_with = "duration")]
        d: Duration,
        #[serde(default, deserialize_with = "one_or_many")]
        list: Vec<String>,
        secret: Option<SecretString>,
    }

    #[test]
    fn parses_durations_lists_and_hides_secrets() {
        let p: Probe = toml::from_str("d = \"12h\"\nlist = \"a\"\nsecret = \"s3cr3t\"").unwrap();
        assert_eq!(p.d, Duration::from_secs(12 * 3600));
        assert_eq!(p.list, ["a"]);
        assert!(!format!("{p:?}").contains("s3cr3t"));
        assert_eq!(p.secret.as_ref().map(SecretString::expose), Some("s3cr3t"));
        let p: Probe = toml::from_str("d = \"30s\"\nlist = [\"a\", \"b\"]").unwrap();
        assert_eq!(p.list, ["a", "b"]);
        let e = toml::from_str::<Probe>("d = \"soon\"").unwrap_err();
        assert!(e.to_string().contains("expected a duration"), "{e}");
        let e = toml::from_str::<Probe>("d = 30").unwrap_err();
        assert!(e.to_string().contains("expected a duration"), "{e}");
    }
}
