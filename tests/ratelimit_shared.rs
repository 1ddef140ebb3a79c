//! Limits shared by several rampart processes through one Redis or one PostgreSQL: exact totals
//! under concurrent load, blocks that hold on every instance, and a Redis outage in the middle
//! of load (no 5xx, degraded state visible, shared limiting back when Redis is).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// A `rampart serve` process, killed when dropped.
struct Instance {
    child: Child,
    base: String,
    admin: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_instance(
    dir: &Path,
    index: usize,
    store_section: &str,
    app: std::net::SocketAddr,
) -> Instance {
    let (port, admin_port) = (free_port(), free_port());
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:{port}"]
workers = 1

[admin]
listen = "127.0.0.1:{admin_port}"

[log]
access_log = false

{store_section}

[[upstream]]
name = "app"
targets = ["{app}"]

[[route]]
name = "limited"
upstream = "app"
limits = ["shared"]
"#
    );
    let path = dir.join(format!("rampart-{index}.toml"));
    std::fs::write(&path, config).unwrap();
    let child = spawn_serve(&path, &dir.join(format!("rampart-{index}.log")), &[]);
    let instance = Instance {
        child,
        base: format!("http://127.0.0.1:{port}"),
        admin: format!("http://127.0.0.1:{admin_port}"),
    };
    wait_ready(
        &format!("{}/health/live", instance.admin),
        Duration::from_secs(20),
    )
    .await;
    instance
}

