//! A JWKS endpoint's keys, kept fresh: fetched at build (failure is a build error), refreshed
//! periodically by a background task that ends with its owner, and on demand when a token names
//! an unknown `kid` — at most one fetch per `min_interval`, concurrent demands sharing one fetch.
//! A failed refresh keeps the previous keys. Readers load the key set lock-free (`arc_swap`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::keys::{Alg, KeyKind, KeyRing, VerifyKey, rsa_public_key_der};

/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Keys from one JWKS document, usable for the provider's algorithms.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    entries: Vec<JwkEntry>,
}

#[derive(Debug)]
struct JwkEntry {
    kid: Option<Box<str>>,
    ring: KeyRing,
}

/// The outcome of choosing a key for a token.
pub(crate) enum Lookup<'a> {
    Found(&'a VerifyKey),
    /// No key has this `kid`: worth a refresh.
    UnknownKid,
    /// The token has no `kid` and no key fits its algorithm.
    NoKey,
    /// A key has this `kid` but cannot verify the token's algorithm.
    Mismatch,
    /// The token has no `kid` and several keys fit its algorithm.
    Ambiguous,
}

impl KeySet {
    /// The key for a token: by `kid` when the token has one, otherwise the only key that fits
    /// `alg`.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Alg) -> Lookup<'_> {
        match kid {
            Some(kid) => {
                let mut known = false;
                for entry in self
                    .entries
                    .iter()
                    .filter(|e| e.kid.as_deref() == Some(kid))
                {
                    known = true;
                    if let Some(key) = entry.ring.get(alg) {
                        return Lookup::Found(key);
                    }
                }
                if known {
                    Lookup::Mismatch
                } else {
                    Lookup::UnknownKid
                }
            }
            None => {
                let mut fitting = self.entries.iter().filter_map(|e| e.ring.get(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Lookup::Found(key),
                    (None, _) => Lookup::NoKey,
                    _ => Lookup::Ambiguous,
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWKS document, keeping the signature-verification keys that fit `algs`. Keys of
/// other types, for encryption, or with an unknown or disallowed `alg` are skipped; symmetric
/// (`oct`) keys are never taken from a JWKS. An empty result is an error.
pub(crate) fn parse_jwks(body: &[u8], algs: &[Alg]) -> Result<KeySet, String> {
    let document: JwksDocument = serde_json::from_slice(body)
        .map_err(|e| format!("not a JWKS document (expected {{\"keys\": [..]}}): {e}"))?;
    let mut set = KeySet::default();
    let mut skipped = Vec::new();
    for (i, value) in document.keys.into_iter().enumerate() {
        let jwk = match serde_json::from_value::<RawJwk>(value) {
            Ok(jwk) => jwk,
            Err(e) => {
                skipped.push(format!("key {i}: {e}"));
                continue;
            }
        };
        match jwk_ring(&jwk, algs) {
            Ok(ring) if !ring.is_empty() => set.entries.push(JwkEntry {
                kid: jwk.kid.map(Into::into),
                ring,
            }),
            Ok(_) => {}
            Err(e) => skipped.push(format!(
                "key {}: {e}",
                jwk.kid.as_deref().unwrap_or("(no kid)")
            )),
        }
    }
    if set.entries.is_empty() {
        let names: Vec<_> = algs.iter().map(|a| a.name()).collect();
        let mut message = format!("no usable key for {}", names.join(", "));
        if !skipped.is_empty() {
            message.push_str(&format!(" ({})", skipped.join("; ")));
        }
        return Err(message);
    }
    for reason in skipped {
        tracing::debug!(%reason, "JWKS key skipped");
    }
    Ok(set)
}

fn jwk_ring(jwk: &RawJwk, algs: &[Alg]) -> Result<KeyRing, String> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig")
        || jwk
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Ok(KeyRing::default());
    }
    // A key pinned to one algorithm serves only that one.
    let pinned;
    let algs = match &jwk.alg {
        Some(name) => match Alg::from_name(name).filter(|a| algs.contains(a)) {
            Some(alg) => {
                pinned = [alg];
                &pinned[..]
            }
            None => return Ok(KeyRing::default()),
        },
        None => algs,
    };
    let b64 = |field: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
        let text = field
            .as_deref()
            .ok_or_else(|| format!("missing `{name}`"))?;
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| format!("`{name}` is not base64url"))
    };
    match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let der = rsa_public_key_der(&b64(&jwk.n, "n")?, &b64(&jwk.e, "e")?);
            KeyRing::public(KeyKind::Rsa, &der, algs)
        }
        ("EC", Some(curve @ ("P-256" | "P-384"))) => {
            let kind = if curve == "P-256" {
                KeyKind::EcP256
            } else {
                KeyKind::EcP384
            };
            let (x, y) = (b64(&jwk.x, "x")?, b64(&jwk.y, "y")?);
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyRing::public(kind, &point, algs)
        }
        ("OKP", Some("Ed25519")) => KeyRing::public(KeyKind::Ed25519, &b64(&jwk.x, "x")?, algs),
        _ => Ok(KeyRing::default()),
    }
}

