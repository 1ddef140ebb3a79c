//! Redaction for logs: query values of sensitive keys become `[REDACTED]`. Headers are never
//! logged at all, so `Authorization` and `Cookie` cannot leak through the access log.

use std::borrow::Cow;

/// `path?query` with the values of `sensitive` keys (lower-case, compared case-insensitively)
/// replaced.
pub fn redact_path_and_query<'a>(
    path: &'a str,
    query: Option<&str>,
    sensitive: &[String],
) -> Cow<'a, str> {
    let Some(query) = query else {
        return Cow::Borrowed(path);
    };
    let mut out = String::with_capacity(path.len() + 1 + query.len());
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (key, value) = match pair.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (pair, None),
        };
        out.push_str(key);
        if let Some(value) = value {
            out.push('=');
            if is_sensitive(key, sensitive) {
                out.push_str("[REDACTED]");
            } else {
                out.push_str(value);
            }
        }
    }
    Cow::Owned(out)
}

fn is_sensitive(key: &str, sensitive: &[String]) -> bool {
    let decoded = if key.contains('%') {
        Cow::Owned(key.replace("%5F", "_").replace("%5f", "_"))
    } else {
        Cow::Borrowed(key)
    };
    sensitive.iter().any(|s| s.eq_ignore_ascii_case(&decoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_only_sensitive_values() {
        let keys: Vec<String> = ["api_key", "token"].map(String::from).to_vec();
        assert_eq!(
            redact_path_and_query("/x", Some("a=1&API_KEY=sk-123&token=t&flag"), &keys),
            "/x?a=1&API_KEY=[REDACTED]&token=[REDACTED]&flag"
        );
        assert_eq!(redact_path_and_query("/x", None, &keys), "/x");
        assert_eq!(
            redact_path_and_query("/x", Some("api%5Fkey=s"), &keys),
            "/x?api%5Fkey=[REDACTED]"
        );
    }
}
