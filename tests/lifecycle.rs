//! Lifecycle end to end: reload under load with zero failed requests, SIGHUP and `--watch`
//! reloads, invalid reloads refused while the old config serves, graceful drain on SIGTERM with
//! zero dropped requests, readiness 503 while draining.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::*;

const TWO_ROUTES: &str = r#"
[[upstream]]
name = "app"
targets = ["{app}"]

[[route]]
name = "new"
path = "/new"
rewrite = "/api/items/3"
upstream = "app"

[[route]]
name = "all"
upstream = "app"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request() {
    let app = demo_app().await;
    let running = start(SIMPLE, app).await;
    let base = url(&running, "/api/items/1");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed, base) = (stop.clone(), ok.clone(), failed.clone(), base.clone());
        workers.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                let passed = match client.get(&base).send().await {
                    Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let counter = if passed { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let configs = [config(SIMPLE, app), config(TWO_ROUTES, app)];
    for round in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        running.reload(configs[round % 2].clone()).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request fails across 40 reloads"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "load ran: {}",
        ok.load(Ordering::Relaxed)
    );

    // The last reload (TWO_ROUTES) is what serves now.
    let response = client().get(url(&running, "/new")).send().await.unwrap();
    let item: serde_json::Value = response.json().await.unwrap();
    assert_eq!(item["id"], 3);
}

struct Process {
    child: std::process::Child,
    log: std::path::PathBuf,
    config: std::path::PathBuf,
    proxy: String,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Process {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn file_config(
    routes: &str,
    app: std::net::SocketAddr,
    proxy: u16,
    admin: u16,
    extra_server: &str,
) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:{proxy}\"]\n{extra_server}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
        routes.replace("{app}", &app.to_string())
    )
}

async fn spawn_rampart(
    routes: &str,
    app: std::net::SocketAddr,
    extra_server: &str,
    args: &[&str],
) -> Process {
    start_rampart(routes, app, extra_server, |config, log| {
        spawn_serve(config, log, args)
    })
    .await
}

/// Writes the config and starts rampart on it with `spawn(config, log)`.
async fn start_rampart(
    routes: &str,
    app: std::net::SocketAddr,
    extra_server: &str,
    spawn: impl FnOnce(&std::path::Path, &std::path::Path) -> std::process::Child,
) -> Process {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = (free_port(), free_port());
    let config = dir.path().join("rampart.toml");
    std::fs::write(
        &config,
        file_config(routes, app, proxy, admin, extra_server),
    )
    .unwrap();
    let log = dir.path().join("rampart.log");
    let child = spawn(&config, &log);
    let process = Process {
        child,
        log,
        config,
        proxy: format!("http://127.0.0.1:{proxy}"),
        admin: format!("http://127.0.0.1:{admin}"),
        _dir: dir,
    };
    wait_ready(
        &format!("{}/health/ready", process.admin),
        Duration::from_secs(15),
    )
    .await;
    process
}

async fn status(url: &str) -> u16 {
    status_of(client().get(url)).await
}

/// The status `request` is answered with; 0 when it fails.
async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_and_an_invalid_file_keeps_the_old_config() {
    let app = demo_app().await;
    let process = spawn_rampart(
        "[[upstream]]\nname = \"app\"\ntargets = [\"{app}\"]\n[[route]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\n",
        app,
        "",
        &[],
    )
    .await;
    assert_eq!(status(&format!("{}/new", process.proxy)).await, 404);

    let (proxy_port, admin_port) = (
        process.proxy.rsplit(':').next().unwrap().parse().unwrap(),
        process.admin.rsplit(':').next().unwrap().parse().unwrap(),
    );
    std::fs::write(
        &process.config,
        file_config(TWO_ROUTES, app, proxy_port, admin_port, ""),
    )
    .unwrap();
    send_signal(&process.child, "HUP");
    let new_url = format!("{}/new", process.proxy);
    eventually("the reloaded route answers", async || {
        status(&new_url).await == 200
    })
    .await;

    std::fs::write(&process.config, "[server]\nlisten = [\"nonsense\"]\n").unwrap();
    send_signal(&process.child, "HUP");
    eventually("the refusal is logged", async || {
        process.log_text().contains("config reload refused")
    })
    .await;
    assert_eq!(
        status(&new_url).await,
        200,
        "the previous config keeps serving"
    );
    let log = process.log_text();
    assert!(
        log.contains("server.listen[0]"),
        "the refusal names the key: {log}"
    );
}

/// Sends a request with the id `id` and returns its status.
async fn request_with_id(url: &str, id: &str) -> u16 {
    status_of(client().get(url).header("x-request-id", id)).await
}

