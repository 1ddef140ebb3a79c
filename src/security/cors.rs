//! CORS: origin allowlists (exact and `https://*.example.com` patterns), preflights answered by
//! rampart itself, and the CORS headers on actual responses.
//!
//! A request without `Origin` is not a CORS request and passes untouched. A disallowed origin gets
//! no CORS headers at all (the browser then blocks the response), and its preflight gets 403.
//! This module only decides and writes headers; the pipeline turns a refusal into the JSON error.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::Deserialize;

use crate::config::units::deserialize_opt_duration;

/// `[cors]` (default for every route) or `[route.cors]` (replaces it for that route).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `https://app.example.com`, `https://*.example.com` (any subdomain) or `*` (any origin,
    /// not allowed together with credentials).
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default = "default_methods")]
    pub allow_methods: Vec<String>,
    #[serde(default = "default_headers")]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// How long browsers may cache a preflight answer.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub max_age: Option<Duration>,
}

fn yes() -> bool {
    true
}
fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .map(str::to_owned)
        .to_vec()
}
fn default_headers() -> Vec<String> {
    ["content-type", "authorization", "x-request-id"]
        .map(str::to_owned)
        .to_vec()
}

/// One origin pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginPattern {
    Any,
    Exact(String),
    /// `https://*.example.com` as scheme `https://` and suffix `.example.com` (port included).
    Subdomains {
        scheme: String,
        suffix: String,
    },
}

impl OriginPattern {
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
        if text == "*" {
            return Some(Self::Any);
        }
        let (scheme, rest) = text.split_once("://")?;
        if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#'])
        {
            return None;
        }
        match rest.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => Some(Self::Subdomains {
                scheme: format!("{scheme}://"),
                suffix: format!(".{suffix}"),
            }),
            Some(_) => None,
            None if !rest.contains('*') => Some(Self::Exact(text)),
            None => None,
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => origin.eq_ignore_ascii_case(exact),
            Self::Subdomains { scheme, suffix } => {
                let origin = origin.to_ascii_lowercase();
                origin.strip_prefix(scheme.as_str()).is_some_and(|host| {
                    host.len() > suffix.len()
                        && host.ends_with(suffix.as_str())
                        && !host[..host.len() - suffix.len()].contains(['/', '@'])
                })
            }
        }
    }
}

/// A built CORS policy.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: Vec<OriginPattern>,
    credentials: bool,
    methods: Vec<Method>,
    methods_value: HeaderValue,
    headers: Vec<String>,
    headers_value: HeaderValue,
    expose_value: Option<HeaderValue>,
    max_age_value: Option<HeaderValue>,
}

/// What the pipeline does with a request, as far as CORS is concerned.
#[derive(Debug)]
pub enum CorsDecision {
    /// Not a CORS request (no `Origin`) or CORS is off: nothing to add.
    NotCors,
    /// An allowed cross-origin request: add these headers to its response.
    Allowed(HeaderMap),
    /// A cross-origin request from an origin not on the list: no CORS headers.
    Disallowed,
    /// A preflight rampart answers itself (204 with these headers).
    Preflight(HeaderMap),
    /// A preflight refused (origin, method or header not allowed) with the reason.
    PreflightRefused(&'static str),
}

impl CorsSettings {
    pub fn build(&self) -> Result<Option<CorsPolicy>, (String, String)> {
        if !self.enabled {
            return Ok(None);
        }
        let mut origins = Vec::new();
        for (i, text) in self.allow_origins.iter().enumerate() {
            let pattern = OriginPattern::parse(text).ok_or_else(|| {
                (
                    format!("allow_origins[{i}]"),
                    format!("expected an origin such as \"https://app.example.com\", \"https://*.example.com\" or \"*\", got {text:?}"),
                )
            })?;
            if pattern == OriginPattern::Any && self.allow_credentials {
                return Err((
                    format!("allow_origins[{i}]"),
                    "\"*\" cannot be combined with allow_credentials = true (browsers refuse it); list the origins".into(),
                ));
            }
            origins.push(pattern);
        }
        let mut methods = Vec::new();
        for (i, text) in self.allow_methods.iter().enumerate() {
            let method =
                Method::from_bytes(text.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    (
                        format!("allow_methods[{i}]"),
                        format!("expected an HTTP method, got {text:?}"),
                    )
                })?;
            methods.push(method);
        }
        let mut headers = Vec::new();
        for (i, text) in self.allow_headers.iter().enumerate() {
            HeaderName::try_from(text.as_str()).map_err(|_| {
                (
                    format!("allow_headers[{i}]"),
                    format!("expected a header name, got {text:?}"),
                )
            })?;
            headers.push(text.to_ascii_lowercase());
        }
        for (i, text) in self.expose_headers.iter().enumerate() {
            HeaderName::try_from(text.as_str()).map_err(|_| {
                (
                    format!("expose_headers[{i}]"),
                    format!("expected a header name, got {text:?}"),
                )
            })?;
        }
        let list = |items: Vec<String>| HeaderValue::from_str(&items.join(", ")).ok();
        Ok(Some(CorsPolicy {
            origins,
            credentials: self.allow_credentials,
            methods_value: list(methods.iter().map(|m| m.to_string()).collect())
                .unwrap_or(HeaderValue::from_static("")),
            methods,
            headers_value: list(headers.clone()).unwrap_or(HeaderValue::from_static("")),
            headers,
            expose_value: (!self.expose_headers.is_empty())
                .then(|| list(self.expose_headers.clone()))
                .flatten(),
            max_age_value: self.max_age.map(|age| HeaderValue::from(age.as_secs())),
        }))
    }
}

