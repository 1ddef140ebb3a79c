//! The response cache end to end over real sockets: hits and misses, `Cache-Control`, `Vary` and
//! identity scoping (user A never gets user B's answer; `Set-Cookie` answers are never served
//! from the cache), coalescing of concurrent misses, the memory bound, stale answers, purges,
//! POST caching, and the Redis tier shared by two instances (and its failure).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::origin::{Origin, origin};
use support::*;

fn sha256_hex(text: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One cached route `c` on `/c` over the origin, with `extra` lines added to its `[route.cache]`,
/// and an uncached route for everything else.
fn cached_config(extra: &str) -> String {
    format!(
        r#"
[cache]
max_memory = "8MiB"

[[upstream]]
name = "origin"
targets = ["{{app}}"]

[[route]]
name = "c"
path_prefix = "/c"
upstream = "origin"
[route.cache]
ttl = "60s"
{extra}

[[route]]
name = "plain"
upstream = "origin"
"#
    )
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn cache(&self) -> &str {
        self.headers
            .get("x-cache")
            .map_or("", |v| v.to_str().unwrap())
    }
    fn n(&self) -> u64 {
        self.body["n"].as_u64().unwrap_or(0)
    }
}

async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

async fn start_cached(extra: &str) -> (rampart::server::Running, Arc<Origin>) {
    let (addr, origin) = origin().await;
    (start(&cached_config(extra), addr).await, origin)
}

#[tokio::test]
async fn a_second_request_is_a_hit_with_age_and_the_same_body() {
    let (running, origin) = start_cached("").await;
    let client = client();
    let first = get(&client, &url(&running, "/c/items?b=2&a=1"), &[]).await;
    assert_eq!((first.status, first.cache()), (200, "MISS"));
    let key = first.headers["x-cache-key"].to_str().unwrap().to_owned();
    assert_eq!(key.len(), 64);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The same query in another order is the same entry.
    let second = get(&client, &url(&running, "/c/items?a=1&b=2"), &[]).await;
    assert_eq!((second.status, second.cache()), (200, "HIT"));
    assert_eq!(second.body, first.body);
    assert_eq!(second.headers["x-cache-key"], key.as_str());
    let age: u64 = second.headers["age"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&age), "age {age}");
    assert_eq!(origin.hits("/c/items?b=2&a=1"), 1);
    assert_eq!(origin.hits("/c/items?a=1&b=2"), 0);
    // HEAD is answered from GET's entry, without a body.
    let head = client
        .head(url(&running, "/c/items?a=1&b=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["x-cache"], "HIT");
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        first.body.to_string().len().to_string()
    );
    // Uncached routes carry no cache header and always reach the origin.
    let plain = get(&client, &url(&running, "/p"), &[]).await;
    let plain2 = get(&client, &url(&running, "/p"), &[]).await;
    assert!(plain.headers.get("x-cache").is_none());
    assert_eq!((plain.n(), plain2.n()), (1, 2));
    // Methods the route does not cache pass, marked BYPASS.
    let post = client
        .post(url(&running, "/c/items"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.headers()["x-cache"], "BYPASS");
}

#[tokio::test]
async fn cache_control_decides_what_is_stored_and_for_how_long() {
    let (running, origin) = start_cached("").await;
    let client = client();
    // (query, served from the cache the second time?)
    let matrix = [
        ("cc=no-store", false),
        ("cc=private,%20max-age=60", false),
        ("cc=no-cache", false),
        ("cc=max-age=0", false),
        ("cc=public,%20max-age=60", true),
        ("cc=s-maxage=60,%20max-age=0", true),
        ("status=500", false),
        ("status=404", false),
        ("status=301", true),
        ("vary=*", false),
        ("", true),
    ];
    for (query, cached) in matrix {
        let path = format!("/c/m?{query}");
        let first = get(&client, &url(&running, &path), &[]).await;
        let second = get(&client, &url(&running, &path), &[]).await;
        assert_eq!(first.cache(), "MISS", "{query}");
        let expected = if cached { "HIT" } else { "MISS" };
        assert_eq!(second.cache(), expected, "{query}");
        assert_eq!(origin.hits(&path), if cached { 1 } else { 2 }, "{query}");
    }
    // max-age wins over the route's ttl: expired after a second.
    let path = "/c/short?cc=max-age=1";
    get(&client, &url(&running, path), &[]).await;
    assert_eq!(get(&client, &url(&running, path), &[]).await.cache(), "HIT");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&client, &url(&running, path), &[]).await.cache(),
        "MISS"
    );
    assert_eq!(origin.hits(path), 2);
}

