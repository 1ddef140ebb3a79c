//! Rate limits end to end with the memory store: the boundary of each algorithm, the 429 and its
//! headers, keys, several policies, costs, methods, progressive blocking, the admin endpoints,
//! metrics, config errors, and the fallback modes when a shared store cannot be reached.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::*;

const SECRET: &str = "rate-limit-test-secret-of-enough-length";

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

/// A config with `policies` (TOML) on route `limited` (`/echo*`, policies `names`).
fn limited(policies: &str, names: &str, extra_route: &str) -> String {
    format!(
        r#"
[rate_limit]
{policies}

[[auth]]
name = "users"
type = "jwt"
algorithms = ["HS256"]
secret = "{SECRET}"

[[upstream]]
name = "app"
targets = ["{{app}}"]

[[route]]
name = "limited"
path_prefix = "/echo"
upstream = "app"
limits = [{names}]
{extra_route}

[[route]]
name = "free"
path_prefix = "/"
upstream = "app"
"#
    )
}

async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn sliding_window_admits_the_limit_then_answers_429_with_headers() {
    let app = demo_app().await;
    let running = start(
        &limited(
            r#"
[[rate_limit.policy]]
name = "three"
limit = 3
window = "15m"
"#,
            r#""three""#,
            "",
        ),
        app,
    )
    .await;
    let client = client();
    for i in 0..3 {
        let response = client.get(url(&running, "/echo")).send().await.unwrap();
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"three\";q=3;w=900"
        );
        let state = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            state.starts_with(&format!("\"three\";r={};t=", 2 - i)),
            "{state}"
        );
    }
    let refused = client
        .get(url(&running, "/echo"))
        .header("x-request-id", "limit-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let headers = refused.headers().clone();
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1800).contains(&retry_after), "{retry_after}");
    assert_eq!(headers["ratelimit-policy"], "\"three\";q=3;w=900");
    assert!(
        headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"three\";r=0;t=")
    );
    assert_eq!(headers["x-request-id"], "limit-test-1");
    assert!(
        headers.contains_key("x-content-type-options"),
        "security headers on a 429"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], 429);
    assert_eq!(body["error"]["type"], "rate_limited");
    assert_eq!(body["error"]["request_id"], "limit-test-1");
    assert_eq!(body["error"]["retry_after"], retry_after);

    // Another route is not limited and carries no rate-limit headers.
    let free = client.get(url(&running, "/health")).send().await.unwrap();
    assert_eq!(free.status(), 200);
    assert!(!free.headers().contains_key("ratelimit-policy"));

    let metrics = metrics_text(&client, &running).await;
    assert!(metrics.contains(
        r#"rampart_ratelimit_decisions_total{route="limited",policy="three",decision="allowed"} 3"#
    ), "{metrics}");
    assert!(metrics.contains(
        r#"rampart_ratelimit_decisions_total{route="limited",policy="three",decision="denied"} 1"#
    ));
    assert!(metrics.contains(
        r#"rampart_security_events_total{event="rate_limited",route="limited",rule="three"} 1"#
    ));
    running.shutdown().await;
}

/// Sleeps until just after the start of the next `window_ms`-aligned window.
async fn align_to_window(window_ms: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(window_ms - now % window_ms + 20)).await;
}

#[tokio::test]
async fn capacity_returns_as_the_window_moves() {
    let app = demo_app().await;
    let running = start(
        &limited(
            r#"
[[rate_limit.policy]]
name = "sliding"
limit = 2
window = "1s"

[[rate_limit.policy]]
name = "bucket"
key = ["header:x-client"]
algorithm = "token_bucket"
limit = 2
window = "2s"
burst = 2
"#,
            r#""sliding", "bucket""#,
            "",
        ),
        app,
    )
    .await;
    let client = client();
    let get = |client: &reqwest::Client, who: &str| {
        client
            .get(url(&running, "/echo"))
            .header("x-client", who.to_owned())
    };
    // Sliding window: two pass, the third is refused; Retry-After later one passes.
    align_to_window(1000).await;
    assert_eq!(status_of(get(&client, "a")).await, 200);
    assert_eq!(status_of(get(&client, "b")).await, 200);
    let refused = get(&client, "c").send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    let wait = body["error"]["retry_after"].as_u64().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(status_of(get(&client, "d")).await, 200);

    // Token bucket (keyed by x-client, under the sliding window's limit): a burst of two,
    // then one more per second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status_of(get(&client, "z")).await, 200);
    assert_eq!(status_of(get(&client, "z")).await, 200);
    tokio::time::sleep(Duration::from_secs(2)).await; // the sliding window's share returns
    let bucket_state = client
        .get(admin_url(&running, "/ratelimit/bucket?header:x-client=z"))
        .send()
        .await
        .unwrap();
    let state: Value = bucket_state.json().await.unwrap();
    assert_eq!(state["remaining"], 2, "{state}");
    running.shutdown().await;
}