/// Whether `url` may serve keys: https, or http to a loopback host (tests, sidecars).
pub(crate) fn check_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(format!(
            "expected an https:// URL (plain http only for loopback hosts), got `{text}`"
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The live key set of one JWKS URL.
pub(crate) struct JwksCache {
    provider: Arc<str>,
    url: Url,
    client: reqwest::Client,
    algs: Vec<Alg>,
    keys: ArcSwap<KeySet>,
    min_interval: Duration,
    /// When the last fetch started (successful or not); guards the rate limit.
    last_attempt: Mutex<Instant>,
    /// Held for the duration of a fetch: concurrent refreshes wait for the one in flight.
    fetch_lock: tokio::sync::Mutex<()>,
    /// Bumped on every successful fetch.
    generation: AtomicU64,
}

/// Aborts the periodic refresh task when its owner is dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) struct JwksOptions {
    pub(crate) url: Url,
    pub(crate) refresh: Duration,
    pub(crate) min_interval: Duration,
    pub(crate) timeout: Duration,
}

impl JwksCache {
    /// Fetches the keys once (an error names the URL's problem) and starts the periodic refresh.
    pub(crate) async fn start(
        provider: Arc<str>,
        options: JwksOptions,
        algs: Vec<Alg>,
    ) -> Result<(Arc<JwksCache>, AbortOnDrop), String> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 3 {
                    attempt.error("too many redirects")
                } else if attempt.url().scheme() == "https" || is_loopback(attempt.url()) {
                    attempt.follow()
                } else {
                    attempt.error("refusing a redirect away from https")
                }
            }))
            .user_agent(concat!("rampart/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let started = Instant::now();
        let cache = JwksCache {
            provider,
            url: options.url,
            client,
            algs,
            keys: ArcSwap::from_pointee(KeySet::default()),
            min_interval: options.min_interval,
            last_attempt: Mutex::new(started),
            fetch_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        };
        let keys = cache.fetch().await?;
        cache.store(keys);
        let cache = Arc::new(cache);
        let task = tokio::spawn(periodic(Arc::downgrade(&cache), options.refresh));
        Ok((cache, AbortOnDrop(task)))
    }

    /// The current key set (lock-free).
    pub(crate) fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// The number of successful fetches so far; read it before looking a key up and pass it to
    /// [`refresh_for_unknown_kid`](Self::refresh_for_unknown_kid).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Called when a token names an unknown `kid`. Returns whether the key set changed since the
    /// caller saw generation `seen` (so a retry may find the key). Rate-limited to one fetch per `min_interval`;
    /// callers arriving while a fetch is in flight wait for it instead of starting another.
    pub(crate) async fn refresh_for_unknown_kid(&self, seen: u64) -> bool {
        if self.generation() != seen {
            return true;
        }
        if !self.may_fetch() && self.fetch_lock.try_lock().is_ok() {
            // Rate-limited and nothing in flight that could bring news.
            return false;
        }
        let _guard = self.fetch_lock.lock().await;
        if self.generation() != seen {
            return true;
        }
        if !self.may_fetch() {
            return false;
        }
        self.fetch_and_store("unknown kid").await
    }

    fn may_fetch(&self) -> bool {
        let last = *self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
        last.elapsed() >= self.min_interval
    }

    /// Fetches and, on success, replaces the key set. Failure keeps the old keys and logs.
    async fn fetch_and_store(&self, reason: &'static str) -> bool {
        *self.last_attempt.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(provider = %self.provider, url = %self.url, keys = keys.len(), reason, "JWKS refreshed");
                self.store(keys);
                true
            }
            Err(error) => {
                tracing::warn!(provider = %self.provider, url = %self.url, %error, reason, "JWKS refresh failed; keeping the previous keys");
                false
            }
        }
    }

    fn store(&self, keys: KeySet) {
        self.keys.store(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("unexpected status {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("document larger than {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("document larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body, &self.algs)
    }
}

/// Refreshes every `period` until the cache is dropped (or the task aborted).
async fn periodic(cache: Weak<JwksCache>, period: Duration) {
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(cache) = cache.upgrade() else {
            return;
        };
        let _guard = cache.fetch_lock.lock().await;
        cache.fetch_and_store("periodic").await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("https://issuer.example/.well-known/jwks.json").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://[::1]/jwks").is_ok());
        assert!(
            check_url("http://issuer.example/jwks")
                .unwrap_err()
                .contains("https")
        );
        assert!(check_url("ftp://x/").is_err());
        assert!(check_url("not a url").unwrap_err().contains("not a URL"));
    }

    #[test]
    fn skips_unusable_keys() {
        let point = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        use aws_lc_rs::signature::KeyPair;
        let public = point.public_key().as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&public[1..33]),
            URL_SAFE_NO_PAD.encode(&public[33..]),
        );
        let doc = json!({"keys": [
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256", "x": x, "y": y},
            {"kty": "EC", "kid": "other-alg", "alg": "ES384", "crv": "P-256", "x": x, "y": y},
            {"kty": "EC", "kid": "ok", "crv": "P-256", "x": x, "y": y},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {"kty": "EC", "kid": "no-y", "crv": "P-256", "x": x},
        ]});
        let set = parse_jwks(doc.to_string().as_bytes(), &[Alg::ES256]).unwrap();
        assert_eq!(set.len(), 1);
        assert!(matches!(set.find(Some("ok"), Alg::ES256), Lookup::Found(_)));
        assert!(matches!(set.find(None, Alg::ES256), Lookup::Found(_)));
        assert!(matches!(
            set.find(Some("sym"), Alg::ES256),
            Lookup::UnknownKid
        ));
        assert!(matches!(set.find(Some("ok"), Alg::ES384), Lookup::Mismatch));

        let only_bad = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        let error = parse_jwks(only_bad.to_string().as_bytes(), &[Alg::ES256]).unwrap_err();
        assert!(error.contains("no usable key for ES256"), "{error}");
        assert!(
            parse_jwks(b"[]", &[Alg::ES256])
                .unwrap_err()
                .contains("JWKS")
        );
    }
}
