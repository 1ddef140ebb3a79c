//! Why a request was not authenticated: a machine-readable kind, a message safe to show clients
//! (never a secret, a key or the token), and the `WWW-Authenticate` challenge (RFC 6750).

use std::fmt;

use http::HeaderValue;

/// Why authentication failed. Every variant maps to 401 at the edge; which credential failed and
/// why is in [`kind`](Self::kind) and [`message`](Self::message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No bearer token in the configured header or cookie.
    Missing,
    /// No API key in the configured header or query parameter.
    MissingApiKey,
    /// The signature is valid but `exp` (plus leeway) has passed.
    Expired,
    /// The signature is valid but `nbf` (or `iat`) is in the future beyond the leeway.
    NotYetValid,
    /// The signature is valid but `iat` is older than the provider's `max_age` (plus leeway).
    TooOld,
    /// The token is unusable before its signature could be checked: malformed, too large, or an
    /// algorithm this provider does not allow (including `none`).
    Invalid(&'static str),
    /// The token is well-formed and its algorithm allowed, but the signature does not verify
    /// with the provider's key (tampered, or signed by someone else).
    BadSignature,
    /// The signature is valid but a claim is not acceptable: wrong issuer or audience, a required
    /// claim missing, a time claim of the wrong type, `iat` missing while `max_age` is set.
    InvalidClaims(&'static str),
    /// The token names (by `kid`) a key the provider does not have, even after a JWKS refresh.
    UnknownKey,
    /// An API key was presented but matches no configured key.
    InvalidApiKey,
}

impl AuthFailure {
    /// Stable machine-readable name, for logs, metrics and error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing_token",
            AuthFailure::MissingApiKey => "missing_api_key",
            AuthFailure::Expired => "token_expired",
            AuthFailure::NotYetValid => "token_not_yet_valid",
            AuthFailure::TooOld => "token_too_old",
            AuthFailure::Invalid(_) | AuthFailure::BadSignature => "invalid_token",
            AuthFailure::InvalidClaims(_) => "invalid_claims",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::InvalidApiKey => "invalid_api_key",
        }
    }

    /// A short explanation that is safe to send to the client.
    pub fn message(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "a bearer token is required",
            AuthFailure::MissingApiKey => "an API key is required",
            AuthFailure::Expired => "the token has expired",
            AuthFailure::NotYetValid => "the token is not valid yet",
            AuthFailure::TooOld => "the token was issued too long ago",
            AuthFailure::Invalid(reason) | AuthFailure::InvalidClaims(reason) => reason,
            AuthFailure::BadSignature => "the token signature does not match",
            AuthFailure::UnknownKey => "the token is signed with an unknown key",
            AuthFailure::InvalidApiKey => "the API key is not valid",
        }
    }

    /// The `WWW-Authenticate` value for a 401 carrying this failure. Bearer failures follow
    /// RFC 6750: plain `Bearer` when no token was sent, otherwise
    /// `Bearer error="invalid_token", error_description="…"`. API-key failures use the
    /// (unregistered, informational) `ApiKey` scheme the same way.
    pub fn www_authenticate(&self) -> HeaderValue {
        match self {
            AuthFailure::Missing => HeaderValue::from_static("Bearer"),
            AuthFailure::MissingApiKey => HeaderValue::from_static("ApiKey"),
            AuthFailure::InvalidApiKey => {
                HeaderValue::from_static("ApiKey error=\"invalid_api_key\"")
            }
            _ => HeaderValue::try_from(format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                self.message()
            ))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\"")),
        }
    }

    /// Whether credentials of this provider's kind were present at all.
    pub fn is_missing(&self) -> bool {
        matches!(self, AuthFailure::Missing | AuthFailure::MissingApiKey)
    }

    /// How far the credential got before failing; [`authenticate_any`](super::authenticate_any)
    /// reports the failure that got furthest. 0: nothing presented; 1: presented but not for
    /// this provider, or unusable (malformed, algorithm not allowed, unknown API key); 2: meant
    /// for this provider's keys but not verified (bad signature, unknown `kid`); 3: signature
    /// verified, claims refused.
    pub(crate) fn specificity(&self) -> u8 {
        match self {
            AuthFailure::Missing | AuthFailure::MissingApiKey => 0,
            AuthFailure::Invalid(_) | AuthFailure::InvalidApiKey => 1,
            AuthFailure::BadSignature | AuthFailure::UnknownKey => 2,
            AuthFailure::Expired
            | AuthFailure::NotYetValid
            | AuthFailure::TooOld
            | AuthFailure::InvalidClaims(_) => 3,
        }
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for AuthFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(AuthFailure::Missing.www_authenticate(), "Bearer");
        assert_eq!(
            AuthFailure::Expired.www_authenticate(),
            "Bearer error=\"invalid_token\", error_description=\"the token has expired\""
        );
        assert_eq!(
            AuthFailure::Invalid("malformed token").www_authenticate(),
            "Bearer error=\"invalid_token\", error_description=\"malformed token\""
        );
        assert_eq!(AuthFailure::MissingApiKey.www_authenticate(), "ApiKey");
        assert_eq!(AuthFailure::Expired.kind(), "token_expired");
        assert_eq!(
            AuthFailure::Expired.to_string(),
            "token_expired: the token has expired"
        );
    }
}