#[tokio::test]
async fn set_cookie_answers_are_never_served_from_the_cache() {
    let (running, origin) = start_cached("").await;
    let client = client();
    let path = "/c/login?cookie=1&cc=public,%20max-age=60";
    for round in 1..=3 {
        let reply = get(&client, &url(&running, path), &[]).await;
        assert_eq!(reply.cache(), "MISS");
        assert_eq!(
            reply.headers["set-cookie"].to_str().unwrap(),
            format!("session=s{round}; HttpOnly")
        );
    }
    assert_eq!(origin.hits(path), 3);

    // With strip_set_cookie the answer is stored without the cookie: only the client that
    // caused the miss gets it.
    let (running, origin) = start_cached("strip_set_cookie = true").await;
    let first = get(&client, &url(&running, "/c/x?cookie=1"), &[]).await;
    assert!(first.headers.contains_key("set-cookie"));
    let second = get(&client, &url(&running, "/c/x?cookie=1"), &[]).await;
    assert_eq!(second.cache(), "HIT");
    assert!(!second.headers.contains_key("set-cookie"));
    assert_eq!(origin.hits("/c/x?cookie=1"), 1);
}

#[tokio::test]
async fn user_a_never_receives_user_bs_cached_answer() {
    // Credentials rampart does not check (the app does): the key holds them.
    let (running, origin) = start_cached("").await;
    let client = client();
    let alice = get(
        &client,
        &url(&running, "/c/me"),
        &[("authorization", "Bearer alice")],
    )
    .await;
    let bob = get(
        &client,
        &url(&running, "/c/me"),
        &[("authorization", "Bearer bob")],
    )
    .await;
    let cookie = get(
        &client,
        &url(&running, "/c/me"),
        &[("cookie", "session=carol")],
    )
    .await;
    let anonymous = get(&client, &url(&running, "/c/me"), &[]).await;
    for reply in [&alice, &bob, &cookie, &anonymous] {
        assert_eq!(reply.cache(), "MISS");
    }
    let alice2 = get(
        &client,
        &url(&running, "/c/me"),
        &[("authorization", "Bearer alice")],
    )
    .await;
    let bob2 = get(
        &client,
        &url(&running, "/c/me"),
        &[("authorization", "Bearer bob")],
    )
    .await;
    assert_eq!((alice2.cache(), bob2.cache()), ("HIT", "HIT"));
    assert_eq!(alice2.body["auth"], "Bearer alice");
    assert_eq!(bob2.body["auth"], "Bearer bob");
    assert_eq!(origin.hits("/c/me"), 4);

    // Identities rampart authenticates (API keys here): one entry per identity.
    let (addr, origin) = support::origin::origin().await;
    let config = format!(
        r#"
[[auth]]
name = "keys"
type = "api_key"
header = "x-api-key"
keys = [{{ name = "alice", sha256 = "{}" }}, {{ name = "bob", sha256 = "{}" }}]

[[upstream]]
name = "origin"
targets = ["{{app}}"]

[[route]]
name = "c"
path_prefix = "/c"
upstream = "origin"
auth = "keys"
[route.cache]

[[route]]
name = "shared"
path_prefix = "/s"
upstream = "origin"
auth = "keys"
[route.cache]
shared = true
"#,
        sha256_hex("alice-key"),
        sha256_hex("bob-key")
    );
    let running = start(&config, addr).await;
    let a = [("x-api-key", "alice-key")];
    let b = [("x-api-key", "bob-key")];
    let a1 = get(&client, &url(&running, "/c/me"), &a).await;
    let b1 = get(&client, &url(&running, "/c/me"), &b).await;
    let a2 = get(&client, &url(&running, "/c/me"), &a).await;
    let b2 = get(&client, &url(&running, "/c/me"), &b).await;
    assert_eq!(
        (a1.cache(), b1.cache(), a2.cache(), b2.cache()),
        ("MISS", "MISS", "HIT", "HIT")
    );
    assert_eq!((a1.n(), b1.n()), (1, 2));
    assert_eq!(
        (a2.n(), b2.n()),
        (1, 2),
        "each user gets their own answer back"
    );
    // Unauthenticated requests never reach the cache.
    assert_eq!(get(&client, &url(&running, "/c/me"), &[]).await.status, 401);
    // A shared route has one entry for all.
    let s1 = get(&client, &url(&running, "/s/catalog"), &a).await;
    let s2 = get(&client, &url(&running, "/s/catalog"), &b).await;
    assert_eq!((s1.cache(), s2.cache()), ("MISS", "HIT"));
    assert_eq!(origin.hits("/s/catalog"), 1);
}

