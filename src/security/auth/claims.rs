//! The registered-claim checks applied to a JWT whose signature is already verified: `exp`,
//! `nbf`, `iat` with leeway, `max_age` from `iat`, `iss`, `aud`, and required claims.

use serde_json::Value;

use super::failure::AuthFailure;
use super::identity::lookup;

/// What a provider demands of a token's claims. Times are seconds since the epoch (RFC 7519
/// NumericDate, fractions allowed).
#[derive(Debug, Clone)]
pub(crate) struct ClaimPolicy {
    /// Any of these `iss`; empty accepts any (or no) issuer.
    pub(crate) issuers: Vec<String>,
    /// Any of these in `aud` (a string or a list); empty skips the audience check.
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway: f64,
    pub(crate) max_age: Option<f64>,
    pub(crate) required: Vec<String>,
    pub(crate) require_exp: bool,
}

impl ClaimPolicy {
    /// Checks in this order: `exp`, `nbf`, `iat` (future, then `max_age`), `iss`, `aud`,
    /// required claims; the first failure is returned.
    pub(crate) fn check(&self, claims: &Value, now: f64) -> Result<(), AuthFailure> {
        match time(claims, "exp")? {
            Some(exp) if now >= exp + self.leeway => return Err(AuthFailure::Expired),
            None if self.require_exp => {
                return Err(AuthFailure::InvalidClaims("the token has no exp claim"));
            }
            _ => {}
        }
        if let Some(nbf) = time(claims, "nbf")?
            && now + self.leeway < nbf
        {
            return Err(AuthFailure::NotYetValid);
        }
        match time(claims, "iat")? {
            Some(iat) if iat > now + self.leeway => return Err(AuthFailure::NotYetValid),
            Some(iat) => {
                if let Some(max_age) = self.max_age
                    && now - iat > max_age + self.leeway
                {
                    return Err(AuthFailure::TooOld);
                }
            }
            None if self.max_age.is_some() => {
                return Err(AuthFailure::InvalidClaims("the token has no iat claim"));
            }
            None => {}
        }
        if !self.issuers.is_empty() {
            let accepted = match claims.get("iss") {
                Some(Value::String(iss)) => self.issuers.iter().any(|i| i == iss),
                _ => false,
            };
            if !accepted {
                return Err(AuthFailure::InvalidClaims("issuer not accepted"));
            }
        }
        if !self.audiences.is_empty() {
            let accepted = match claims.get("aud") {
                Some(Value::String(aud)) => self.audiences.iter().any(|a| a == aud),
                Some(Value::Array(auds)) => auds.iter().any(|aud| {
                    aud.as_str()
                        .is_some_and(|aud| self.audiences.iter().any(|a| a == aud))
                }),
                _ => false,
            };
            if !accepted {
                return Err(AuthFailure::InvalidClaims("audience not accepted"));
            }
        }
        for path in &self.required {
            if lookup(claims, path).is_none_or(Value::is_null) {
                return Err(AuthFailure::InvalidClaims("a required claim is missing"));
            }
        }
        Ok(())
    }
}

/// A NumericDate claim: absent or null is `None`; anything but a number is refused.
fn time(claims: &Value, name: &str) -> Result<Option<f64>, AuthFailure> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or(AuthFailure::InvalidClaims("a time claim is not a number")),
        Some(_) => Err(AuthFailure::InvalidClaims("a time claim is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: f64 = 1_700_000_000.0;

    fn policy() -> ClaimPolicy {
        ClaimPolicy {
            issuers: vec![],
            audiences: vec![],
            leeway: 30.0,
            max_age: None,
            required: vec![],
            require_exp: true,
        }
    }

    fn check(policy: &ClaimPolicy, claims: Value) -> Result<(), AuthFailure> {
        policy.check(&claims, NOW)
    }

    #[test]
    fn time_claims_with_leeway() {
        let p = policy();
        assert_eq!(check(&p, json!({"exp": NOW + 1.0})), Ok(()));
        assert_eq!(check(&p, json!({"exp": NOW - 29.0})), Ok(()));
        assert_eq!(
            check(&p, json!({"exp": NOW - 30.0})),
            Err(AuthFailure::Expired)
        );
        assert_eq!(
            check(&p, json!({})),
            Err(AuthFailure::InvalidClaims("the token has no exp claim"))
        );
        assert_eq!(
            check(&p, json!({"exp": "tomorrow"})),
            Err(AuthFailure::InvalidClaims("a time claim is not a number"))
        );
        let e = NOW + 100.0;
        assert_eq!(check(&p, json!({"exp": e, "nbf": NOW + 29.0})), Ok(()));
        assert_eq!(
            check(&p, json!({"exp": e, "nbf": NOW + 31.0})),
            Err(AuthFailure::NotYetValid)
        );
        assert_eq!(
            check(&p, json!({"exp": e, "iat": NOW + 31.0})),
            Err(AuthFailure::NotYetValid)
        );
        let p = ClaimPolicy {
            max_age: Some(3600.0),
            require_exp: false,
            ..policy()
        };
        assert_eq!(check(&p, json!({"iat": NOW - 3600.0})), Ok(()));
        assert_eq!(
            check(&p, json!({"iat": NOW - 3631.0})),
            Err(AuthFailure::TooOld)
        );
        assert_eq!(
            check(&p, json!({})),
            Err(AuthFailure::InvalidClaims("the token has no iat claim"))
        );
    }

    #[test]
    fn issuer_audience_required() {
        let p = ClaimPolicy {
            issuers: vec!["https://a".into(), "https://b".into()],
            audiences: vec!["api".into()],
            required: vec!["sub".into(), "org.id".into()],
            require_exp: false,
            ..policy()
        };
        let ok = json!({"iss": "https://b", "aud": ["x", "api"], "sub": "u", "org": {"id": 1}});
        assert_eq!(check(&p, ok), Ok(()));
        let cases = [
            (
                json!({"iss": "https://c", "aud": "api", "sub": "u", "org": {"id": 1}}),
                "issuer not accepted",
            ),
            (
                json!({"aud": "api", "sub": "u", "org": {"id": 1}}),
                "issuer not accepted",
            ),
            (
                json!({"iss": "https://a", "aud": "web", "sub": "u", "org": {"id": 1}}),
                "audience not accepted",
            ),
            (
                json!({"iss": "https://a", "sub": "u", "org": {"id": 1}}),
                "audience not accepted",
            ),
            (
                json!({"iss": "https://a", "aud": "api", "org": {"id": 1}}),
                "a required claim is missing",
            ),
            (
                json!({"iss": "https://a", "aud": "api", "sub": null, "org": {"id": 1}}),
                "a required claim is missing",
            ),
            (
                json!({"iss": "https://a", "aud": "api", "sub": "u", "org": {}}),
                "a required claim is missing",
            ),
        ];
        for (claims, reason) in cases {
            assert_eq!(
                check(&p, claims.clone()),
                Err(AuthFailure::InvalidClaims(reason)),
                "{claims}"
            );
        }
    }
}
