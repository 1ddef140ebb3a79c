//! Alert rules end to end: a rule fires once its condition has held for `for`, repeats no sooner
//! than `repeat_interval`, resolves once; the notices reach a webhook receiver (Slack and JSON
//! formats), an SMTP server the test runs (a minimal one on a free port) and a command.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Requests the webhook receiver got: (when, path, JSON body).
type Received = Arc<Mutex<Vec<(Instant, String, Value)>>>;

async fn webhook_receiver() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/{kind}",
        axum::routing::post(
            move |axum::extract::Path(kind): axum::extract::Path<String>,
                  axum::Json(body): axum::Json<Value>| {
                let store = store.clone();
                async move {
                    store.lock().unwrap().push((Instant::now(), kind, body));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

/// One message an SMTP client handed over.
#[derive(Debug, Clone)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// Just enough SMTP (RFC 5321) to accept mail: greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET,
/// NOOP, QUIT. No TLS, no AUTH offered.
async fn smtp_sink() -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = mails.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP ready\r\n").await.unwrap();
                let mut mail = Mail {
                    from: String::new(),
                    to: Vec::new(),
                    data: String::new(),
                };
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
                        b"250 OK\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.from = line[10..].trim().to_owned();
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        mail.to.push(line[8..].trim().to_owned());
                        b"250 OK\r\n"
                    } else if upper.starts_with("DATA") {
                        write
                            .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                            .await
                            .unwrap();
                        let mut data = String::new();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line == "." {
                                break;
                            }
                            data.push_str(line.strip_prefix('.').unwrap_or(&line));
                            data.push('\n');
                        }
                        mail.data = data;
                        store.lock().unwrap().push(mail.clone());
                        b"250 OK queued\r\n"
                    } else if upper.starts_with("RSET") {
                        mail.to.clear();
                        b"250 OK\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"502 not implemented\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, mails)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_fires_repeats_and_resolves_through_every_notifier() {
    let (hook, received) = webhook_receiver().await;
    let (smtp, mails) = smtp_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let command_out = dir.path().join("notices.jsonl");
    let app = demo_app().await;
    let dead = closed_port();
    let running = start(
        &format!(
            r#"
[[upstream]]
name = "app"
targets = ["{{app}}"]

[[upstream]]
name = "dead"
targets = ["{dead}"]

[[route]]
name = "broken"
path_prefix = "/broken"
upstream = "dead"

[[route]]
name = "all"
upstream = "app"

[[notifier]]
name = "slack"
kind = "webhook"
url = "http://{hook}/slack"

[[notifier]]
name = "generic"
kind = "webhook"
url = "http://{hook}/json"
format = "json"

[[notifier]]
name = "mail"
kind = "email"
smtp_url = "smtp://{smtp}"
from = "rampart <alerts@example.com>"
to = ["ops@example.com", "Oncall <oncall@example.com>"]

[[notifier]]
name = "script"
kind = "command"
command = ["sh", "-c", "cat >> '{out}'; echo >> '{out}'"]

[[alert]]
name = "HighErrorRate"
condition = "error_rate"
threshold = "50%"
window = "3s"
for = "2s"
repeat_interval = "3s"
severity = "critical"
summary = "More than half of the answers are 5xx"
notify = ["slack", "generic", "mail", "script"]
"#,
            out = command_out.display()
        ),
        app,
    )
    .await;

    // Errors for 8 seconds, then none.
    let client = client();
    let first_error = Instant::now();
    while first_error.elapsed() < Duration::from_secs(8) {
        let status = client
            .get(url(&running, "/broken"))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_server_error());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let errors_stopped = Instant::now();
    // The window is 3 s: resolution follows within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let done = received
            .lock()
            .unwrap()
            .iter()
            .any(|(_, kind, body)| kind == "json" && body["status"] == "resolved");
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never resolved: {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let other deliveries of the resolution arrive, and make sure nothing follows it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = received.lock().unwrap().clone();

    let json: Vec<&(Instant, String, Value)> = received
        .iter()
        .filter(|(_, kind, _)| kind == "json")
        .collect();
    let statuses: Vec<(&str, bool)> = json
        .iter()
        .map(|(_, _, b)| {
            (
                b["status"].as_str().unwrap(),
                b["repeat"].as_bool().unwrap(),
            )
        })
        .collect();
    // Fired at ~2 s, repeated at ~5 s and ~8 s (errors stop at 8 s; the window holds them 3 s
    // more, so one more repeat may come at ~11 s), resolved once, last.
    assert_eq!(statuses[0], ("firing", false), "{statuses:?}");
    assert_eq!(
        *statuses.last().unwrap(),
        ("resolved", false),
        "{statuses:?}"
    );
    let repeats = &statuses[1..statuses.len() - 1];
    assert!(
        (1..=3).contains(&repeats.len()) && repeats.iter().all(|s| *s == ("firing", true)),
        "{statuses:?}"
    );
    let fired_at = json[0].0;
    assert!(
        fired_at.duration_since(first_error) >= Duration::from_millis(1900),
        "fired {:?} after the first error, before `for`",
        fired_at.duration_since(first_error)
    );
    for pair in json.windows(2) {
        if pair[1].2["status"] == "firing" {
            let gap = pair[1].0.duration_since(pair[0].0);
            assert!(gap >= Duration::from_millis(2900), "repeated after {gap:?}");
        }
    }
    assert!(json.last().unwrap().0 > errors_stopped);
    let first = &json[0].2;
    assert_eq!(first["alert"], "HighErrorRate");
    assert_eq!(first["severity"], "critical");
    assert_eq!(first["condition"], "error_rate");
    assert_eq!(first["threshold"], "50%");
    assert_eq!(first["summary"], "More than half of the answers are 5xx");
    assert!(
        first["value"]
            .as_str()
            .unwrap()
            .starts_with("error rate 100.0% over 3s"),
        "{first}"
    );
    let resolved = &json.last().unwrap().2;
    assert!(
        resolved["firing_seconds"].as_u64().unwrap() >= 5,
        "{statuses:?} {resolved}"
    );

    // Slack format: the same notices as `{"text": ...}`.
    let slack: Vec<&str> = received
        .iter()
        .filter(|(_, kind, _)| kind == "slack")
        .map(|(_, _, b)| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(slack.len(), json.len(), "{slack:?}");
    assert!(slack[0].starts_with("[FIRING] HighErrorRate (critical): error rate 100.0%"));
    assert!(slack[0].contains("More than half of the answers are 5xx"));
    assert!(
        slack
            .last()
            .unwrap()
            .starts_with("[RESOLVED] HighErrorRate")
    );

    // Email: one message per notice, to both recipients.
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), json.len(), "{mails:?}");
    assert_eq!(mails[0].from, "<alerts@example.com>");
    assert_eq!(mails[0].to, ["<ops@example.com>", "<oncall@example.com>"]);
    assert!(
        mails[0].data.contains("Subject: [FIRING] HighErrorRate"),
        "{}",
        mails[0].data
    );
    assert!(
        mails[0]
            .data
            .contains("More than half of the answers are 5xx")
    );
    assert!(
        mails
            .last()
            .unwrap()
            .data
            .contains("Subject: [RESOLVED] HighErrorRate")
    );

    // The command got each notice as JSON on stdin.
    let lines: Vec<Value> = std::fs::read_to_string(&command_out)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), json.len());
    assert_eq!(lines.last().unwrap()["status"], "resolved");

    // The gauge follows the state.
    let metrics = metrics_text(&client, &running).await;
    assert!(
        metrics.contains(r#"rampart_alerts_firing{alert="HighErrorRate"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"rampart_alert_notifications_total{notifier="mail",result="sent"}"#)
    );
}

