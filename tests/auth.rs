//! End to end through rampart: JWT and API-key authentication per route, identity headers (and
//! their spoofing), claim rules, JWKS rotation, and the 401/403 answers. The verification module's
//! own attack matrix is in `auth_verify.rs`; here every attack is also refused over real sockets.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::*;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256!";
// sha256("partner-key-1")
fn sha256_hex(text: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn claims(sub: &str, role: &str) -> Value {
    json!({"sub": sub, "email": format!("{sub}@example.com"), "role": role,
           "iss": "https://id.example.com", "aud": "api", "iat": now(), "exp": now() + 600})
}

fn config() -> String {
    format!(
        r#"
[[auth]]
name = "users"
type = "jwt"
algorithms = ["HS256"]
secret = "{SECRET}"
issuer = "https://id.example.com"
audience = "api"
max_age = "12h"
required_claims = ["sub"]
[auth.forward]
x-user-id = "sub"
x-user-email = "email"
x-user-role = "role"

[[auth]]
name = "partners"
type = "api_key"
header = "x-api-key"
query = "api_key"
keys = [{{ name = "acme", sha256 = "{}", scopes = ["read", "reports"] }}]
[auth.forward]
x-api-client = "name"

[[upstream]]
name = "app"
targets = ["{{app}}"]

[[route]]
name = "admin"
path_prefix = "/admin"
rewrite = "/echo/admin"
auth = "users"
require = {{ role = "admin" }}
upstream = "app"

[[route]]
name = "reports"
path_prefix = "/reports"
rewrite = "/echo/reports"
auth = ["users", "partners"]
upstream = "app"

[[route]]
name = "api"
path_prefix = "/api"
rewrite = "/echo/api"
auth = "users"
upstream = "app"

[[route]]
name = "public"
path_prefix = "/"
rewrite = "/echo/public"
auth = "none"
upstream = "app"
"#,
        sha256_hex("partner-key-1")
    )
}

async fn call(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn jwt_route_accepts_valid_tokens_and_forwards_identity() {
    let app = demo_app().await;
    let running = start(&config(), app).await;
    let client = client();
    let token = hs256(&claims("u-42", "user"));
    let bearer = format!("Bearer {token}");
    let (status, _, body) = call(
        &client,
        &url(&running, "/api/me"),
        &[
            ("authorization", &bearer),
            ("x-user-id", "admin"),
            ("x-user-role", "admin"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let headers = &body["headers"];
    assert_eq!(
        headers["x-user-id"], "u-42",
        "spoofed value replaced: {headers}"
    );
    assert_eq!(headers["x-user-email"], "u-42@example.com");
    assert_eq!(headers["x-user-role"], "user");
}

#[tokio::test]
async fn identity_headers_cannot_be_spoofed_on_public_routes() {
    let app = demo_app().await;
    let running = start(&config(), app).await;
    let (status, _, body) = call(
        &client(),
        &url(&running, "/anything"),
        &[
            ("x-user-id", "admin"),
            ("x-api-client", "acme"),
            ("X-User-Role", "admin"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let headers = body["headers"].as_object().unwrap();
    for name in ["x-user-id", "x-api-client", "x-user-role"] {
        assert!(
            !headers.contains_key(name),
            "{name} reached the upstream: {headers:?}"
        );
    }
}

#[tokio::test]
async fn jwt_attacks_are_refused_with_401_and_the_reason() {
    let app = demo_app().await;
    let running = start(&config(), app).await;
    let client = client();
    let target = url(&running, "/api/me");

    let (status, headers, body) = call(&client, &target, &[]).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(body["error"]["type"], "missing_token");
    assert!(body["error"]["request_id"].is_string());
    assert_eq!(
        headers["x-frame-options"], "DENY",
        "security headers on 401"
    );

    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let mut expired = claims("u", "user");
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    let mut not_yet = claims("u", "user");
    not_yet["nbf"] = json!(now() + 3600);
    let mut wrong_aud = claims("u", "user");
    wrong_aud["aud"] = json!("other-api");
    let mut wrong_iss = claims("u", "user");
    wrong_iss["iss"] = json!("https://evil.example.com");
    let mut too_old = claims("u", "user");
    too_old["iat"] = json!(now() - 13 * 3600);
    let mut no_sub = claims("u", "user");
    no_sub.as_object_mut().unwrap().remove("sub");
    let valid = hs256(&claims("u", "user"));
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&claims("root", "admin")),
        parts[2]
    );
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("root", "admin"))
    );
    let oversized = hs256(
        &json!({"sub": "u", "iss": "https://id.example.com", "aud": "api",
        "iat": now(), "exp": now() + 60, "pad": "x".repeat(10_000)}),
    );

    for (name, token, kind) in [
        ("expired", hs256(&expired), "token_expired"),
        ("not yet valid", hs256(&not_yet), "token_not_yet_valid"),
        ("wrong aud", hs256(&wrong_aud), "invalid_claims"),
        ("wrong iss", hs256(&wrong_iss), "invalid_claims"),
        ("older than max_age 12h", hs256(&too_old), "token_too_old"),
        ("missing required claim", hs256(&no_sub), "invalid_claims"),
        ("tampered payload", tampered, "invalid_token"),
        ("alg none", alg_none, "invalid_token"),
        ("oversized", oversized, "invalid_token"),
        ("garbage", "not.a.jwt".to_owned(), "invalid_token"),
    ] {
        let bearer = format!("Bearer {token}");
        let (status, headers, body) = call(&client, &target, &[("authorization", &bearer)]).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["error"]["type"], kind, "{name}: {body}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{name}: {challenge}"
        );
    }

    // Every failure is a security event, counted by route and reason.
    let metrics = metrics_text(&client, &running).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rampart_security_events_total")
                && l.contains("event=\"auth_failed\"")
                && l.contains("rule=\"token_expired\"")
                && l.contains("route=\"api\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn claim_rules_give_403_when_unmet() {
    let app = demo_app().await;
    let running = start(&config(), app).await;
    let client = client();
    let user = format!("Bearer {}", hs256(&claims("u-1", "user")));
    let admin = format!("Bearer {}", hs256(&claims("u-2", "admin")));
    let (status, _, body) = call(
        &client,
        &url(&running, "/admin/users"),
        &[("authorization", &user)],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["type"], "forbidden");
    let (status, _, _) = call(
        &client,
        &url(&running, "/admin/users"),
        &[("authorization", &admin)],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn api_keys_by_header_or_query_and_any_of_several_providers() {
    let app = demo_app().await;
    let running = start(&config(), app).await;
    let client = client();
    let reports = url(&running, "/reports/q1");
    let (status, _, body) = call(&client, &reports, &[("x-api-key", "partner-key-1")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-api-client"], "acme");
    let (status, _, _) = call(&client, &format!("{reports}?api_key=partner-key-1"), &[]).await;
    assert_eq!(status, 200);
    let bearer = format!("Bearer {}", hs256(&claims("u-9", "user")));
    let (status, _, body) = call(&client, &reports, &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "a JWT works on the same route");
    assert_eq!(body["headers"]["x-user-id"], "u-9");
    let (status, _, body) = call(&client, &reports, &[("x-api-key", "wrong-key")]).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "invalid_api_key");
    let (status, _, _) = call(
        &client,
        &url(&running, "/api/x"),
        &[("x-api-key", "partner-key-1")],
    )
    .await;
    assert_eq!(status, 401, "the API key provider is not on /api");
}

fn p256_pair() -> (EcdsaKeyPair, Vec<u8>) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    (pair, pkcs8.as_ref().to_vec())
}

fn ec_jwk(kid: &str, pair: &EcdsaKeyPair) -> Value {
    let point = pair.public_key().as_ref();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    json!({"kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256", "use": "sig",
           "x": b64(&point[1..33]), "y": b64(&point[33..])})
}

fn es256(kid: &str, pkcs8: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(pkcs8)).unwrap()
}

#[tokio::test]
async fn jwks_rotation_through_rampart() {
    let (key_a, der_a) = p256_pair();
    let (key_b, der_b) = p256_pair();
    let jwks = Arc::new(Mutex::new(json!({"keys": [ec_jwk("a", &key_a)]})));
    let served = jwks.clone();
    let idp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", idp.local_addr().unwrap());
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let doc = served.lock().unwrap().clone();
            async move { axum::Json(doc) }
        }),
    );
    tokio::spawn(async move { axum::serve(idp, router).await.unwrap() });

    let app = demo_app().await;
    let running = start(
        &format!(
            r#"
[[auth]]
name = "idp"
type = "jwt"
algorithms = ["ES256"]
jwks_url = "{jwks_url}"
jwks_min_refresh_interval = "1s"
leeway = "0s"
[auth.forward]
x-user-id = "sub"

[[upstream]]
name = "app"
targets = ["{{app}}"]

[[route]]
name = "api"
rewrite = "/echo"
auth = "idp"
upstream = "app"
"#
        ),
        app,
    )
    .await;
    let client = client();
    let target = url(&running, "/me");
    let claims = json!({"sub": "u-1", "iat": now(), "exp": now() + 600});
    let with = |token: String| format!("Bearer {token}");

    let (status, _, _) = call(
        &client,
        &target,
        &[("authorization", &with(es256("a", &der_a, &claims)))],
    )
    .await;
    assert_eq!(status, 200, "key A from the JWKS fetched at start");
    let (status, _, body) = call(
        &client,
        &target,
        &[("authorization", &with(es256("b", &der_b, &claims)))],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "unknown_key");

    // The identity provider rotates: A is gone, B is in.
    *jwks.lock().unwrap() = json!({"keys": [ec_jwk("b", &key_b)]});
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = call(
        &client,
        &target,
        &[("authorization", &with(es256("b", &der_b, &claims)))],
    )
    .await;
    assert_eq!(
        status, 200,
        "B accepted after the refresh an unknown kid triggers: {body}"
    );
    assert_eq!(body["headers"]["x-user-id"], "u-1");
    let (status, _, _) = call(
        &client,
        &target,
        &[("authorization", &with(es256("a", &der_a, &claims)))],
    )
    .await;
    assert_eq!(status, 401, "A is no longer accepted");

    // A verified token is cached, but its claims are checked on every request: it still
    // expires on time.
    let short = json!({"sub": "u-1", "iat": now(), "exp": now() + 2});
    let token = with(es256("b", &der_b, &short));
    let (status, _, _) = call(&client, &target, &[("authorization", &token)]).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, _, body) = call(&client, &target, &[("authorization", &token)]).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "token_expired");

    // HS256 signed with the public key as the secret is refused on an ES256 provider.
    let public_pem = key_b.public_key().as_ref().to_vec();
    let confused = jsonwebtoken::encode(
        &Header {
            kid: Some("b".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims,
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    let (status, _, body) = call(&client, &target, &[("authorization", &with(confused))]).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "invalid_token");
}

#[test]
fn unknown_provider_and_rules_without_auth_are_config_errors() {
    let text = r#"
[[upstream]]
name = "app"
targets = ["127.0.0.1:1"]

[[route]]
name = "a"
upstream = "app"
auth = ["users"]
require = { role = "admin" }
"#;
    let errors = config_problems(text);
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["route[0].auth[0]"], "{errors}");
    assert!(
        errors.0[0].message.contains("no [[auth]] is defined"),
        "{errors}"
    );
    let no_auth = text.replace("auth = [\"users\"]\n", "");
    let errors = config_problems(&no_auth);
    assert_eq!(errors.0[0].key, "route[0].require", "{errors}");
}

#[tokio::test]
async fn cookie_sessions_get_csrf_protection_by_default() {
    let app = demo_app().await;
    let running = start(
        &format!(
            r#"
[[auth]]
name = "session"
type = "jwt"
algorithms = ["HS256"]
secret = "{SECRET}"
cookie = "session"

[[upstream]]
name = "app"
targets = ["{{app}}"]

[[route]]
name = "account"
rewrite = "/echo"
auth = "session"
upstream = "app"
"#
        ),
        app,
    )
    .await;
    let client = client();
    let cookie = format!("session={}", hs256(&claims("u-5", "user")));
    let post = |origin: &'static str| {
        client
            .post(url(&running, "/account/email"))
            .header("cookie", cookie.clone())
            .header("origin", origin)
            .body("{}")
            .send()
    };
    let forged = post("https://evil.example.net").await.unwrap();
    assert_eq!(forged.status(), 403);
    let body: Value = forged.json().await.unwrap();
    assert_eq!(body["error"]["type"], "csrf_rejected");
    let read = client
        .get(url(&running, "/account"))
        .header("cookie", cookie.clone())
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "reads are not state-changing");
    let own = format!("http://{}", running.http_addrs[0]);
    let same_site = client
        .post(url(&running, "/account/email"))
        .header("cookie", cookie.clone())
        .header("origin", own)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), 200);
}

#[tokio::test]
async fn a_reload_whose_jwks_cannot_be_fetched_is_refused_and_the_old_config_keeps_serving() {
    let app = demo_app().await;
    let running = start(&config(), app).await;
    let client = client();
    let bearer = format!("Bearer {}", hs256(&claims("u-1", "user")));
    let broken = support::config(
        &format!(
            r#"
[[auth]]
name = "idp"
type = "jwt"
algorithms = ["ES256"]
jwks_url = "http://{}/jwks.json"
jwks_timeout = "1s"

[[upstream]]
name = "app"
targets = ["{{app}}"]

[[route]]
name = "all"
auth = "idp"
upstream = "app"
"#,
            closed_port()
        ),
        app,
    );
    let error = running.reload(broken).await.unwrap_err();
    assert!(
        error.to_string().contains("cannot load the JWKS"),
        "{error}"
    );
    let (status, _, _) = call(
        &client,
        &url(&running, "/api/me"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 200, "the previous configuration still serves");
}