/// Sends `total` GETs spread over `instances` from `connections` concurrent workers; returns
/// (admitted, refused) and fails on anything else.
async fn hammer(instances: &[Instance], total: usize, connections: usize) -> (usize, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let bases: Arc<Vec<String>> = Arc::new(instances.iter().map(|i| i.base.clone()).collect());
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (next, admitted, refused, bases) = (
            next.clone(),
            admitted.clone(),
            refused.clone(),
            bases.clone(),
        );
        workers.push(tokio::spawn(async move {
            let client = client();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= total {
                    break;
                }
                let base = &bases[n % bases.len()];
                let status = client
                    .get(format!("{base}/echo"))
                    .send()
                    .await
                    .unwrap()
                    .status();
                match status.as_u16() {
                    200 => admitted.fetch_add(1, Ordering::SeqCst),
                    429 => refused.fetch_add(1, Ordering::SeqCst),
                    other => panic!("unexpected status {other}"),
                };
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    (
        admitted.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
    )
}

fn policy(store: &str, limit: u64, algorithm: &str) -> String {
    let burst = if algorithm == "token_bucket" {
        format!("burst = {limit}")
    } else {
        String::new()
    };
    format!(
        r#"
[rate_limit]
store = "{store}"
# Generous: this checks exact sharing, not the fallback (ratelimit_redis.rs does), and CI
# machines run other tests alongside.
timeout = "2s"

[[rate_limit.policy]]
name = "shared"
limit = {limit}
window = "1h"
algorithm = "{algorithm}"
{burst}
"#
    )
}

async fn three_instances_admit_exactly_the_limit(store_section: String) {
    let app = demo_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut instances = Vec::new();
    for i in 0..3 {
        instances.push(spawn_instance(dir.path(), i, &store_section, app).await);
    }
    let (admitted, refused) = hammer(&instances, 600, 48).await;
    if admitted != 150 {
        // Say why: a store that fell back to local limits shows in /health and in the logs.
        let mut report = String::new();
        for (i, instance) in instances.iter().enumerate() {
            let health = client()
                .get(format!("{}/health", instance.admin))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let log = std::fs::read_to_string(dir.path().join(format!("rampart-{i}.log")))
                .unwrap_or_default();
            report.push_str(&format!("instance {i}: /health {health}\nlog:\n{log}\n"));
        }
        panic!("three instances together admitted {admitted}, not the limit 150 once\n{report}");
    }
    assert_eq!(refused, 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_redis_sliding_window() {
    let section = format!(
        "[store.redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n{}",
        redis_url(),
        unique_prefix(),
        policy("redis", 150, "sliding_window")
    );
    three_instances_admit_exactly_the_limit(section).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_redis_token_bucket() {
    let section = format!(
        "[store.redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n{}",
        redis_url(),
        unique_prefix(),
        policy("redis", 150, "token_bucket")
    );
    three_instances_admit_exactly_the_limit(section).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_postgres() {
    let database = TestDatabase::create().await;
    let section = format!(
        "[store.postgres]\nurl = \"{}\"\n{}",
        database.url,
        policy("postgres", 150, "sliding_window")
    );
    three_instances_admit_exactly_the_limit(section).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_holds_on_every_instance() {
    let app = demo_app().await;
    let dir = tempfile::tempdir().unwrap();
    let section = format!(
        "[store.redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n{}\n[blocking]\nthreshold = 2\nwindow = \"1m\"\nduration = \"15m\"\n",
        redis_url(),
        unique_prefix(),
        policy("redis", 1, "sliding_window")
    );
    let a = spawn_instance(dir.path(), 0, &section, app).await;
    let b = spawn_instance(dir.path(), 1, &section, app).await;
    let client = client();
    let status = |base: &str| {
        let request = client.get(format!("{base}/echo"));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&a.base).await, 200);
    assert_eq!(status(&b.base).await, 429, "the limit is shared");
    assert_eq!(status(&a.base).await, 429);
    // Two refusals: blocked, on the instance that saw them at once…
    assert_eq!(status(&a.base).await, 403);
    // …and on the other within its sync interval.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let code = status(&b.base).await;
        if code == 403 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance b never saw the block ({code})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let blocks = get_json(&client, &format!("{}/security/blocks", b.admin)).await;
    assert_eq!(blocks["blocks"][0]["ip"], "127.0.0.1", "{blocks}");
    // Lifting it on one instance lifts it everywhere.
    let lifted = client
        .delete(format!("{}/security/blocks/127.0.0.1", b.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&a.base).await == 403 {
        assert!(Instant::now() < deadline, "instance a kept the block");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `redis-server` of the test's own, killed when dropped.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, port }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn store_state(client: &reqwest::Client, running: &rampart::server::Running) -> (u16, Value) {
    let response = client
        .get(admin_url(running, "/health"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let store = body["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "redis")
        .cloned()
        .unwrap_or_else(|| panic!("{body}"));
    (status, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_under_load_never_turns_traffic_into_5xx() {
    let port = free_port();
    let mut redis = OwnRedis::start(port).await;
    let app = demo_app().await;
    let running = start(
        &format!(
            r#"
[store.redis]
url = "redis://127.0.0.1:{port}"
connect_timeout = "200ms"

[rate_limit]
store = "redis"
timeout = "50ms"
probe_interval = "200ms"

[[rate_limit.policy]]
name = "p"
limit = 100000
window = "1h"

[[upstream]]
name = "app"
targets = ["{{app}}"]

[[route]]
name = "limited"
upstream = "app"
limits = ["p"]
"#
        ),
        app,
    )
    .await;
    let client = client();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (stop, served, url) = (stop.clone(), served.clone(), url(&running, "/echo"));
        load.push(tokio::spawn(async move {
            let client = support::client();
            while !stop.load(Ordering::SeqCst) {
                let status = client.get(&url).send().await.unwrap().status();
                assert_eq!(status, 200, "allowed traffic stays allowed");
                served.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, store) = store_state(&client, &running).await;
    assert_eq!(
        (status, &store["status"]),
        (200, &Value::from("healthy")),
        "{store}"
    );

    // Redis goes away in the middle of the load.
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = served.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        served.load(Ordering::SeqCst) > before,
        "requests keep flowing"
    );
    let (status, store) = store_state(&client, &running).await;
    assert_eq!(status, 503);
    assert_eq!(store["fallback_active"], true, "{store}");
    let metrics = metrics_text(&client, &running).await;
    assert!(metrics.contains(r#"rampart_ratelimit_store_degraded{store="redis"} 1"#));

    // Back again: the probe notices, and counting goes to Redis again.
    redis = OwnRedis::start(redis.port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, store) = store_state(&client, &running).await;
        if status == 200 && store["fallback_active"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {store}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    let metrics = metrics_text(&client, &running).await;
    assert!(metrics.contains(r#"rampart_ratelimit_store_degraded{store="redis"} 0"#));
    // Counting is in Redis again: reset the key there, and it holds exactly what follows.
    let reset = client
        .delete(admin_url(&running, "/ratelimit/p?ip=127.0.0.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        reset.status(),
        204,
        "the load since recovery was counted in Redis"
    );
    for _ in 0..5 {
        assert_eq!(
            client
                .get(url(&running, "/echo"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let state = get_json(&client, &admin_url(&running, "/ratelimit/p?ip=127.0.0.1")).await;
    assert_eq!(state["remaining"], 100_000 - 5, "{state}");
    assert_eq!(state["store"], "redis");
    drop(redis);
    running.shutdown().await;
}