#[test]
fn bad_alert_config_is_refused_with_its_place() {
    let problems = config_problems(
        r#"
[[upstream]]
name = "app"
targets = ["127.0.0.1:1"]

[[route]]
name = "all"
upstream = "app"

[[notifier]]
name = "hook"
kind = "webhook"
url = "ftp://example.com"

[[alert]]
name = "a"
condition = "error_rate"
threshold = "150%"
notify = ["nobody"]

[[alert]]
name = "b"
condition = "circuit_open"
upstream = "ghost"
threshold = "1s"
"#,
    )
    .to_string();
    for expected in [
        "test.toml:13:1: notifier[0].url: expected an http:// or https:// URL",
        "test.toml:18:1: alert[0].threshold: expected an error rate such as \"5%\"",
        "test.toml:19:11: alert[0].notify[0]: expected the name of a [[notifier]], got \"nobody\"",
        "test.toml:24:1: alert[1].upstream: expected the name of an [[upstream]], got \"ghost\"",
        "alert[1].threshold: `threshold` does not apply to condition \"circuit_open\"",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
}

#[tokio::test]
async fn the_observability_example_loads_with_the_seeds_rules() {
    let app = demo_app().await;
    let (hook, _received) = webhook_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let vars: std::collections::HashMap<&str, String> = [
        ("RAMPART_LISTEN", "127.0.0.1:0".to_owned()),
        ("RAMPART_ADMIN", "127.0.0.1:0".to_owned()),
        ("RAMPART_DEMO_UPSTREAM", app.to_string()),
        ("RAMPART_ALERT_WEBHOOK", format!("http://{hook}/slack")),
        ("RAMPART_LOG_DIR", dir.path().display().to_string()),
    ]
    .into_iter()
    .collect();
    let text = std::fs::read_to_string("examples/observability.toml").unwrap();
    let config = rampart::config::parse(
        &text,
        "observability.toml",
        std::path::Path::new("examples"),
        &|var| vars.get(var).cloned(),
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    let rules: Vec<&str> = config
        .alerts
        .rules
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        rules,
        [
            "HighErrorRate",
            "SlowResponseTime",
            "UpstreamDown",
            "CircuitOpen",
            "HighMemory"
        ]
    );
    let file = config.log.file.clone().unwrap();
    assert_eq!(file.directory, dir.path());
    assert_eq!((file.max_size, file.max_files), (5_242_880, 5));
    assert!(config.log.level.contains("rampart::security=warn"));
    // Email without SMTP_URL: logged instead of sent.
    assert!(config.alerts.notifiers.iter().any(|n| matches!(
        &n.target,
        rampart::observe::alerts::config::NotifierTarget::Email { smtp_url: None, .. }
    )));
    rampart::install_crypto_provider();
    let running = rampart::server::start(config).await.unwrap();
    let response = client()
        .get(admin_url(&running, "/health/demo-app"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
