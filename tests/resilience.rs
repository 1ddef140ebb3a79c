//! Resilience end to end: targets killed under load, breakers opening and closing, deadlines,
//! retry budgets under a total outage, client disconnects, overload, and the fallback chain.
//! Upstreams are demo-app processes the test kills, or small in-process servers that count
//! what reaches them.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A demo-app process (`rampart demo --app-only`), killed when dropped.
struct AppProcess {
    child: Child,
    addr: SocketAddr,
}

impl AppProcess {
    async fn start(addr: SocketAddr) -> Self {
        let child = Command::new(binary())
            .args(["demo", "--app-only", "--listen", &addr.to_string()])
            .env("RAMPART_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_ready(&format!("http://{addr}/health"), Duration::from_secs(20)).await;
        Self { child, addr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An in-process upstream that counts requests: `/status/{code}` answers that status,
/// `/health` answers `health`.
#[derive(Default)]
struct Counter {
    requests: AtomicUsize,
    health: AtomicU16,
}

async fn counting_upstream() -> (SocketAddr, Arc<Counter>) {
    let counter = Arc::new(Counter {
        requests: AtomicUsize::new(0),
        health: AtomicU16::new(200),
    });
    let app = axum::Router::new()
        .route(
            "/status/{code}",
            get(
                |State(c): State<Arc<Counter>>, Path(code): Path<u16>| async move {
                    c.requests.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::from_u16(code).unwrap(), "counted")
                },
            ),
        )
        .route(
            "/health",
            get(|State(c): State<Arc<Counter>>| async move {
                StatusCode::from_u16(c.health.load(Ordering::SeqCst)).unwrap()
            }),
        )
        .with_state(counter.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, counter)
}

/// An upstream that accepts connections, reads the request and never answers; sends on
/// `closed` when rampart closes a connection.
async fn hanging_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Instant>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                loop {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => {
                            let _ = closed.send(Instant::now());
                            return;
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (addr, receiver)
}

fn status_of(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_killed_under_load_loses_no_idempotent_request() {
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(AppProcess::start(closed_port()).await);
    }
    let targets: Vec<String> = apps.iter().map(|a| format!("\"{}\"", a.addr)).collect();
    let config = format!(
        r#"
[[upstream]]
name = "app"
targets = [{}]
balance = "least_requests"
connect_timeout = "200ms"
[upstream.passive_health]
consecutive_failures = 2
base_ejection = "2500ms"

[[route]]
name = "api"
upstream = "app"
timeout = "2s"
[route.retry]
attempts = 3
backoff_base = "5ms"
backoff_max = "20ms"
budget_min_retries = 100
"#,
        targets.join(", ")
    );
    let running = start(&config, apps[0].addr).await;
    let started = Instant::now();
    let url = url(&running, "/api/items");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::SeqCst) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    apps[1].kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(ok.load(Ordering::SeqCst) > 100, "load ran");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no request failed");
    let health = get_json(&client(), &admin_url(&running, "/health")).await;
    let app = &health["dependencies"][0];
    assert_eq!(app["status"], "degraded", "{health}");
    let dead = app["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == apps[1].addr.to_string())
        .unwrap();
    assert_eq!(dead["routable"], false, "{health}");
    assert!(dead["ejected_ms"].as_u64().unwrap() > 0);
    let metrics = metrics_text(&client(), &running).await;
    assert!(
        metrics.contains("rampart_upstream_ejections_total{"),
        "{metrics}"
    );
    // Requests on pooled connections of the killed target fail mid-exchange (kind protocol),
    // new ones cannot connect (kind connect): both are retried on the other targets.
    assert!(
        metrics.contains("rampart_upstream_retries_total{route=\"api\""),
        "{metrics}"
    );

    // Restarted on its address, the target gets traffic again once its ejection ends.
    let addr = apps[1].addr;
    apps[1] = AppProcess::start(addr).await;
    // Ejected at about 0.5 s for 2.5 s.
    let ejection_over = started + Duration::from_millis(3200);
    tokio::time::sleep_until(ejection_over.into()).await;
    let client = client();
    for _ in 0..30 {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let stats = get_json(&client, &format!("http://{addr}/stats")).await;
    assert!(
        stats["total"].as_u64().unwrap() > 1,
        "back in rotation: {stats}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opens_at_half_failures_and_half_open_probes_close_it() {
    let app = demo_app().await;
    let running = start(
        r#"
[[upstream]]
name = "ai"
targets = ["{app}"]
[upstream.circuit_breaker]
window = "10s"
min_requests = 10
error_rate = 50
open_duration = "400ms"
half_open_probes = 2

[[route]]
name = "ai"
upstream = "ai"
"#,
        app,
    )
    .await;
    let client = client();
    // Exactly every second request fails.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = client
            .get(url(&running, "/fail?status=500&rate=0.5"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    let open_at = statuses
        .iter()
        .position(|&s| s == 503)
        .expect("breaker opened");
    assert!(open_at >= 10, "not before the minimum volume: {statuses:?}");
    let refused = client
        .get(url(&running, "/api/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "circuit_open");
    let health = get_json(&client, &admin_url(&running, "/health")).await;
    assert_eq!(health["dependencies"][0]["circuit"], "open", "{health}");
    let metrics = metrics_text(&client, &running).await;
    assert_eq!(
        status_of(
            &metrics,
            "rampart_circuit_state{upstream=\"ai\",route=\"\"}"
        ),
        1.0
    );

    // After the open duration, two good probes close it.
    tokio::time::sleep(Duration::from_millis(450)).await;
    for _ in 0..2 {
        let r = client
            .get(url(&running, "/api/items"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let metrics = metrics_text(&client, &running).await;
    assert_eq!(
        status_of(
            &metrics,
            "rampart_circuit_state{upstream=\"ai\",route=\"\"}"
        ),
        0.0
    );
    for to in ["open", "half_open", "closed"] {
        let line = format!(
            "rampart_circuit_transitions_total{{upstream=\"ai\",route=\"\",to=\"{to}\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_upstream_gets_504_at_the_deadline_not_later() {
    let (hung, _closed) = hanging_upstream().await;
    let running = start(
        r#"
[[upstream]]
name = "hung"
targets = ["{app}"]

[[route]]
name = "hung"
upstream = "hung"
timeout = "300ms"
deadline = "700ms"
[route.retry]
attempts = 5
backoff_base = "1ms"
backoff_max = "1ms"
"#,
        hung,
    )
    .await;
    let started = Instant::now();
    let response = client().get(url(&running, "/x")).send().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 504);
    assert!(
        elapsed >= Duration::from_millis(680) && elapsed < Duration::from_millis(1000),
        "{elapsed:?}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_the_budget_in_a_total_outage() {
    let (upstream, counter) = counting_upstream().await;
    let running = start(
        r#"
[[upstream]]
name = "down"
targets = ["{app}"]

[[route]]
name = "down"
upstream = "down"
[route.retry]
attempts = 3
backoff_base = "1ms"
backoff_max = "1ms"
budget_percent = 20
budget_window = "10s"
budget_min_retries = 5
"#,
        upstream,
    )
    .await;
    let client = client();
    let requests = 200;
    for _ in 0..requests {
        let r = client
            .get(url(&running, "/status/503"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
    }
    let reached = counter.requests.load(Ordering::SeqCst);
    let amplification = reached as f64 / requests as f64;
    // Without a budget, 3 attempts each would make it 3.0.
    assert!(
        amplification <= 1.2 + 5.0 / requests as f64 + 0.01,
        "amplification {amplification}"
    );
    assert!(reached > requests, "some retries were made");
    let metrics = metrics_text(&client, &running).await;
    assert!(metrics.contains("rampart_retry_budget_exhausted_total{route=\"down\"}"));
    println!(
        "total outage: {requests} requests → {reached} upstream attempts (×{amplification:.2})"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_disconnect_cancels_the_upstream_request() {
    let (hung, mut closed) = hanging_upstream().await;
    let running = start(
        r#"
[[upstream]]
name = "hung"
targets = ["{app}"]

[[route]]
name = "hung"
upstream = "hung"
timeout = "30s"
"#,
        hung,
    )
    .await;
    let mut client = tokio::net::TcpStream::connect(running.http_addrs[0])
        .await
        .unwrap();
    client
        .write_all(b"GET /long HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gone = Instant::now();
    drop(client);
    let seen = tokio::time::timeout(Duration::from_secs(5), closed.recv())
        .await
        .expect("the upstream saw its request cancelled")
        .unwrap();
    assert!(seen.duration_since(gone) < Duration::from_secs(2));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_at_once_and_admitted_requests_stay_fast() {
    let app = demo_app().await;
    let running = start(
        r#"
[[upstream]]
name = "app"
targets = ["{app}"]

[[route]]
name = "slow"
upstream = "app"
[route.concurrency]
max_concurrent = 4
queue = 4
queue_timeout = "2s"
"#,
        app,
    )
    .await;
    // Five times what the route takes (4 running + 4 queued).
    let mut calls = Vec::new();
    let shared_client = client();
    for _ in 0..40 {
        let url = url(&running, "/slow?ms=200");
        let client = shared_client.clone();
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = client.get(&url).send().await.unwrap();
            let status = r.status().as_u16();
            let retry_after = r.headers().contains_key("retry-after");
            (status, retry_after, started.elapsed())
        }));
    }
    let mut admitted = Vec::new();
    let mut shed = Vec::new();
    for call in calls {
        let (status, retry_after, elapsed) = call.await.unwrap();
        match status {
            200 => admitted.push(elapsed),
            503 => {
                assert!(retry_after);
                shed.push(elapsed);
            }
            other => panic!("status {other}"),
        }
    }
    assert!(admitted.len() >= 8, "{} admitted", admitted.len());
    assert!(shed.len() >= 24, "{} shed", shed.len());
    // Admitted: at most one wait for a place, then the work (200 ms each).
    let slowest = admitted.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_millis(1500),
        "slowest admitted {slowest:?}"
    );
    // Refusals do not wait for the work: most come back well before the first admitted
    // request could have finished (connection setup on a busy machine aside).
    shed.sort();
    let median_refusal = shed[shed.len() / 2];
    assert!(
        median_refusal < Duration::from_millis(150),
        "refusals wait {shed:?}"
    );
    let metrics = metrics_text(&client(), &running).await;
    assert!(metrics.contains("rampart_load_shed_total{route=\"slow\",reason=\"queue_full\"}"));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_then_secondary_then_static_fallback() {
    let app = demo_app().await;
    let dead_primary = closed_port();
    let dead_secondary = closed_port();
    let running = start(
        &format!(
            r#"
[[upstream]]
name = "primary"
targets = ["{dead_primary}"]
connect_timeout = "200ms"

[[upstream]]
name = "secondary"
targets = ["{{app}}"]

[[upstream]]
name = "backup"
targets = ["{dead_secondary}"]

[[route]]
name = "served-by-secondary"
path_prefix = "/api"
upstream = "primary"
fallback = ["secondary"]

[[route]]
name = "static"
path_prefix = "/chat"
upstream = "primary"
fallback = ["backup"]
[route.fallback_response]
status = 503
json = {{ fallback = true, message = "AI service temporarily unavailable" }}
"#
        ),
        app,
    )
    .await;
    let client = client();
    let r = client
        .get(url(&running, "/api/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(url(&running, "/chat")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers().contains_key("x-request-id"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"fallback": true, "message": "AI service temporarily unavailable"})
    );
    let metrics = metrics_text(&client, &running).await;
    for line in [
        "rampart_fallbacks_total{route=\"served-by-secondary\",fallback=\"secondary\",trigger=\"attempts_exhausted\"} 1",
        "rampart_fallbacks_total{route=\"static\",fallback=\"backup\",trigger=\"attempts_exhausted\"} 1",
        "rampart_fallbacks_total{route=\"static\",fallback=\"static\",trigger=\"attempts_exhausted\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_take_a_target_out_and_bring_it_back() {
    let (a, counter_a) = counting_upstream().await;
    let (b, counter_b) = counting_upstream().await;
    let running = start(
        &format!(
            r#"
[[upstream]]
name = "app"
targets = ["{a}", "{b}"]
[upstream.health_check]
path = "/health"
interval = "100ms"
timeout = "100ms"
healthy_threshold = 1
unhealthy_threshold = 2

[[route]]
name = "all"
upstream = "app"
"#
        ),
        a,
    )
    .await;
    let client = client();
    counter_b.health.store(503, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..20 {
        assert_eq!(
            client
                .get(url(&running, "/status/200"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        counter_b.requests.load(Ordering::SeqCst),
        0,
        "unhealthy target got traffic"
    );
    assert_eq!(counter_a.requests.load(Ordering::SeqCst), 20);
    let metrics = metrics_text(&client, &running).await;
    assert_eq!(
        status_of(
            &metrics,
            &format!("rampart_upstream_target_healthy{{upstream=\"app\",target=\"{b}\"}}")
        ),
        0.0
    );

    counter_b.health.store(200, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..20 {
        client
            .get(url(&running, "/status/200"))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        counter_b.requests.load(Ordering::SeqCst),
        10,
        "back in rotation"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_start_new_targets_after_a_passing_check_and_drain_removed_ones() {
    let app = demo_app().await;
    let (new_target, new_counter) = counting_upstream().await;
    // The new target fails its checks: it must never get traffic.
    new_counter.health.store(500, Ordering::SeqCst);
    let base = |targets: &str| {
        format!(
            r#"
[[upstream]]
name = "app"
targets = [{targets}]
[upstream.health_check]
path = "/health"
interval = "5s"

[[route]]
name = "all"
upstream = "app"
"#
        )
    };
    let running = start(&base("\"{app}\""), app).await;
    let client = client();
    // A slow request in flight on the old target while it is removed.
    let slow = tokio::spawn({
        let url = url(&running, "/slow?ms=600");
        async move { client_get_status(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    running
        .reload(config(&base(&format!("\"{new_target}\"")), app))
        .await
        .unwrap();
    assert_eq!(
        slow.await.unwrap(),
        200,
        "the removed target's request finished"
    );
    for _ in 0..10 {
        let r = client
            .get(url(&running, "/status/200"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
    }
    assert_eq!(new_counter.requests.load(Ordering::SeqCst), 0);
    running.shutdown().await;
}

async fn client_get_status(url: &str) -> u16 {
    client().get(url).send().await.unwrap().status().as_u16()
}

#[test]
fn resilience_settings_are_validated_with_their_key() {
    let problems = config_problems(
        r#"
[[upstream]]
name = "app"
targets = ["127.0.0.1:1", { address = "app.internal:80", weight = 0 }]
balance = "random"
"#,
    );
    let text = problems.to_string();
    assert!(text.contains("balance"), "{text}");
    let problems = config_problems(
        r#"
[[upstream]]
name = "app"
targets = ["127.0.0.1:1", { address = "app.internal:80", weight = 0 }]
[upstream.circuit_breaker]
error_rate = 150
half_open_probes = 0

[[route]]
name = "r"
upstream = "app"
fallback = ["nope", "app"]
[route.retry]
attempts = 0
statuses = [404]
[route.concurrency]
max_concurrent = 0
"#,
    );
    let text = problems.to_string();
    for expected in [
        "upstream[0].targets[1].weight",
        "upstream[0].circuit_breaker.error_rate",
        "upstream[0].circuit_breaker.half_open_probes",
        "route[0].fallback[0]: unknown upstream `nope`",
        "route[0].fallback[1]: `app` is the route's own upstream",
        "route[0].retry.attempts",
        "route[0].retry.statuses[0]",
        "route[0].concurrency.max_concurrent",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
}

/// `examples/resilience.toml` as shipped, with its three targets moved to free ports: the seeds'
/// breaker (50% over 10 s, open 60 s) opens on a failing upstream and the seeds' fallback
/// message answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resilience_example_applies_the_seeds_breaker_and_fallback() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/resilience.toml"
    ))
    .unwrap();
    let mut apps = Vec::new();
    let mut text = text
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        // Seconds-long backoffs would make this test slow; the breaker is what it checks.
        .replace("backoff_base = \"1s\"", "backoff_base = \"1ms\"")
        .replace("backoff_max = \"4s\"", "backoff_max = \"1ms\"");
    for port in ["3001", "3002", "3003"] {
        let app = demo_app().await;
        text = text.replace(&format!("127.0.0.1:{port}"), &app.to_string());
        apps.push(app);
    }
    let config =
        rampart::config::parse(&text, "resilience.toml", std::path::Path::new("."), &|_| {
            None
        })
        .unwrap();
    let breaker = config.upstreams[0].circuit_breaker.clone().unwrap();
    assert_eq!(breaker.window, Duration::from_secs(10));
    assert_eq!(breaker.error_rate, 50.0);
    assert_eq!(breaker.open_duration, Duration::from_secs(60));
    rampart::install_crypto_provider();
    let running = rampart::server::start(config).await.unwrap();
    let client = client();
    assert_eq!(
        client
            .get(url(&running, "/api/items"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut last = None;
    for _ in 0..15 {
        let r = client
            .get(url(&running, "/fail?status=500&rate=1"))
            .send()
            .await
            .unwrap();
        last = Some((r.status(), r.text().await.unwrap()));
    }
    let (status, body) = last.unwrap();
    assert_eq!(status, 503);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["message"], "AI service temporarily unavailable");
    assert_eq!(body["fallback"], true);
    running.shutdown().await;
}

/// A target named by DNS becomes one target per address, keeps its name as `Host`, and a name
/// that does not resolve gets no traffic (503 `no_healthy_upstream`, not a hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_named_targets_resolve_to_their_addresses() {
    let app = demo_app().await;
    let port = app.port();
    let running = start(
        &format!(
            r#"
[[upstream]]
name = "named"
targets = ["localhost:{port}"]
resolve_interval = "200ms"

[[upstream]]
name = "unresolvable"
targets = ["no-such-host.invalid:80"]

[[route]]
name = "named"
path_prefix = "/echo"
upstream = "named"

[[route]]
name = "unresolvable"
upstream = "unresolvable"
"#
        ),
        app,
    )
    .await;
    let client = client();
    let echoed = get_json(&client, &url(&running, "/echo")).await;
    assert_eq!(
        echoed["headers"]["host"],
        format!("localhost:{port}"),
        "{echoed}"
    );
    let health = get_json(&client, &admin_url(&running, "/health")).await;
    let named = &health["dependencies"][0];
    assert_eq!(
        named["targets"][0]["target"],
        format!("localhost:{port} (127.0.0.1:{port})"),
        "{health}"
    );
    // Re-resolution keeps the same endpoint (and its pooled connections).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        client
            .get(url(&running, "/echo"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = client.get(url(&running, "/other")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "no_healthy_upstream");
    running.shutdown().await;
}
