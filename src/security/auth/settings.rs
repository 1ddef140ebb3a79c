//! The `[[auth]]` settings exactly as written in the config file (unknown keys refused, defaults
//! applied). Checking them — files readable, keys parseable, options consistent — is
//! [`AuthSettings::validate`], which runs the same preparation [`Authenticator::build`] uses.
//!
//! `type = "jwt"`:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | required | provider name |
//! | `algorithms` | required | allowlist: `HS256` `HS384` `HS512` `RS256` `RS384` `RS512` `PS256` `PS384` `PS512` `ES256` `ES384` `EdDSA`; never `none`; HS* and the others cannot be mixed |
//! | `secret` / `secret_base64` | — | HMAC secret (HS* only), at least 32/48/64 bytes for HS256/384/512 |
//! | `public_key_file` | — | PEM `PUBLIC KEY`, `RSA PUBLIC KEY` or `CERTIFICATE` (RS*, PS*, ES*, EdDSA), relative to the config file |
//! | `jwks_url` | — | JWKS endpoint, https (http only on loopback); fetched at load, a failure fails the load |
//! | `jwks_refresh` | `"10m"` | periodic JWKS refresh |
//! | `jwks_min_refresh_interval` | `"30s"` | at most one extra fetch per interval for unknown `kid`s |
//! | `jwks_timeout` | `"10s"` | timeout of one JWKS fetch |
//! | `issuer` | any | string or list: accepted `iss` |
//! | `audience` | not checked | string or list: the token's `aud` must contain one |
//! | `leeway` | `"30s"` | clock skew for `exp`, `nbf`, `iat`, `max_age` |
//! | `max_age` | none | maximum age from `iat`; tokens without `iat` are then refused |
//! | `required_claims` | `[]` | claims (dotted paths) that must be present and not null |
//! | `require_exp` | `true` | refuse tokens without `exp` |
//! | `token_header` | `"authorization"` | header with `Bearer <token>` (other headers: prefix optional) |
//! | `cookie` | none | cookie with the token, tried when the header has none |
//! | `max_token_bytes` | `8192` | longer tokens are refused before decoding (64–65536) |
//! | `verified_token_cache` | `10000` | tokens whose signature verified, kept so that public-key algorithms verify each token once (claims are still checked on every request; a JWKS refresh empties it); `0` turns it off |
//! | `[auth.forward]` | none | identity header → claim path (arrays joined with `,`) |
//!
//! `type = "api_key"`:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | required | provider name |
//! | `header` | — | header carrying the key; at least one of `header` / `query` |
//! | `query` | — | query parameter carrying the key (tried when the header is absent) |
//! | `keys` | `[]` | `{ name, sha256, scopes }`: SHA-256 of the key in hex (any case) |
//! | `keys_file` | none | TOML file of `[[keys]]` tables of the same shape, relative to the config file |
//! | `[auth.forward]` | none | identity header → `name` or `scopes` |
//!
//! Identity headers may not be framing headers (`host`, `content-length`, …) nor the provider's
//! own credential header or `cookie` (the pipeline strips identity headers before authenticating).
//!
//! [`Authenticator::build`]: super::Authenticator::build

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::de::{self, SecretString};

/// One authentication provider, tagged by `type = "jwt"` or `type = "api_key"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // read once per config load; plain variants match simply
pub enum AuthSettings {
    Jwt(JwtSettings),
    ApiKey(ApiKeySettings),
}

