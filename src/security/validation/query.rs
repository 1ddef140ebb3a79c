//! Query string → JSON object of strings, coerced where the query schema asks for other types.

use std::borrow::Cow;
use std::collections::HashMap;

use percent_encoding::percent_decode_str;
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Per parameter name, how to convert its string value(s); built from the query schema's
/// top-level `properties.<name>.type` (and `items.type` for arrays).
#[derive(Debug, Default)]
pub(super) struct QueryCoercions(HashMap<String, Coercion>);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Coercion {
    /// A single value becomes a one-element array.
    array: bool,
    /// Conversion of a value (or of each item, when `array`).
    scalar: Scalar,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Scalar {
    boolean: bool,
    integer: bool,
    number: bool,
}

impl Scalar {
    /// From a `type` keyword; nothing is converted where a string is acceptable as it is.
    fn from_type(ty: Option<&Value>) -> Self {
        let types = type_names(ty);
        if types.is_empty() || types.contains(&"string") {
            return Self::default();
        }
        Self {
            boolean: types.contains(&"boolean"),
            integer: types.contains(&"integer"),
            number: types.contains(&"number"),
        }
    }

    fn is_none(self) -> bool {
        self == Self::default()
    }

    fn convert(self, value: &mut Value) {
        let Value::String(text) = value else {
            return;
        };
        let converted = if self.boolean && text == "true" {
            Some(Value::Bool(true))
        } else if self.boolean && text == "false" {
            Some(Value::Bool(false))
        } else if self.integer || self.number {
            parse_integer(text).or_else(|| {
                if self.number {
                    parse_number(text)
                } else {
                    None
                }
            })
        } else {
            None
        };
        if let Some(converted) = converted {
            *value = converted;
        }
    }
}

fn type_names(ty: Option<&Value>) -> Vec<&str> {
    match ty {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Plain decimal integers only (`+5` and `007` too); `1e3`, `1.0` and ` 5` stay strings.
fn parse_integer(text: &str) -> Option<Value> {
    if let Ok(n) = text.parse::<i64>() {
        Some(Value::Number(n.into()))
    } else {
        text.parse::<u64>().ok().map(|n| Value::Number(n.into()))
    }
}

/// A finite decimal number; `NaN`, `inf` and overflowing values stay strings.
fn parse_number(text: &str) -> Option<Value> {
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !looks_numeric {
        return None;
    }
    let n: f64 = text.parse().ok()?;
    Number::from_f64(n).map(Value::Number)
}

impl QueryCoercions {
    pub(super) fn from_schema(schema: &Value) -> Self {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return Self::default();
        };
        let coercions = properties
            .iter()
            .filter_map(|(name, property)| {
                let ty = property.get("type");
                let array = type_names(ty).contains(&"array");
                let scalar = if array {
                    Scalar::from_type(property.get("items").and_then(|items| items.get("type")))
                } else {
                    Scalar::from_type(ty)
                };
                let coercion = Coercion { array, scalar };
                (array || !scalar.is_none()).then(|| (name.clone(), coercion))
            })
            .collect();
        Self(coercions)
    }
}

/// `a=1&b=x+y&b=%2B&c` → `{"a": "1", "b": ["x y", "+"], "c": ""}`, then coerced.
pub(super) fn to_json(query: &str, coercions: &QueryCoercions) -> Value {
    let mut object = Map::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = Value::String(decode(value));
        match object.entry(decode(key)) {
            Entry::Vacant(entry) => {
                entry.insert(value);
            }
            Entry::Occupied(mut entry) => match entry.get_mut() {
                Value::Array(values) => values.push(value),
                first => {
                    let first = first.take();
                    entry.insert(Value::Array(vec![first, value]));
                }
            },
        }
    }
    if !coercions.0.is_empty() {
        for (name, value) in &mut object {
            if let Some(coercion) = coercions.0.get(name) {
                coerce(*coercion, value);
            }
        }
    }
    Value::Object(object)
}

fn coerce(coercion: Coercion, value: &mut Value) {
    if coercion.array {
        if value.is_string() {
            *value = Value::Array(vec![value.take()]);
        }
        if let Value::Array(items) = value {
            for item in items {
                coercion.scalar.convert(item);
            }
        }
    } else {
        // A repeated key stays an array of strings: the type check reports it.
        coercion.scalar.convert(value);
    }
}

/// `+` is a space, then percent-decoding; invalid UTF-8 becomes U+FFFD.
fn decode(text: &str) -> String {
    let text = if text.contains('+') {
        Cow::Owned(text.replace('+', " "))
    } else {
        Cow::Borrowed(text)
    };
    percent_decode_str(&text).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(query: &str, schema: &Value) -> Value {
        to_json(query, &QueryCoercions::from_schema(schema))
    }

    #[test]
    fn pairs_become_an_object_of_decoded_strings() {
        let schema = json!({});
        assert_eq!(parse("", &schema), json!({}));
        assert_eq!(parse("&&", &schema), json!({}));
        assert_eq!(
            parse(
                "a=1&b=hello+world&c=%2B1%20x&flag&e=&%6B=v&x=a%3Db",
                &schema
            ),
            json!({"a": "1", "b": "hello world", "c": "+1 x", "flag": "", "e": "", "k": "v", "x": "a=b"})
        );
        assert_eq!(parse("a=%FF", &schema), json!({"a": "\u{FFFD}"}));
        assert_eq!(parse("caf%C3%A9=%E2%82%AC", &schema), json!({"café": "€"}));
    }

    #[test]
    fn a_repeated_key_becomes_an_array() {
        let schema = json!({});
        assert_eq!(
            parse("a=1&a=2&b=x&a=3", &schema),
            json!({"a": ["1", "2", "3"], "b": "x"})
        );
        // Two spellings of one name are one repeated key.
        assert_eq!(
            parse("limit=5&%6Cimit=500", &schema),
            json!({"limit": ["5", "500"]})
        );
    }

    #[test]
    fn values_are_coerced_as_the_schema_asks() {
        let schema = json!({"properties": {
            "n": {"type": "integer"},
            "x": {"type": "number"},
            "b": {"type": "boolean"},
            "nullable": {"type": ["integer", "null"]},
            "either": {"type": ["integer", "string"]},
            "s": {"type": "string"},
            "ids": {"type": "array", "items": {"type": "integer"}},
            "tags": {"type": "array"},
        }});
        assert_eq!(
            parse(
                "n=42&x=1.5&b=true&nullable=-7&either=5&s=5&ids=1&tags=a&other=3",
                &schema
            ),
            json!({"n": 42, "x": 1.5, "b": true, "nullable": -7, "either": "5", "s": "5",
                   "ids": [1], "tags": ["a"], "other": "3"})
        );
        assert_eq!(
            parse("ids=1&ids=x&ids=3", &schema),
            json!({"ids": [1, "x", 3]})
        );
        assert_eq!(parse("x=7&b=false", &schema), json!({"x": 7, "b": false}));
        // What does not parse stays a string, for the type check to report.
        for bad in [
            "abc",
            "1.5",
            "1e3",
            "%205",
            "",
            "0x10",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse(&format!("n={bad}"), &schema)["n"],
                json!(decode(bad)),
                "{bad}"
            );
        }
        for bad in ["NaN", "inf", "1e999", "1,5", "yes"] {
            assert_eq!(
                parse(&format!("x={bad}"), &schema)["x"],
                json!(bad),
                "{bad}"
            );
        }
        for bad in ["True", "1", "on"] {
            assert_eq!(
                parse(&format!("b={bad}"), &schema)["b"],
                json!(bad),
                "{bad}"
            );
        }
        // A repeated scalar is left as an array of strings.
        assert_eq!(parse("n=1&n=2", &schema), json!({"n": ["1", "2"]}));
    }
}
