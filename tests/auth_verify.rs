//! Authentication providers end to end (no proxy): JWT happy paths for every supported
//! algorithm, the classic attacks, JWKS rotation/rate limiting against a stand-in JWKS server on
//! 127.0.0.1, API keys, identity headers, `authenticate_any` precedence and claim rules.
//! Keys are generated per run; nothing secret is committed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use aws_lc_rs::{digest, hmac};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, StatusCode};
use rampart::security::auth::{
    AuthBuildError, AuthFailure, AuthSettings, Authenticator, ClaimRules, authenticate_any,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Keys and tokens

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn rsa() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
}

fn p256() -> &'static EcdsaKeyPair {
    static KEY: OnceLock<EcdsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
}

fn p384() -> &'static EcdsaKeyPair {
    static KEY: OnceLock<EcdsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap())
}

fn ed() -> &'static Ed25519KeyPair {
    static KEY: OnceLock<Ed25519KeyPair> = OnceLock::new();
    KEY.get_or_init(|| Ed25519KeyPair::generate().unwrap())
}

#[derive(Clone, Copy)]
enum Key<'a> {
    Hmac(&'a [u8]),
    Rsa(&'a RsaKeyPair),
    Ec(&'a EcdsaKeyPair),
    Ed(&'a Ed25519KeyPair),
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(alg: &str, key: Key, input: &[u8]) -> Vec<u8> {
    match key {
        Key::Hmac(secret) => {
            let algorithm = match alg {
                "HS384" => hmac::HMAC_SHA384,
                "HS512" => hmac::HMAC_SHA512,
                _ => hmac::HMAC_SHA256,
            };
            hmac::sign(&hmac::Key::new(algorithm, secret), input)
                .as_ref()
                .to_vec()
        }
        Key::Rsa(pair) => {
            let encoding: &'static dyn signature::RsaEncoding = match alg {
                "RS384" => &signature::RSA_PKCS1_SHA384,
                "RS512" => &signature::RSA_PKCS1_SHA512,
                "PS256" => &signature::RSA_PSS_SHA256,
                "PS384" => &signature::RSA_PSS_SHA384,
                "PS512" => &signature::RSA_PSS_SHA512,
                _ => &signature::RSA_PKCS1_SHA256,
            };
            let mut out = vec![0; pair.public_modulus_len()];
            pair.sign(encoding, &SystemRandom::new(), input, &mut out)
                .unwrap();
            out
        }
        Key::Ec(pair) => pair
            .sign(&SystemRandom::new(), input)
            .unwrap()
            .as_ref()
            .to_vec(),
        Key::Ed(pair) => pair.sign(input).as_ref().to_vec(),
    }
}

/// A compact JWS with exactly this header and these claims.
fn raw_jwt(header: &Value, claims: &Value, alg: &str, key: Key) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature = sign(alg, key, input.as_bytes());
    format!("{input}.{}", b64(signature))
}

fn jwt(alg: &str, kid: Option<&str>, claims: &Value, key: Key) -> String {
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    raw_jwt(&header, claims, alg, key)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({"sub": "user-1", "iss": "https://issuer", "aud": "api", "iat": now(), "exp": now() + 600})
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn spki_pem(key: Key) -> String {
    let der = match key {
        Key::Rsa(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
        Key::Ec(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
        Key::Ed(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
        Key::Hmac(_) => unreachable!(),
    };
    pem("PUBLIC KEY", &der)
}

// ---------------------------------------------------------------------------------------------
// Settings and requests

fn settings(text: &str) -> AuthSettings {
    toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn build(text: &str, dir: &Path) -> Authenticator {
    let settings = settings(text);
    assert_eq!(settings.validate(dir), vec![], "{text}");
    Authenticator::build(&settings, dir).await.unwrap()
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn hmac_provider(algs: &str, extra: &str) -> String {
    format!("name = \"users\"\ntype = \"jwt\"\nalgorithms = {algs}\nsecret = \"{SECRET}\"\n{extra}")
}

/// A provider whose public key file (written into `dir`) holds `pem_text`.
fn pem_provider(dir: &Path, file: &str, pem_text: &str, algs: &str) -> String {
    std::fs::write(dir.join(file), pem_text).unwrap();
    format!(
        "name = \"users\"\ntype = \"jwt\"\nalgorithms = {algs}\npublic_key_file = \"{file}\"\nissuer = \"https://issuer\"\naudience = [\"api\"]\n"
    )
}

// ---------------------------------------------------------------------------------------------
// Happy paths

#[tokio::test]
async fn hmac_algorithms_verify() {
    let dir = tempfile::tempdir().unwrap();
    let auth = build(
        &hmac_provider(
            "[\"HS256\", \"HS384\", \"HS512\"]",
            "issuer = [\"https://issuer\"]\naudience = \"api\"\nrequired_claims = [\"sub\"]",
        ),
        dir.path(),
    )
    .await;
    assert_eq!(auth.name(), "users");
    for alg in ["HS256", "HS384", "HS512"] {
        let token = jwt(alg, None, &claims(), Key::Hmac(SECRET.as_bytes()));
        let identity = auth.authenticate(&bearer(&token), None).await.unwrap();
        assert_eq!(&*identity.provider, "users");
        assert_eq!(identity.subject.as_deref(), Some("user-1"));
        assert_eq!(identity.claim("aud"), Some(&json!("api")));
    }
}

#[tokio::test]
async fn public_key_algorithms_verify() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Key, &str); 8] = [
        ("RS256", Key::Rsa(rsa()), "[\"RS256\", \"PS256\"]"),
        ("PS256", Key::Rsa(rsa()), "[\"RS256\", \"PS256\"]"),
        ("RS512", Key::Rsa(rsa()), "[\"RS512\"]"),
        ("PS384", Key::Rsa(rsa()), "[\"PS384\"]"),
        ("ES256", Key::Ec(p256()), "[\"ES256\"]"),
        ("ES384", Key::Ec(p384()), "[\"ES384\"]"),
        ("EdDSA", Key::Ed(ed()), "[\"EdDSA\"]"),
        ("RS384", Key::Rsa(rsa()), "[\"RS384\"]"),
    ];
    for (i, (alg, key, algs)) in cases.into_iter().enumerate() {
        let text = pem_provider(dir.path(), &format!("k{i}.pem"), &spki_pem(key), algs);
        let auth = build(&text, dir.path()).await;
        let token = jwt(alg, Some("ignored-for-static-keys"), &claims(), key);
        let identity = auth.authenticate(&bearer(&token), None).await;
        assert_eq!(
            identity.unwrap().subject.as_deref(),
            Some("user-1"),
            "{alg}"
        );
    }
}

#[tokio::test]
async fn pkcs1_rsa_pem_and_certificates_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    // PKCS#1 `RSA PUBLIC KEY`.
    let pkcs1 = pem("RSA PUBLIC KEY", rsa().public_key().as_ref());
    let auth = build(
        &pem_provider(dir.path(), "rsa1.pem", &pkcs1, "[\"RS256\"]"),
        dir.path(),
    )
    .await;
    let token = jwt("RS256", None, &claims(), Key::Rsa(rsa()));
    assert!(auth.authenticate(&bearer(&token), None).await.is_ok());

    // An X.509 certificate (ECDSA P-256), signed tokens with the certificate's key.
    let certified = rcgen::generate_simple_self_signed(vec!["issuer.test".to_owned()]).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &certified.signing_key.serialize_der(),
    )
    .unwrap();
    let auth = build(
        &pem_provider(dir.path(), "cert.pem", &certified.cert.pem(), "[\"ES256\"]"),
        dir.path(),
    )
    .await;
    let token = jwt("ES256", None, &claims(), Key::Ec(&pair));
    assert!(auth.authenticate(&bearer(&token), None).await.is_ok());
    // A token from another P-256 key does not verify.
    let other = jwt("ES256", None, &claims(), Key::Ec(p256()));
    assert_eq!(
        auth.authenticate(&bearer(&other), None).await,
        Err(AuthFailure::BadSignature)
    );
}

#[tokio::test]
async fn tokens_from_jsonwebtoken_interoperate() {
    let dir = tempfile::tempdir().unwrap();
    let auth = build(&hmac_provider("[\"HS256\"]", ""), dir.path()).await;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert!(auth.authenticate(&bearer(&token), None).await.is_ok());

    let pkcs8 = ed().to_pkcs8().unwrap();
    let auth = build(
        &pem_provider(
            dir.path(),
            "ed.pem",
            &spki_pem(Key::Ed(ed())),
            "[\"EdDSA\"]",
        ),
        dir.path(),
    )
    .await;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims(),
        &jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
    )
    .unwrap();
    assert!(auth.authenticate(&bearer(&token), None).await.is_ok());
}

#[tokio::test]
async fn token_from_cookie_or_custom_header() {
    let dir = tempfile::tempdir().unwrap();
    let auth = build(
        &hmac_provider("[\"HS256\"]", "cookie = \"session\""),
        dir.path(),
    )
    .await;
    let token = jwt("HS256", None, &claims(), Key::Hmac(SECRET.as_bytes()));
    let mut headers = HeaderMap::new();
    headers.insert(
        "cookie",
        HeaderValue::try_from(format!("theme=dark; session={token}")).unwrap(),
    );
    assert!(auth.authenticate(&headers, None).await.is_ok());
    assert_eq!(
        auth.authenticate(&HeaderMap::new(), None).await,
        Err(AuthFailure::Missing)
    );

    let auth = build(
        &hmac_provider("[\"HS256\"]", "token_header = \"x-token\""),
        dir.path(),
    )
    .await;
    let mut headers = HeaderMap::new();
    headers.insert("x-token", HeaderValue::try_from(token.clone()).unwrap());
    assert!(auth.authenticate(&headers, None).await.is_ok());
    // The Authorization header is not this provider's.
    assert_eq!(
        auth.authenticate(&bearer(&token), None).await,
        Err(AuthFailure::Missing)
    );
}

// ---------------------------------------------------------------------------------------------
// Attacks and refusals

#[tokio::test]
async fn alg_none_is_always_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auth = build(&hmac_provider("[\"HS256\"]", ""), dir.path()).await;
    let body = b64(claims().to_string());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string());
        for token in [
            format!("{header}.{body}."),
            format!("{header}.{body}.{}", b64(b"x")),
        ] {
            assert_eq!(
                auth.authenticate(&bearer(&token), None).await,
                Err(AuthFailure::Invalid("algorithm not allowed")),
                "{alg}"
            );
        }
    }
    // And it cannot even be configured.
    let problems = settings(&hmac_provider("[\"none\"]", "")).validate(dir.path());
    assert!(
        problems
            .iter()
            .any(|(k, m)| k == "algorithms" && m.contains("never accepted")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let public_pem = spki_pem(Key::Rsa(rsa()));
    let auth = build(
        &pem_provider(dir.path(), "rsa.pem", &public_pem, "[\"RS256\"]"),
        dir.path(),
    )
    .await;
    // The classic confusion: HS256 keyed with the PEM text (and with the DER) of the RSA key.
    let der = rsa().public_key().as_der().unwrap();
    for secret in [public_pem.as_bytes(), der.as_ref()] {
        let token = jwt("HS256", None, &claims(), Key::Hmac(secret));
        assert_eq!(
            auth.authenticate(&bearer(&token), None).await,
            Err(AuthFailure::Invalid("algorithm not allowed"))
        );
    }
    // Nor can a provider be configured to mix HMAC with public-key algorithms.
    let text = pem_provider(dir.path(), "rsa.pem", &public_pem, "[\"RS256\", \"HS256\"]");
    let problems = settings(&text).validate(dir.path());
    assert!(
        problems
            .iter()
            .any(|(k, m)| k == "algorithms" && m.contains("cannot share")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn time_issuer_audience_and_claim_checks() {
    let dir = tempfile::tempdir().unwrap();
    let auth = build(
        &hmac_provider(
            "[\"HS256\"]",
            "issuer = \"https://issuer\"\naudience = [\"api\", \"admin\"]\nleeway = \"5s\"\nmax_age = \"1h\"\nrequired_claims = [\"sub\", \"org.id\"]",
        ),
        dir.path(),
    )
    .await;
    let key = Key::Hmac(SECRET.as_bytes());
    let t = now();
    let base = json!({"sub": "u", "org": {"id": 7}, "iss": "https://issuer", "aud": ["x", "admin"], "iat": t, "exp": t + 60});
    let ok = jwt("HS256", None, &base, key);
    assert!(auth.authenticate(&bearer(&ok), None).await.is_ok());

    let with = |patch: Value| {
        let mut c = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        jwt("HS256", None, &c, key)
    };
    let cases = [
        (json!({"exp": t - 10}), AuthFailure::Expired),
        (json!({"nbf": t + 60}), AuthFailure::NotYetValid),
        (json!({"iat": t + 60}), AuthFailure::NotYetValid),
        (json!({"iat": t - 3700}), AuthFailure::TooOld),
        (
            json!({"iat": null}),
            AuthFailure::InvalidClaims("the token has no iat claim"),
        ),
        (
            json!({"exp": null}),
            AuthFailure::InvalidClaims("the token has no exp claim"),
        ),
        (
            json!({"iss": "https://evil"}),
            AuthFailure::InvalidClaims("issuer not accepted"),
        ),
        (
            json!({"aud": "web"}),
            AuthFailure::InvalidClaims("audience not accepted"),
        ),
        (
            json!({"sub": null}),
            AuthFailure::InvalidClaims("a required claim is missing"),
        ),
        (
            json!({"org": {"name": "x"}}),
            AuthFailure::InvalidClaims("a required claim is missing"),
        ),
    ];
    for (patch, expected) in cases {
        assert_eq!(
            auth.authenticate(&bearer(&with(patch.clone())), None).await,
            Err(expected),
            "{patch}"
        );
    }
    // Within the leeway.
    assert!(
        auth.authenticate(&bearer(&with(json!({"exp": t - 2}))), None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn tampering_and_malformed_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auth = build(
        &hmac_provider("[\"HS256\"]", "max_token_bytes = 1024"),
        dir.path(),
    )
    .await;
    let key = Key::Hmac(SECRET.as_bytes());
    let token = jwt("HS256", None, &claims(), key);
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();

    let mut forged = claims();
    forged["sub"] = "admin".into();
    let tampered = format!("{head}.{}.{signature}", b64(forged.to_string()));
    let wrong_secret = jwt(
        "HS256",
        None,
        &claims(),
        Key::Hmac(b"another-secret-another-secret-another"),
    );
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();

    let cases = [
        (tampered, "BadSignature"),
        (wrong_secret, "BadSignature"),
        (flipped, "BadSignature"),
        (format!("{token}.x.y"), "malformed token"),
        ("abc".to_owned(), "malformed token"),
        (format!("!!.{rest}"), "malformed token header"),
        (format!("{}.{rest}", b64("[1]")), "malformed token header"),
        (
            format!("{head}.{}.{signature}", "a".repeat(1000)),
            "the token is too large",
        ),
        (format!("{head}.{rest}==="), "malformed signature"),
        (
            raw_jwt(
                &json!({"alg": "HS256", "crit": ["exp"]}),
                &claims(),
                "HS256",
                key,
            ),
            "unsupported critical header",
        ),
        (
            format!("{}.{}", head, {
                let payload = b64("not json");
                let input = format!("{head}.{payload}");
                format!("{payload}.{}", b64(sign("HS256", key, input.as_bytes())))
            }),
            "malformed claims",
        ),
    ];
    for (token, reason) in cases {
        let expected = match reason {
            "BadSignature" => AuthFailure::BadSignature,
            reason => AuthFailure::Invalid(reason),
        };
        assert_eq!(
            auth.authenticate(&bearer(&token), None).await,
            Err(expected),
            "{token}"
        );
    }
}

#[tokio::test]
async fn oversized_token_refused_at_default_limit() {
    let dir = tempfile::tempdir().unwrap();
    let auth = build(&hmac_provider("[\"HS256\"]", ""), dir.path()).await;
    let mut big = claims();
    big["pad"] = "x".repeat(5800).into();
    let ok = jwt("HS256", None, &big, Key::Hmac(SECRET.as_bytes()));
    assert!(ok.len() < 8192);
    assert!(auth.authenticate(&bearer(&ok), None).await.is_ok());
    big["pad"] = "x".repeat(6200).into();
    let too_big = jwt("HS256", None, &big, Key::Hmac(SECRET.as_bytes()));
    assert!(too_big.len() > 8192);
    assert_eq!(
        auth.authenticate(&bearer(&too_big), None).await,
        Err(AuthFailure::Invalid("the token is too large"))
    );
}

#[tokio::test]
async fn wrong_key_type_and_wrong_family_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auth = build(
        &pem_provider(
            dir.path(),
            "ec.pem",
            &spki_pem(Key::Ec(p256())),
            "[\"ES256\"]",
        ),
        dir.path(),
    )
    .await;
    for (alg, key) in [
        ("RS256", Key::Rsa(rsa())),
        ("ES384", Key::Ec(p384())),
        ("EdDSA", Key::Ed(ed())),
    ] {
        let token = jwt(alg, None, &claims(), key);
        assert_eq!(
            auth.authenticate(&bearer(&token), None).await,
            Err(AuthFailure::Invalid("algorithm not allowed")),
            "{alg}"
        );
    }
    // A P-384 key file for an ES256 provider is a config error.
    let text = pem_provider(
        dir.path(),
        "p384.pem",
        &spki_pem(Key::Ec(p384())),
        "[\"ES256\"]",
    );
    let problems = settings(&text).validate(dir.path());
    assert!(
        problems.iter().any(
            |(k, m)| k == "algorithms" && m.contains("EC P-384 key, which cannot verify ES256")
        ),
        "{problems:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// JWKS

struct Stand {
    doc: Mutex<Value>,
    fetches: AtomicUsize,
    fail: AtomicBool,
    delay: Duration,
}

impl Stand {
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
    fn serve(&self, doc: Value) {
        *self.doc.lock().unwrap() = doc;
    }
}

async fn jwks_handler(State(stand): State<Arc<Stand>>) -> Response {
    stand.fetches.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(stand.delay).await;
    if stand.fail.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let doc = stand.doc.lock().unwrap().clone();
    Json(doc).into_response()
}

/// A JWKS stand-in on 127.0.0.1:0; returns its state and the JWKS URL.
async fn stand_in(doc: Value, delay: Duration) -> (Arc<Stand>, String) {
    let stand = Arc::new(Stand {
        doc: Mutex::new(doc),
        fetches: AtomicUsize::new(0),
        fail: AtomicBool::new(false),
        delay,
    });
    let app = axum::Router::new()
        .route("/jwks", axum::routing::get(jwks_handler))
        .with_state(stand.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (stand, url)
}

fn rsa_jwk(kid: &str, pair: &RsaKeyPair) -> Value {
    let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&components.n), "e": b64(&components.e)})
}

fn ec_jwk(kid: &str, pair: &EcdsaKeyPair, crv: &str) -> Value {
    let point = pair.public_key().as_ref();
    let half = (point.len() - 1) / 2;
    json!({"kty": "EC", "kid": kid, "crv": crv, "x": b64(&point[1..1 + half]), "y": b64(&point[1 + half..])})
}

fn ed_jwk(kid: &str, pair: &Ed25519KeyPair) -> Value {
    json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
}

fn jwks_provider(url: &str, refresh: &str, min_interval: &str) -> String {
    format!(
        "name = \"idp\"\ntype = \"jwt\"\nalgorithms = [\"RS256\", \"ES256\", \"ES384\", \"EdDSA\"]\njwks_url = \"{url}\"\njwks_refresh = \"{refresh}\"\njwks_min_refresh_interval = \"{min_interval}\"\n"
    )
}

#[tokio::test]
async fn jwks_keys_by_kid_for_every_key_type() {
    let doc = json!({"keys": [
        rsa_jwk("r", rsa()),
        ec_jwk("e256", p256(), "P-256"),
        ec_jwk("e384", p384(), "P-384"),
        ed_jwk("ed", ed()),
    ]});
    let (stand, url) = stand_in(doc, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = build(&jwks_provider(&url, "1h", "30s"), dir.path()).await;
    assert_eq!(stand.fetches(), 1);
    for (alg, kid, key) in [
        ("RS256", "r", Key::Rsa(rsa())),
        ("ES256", "e256", Key::Ec(p256())),
        ("ES384", "e384", Key::Ec(p384())),
        ("EdDSA", "ed", Key::Ed(ed())),
    ] {
        let token = jwt(alg, Some(kid), &claims(), key);
        assert!(
            auth.authenticate(&bearer(&token), None).await.is_ok(),
            "{alg}"
        );
    }
    // The right key type under the wrong kid.
    let token = jwt("ES256", Some("r"), &claims(), Key::Ec(p256()));
    assert_eq!(
        auth.authenticate(&bearer(&token), None).await,
        Err(AuthFailure::Invalid(
            "the key named by kid does not fit the algorithm"
        ))
    );
    // No kid and several ES256-capable keys? Only one here, so it is found.
    let token = jwt("ES256", None, &claims(), Key::Ec(p256()));
    assert!(auth.authenticate(&bearer(&token), None).await.is_ok());
    // An unknown kid; the refresh is rate-limited (30s since the build's fetch).
    let token = jwt("ES256", Some("nope"), &claims(), Key::Ec(p256()));
    assert_eq!(
        auth.authenticate(&bearer(&token), None).await,
        Err(AuthFailure::UnknownKey)
    );
    assert_eq!(stand.fetches(), 1);
}

#[tokio::test]
async fn jwks_rotation() {
    let key_b = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let (stand, url) = stand_in(json!({"keys": [rsa_jwk("a", rsa())]}), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = build(&jwks_provider(&url, "3s", "1s"), dir.path()).await;
    let token_a = jwt("RS256", Some("a"), &claims(), Key::Rsa(rsa()));
    let token_b = jwt("ES256", Some("b"), &claims(), Key::Ec(&key_b));
    assert!(auth.authenticate(&bearer(&token_a), None).await.is_ok());
    // B is unknown and the rate limit (1s since the build's fetch) holds the refresh back.
    assert_eq!(
        auth.authenticate(&bearer(&token_b), None).await,
        Err(AuthFailure::UnknownKey)
    );
    assert_eq!(stand.fetches(), 1);

    // The issuer publishes B next to A; once the interval has passed, B's unknown kid refreshes.
    stand.serve(json!({"keys": [rsa_jwk("a", rsa()), ec_jwk("b", &key_b, "P-256")]}));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(auth.authenticate(&bearer(&token_b), None).await.is_ok());
    assert!(auth.authenticate(&bearer(&token_a), None).await.is_ok());
    assert_eq!(stand.fetches(), 2);

    // A is retired: A tokens keep working until the periodic refresh (3s) drops A.
    stand.serve(json!({"keys": [ec_jwk("b", &key_b, "P-256")]}));
    assert!(auth.authenticate(&bearer(&token_a), None).await.is_ok());
    let deadline = Instant::now() + Duration::from_secs(10);
    while stand.fetches() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        auth.authenticate(&bearer(&token_a), None).await,
        Err(AuthFailure::UnknownKey)
    );
    assert!(auth.authenticate(&bearer(&token_b), None).await.is_ok());
    // A's unknown kid did not fetch again: the periodic refresh was under a second ago.
    assert_eq!(stand.fetches(), 3);
}

#[tokio::test]
async fn jwks_refreshes_are_rate_limited_and_coalesced() {
    let (stand, url) = stand_in(
        json!({"keys": [ec_jwk("a", p256(), "P-256")]}),
        Duration::from_millis(100),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let auth = Arc::new(build(&jwks_provider(&url, "1h", "1s"), dir.path()).await);
    assert_eq!(stand.fetches(), 1);

    let flood = |round: usize| {
        let auth = auth.clone();
        async move {
            let tasks: Vec<_> = (0..50)
                .map(|i| {
                    let auth = auth.clone();
                    let token = jwt(
                        "ES256",
                        Some(&format!("unknown-{round}-{i}")),
                        &claims(),
                        Key::Ec(p256()),
                    );
                    tokio::spawn(async move { auth.authenticate(&bearer(&token), None).await })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap(), Err(AuthFailure::UnknownKey));
            }
        }
    };
    // Within the first interval after the build: no fetch at all.
    flood(0).await;
    assert_eq!(stand.fetches(), 1);
    // After the interval: the whole flood shares one fetch.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    flood(1).await;
    assert_eq!(stand.fetches(), 2);
    flood(2).await;
    assert_eq!(stand.fetches(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    flood(3).await;
    assert_eq!(stand.fetches(), 3);
    // Known keys never wait for anything.
    let known = jwt("ES256", Some("a"), &claims(), Key::Ec(p256()));
    assert!(auth.authenticate(&bearer(&known), None).await.is_ok());
    assert_eq!(stand.fetches(), 3);
}

#[tokio::test]
async fn failed_jwks_refresh_keeps_the_old_keys() {
    let (stand, url) = stand_in(
        json!({"keys": [ec_jwk("a", p256(), "P-256")]}),
        Duration::ZERO,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let auth = build(&jwks_provider(&url, "1h", "100ms"), dir.path()).await;
    stand.fail.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let unknown = jwt("ES256", Some("b"), &claims(), Key::Ec(p256()));
    assert_eq!(
        auth.authenticate(&bearer(&unknown), None).await,
        Err(AuthFailure::UnknownKey)
    );
    assert_eq!(stand.fetches(), 2);
    let known = jwt("ES256", Some("a"), &claims(), Key::Ec(p256()));
    assert!(auth.authenticate(&bearer(&known), None).await.is_ok());

    // A document without usable keys counts as a failure too.
    stand.fail.store(false, Ordering::SeqCst);
    stand.serve(json!({"keys": [{"kty": "oct", "kid": "a", "k": "c2VjcmV0"}]}));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        auth.authenticate(&bearer(&unknown), None).await,
        Err(AuthFailure::UnknownKey)
    );
    assert_eq!(stand.fetches(), 3);
    assert!(auth.authenticate(&bearer(&known), None).await.is_ok());
}

#[tokio::test]
async fn failing_first_jwks_fetch_is_a_build_error_naming_the_url() {
    let (stand, url) = stand_in(json!({"keys": []}), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let text = jwks_provider(&url, "1h", "30s");
    let error = Authenticator::build(&settings(&text), dir.path())
        .await
        .unwrap_err();
    assert!(matches!(error, AuthBuildError::Jwks { .. }));
    let message = error.to_string();
    assert!(
        message.contains(&url) && message.contains("no usable key"),
        "{message}"
    );

    stand.fail.store(true, Ordering::SeqCst);
    let message = Authenticator::build(&settings(&text), dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&url) && message.contains("500"),
        "{message}"
    );

    // Nothing listens here.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks", listener.local_addr().unwrap())
    };
    let text = jwks_provider(&closed, "1h", "30s");
    let message = Authenticator::build(&settings(&text), dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains(&closed), "{message}");
}

#[tokio::test]
async fn dropping_the_authenticator_stops_the_refresh_task() {
    let (stand, url) = stand_in(
        json!({"keys": [ec_jwk("a", p256(), "P-256")]}),
        Duration::ZERO,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let auth = build(&jwks_provider(&url, "150ms", "100ms"), dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while stand.fetches() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stand.fetches() >= 3, "{}", stand.fetches());
    drop(auth);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after_drop = stand.fetches();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stand.fetches(), after_drop);
}

// ---------------------------------------------------------------------------------------------
// API keys

fn sha256_hex(key: &str) -> String {
    digest::digest(&digest::SHA256, key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn api_keys_from_header_query_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keys.toml"),
        format!(
            "[[keys]]\nname = \"batch\"\nsha256 = \"{}\"\nscopes = [\"write\"]\n",
            sha256_hex("batch-key")
        ),
    )
    .unwrap();
    let text = format!(
        r#"
name = "partners"
type = "api_key"
header = "x-api-key"
query = "api_key"
keys = [{{ name = "ci", sha256 = "{}", scopes = ["read", "deploy"] }}]
keys_file = "keys.toml"
[forward]
x-api-key-name = "name"
x-api-key-scopes = "scopes"
"#,
        sha256_hex("ci-key").to_uppercase()
    );
    let auth = build(&text, dir.path()).await;
    let names: Vec<_> = auth.identity_headers().map(|h| h.as_str()).collect();
    assert_eq!(names, ["x-api-key-name", "x-api-key-scopes"]);
    assert_eq!(auth.query_param(), Some("api_key"));

    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_static("ci-key"));
    let identity = auth.authenticate(&headers, None).await.unwrap();
    assert_eq!(&*identity.provider, "partners");
    assert_eq!(identity.subject.as_deref(), Some("ci"));
    assert_eq!(
        identity.claims,
        json!({"name": "ci", "scopes": ["read", "deploy"]})
    );
    assert_eq!(
        identity.forward,
        [
            (
                "x-api-key-name".parse().unwrap(),
                HeaderValue::from_static("ci")
            ),
            (
                "x-api-key-scopes".parse().unwrap(),
                HeaderValue::from_static("read,deploy")
            ),
        ]
    );
    assert!(identity.satisfies(&rules("scopes = \"read\"")));
    assert!(!identity.satisfies(&rules("scopes = [\"read\", \"write\"]")));

    let from_query = auth
        .authenticate(&HeaderMap::new(), Some("x=1&api_key=batch-key"))
        .await
        .unwrap();
    assert_eq!(from_query.subject.as_deref(), Some("batch"));
    assert_eq!(from_query.claims["scopes"], json!(["write"]));

    let mut wrong = HeaderMap::new();
    wrong.insert("x-api-key", HeaderValue::from_static("ci-key "));
    assert!(auth.authenticate(&wrong, None).await.is_ok(), "trimmed");
    wrong.insert("x-api-key", HeaderValue::from_static("ci-kez"));
    assert_eq!(
        auth.authenticate(&wrong, None).await,
        Err(AuthFailure::InvalidApiKey)
    );
    assert_eq!(
        auth.authenticate(&HeaderMap::new(), Some("api_key=nope"))
            .await,
        Err(AuthFailure::InvalidApiKey)
    );
    assert_eq!(
        auth.authenticate(&HeaderMap::new(), None).await,
        Err(AuthFailure::MissingApiKey)
    );
}

#[test]
fn api_key_settings_problems() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[keys]]\nname = \"x\"\nsha256 = \"abc\"\n",
    )
    .unwrap();
    let text = format!(
        r#"
name = "partners"
type = "api_key"
keys = [
  {{ name = "a", sha256 = "{d}" }},
  {{ name = "a", sha256 = "{d}" }},
  {{ name = "", sha256 = "xyz" }},
]
keys_file = "bad.toml"
[forward]
x-api-key = "name"
content-length = "name"
"#,
        d = sha256_hex("k")
    );
    let problems = settings(&text).validate(dir.path());
    let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "header",
            "keys[1].name",
            "keys[1].sha256",
            "keys[2].name",
            "keys[2].sha256",
            "keys_file",
            "forward.content-length",
        ],
        "{problems:#?}"
    );
    assert!(
        problems[5]
            .1
            .contains("bad.toml: keys[0].sha256: expected the key's SHA-256")
    );

    let missing =
        "name = \"p\"\ntype = \"api_key\"\nheader = \"x-api-key\"\nkeys_file = \"nope.toml\"";
    let problems = settings(missing).validate(dir.path());
    assert_eq!(problems.len(), 1);
    assert!(problems[0].0 == "keys_file" && problems[0].1.contains("cannot read"));
    // The credential header cannot also be an identity header.
    let clash = format!(
        "name = \"p\"\ntype = \"api_key\"\nheader = \"x-api-key\"\nkeys = [{{ name = \"a\", sha256 = \"{}\" }}]\n[forward]\nx-api-key = \"name\"",
        sha256_hex("k")
    );
    let problems = settings(&clash).validate(dir.path());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "forward.x-api-key");
}

// ---------------------------------------------------------------------------------------------
// Identity headers, rules, precedence

fn rules(text: &str) -> ClaimRules {
    #[derive(serde::Deserialize)]
    struct Route {
        require: ClaimRules,
    }
    toml::from_str::<Route>(&format!("require = {{ {text} }}"))
        .unwrap()
        .require
}

#[tokio::test]
async fn identity_headers_from_claims() {
    let dir = tempfile::tempdir().unwrap();
    let auth = build(
        &hmac_provider(
            "[\"HS256\"]",
            "[forward]\nx-user-id = \"sub\"\nx-user-email = \"email\"\nx-user-roles = \"realm_access.roles\"\nx-tenant = \"https://example.com/tenant\"\nx-missing = \"nope\"",
        ),
        dir.path(),
    )
    .await;
    let names: Vec<_> = auth.identity_headers().map(|h| h.as_str()).collect();
    assert_eq!(
        names,
        [
            "x-missing",
            "x-tenant",
            "x-user-email",
            "x-user-id",
            "x-user-roles"
        ]
    );
    let mut c = claims();
    c["email"] = "u@example.com".into();
    c["realm_access"] = json!({"roles": ["admin", "dev"]});
    c["https://example.com/tenant"] = json!(42);
    let token = jwt("HS256", None, &c, Key::Hmac(SECRET.as_bytes()));
    let identity = auth.authenticate(&bearer(&token), None).await.unwrap();
    let forward: Vec<(&str, &str)> = identity
        .forward
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        forward,
        [
            ("x-tenant", "42"),
            ("x-user-email", "u@example.com"),
            ("x-user-id", "user-1"),
            ("x-user-roles", "admin,dev"),
        ]
    );
    assert_eq!(
        identity.claim("realm_access.roles.0"),
        Some(&json!("admin"))
    );
    assert!(identity.satisfies(&rules(
        "\"realm_access.roles\" = \"admin\", sub = \"user-1\""
    )));
    assert!(identity.satisfies(&rules(
        "\"realm_access.roles\" = { any_of = [\"x\", \"dev\"] }"
    )));
    assert!(!identity.satisfies(&rules("\"realm_access.roles\" = [\"admin\", \"ops\"]")));
    assert!(!identity.satisfies(&rules("email = \"other@example.com\"")));
}

