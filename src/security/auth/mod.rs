//! Authentication: JWT bearer tokens (secrets, PEM keys, JWKS) and API keys.
//!
//! A provider is configured by an `[[auth]]` table ([`AuthSettings`]), checked by
//! [`AuthSettings::validate`] and built into an [`Authenticator`] once per config load. Per
//! request, [`Authenticator::authenticate`] (or [`authenticate_any`] over a route's providers)
//! yields an [`Identity`] — claims plus the identity headers for the upstream — or an
//! [`AuthFailure`] that says, without secrets, what to tell the client. Routes can demand claims
//! with [`ClaimRules`].
//!
//! ```toml
//! [[auth]]
//! name = "users"
//! type = "jwt"
//! algorithms = ["RS256"]
//! jwks_url = "https://issuer.example/.well-known/jwks.json"
//! issuer = "https://issuer.example"
//! audience = ["api"]
//! required_claims = ["sub"]
//! [auth.forward]
//! x-user-id = "sub"
//!
//! [[auth]]
//! name = "partners"
//! type = "api_key"
//! header = "x-api-key"
//! keys = [{ name = "ci", sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", scopes = ["read"] }]
//! ```
//!
//! Files: `settings` (the TOML shape and its reference), `jwt` (token verification), `keys`
//! (algorithms and key parsing), `jwks` (remote key sets), `claims` (registered-claim checks),
//! `api_key`, `token` (finding credentials in a request), `identity`, `rules`, `failure`,
//! `authenticator` (the provider and `authenticate_any`), `de` (serde helpers).

mod api_key;
mod authenticator;
mod claims;
mod de;
mod failure;
mod identity;
mod jwks;
mod jwt;
mod keys;
mod rules;
mod settings;
mod token;
mod verified;

pub use authenticator::{AuthBuildError, Authenticator, authenticate_any};
pub use de::SecretString;
pub use failure::AuthFailure;
pub use identity::Identity;
pub use rules::{ClaimRule, ClaimRules};
pub use settings::{ApiKeyEntry, ApiKeySettings, AuthSettings, JwtSettings, Problems};