#[tokio::test]
async fn a_reload_applies_its_log_level_to_the_access_line() {
    let app = demo_app().await;
    // The config's level, not `RAMPART_LOG`, decides.
    let process = start_rampart(SIMPLE, app, "", |config, log| {
        let mut command = serve_command(config, log, &[]);
        command.env_remove("RAMPART_LOG").spawn().unwrap()
    })
    .await;
    let (proxy_port, admin_port) = (
        process.proxy.rsplit(':').next().unwrap().parse().unwrap(),
        process.admin.rsplit(':').next().unwrap().parse().unwrap(),
    );
    let url = format!("{}/api/items", process.proxy);
    let new_url = format!("{}/new", process.proxy);
    assert_eq!(request_with_id(&url, "before-the-reload").await, 200);
    eventually("the access line at info", async || {
        process.log_text().contains("before-the-reload")
    })
    .await;

    // At warn (the reload adds a route, to tell when it is done), requests log no line.
    let reload = |routes: String| {
        std::fs::write(
            &process.config,
            file_config(&routes, app, proxy_port, admin_port, ""),
        )
        .unwrap();
        send_signal(&process.child, "HUP");
    };
    reload(format!("[log]\nlevel = \"warn\"\n{TWO_ROUTES}"));
    eventually("the reload at warn", async || status(&new_url).await == 200).await;
    // The level is set just after the new routes serve.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(request_with_id(&url, "at-warn").await, 200);

    // Back at info (the added route goes away): lines again.
    reload(SIMPLE.to_owned());
    eventually("the reload at info", async || status(&new_url).await == 404).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(request_with_id(&url, "at-info-again").await, 200);
    eventually("the access line at info again", async || {
        process.log_text().contains("at-info-again")
    })
    .await;
    let log = process.log_text();
    assert!(!log.contains("at-warn"), "no access line at warn: {log}");
}

#[tokio::test]
async fn watch_reloads_when_the_file_changes() {
    let app = demo_app().await;
    let process = spawn_rampart(SIMPLE, app, "", &["--watch"]).await;
    let new_url = format!("{}/new", process.proxy);
    let (proxy_port, admin_port) = (
        process.proxy.rsplit(':').next().unwrap().parse().unwrap(),
        process.admin.rsplit(':').next().unwrap().parse().unwrap(),
    );
    let item: serde_json::Value = client()
        .get(&new_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or_default();
    assert_ne!(item["id"], 3);
    std::fs::write(
        &process.config,
        file_config(TWO_ROUTES, app, proxy_port, admin_port, ""),
    )
    .unwrap();
    eventually("the watched file is reloaded", async || {
        let response = client().get(&new_url).send().await;
        match response {
            Ok(response) => response
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|v| v["id"] == 3),
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let app = demo_app().await;
    let mut process = spawn_rampart(SIMPLE, app, "drain_timeout = \"10s\"", &[]).await;
    let slow = format!("{}/slow?ms=1500", process.proxy);
    let in_flight: Vec<_> = (0..10)
        .map(|_| {
            let slow = slow.clone();
            tokio::spawn(async move {
                let response = client().get(&slow).send().await?;
                let status = response.status().as_u16();
                response.bytes().await?;
                Ok::<u16, reqwest::Error>(status)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let signalled = Instant::now();
    send_signal(&process.child, "TERM");

    // Readiness turns 503 while the drain runs, and new connections are refused.
    let ready_url = format!("{}/health/ready", process.admin);
    eventually("readiness reports draining", async || {
        status(&ready_url).await == 503
    })
    .await;
    let body: serde_json::Value = get_json(&client(), &ready_url).await;
    assert!(body["reasons"][0].as_str().unwrap().contains("draining"));
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert!(
        fresh
            .get(format!("{}/api/items", process.proxy))
            .send()
            .await
            .is_err(),
        "listener closed"
    );

    for request in in_flight {
        assert_eq!(
            request.await.unwrap().expect("in-flight request completes"),
            200
        );
    }
    let exit = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut process.child, Duration::from_secs(15));
        (status, process)
    })
    .await
    .unwrap();
    assert!(exit.0.success(), "exit 0, got {:?}", exit.0);
    assert!(signalled.elapsed() < Duration::from_secs(8));
    assert!(
        exit.1
            .log_text()
            .contains("every in-flight request finished")
    );
}

#[tokio::test]
async fn drain_timeout_bounds_the_wait() {
    let app = demo_app().await;
    let mut process = spawn_rampart(SIMPLE, app, "drain_timeout = \"500ms\"", &[]).await;
    let slow = format!("{}/slow?ms=20000", process.proxy);
    let request = tokio::spawn(async move { client().get(&slow).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    send_signal(&process.child, "TERM");
    let (exit, process) = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut process.child, Duration::from_secs(10));
        (status, process)
    })
    .await
    .unwrap();
    assert!(exit.success());
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(
        request.await.unwrap().is_err(),
        "the cut request fails rather than hangs"
    );
    assert!(process.log_text().contains("drain timeout reached"));
}