async fn precedence_fixture(dir: &Path) -> Vec<Arc<Authenticator>> {
    let api = format!(
        "name = \"keys\"\ntype = \"api_key\"\nheader = \"x-api-key\"\nkeys = [{{ name = \"ci\", sha256 = \"{}\" }}]",
        sha256_hex("ci-key")
    );
    let users = hmac_provider("[\"HS256\"]", "audience = \"api\"");
    let others = pem_provider(dir, "ed.pem", &spki_pem(Key::Ed(ed())), "[\"EdDSA\"]");
    vec![
        Arc::new(build(&api, dir).await),
        Arc::new(build(&others, dir).await),
        Arc::new(build(&users, dir).await),
    ]
}

#[tokio::test]
async fn authenticate_any_reports_the_most_specific_failure() {
    let dir = tempfile::tempdir().unwrap();
    let list = precedence_fixture(dir.path()).await;
    let key = Key::Hmac(SECRET.as_bytes());

    // Nothing presented: the first provider's "missing".
    assert_eq!(
        authenticate_any(&list, &HeaderMap::new(), None).await,
        Err(AuthFailure::MissingApiKey)
    );
    // A valid token for the third provider wins.
    let ok = jwt("HS256", None, &claims(), key);
    assert_eq!(
        &*authenticate_any(&list, &bearer(&ok), None)
            .await
            .unwrap()
            .provider,
        "users"
    );
    // A verified but expired token beats "missing api key" and "algorithm not allowed".
    let mut expired = claims();
    expired["exp"] = json!(now() - 3600);
    let expired = jwt("HS256", None, &expired, key);
    assert_eq!(
        authenticate_any(&list, &bearer(&expired), None).await,
        Err(AuthFailure::Expired)
    );
    // A bad signature (from the provider that allows HS256) beats "missing api key" and the
    // EdDSA provider's "algorithm not allowed".
    let forged = jwt(
        "HS256",
        None,
        &claims(),
        Key::Hmac(b"x-wrong-secret-x-wrong-secret-x-wrong"),
    );
    assert_eq!(
        authenticate_any(&list, &bearer(&forged), None).await,
        Err(AuthFailure::BadSignature)
    );
    // A malformed token: every provider says so; the first one's failure is reported.
    assert_eq!(
        authenticate_any(&list, &bearer("abc"), None).await,
        Err(AuthFailure::Invalid("malformed token"))
    );
    // A wrong API key next to no token: the invalid key is reported.
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_static("nope"));
    assert_eq!(
        authenticate_any(&list, &headers, None).await,
        Err(AuthFailure::InvalidApiKey)
    );
    // Valid API key: accepted by the first provider.
    headers.insert("x-api-key", HeaderValue::from_static("ci-key"));
    assert_eq!(
        &*authenticate_any(&list, &headers, None)
            .await
            .unwrap()
            .provider,
        "keys"
    );
    assert_eq!(
        authenticate_any(&[], &headers, None).await,
        Err(AuthFailure::Missing)
    );
}