impl CorsPolicy {
    /// Whether `origin` is on the allowlist.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|p| p.matches(origin))
    }

    /// Decides for a request; `method` and `headers` are the request's.
    pub fn decide(&self, method: &Method, headers: &HeaderMap) -> CorsDecision {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return CorsDecision::NotCors;
        };
        let preflight = method == Method::OPTIONS
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let allowed = origin.to_str().is_ok_and(|o| self.allows_origin(o));
        if !allowed {
            return if preflight {
                CorsDecision::PreflightRefused("origin is not allowed")
            } else {
                CorsDecision::Disallowed
            };
        }
        let mut out = HeaderMap::new();
        let any_origin = !self.credentials && self.origins.contains(&OriginPattern::Any);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            if any_origin {
                HeaderValue::from_static("*")
            } else {
                origin.clone()
            },
        );
        if !any_origin {
            out.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if !preflight {
            if let Some(expose) = &self.expose_value {
                out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
            return CorsDecision::Allowed(out);
        }

        let requested = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        match requested {
            Some(m) if self.methods.contains(&m) => {}
            _ => return CorsDecision::PreflightRefused("method is not allowed"),
        }
        let requested_headers = headers
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        for name in requested_headers {
            if !self.headers.contains(&name) {
                return CorsDecision::PreflightRefused("a requested header is not allowed");
            }
        }
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.methods_value.clone(),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.headers_value.clone(),
        );
        if let Some(age) = &self.max_age_value {
            out.insert(header::ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        out.append(
            header::VARY,
            HeaderValue::from_static(
                "Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        CorsDecision::Preflight(out)
    }
}

/// The status of a preflight rampart answered.
pub const PREFLIGHT_STATUS: StatusCode = StatusCode::NO_CONTENT;

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml_text: &str) -> CorsPolicy {
        let settings: CorsSettings = toml::from_str(toml_text).unwrap();
        settings.build().unwrap().unwrap()
    }

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::try_from(*k).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn patterns() {
        let p = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(p.matches("https://app.example.com"));
        assert!(p.matches("https://a.b.example.com"));
        assert!(!p.matches("https://example.com"));
        assert!(!p.matches("http://app.example.com"));
        assert!(!p.matches("https://evil-example.com"));
        assert!(!p.matches("https://app.example.com.evil.net"));
        assert!(OriginPattern::parse("app.example.com").is_none());
        assert!(OriginPattern::parse("https://x.com/path").is_none());
        assert!(OriginPattern::parse("https://a*.com").is_none());
    }

    #[test]
    fn simple_requests() {
        let cors = policy(
            r#"allow_origins = ["https://app.example.com"]
               allow_credentials = true
               expose_headers = ["x-request-id"]"#,
        );
        let allowed = cors.decide(
            &Method::GET,
            &request(&[("origin", "https://app.example.com")]),
        );
        let CorsDecision::Allowed(headers) = allowed else {
            panic!("{allowed:?}")
        };
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert_eq!(headers["access-control-allow-credentials"], "true");
        assert_eq!(headers["access-control-expose-headers"], "x-request-id");
        assert!(matches!(
            cors.decide(&Method::GET, &request(&[("origin", "https://evil.com")])),
            CorsDecision::Disallowed
        ));
        assert!(matches!(
            cors.decide(&Method::GET, &request(&[])),
            CorsDecision::NotCors
        ));
    }

    #[test]
    fn preflights() {
        let cors = policy(
            r#"allow_origins = ["https://*.example.com"]
               allow_methods = ["GET", "POST"]
               allow_headers = ["Content-Type", "Authorization"]
               max_age = "10m""#,
        );
        let ok = cors.decide(
            &Method::OPTIONS,
            &request(&[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type, Authorization",
                ),
            ]),
        );
        let CorsDecision::Preflight(headers) = ok else {
            panic!("{ok:?}")
        };
        assert_eq!(headers["access-control-allow-methods"], "GET, POST");
        assert_eq!(headers["access-control-max-age"], "600");
        for (origin, method, extra, why) in [
            ("https://evil.com", "POST", "", "origin is not allowed"),
            (
                "https://app.example.com",
                "DELETE",
                "",
                "method is not allowed",
            ),
            (
                "https://app.example.com",
                "POST",
                "x-secret",
                "a requested header is not allowed",
            ),
        ] {
            let mut pairs = vec![
                ("origin", origin),
                ("access-control-request-method", method),
            ];
            if !extra.is_empty() {
                pairs.push(("access-control-request-headers", extra));
            }
            match cors.decide(&Method::OPTIONS, &request(&pairs)) {
                CorsDecision::PreflightRefused(reason) => assert_eq!(reason, why),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn wildcard_with_credentials_is_refused() {
        let settings: CorsSettings =
            toml::from_str("allow_origins = [\"*\"]\nallow_credentials = true").unwrap();
        assert_eq!(settings.build().unwrap_err().0, "allow_origins[0]");
        let any = policy("allow_origins = [\"*\"]");
        let CorsDecision::Allowed(headers) =
            any.decide(&Method::GET, &request(&[("origin", "https://x.org")]))
        else {
            panic!()
        };
        assert_eq!(headers["access-control-allow-origin"], "*");
    }
}
