//! Error reporting end to end: a Sentry stand-in on port 0 records every envelope rampart sends.
//! 5xx responses become one event each with route, request id, release, environment and status;
//! other statuses none; credentials (Authorization, cookies, `stripe-signature`, query API keys,
//! configured body fields) appear nowhere in what the stand-in received nor in rampart's log;
//! sampling, a hanging Sentry, reload and the config errors.

mod support;

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use support::origin::origin;
use support::*;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Accept,
    Hang,
    Fail,
}

/// A Sentry stand-in: records the raw body of every envelope POSTed to `/api/42/envelope/`.
struct Sentry {
    addr: SocketAddr,
    envelopes: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Sentry {
    async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let envelopes: Arc<Mutex<Vec<Vec<u8>>>> = Default::default();
        let shared = envelopes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let envelopes = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let envelopes = envelopes.clone();
                        async move {
                            let ok_path = req.uri().path() == "/api/42/envelope/";
                            let gzip = req
                                .headers()
                                .get("content-encoding")
                                .is_some_and(|v| v == "gzip");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let mut raw = body.to_vec();
                            if gzip {
                                raw.clear();
                                flate2::read::GzDecoder::new(&body[..])
                                    .read_to_end(&mut raw)
                                    .unwrap();
                            }
                            if ok_path {
                                envelopes.lock().unwrap().push(raw);
                            }
                            if mode == Mode::Hang {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                            }
                            let status = match (ok_path, mode) {
                                (false, _) => 404,
                                (true, Mode::Fail) => 500,
                                _ => 200,
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"{}")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, envelopes }
    }

    fn dsn(&self) -> String {
        format!("http://publickey@{}/42", self.addr)
    }

    fn raw(&self) -> Vec<u8> {
        self.envelopes.lock().unwrap().concat()
    }

    /// The event payloads received so far.
    fn events(&self) -> Vec<Value> {
        self.envelopes
            .lock()
            .unwrap()
            .iter()
            .flat_map(|raw| parse_envelope(raw))
            .collect()
    }

    /// What arrived within a second (delivery takes milliseconds), for cases that expect none.
    async fn settle(&self) -> Vec<Value> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.events()
    }

    /// Waits until `count` events arrived, then a little longer to see that no more do.
    async fn wait_events(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.events().len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        self.events()
    }
}

/// The `event` items of one envelope: a header line, then per item a header line and a payload
/// (of `length` bytes when the header says, else up to the next newline).
fn parse_envelope(raw: &[u8]) -> Vec<Value> {
    let mut events = Vec::new();
    let mut rest = raw;
    let next_line = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let line = rest[..end].to_vec();
        *rest = &rest[(end + 1).min(rest.len())..];
        Some(line)
    };
    let header: Value = serde_json::from_slice(&next_line(&mut rest).unwrap()).unwrap();
    assert!(header.is_object(), "envelope header: {header}");
    while let Some(item_header) = next_line(&mut rest) {
        if item_header.is_empty() {
            continue;
        }
        let item: Value = serde_json::from_slice(&item_header).unwrap();
        let payload = match item["length"].as_u64() {
            Some(length) => {
                let length = length as usize;
                let payload = rest[..length].to_vec();
                rest = &rest[length..];
                if rest.first() == Some(&b'\n') {
                    rest = &rest[1..];
                }
                payload
            }
            None => next_line(&mut rest).unwrap_or_default(),
        };
        if item["type"] == "event" {
            events.push(serde_json::from_slice(&payload).unwrap());
        }
    }
    events
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

const SECRETS: &[&str] = &[
    "Bearer-abc123SECRETTOKEN",
    "session=COOKIESECRET42",
    "t=1700000000,v1=STRIPESIGSECRET",
    "QUERYKEYSECRET99",
    "BODYPASSWORDSECRET7",
    "NESTEDCARDSECRET55",
];

