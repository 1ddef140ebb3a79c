//! Response compression (pipeline stage 12): gzip, brotli and zstd, chosen by the client's
//! `Accept-Encoding` q-values ([`negotiate`]), for responses of an allowed content type above a
//! size threshold. Responses already encoded, partial (206), `no-transform`, server-sent events
//! and `HEAD` answers are left alone; the request header `x-no-compression` opts out, and a route
//! turns it off with `compress = false`.
//!
//! Streamed bodies are encoded as they flow ([`encoder::CompressedBody`]); cached entries are
//! encoded once per encoding and kept with the entry (see `crate::cache`). This module must not
//! buffer a streamed body.

pub mod encoder;
pub mod negotiate;

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;

use crate::config::units::ByteSize;
use crate::observe::metrics as m;
use crate::proxy::body::{ResponseBody, declared_length};

/// A content coding rampart can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Gzip,
    Br,
    Zstd,
}

impl Encoding {
    pub const ALL: [Encoding; 3] = [Encoding::Gzip, Encoding::Br, Encoding::Zstd];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Br => "br",
            Self::Zstd => "zstd",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Self::Gzip => 0,
            Self::Br => 1,
            Self::Zstd => 2,
        }
    }

    pub fn from_token(token: &str) -> Option<Self> {
        let token = token.trim();
        if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            Some(Self::Gzip)
        } else if token.eq_ignore_ascii_case("br") {
            Some(Self::Br)
        } else if token.eq_ignore_ascii_case("zstd") {
            Some(Self::Zstd)
        } else {
            None
        }
    }

    fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

/// Encoder levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    pub gzip: u32,
    pub brotli: u32,
    pub zstd: i32,
}

impl Default for Levels {
    fn default() -> Self {
        Self {
            gzip: 6,
            brotli: 4,
            zstd: 3,
        }
    }
}

/// `[compression]`: compression for every route (a route opts out with `compress = false`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionSettings {
    pub enabled: bool,
    /// Responses smaller than this (by `Content-Length`) are sent as they are.
    pub min_bytes: ByteSize,
    /// Encodings offered, the preferred first (used when the client's q-values tie).
    pub algorithms: Vec<String>,
    /// Media types compressed: exact (`application/json`), `type/*`, or `type/*+suffix`.
    pub content_types: Vec<String>,
    /// A request carrying this header is answered uncompressed.
    pub opt_out_header: String,
    pub gzip_level: u32,
    pub brotli_level: u32,
    pub zstd_level: i32,
}

impl Default for CompressionSettings {
    fn default() -> Self {
        let levels = Levels::default();
        Self {
            enabled: true,
            min_bytes: ByteSize(1024),
            algorithms: ["zstd", "br", "gzip"].map(str::to_owned).to_vec(),
            content_types: [
                "text/*",
                "application/json",
                "application/*+json",
                "application/javascript",
                "application/xml",
                "application/*+xml",
                "application/x-ndjson",
                "image/svg+xml",
            ]
            .map(str::to_owned)
            .to_vec(),
            opt_out_header: "x-no-compression".into(),
            gzip_level: levels.gzip,
            brotli_level: levels.brotli,
            zstd_level: levels.zstd,
        }
    }
}

/// A media-type pattern of the allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TypePattern {
    Exact(String),
    /// `text/*`: stored as `text/`.
    AnySubtype(String),
    /// `application/*+json`: stored as (`application/`, `+json`).
    Suffix(String, String),
}

impl TypePattern {
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        let (kind, sub) = text.split_once('/')?;
        let token = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
        };
        if !token(kind) {
            return None;
        }
        if sub == "*" {
            return Some(Self::AnySubtype(format!("{kind}/")));
        }
        if let Some(suffix) = sub.strip_prefix("*+") {
            return token(suffix).then(|| Self::Suffix(format!("{kind}/"), format!("+{suffix}")));
        }
        token(sub).then_some(Self::Exact(text))
    }

    fn matches(&self, media: &str) -> bool {
        match self {
            Self::Exact(exact) => media == exact,
            Self::AnySubtype(prefix) => media.starts_with(prefix.as_str()),
            Self::Suffix(prefix, suffix) => {
                media.starts_with(prefix.as_str()) && media.ends_with(suffix.as_str())
            }
        }
    }
}

/// The resolved compression policy, shared by the routes that compress.
#[derive(Debug)]
pub struct Compression {
    pub min_bytes: u64,
    pub preference: Vec<Encoding>,
    types: Vec<TypePattern>,
    pub opt_out: HeaderName,
    pub levels: Levels,
}

