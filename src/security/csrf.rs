//! CSRF protection for routes authenticated by cookie: a state-changing request (anything but
//! GET, HEAD, OPTIONS, TRACE) must carry an `Origin` (or, failing that, a `Referer`) whose origin
//! is the request's own host or on the route's CORS allowlist. Browsers always send one of them
//! on cross-site form posts and fetches, so a forged request cannot pass.

use http::Method;
use http::header::{self, HeaderMap};

/// Whether `method` can change state.
pub fn is_state_changing(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Checks a state-changing request. `host` is the request's host (lower-case, no port);
/// `allowed` says whether an origin such as `https://app.example.com` is on the allowlist.
pub fn check(
    headers: &HeaderMap,
    host: Option<&str>,
    allowed: impl Fn(&str) -> bool,
) -> Result<(), &'static str> {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| *o != "null")
        .map(str::to_owned)
        .or_else(|| {
            headers
                .get(header::REFERER)
                .and_then(|v| v.to_str().ok())
                .and_then(origin_of)
        });
    let Some(origin) = origin else {
        return Err("missing Origin and Referer on a cookie-authenticated request");
    };
    let same_host = origin
        .split_once("://")
        .map(|(_, authority)| authority.rsplit_once(':').map_or(authority, |(h, _)| h))
        .is_some_and(|origin_host| host.is_some_and(|h| origin_host.eq_ignore_ascii_case(h)));
    if same_host || allowed(&origin) {
        Ok(())
    } else {
        Err("cross-site request origin is not allowed")
    }
}

/// `https://app.example.com/page?x` → `https://app.example.com`.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn origins() {
        let allow = |o: &str| o == "https://app.example.com";
        let host = Some("api.example.com");
        assert!(
            check(
                &headers(&[("origin", "https://app.example.com")]),
                host,
                allow
            )
            .is_ok()
        );
        assert!(
            check(
                &headers(&[("origin", "https://api.example.com:8443")]),
                host,
                allow
            )
            .is_ok()
        );
        assert!(check(&headers(&[("origin", "https://evil.com")]), host, allow).is_err());
        assert!(
            check(
                &headers(&[("referer", "https://app.example.com/form?a=1")]),
                host,
                allow
            )
            .is_ok()
        );
        assert!(
            check(
                &headers(&[("referer", "https://evil.com/app.example.com")]),
                host,
                allow
            )
            .is_err()
        );
        assert!(check(&headers(&[]), host, allow).is_err());
        assert!(check(&headers(&[("origin", "null")]), host, allow).is_err());
        assert!(is_state_changing(&Method::POST));
        assert!(!is_state_changing(&Method::GET));
    }
}