// ---------------------------------------------------------------------------------------------
// Settings

#[test]
fn settings_shape_and_problems() {
    let dir = tempfile::tempdir().unwrap();
    // Unknown keys are refused even through the `type` tag.
    let error = toml::from_str::<AuthSettings>(
        "name = \"u\"\ntype = \"jwt\"\nalgorithms = [\"HS256\"]\nsecret = \"x\"\nsecrt = \"y\"",
    )
    .unwrap_err();
    assert!(error.to_string().contains("secrt"), "{error}");
    assert!(toml::from_str::<AuthSettings>("name = \"u\"\ntype = \"saml\"").is_err());
    let error = toml::from_str::<AuthSettings>(
        "name = \"u\"\ntype = \"jwt\"\nalgorithms = []\nleeway = \"soon\"",
    )
    .unwrap_err();
    assert!(error.to_string().contains("expected a duration"), "{error}");

    let cases: [(&str, &str, &str); 9] = [
        (
            "algorithms = [\"HS256\"]\nsecret = \"short\"",
            "secret",
            "needs at least 32",
        ),
        (
            "algorithms = [\"HS512\"]\nsecret_base64 = \"c2hvcnQ=\"",
            "secret_base64",
            "needs at least 64",
        ),
        (
            "algorithms = [\"HS256\"]\nsecret_base64 = \"***\"",
            "secret_base64",
            "base64",
        ),
        (
            "algorithms = [\"RS256\"]\nsecret = \"0123456789abcdef0123456789abcdef\"",
            "algorithms",
            "use public_key_file or jwks_url for RS256",
        ),
        (
            "algorithms = [\"HS256\"]\njwks_url = \"https://x/jwks\"",
            "algorithms",
            "use secret or secret_base64 for HS256",
        ),
        (
            "algorithms = [\"RS256\"]\njwks_url = \"http://issuer.example/jwks\"",
            "jwks_url",
            "https",
        ),
        (
            "algorithms = [\"RS256\"]\npublic_key_file = \"missing.pem\"",
            "public_key_file",
            "cannot read",
        ),
        (
            "algorithms = [\"RS256\"]",
            "secret",
            "expected one key source",
        ),
        (
            "algorithms = [\"RS256\"]\njwks_url = \"https://x/jwks\"\npublic_key_file = \"k.pem\"",
            "jwks_url",
            "exactly one",
        ),
    ];
    for (body, key, needle) in cases {
        let text = format!("name = \"u\"\ntype = \"jwt\"\n{body}");
        let problems = settings(&text).validate(dir.path());
        assert!(
            problems.iter().any(|(k, m)| k == key && m.contains(needle)),
            "{body}: {problems:?}"
        );
    }

    let text = format!(
        "name = \"\"\ntype = \"jwt\"\nalgorithms = [\"HS256\", \"XS1\"]\nsecret = \"{SECRET}\"\njwks_refresh = \"1s\"\njwks_min_refresh_interval = \"1m\"\nmax_age = \"0s\"\ntoken_header = \"bad header\"\ncookie = \"a;b\"\nmax_token_bytes = 10\nrequired_claims = [\"\"]\n[forward]\nauthorization = \"sub\""
    );
    let problems = settings(&text).validate(dir.path());
    let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "name",
            "algorithms",
            "jwks_refresh",
            "max_age",
            "required_claims",
            "max_token_bytes",
            "token_header",
            "cookie",
        ],
        "{problems:#?}"
    );
    // Secrets never show in Debug output.
    let shown = format!("{:?}", settings(&hmac_provider("[\"HS256\"]", "")));
    assert!(!shown.contains(SECRET), "{shown}");
    let error =
        futures_util::FutureExt::now_or_never(Authenticator::build(&settings(&text), dir.path()))
            .unwrap()
            .unwrap_err();
    assert!(
        error.to_string().starts_with("auth ``: name: expected"),
        "{error}"
    );
}