impl CompressionSettings {
    /// Builds the policy, or the key and message of the first problem.
    pub fn build(&self) -> Result<Compression, (String, String)> {
        let mut preference = Vec::new();
        for (i, name) in self.algorithms.iter().enumerate() {
            match Encoding::from_token(name) {
                Some(e) if !preference.contains(&e) => preference.push(e),
                Some(_) => {
                    return Err((
                        format!("algorithms[{i}]"),
                        format!("{name:?} is listed twice"),
                    ));
                }
                None => {
                    return Err((
                        format!("algorithms[{i}]"),
                        format!("expected \"gzip\", \"br\" or \"zstd\", got {name:?}"),
                    ));
                }
            }
        }
        if preference.is_empty() {
            return Err((
                "algorithms".into(),
                "expected at least one of \"gzip\", \"br\", \"zstd\"".into(),
            ));
        }
        let mut types = Vec::new();
        for (i, text) in self.content_types.iter().enumerate() {
            match TypePattern::parse(text) {
                Some(pattern) => types.push(pattern),
                None => {
                    return Err((
                        format!("content_types[{i}]"),
                        format!(
                            "expected a media type such as \"application/json\", \"text/*\" or \"application/*+json\", got {text:?}"
                        ),
                    ));
                }
            }
        }
        let opt_out =
            HeaderName::from_bytes(self.opt_out_header.trim().as_bytes()).map_err(|_| {
                (
                    "opt_out_header".to_owned(),
                    format!("expected a header name, got {:?}", self.opt_out_header),
                )
            })?;
        if !(0..=9).contains(&self.gzip_level) {
            return Err((
                "gzip_level".into(),
                format!("expected 0 to 9, got {}", self.gzip_level),
            ));
        }
        if self.brotli_level > 11 {
            return Err((
                "brotli_level".into(),
                format!("expected 0 to 11, got {}", self.brotli_level),
            ));
        }
        if !(1..=19).contains(&self.zstd_level) {
            return Err((
                "zstd_level".into(),
                format!("expected 1 to 19, got {}", self.zstd_level),
            ));
        }
        Ok(Compression {
            min_bytes: self.min_bytes.0,
            preference,
            types,
            opt_out,
            levels: Levels {
                gzip: self.gzip_level,
                brotli: self.brotli_level,
                zstd: self.zstd_level,
            },
        })
    }
}

/// What the request allows, decided once the route is known.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub policy: Arc<Compression>,
    /// `None`: the client accepts none of ours, opted out, or sent `HEAD`.
    pub encoding: Option<Encoding>,
}

impl Compression {
    /// The encoding for a request with these headers.
    pub fn negotiate(self: &Arc<Self>, method: &Method, headers: &HeaderMap) -> Negotiated {
        let encoding = if method == Method::HEAD || headers.contains_key(&self.opt_out) {
            None
        } else {
            negotiate::choose(
                headers
                    .get_all(header::ACCEPT_ENCODING)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
                &self.preference,
            )
        };
        Negotiated {
            policy: self.clone(),
            encoding,
        }
    }

    /// Whether a response with these headers is of a compressible type (server-sent events
    /// never are).
    pub fn compressible_type(&self, headers: &HeaderMap) -> bool {
        let Some(media) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
        else {
            return false;
        };
        media != "text/event-stream" && self.types.iter().any(|t| t.matches(&media))
    }

    /// Whether this response may be encoded at all (size aside).
    pub fn eligible(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        !(status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::PARTIAL_CONTENT
            || headers.contains_key(header::CONTENT_RANGE)
            || already_encoded(headers)
            || no_transform(headers))
            && self.compressible_type(headers)
    }
}

/// A `Content-Encoding` other than `identity` is present.
pub fn already_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// Adds `Accept-Encoding` to `Vary` unless it is there (or `Vary: *`).
pub fn add_vary(headers: &mut HeaderMap) {
    let present = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| {
            let name = name.trim();
            name == "*" || name.eq_ignore_ascii_case("accept-encoding")
        });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// Marks the headers of a body now sent with `encoding`: `Content-Encoding`, `Vary`, a weak
/// `ETag` (the bytes differ from the identity's), no `Content-Length` unless `length` is known.
pub fn mark_encoded(headers: &mut HeaderMap, encoding: Encoding, length: Option<usize>) {
    headers.insert(header::CONTENT_ENCODING, encoding.header_value());
    match length {
        Some(length) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        None => {
            headers.remove(header::CONTENT_LENGTH);
        }
    }
    if let Some(etag) = headers.get(header::ETAG)
        && !etag.as_bytes().starts_with(b"W/")
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(value) = HeaderValue::from_bytes(&weak) {
            headers.insert(header::ETAG, value);
        }
    }
    add_vary(headers);
    metrics::counter!(m::COMPRESSION_RESPONSES_TOTAL, "encoding" => encoding.as_str()).increment(1);
}

