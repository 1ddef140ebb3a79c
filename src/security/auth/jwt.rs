//! JWT bearer-token verification (JWS compact serialization): settings → prepared keys and
//! policy, then per request: size limit, header, algorithm allowlist, key choice (static key or
//! JWKS by `kid`), signature, claims.
//!
//! The hot path (HMAC or a static public key) takes no lock, decodes the header and signature
//! into stack buffers, and allocates only for the claims it returns.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{
    STANDARD_NO_PAD_INDIFFERENT, URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT,
};
use http::{HeaderMap, HeaderName, header};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::verified::VerifiedTokens;

use super::claims::ClaimPolicy;
use super::failure::AuthFailure;
use super::identity::{ForwardRule, parse_forward};
use super::jwks::{AbortOnDrop, JwksCache, JwksOptions, Lookup, check_url};
use super::keys::{Alg, KeyRing, VerifyKey, parse_public_pem};
use super::settings::{JwtSettings, Problems, check_name};
use super::token::TokenSource;

/// Decoded JOSE headers larger than this are refused (no supported header needs more; `x5c`
/// chains are not supported).
const MAX_HEADER_BYTES: usize = 2048;
/// Large enough for an RSA-8192 signature.
const MAX_SIGNATURE_BYTES: usize = 1024;

/// Settings checked and turned into what a verifier needs (no network yet).
pub(crate) struct PreparedJwt {
    pub(crate) verified_token_cache: usize,
    pub(crate) algs: Vec<Alg>,
    pub(crate) keys: PreparedKeys,
    pub(crate) policy: ClaimPolicy,
    pub(crate) source: TokenSource,
    pub(crate) max_token_bytes: usize,
    pub(crate) forward: Vec<ForwardRule>,
}

pub(crate) enum PreparedKeys {
    Static(KeyRing),
    Jwks(JwksOptions),
}

/// Checks `settings` and loads their key material; every problem at once.
pub(crate) fn prepare(s: &JwtSettings, base_dir: &Path) -> Result<PreparedJwt, Problems> {
    let mut problems = Problems::new();
    check_name(&s.name, &mut problems);

    let mut algs = Vec::new();
    for name in &s.algorithms {
        match Alg::from_name(name) {
            Some(alg) if !algs.contains(&alg) => algs.push(alg),
            Some(_) => {}
            None if name.eq_ignore_ascii_case("none") => problems.push((
                "algorithms".into(),
                "`none` (unsigned tokens) is never accepted: expected signing algorithms such as HS256, RS256, ES256 or EdDSA".into(),
            )),
            None => problems.push((
                "algorithms".into(),
                format!(
                    "unknown algorithm `{name}`: expected some of {}",
                    Alg::ALL.map(Alg::name).join(", ")
                ),
            )),
        }
    }
    if s.algorithms.is_empty() {
        problems.push((
            "algorithms".into(),
            "expected at least one algorithm, such as [\"RS256\"]".into(),
        ));
    }
    let symmetric = algs.iter().any(|a| a.is_symmetric());
    let asymmetric = algs.iter().any(|a| !a.is_symmetric());
    if symmetric && asymmetric {
        problems.push((
            "algorithms".into(),
            "HMAC (HS*) and public-key algorithms cannot share a provider (a public key must never be usable as an HMAC secret): define two providers".into(),
        ));
    }

    let sources: Vec<&str> = [
        ("secret", s.secret.is_some()),
        ("secret_base64", s.secret_base64.is_some()),
        ("public_key_file", s.public_key_file.is_some()),
        ("jwks_url", s.jwks_url.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let keys = match sources.as_slice() {
        [] => {
            problems.push((
                "secret".into(),
                "expected one key source: `secret` or `secret_base64` (HS*), `public_key_file` or `jwks_url` (RS*, PS*, ES*, EdDSA)".into(),
            ));
            None
        }
        [_, second, ..] => {
            problems.push((
                (*second).into(),
                format!(
                    "expected exactly one key source, found {}",
                    sources.join(" and ")
                ),
            ));
            None
        }
        [source] => prepare_keys(s, source, &algs, base_dir, &mut problems),
    };

    if s.jwks_min_refresh_interval.is_zero() {
        problems.push((
            "jwks_min_refresh_interval".into(),
            "expected a duration above zero, such as \"30s\"".into(),
        ));
    }
    if s.jwks_refresh < s.jwks_min_refresh_interval || s.jwks_refresh.is_zero() {
        problems.push((
            "jwks_refresh".into(),
            format!(
                "expected at least jwks_min_refresh_interval ({})",
                humantime::format_duration(s.jwks_min_refresh_interval)
            ),
        ));
    }
    if s.jwks_timeout.is_zero() {
        problems.push((
            "jwks_timeout".into(),
            "expected a duration above zero".into(),
        ));
    }
    if s.max_age.is_some_and(|d| d.is_zero()) {
        problems.push((
            "max_age".into(),
            "expected a duration above zero, such as \"12h\"".into(),
        ));
    }
    for (field, values) in [("issuer", &s.issuer), ("audience", &s.audience)] {
        if values.iter().any(|v| v.is_empty()) {
            problems.push((field.into(), "expected non-empty values".into()));
        }
    }
    if s.required_claims.iter().any(|c| c.trim().is_empty()) {
        problems.push((
            "required_claims".into(),
            "expected claim names such as \"sub\"".into(),
        ));
    }
    if !(64..=64 * 1024).contains(&s.max_token_bytes) {
        problems.push((
            "max_token_bytes".into(),
            format!("expected between 64 and 65536, got {}", s.max_token_bytes),
        ));
    }
    let token_header = match HeaderName::from_bytes(s.token_header.as_bytes()) {
        Ok(name) => Some(name),
        Err(_) => {
            problems.push((
                "token_header".into(),
                format!("`{}` is not a valid header name", s.token_header),
            ));
            None
        }
    };
    if let Some(cookie) = &s.cookie
        && (cookie.is_empty()
            || !cookie
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)))
    {
        problems.push((
            "cookie".into(),
            format!("`{cookie}` is not a valid cookie name"),
        ));
    }
    let mut denied = vec![s.token_header.as_str()];
    if s.cookie.is_some() {
        denied.push(header::COOKIE.as_str());
    }
    let forward = parse_forward(&s.forward, &denied, &mut problems);

    match (keys, token_header) {
        (Some(keys), Some(token_header)) if problems.is_empty() => Ok(PreparedJwt {
            algs,
            keys,
            policy: ClaimPolicy {
                issuers: s.issuer.clone(),
                audiences: s.audience.clone(),
                leeway: s.leeway.as_secs_f64(),
                max_age: s.max_age.map(|d| d.as_secs_f64()),
                required: s.required_claims.clone(),
                require_exp: s.require_exp,
            },
            source: TokenSource::new(token_header, s.cookie.as_deref()),
            max_token_bytes: s.max_token_bytes,
            verified_token_cache: s.verified_token_cache,
            forward,
        }),
        _ => Err(problems),
    }
}

