//! Who a request was authenticated as: the [`Identity`], claim lookup by dotted path, and the
//! identity headers (`forward`) built from claims for the upstream.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::rules::ClaimRules;
use super::settings::Problems;

/// A successfully authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The name of the provider that accepted the credentials.
    pub provider: Arc<str>,
    /// JWT `sub`, or the API key's name.
    pub subject: Option<String>,
    /// The verified JWT claims, or `{"name": .., "scopes": [..]}` for an API key.
    pub claims: Value,
    /// The API key's name when an API key authenticated the request.
    pub api_key: Option<String>,
    /// Identity headers for the upstream, in the provider's `forward` order (by header name).
    pub forward: Vec<(HeaderName, HeaderValue)>,
}

impl Identity {
    /// The claim at `path`: a top-level name (which may itself contain dots, such as
    /// `https://example.com/roles`) or a dotted path into nested objects (`realm_access.roles`);
    /// a numeric segment indexes an array (`groups.0`).
    pub fn claim(&self, path: &str) -> Option<&Value> {
        lookup(&self.claims, path)
    }

    /// Whether the claims satisfy every rule (see [`ClaimRules`]).
    pub fn satisfies(&self, rules: &ClaimRules) -> bool {
        rules.matches(&self.claims)
    }
}

/// See [`Identity::claim`]. An exact key wins over a dotted split.
pub(crate) fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return None;
    }
    match value {
        Value::Object(map) => {
            if let Some(found) = map.get(path) {
                return Some(found);
            }
            path.match_indices('.').find_map(|(i, _)| {
                map.get(&path[..i])
                    .and_then(|child| lookup(child, &path[i + 1..]))
            })
        }
        Value::Array(items) => {
            let (head, rest) = match path.split_once('.') {
                Some((head, rest)) => (head, Some(rest)),
                None => (path, None),
            };
            let item = items.get(head.parse::<usize>().ok()?)?;
            match rest {
                None => Some(item),
                Some(rest) => lookup(item, rest),
            }
        }
        _ => None,
    }
}

/// One `forward` entry: the header to set and the claim it carries.
#[derive(Debug, Clone)]
pub(crate) struct ForwardRule {
    pub(crate) header: HeaderName,
    pub(crate) claim: String,
}

/// Headers that carry framing or routing meaning; an identity header may not be one of them.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "expect",
];

/// Parses `forward`, refusing invalid or reserved header names and the provider's own credential
/// headers (`also_denied`): the pipeline strips identity headers before authenticating, so
/// forwarding into the credential header would strip the credential itself.
pub(crate) fn parse_forward(
    forward: &BTreeMap<String, String>,
    also_denied: &[&str],
    problems: &mut Problems,
) -> Vec<ForwardRule> {
    let mut rules = Vec::with_capacity(forward.len());
    for (name, claim) in forward {
        let key = format!("forward.{name}");
        let header = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) => header,
            Err(_) => {
                problems.push((key, format!("`{name}` is not a valid header name")));
                continue;
            }
        };
        let lower = header.as_str();
        if RESERVED.contains(&lower) || also_denied.iter().any(|d| d.eq_ignore_ascii_case(lower)) {
            problems.push((
                key,
                format!(
                    "`{lower}` cannot carry an identity: expected a header of your own such as `x-user-id`"
                ),
            ));
            continue;
        }
        if claim.trim().is_empty() {
            problems.push((key, "expected a claim path such as \"sub\"".into()));
            continue;
        }
        rules.push(ForwardRule {
            header,
            claim: claim.clone(),
        });
    }
    rules
}

/// The identity headers for `claims`. A missing or null claim sets no header; a value that cannot
/// be a header value (control characters) is skipped.
pub(crate) fn forward_headers(
    rules: &[ForwardRule],
    claims: &Value,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let Some(text) = lookup(claims, &rule.claim).and_then(header_text) else {
            continue;
        };
        match HeaderValue::try_from(text) {
            Ok(value) => out.push((rule.header.clone(), value)),
            Err(_) => tracing::debug!(
                header = %rule.header,
                claim = %rule.claim,
                "claim value cannot be sent as a header; not forwarded"
            ),
        }
    }
    out
}

/// A claim as header text: strings as they are, numbers and booleans printed, arrays joined with
/// `,` (elements by the same rule), objects as compact JSON.
fn header_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let mut out = String::new();
            for (i, item) in items.iter().filter(|v| !v.is_null()).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match item {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
            }
            Some(out)
        }
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lookup_paths() {
        let claims = json!({
            "sub": "u1",
            "https://example.com/roles": ["a"],
            "realm_access": {"roles": ["admin", "dev"], "x.y": 1},
            "groups": [{"id": 7}],
        });
        assert_eq!(lookup(&claims, "sub"), Some(&json!("u1")));
        assert_eq!(
            lookup(&claims, "https://example.com/roles"),
            Some(&json!(["a"]))
        );
        assert_eq!(lookup(&claims, "realm_access.roles.1"), Some(&json!("dev")));
        assert_eq!(lookup(&claims, "realm_access.x.y"), Some(&json!(1)));
        assert_eq!(lookup(&claims, "groups.0.id"), Some(&json!(7)));
        assert_eq!(lookup(&claims, "groups.1"), None);
        assert_eq!(lookup(&claims, "sub.x"), None);
        assert_eq!(lookup(&claims, ""), None);
        assert_eq!(lookup(&claims, "nope"), None);
    }

    #[test]
    fn header_texts() {
        assert_eq!(header_text(&json!("x")).as_deref(), Some("x"));
        assert_eq!(
            header_text(&json!(["a", 1, true, null])).as_deref(),
            Some("a,1,true")
        );
        assert_eq!(header_text(&json!(42)).as_deref(), Some("42"));
        assert_eq!(header_text(&json!({"a": 1})).as_deref(), Some("{\"a\":1}"));
        assert_eq!(header_text(&Value::Null), None);
    }

    #[test]
    fn forward_rules_refuse_reserved_and_credential_headers() {
        let mut forward = BTreeMap::new();
        forward.insert("X-User".to_owned(), "sub".to_owned());
        forward.insert("host".to_owned(), "sub".to_owned());
        forward.insert("authorization".to_owned(), "sub".to_owned());
        forward.insert("bad header".to_owned(), "sub".to_owned());
        forward.insert("x-empty".to_owned(), " ".to_owned());
        let mut problems = Problems::new();
        let rules = parse_forward(&forward, &["authorization"], &mut problems);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].header, "x-user");
        let keys: Vec<_> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "forward.authorization",
                "forward.bad header",
                "forward.host",
                "forward.x-empty"
            ]
        );
    }

    #[test]
    fn control_characters_are_not_forwarded() {
        let rules = vec![
            ForwardRule {
                header: HeaderName::from_static("x-a"),
                claim: "a".into(),
            },
            ForwardRule {
                header: HeaderName::from_static("x-b"),
                claim: "b".into(),
            },
        ];
        let headers = forward_headers(&rules, &json!({"a": "ok", "b": "evil\r\nx-admin: 1"}));
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].1, "ok");
    }
}
