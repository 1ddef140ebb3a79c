//! HTTP caching rules for a shared cache (RFC 9111): `Cache-Control` directives, whether a
//! response may be stored, and for how long it is fresh, then servable stale.
//!
//! Owns decisions on headers only; it must not touch stores or bodies.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use http::header::{self, HeaderMap};

use super::settings::RoutePolicy;

/// The `Cache-Control` directives rampart acts on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
}

impl Directives {
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else {
                // An unreadable header: be safe.
                d.no_store = true;
                continue;
            };
            for item in split_directives(value) {
                let (name, arg) = match item.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (item.trim(), None),
                };
                let seconds = || arg.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    // The qualified forms (`no-cache="set-cookie"`) are taken as the whole
                    // directive: stricter, never wrong.
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    "must-revalidate" | "proxy-revalidate" => d.must_revalidate = true,
                    // A malformed age is treated as already stale (RFC 9111 §4.2.1).
                    "max-age" => d.max_age = Some(seconds().unwrap_or(0)),
                    "s-maxage" => {
                        d.s_maxage = Some(seconds().unwrap_or(0));
                        d.must_revalidate = true;
                    }
                    "stale-while-revalidate" => d.stale_while_revalidate = seconds(),
                    "stale-if-error" => d.stale_if_error = seconds(),
                    _ => {}
                }
            }
        }
        d
    }
}

/// Splits on commas outside quoted strings.
fn split_directives(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// How long a stored response is fresh and then servable stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub fresh: Duration,
    /// The response's age when it arrived (its `Age` header).
    pub initial_age: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
}

/// Whether a response may be stored, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Store(Lifetime),
    Skip(&'static str),
}

