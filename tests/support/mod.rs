//! Test support: start the demo app and rampart on port 0 over real sockets, build clients, and
//! run the `rampart` binary for tests that need signals or its output.
#![allow(dead_code)]

pub mod origin;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart::config::{self, Config};
use rampart::server::{self, Running};

/// The demo app on a free port.
pub async fn demo_app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(rampart::demo::serve(listener));
    addr
}

/// A port with nothing listening on it.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Parses config text; `{app}` is replaced by `upstream`. Listeners default to port 0.
pub fn config(text: &str, upstream: SocketAddr) -> Config {
    let text = text.replace("{app}", &upstream.to_string());
    let text = if text.contains("[server]") {
        text
    } else {
        format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{text}")
    };
    let text = if text.contains("[admin]") {
        text
    } else {
        format!("[admin]\nlisten = \"127.0.0.1:0\"\n{text}")
    };
    config::parse(&text, "test.toml", Path::new("."), &|var| {
        std::env::var(var).ok()
    })
    .unwrap_or_else(|errors| panic!("test config invalid:\n{errors}\n---\n{text}"))
}

pub async fn start(text: &str, upstream: SocketAddr) -> Running {
    rampart::install_crypto_provider();
    server::start(config(text, upstream))
        .await
        .expect("rampart starts")
}

pub fn url(running: &Running, path: &str) -> String {
    format!("http://{}{}", running.http_addrs[0], path)
}

pub fn admin_url(running: &Running, path: &str) -> String {
    format!("http://{}{}", running.admin_addr, path)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// GETs `url` and parses its JSON body (any status).
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"))
        .json()
        .await
        .unwrap_or_else(|error| panic!("GET {url}: not JSON: {error}"))
}

/// Sends `request` and reads its whole body (any status).
pub async fn body_of(request: reqwest::RequestBuilder) -> bytes::Bytes {
    request.send().await.unwrap().bytes().await.unwrap()
}

/// The admin listener's `/metrics` text.
pub async fn metrics_text(client: &reqwest::Client, running: &Running) -> String {
    client
        .get(admin_url(running, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The problems `config::parse` reports for `text` (named `test.toml`, paths from the
/// repository root, no environment); panics if the text is valid.
pub fn config_problems(text: &str) -> config::ConfigErrors {
    config::parse(text, "test.toml", Path::new("."), &|_| None)
        .err()
        .unwrap_or_else(|| panic!("expected config problems in:\n{text}"))
}

/// A config routing everything to `{app}`.
pub const SIMPLE: &str = r#"
[[upstream]]
name = "app"
targets = ["{app}"]

[[route]]
name = "all"
upstream = "app"
"#;

/// The `rampart` binary built for this test run.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_rampart")
}

/// Runs `rampart serve --config path` with its stdout captured to `log`.
pub fn spawn_serve(config_path: &Path, log: &Path, extra: &[&str]) -> Child {
    serve_command(config_path, log, extra)
        .spawn()
        .expect("rampart binary runs")
}

/// The command [`spawn_serve`] runs: `RAMPART_LOG=info` pins the level (remove it to let the
/// config's `[log] level` apply).
pub fn serve_command(config_path: &Path, log: &Path, extra: &[&str]) -> Command {
    let stdout = std::fs::File::create(log).unwrap();
    let mut command = Command::new(binary());
    command
        .arg("serve")
        .arg("--config")
        .arg(config_path)
        .args(extra)
        .env("RAMPART_LOG", "info")
        .stdout(stdout)
        .stderr(Stdio::inherit());
    command
}

/// A free port number (bound then released).
pub fn free_port() -> u16 {
    closed_port().port()
}

/// Waits until `url` answers 200, or panics after `within`.
pub async fn wait_ready(url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let client = client();
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the child to exit, up to `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rampart did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Redis tests use (`REDIS_URL`, or the local default).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("rampart-test:{}:", uuid::Uuid::new_v4().simple())
}

/// A fresh PostgreSQL database (dropped when the guard goes) and its URL.
pub struct TestDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        use sqlx::Connection;
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("rampart_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        Self {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Dropped from async tests too: do it on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}