fn prepare_keys(
    s: &JwtSettings,
    source: &str,
    algs: &[Alg],
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<PreparedKeys> {
    let symmetric_source = matches!(source, "secret" | "secret_base64");
    let misfits: Vec<&str> = algs
        .iter()
        .filter(|a| a.is_symmetric() != symmetric_source)
        .map(|a| a.name())
        .collect();
    if !misfits.is_empty() {
        let expected = if symmetric_source {
            "a secret only verifies HS256/HS384/HS512; use public_key_file or jwks_url for"
        } else {
            "a public key only verifies RS*, PS*, ES* and EdDSA; use secret or secret_base64 for"
        };
        problems.push((
            "algorithms".into(),
            format!("{expected} {}", misfits.join(", ")),
        ));
        return None;
    }
    match source {
        "secret" | "secret_base64" => {
            let secret: Cow<[u8]> = match (&s.secret, &s.secret_base64) {
                (Some(secret), _) => Cow::Borrowed(secret.expose().as_bytes()),
                (_, Some(encoded)) => {
                    let text = encoded.expose().trim();
                    match STANDARD_NO_PAD_INDIFFERENT
                        .decode(text)
                        .or_else(|_| URL_SAFE_NO_PAD_INDIFFERENT.decode(text))
                    {
                        Ok(bytes) => Cow::Owned(bytes),
                        Err(_) => {
                            problems.push((
                                source.into(),
                                "expected base64 (standard or URL-safe)".into(),
                            ));
                            return None;
                        }
                    }
                }
                _ => return None,
            };
            let needed = algs
                .iter()
                .filter_map(|a| a.hmac().map(|(_, len)| (a.name(), len)))
                .max_by_key(|(_, len)| *len);
            if let Some((name, len)) = needed
                && secret.len() < len
            {
                problems.push((
                    source.into(),
                    format!(
                        "the secret has {} bytes; {name} needs at least {len} (RFC 7518 §3.2)",
                        secret.len()
                    ),
                ));
                return None;
            }
            Some(PreparedKeys::Static(KeyRing::hmac(&secret, algs)))
        }
        "public_key_file" => {
            let path = base_dir.join(s.public_key_file.as_ref()?);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    problems.push((
                        source.into(),
                        format!("cannot read {}: {e}", path.display()),
                    ));
                    return None;
                }
            };
            let key = match parse_public_pem(&text) {
                Ok(key) => key,
                Err(e) => {
                    problems.push((source.into(), format!("{}: {e}", path.display())));
                    return None;
                }
            };
            let unfit: Vec<&str> = algs
                .iter()
                .filter(|a| !a.fits(key.kind))
                .map(|a| a.name())
                .collect();
            if !unfit.is_empty() {
                problems.push((
                    "algorithms".into(),
                    format!(
                        "{} holds {}, which cannot verify {}",
                        path.display(),
                        key.kind,
                        unfit.join(", ")
                    ),
                ));
                return None;
            }
            match KeyRing::public(key.kind, &key.der, algs) {
                Ok(ring) => Some(PreparedKeys::Static(ring)),
                Err(e) => {
                    problems.push((source.into(), format!("{}: {e}", path.display())));
                    None
                }
            }
        }
        "jwks_url" => match check_url(s.jwks_url.as_deref()?) {
            Ok(url) => Some(PreparedKeys::Jwks(JwksOptions {
                url,
                refresh: s.jwks_refresh,
                min_interval: s.jwks_min_refresh_interval,
                timeout: s.jwks_timeout,
            })),
            Err(e) => {
                problems.push((source.into(), e));
                None
            }
        },
        _ => None,
    }
}

