//! [`Authenticator`]: one provider built from its settings, shared by every request of a config
//! generation; and [`authenticate_any`] over a route's list of providers.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use super::api_key::{self, ApiKeyVerifier};
use super::failure::AuthFailure;
use super::identity::{Identity, forward_headers};
use super::jwt::{self, JwtVerifier};
use super::settings::{AuthSettings, Problems};

/// Why a provider could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthBuildError {
    /// The settings are invalid (the same problems [`AuthSettings::validate`] reports).
    #[error("auth `{name}`: {}", describe(.problems))]
    Invalid { name: String, problems: Problems },
    /// The first JWKS fetch failed.
    #[error("auth `{name}`: cannot load the JWKS from {url}: {reason}")]
    Jwks {
        name: String,
        url: String,
        reason: String,
    },
}

fn describe(problems: &Problems) -> String {
    problems
        .iter()
        .map(|(key, message)| format!("{key}: {message}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A ready authentication provider. Built once per config load; `Send + Sync`, cheap to share in
/// an `Arc`. A JWKS provider owns a background refresh task that ends when it is dropped.
pub struct Authenticator {
    name: Arc<str>,
    identity_headers: Vec<HeaderName>,
    inner: Inner,
}

enum Inner {
    Jwt(Box<JwtVerifier>),
    ApiKey(ApiKeyVerifier),
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("name", &self.name)
            .field(
                "type",
                &match self.inner {
                    Inner::Jwt(_) => "jwt",
                    Inner::ApiKey(_) => "api_key",
                },
            )
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Validates `settings` (files relative to `base_dir`), loads keys and, for a JWKS provider,
    /// fetches the key set (a failure names the URL) and starts its periodic refresh. Needs a
    /// Tokio runtime.
    pub async fn build(
        settings: &AuthSettings,
        base_dir: &Path,
    ) -> Result<Authenticator, AuthBuildError> {
        let name: Arc<str> = settings.name().into();
        let invalid = |problems| AuthBuildError::Invalid {
            name: name.to_string(),
            problems,
        };
        let inner = match settings {
            AuthSettings::Jwt(s) => {
                let prepared = jwt::prepare(s, base_dir).map_err(invalid)?;
                let verifier = JwtVerifier::start(&name, prepared)
                    .await
                    .map_err(|reason| AuthBuildError::Jwks {
                        name: name.to_string(),
                        url: s.jwks_url.clone().unwrap_or_default(),
                        reason,
                    })?;
                Inner::Jwt(Box::new(verifier))
            }
            AuthSettings::ApiKey(s) => Inner::ApiKey(ApiKeyVerifier::new(
                api_key::prepare(s, base_dir).map_err(invalid)?,
            )),
        };
        let identity_headers = match &inner {
            Inner::Jwt(v) => v.forward.iter().map(|r| r.header.clone()).collect(),
            Inner::ApiKey(v) => v.forward_names.clone(),
        };
        Ok(Authenticator {
            name,
            identity_headers,
            inner,
        })
    }

    /// The provider's name from its settings.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the request's credentials. `query` is the raw query string (without `?`), used
    /// by API-key providers configured with `query`.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Identity, AuthFailure> {
        match &self.inner {
            Inner::Jwt(verifier) => {
                let claims = verifier.verify(headers).await?;
                let subject = claims
                    .get("sub")
                    .and_then(|s| s.as_str())
                    .map(str::to_owned);
                let forward = forward_headers(&verifier.forward, &claims);
                Ok(Identity {
                    provider: self.name.clone(),
                    subject,
                    api_key: None,
                    claims,
                    forward,
                })
            }
            Inner::ApiKey(verifier) => verifier.authenticate(&self.name, headers, query),
        }
    }

    /// The identity header names this provider sets (its `forward` keys). The pipeline removes
    /// them from every incoming request before authenticating, so clients cannot forge them.
    pub fn identity_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.identity_headers.iter()
    }

    /// The query parameter an API-key provider reads its key from, so the pipeline can drop it
    /// before proxying and redact it in logs.
    pub fn query_param(&self) -> Option<&str> {
        match &self.inner {
            Inner::Jwt(_) => None,
            Inner::ApiKey(verifier) => verifier.query_param(),
        }
    }
}

/// Tries each provider in order and returns the first identity. When all fail, returns the
/// failure whose credential got furthest — a verified-but-expired token beats a bad signature,
/// which beats a missing API key — and among equals the first provider's. An empty list is
/// [`AuthFailure::Missing`].
pub async fn authenticate_any<'a>(
    list: impl IntoIterator<Item = &'a Arc<Authenticator>>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Identity, AuthFailure> {
    let mut best: Option<AuthFailure> = None;
    for authenticator in list {
        match authenticator.authenticate(headers, query).await {
            Ok(identity) => return Ok(identity),
            Err(failure) => {
                if best.is_none_or(|b| failure.specificity() > b.specificity()) {
                    best = Some(failure);
                }
            }
        }
    }
    Err(best.unwrap_or(AuthFailure::Missing))
}
