//! Claim requirements a route can put on an identity, written as a TOML table:
//!
//! ```toml
//! require = { role = "admin", scope = ["read", "write"], "realm_access.roles" = { any_of = ["a", "b"] } }
//! ```
//!
//! - a string (or number/boolean) requires the claim to equal it or, for an array claim, to
//!   contain it;
//! - a list requires **all** of its values (each as above);
//! - `{ any_of = [..] }` requires at least one of them (`{ all_of = [..] }` is the same as a list).
//!
//! Claim names are paths as in [`Identity::claim`](super::Identity::claim). The OAuth `scope`
//! and `scp` claims, when strings, are read as space-separated lists (`"read write"` contains
//! `read`). For API keys the claims are `name` and `scopes`. Every rule must hold; an empty table
//! allows everyone.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::identity::lookup;
use super::settings::Problems;

/// Every rule must hold (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ClaimRules(BTreeMap<String, ClaimRule>);

/// What one claim must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRule {
    /// Equal to (or, for array claims, containing) this value.
    Equals(String),
    /// Containing every value.
    AllOf(Vec<String>),
    /// Containing at least one value.
    AnyOf(Vec<String>),
}

impl ClaimRules {
    pub fn new(rules: impl IntoIterator<Item = (String, ClaimRule)>) -> Self {
        ClaimRules(rules.into_iter().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Problems with the rules themselves (an empty claim name or value list), keyed by claim.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        for (claim, rule) in &self.0 {
            if claim.is_empty() {
                problems.push((claim.clone(), "expected a claim name".into()));
            }
            if let ClaimRule::AllOf(values) | ClaimRule::AnyOf(values) = rule
                && values.is_empty()
            {
                problems.push((claim.clone(), "expected at least one value".into()));
            }
        }
        problems
    }

    pub(crate) fn matches(&self, claims: &Value) -> bool {
        self.0.iter().all(|(path, rule)| {
            let Some(value) = lookup(claims, path) else {
                return false;
            };
            let spaced = matches!(path.as_str(), "scope" | "scp");
            match rule {
                ClaimRule::Equals(want) => contains(value, want, spaced),
                ClaimRule::AllOf(wants) => wants.iter().all(|w| contains(value, w, spaced)),
                ClaimRule::AnyOf(wants) => wants.iter().any(|w| contains(value, w, spaced)),
            }
        })
    }
}

fn contains(value: &Value, want: &str, spaced: bool) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| scalar_is(item, want, false)),
        other => scalar_is(other, want, spaced),
    }
}

fn scalar_is(value: &Value, want: &str, spaced: bool) -> bool {
    match value {
        Value::String(s) => s == want || (spaced && s.split_ascii_whitespace().any(|p| p == want)),
        Value::Bool(b) => want == if *b { "true" } else { "false" },
        Value::Number(n) => n.to_string() == want,
        _ => false,
    }
}

/// A string, number or boolean, kept as text.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(RuleVisitor)
            .and_then(|rule| match rule {
                ClaimRule::Equals(s) => Ok(Scalar(s)),
                _ => Err(de::Error::custom("expected a string, number or boolean")),
            })
    }
}

struct RuleVisitor;

impl<'de> Visitor<'de> for RuleVisitor {
    type Value = ClaimRule;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value, a list of values (all required) or { any_of = [..] }")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ClaimRule, E> {
        Ok(ClaimRule::Equals(v.to_owned()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ClaimRule, E> {
        Ok(ClaimRule::Equals(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ClaimRule, E> {
        Ok(ClaimRule::Equals(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ClaimRule, E> {
        Ok(ClaimRule::Equals(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ClaimRule, A::Error> {
        let mut values = Vec::new();
        while let Some(Scalar(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(ClaimRule::AllOf(values))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClaimRule, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::custom(
                "expected { any_of = [..] } or { all_of = [..] }",
            ));
        };
        let values: Vec<Scalar> = map.next_value()?;
        let values = values.into_iter().map(|Scalar(s)| s).collect();
        let rule = match key.as_str() {
            "any_of" => ClaimRule::AnyOf(values),
            "all_of" => ClaimRule::AllOf(values),
            other => {
                return Err(de::Error::custom(format!(
                    "unknown key `{other}`, expected `any_of` or `all_of`"
                )));
            }
        };
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom(
                "expected only one of `any_of` or `all_of`",
            ));
        }
        Ok(rule)
    }
}

impl<'de> Deserialize<'de> for ClaimRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RuleVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Deserialize)]
    struct Route {
        require: ClaimRules,
    }

    fn rules(toml_text: &str) -> ClaimRules {
        toml::from_str::<Route>(toml_text).unwrap().require
    }

    #[test]
    fn parses_all_forms() {
        let r = rules(
            r#"require = { role = "admin", scope = ["read", "write"], "a.b" = { any_of = ["x", "y"] }, verified = true, level = 3 }"#,
        );
        assert_eq!(
            r,
            ClaimRules::new([
                ("a.b".into(), ClaimRule::AnyOf(vec!["x".into(), "y".into()])),
                ("level".into(), ClaimRule::Equals("3".into())),
                ("role".into(), ClaimRule::Equals("admin".into())),
                (
                    "scope".into(),
                    ClaimRule::AllOf(vec!["read".into(), "write".into()])
                ),
                ("verified".into(), ClaimRule::Equals("true".into())),
            ])
        );
        assert!(toml::from_str::<Route>("require = { a = { one_of = [\"x\"] } }").is_err());
        assert!(toml::from_str::<Route>("require = { a = [[\"x\"]] }").is_err());
    }

    #[test]
    fn matching() {
        let claims = json!({
            "role": "admin",
            "roles": ["dev", "ops"],
            "scope": "read write",
            "verified": true,
            "level": 3,
            "nested": {"groups": ["g1"]},
        });
        let yes = [
            r#"require = { role = "admin" }"#,
            r#"require = { roles = "dev" }"#,
            r#"require = { roles = ["dev", "ops"] }"#,
            r#"require = { roles = { any_of = ["x", "ops"] } }"#,
            r#"require = { scope = ["read", "write"] }"#,
            r#"require = { verified = true, level = 3 }"#,
            r#"require = { "nested.groups" = "g1" }"#,
            r#"require = {}"#,
        ];
        for text in yes {
            assert!(rules(text).matches(&claims), "{text}");
        }
        let no = [
            r#"require = { role = "user" }"#,
            r#"require = { roles = ["dev", "x"] }"#,
            r#"require = { roles = { any_of = ["x"] } }"#,
            r#"require = { scope = "delete" }"#,
            r#"require = { role = "adm" }"#,
            r#"require = { missing = "x" }"#,
            r#"require = { verified = false }"#,
            r#"require = { nested = "g1" }"#,
        ];
        for text in no {
            assert!(!rules(text).matches(&claims), "{text}");
        }
    }

    #[test]
    fn validation() {
        let r = rules(r#"require = { a = [], b = { any_of = [] }, c = "x" }"#);
        let keys: Vec<_> = r.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b"]);
    }
}