/// A ready JWT verifier.
pub(crate) struct JwtVerifier {
    algs: Vec<Alg>,
    keys: Keys,
    policy: ClaimPolicy,
    source: TokenSource,
    max_token_bytes: usize,
    pub(crate) forward: Vec<ForwardRule>,
    /// Tokens whose signature already verified; public-key providers only.
    verified: Option<VerifiedTokens>,
}

enum Keys {
    Static(KeyRing),
    Jwks(Arc<JwksCache>, #[allow(dead_code)] AbortOnDrop),
}

/// The result of one verification attempt.
enum Attempt {
    Done(Result<Value, AuthFailure>),
    /// The token's `kid` is not in the JWKS: refresh and try again.
    UnknownKid,
}

impl JwtVerifier {
    /// Starts the JWKS cache when there is one; its error says what went wrong with the URL.
    pub(crate) async fn start(provider: &Arc<str>, prepared: PreparedJwt) -> Result<Self, String> {
        let keys = match prepared.keys {
            PreparedKeys::Static(ring) => Keys::Static(ring),
            PreparedKeys::Jwks(options) => {
                let (cache, task) =
                    JwksCache::start(provider.clone(), options, prepared.algs.clone()).await?;
                Keys::Jwks(cache, task)
            }
        };
        let asymmetric = prepared.algs.iter().all(|alg| !alg.is_symmetric());
        Ok(JwtVerifier {
            verified: VerifiedTokens::new(if asymmetric {
                prepared.verified_token_cache
            } else {
                0
            }),
            algs: prepared.algs,
            keys,
            policy: prepared.policy,
            source: prepared.source,
            max_token_bytes: prepared.max_token_bytes,
            forward: prepared.forward,
        })
    }