#[tokio::test]
async fn token_bucket_refuses_past_the_burst_and_refills_at_the_rate() {
    let app = demo_app().await;
    let running = start(
        &limited(
            r#"
[[rate_limit.policy]]
name = "bucket"
algorithm = "token_bucket"
limit = 1
window = "1s"
burst = 3
"#,
            r#""bucket""#,
            "",
        ),
        app,
    )
    .await;
    let client = client();
    for _ in 0..3 {
        assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 200);
    }
    let refused = client.get(url(&running, "/echo")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 200);
    assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 429);
    running.shutdown().await;
}

#[tokio::test]
async fn keys_separate_users_and_fall_back_to_the_address() {
    let app = demo_app().await;
    let running = start(
        &limited(
            r#"
[[rate_limit.policy]]
name = "per-user"
key = ["user"]
limit = 2
window = "15m"
"#,
            r#""per-user""#,
            "auth = \"users\"\nauth_optional = true",
        ),
        app,
    )
    .await;
    let client = client();
    let as_user = |who: &str| client.get(url(&running, "/echo")).bearer_auth(token(who));
    for who in ["alice", "bob"] {
        assert_eq!(status_of(as_user(who)).await, 200);
        assert_eq!(status_of(as_user(who)).await, 200);
        assert_eq!(status_of(as_user(who)).await, 429, "{who}");
    }
    // Anonymous requests share the client address's budget, apart from the users'.
    assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 200);
    assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 200);
    assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 429);
    // A bad token is still refused, not treated as anonymous.
    let bad = client
        .get(url(&running, "/echo"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);

    // The admin endpoint reads and resets a key.
    let state = get_json(
        &client,
        &admin_url(&running, "/ratelimit/per-user?user=alice"),
    )
    .await;
    assert_eq!(state["remaining"], 0, "{state}");
    assert_eq!(state["limited"], true);
    assert_eq!(state["key"], "per-user|user=alice");
    let reset = client
        .delete(admin_url(&running, "/ratelimit/per-user?user=alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(status_of(as_user("alice")).await, 200);
    let missing = client
        .delete(admin_url(&running, "/ratelimit/per-user?user=nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let unknown = client
        .get(admin_url(&running, "/ratelimit/nope?ip=1.2.3.4"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let needs_ip = client
        .get(admin_url(&running, "/ratelimit/per-user"))
        .send()
        .await
        .unwrap();
    assert_eq!(needs_ip.status(), 400);
    running.shutdown().await;
}

#[tokio::test]
async fn every_policy_must_admit_and_costs_and_methods_apply() {
    let app = demo_app().await;
    let running = start(
        &limited(
            r#"
[[rate_limit.policy]]
name = "wide"
limit = 10
window = "15m"

[[rate_limit.policy]]
name = "writes"
limit = 4
window = "15m"
cost = 2
methods = ["POST"]
"#,
            r#""wide", "writes""#,
            "",
        ),
        app,
    )
    .await;
    let client = client();
    let post = || client.post(url(&running, "/echo")).body("x");
    let first = post().send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["ratelimit-policy"],
        "\"wide\";q=10;w=900, \"writes\";q=4;w=900"
    );
    assert!(
        first.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .contains("\"writes\";r=2;")
    );
    assert_eq!(status_of(post()).await, 200);
    // Two POSTs cost the whole write budget; the third is refused by `writes` alone.
    let refused = post().send().await.unwrap();
    assert_eq!(refused.status(), 429);
    // GETs are not counted by `writes`, only by `wide`.
    let get = client.get(url(&running, "/echo")).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["ratelimit-policy"], "\"wide\";q=10;w=900");
    running.shutdown().await;
}

#[tokio::test]
async fn repeated_refusals_block_the_address() {
    let app = demo_app().await;
    let running = start(
        &format!(
            "{}\n[blocking]\nthreshold = 3\nwindow = \"1m\"\nduration = \"15m\"\n",
            limited(
                "[[rate_limit.policy]]\nname = \"one\"\nlimit = 1\nwindow = \"15m\"\n",
                r#""one""#,
                "",
            )
        ),
        app,
    )
    .await;
    let client = client();
    assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 200);
    for _ in 0..3 {
        assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 429);
    }
    // Blocked now, on every route.
    let blocked = client.get(url(&running, "/health")).send().await.unwrap();
    assert_eq!(blocked.status(), 403);
    let body: Value = blocked.json().await.unwrap();
    assert_eq!(body["error"]["type"], "ip_blocked");
    let blocks = get_json(&client, &admin_url(&running, "/security/blocks")).await;
    assert_eq!(blocks["blocks"][0]["ip"], "127.0.0.1");
    running.shutdown().await;
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let base = r#"
[[upstream]]
name = "app"
targets = ["127.0.0.1:3000"]
"#;
    let errors = config_problems(&format!(
        "{base}\n[[route]]\nname = \"r\"\nupstream = \"app\"\nlimits = [\"missing\"]\n"
    ))
    .to_string();
    assert!(errors.contains("route[0].limits[0]"), "{errors}");
    assert!(
        errors.contains("no [[rate_limit.policy]] is named `missing`"),
        "{errors}"
    );

    let errors = config_problems(&format!(
        "{base}\n[rate_limit]\nstore = \"redis\"\n[[rate_limit.policy]]\nname = \"p\"\nkey = [\"cookie\"]\nlimit = 0\nwindow = \"1m\"\nburst = 3\n"
    ))
    .to_string();
    assert!(errors.contains("test.toml:"), "{errors}");
    assert!(errors.contains("rate_limit.store"), "{errors}");
    assert!(errors.contains("[store.redis]"), "{errors}");
    assert!(errors.contains("rate_limit.policy[0].key[0]"), "{errors}");
    assert!(errors.contains("rate_limit.policy[0].limit"), "{errors}");
    assert!(errors.contains("rate_limit.policy[0].burst"), "{errors}");

    let errors = config_problems(&format!(
        "{base}\n[store.redis]\nurl = \"localhost:6379\"\n[rate_limit]\nstore = \"redis\"\n"
    ))
    .to_string();
    assert!(errors.contains("store.redis.url"), "{errors}");
    assert!(errors.contains("redis://"), "{errors}");
}

/// A config whose limits live in a Redis nobody listens to.
fn unreachable_store(mode: &str, instances: u32) -> String {
    format!(
        r#"
[store.redis]
url = "redis://{}"
connect_timeout = "200ms"

[rate_limit]
store = "redis"
timeout = "50ms"
on_store_failure = "{mode}"
instances = {instances}
probe_interval = "200ms"

[[rate_limit.policy]]
name = "p"
limit = 4
window = "15m"

[[upstream]]
name = "app"
targets = ["{{app}}"]

[[route]]
name = "limited"
upstream = "app"
limits = ["p"]
"#,
        closed_port()
    )
}

#[tokio::test]
async fn an_unreachable_store_falls_back_as_the_policy_says() {
    let app = demo_app().await;
    let client = client();

    // local: this instance's share (4 / 2 instances = 2).
    let running = start(&unreachable_store("local", 2), app).await;
    assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 200);
    assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 200);
    assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 429);
    let health = client
        .get(admin_url(&running, "/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let health: Value = health.json().await.unwrap();
    let redis = health["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "store")
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(redis["name"], "redis");
    assert_eq!(redis["fallback_active"], true);
    let metrics = metrics_text(&client, &running).await;
    assert!(
        metrics.contains(r#"rampart_ratelimit_store_degraded{store="redis"} 1"#),
        "{metrics}"
    );
    running.shutdown().await;

    // open: everything passes, never a 5xx.
    let running = start(&unreachable_store("open", 1), app).await;
    for _ in 0..8 {
        assert_eq!(status_of(client.get(url(&running, "/echo"))).await, 200);
    }
    let metrics = metrics_text(&client, &running).await;
    assert!(metrics.contains(r#"decision="fail_open"} 8"#), "{metrics}");
    running.shutdown().await;

    // closed: 503 with Retry-After.
    let running = start(&unreachable_store("closed", 1), app).await;
    let refused = client.get(url(&running, "/echo")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_unavailable");
    running.shutdown().await;
}
