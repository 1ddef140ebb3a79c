//! README's run command: `rampart demo` starts the demo app and rampart in front of it with the
//! built-in examples/demo.toml, and `--app-only` runs the app alone.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

#[tokio::test]
async fn demo_serves_the_app_through_rampart() {
    let (proxy, admin, app) = (free_port(), free_port(), free_port());
    let mut child = Command::new(binary())
        .args(["demo", "--listen", &format!("127.0.0.1:{app}")])
        .env("RAMPART_LISTEN", format!("127.0.0.1:{proxy}"))
        .env("RAMPART_ADMIN", format!("127.0.0.1:{admin}"))
        .env("RAMPART_DEMO_UPSTREAM", format!("127.0.0.1:{app}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(
        &format!("http://127.0.0.1:{admin}/health/ready"),
        Duration::from_secs(15),
    )
    .await;
    let client = client();
    let base = format!("http://127.0.0.1:{proxy}");

    let items = client
        .get(format!("{base}/api/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(items.status(), 200);
    assert!(items.headers().contains_key("x-request-id"));
    assert!(items.bytes().await.unwrap().len() > 1024);

    // `/app/...` is routed with its prefix stripped: the app sees `/stats`.
    let stats: Value = get_json(&client, &format!("{base}/app/stats")).await;
    assert_eq!(stats["paths"]["/api/items"], 1, "{stats}");

    let login = client
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"username": "demo", "password": "demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    let health: Value = get_json(&client, &format!("http://127.0.0.1:{admin}/health")).await;
    assert_eq!(health["status"], "healthy");

    send_signal(&child, "INT");
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut child, Duration::from_secs(10));
        let mut banner = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut banner).unwrap();
        (status, banner)
    })
    .await
    .unwrap();
    assert!(status.0.success());
    assert!(
        status
            .1
            .contains(&format!("curl -i http://127.0.0.1:{proxy}/api/items")),
        "{}",
        status.1
    );
}

#[tokio::test]
async fn app_only_runs_the_demo_app_alone() {
    let app = free_port();
    let mut child = Command::new(binary())
        .args([
            "demo",
            "--app-only",
            "--listen",
            &format!("127.0.0.1:{app}"),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(
        &format!("http://127.0.0.1:{app}/health"),
        Duration::from_secs(15),
    )
    .await;
    let item: Value = get_json(&client(), &format!("http://127.0.0.1:{app}/api/items/1")).await;
    assert_eq!(item["id"], 1);
    let _ = child.kill();
    let _ = child.wait();
}
