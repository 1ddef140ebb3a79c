//! The seeds' rate limits, as `examples/limits.toml` writes them, on the demo app: each policy
//! with each store (memory, Redis, PostgreSQL).

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::*;

const SECRET: &str = rampart::demo::app::DEMO_JWT_SECRET;

/// rampart running `examples/limits.toml` on `store`, plus what keeps that store's state apart.
struct Example {
    running: rampart::server::Running,
    base: String,
    _database: Option<TestDatabase>,
}

async fn start_limits(store: &str) -> Example {
    let app = demo_app().await;
    let database = match store {
        "postgres" => Some(TestDatabase::create().await),
        _ => None,
    };
    let mut env: HashMap<&str, String> = HashMap::from([
        ("RAMPART_LISTEN", "127.0.0.1:0".to_owned()),
        ("RAMPART_ADMIN", "127.0.0.1:0".to_owned()),
        ("RAMPART_DEMO_UPSTREAM", app.to_string()),
        ("RAMPART_JWT_SECRET", SECRET.to_owned()),
        ("RAMPART_LIMIT_STORE", store.to_owned()),
        ("RAMPART_REDIS_PREFIX", unique_prefix()),
        ("REDIS_URL", redis_url()),
    ]);
    if let Some(database) = &database {
        env.insert("DATABASE_URL", database.url.clone());
    }
    // These tests check exact counting in each store, not the fallback (tests/ratelimit.rs and
    // the store tests do): a loaded machine must not push a slow call onto the local fallback.
    let text = std::fs::read_to_string("examples/limits.toml")
        .unwrap()
        .replace("timeout = \"50ms\"", "timeout = \"2s\"");
    assert!(text.contains("timeout = \"2s\""));
    let config = rampart::config::parse(&text, "limits.toml", Path::new("examples"), &|var| {
        env.get(var).cloned()
    })
    .unwrap_or_else(|errors| panic!("{errors}"));
    rampart::install_crypto_provider();
    let running = rampart::server::start(config).await.unwrap();
    Example {
        base: format!("http://{}", running.http_addrs[0]),
        running,
        _database: database,
    }
}

fn token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": sub, "iat": now, "exp": now + 600 }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Sends `count` requests built by `request` in order; returns how many were not refused (429),
/// and asserts that none got a 5xx.
async fn admitted(count: usize, request: impl Fn() -> reqwest::RequestBuilder) -> usize {
    let mut passed = 0;
    for _ in 0..count {
        let status = request().send().await.unwrap().status();
        assert!(!status.is_server_error(), "{status}");
        if status != 429 {
            passed += 1;
        }
    }
    passed
}

/// Waits, when needed, until the current aligned window of `window_secs` has at least 20 s left:
/// the sliding window is exact inside one window, and weighs the previous one by the time
/// passed, so a test that straddles a boundary would see the documented approximation instead
/// of the exact limit.
async fn within_one_window(window_secs: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let window_ms = window_secs * 1000;
    let into = now.as_millis() as u64 % window_ms;
    if window_ms - into < 20_000 {
        tokio::time::sleep(std::time::Duration::from_millis(window_ms - into + 200)).await;
    }
}

async fn login_five_per_fifteen_minutes_per_ip(store: &str) {
    within_one_window(900).await;
    let example = start_limits(store).await;
    let client = client();
    let login = || {
        client
            .post(format!("{}/auth/login", example.base))
            .json(&json!({"username": "demo", "password": "wrong"}))
    };
    assert_eq!(admitted(6, login).await, 5);
    let refused = login().send().await.unwrap();
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 60, "the window is 15 minutes: {retry}");
    assert_eq!(refused.headers()["ratelimit-policy"], "\"login\";q=5;w=900");
    example.running.shutdown().await;
}

async fn api_hundred_per_minute_per_user(store: &str) {
    within_one_window(60).await;
    let example = start_limits(store).await;
    let client = client();
    let (alice, bob) = (token("alice"), token("bob"));
    let items = |token: Option<&String>| {
        let request = client.get(format!("{}/api/items", example.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };
    assert_eq!(admitted(101, || items(Some(&alice))).await, 100);
    assert_eq!(admitted(101, || items(Some(&bob))).await, 100);
    // Anonymous: by client IP, a budget of its own.
    assert_eq!(admitted(101, || items(None)).await, 100);
    example.running.shutdown().await;
}

async fn ai_ten_per_hour_per_user(store: &str) {
    within_one_window(3600).await;
    let example = start_limits(store).await;
    let client = client();
    let (alice, bob) = (token("alice"), token("bob"));
    let chat = |token: &String| {
        client
            .post(format!("{}/v1/chat/completions", example.base))
            .bearer_auth(token)
            .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}))
    };
    assert_eq!(admitted(11, || chat(&alice)).await, 10);
    assert_eq!(admitted(1, || chat(&bob)).await, 1);
    let refused = chat(&alice).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The next window at the earliest, and six minutes into it (when the ten weigh nine).
    assert!(retry >= 360, "the window is an hour: {retry}");
    example.running.shutdown().await;
}

async fn sensitive_twenty_per_minute(store: &str) {
    within_one_window(60).await;
    let example = start_limits(store).await;
    let client = client();
    let alice = token("alice");
    let account = || {
        client
            .get(format!("{}/api/account/billing", example.base))
            .bearer_auth(&alice)
    };
    assert_eq!(admitted(21, account).await, 20);
    // The sensitive budget is spent, the general API budget is not.
    let items = client
        .get(format!("{}/api/items", example.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(items.status(), 200);
    example.running.shutdown().await;
}

async fn global_hundred_per_fifteen_minutes_per_ip(store: &str) {
    within_one_window(900).await;
    let example = start_limits(store).await;
    let client = client();
    let page = || client.get(format!("{}/health", example.base));
    assert_eq!(admitted(101, page).await, 100);
    example.running.shutdown().await;
}

macro_rules! for_each_store {
    ($($seed:ident),*) => {
        mod memory {
            $(#[tokio::test] async fn $seed() { super::$seed("memory").await })*
        }
        mod redis {
            $(#[tokio::test] async fn $seed() { super::$seed("redis").await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $seed() { super::$seed("postgres").await })*
        }
    };
}

for_each_store!(
    login_five_per_fifteen_minutes_per_ip,
    api_hundred_per_minute_per_user,
    ai_ten_per_hour_per_user,
    sensitive_twenty_per_minute,
    global_hundred_per_fifteen_minutes_per_ip
);
