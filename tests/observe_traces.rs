//! Distributed tracing end to end: W3C `traceparent` continued or started and sent upstream
//! with each attempt's span id, `tracestate` passed, spans exported over OTLP/HTTP (JSON) to a
//! collector stand-in that records every export; sampling; a hanging, refusing or failing
//! collector never slows or fails a request; `[tracing]` config errors; tracing off leaves the
//! headers alone.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Every export body the collector received.
type Exports = Arc<Mutex<Vec<Value>>>;

/// A collector stand-in: records each POSTed OTLP/JSON body and answers `status`.
async fn collector(status: u16) -> (SocketAddr, Exports) {
    let exports: Exports = Arc::default();
    let store = exports.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: http::HeaderMap, body: bytes::Bytes| {
            let store = store.clone();
            async move {
                assert_eq!(headers["content-type"], "application/json");
                let mut value: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                value["_auth"] = headers
                    .get("authorization")
                    .map_or(Value::Null, |v| v.to_str().unwrap().into());
                store.lock().unwrap().push(value);
                http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, exports)
}

/// A collector that accepts connections and never answers.
async fn hanging_collector() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// What the upstream saw of one request: `traceparent` and `tracestate` (None when absent).
#[derive(Debug, Clone)]
struct Seen {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// An upstream recording trace headers; `/status/{code}` answers that status, others 200.
async fn upstream() -> (SocketAddr, SeenLog) {
    let seen: SeenLog = Arc::default();
    let store = seen.clone();
    let app = axum::Router::new().fallback(move |uri: http::Uri, headers: http::HeaderMap| {
        let store = store.clone();
        async move {
            let one = |name: &str| {
                let values: Vec<_> = headers.get_all(name).iter().collect();
                assert!(values.len() <= 1, "{name} repeated");
                values.first().map(|v| v.to_str().unwrap().to_owned())
            };
            store.lock().unwrap().push(Seen {
                traceparent: one("traceparent"),
                tracestate: one("tracestate"),
            });
            let status = uri
                .path()
                .strip_prefix("/status/")
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            (http::StatusCode::from_u16(status).unwrap(), "ok")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn traced_config(collector: SocketAddr, tracing_extra: &str, route_extra: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "app"
targets = ["{{app}}"]

[[route]]
name = "api"
upstream = "app"
{route_extra}

[tracing]
endpoint = "http://{collector}/v1/traces"
batch_interval = "20ms"
{tracing_extra}
"#
    )
}

/// rampart with `[tracing]` exporting to a recording collector, in front of a recording
/// upstream; `before` goes at the top of the config (other sections the test needs).
struct Traced {
    running: rampart::server::Running,
    /// The upstream's address.
    app: SocketAddr,
    exports: Exports,
    seen: SeenLog,
}

async fn traced(before: &str, tracing_extra: &str, route_extra: &str) -> Traced {
    let (collector_addr, exports) = collector(200).await;
    let (app, seen) = upstream().await;
    let config = traced_config(collector_addr, tracing_extra, route_extra);
    let running = start(&format!("{before}{config}"), app).await;
    Traced {
        running,
        app,
        exports,
        seen,
    }
}

/// Every span of every export, flattened.
fn spans(exports: &Exports) -> Vec<Value> {
    let mut all = Vec::new();
    for export in exports.lock().unwrap().iter() {
        for resource in export["resourceSpans"].as_array().unwrap() {
            for scope in resource["scopeSpans"].as_array().unwrap() {
                all.extend(scope["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    all
}

/// Waits until at least `count` spans arrived.
async fn wait_spans(exports: &Exports, count: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let all = spans(exports);
        if all.len() >= count {
            return all;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "only {} of {count} spans arrived: {all:#?}",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn attr(span: &Value, key: &str) -> Value {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| {
            let v = &a["value"];
            if v["stringValue"].is_string() {
                v["stringValue"].clone()
            } else {
                v["intValue"].clone()
            }
        })
        .unwrap_or(Value::Null)
}

fn of_kind(spans: &[Value], kind: u64) -> Vec<Value> {
    spans
        .iter()
        .filter(|s| s["kind"] == kind)
        .cloned()
        .collect()
}

/// (trace id, parent id, flags) of a `traceparent`.
fn split(traceparent: &str) -> (String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_sampled_incoming_trace_is_continued_upstream_and_exported() {
    let Traced {
        running,
        exports,
        seen,
        app,
    } = traced(
        "",
        "sample_ratio = 0.0\nservice_name = \"edge\"\nheaders = { authorization = \"Bearer t0ken\" }",
        "",
    )
    .await;
    let response = client()
        .get(url(&running, "/items/7?token=s3cret&page=2"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("tracestate", "vendor=abc,other=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let all = wait_spans(&exports, 2).await;
    let server = &of_kind(&all, 2)[0];
    let attempt = &of_kind(&all, 3)[0];
    // The server span continues the incoming trace (a ratio of 0 does not override the parent).
    assert_eq!(server["traceId"], TRACE);
    assert_eq!(server["parentSpanId"], PARENT);
    assert_eq!(server["name"], "GET api");
    assert_eq!(attr(server, "http.request.method"), "GET");
    assert_eq!(attr(server, "http.route"), "api");
    assert_eq!(attr(server, "url.path"), "/items/7");
    assert_eq!(attr(server, "url.query"), "token=[REDACTED]&page=2");
    assert_eq!(attr(server, "http.response.status_code"), "200");
    assert_eq!(attr(server, "client.address"), "127.0.0.1");
    assert_eq!(attr(server, "rampart.request_id"), request_id.as_str());
    assert!(server["status"].is_null(), "{server}");
    // The attempt span is the server span's child and the upstream's parent.
    assert_eq!(attempt["traceId"], TRACE);
    assert_eq!(attempt["parentSpanId"], server["spanId"]);
    assert_eq!(attr(attempt, "server.address"), "127.0.0.1");
    assert_eq!(attr(attempt, "server.port"), app.port().to_string());
    assert_eq!(attr(attempt, "rampart.attempt"), "1");
    assert_eq!(attr(attempt, "http.response.status_code"), "200");
    let start: u64 = server["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u64 = server["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start > 0 && start <= end);

    let seen = seen.lock().unwrap()[0].clone();
    let (trace, parent, flags) = split(seen.traceparent.as_deref().unwrap());
    assert_eq!(trace, TRACE);
    assert_eq!(parent, attempt["spanId"].as_str().unwrap());
    assert_eq!(flags, "01");
    assert_eq!(seen.tracestate.as_deref(), Some("vendor=abc,other=1"));

    let export = exports.lock().unwrap()[0].clone();
    assert_eq!(export["_auth"], "Bearer t0ken");
    let resource = &export["resourceSpans"][0]["resource"];
    assert_eq!(attr(resource, "service.name"), "edge");
}

#[tokio::test]
async fn a_missing_or_invalid_traceparent_starts_a_new_trace() {
    let Traced {
        running,
        exports,
        seen,
        ..
    } = traced("", "", "").await;
    let client = client();
    client.get(url(&running, "/a")).send().await.unwrap();
    client
        .get(url(&running, "/b"))
        .header(
            "traceparent",
            format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
        )
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    client
        .get(url(&running, "/c"))
        .header("traceparent", format!("00-{}-{PARENT}-01", "0".repeat(32)))
        .send()
        .await
        .unwrap();

    let all = wait_spans(&exports, 6).await;
    let servers = of_kind(&all, 2);
    assert_eq!(servers.len(), 3);
    let seen = seen.lock().unwrap().clone();
    let mut traces = Vec::new();
    for (i, seen) in seen.iter().enumerate() {
        let (trace, parent, flags) = split(seen.traceparent.as_deref().unwrap());
        assert_eq!(flags, "01", "sampled by the default ratio of 1");
        assert_ne!(trace, TRACE.to_lowercase());
        assert_ne!(trace, "0".repeat(32));
        // A tracestate without a valid parent is dropped.
        assert_eq!(seen.tracestate, None, "request {i}");
        let server = servers
            .iter()
            .find(|s| s["traceId"] == trace.as_str())
            .unwrap();
        assert!(
            server["parentSpanId"].is_null(),
            "a new trace has a root span"
        );
        let attempt = all
            .iter()
            .find(|s| s["spanId"] == parent.as_str())
            .expect("the upstream's parent is an exported attempt span");
        assert_eq!(attempt["parentSpanId"], server["spanId"]);
        traces.push(trace);
    }
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 3, "each request starts its own trace");
}

#[tokio::test]
async fn ratio_zero_exports_nothing_but_still_propagates() {
    let Traced {
        running,
        exports,
        seen,
        ..
    } = traced("", "sample_ratio = 0.0\nrespect_parent = false", "").await;
    let client = client();
    for _ in 0..5 {
        client.get(url(&running, "/x")).send().await.unwrap();
    }
    // An incoming sampled flag is not honoured with respect_parent = false.
    client
        .get(url(&running, "/y"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(spans(&exports).is_empty(), "{:?}", spans(&exports));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    for seen in &seen[..5] {
        let (_, _, flags) = split(seen.traceparent.as_deref().unwrap());
        assert_eq!(flags, "00");
    }
    let (trace, parent, flags) = split(seen[5].traceparent.as_deref().unwrap());
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "00"));
    assert_ne!(parent, PARENT, "rampart's own span id is the parent");
    assert_eq!(seen[5].tracestate.as_deref(), Some("vendor=abc"));
}

#[tokio::test]
async fn each_retry_gets_its_own_attempt_span_and_5xx_is_an_error() {
    let Traced {
        running,
        exports,
        seen,
        ..
    } = traced(
        "",
        "",
        "[route.retry]\nattempts = 3\nbackoff_base = \"1ms\"\nbackoff_max = \"2ms\"",
    )
    .await;
    let response = client()
        .get(url(&running, "/status/503"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let all = wait_spans(&exports, 4).await;
    let server = &of_kind(&all, 2)[0];
    let mut attempts = of_kind(&all, 3);
    assert_eq!(attempts.len(), 3, "{all:#?}");
    attempts.sort_by_key(|a| attr(a, "rampart.attempt").as_str().unwrap().to_owned());
    let seen = seen.lock().unwrap().clone();
    for (i, attempt) in attempts.iter().enumerate() {
        assert_eq!(attr(attempt, "rampart.attempt"), (i + 1).to_string());
        assert_eq!(attr(attempt, "http.response.status_code"), "503");
        assert_eq!(attempt["status"]["code"], 2);
        assert_eq!(attempt["parentSpanId"], server["spanId"]);
        let (trace, parent, _) = split(seen[i].traceparent.as_deref().unwrap());
        assert_eq!(trace, server["traceId"].as_str().unwrap());
        assert_eq!(parent, attempt["spanId"].as_str().unwrap());
    }
    assert_eq!(attr(&attempts[1], "http.request.resend_count"), "1");
    assert_eq!(server["status"]["code"], 2);
    assert_eq!(attr(server, "http.response.status_code"), "503");
    assert_eq!(attr(server, "error.type"), "503");
    assert_eq!(attr(server, "rampart.attempts"), "3");
}

#[tokio::test]
async fn an_unreachable_upstream_marks_both_spans_as_errors() {
    let (collector_addr, exports) = collector(200).await;
    let running = start(&traced_config(collector_addr, "", ""), closed_port()).await;
    let response = client().get(url(&running, "/down")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let kind = body["error"]["type"].as_str().unwrap().to_owned();
    let all = wait_spans(&exports, 2).await;
    let server = &of_kind(&all, 2)[0];
    let attempt = &of_kind(&all, 3)[0];
    assert_eq!(server["status"]["code"], 2);
    assert_eq!(server["status"]["message"], kind.as_str());
    assert_eq!(attr(server, "error.type"), kind.as_str());
    assert_eq!(attr(server, "http.response.status_code"), "502");
    assert_eq!(attempt["status"]["code"], 2);
    assert_eq!(attr(attempt, "error.type"), kind.as_str());
    assert!(attr(attempt, "http.response.status_code").is_null());
}

/// Sends `count` requests one by one; each must answer 200, the slowest within `limit`.
async fn requests_stay_fast(running: &rampart::server::Running, count: usize, limit: Duration) {
    let client = client();
    let mut slowest = Duration::ZERO;
    for i in 0..count {
        let started = Instant::now();
        let response = client
            .get(url(running, &format!("/fast/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < limit, "slowest request took {slowest:?}");
}

fn dropped(metrics: &str, reason: &str) -> f64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("rampart_trace_spans_dropped_total")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn a_hanging_collector_neither_slows_nor_fails_requests() {
    let collector_addr = hanging_collector().await;
    let (app, _) = upstream().await;
    let running = start(
        &traced_config(
            collector_addr,
            "timeout = \"30s\"\nmax_queue = 8\nbatch_size = 4",
            "",
        ),
        app,
    )
    .await;
    requests_stay_fast(&running, 100, Duration::from_millis(500)).await;
    // The export in flight hangs; the queue filled and the rest was dropped and counted.
    let metrics = metrics_text(&client(), &running).await;
    assert!(dropped(&metrics, "queue_full") >= 100.0, "{metrics}");
}

#[tokio::test]
async fn a_refusing_or_failing_collector_does_not_fail_requests() {
    let (app, _) = upstream().await;
    let refusing = start(&traced_config(closed_port(), "", ""), app).await;
    requests_stay_fast(&refusing, 30, Duration::from_millis(500)).await;

    let (collector_addr, exports) = collector(500).await;
    let failing = start(&traced_config(collector_addr, "", ""), app).await;
    requests_stay_fast(&failing, 30, Duration::from_millis(500)).await;
    wait_spans(&exports, 60).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = metrics_text(&client(), &failing).await;
    assert!(dropped(&metrics, "export_failed") >= 60.0, "{metrics}");
}

#[tokio::test]
async fn reload_applies_new_tracing_settings() {
    let (collector_addr, exports) = collector(200).await;
    let (app, seen) = upstream().await;
    let running = start(SIMPLE, app).await;
    let client = client();
    client.get(url(&running, "/before")).send().await.unwrap();
    assert_eq!(seen.lock().unwrap()[0].traceparent, None);
    running
        .reload(config(&traced_config(collector_addr, "", ""), app))
        .await
        .unwrap();
    client.get(url(&running, "/after")).send().await.unwrap();
    assert!(seen.lock().unwrap()[1].traceparent.is_some());
    wait_spans(&exports, 2).await;
}

#[tokio::test]
async fn tracing_off_passes_trace_headers_unchanged() {
    let (app, seen) = upstream().await;
    let running = start(SIMPLE, app).await;
    let client = client();
    let invalid = format!("00-{}-{PARENT}-01", TRACE.to_uppercase());
    client
        .get(url(&running, "/one"))
        .header("traceparent", &invalid)
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    client.get(url(&running, "/two")).send().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].traceparent.as_deref(), Some(invalid.as_str()));
    assert_eq!(seen[0].tracestate.as_deref(), Some("vendor=abc"));
    assert_eq!(seen[1].traceparent, None);
    assert_eq!(seen[1].tracestate, None);
}

#[test]
fn bad_tracing_settings_are_refused_with_their_place() {
    let problems = config_problems(
        r#"
[tracing]
endpoint = "ftp://collector/v1/traces"
sample_ratio = 1.5
headers = { "bad header" = "x" }
timeout = "0s"
max_queue = 0
batch_interval = "1ms"
"#,
    )
    .to_string();
    for expected in [
        "test.toml:3:1: tracing.endpoint: expected an http:// or https:// OTLP traces URL",
        "test.toml:4:1: tracing.sample_ratio: expected a fraction from 0 to 1",
        "tracing.headers.bad header: expected an HTTP header name",
        "test.toml:6:1: tracing.timeout: expected a duration above zero",
        "test.toml:7:1: tracing.max_queue: expected 1 to 1000000 spans, got 0",
        "test.toml:8:1: tracing.batch_interval: expected at least 10ms",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
    let unknown =
        config_problems("[tracing]\nendpoint = \"http://c/v1/traces\"\nratio = 1\n").to_string();
    assert!(
        unknown.contains("test.toml:3:1: tracing.ratio: unknown field `ratio`"),
        "{unknown}"
    );
    let missing = config_problems("[tracing]\nsample_ratio = 0.5\n").to_string();
    assert!(missing.contains("missing field `endpoint`"), "{missing}");
    let batch = config_problems(
        "[tracing]\nendpoint = \"http://c/v1/traces\"\nmax_queue = 10\nbatch_size = 11\n",
    )
    .to_string();
    assert!(
        batch.contains(
            "test.toml:4:1: tracing.batch_size: expected 1 to max_queue (10) spans, got 11"
        ),
        "{batch}"
    );
}

#[test]
fn an_empty_endpoint_turns_tracing_off() {
    let config = config(
        "[tracing]\nendpoint = \"${UNSET_TRACES_ENDPOINT_FOR_TEST:-}\"\n",
        closed_port(),
    );
    assert!(config.tracing.is_none());
}

#[tokio::test]
async fn the_access_log_carries_the_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    let (collector_addr, exports) = collector(200).await;
    let (app, _) = upstream().await;
    let (port, admin_port) = (free_port(), free_port());
    let config_path = dir.path().join("rampart.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n{}",
            traced_config(collector_addr, "", "").replace("{app}", &app.to_string())
        ),
    )
    .unwrap();
    let log = dir.path().join("stdout.log");
    let mut child = spawn_serve(&config_path, &log, &[]);
    wait_ready(
        &format!("http://127.0.0.1:{admin_port}/health/ready"),
        Duration::from_secs(10),
    )
    .await;
    let response = client()
        .get(format!("http://127.0.0.1:{port}/logged"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_spans(&exports, 2).await;
    send_signal(&child, "TERM");
    wait_exit(&mut child, Duration::from_secs(10));
    let text = std::fs::read_to_string(&log).unwrap();
    let line: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["target"] == "rampart::access")
        .unwrap_or_else(|| panic!("no access line in:\n{text}"));
    assert_eq!(line["trace_id"], TRACE, "{line}");
}

#[tokio::test]
async fn the_redis_rate_limit_check_gets_a_store_span() {
    let settings = format!(
        "url = \"{}\"\nkey_prefix = \"{}\"",
        redis_url(),
        unique_prefix()
    );
    store_spans_are_exported("redis", &settings, "redis").await;
}

#[tokio::test]
async fn the_postgres_rate_limit_check_gets_a_store_span() {
    let database = TestDatabase::create().await;
    let settings = format!("url = \"{}\"", database.url);
    store_spans_are_exported("postgres", &settings, "postgresql").await;
}

/// Two requests on a route limited to one per hour, with the limit kept in the `store`
/// (`[store.<store>]` with `settings`): each check gets a client span whose `db.system.name` is
/// `db_system`, under the request's server span, one allowed and one limited.
async fn store_spans_are_exported(store: &str, settings: &str, db_system: &str) {
    let limits = format!(
        r#"
[store.{store}]
{settings}

[rate_limit]
store = "{store}"
timeout = "2s"

[[rate_limit.policy]]
name = "per_ip"
limit = 1
window = "1h"
"#
    );
    let Traced {
        running, exports, ..
    } = traced(&limits, "", "limits = [\"per_ip\"]").await;
    let client = client();
    assert_eq!(
        client
            .get(url(&running, "/l"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(url(&running, "/l"))
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
    // Two server spans, one attempt span, two store spans.
    let all = wait_spans(&exports, 5).await;
    let stores: Vec<&Value> = all
        .iter()
        .filter(|s| s["name"] == "ratelimit check")
        .collect();
    assert_eq!(stores.len(), 2, "{all:#?}");
    let mut outcomes: Vec<String> = stores
        .iter()
        .map(|s| attr(s, "rampart.outcome").as_str().unwrap().to_owned())
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["allowed", "limited"]);
    for span in stores {
        assert_eq!(attr(span, "db.system.name"), db_system);
        assert_eq!(span["kind"], 3);
        let server = all
            .iter()
            .find(|s| s["spanId"] == span["parentSpanId"])
            .expect("the store span's parent is a server span");
        assert_eq!(server["kind"], 2);
    }
    let limited = of_kind(&all, 2)
        .into_iter()
        .find(|s| attr(s, "http.response.status_code") == "429")
        .unwrap();
    assert!(limited["status"].is_null(), "a 4xx is no server error");
    assert_eq!(attr(&limited, "error.type"), "rate_limited");
}