/// Kills the rampart process when a failed assertion ends the test early.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn routes(app: SocketAddr, dead: SocketAddr) -> String {
    format!(
        r#"
[[upstream]]
name = "app"
targets = ["{app}"]

[[upstream]]
name = "gone"
targets = ["{dead}"]

[[route]]
name = "dead"
path_prefix = "/dead"
upstream = "gone"

[[route]]
name = "login"
path_prefix = "/login"
upstream = "app"
[[route.validate]]
methods = ["POST"]
[route.validate.body_schema]
type = "object"

[[route]]
name = "api"
path_prefix = "/"
upstream = "app"
"#
    )
}

/// The main case, with rampart as a process so its log output is what it printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundreds_become_redacted_events_and_nothing_leaks() {
    let sentry = Sentry::start(Mode::Accept).await;
    let (app, _origin) = origin().await;
    let dead = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let config_path = dir.path().join("rampart.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[server]
listen = ["127.0.0.1:{port}"]
workers = 1
[admin]
listen = "127.0.0.1:{admin_port}"

[error_reporting]
dsn = "{dsn}"
environment = "staging"
release = "shop@1.2.3"
server_name = "edge-1"
redact_body_fields = ["card_secret"]
{routes}"#,
            dsn = sentry.dsn(),
            routes = routes(app, dead)
        ),
    )
    .unwrap();
    let stdout = dir.path().join("stdout.log");
    let mut child = Killed(spawn_serve(&config_path, &stdout, &[]));
    wait_ready(
        &format!("http://127.0.0.1:{admin_port}/health/live"),
        Duration::from_secs(20),
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let client = client();
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request
            .header("authorization", SECRETS[0])
            .header("cookie", SECRETS[1])
            .header("stripe-signature", SECRETS[2])
            .header("x-trace-note", "visible")
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        (response.status().as_u16(), id)
    };

    let (status, dead_id) =
        send(client.get(format!("{base}/dead/orders?api_key={}", SECRETS[3]))).await;
    assert_eq!(status, 502);
    let body = serde_json::json!({
        "user": "ann", "password": SECRETS[4],
        "payment": {"cards": [{"card_secret": SECRETS[5], "last4": "4242"}]}
    });
    let (status, login_id) =
        send(client.post(format!("{base}/login?status=500")).json(&body)).await;
    assert_eq!(status, 500);
    assert_eq!(send(client.get(format!("{base}/fine"))).await.0, 200);
    assert_eq!(
        send(client.get(format!("{base}/missing?status=404")))
            .await
            .0,
        404
    );

    let events = sentry.wait_events(2).await;
    assert_eq!(events.len(), 2, "exactly one event per 5xx: {events:#?}");
    let by_id = |id: &str| {
        events
            .iter()
            .find(|e| e["tags"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no event for {id}: {events:#?}"))
            .clone()
    };
    let dead_event = by_id(&dead_id);
    // `error` is the protocol's default level, which the client leaves out.
    assert_eq!(dead_event["level"].as_str().unwrap_or("error"), "error");
    assert_eq!(dead_event["release"], "shop@1.2.3");
    assert_eq!(dead_event["environment"], "staging");
    assert_eq!(dead_event["server_name"], "edge-1");
    assert_eq!(dead_event["tags"]["route"], "dead");
    assert_eq!(dead_event["tags"]["status"], "502");
    assert_eq!(dead_event["tags"]["error_type"], "upstream_unavailable");
    assert_eq!(dead_event["tags"]["upstream"], "gone");
    assert_eq!(
        dead_event["message"]["formatted"]
            .as_str()
            .or(dead_event["message"].as_str()),
        Some("502 upstream_unavailable on route dead")
    );
    let request = &dead_event["request"];
    assert_eq!(request["method"], "GET");
    assert_eq!(request["query_string"], "api_key=[REDACTED]");
    let headers = &request["headers"];
    assert_eq!(headers["authorization"], "[Filtered]");
    assert_eq!(headers["cookie"], "[Filtered]");
    assert_eq!(headers["stripe-signature"], "[Filtered]");
    assert_eq!(headers["x-trace-note"], "visible");

    let login_event = by_id(&login_id);
    assert_eq!(login_event["tags"]["route"], "login");
    assert_eq!(login_event["tags"]["status"], "500");
    assert_eq!(login_event["tags"]["upstream"], "app");
    let data = login_event["request"]["data"].as_str().unwrap();
    let data: Value =
        serde_json::from_str(data).unwrap_or_else(|_| login_event["request"]["data"].clone());
    assert_eq!(data["user"], "ann");
    assert_eq!(data["password"], "[Filtered]");
    assert_eq!(data["payment"]["cards"][0]["card_secret"], "[Filtered]");
    assert_eq!(data["payment"]["cards"][0]["last4"], "4242");

    // An internal error: a reload refused (an unknown key) is an ERROR log line, so an event.
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, format!("{text}\n[bogus_section]\n")).unwrap();
    send_signal(&child.0, "HUP");
    let events = sentry.wait_events(3).await;
    let internal: Vec<&Value> = events
        .iter()
        .filter(|e| e["logger"] == "rampart::server::reload")
        .collect();
    assert!(
        !internal.is_empty(),
        "no event for the refused reload: {events:#?}"
    );
    assert!(
        internal.iter().all(|e| e["message"]
            .as_str()
            .unwrap()
            .starts_with("config reload refused")),
        "{internal:#?}"
    );
    assert_eq!(internal[0]["release"], "shop@1.2.3");

    send_signal(&child.0, "TERM");
    wait_exit(&mut child.0, Duration::from_secs(15));
    let raw = sentry.raw();
    let log = std::fs::read(&stdout).unwrap();
    assert!(contains(&log, &dead_id), "the log has the requests");
    for secret in SECRETS {
        // The cookie and signature headers are checked by their secret parts too.
        let part = secret.rsplit(['=', '-']).next().unwrap();
        for needle in [*secret, part] {
            assert!(!contains(&raw, needle), "{needle} reached Sentry");
            assert!(!contains(&log, needle), "{needle} reached the log");
        }
    }
}

fn in_process_config(dsn: &str, extra: &str, dead: SocketAddr) -> String {
    format!(
        r#"
[error_reporting]
dsn = "{dsn}"
{extra}

[[upstream]]
name = "gone"
targets = ["{dead}"]

[[route]]
name = "dead"
upstream = "gone"
"#
    )
}

#[tokio::test]
async fn sample_rate_zero_sends_nothing_and_a_reload_applies_the_new_rate() {
    let sentry = Sentry::start(Mode::Accept).await;
    let dead = closed_port();
    let text = in_process_config(&sentry.dsn(), "sample_rate = 0.0", dead);
    let running = start(&text, dead).await;
    let client = client();
    for _ in 0..5 {
        let response = client.get(url(&running, "/x")).send().await.unwrap();
        assert_eq!(response.status(), 502);
    }
    assert!(sentry.settle().await.is_empty());
    let metrics = metrics_text(&client, &running).await;
    assert!(
        metrics.contains("rampart_error_reports_total{result=\"sampled_out\"}"),
        "{metrics}"
    );

    running
        .reload(config(
            &in_process_config(&sentry.dsn(), "sample_rate = 1.0", dead),
            dead,
        ))
        .await
        .unwrap();
    let response = client.get(url(&running, "/x")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(sentry.wait_events(1).await.len(), 1);
    let metrics = metrics_text(&client, &running).await;
    assert!(
        metrics.contains("rampart_error_reports_total{result=\"sent\"}"),
        "{metrics}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_hanging_or_failing_sentry_never_slows_or_fails_a_request() {
    for mode in [Mode::Hang, Mode::Fail] {
        let sentry = Sentry::start(mode).await;
        let dead = closed_port();
        let text = in_process_config(&sentry.dsn(), "queue_size = 2\ntimeout = \"30s\"", dead);
        let running = start(&text, dead).await;
        let client = client();
        let started = Instant::now();
        for _ in 0..30 {
            let one = Instant::now();
            let response = client.get(url(&running, "/x")).send().await.unwrap();
            assert_eq!(response.status(), 502);
            assert!(
                one.elapsed() < Duration::from_secs(1),
                "{:?}",
                one.elapsed()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let metrics = metrics_text(&client, &running).await;
        let expected = if mode == Mode::Hang {
            "rampart_error_reports_total{result=\"dropped\"}"
        } else {
            "rampart_error_reports_total{result=\"failed\"}"
        };
        assert!(metrics.contains(expected), "{metrics}");
        // Shutdown waits at most a short flush, even with Sentry hanging.
        let stopping = Instant::now();
        running.shutdown().await;
        assert!(stopping.elapsed() < Duration::from_secs(5));
    }
}

#[tokio::test]
async fn off_by_default_and_with_an_empty_dsn() {
    let sentry = Sentry::start(Mode::Accept).await;
    let dead = closed_port();
    let without = format!(
        "[[upstream]]\nname = \"gone\"\ntargets = [\"{dead}\"]\n[[route]]\nname = \"dead\"\nupstream = \"gone\"\n"
    );
    assert!(config(&without, dead).error_reporting.is_none());
    let empty = in_process_config("", "sample_rate = 1.0", dead);
    assert!(config(&empty, dead).error_reporting.is_none());
    for text in [without, empty] {
        let running = start(&text, dead).await;
        let response = client().get(url(&running, "/x")).send().await.unwrap();
        assert_eq!(response.status(), 502);
        running.shutdown().await;
    }
    assert!(sentry.settle().await.is_empty());
    assert!(sentry.raw().is_empty());
}

#[test]
fn config_errors_name_their_key_and_never_the_dsn_key() {
    let problems = config_problems(
        r#"
[error_reporting]
dsn = "ftp://public:TOPSECRETKEY@sentry.example.com/1"
sample_rate = 1.5
statuses = ["5xx", 200]
queue_size = 0
redact_headers = ["bad header"]
"#,
    )
    .to_string();
    for expected in [
        "test.toml:3:1: error_reporting.dsn: expected a Sentry DSN such as",
        "test.toml:4:1: error_reporting.sample_rate: expected a fraction from 0 to 1",
        "error_reporting.statuses[1]: expected \"5xx\", \"4xx\" or a status from 400 to 599, got 200",
        "error_reporting.queue_size: expected 1 to 10000 events, got 0",
        "error_reporting.redact_headers[0]: expected a header name",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
    assert!(!problems.contains("TOPSECRETKEY"), "{problems}");

    let unknown = config_problems("[error_reporting]\ndsn = \"\"\nsample = 0.5\n").to_string();
    assert!(unknown.contains("error_reporting"), "{unknown}");
    assert!(unknown.contains("sample"), "{unknown}");
}

#[test]
fn defaults() {
    let dead = closed_port();
    let config = config(
        "[error_reporting]\ndsn = \"https://pk@o1.ingest.sentry.io/7\"\n",
        dead,
    );
    let settings = config.error_reporting.unwrap();
    assert_eq!(settings.environment, "production");
    assert_eq!(
        settings.release,
        format!("rampart@{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(settings.sample_rate, 1.0);
    assert!(settings.statuses.contains(502) && settings.statuses.contains(500));
    assert!(!settings.statuses.contains(404));
    for header in ["authorization", "cookie", "stripe-signature", "x-api-key"] {
        assert!(settings.redact_headers.iter().any(|h| h == header));
    }
}

#[tokio::test]
async fn a_panic_becomes_an_event() {
    let sentry = Sentry::start(Mode::Accept).await;
    let settings = config(
        &format!("[error_reporting]\ndsn = \"{}\"\n", sentry.dsn()),
        closed_port(),
    )
    .error_reporting
    .unwrap();
    let reporter = rampart::observe::error_report::ErrorReporter::new(&settings, vec![], vec![]);
    rampart::observe::error_report::install(Some(reporter));
    let result = std::thread::spawn(|| panic!("checkout invariant broken")).join();
    assert!(result.is_err());
    rampart::observe::error_report::install(None);
    let events = sentry.wait_events(1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["logger"], "rampart::panic");
    assert!(
        event.to_string().contains("checkout invariant broken"),
        "{event:#}"
    );
    assert_eq!(event["environment"], "production");
}
