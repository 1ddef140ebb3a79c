//! `/health/{name}` and `/health/metrics` end to end: every dependency up, then Redis stopped (a
//! redis-server of the test's own, killed), PostgreSQL stopped (the test's forwarder in front of
//! the real server, shut), and an upstream killed; and the rolling request figures after traffic.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tokio::task::JoinHandle;

/// GET on the admin listener: (status, JSON body).
async fn admin_get(running: &rampart::server::Running, path: &str) -> (u16, Value) {
    let response = client().get(admin_url(running, path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls `path` until its status is `want` (the health report is cached for a second).
async fn wait_status(running: &rampart::server::Running, path: &str, want: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = admin_get(running, path).await;
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} stayed {status}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The demo app, killable: aborting the task closes its listener.
async fn killable_app() -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = rampart::demo::serve(listener).await;
    });
    (addr, task)
}

struct OwnRedis(Child);

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
            ])
            .args(["--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self(child)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dependency<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_dependency_has_its_endpoint_up_and_down() {
    let redis_port = free_port();
    let redis = OwnRedis::start(redis_port).await;
    let (app, app_task) = killable_app().await;
    let (other, _other_task) = killable_app().await;
    let running = start(
        &format!(
            r#"
[store.redis]
url = "redis://127.0.0.1:{redis_port}"
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
targets = ["{app}"]

[[upstream]]
name = "stripe"
targets = ["{other}"]

[[route]]
name = "all"
upstream = "app"
limits = ["p"]
"#
        ),
        app,
    )
    .await;

    // Everything up: 200 everywhere, each body the dependency's own entry.
    let (status, report) = admin_get(&running, "/health").await;
    assert_eq!(status, 200, "{report}");
    for name in ["app", "stripe", "redis"] {
        let (status, body) = admin_get(&running, &format!("/health/{name}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["name"], name);
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["targets"][0]["status"], "up");
        assert!(body["targets"][0]["latency_ms"].is_f64(), "{body}");
        assert_eq!(body["kind"], dependency(&report, name)["kind"]);
    }
    let (status, body) = admin_get(&running, "/health/nothing").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found");

    // Redis stopped: its endpoint and the whole report say so; the upstreams are still fine.
    drop(redis);
    let body = wait_status(&running, "/health/redis", 503).await;
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(body["targets"][0]["status"], "down");
    let (status, report) = admin_get(&running, "/health").await;
    assert_eq!(status, 503);
    assert_eq!(report["status"], "degraded");
    assert_eq!(admin_get(&running, "/health/app").await.0, 200);

    // An upstream killed: its endpoint turns 503, the other stays 200.
    app_task.abort();
    let body = wait_status(&running, "/health/app", 503).await;
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(body["targets"][0]["status"], "down");
    assert!(body["targets"][0]["error"].is_string(), "{body}");
    assert_eq!(admin_get(&running, "/health/stripe").await.0, 200);
}

/// A TCP forwarder to `to` that the test can shut: after `stop`, connections are refused and the
/// open ones are cut, as when the server behind it stops.
struct Forwarder {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Forwarder {
    async fn start(to: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, task }
    }

    fn stop(&self) {
        // Dropping the task drops the listener and the JoinSet, which aborts every connection.
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_turns_its_endpoint_503() {
    let database = TestDatabase::create().await;
    let url: url_parts::Url = url_parts::parse(&database.url);
    let forwarder = Forwarder::start(url.addr).await;
    let app = demo_app().await;
    let running = start(
        &format!(
            r#"
[store.postgres]
url = "{}"
connect_timeout = "300ms"

[rate_limit]
store = "postgres"
timeout = "100ms"
probe_interval = "200ms"

[[rate_limit.policy]]
name = "p"
limit = 100000
window = "1h"

[[upstream]]
name = "app"
targets = ["{{app}}"]

[[route]]
name = "all"
upstream = "app"
limits = ["p"]
"#,
            url.with_addr(forwarder.addr)
        ),
        app,
    )
    .await;
    let body = wait_status(&running, "/health/postgres", 200).await;
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["kind"], "store");
    assert_eq!(
        wait_status(&running, "/health", 200).await["status"],
        "healthy"
    );

    forwarder.stop();
    let body = wait_status(&running, "/health/postgres", 503).await;
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(body["targets"][0]["status"], "down");
    let (status, report) = admin_get(&running, "/health").await;
    assert_eq!(status, 503);
    assert_eq!(dependency(&report, "postgres")["status"], "unhealthy");
    assert_eq!(dependency(&report, "app")["status"], "healthy");
    assert_eq!(admin_get(&running, "/health/app").await.0, 200);
}

/// Just enough URL handling to point a PostgreSQL URL at another address.
mod url_parts {
    use std::net::SocketAddr;

    pub struct Url {
        pub addr: SocketAddr,
        before: String,
        after: String,
    }

    pub fn parse(url: &str) -> Url {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (format!("{userinfo}@"), rest),
            None => (String::new(), rest),
        };
        let (host, path) = rest.split_once('/').unwrap();
        let host = host.replace("localhost", "127.0.0.1");
        let addr = if host.contains(':') {
            host.parse().unwrap()
        } else {
            format!("{host}:5432").parse().unwrap()
        };
        Url {
            addr,
            before: format!("{scheme}://{userinfo}"),
            after: format!("/{path}"),
        }
    }

    impl Url {
        pub fn with_addr(&self, addr: SocketAddr) -> String {
            format!("{}{addr}{}", self.before, self.after)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_summarises_the_last_minutes() {
    let app = demo_app().await;
    let dead = closed_port();
    let running = start(
        &format!(
            "[[upstream]]\nname = \"app\"\ntargets = [\"{{app}}\"]\n[[upstream]]\nname = \"dead\"\ntargets = [\"{dead}\"]\n[[route]]\nname = \"broken\"\npath_prefix = \"/broken\"\nupstream = \"dead\"\n[[route]]\nname = \"all\"\nupstream = \"app\"\n"
        ),
        app,
    )
    .await;
    let client = client();
    let (status, before) = admin_get(&running, "/health/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(before["requests"]["1m"]["requests"], 0, "{before}");
    assert_eq!(before["requests"]["1m"]["p95_ms"], Value::Null);
    for _ in 0..30 {
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
    for _ in 0..10 {
        let status = client
            .get(url(&running, "/broken"))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_server_error(), "{status}");
    }
    let (status, body) = admin_get(&running, "/health/metrics").await;
    assert_eq!(status, 200);
    assert!(body["uptime_seconds"].is_u64());
    assert!(
        body["process"]["resident_memory_bytes"].as_u64().unwrap() > 1 << 20,
        "{body}"
    );
    assert!(body["process"]["open_fds"].as_u64().unwrap() > 3);
    assert!(body["process"]["cpu_seconds"].as_f64().unwrap() > 0.0);
    for span in ["1m", "5m", "15m"] {
        let figures = &body["requests"][span];
        assert_eq!(figures["requests"], 40, "{span}: {body}");
        assert_eq!(figures["errors"], 10, "{span}");
        assert!((figures["error_rate"].as_f64().unwrap() - 0.25).abs() < 1e-9);
        let p95 = figures["p95_ms"].as_f64().unwrap();
        let p99 = figures["p99_ms"].as_f64().unwrap();
        assert!(p95 > 0.0 && p95 <= p99 && p99 < 20_000.0, "{figures}");
        let rps = figures["requests_per_second"].as_f64().unwrap();
        let seconds = figures["span_seconds"].as_f64().unwrap();
        assert!((rps * seconds - 40.0).abs() < 1e-6);
    }
    assert_eq!(body["requests"]["1m"]["span_seconds"], 60);
    assert_eq!(body["requests"]["15m"]["span_seconds"], 900);
}