#[tokio::test]
async fn vary_keeps_one_entry_per_variant() {
    let (running, origin) = start_cached("").await;
    let client = client();
    let path = "/c/greeting?vary=accept-language";
    let en = get(&client, &url(&running, path), &[("accept-language", "en")]).await;
    let fr = get(&client, &url(&running, path), &[("accept-language", "fr")]).await;
    let en2 = get(&client, &url(&running, path), &[("accept-language", "en")]).await;
    let fr2 = get(&client, &url(&running, path), &[("accept-language", "fr")]).await;
    assert_eq!((en.cache(), fr.cache()), ("MISS", "MISS"));
    assert_eq!((en2.cache(), fr2.cache()), ("HIT", "HIT"));
    assert_eq!(en2.body["lang"], "en");
    assert_eq!(fr2.body["lang"], "fr");
    assert_eq!(origin.hits(path), 2);
    // The route may ignore Vary.
    let (running, origin) = start_cached("honor_vary = false\nhonor_cache_control = false").await;
    let en = get(
        &client,
        &url(&running, "/c/g?vary=accept-language&cc=no-store"),
        &[("accept-language", "en")],
    )
    .await;
    let fr = get(
        &client,
        &url(&running, "/c/g?vary=accept-language&cc=no-store"),
        &[("accept-language", "fr")],
    )
    .await;
    assert_eq!((en.cache(), fr.cache()), ("MISS", "HIT"));
    assert_eq!(fr.body["lang"], "en");
    assert_eq!(origin.total(), 1);
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_upstream_request() {
    let (running, origin) = start_cached("").await;
    let client = client();
    let path = "/c/slow?delay=300";
    let started = Instant::now();
    let calls = (0..100).map(|_| {
        let client = client.clone();
        let url = url(&running, path);
        async move { get(&client, &url, &[]).await }
    });
    let replies = futures_util::future::join_all(calls).await;
    assert_eq!(origin.hits(path), 1, "exactly one upstream request");
    assert!(replies.iter().all(|r| r.status == 200 && r.n() == 1));
    let misses = replies.iter().filter(|r| r.cache() == "MISS").count();
    assert_eq!(misses, 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    let metrics = metrics_text(&client, &running).await;
    assert!(
        metrics.contains(r#"rampart_cache_coalesced_total{route="c"} 99"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn waiters_go_upstream_themselves_after_the_lock_timeout() {
    let (addr, origin) = origin().await;
    let config = cached_config("").replace(
        "max_memory = \"8MiB\"",
        "max_memory = \"8MiB\"\nlock_timeout = \"100ms\"",
    );
    let running = start(&config, addr).await;
    let client = client();
    let path = "/c/slower?delay=600";
    let calls = (0..3).map(|_| {
        let client = client.clone();
        let url = url(&running, path);
        async move { get(&client, &url, &[]).await }
    });
    let replies = futures_util::future::join_all(calls).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(
        origin.hits(path),
        3,
        "the waiters gave up on the leader and went themselves"
    );
}

#[tokio::test]
async fn the_memory_bound_holds_under_a_flood_of_distinct_keys() {
    let (addr, _origin) = origin().await;
    let config = cached_config("").replace("max_memory = \"8MiB\"", "max_memory = \"1MiB\"");
    let running = start(&config, addr).await;
    let client = client();
    for batch in 0..20 {
        let calls = (0..20).map(|i| {
            let client = client.clone();
            let url = url(&running, &format!("/c/flood/{batch}/{i}?size=10000"));
            async move { get(&client, &url, &[]).await }
        });
        futures_util::future::join_all(calls).await;
    }
    let state = get_json(&client, &admin_url(&running, "/cache")).await;
    let bytes = state["memory_bytes"].as_u64().unwrap();
    assert!(bytes <= 1024 * 1024, "{state}");
    assert!(bytes > 512 * 1024, "the cache is used: {state}");
    let metrics = metrics_text(&client, &running).await;
    let evicted: f64 = metrics
        .lines()
        .find(|l| l.starts_with(r#"rampart_cache_evictions_total{reason="size"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(evicted > 100.0, "{metrics}");
    assert!(metrics.contains("rampart_cache_memory_bytes "));
}

#[tokio::test]
async fn stale_while_revalidate_and_stale_if_error() {
    let (running, origin) = start_cached("stale_if_error = \"60s\"").await;
    let client = client();
    let path = "/c/feed?cc=max-age=1,%20stale-while-revalidate=30";
    assert_eq!(get(&client, &url(&running, path), &[]).await.n(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = get(&client, &url(&running, path), &[]).await;
    assert_eq!((stale.cache(), stale.n()), ("STALE", 1));
    // Refreshed in the background.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let reply = get(&client, &url(&running, path), &[]).await;
        if reply.cache() == "HIT" && reply.n() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "not refreshed: {}", reply.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(origin.hits(path), 2);

    // The upstream fails: the expired entry answers within stale-if-error.
    let path = "/c/report?cc=max-age=1&fail=1";
    assert_eq!(get(&client, &url(&running, path), &[]).await.n(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set_failing(true);
    let reply = get(&client, &url(&running, path), &[]).await;
    assert_eq!((reply.status, reply.cache(), reply.n()), (200, "STALE", 1));
    origin.set_failing(false);
    let reply = get(&client, &url(&running, path), &[]).await;
    assert_eq!((reply.cache(), reply.n()), ("MISS", 3));
    // must-revalidate forbids it.
    let path = "/c/strict?cc=max-age=1,%20must-revalidate&fail=1";
    get(&client, &url(&running, path), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set_failing(true);
    assert_eq!(get(&client, &url(&running, path), &[]).await.status, 503);
    origin.set_failing(false);
}

#[tokio::test]
async fn stale_entries_are_revalidated_with_their_etag() {
    let (running, origin) = start_cached("").await;
    let client = client();
    let path = "/c/doc?cc=max-age=1&etag=v1";
    let first = get(&client, &url(&running, path), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = get(&client, &url(&running, path), &[]).await;
    assert_eq!(
        (again.cache(), again.n()),
        ("HIT", 1),
        "a 304 refreshed the entry"
    );
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert_eq!(origin.hits(path), 2);
    assert_eq!(get(&client, &url(&running, path), &[]).await.cache(), "HIT");
    assert_eq!(origin.hits(path), 2);
    // The client's own validator is answered from the cache.
    let response = client
        .get(url(&running, path))
        .header("if-none-match", "\"v1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(origin.hits(path), 2);
}

#[tokio::test]
async fn purges_by_key_route_prefix_and_on_write() {
    let (running, origin) =
        start_cached("purge_on_write = true\nmethods = [\"GET\", \"HEAD\"]").await;
    let client = client();
    let warm = |path: &'static str| {
        let client = client.clone();
        let url = url(&running, path);
        async move {
            get(&client, &url, &[]).await;
            let reply = get(&client, &url, &[]).await;
            assert_eq!(reply.cache(), "HIT", "{url}");
            reply
        }
    };
    let one = warm("/c/a/1").await;
    warm("/c/a/2").await;
    warm("/c/b/1").await;
    let key = one.headers["x-cache-key"].to_str().unwrap().to_owned();
    let purge = |query: String| {
        let client = client.clone();
        let url = admin_url(&running, &format!("/cache?{query}"));
        async move {
            let response = client.delete(url).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = purge(format!("key={key}")).await;
    assert_eq!((status, body["purged"]["memory"].as_u64()), (200, Some(1)));
    assert_eq!(
        get(&client, &url(&running, "/c/a/1"), &[]).await.cache(),
        "MISS"
    );
    assert_eq!(
        get(&client, &url(&running, "/c/a/2"), &[]).await.cache(),
        "HIT"
    );
    let (_, body) = purge("prefix=/c/a/".into()).await;
    assert_eq!(body["purged"]["memory"].as_u64(), Some(2));
    assert_eq!(
        get(&client, &url(&running, "/c/b/1"), &[]).await.cache(),
        "HIT"
    );
    let (_, body) = purge("route=c".into()).await;
    assert!(body["purged"]["memory"].as_u64().unwrap() >= 1);
    assert_eq!(
        get(&client, &url(&running, "/c/b/1"), &[]).await.cache(),
        "MISS"
    );
    assert_eq!(origin.hits("/c/b/1"), 2);
    // Bad purges are refused with the JSON error shape.
    assert_eq!(purge("key=xyz".into()).await.0, 400);
    assert_eq!(purge("route=nope".into()).await.0, 404);
    assert_eq!(purge("prefix=/a&route=c".into()).await.0, 400);
    assert_eq!(purge("".into()).await.0, 400);
    let (status, body) = purge("bogus=1".into()).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("bad_request"))
    );

    // A successful write purges the cached reads of its path.
    warm("/c/items").await;
    let written = client
        .put(url(&running, "/c/items"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 200);
    assert_eq!(
        get(&client, &url(&running, "/c/items"), &[]).await.cache(),
        "MISS"
    );
    // A failed one does not.
    warm("/c/other").await;
    let failed = client
        .delete(url(&running, "/c/other?status=500"))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    // (the failed write targets the same path)
    assert_eq!(
        get(&client, &url(&running, "/c/other"), &[]).await.cache(),
        "HIT"
    );
}

#[tokio::test]
async fn post_is_cached_by_body_when_the_route_opts_in() {
    let (running, origin) = start_cached("methods = [\"POST\"]\nshared = true").await;
    let client = client();
    let ask = |question: &'static str| {
        let client = client.clone();
        let url = url(&running, "/c/ai/query");
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(question)
                .send()
                .await
                .unwrap();
            let cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
            let body: Value = response.json().await.unwrap();
            (cache, body)
        }
    };
    let (c1, b1) = ask(r#"{"q":"revenue?"}"#).await;
    let (c2, b2) = ask(r#"{"q":"revenue?"}"#).await;
    let (c3, b3) = ask(r#"{"q":"costs?"}"#).await;
    assert_eq!(
        (c1.as_str(), c2.as_str(), c3.as_str()),
        ("MISS", "HIT", "MISS")
    );
    assert_eq!(b1, b2);
    assert_eq!(b3["body"], r#"{"q":"costs?"}"#);
    assert_eq!(origin.hits("/c/ai/query"), 2);
}

#[tokio::test]
async fn bodies_above_the_entry_cap_stream_through_uncached() {
    let (addr, origin) = origin().await;
    let config = cached_config("").replace(
        "max_memory = \"8MiB\"",
        "max_memory = \"8MiB\"\nmax_entry_bytes = \"20KB\"",
    );
    let running = start(&config, addr).await;
    let client = client();
    let path = "/c/big?size=50000";
    for _ in 0..2 {
        let reply = get(&client, &url(&running, path), &[]).await;
        assert_eq!(reply.cache(), "MISS");
        assert!(reply.body["pad"].as_str().unwrap().len() > 40_000);
    }
    assert_eq!(origin.hits(path), 2);
}

#[tokio::test]
async fn the_cache_shows_in_health_and_metrics() {
    let (running, _origin) = start_cached("").await;
    let client = client();
    for _ in 0..5 {
        get(&client, &url(&running, "/c/h"), &[]).await;
    }
    let health = get_json(&client, &admin_url(&running, "/health")).await;
    let cache = health["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "cache")
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(cache["status"], "healthy");
    assert_eq!(cache["cache"]["hit_rate"].as_f64(), Some(0.8));
    assert_eq!(cache["cache"]["store"], "memory");
    let metrics = metrics_text(&client, &running).await;
    for needle in [
        r#"rampart_cache_requests_total{route="c",result="hit"} 4"#,
        r#"rampart_cache_requests_total{route="c",result="miss"} 1"#,
        "rampart_cache_hit_ratio 0.8",
        "rampart_cache_entries 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle}:\n{metrics}");
    }
}

/// Two instances sharing a Redis prefix: what one stored, the other serves.
fn redis_config(prefix: &str, redis_url: &str) -> String {
    cached_config("").replace(
        "[cache]\nmax_memory = \"8MiB\"",
        &format!(
            "[store.redis]\nurl = \"{redis_url}\"\nkey_prefix = \"{prefix}\"\n\n[cache]\nmax_memory = \"8MiB\"\nstore = \"redis\"\nredis_timeout = \"500ms\""
        ),
    )
}

#[tokio::test]
async fn two_instances_share_entries_through_redis() {
    let (addr, origin) = origin().await;
    let prefix = unique_prefix();
    let a = start(&redis_config(&prefix, &redis_url()), addr).await;
    let b = start(&redis_config(&prefix, &redis_url()), addr).await;
    let client = client();
    let path = "/c/shared?size=3000";
    let first = get(&client, &url(&a, path), &[]).await;
    assert_eq!(first.cache(), "MISS");
    // The write to Redis happens in the background.
    let deadline = Instant::now() + Duration::from_secs(3);
    let from_b = loop {
        let reply = get(&client, &url(&b, path), &[]).await;
        if reply.cache() == "HIT" || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(from_b.cache(), "HIT");
    assert_eq!(from_b.body, first.body);
    assert_eq!(origin.hits(path), 1, "b answered from Redis");
    // Stored values are compressed, under the prefix.
    let client_redis = redis::Client::open(redis_url()).unwrap();
    let mut conn = client_redis
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}cache:c:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(stored.len() < 3000, "compressed: {} bytes", stored.len());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");

    // A purge on a clears Redis and b's memory.
    tokio::time::sleep(Duration::from_millis(200)).await; // b's purge listener is subscribed
    let response = client
        .delete(admin_url(&a, "/cache?route=c"))
        .send()
        .await
        .unwrap();
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["purged"]["redis"].as_u64(), Some(1), "{report}");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let reply = get(&client, &url(&b, path), &[]).await;
        if reply.cache() == "MISS" {
            break;
        }
        assert!(Instant::now() < deadline, "b still serves the purged entry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A write through a purges the path for b too (Redis mark, and b's memory by announcement).
    let (running_a, running_b) = (&a, &b);
    let path = "/c/doc";
    get(&client, &url(running_a, path), &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        get(&client, &url(running_b, path), &[]).await.cache(),
        "HIT"
    );
    assert_eq!(
        get(&client, &url(running_b, path), &[]).await.cache(),
        "HIT"
    );
    let config = redis_config(&prefix, &redis_url()).replace(
        "[route.cache]\nttl = \"60s\"",
        "[route.cache]\nttl = \"60s\"\npurge_on_write = true",
    );
    running_a
        .reload(support::config(&config, addr))
        .await
        .unwrap();
    running_b
        .reload(support::config(&config, addr))
        .await
        .unwrap();
    let written = client
        .put(url(running_a, path))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let reply = get(&client, &url(running_b, path), &[]).await;
        if reply.cache() == "MISS" {
            break;
        }
        assert!(Instant::now() < deadline, "b still serves the written path");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_failing_redis_degrades_the_cache_to_memory() {
    let (addr, origin) = origin().await;
    let dead = format!("redis://{}", closed_port());
    let running = start(&redis_config(&unique_prefix(), &dead), addr).await;
    let client = client();
    let first = get(&client, &url(&running, "/c/x"), &[]).await;
    let second = get(&client, &url(&running, "/c/x"), &[]).await;
    assert_eq!((first.status, first.cache()), (200, "MISS"));
    assert_eq!(second.cache(), "HIT", "memory still caches");
    assert_eq!(origin.hits("/c/x"), 1);
    let health = client
        .get(admin_url(&running, "/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let health: Value = health.json().await.unwrap();
    let cache = health["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "cache")
        .unwrap()
        .clone();
    assert_eq!(cache["status"], "degraded", "{health}");
    assert_eq!(cache["cache"]["redis_in_use"], false);
    assert_eq!(cache["fallback_active"], true);
    let metrics = metrics_text(&client, &running).await;
    assert!(
        metrics.contains(r#"rampart_cache_store_errors_total{store="redis",kind="error"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"rampart_ratelimit_store_degraded{store="redis"} 1"#));
}

#[test]
fn bad_cache_config_is_refused_with_its_place() {
    let text = r#"
[cache]
max_memory = "10KB"
store = "redis"

[[upstream]]
name = "app"
targets = ["127.0.0.1:3000"]

[[route]]
name = "r"
upstream = "app"
[route.cache]
methods = ["GET", "PUT"]
statuses = [200, 206]
key_headers = ["bad header"]

[compression]
algorithms = ["gzip", "lzma"]
"#;
    let errors = config_problems(text).to_string();
    for expected in [
        "test.toml:3:1: cache.max_memory: expected at least 1MiB",
        "test.toml:4:1: cache.store: store = \"redis\" needs a [store.redis] section",
        "route[0].cache.methods[1]: expected \"GET\", \"HEAD\" or \"POST\"",
        "route[0].cache.statuses[1]: expected a final status",
        "route[0].cache.key_headers[0]: expected a header name",
        "compression.algorithms[1]: expected \"gzip\", \"br\" or \"zstd\", got \"lzma\"",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in\n{errors}"
        );
    }
    let unknown = config_problems(
        "[[upstream]]\nname = \"a\"\ntargets = [\"127.0.0.1:1\"]\n[[route]]\nname = \"r\"\nupstream = \"a\"\n[route.cache]\nttl = \"1m\"\nmax_age = 3\n",
    )
    .to_string();
    assert!(
        unknown.contains("route[0].cache.max_age") || unknown.contains("unknown field `max_age`"),
        "{unknown}"
    );
}

/// examples/cache.toml with `vars` as the environment.
async fn start_cache_example(vars: &[(&str, String)]) -> rampart::server::Running {
    let text = std::fs::read_to_string("examples/cache.toml").unwrap();
    let env: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let config = rampart::config::parse(
        &text,
        "cache.toml",
        std::path::Path::new("examples"),
        &|var| env.get(var).cloned(),
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    rampart::install_crypto_provider();
    rampart::server::start(config).await.unwrap()
}

#[tokio::test]
async fn the_cache_example_caches_and_compresses_the_demo_api() {
    let app = demo_app().await;
    let client = client();
    for redis in [None, Some(redis_url())] {
        let mut vars = vec![
            ("RAMPART_LISTEN", "127.0.0.1:0".to_owned()),
            ("RAMPART_ADMIN", "127.0.0.1:0".to_owned()),
            ("RAMPART_DEMO_UPSTREAM", app.to_string()),
            ("RAMPART_REDIS_PREFIX", unique_prefix()),
        ];
        if let Some(url) = &redis {
            vars.push(("REDIS_URL", url.clone()));
        }
        let running = start_cache_example(&vars).await;
        let state = get_json(&client, &admin_url(&running, "/cache")).await;
        assert_eq!(state["max_memory_bytes"], 50_000_000);
        assert_eq!(
            state["store"],
            if redis.is_some() { "redis" } else { "memory" }
        );
        let items = url(&running, "/api/items");
        let first = client
            .get(&items)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(first.headers()["x-cache"], "MISS");
        assert_eq!(first.headers()["content-encoding"], "gzip");
        let second = client.get(&items).send().await.unwrap();
        assert_eq!(second.headers()["x-cache"], "HIT");
        assert!(second.headers().get("content-encoding").is_none());
        let listed: Value = second.json().await.unwrap();
        // A write purges the list.
        let created = client
            .post(&items)
            .json(&serde_json::json!({"name": "cached?", "price": 1.0}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let third = client.get(&items).send().await.unwrap();
        assert_eq!(third.headers()["x-cache"], "MISS");
        let relisted: Value = third.json().await.unwrap();
        assert_eq!(
            relisted.as_array().unwrap().len(),
            listed.as_array().unwrap().len() + 1
        );
        // Other routes are not cached.
        let health = client.get(url(&running, "/health")).send().await.unwrap();
        assert!(health.headers().get("x-cache").is_none());
    }
}

#[tokio::test]
async fn a_stale_entry_answers_while_the_breaker_is_open() {
    let (addr, origin) = origin().await;
    let config = cached_config("keep_stale = \"1h\"")
        .replace("ttl = \"60s\"", "ttl = \"1s\"")
        .replace(
            "[route.cache]",
            "[route.circuit_breaker]\nwindow = \"10s\"\nmin_requests = 2\nerror_rate = 50\nopen_duration = \"60s\"\n[route.fallback_response]\nstatus = 503\njson = { fallback = true }\n[route.cache]",
        );
    let running = start(&config, addr).await;
    let client = client();
    let path = "/c/answer?fail=1";
    let first = get(&client, &url(&running, path), &[]).await;
    assert_eq!((first.status, first.n()), (200, 1));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Expired, no stale window: failures reach the client (the static fallback's 503 only
    // after the breaker opens; the upstream's own 503 before).
    origin.set_failing(true);
    for _ in 0..3 {
        let failed = get(&client, &url(&running, path), &[]).await;
        if failed.cache() == "STALE" {
            break;
        }
        assert_eq!(failed.status, 503);
    }
    // The breaker is open: the stored answer, however stale, beats an error or the static
    // fallback.
    let reply = get(&client, &url(&running, path), &[]).await;
    assert_eq!(
        (reply.status, reply.cache(), reply.n()),
        (200, "STALE", 1),
        "{}",
        reply.body
    );
    let metrics = metrics_text(&client, &running).await;
    assert!(
        metrics.contains(r#"rampart_fallbacks_total{route="c",fallback="stale_cache""#),
        "{metrics}"
    );
    let upstream_calls = origin.hits(path);
    get(&client, &url(&running, path), &[]).await;
    assert_eq!(
        origin.hits(path),
        upstream_calls,
        "the open breaker keeps the upstream out"
    );
}