/// Stage 12: encodes `response` as negotiated, streaming. A response that already carries a
/// `Content-Encoding` (a cache hit encoded from its entry, or the upstream's own) is left as it is.
pub fn apply(response: Response<ResponseBody>, negotiated: &Negotiated) -> Response<ResponseBody> {
    let policy = &negotiated.policy;
    if !policy.eligible(response.status(), response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Whatever this client gets, another may get another encoding: downstream caches must vary.
    add_vary(&mut parts.headers);
    let small = declared_length(&parts.headers).is_some_and(|n| n < policy.min_bytes);
    let Some(encoding) = negotiated.encoding.filter(|_| !small) else {
        return Response::from_parts(parts, body);
    };
    let size = declared_length(&parts.headers);
    match encoder::CompressedBody::new(body, encoding, &policy.levels, size) {
        Ok(encoded) => {
            mark_encoded(&mut parts.headers, encoding, None);
            Response::from_parts(parts, encoded.boxed_unsync())
        }
        Err((error, body)) => {
            // Only zstd's context creation can fail (out of memory): send the body unchanged.
            tracing::warn!(%error, "compression: encoder unavailable; sending identity");
            Response::from_parts(parts, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Arc<Compression> {
        Arc::new(CompressionSettings::default().build().unwrap())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn content_types() {
        let p = policy();
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "TEXT/HTML",
            "application/problem+json",
            "image/svg+xml",
        ] {
            assert!(
                p.compressible_type(&headers(&[("content-type", yes)])),
                "{yes}"
            );
        }
        for no in [
            "image/png",
            "text/event-stream",
            "application/octet-stream",
            "",
        ] {
            assert!(
                !p.compressible_type(&headers(&[("content-type", no)])),
                "{no}"
            );
        }
        assert!(!p.compressible_type(&HeaderMap::new()));
    }

    #[test]
    fn eligibility() {
        let p = policy();
        let json = [("content-type", "application/json")];
        assert!(p.eligible(StatusCode::OK, &headers(&json)));
        assert!(!p.eligible(StatusCode::NO_CONTENT, &headers(&json)));
        assert!(!p.eligible(StatusCode::PARTIAL_CONTENT, &headers(&json)));
        let gz = [
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ];
        assert!(!p.eligible(StatusCode::OK, &headers(&gz)));
        let nt = [
            ("content-type", "application/json"),
            ("cache-control", "public, no-transform"),
        ];
        assert!(!p.eligible(StatusCode::OK, &headers(&nt)));
    }

    #[test]
    fn negotiation_honours_opt_out_and_head() {
        let p = policy();
        let accept = headers(&[("accept-encoding", "gzip")]);
        assert_eq!(
            p.negotiate(&Method::GET, &accept).encoding,
            Some(Encoding::Gzip)
        );
        assert_eq!(p.negotiate(&Method::HEAD, &accept).encoding, None);
        let opted = headers(&[("accept-encoding", "gzip"), ("x-no-compression", "1")]);
        assert_eq!(p.negotiate(&Method::GET, &opted).encoding, None);
    }

    #[test]
    fn settings_problems() {
        let mut s = CompressionSettings {
            algorithms: vec!["gzip".into(), "deflate".into()],
            ..Default::default()
        };
        assert_eq!(s.build().unwrap_err().0, "algorithms[1]");
        s.algorithms = vec![];
        assert_eq!(s.build().unwrap_err().0, "algorithms");
        s.algorithms = vec!["br".into()];
        s.content_types = vec!["json".into()];
        assert_eq!(s.build().unwrap_err().0, "content_types[0]");
        s.content_types = vec!["text/*".into()];
        s.zstd_level = 40;
        assert_eq!(s.build().unwrap_err().0, "zstd_level");
    }

    #[test]
    fn vary_and_weak_etag() {
        let mut h = headers(&[("etag", "\"abc\""), ("vary", "origin")]);
        mark_encoded(&mut h, Encoding::Br, Some(10));
        assert_eq!(h["etag"], "W/\"abc\"");
        assert_eq!(h["content-encoding"], "br");
        assert_eq!(h["content-length"], "10");
        let vary: Vec<_> = h.get_all("vary").iter().collect();
        assert_eq!(vary.len(), 2);
        add_vary(&mut h);
        assert_eq!(h.get_all("vary").iter().count(), 2);
    }
}