/// `type = "jwt"`: bearer tokens signed with a secret, a PEM public key, or keys from a JWKS URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// Provider name (routes refer to it; logged as the identity's provider).
    pub name: String,
    /// Allowed JWS algorithms. Never `none`; HS* only with a secret, the others only with a
    /// public key or JWKS; HMAC and public-key algorithms cannot be mixed in one provider.
    pub algorithms: Vec<String>,
    /// HMAC secret (HS256/384/512), at least as long as the hash (32/48/64 bytes).
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// HMAC secret as base64 (standard or URL-safe, padding optional).
    #[serde(default)]
    pub secret_base64: Option<SecretString>,
    /// PEM file with a `PUBLIC KEY` (SPKI), `RSA PUBLIC KEY` or `CERTIFICATE`; relative to the
    /// config file's folder.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// JWKS endpoint (https, or http on a loopback host).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Periodic JWKS refresh.
    #[serde(default = "default_jwks_refresh", deserialize_with = "de::duration")]
    pub jwks_refresh: Duration,
    /// At most one JWKS fetch per this interval when tokens name unknown keys.
    #[serde(
        default = "default_jwks_min_refresh_interval",
        deserialize_with = "de::duration"
    )]
    pub jwks_min_refresh_interval: Duration,
    /// Timeout of one JWKS fetch.
    #[serde(default = "default_jwks_timeout", deserialize_with = "de::duration")]
    pub jwks_timeout: Duration,
    /// Accepted `iss` values (any of); empty accepts any issuer.
    #[serde(default, deserialize_with = "de::one_or_many")]
    pub issuer: Vec<String>,
    /// Accepted `aud` values (the token must name any of them); empty skips the check.
    #[serde(default, deserialize_with = "de::one_or_many")]
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf`, `iat` and `max_age`.
    #[serde(default = "default_leeway", deserialize_with = "de::duration")]
    pub leeway: Duration,
    /// Maximum token age from `iat`; when set, a token without `iat` is refused.
    #[serde(default, deserialize_with = "de::opt_duration")]
    pub max_age: Option<Duration>,
    /// Claims (dotted paths allowed) that must be present and not null.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Refuse tokens without `exp` (default true).
    #[serde(default = "default_true")]
    pub require_exp: bool,
    /// Header carrying the token. For `authorization` the `Bearer` scheme is required; for any
    /// other header a `Bearer ` prefix is optional.
    #[serde(default = "default_token_header")]
    pub token_header: String,
    /// Cookie carrying the token, tried when the header has no bearer token.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Tokens longer than this are refused before any decoding.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Tokens kept after their signature verified (public-key algorithms only; 0 = off).
    #[serde(default = "default_verified_token_cache")]
    pub verified_token_cache: usize,
    /// Identity headers sent upstream: header name → claim path (dotted; arrays joined with ",").
    #[serde(default)]
    pub forward: BTreeMap<String, String>,
}

/// `type = "api_key"`: static keys, stored as SHA-256 digests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    pub name: String,
    /// Header carrying the key (its whole value is the key).
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter carrying the key, tried when the header is absent.
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub keys: Vec<ApiKeyEntry>,
    /// TOML file with more keys (`[[keys]]` tables of the same shape as `keys`), relative to the
    /// config file's folder.
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// Identity headers: header name → `name`, `scopes` (joined with ",").
    #[serde(default)]
    pub forward: BTreeMap<String, String>,
}

/// One API key: a name for logs and identity headers, the SHA-256 of the key (hex, any case),
/// and its scopes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    pub name: String,
    pub sha256: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The shape of an API `keys_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeysFile {
    #[serde(default)]
    pub keys: Vec<ApiKeyEntry>,
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(600)
}
fn default_jwks_min_refresh_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_jwks_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_true() -> bool {
    true
}
fn default_token_header() -> String {
    "authorization".to_owned()
}
pub(crate) const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
fn default_verified_token_cache() -> usize {
    10_000
}
fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}

/// Problems found in settings: `(key, message saying what was expected)`.
pub type Problems = Vec<(String, String)>;

impl AuthSettings {
    pub fn name(&self) -> &str {
        match self {
            AuthSettings::Jwt(s) => &s.name,
            AuthSettings::ApiKey(s) => &s.name,
        }
    }

    pub fn forward(&self) -> &BTreeMap<String, String> {
        match self {
            AuthSettings::Jwt(s) => &s.forward,
            AuthSettings::ApiKey(s) => &s.forward,
        }
    }

    /// Every problem with these settings, keys relative to this `[[auth]]` table (`algorithms`,
    /// `keys[1].sha256`, `forward.x-user-id`). Reads `public_key_file` and `keys_file` (relative to
    /// `base_dir`) but does not fetch the JWKS. Empty means [`Authenticator::build`] will only fail
    /// on the JWKS fetch.
    ///
    /// [`Authenticator::build`]: super::Authenticator::build
    pub fn validate(&self, base_dir: &Path) -> Problems {
        match self {
            AuthSettings::Jwt(s) => super::jwt::prepare(s, base_dir).err().unwrap_or_default(),
            AuthSettings::ApiKey(s) => super::api_key::prepare(s, base_dir)
                .err()
                .unwrap_or_default(),
        }
    }
}

pub(crate) fn check_name(name: &str, problems: &mut Problems) {
    if name.trim().is_empty() {
        problems.push(("name".into(), "expected a non-empty provider name".into()));
    }
}
