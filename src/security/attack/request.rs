//! The request line and headers: the path as one value, each query parameter, the headers worth
//! inspecting, and each cookie.

use http::HeaderMap;

use super::decode::percent_decode;
use super::detector::{Collector, label};
use super::rules::scope;

pub(crate) fn inspect_path(path: &str, c: &mut Collector<'_>) {
    c.value(path, 3, scope::PATH, || "path".to_string());
}

/// `a=1&b=2`: each name and value, URL-decoded once here with `+` as a space, then up to two
/// more rounds in normalization.
pub(crate) fn inspect_query(query: &str, c: &mut Collector<'_>) {
    inspect_pairs(query, scope::QUERY, "query:", c);
}

/// Shared by the query string and urlencoded form bodies.
pub(crate) fn inspect_pairs(raw: &str, sc: u8, prefix: &str, c: &mut Collector<'_>) {
    inspect_pairs_with(raw, sc, c, |name| format!("{prefix}{}", label(name)));
}

/// The query of a URL in a header: every pair is reported at the header's location.
fn inspect_pairs_at(raw: &str, sc: u8, c: &mut Collector<'_>, location: impl Fn() -> String) {
    inspect_pairs_with(raw, sc, c, |_| location());
}

fn inspect_pairs_with(
    raw: &str,
    sc: u8,
    c: &mut Collector<'_>,
    location_of: impl Fn(&str) -> String,
) {
    for pair in raw.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name, true);
        let location = || location_of(&name);
        c.value(&name, 2, sc, location);
        if value.is_empty() || c.excluded(&name) {
            continue;
        }
        let value = percent_decode(value, true);
        c.value(&value, 2, sc, location);
    }
}

/// Headers whose values are not inspected: standard ones that cannot carry an attack in a way
/// an upstream would act on, and credentials.
fn skipped_header(name: &str) -> bool {
    matches!(
        name,
        "accept"
            | "accept-charset"
            | "accept-encoding"
            | "accept-language"
            | "accept-ranges"
            | "access-control-request-headers"
            | "access-control-request-method"
            | "authorization"
            | "proxy-authorization"
            | "cache-control"
            | "connection"
            | "content-encoding"
            | "content-length"
            | "content-md5"
            | "content-type"
            | "date"
            | "dnt"
            | "expect"
            | "host"
            | "if-match"
            | "if-modified-since"
            | "if-none-match"
            | "if-range"
            | "if-unmodified-since"
            | "keep-alive"
            | "max-forwards"
            | "pragma"
            | "priority"
            | "range"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "upgrade-insecure-requests"
            | "purpose"
            | "sec-gpc"
    ) || name.starts_with("sec-fetch-")
        || name.starts_with("sec-ch-")
        || name.starts_with("sec-websocket-")
}

/// A value that is obviously an opaque token (JWT, base64, hex, API key): 20+ characters of
/// `[A-Za-z0-9_+/=.-]`, at least three digits, no `..`.
pub(crate) fn token_like(v: &str) -> bool {
    v.len() >= 20
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'/' | b'=' | b'.')
        })
        && v.bytes().filter(u8::is_ascii_digit).count() >= 3
        && !v.contains("..")
}

pub(crate) fn inspect_headers(headers: &HeaderMap, c: &mut Collector<'_>) {
    for (name, value) in headers {
        let name = name.as_str();
        if name == "cookie" {
            inspect_cookies(&String::from_utf8_lossy(value.as_bytes()), c);
            continue;
        }
        if skipped_header(name) || c.excluded(name) {
            continue;
        }
        let text = String::from_utf8_lossy(value.as_bytes());
        let sc = match name {
            "referer" | "origin" => scope::REFERER,
            "user-agent" => scope::HEADER,
            _ if token_like(&text) => continue,
            _ => scope::HEADER,
        };
        if sc == scope::REFERER
            && let Some((url, query)) = text.split_once('?')
        {
            // A URL: its query parameters are values of their own, read like a query string.
            let location = || format!("header:{name}");
            c.value(url, 3, sc, location);
            inspect_pairs_at(query, sc, c, location);
            continue;
        }
        c.value(&text, 3, sc, || format!("header:{name}"));
    }
}

/// `a=1; b=2`: each cookie's name and value.
fn inspect_cookies(header: &str, c: &mut Collector<'_>) {
    for cookie in header.split(';') {
        let cookie = cookie.trim();
        if cookie.is_empty() {
            continue;
        }
        let (name, value) = cookie.split_once('=').unwrap_or(("", cookie));
        let name = name.trim();
        let location = || format!("cookie:{}", label(name));
        c.value(name, 3, scope::COOKIE, location);
        let value = value.trim().trim_matches('"');
        if value.is_empty() || c.excluded(name) || token_like(value) {
            continue;
        }
        c.value(value, 3, scope::COOKIE, location);
    }
}