#[test]
fn authenticator_is_shareable_and_its_future_is_send() {
    fn shareable<T: Send + Sync + 'static>() {}
    fn send<T: Send>(_: &T) {}
    shareable::<Authenticator>();
    shareable::<Arc<Authenticator>>();
    let headers = HeaderMap::new();
    let list: Vec<Arc<Authenticator>> = Vec::new();
    send(&authenticate_any(&list, &headers, None));
}

#[test]
fn failure_kinds_messages_and_challenges() {
    let all = [
        (AuthFailure::Missing, "missing_token", "Bearer"),
        (AuthFailure::MissingApiKey, "missing_api_key", "ApiKey"),
        (
            AuthFailure::Expired,
            "token_expired",
            "Bearer error=\"invalid_token\", error_description=\"the token has expired\"",
        ),
        (
            AuthFailure::NotYetValid,
            "token_not_yet_valid",
            "Bearer error=\"invalid_token\", error_description=\"the token is not valid yet\"",
        ),
        (
            AuthFailure::TooOld,
            "token_too_old",
            "Bearer error=\"invalid_token\", error_description=\"the token was issued too long ago\"",
        ),
        (
            AuthFailure::Invalid("malformed token"),
            "invalid_token",
            "Bearer error=\"invalid_token\", error_description=\"malformed token\"",
        ),
        (
            AuthFailure::BadSignature,
            "invalid_token",
            "Bearer error=\"invalid_token\", error_description=\"the token signature does not match\"",
        ),
        (
            AuthFailure::InvalidClaims("audience not accepted"),
            "invalid_claims",
            "Bearer error=\"invalid_token\", error_description=\"audience not accepted\"",
        ),
        (
            AuthFailure::UnknownKey,
            "unknown_key",
            "Bearer error=\"invalid_token\", error_description=\"the token is signed with an unknown key\"",
        ),
        (
            AuthFailure::InvalidApiKey,
            "invalid_api_key",
            "ApiKey error=\"invalid_api_key\"",
        ),
    ];
    for (failure, kind, challenge) in all {
        assert_eq!(failure.kind(), kind);
        assert_eq!(failure.www_authenticate(), challenge);
        assert!(!failure.message().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn hmac_auth(rt: &tokio::runtime::Runtime) -> Authenticator {
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(build(&hmac_provider("[\"HS256\"]", ""), dir.path()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Changing any one character of a valid token makes it fail (never panic, never pass).
        #[test]
        fn any_single_change_is_refused(position in 0usize..10_000, replacement in "[A-Za-z0-9_.=+/-]") {
            let rt = runtime();
            let auth = hmac_auth(&rt);
            let token = jwt("HS256", None, &claims(), Key::Hmac(SECRET.as_bytes()));
            let position = position % token.len();
            let mut changed = token.clone();
            changed.replace_range(position..position + 1, &replacement);
            let result = rt.block_on(auth.authenticate(&bearer(&changed), None));
            if changed == token {
                prop_assert!(result.is_ok());
            } else if result.is_ok() {
                // Base64 has no slack in the last character of an unpadded group only when the
                // bits it drops are zero; anything accepted must decode to the same bytes.
                let decoded = |t: &str| t.split('.').map(|p| URL_SAFE_NO_PAD.decode(p).ok()).collect::<Vec<_>>();
                prop_assert_eq!(decoded(&changed), decoded(&token));
            }
        }

        /// Arbitrary header values never panic.
        #[test]
        fn garbage_never_panics(text in "[ -~]{0,300}") {
            let rt = runtime();
            let auth = hmac_auth(&rt);
            if let Ok(value) = HeaderValue::try_from(format!("Bearer {text}")) {
                let mut headers = HeaderMap::new();
                headers.insert("authorization", value);
                prop_assert!(rt.block_on(auth.authenticate(&headers, None)).is_err());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Informal timing (not an assertion): cargo test --release --test auth_verify -- --ignored --nocapture

#[tokio::test]
#[ignore = "timing report, run by hand"]
async fn verification_timing() {
    let dir = tempfile::tempdir().unwrap();
    let hs = build(
        &hmac_provider("[\"HS256\"]", "[forward]\nx-user-id = \"sub\""),
        dir.path(),
    )
    .await;
    let es = build(
        &pem_provider(
            dir.path(),
            "ec.pem",
            &spki_pem(Key::Ec(p256())),
            "[\"ES256\"]",
        ),
        dir.path(),
    )
    .await;
    let rs = build(
        &pem_provider(
            dir.path(),
            "rs.pem",
            &spki_pem(Key::Rsa(rsa())),
            "[\"RS256\"]",
        ),
        dir.path(),
    )
    .await;
    for (name, auth, token, rounds) in [
        (
            "HS256",
            &hs,
            jwt("HS256", None, &claims(), Key::Hmac(SECRET.as_bytes())),
            50_000u32,
        ),
        (
            "ES256",
            &es,
            jwt("ES256", None, &claims(), Key::Ec(p256())),
            5_000,
        ),
        (
            "RS256",
            &rs,
            jwt("RS256", None, &claims(), Key::Rsa(rsa())),
            5_000,
        ),
    ] {
        let headers = bearer(&token);
        assert!(auth.authenticate(&headers, None).await.is_ok());
        let start = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(auth.authenticate(&headers, None).await.unwrap());
        }
        let per = start.elapsed() / rounds;
        println!("{name}: {per:?} per verification ({rounds} rounds)");
    }
}
