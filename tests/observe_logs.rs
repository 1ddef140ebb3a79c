//! The `rampart` binary's logs: per-module levels, access-log sampling (errors always logged),
//! `combined.log` and `error.log` rotated by size and pruned to `max_files`, alert events in the
//! log, and the email notifier's log fallback when no SMTP server is configured.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_files_rotate_levels_filter_and_alerts_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let app = demo_app().await;
    let (port, admin_port, closed) = (free_port(), free_port(), closed_port());
    let config_path = dir.path().join("rampart.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[server]
listen = ["127.0.0.1:{port}"]

[admin]
listen = "127.0.0.1:{admin_port}"

[log]
format = "json"
level = "warn"
levels = {{ "rampart::access" = "info" }}
access_log_sample = 0.0

[log.file]
directory = "logs"
max_size = "2KiB"
max_files = 3

[[upstream]]
name = "app"
targets = ["{app}"]

[[route]]
name = "ok"
path_prefix = "/echo"
upstream = "app"

[[notifier]]
name = "mail"
kind = "email"
smtp_url = ""
from = "rampart <alerts@example.com>"
to = ["ops@example.com"]

[[notifier]]
name = "unreachable"
kind = "webhook"
url = "http://{closed}/hook"
timeout = "1s"

[[alert]]
name = "MemoryHigh"
condition = "rss_above"
threshold = "1MiB"
repeat_interval = "1s"
notify = ["mail", "unreachable"]
"#
        ),
    )
    .unwrap();
    let stdout = dir.path().join("stdout.log");
    let mut child = std::process::Command::new(binary())
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env_remove("RAMPART_LOG")
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    wait_ready(
        &format!("http://127.0.0.1:{admin_port}/health/live"),
        Duration::from_secs(20),
    )
    .await;
    let client = client();
    for _ in 0..20 {
        let response = client
            .get(format!("http://127.0.0.1:{port}/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for _ in 0..5 {
        let response = client
            .get(format!("http://127.0.0.1:{port}/missing?api_key=sk-123"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    // The alert fires at once and repeats every second; each round writes a few lines.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logs.join("combined.log.2").exists() {
        assert!(
            Instant::now() < deadline,
            "combined.log never rotated twice"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    send_signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());

    // Rotation: at most 3 files per log, each within max_size (unless a single line is longer).
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.iter().all(|n| [
            "combined.log",
            "combined.log.1",
            "combined.log.2",
            "error.log",
            "error.log.1",
            "error.log.2"
        ]
        .contains(&n.as_str())),
        "{names:?}"
    );
    for name in &names {
        let text = std::fs::read_to_string(logs.join(name)).unwrap();
        assert!(
            text.len() <= 2048 || text.lines().count() == 1,
            "{name} has {} bytes",
            text.len()
        );
        assert!(text.ends_with('\n'), "{name} ends mid-line");
    }

    // error.log holds errors only: here, the webhook that cannot be reached.
    let errors = json_lines(&std::fs::read_to_string(logs.join("error.log")).unwrap());
    assert!(!errors.is_empty());
    for line in &errors {
        assert_eq!(line["level"], "ERROR", "{line}");
    }
    assert!(
        errors
            .iter()
            .any(|l| l["message"] == "alert notification failed" && l["notifier"] == "unreachable")
    );
    assert!(
        !errors
            .iter()
            .any(|l| l.to_string().contains(&closed.to_string())),
        "the webhook URL is not logged"
    );

    // Console: per-module levels and sampling. `level = "warn"` hides the startup line;
    // `rampart::access = info` keeps access lines, of which only the errors pass `sample = 0`.
    let console = json_lines(&std::fs::read_to_string(&stdout).unwrap());
    assert!(!console.iter().any(|l| l["message"] == "rampart is serving"));
    let access: Vec<&Value> = console
        .iter()
        .filter(|l| l["target"] == "rampart::access")
        .collect();
    assert_eq!(access.len(), 5, "{access:?}");
    for line in &access {
        assert_eq!(line["status"], 404);
        assert_eq!(line["path"], "/missing?api_key=[REDACTED]");
    }

    // Alert events, and the email written to the log because SMTP is not configured.
    let firing = console
        .iter()
        .find(|l| l["message"] == "alert firing")
        .expect("alert firing is logged");
    assert_eq!(firing["alert"], "MemoryHigh");
    assert_eq!(firing["target"], "rampart::alert");
    let mail = console
        .iter()
        .find(|l| {
            l["message"] == "email not sent: SMTP is not configured; the message is logged instead"
        })
        .expect("the email is logged");
    assert_eq!(mail["to"], "ops@example.com");
    assert!(
        mail["subject"]
            .as_str()
            .unwrap()
            .starts_with("[FIRING] MemoryHigh (warning): resident memory")
    );
    assert!(mail["body"].as_str().unwrap().contains("Instance: "));
    // The same lines reach combined.log (all levels the filter lets through).
    let combined: String = ["combined.log.2", "combined.log.1", "combined.log"]
        .iter()
        .filter_map(|n| std::fs::read_to_string(logs.join(n)).ok())
        .collect();
    assert!(combined.contains("\"message\":\"alert firing\""));
}
