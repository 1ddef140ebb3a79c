//! Finding credentials in a request without copying them: a bearer token in a header or cookie,
//! an API key in a header or query parameter. Two copies of the same credential header (or query
//! parameter) are refused rather than guessed between.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, header};
use percent_encoding::percent_decode_str;

use super::failure::AuthFailure;

/// Where a provider looks for its bearer token.
#[derive(Debug, Clone)]
pub(crate) struct TokenSource {
    pub(crate) header: HeaderName,
    /// `Authorization` requires the `Bearer` scheme; other headers may carry the bare token.
    pub(crate) bearer_only: bool,
    pub(crate) cookie: Option<Box<str>>,
}

impl TokenSource {
    pub(crate) fn new(header: HeaderName, cookie: Option<&str>) -> Self {
        TokenSource {
            bearer_only: header == header::AUTHORIZATION,
            header,
            cookie: cookie.map(Into::into),
        }
    }

    /// The token, from the header first and then the cookie.
    pub(crate) fn find<'a>(&self, headers: &'a HeaderMap) -> Result<&'a str, AuthFailure> {
        let mut values = headers.get_all(&self.header).iter();
        if let Some(first) = values.next() {
            if values.next().is_some() {
                return Err(AuthFailure::Invalid("more than one token header"));
            }
            let text = first
                .to_str()
                .map_err(|_| AuthFailure::Invalid("the token is not ASCII"))?;
            if let Some(token) = bearer(text, self.bearer_only) {
                if token.is_empty() {
                    return Err(AuthFailure::Invalid("empty bearer token"));
                }
                return Ok(token);
            }
        }
        if let Some(name) = &self.cookie
            && let Some(token) = cookie(headers, name)
            && !token.is_empty()
        {
            return Ok(token);
        }
        Err(AuthFailure::Missing)
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive); with `bearer_only` false, a bare
/// value is the token too. `None` for an empty value or another scheme (`Basic …`).
fn bearer(text: &str, bearer_only: bool) -> Option<&str> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match text.split_once([' ', '\t']) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => Some(rest.trim()),
        _ if text.eq_ignore_ascii_case("bearer") => Some(""),
        _ if bearer_only => None,
        _ => Some(text),
    }
}

/// The first cookie named `name` in any `Cookie` header, without surrounding quotes.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key.trim() == name).then(|| {
                let value = value.trim();
                value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value)
            })
        })
}

/// The API key from `header` (whole value, trimmed) or else the `param` query parameter
/// (percent-decoded; `+` is kept as is).
pub(crate) fn api_key<'a>(
    header: Option<&HeaderName>,
    param: Option<&str>,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Result<Cow<'a, [u8]>, AuthFailure> {
    if let Some(header) = header {
        let mut values = headers.get_all(header).iter();
        if let Some(first) = values.next() {
            if values.next().is_some() {
                return Err(AuthFailure::InvalidApiKey);
            }
            let key = first.as_bytes().trim_ascii();
            if !key.is_empty() {
                return Ok(Cow::Borrowed(key));
            }
        }
    }
    if let (Some(param), Some(query)) = (param, query) {
        let mut found = None;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let matches = if name.contains('%') {
                percent_decode_str(name).eq(param.bytes())
            } else {
                name == param
            };
            if matches {
                if found.is_some() {
                    return Err(AuthFailure::InvalidApiKey);
                }
                found = Some(value);
            }
        }
        if let Some(value) = found.filter(|v| !v.is_empty()) {
            return Ok(percent_decode_str(value).into());
        }
    }
    Err(AuthFailure::MissingApiKey)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn bearer_forms() {
        let auth = TokenSource::new(header::AUTHORIZATION, Some("session"));
        assert_eq!(
            auth.find(&headers(&[("authorization", "Bearer abc")])),
            Ok("abc")
        );
        assert_eq!(
            auth.find(&headers(&[("authorization", "bearer   abc ")])),
            Ok("abc")
        );
        assert_eq!(
            auth.find(&headers(&[("authorization", "Bearer")])),
            Err(AuthFailure::Invalid("empty bearer token"))
        );
        assert_eq!(
            auth.find(&headers(&[("authorization", "Basic dXNlcjpwYXNz")])),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            auth.find(&headers(&[("authorization", "abc")])),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            auth.find(&headers(&[
                ("authorization", "Bearer a"),
                ("authorization", "Bearer b")
            ])),
            Err(AuthFailure::Invalid("more than one token header"))
        );
        assert_eq!(
            auth.find(&headers(&[
                ("cookie", "a=1; session=\"tok\""),
                ("cookie", "session=late")
            ])),
            Ok("tok")
        );
        assert_eq!(
            auth.find(&headers(&[
                ("authorization", "Basic x"),
                ("cookie", "session=tok")
            ])),
            Ok("tok")
        );
        assert_eq!(
            auth.find(&headers(&[("cookie", "sessionx=1")])),
            Err(AuthFailure::Missing)
        );
        assert_eq!(auth.find(&HeaderMap::new()), Err(AuthFailure::Missing));

        let custom = TokenSource::new(HeaderName::from_static("x-token"), None);
        assert_eq!(custom.find(&headers(&[("x-token", "abc")])), Ok("abc"));
        assert_eq!(
            custom.find(&headers(&[("x-token", "Bearer abc")])),
            Ok("abc")
        );
        assert_eq!(
            custom.find(&headers(&[("x-token", " ")])),
            Err(AuthFailure::Missing)
        );
    }

    #[test]
    fn api_key_forms() {
        let h = HeaderName::from_static("x-api-key");
        let get = |pairs: &[(&'static str, &'static str)], query: Option<&'static str>| {
            let map = headers(pairs);
            api_key(Some(&h), Some("api_key"), &map, query).map(|k| k.into_owned())
        };
        assert_eq!(get(&[("x-api-key", " k1 ")], None), Ok(b"k1".to_vec()));
        assert_eq!(get(&[], Some("a=1&api_key=k%2F2&b")), Ok(b"k/2".to_vec()));
        assert_eq!(get(&[], Some("api%5Fkey=k3")), Ok(b"k3".to_vec()));
        assert_eq!(
            get(&[("x-api-key", "k1")], Some("api_key=k2")),
            Ok(b"k1".to_vec())
        );
        assert_eq!(get(&[], Some("api_key=")), Err(AuthFailure::MissingApiKey));
        assert_eq!(get(&[], Some("x=1")), Err(AuthFailure::MissingApiKey));
        assert_eq!(get(&[], None), Err(AuthFailure::MissingApiKey));
        assert_eq!(
            get(&[], Some("api_key=a&api_key=b")),
            Err(AuthFailure::InvalidApiKey)
        );
        assert_eq!(
            get(&[("x-api-key", "a"), ("x-api-key", "b")], None),
            Err(AuthFailure::InvalidApiKey)
        );
    }
}