    /// The verified claims of the request's token.
    pub(crate) async fn verify(&self, headers: &HeaderMap) -> Result<Value, AuthFailure> {
        let token = self.source.find(headers)?;
        if token.len() > self.max_token_bytes {
            return Err(AuthFailure::Invalid("the token is too large"));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let Some(verified) = &self.verified else {
            return self.verify_signature(token, now).await;
        };
        let generation = match &self.keys {
            Keys::Static(_) => 0,
            Keys::Jwks(cache, _) => cache.generation(),
        };
        if let Some(claims) = verified.get(token, generation) {
            self.policy.check(&claims, now)?;
            return Ok(Value::clone(&claims));
        }
        let claims = self.verify_signature(token, now).await?;
        verified.insert(token, generation, Arc::new(claims.clone()));
        Ok(claims)
    }

    /// Full verification: signature, then claims.
    async fn verify_signature(&self, token: &str, now: f64) -> Result<Value, AuthFailure> {
        match &self.keys {
            Keys::Static(ring) => match self.attempt(token, now, |alg, _| match ring.get(alg) {
                Some(key) => Lookup::Found(key),
                None => Lookup::NoKey,
            }) {
                Attempt::Done(result) => result,
                Attempt::UnknownKid => Err(AuthFailure::UnknownKey),
            },
            Keys::Jwks(cache, _) => {
                let seen = cache.generation();
                let first = {
                    let set = cache.keys();
                    self.attempt(token, now, |alg, kid| set.find(kid, alg))
                };
                match first {
                    Attempt::Done(result) => result,
                    Attempt::UnknownKid => {
                        if !cache.refresh_for_unknown_kid(seen).await {
                            return Err(AuthFailure::UnknownKey);
                        }
                        let set = cache.keys();
                        match self.attempt(token, now, |alg, kid| set.find(kid, alg)) {
                            Attempt::Done(result) => result,
                            Attempt::UnknownKid => Err(AuthFailure::UnknownKey),
                        }
                    }
                }
            }
        }
    }

    /// One synchronous verification with keys chosen by `find(alg, kid)`.
    fn attempt<'k>(
        &self,
        token: &str,
        now: f64,
        find: impl FnOnce(Alg, Option<&str>) -> Lookup<'k>,
    ) -> Attempt {
        let fail = |reason| Attempt::Done(Err(AuthFailure::Invalid(reason)));
        let Some(parts) = Compact::split(token) else {
            return fail("malformed token");
        };
        let mut header_buf = [0u8; MAX_HEADER_BYTES];
        let Some(header_bytes) = decode_into(parts.header, &mut header_buf) else {
            return fail("malformed token header");
        };
        let Ok(jose) = serde_json::from_slice::<JoseHeader>(header_bytes) else {
            return fail("malformed token header");
        };
        if jose.crit.is_some() {
            return fail("unsupported critical header");
        }
        let Some(alg) = Alg::from_name(&jose.alg).filter(|a| self.algs.contains(a)) else {
            return fail("algorithm not allowed");
        };
        let key = match find(alg, jose.kid.as_deref()) {
            Lookup::Found(key) => key,
            Lookup::UnknownKid => return Attempt::UnknownKid,
            Lookup::NoKey => return Attempt::Done(Err(AuthFailure::UnknownKey)),
            Lookup::Mismatch => return fail("the key named by kid does not fit the algorithm"),
            Lookup::Ambiguous => return fail("the token has no kid"),
        };
        Attempt::Done(self.finish(key, &parts, now))
    }

    fn finish(&self, key: &VerifyKey, parts: &Compact, now: f64) -> Result<Value, AuthFailure> {
        let mut signature_buf = [0u8; MAX_SIGNATURE_BYTES];
        let signature = decode_into(parts.signature, &mut signature_buf)
            .ok_or(AuthFailure::Invalid("malformed signature"))?;
        if !key.verify(parts.signing_input.as_bytes(), signature) {
            return Err(AuthFailure::BadSignature);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(parts.payload)
            .map_err(|_| AuthFailure::Invalid("malformed claims"))?;
        let claims: Value = serde_json::from_slice(&payload)
            .ok()
            .filter(Value::is_object)
            .ok_or(AuthFailure::Invalid("malformed claims"))?;
        self.policy.check(&claims, now)?;
        Ok(claims)
    }
}

#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// The three base64url parts of a compact JWS, and the bytes its signature covers.
struct Compact<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    signing_input: &'a str,
}

impl<'a> Compact<'a> {
    fn split(token: &'a str) -> Option<Compact<'a>> {
        let (header, rest) = token.split_once('.')?;
        let (payload, signature) = rest.split_once('.')?;
        if header.is_empty() || payload.is_empty() || signature.contains('.') {
            return None;
        }
        Some(Compact {
            header,
            payload,
            signature,
            signing_input: &token[..header.len() + 1 + payload.len()],
        })
    }
}

/// Decodes unpadded base64url into `buf`; `None` when invalid or too large for it.
fn decode_into<'b>(part: &str, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    if part.len().div_ceil(4) * 3 > buf.len() {
        return None;
    }
    let len = URL_SAFE_NO_PAD.decode_slice(part, buf).ok()?;
    Some(&buf[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_split() {
        let c = Compact::split("aa.bb.cc").unwrap();
        assert_eq!(
            (c.header, c.payload, c.signature, c.signing_input),
            ("aa", "bb", "cc", "aa.bb")
        );
        assert!(Compact::split("aa.bb.").is_some());
        for bad in ["", "aa", "aa.bb", ".bb.cc", "aa..cc", "a.b.c.d.e"] {
            assert!(Compact::split(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn decode_limits() {
        let mut buf = [0u8; 6];
        assert_eq!(decode_into("aGVsbG8", &mut buf), Some(&b"hello"[..]));
        assert_eq!(decode_into("aGVsbG8h", &mut buf), Some(&b"hello!"[..]));
        assert_eq!(decode_into("aGVsbG8hIQ", &mut buf), None);
        assert_eq!(decode_into("aGVsbG8=", &mut buf), None);
        assert_eq!(decode_into("aGV+bG8", &mut buf), None);
    }
}
