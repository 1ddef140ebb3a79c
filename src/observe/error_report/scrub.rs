//! Redaction for error events: sensitive header values, query values and JSON body fields
//! become `[Filtered]`. Applied when rampart builds an event and again in `before_send`, so no
//! event leaves unredacted whatever produced it. Must not log what it removes.

use std::collections::BTreeMap;

use http::HeaderMap;
use sentry::protocol::{Event, Request};
use serde_json::Value;

use crate::observe::redact::redact_path_and_query;

/// What replaces a redacted value (Sentry's own marker).
pub const FILTERED: &str = "[Filtered]";

/// Parts of header names that mark a credential even when no list names the header.
const SENSITIVE_NAME_PARTS: &[&str] = &[
    "auth",
    "token",
    "secret",
    "password",
    "api-key",
    "apikey",
    "api_key",
    "session",
    "cookie",
    "signature",
    "credential",
];

/// Everything redaction needs, built once per pipeline.
#[derive(Debug, Clone)]
pub struct Scrubber {
    /// Lower-case header names.
    pub headers: Vec<String>,
    /// Lower-case JSON field names.
    pub body_fields: Vec<String>,
    /// Lower-case query keys (the access log's, API-key parameters included).
    pub query_keys: Vec<String>,
}

impl Scrubber {
    pub fn is_sensitive_header(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        self.headers.contains(&lower)
            || SENSITIVE_NAME_PARTS.iter().any(|part| lower.contains(part))
    }

    fn is_sensitive_field(&self, name: &str) -> bool {
        self.body_fields
            .iter()
            .any(|f| f.eq_ignore_ascii_case(name))
            || self.query_keys.iter().any(|f| f.eq_ignore_ascii_case(name))
    }

    /// Request headers for an event, sensitive values replaced.
    pub fn headers(&self, headers: &HeaderMap) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, value) in headers {
            let value = if self.is_sensitive_header(name.as_str()) {
                FILTERED.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            out.entry(name.as_str().to_owned())
                .and_modify(|v: &mut String| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        out
    }

    /// The query string with sensitive values replaced (the access log's rule).
    pub fn query(&self, query: &str) -> String {
        let redacted = redact_path_and_query("", Some(query), &self.query_keys);
        redacted.strip_prefix('?').unwrap_or(&redacted).to_owned()
    }

    /// A JSON body with sensitive fields replaced at any depth; `None` when it is not JSON.
    pub fn json_body(&self, body: &[u8]) -> Option<String> {
        let mut value: Value = serde_json::from_slice(body).ok()?;
        self.json_value(&mut value);
        serde_json::to_string(&value).ok()
    }

    /// Replaces the values of sensitive fields, at any depth, in place.
    pub fn json_value(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, field) in map.iter_mut() {
                    if self.is_sensitive_field(key) {
                        *field = Value::String(FILTERED.into());
                    } else {
                        self.json_value(field);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.json_value(item)),
            _ => {}
        }
    }

    /// The `before_send` pass: whatever built the event, its request, tags and extra data are
    /// redacted again before it is queued.
    pub fn event(&self, mut event: Event<'static>) -> Event<'static> {
        if let Some(request) = event.request.as_mut() {
            self.request(request);
        }
        for (key, value) in event.extra.iter_mut() {
            if self.is_sensitive_field(key) || self.is_sensitive_header(key) {
                *value = Value::String(FILTERED.into());
            } else {
                self.json_value(value);
            }
        }
        for (key, value) in event.tags.iter_mut() {
            if self.is_sensitive_field(key) || self.is_sensitive_header(key) {
                *value = FILTERED.into();
            }
        }
        event
    }

    fn request(&self, request: &mut Request) {
        for (name, value) in request.headers.iter_mut() {
            if self.is_sensitive_header(name) {
                *value = FILTERED.into();
            }
        }
        if request.cookies.is_some() {
            request.cookies = Some(FILTERED.into());
        }
        if let Some(query) = request.query_string.as_mut() {
            *query = self.query(query);
        }
        if let Some(url) = request.url.as_mut()
            && let Some(query) = url.query().map(str::to_owned)
        {
            url.set_query(Some(&self.query(&query)));
        }
        if let Some(data) = request.data.as_mut() {
            *data = self
                .json_body(data.as_bytes())
                .unwrap_or_else(|| FILTERED.into());
        }
        request.env.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber() -> Scrubber {
        Scrubber {
            headers: vec!["authorization".into(), "x-custom".into()],
            body_fields: vec!["password".into(), "card_number".into()],
            query_keys: vec!["api_key".into()],
        }
    }

    #[test]
    fn body_fields_are_redacted_at_any_depth_whatever_their_case() {
        let body =
            br#"{"user":"ann","Password":"hunter2","card":{"CARD_NUMBER":"4242","exp":"12/30"},
            "items":[{"password":"p1"},{"nested":[{"password":"p2","keep":1}]}],"api_key":"k"}"#;
        let out = scrubber().json_body(body).unwrap();
        for secret in ["hunter2", "4242", "p1", "p2", "\"k\""] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        for kept in ["ann", "12/30", "\"keep\":1"] {
            assert!(out.contains(kept), "{kept} missing in {out}");
        }
        assert!(out.contains(r#""Password":"[Filtered]""#), "{out}");
    }

    #[test]
    fn a_body_that_is_not_json_is_not_kept() {
        assert_eq!(scrubber().json_body(b"password=x"), None);
    }

    #[test]
    fn headers_by_list_and_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer abc".parse().unwrap());
        headers.insert("x-custom", "v".parse().unwrap());
        headers.insert("x-session-token", "t".parse().unwrap());
        headers.insert("accept", "*/*".parse().unwrap());
        let out = scrubber().headers(&headers);
        assert_eq!(out["authorization"], FILTERED);
        assert_eq!(out["x-custom"], FILTERED);
        assert_eq!(out["x-session-token"], FILTERED);
        assert_eq!(out["accept"], "*/*");
    }

    #[test]
    fn before_send_redacts_whatever_built_the_event() {
        let mut event = Event::default();
        let mut request = Request {
            url: Some("http://h/p?api_key=s3&x=1".parse().unwrap()),
            query_string: Some("api_key=s3&x=1".into()),
            cookies: Some("sid=abc".into()),
            data: Some(r#"{"password":"pw"}"#.into()),
            ..Default::default()
        };
        request
            .headers
            .insert("Authorization".into(), "Basic zzz".into());
        event.request = Some(request);
        event.extra.insert("password".into(), "pw".into());
        let event = scrubber().event(event);
        let text = serde_json::to_string(&event).unwrap();
        for secret in ["s3", "abc", "pw", "zzz"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
