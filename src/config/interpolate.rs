//! `${VAR}` and `${VAR:-default}` substitution in string values; `$${` writes a literal `${`.
//! Owns the syntax only: the caller supplies the environment lookup and reports where.

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${NAME}` without a default, and `NAME` is not set.
    Unset(String),
    /// `${` without its closing brace, or an empty/invalid name.
    Malformed(String),
}

/// Replace every reference in `text`; `lookup` reads one variable.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let close = after.find('}').ok_or_else(|| {
                InterpolateError::Malformed(format!("`{tail}` has no closing `}}`"))
            })?;
            let body = &after[..close];
            let (name, default) = match body.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (body, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(InterpolateError::Malformed(format!(
                    "`${{{body}}}` is not a valid variable name (letters, digits and `_`)"
                )));
            }
            match (lookup(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(InterpolateError::Unset(name.to_owned())),
            }
            rest = &after[close + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_defaults() {
        assert_eq!(
            interpolate("https://${HOST}/x", &env).unwrap(),
            "https://example.com/x"
        );
        assert_eq!(interpolate("${PORT:-8080}", &env).unwrap(), "8080");
        assert_eq!(interpolate("${HOST:-other}", &env).unwrap(), "example.com");
        assert_eq!(interpolate("${EMPTY:-x}", &env).unwrap(), "");
        assert_eq!(interpolate("${MISSING:-}", &env).unwrap(), "");
        assert_eq!(
            interpolate("cost $5 $${HOST}", &env).unwrap(),
            "cost $5 ${HOST}"
        );
    }

    #[test]
    fn unset_and_malformed() {
        assert_eq!(
            interpolate("${MISSING}", &env),
            Err(InterpolateError::Unset("MISSING".into()))
        );
        assert!(matches!(
            interpolate("${HOST", &env),
            Err(InterpolateError::Malformed(_))
        ));
        assert!(matches!(
            interpolate("${1X}", &env),
            Err(InterpolateError::Malformed(_))
        ));
    }
}