/// Decides whether the response (status and headers) to a request may be stored under `policy`.
/// `authorized`: the request carried `Authorization` on a shared route.
pub fn evaluate(
    policy: &RoutePolicy,
    status: StatusCode,
    headers: &HeaderMap,
    authorized: bool,
    now: SystemTime,
) -> Verdict {
    if !policy.statuses.contains(&status) {
        return Verdict::Skip("status");
    }
    if headers.contains_key(header::SET_COOKIE) && !policy.strip_set_cookie {
        return Verdict::Skip("set-cookie");
    }
    if headers.contains_key(header::CONTENT_RANGE) {
        return Verdict::Skip("partial");
    }
    if policy.honor_vary && vary_names(headers).is_none() {
        return Verdict::Skip("vary-star");
    }
    // RFC 9111 §4.2.3: the larger of the Age header and the time since the response's Date.
    let apparent = headers
        .get(header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .and_then(|date| now.duration_since(date).ok())
        .map_or(0, |d| d.as_secs());
    let initial_age = Duration::from_secs(age(headers).max(apparent));
    if !policy.honor_cache_control {
        return Verdict::Store(Lifetime {
            fresh: policy.ttl,
            initial_age: Duration::ZERO,
            stale_while_revalidate: policy.stale_while_revalidate,
            stale_if_error: policy.stale_if_error,
        });
    }
    let d = Directives::parse(headers);
    if d.no_store {
        return Verdict::Skip("no-store");
    }
    if d.private {
        return Verdict::Skip("private");
    }
    // RFC 9111 §3.5: a shared cache stores an answer to an authorized request only when the
    // response says it may.
    if authorized && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return Verdict::Skip("authorization");
    }
    let fresh = if d.no_cache {
        Duration::ZERO
    } else if let Some(s) = d.s_maxage {
        Duration::from_secs(s)
    } else if let Some(m) = d.max_age {
        Duration::from_secs(m)
    } else if let Some(expires) = headers.get(header::EXPIRES) {
        // An invalid Expires (such as "0") means already expired.
        let expires = expires
            .to_str()
            .ok()
            .and_then(|e| httpdate::parse_http_date(e).ok());
        let date = headers
            .get(header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .unwrap_or(now);
        expires
            .and_then(|e| e.duration_since(date).ok())
            .unwrap_or(Duration::ZERO)
    } else {
        policy.ttl
    };
    let (swr, sie) = if d.must_revalidate {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (
            d.stale_while_revalidate
                .map_or(policy.stale_while_revalidate, Duration::from_secs),
            d.stale_if_error
                .map_or(policy.stale_if_error, Duration::from_secs),
        )
    };
    let has_validator =
        headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
    if fresh <= initial_age
        && swr.is_zero()
        && sie.is_zero()
        && policy.keep_stale.is_zero()
        && !has_validator
    {
        return Verdict::Skip("stale-on-arrival");
    }
    Verdict::Store(Lifetime {
        fresh,
        initial_age,
        stale_while_revalidate: swr,
        stale_if_error: sie,
    })
}

/// The request header names the response varies on (lower-case, `Accept-Encoding` kept);
/// `None` for `Vary: *`, which matches no later request.
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<http::HeaderName>> {
    let mut names: Vec<http::HeaderName> = Vec::new();
    for value in headers.get_all(header::VARY) {
        let Ok(value) = value.to_str() else {
            return None;
        };
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) else {
                return None;
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(names)
}

/// The `Age` header in seconds: 0 when absent; a malformed one (negative, fractional, a list,
/// repeated) makes the response as old as can be, so it is never taken for fresh.
pub fn age(headers: &HeaderMap) -> u64 {
    const INVALID: u64 = u32::MAX as u64;
    let mut values = headers.get_all(header::AGE).iter();
    let Some(value) = values.next() else {
        return 0;
    };
    if values.next().is_some() {
        return INVALID;
    }
    let text = value.to_str().unwrap_or("").trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return INVALID;
    }
    text.parse().unwrap_or(INVALID)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RoutePolicy {
        RoutePolicy {
            ttl: Duration::from_secs(300),
            get: true,
            head: true,
            post: false,
            key_headers: vec![],
            ignore_query_params: vec![],
            shared: false,
            honor_cache_control: true,
            honor_vary: true,
            statuses: vec![StatusCode::OK, StatusCode::MOVED_PERMANENTLY],
            strip_set_cookie: false,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            keep_stale: Duration::ZERO,
            purge_on_write: false,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn fresh_for(pairs: &[(&str, &str)]) -> Result<u64, &'static str> {
        match evaluate(
            &policy(),
            StatusCode::OK,
            &headers(pairs),
            false,
            SystemTime::now(),
        ) {
            Verdict::Store(l) => Ok(l.fresh.as_secs()),
            Verdict::Skip(why) => Err(why),
        }
    }

    #[test]
    fn freshness_sources_in_order() {
        assert_eq!(fresh_for(&[]), Ok(300));
        assert_eq!(fresh_for(&[("cache-control", "max-age=60")]), Ok(60));
        assert_eq!(
            fresh_for(&[("cache-control", "max-age=60, s-maxage=600")]),
            Ok(600)
        );
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let expires = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            fresh_for(&[("date", &date), ("expires", &expires)]),
            Ok(120)
        );
        assert_eq!(fresh_for(&[("expires", "0")]), Err("stale-on-arrival"));
        assert_eq!(
            fresh_for(&[("cache-control", "no-cache"), ("etag", "\"1\"")]),
            Ok(0)
        );
        assert_eq!(
            fresh_for(&[("cache-control", "no-cache")]),
            Err("stale-on-arrival")
        );
        assert_eq!(
            fresh_for(&[("cache-control", "max-age=0")]),
            Err("stale-on-arrival")
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(fresh_for(&[("cache-control", "no-store")]), Err("no-store"));
        assert_eq!(
            fresh_for(&[("cache-control", "private, max-age=60")]),
            Err("private")
        );
        assert_eq!(
            fresh_for(&[("cache-control", "private=\"x-a, x-b\", max-age=60")]),
            Err("private")
        );
        assert_eq!(fresh_for(&[("set-cookie", "a=1")]), Err("set-cookie"));
        assert_eq!(fresh_for(&[("vary", "*")]), Err("vary-star"));
        let p = policy();
        assert_eq!(
            evaluate(
                &p,
                StatusCode::NOT_FOUND,
                &HeaderMap::new(),
                false,
                SystemTime::now()
            ),
            Verdict::Skip("status")
        );
        assert_eq!(
            evaluate(
                &p,
                StatusCode::OK,
                &HeaderMap::new(),
                true,
                SystemTime::now()
            ),
            Verdict::Skip("authorization")
        );
        assert!(matches!(
            evaluate(
                &p,
                StatusCode::OK,
                &headers(&[("cache-control", "public")]),
                true,
                SystemTime::now()
            ),
            Verdict::Store(_)
        ));
    }

    #[test]
    fn overrides_and_stale_windows() {
        let mut p = policy();
        p.stale_if_error = Duration::from_secs(30);
        let Verdict::Store(l) = evaluate(
            &p,
            StatusCode::OK,
            &headers(&[
                ("cache-control", "max-age=5, stale-while-revalidate=10"),
                ("age", "2"),
            ]),
            false,
            SystemTime::now(),
        ) else {
            panic!()
        };
        assert_eq!(l.stale_while_revalidate, Duration::from_secs(10));
        assert_eq!(l.stale_if_error, Duration::from_secs(30));
        assert_eq!(l.initial_age, Duration::from_secs(2));
        let Verdict::Store(l) = evaluate(
            &p,
            StatusCode::OK,
            &headers(&[(
                "cache-control",
                "max-age=5, must-revalidate, stale-if-error=10",
            )]),
            false,
            SystemTime::now(),
        ) else {
            panic!()
        };
        assert_eq!(l.stale_if_error, Duration::ZERO);
        p.honor_cache_control = false;
        assert!(matches!(
            evaluate(&p, StatusCode::OK, &headers(&[("cache-control", "no-store, private")]), false, SystemTime::now()),
            Verdict::Store(Lifetime { fresh, .. }) if fresh == Duration::from_secs(300)
        ));
        // Set-Cookie is never stored unless the route strips it, whatever else it says.
        assert_eq!(
            evaluate(
                &p,
                StatusCode::OK,
                &headers(&[("set-cookie", "a=1")]),
                false,
                SystemTime::now()
            ),
            Verdict::Skip("set-cookie")
        );
    }

    #[test]
    fn ages() {
        assert_eq!(age(&HeaderMap::new()), 0);
        assert_eq!(age(&headers(&[("age", "30")])), 30);
        for bad in ["-1", "1.5", "7200,0", "abc", "7200a", ""] {
            assert_eq!(age(&headers(&[("age", bad)])), u32::MAX as u64, "{bad:?}");
        }
        assert_eq!(
            age(&headers(&[("age", "0"), ("age", "7200")])),
            u32::MAX as u64
        );
        // An old Date counts even without Age.
        assert_eq!(
            fresh_for(&[
                ("date", "Sun, 22 Nov 2020 08:00:00 GMT"),
                ("cache-control", "max-age=60")
            ]),
            Err("stale-on-arrival")
        );
    }

    #[test]
    fn vary() {
        assert_eq!(
            vary_names(&headers(&[
                ("vary", "Accept-Language, origin"),
                ("vary", "origin")
            ])),
            Some(vec![
                http::HeaderName::from_static("accept-language"),
                http::HeaderName::from_static("origin")
            ])
        );
        assert_eq!(vary_names(&headers(&[("vary", "a, *")])), None);
        assert_eq!(vary_names(&HeaderMap::new()), Some(vec![]));
    }
}
