//! Observability end to end: health endpoints, Prometheus metrics (names, labels, and
//! `promtool check metrics`), and the JSON access log with its redaction.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

#[tokio::test]
async fn health_endpoints_report_dependencies() {
    let app = demo_app().await;
    let running = start(SIMPLE, app).await;
    let client = client();
    let live = client
        .get(admin_url(&running, "/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = client
        .get(admin_url(&running, "/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let health = client
        .get(admin_url(&running, "/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].is_u64());
    let dependency = &body["dependencies"][0];
    assert_eq!(dependency["name"], "app");
    assert_eq!(dependency["status"], "healthy");
    assert_eq!(dependency["targets"][0]["status"], "up");
    assert!(dependency["targets"][0]["latency_ms"].is_f64());
}

#[tokio::test]
async fn health_is_503_when_a_dependency_is_down() {
    let app = demo_app().await;
    let dead = closed_port();
    let running = start(
        &format!(
            "[[upstream]]\nname = \"up\"\ntargets = [\"{app}\"]\n[[upstream]]\nname = \"half\"\ntargets = [\"{app}\", \"{dead}\"]\n[[upstream]]\nname = \"down\"\ntargets = [\"{dead}\"]\n[[route]]\nname = \"all\"\nupstream = \"up\"\n"
        ),
        app,
    )
    .await;
    let health = client()
        .get(admin_url(&running, "/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    let by_name = |name: &str| {
        body["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("up")["status"], "healthy");
    assert_eq!(by_name("half")["status"], "degraded");
    assert_eq!(by_name("down")["status"], "unhealthy");
    assert_eq!(by_name("down")["targets"][0]["status"], "down");
    // Readiness is about this instance, not its dependencies.
    let ready = client()
        .get(admin_url(&running, "/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn metrics_expose_the_required_series_and_pass_promtool() {
    let app = demo_app().await;
    let running = start(
        &format!(
            "[[upstream]]\nname = \"app\"\ntargets = [\"{app}\"]\n[[upstream]]\nname = \"dead\"\ntargets = [\"{}\"]\n[[route]]\nname = \"broken\"\npath_prefix = \"/broken\"\nupstream = \"dead\"\n[[route]]\nname = \"metrics-api\"\nupstream = \"app\"\n",
            closed_port()
        ),
        app,
    )
    .await;
    let client = client();
    for _ in 0..3 {
        body_of(client.get(url(&running, "/api/items"))).await;
    }
    client
        .post(url(&running, "/api/items"))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        client
            .get(url(&running, "/broken"))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text = metrics_text(&client, &running).await;
    for needle in [
        r#"rampart_http_requests_total{route="metrics-api",method="GET",status="200"} 3"#,
        r#"rampart_http_requests_total{route="metrics-api",method="POST",status="201"} 1"#,
        r#"rampart_http_requests_total{route="broken",method="GET",status="502"}"#,
        r#"rampart_http_request_duration_seconds_bucket{route="metrics-api",le="0.005"}"#,
        r#"rampart_upstream_request_duration_seconds_count{upstream="app"}"#,
        r#"rampart_upstream_errors_total{upstream="dead",kind="connect"}"#,
        "rampart_http_requests_in_flight",
        r#"rampart_build_info{version=""#,
        "# TYPE rampart_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    promtool_check(&text);
}

#[tokio::test]
async fn body_sizes_are_histograms_by_route() {
    let app = demo_app().await;
    let running = start(
        &format!("[[upstream]]\nname = \"app\"\ntargets = [\"{app}\"]\n[[route]]\nname = \"sizes\"\nupstream = \"app\"\n"),
        app,
    )
    .await;
    let client = client();
    // A declared length: 1000 bytes of JSON.
    let declared = format!("{{\"name\":\"{}\"}}", "d".repeat(1000 - 11));
    assert_eq!(declared.len(), 1000);
    body_of(
        client
            .post(url(&running, "/api/items"))
            .header("content-type", "application/json")
            .body(declared),
    )
    .await;
    // A chunked body of 5000 bytes in five frames: counted as it streams through.
    let chunked = format!("{{\"name\":\"{}\"}}", "c".repeat(5000 - 11)).into_bytes();
    let frames: Vec<Result<Vec<u8>, std::io::Error>> =
        chunked.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(frames));
    body_of(
        client
            .post(url(&running, "/api/items"))
            .header("content-type", "application/json")
            .body(stream),
    )
    .await;
    let listed = body_of(client.get(url(&running, "/api/items"))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text = metrics_text(&client, &running).await;
    let value = |name: &str| -> f64 {
        let prefix = format!("{name}{{route=\"sizes\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("missing {prefix} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("rampart_http_request_body_bytes_count"), 3.0);
    // The GET has no body.
    assert_eq!(value("rampart_http_request_body_bytes_sum"), 6000.0);
    assert_eq!(value("rampart_http_response_body_bytes_count"), 3.0);
    assert!(value("rampart_http_response_body_bytes_sum") >= listed.len() as f64);
    assert!(
        text.contains(r#"rampart_http_request_body_bytes_bucket{route="sizes",le="1024"} 2"#),
        "the GET (0) and the 1000-byte body fall in le=1024:\n{text}"
    );
    assert!(text.contains("# TYPE rampart_http_response_body_bytes histogram"));
    promtool_check(&text);
}

/// `promtool check metrics` must accept the exposition. promtool comes from Debian's
/// `prometheus` package, which scripts/test installs.
fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (apt-get install prometheus; scripts/test does this)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && report.trim().is_empty(),
        "promtool: {report}\n{text}"
    );
}

#[tokio::test]
async fn access_log_has_one_json_line_per_request_without_secrets() {
    let app = demo_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = (free_port(), free_port());
    let config = dir.path().join("rampart.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{proxy}\"]\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[log]\nformat = \"json\"\nredact_query_keys = [\"api_key\", \"token\", \"sig\"]\n[[auth]]\nname = \"partners\"\ntype = \"api_key\"\nquery = \"apikey\"\nkeys = [{{ name = \"p\", sha256 = \"{}\" }}]\n[[upstream]]\nname = \"app\"\ntargets = [\"{app}\"]\n[[upstream]]\nname = \"dead\"\ntargets = [\"{}\"]\n[[route]]\nname = \"dead\"\npath_prefix = \"/dead\"\nupstream = \"dead\"\n[[route]]\nname = \"keyed\"\npath_prefix = \"/keyed\"\nrewrite = \"/echo\"\nauth = \"partners\"\nupstream = \"app\"\n[[route]]\nname = \"all\"\nupstream = \"app\"\n",
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"SECRET-APIKEY-8")
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            closed_port()
        ),
    )
    .unwrap();
    let log = dir.path().join("out.log");
    let mut child = spawn_serve(&config, &log, &[]);
    wait_ready(
        &format!("http://127.0.0.1:{admin}/health/ready"),
        Duration::from_secs(15),
    )
    .await;
    let client = client();
    let response = client
        .get(format!("http://127.0.0.1:{proxy}/echo?api_key=SECRET-KEY-1&Token=SECRET-TOKEN-2&sig=SECRET-SIG-3&page=2"))
        .header("authorization", "Bearer SECRET-BEARER-4")
        .header("cookie", "session=SECRET-COOKIE-5")
        .header("x-request-id", "log-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let failed = client
        .get(format!(
            "http://127.0.0.1:{proxy}/dead?token=SECRET-TOKEN-6"
        ))
        .header("x-request-id", "log-test-2")
        .header("authorization", "Bearer SECRET-BEARER-7")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 502);
    failed.bytes().await.unwrap();
    // An API key in a query parameter is redacted whatever the parameter is called.
    let keyed = client
        .get(format!(
            "http://127.0.0.1:{proxy}/keyed?apikey=SECRET-APIKEY-8"
        ))
        .header("x-request-id", "log-test-3")
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200);
    keyed.bytes().await.unwrap();

    support::send_signal(&child, "TERM");
    let exit = support::wait_exit(&mut child, Duration::from_secs(10));
    assert!(exit.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("SECRET"),
        "a secret reached the log:\n{text}"
    );

    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "rampart::access")
        .collect();
    assert_eq!(access.len(), 3, "one line per request:\n{text}");
    let first = access[0];
    for field in [
        "timestamp",
        "level",
        "request_id",
        "route",
        "method",
        "path",
        "status",
        "duration_ms",
        "upstream",
        "bytes",
        "client_ip",
    ] {
        assert!(!first[field].is_null(), "access log lacks {field}: {first}");
    }
    assert_eq!(first["request_id"], "log-test-1");
    assert_eq!(first["route"], "all");
    assert_eq!(first["status"], 200);
    assert_eq!(
        first["path"],
        "/echo?api_key=[REDACTED]&Token=[REDACTED]&sig=[REDACTED]&page=2"
    );
    assert_eq!(access[1]["status"], 502);
    assert_eq!(access[1]["error"], "upstream_unavailable");

    // The upstream failure's own log line carries the request id of the request it belongs to.
    let warning = lines
        .iter()
        .find(|l| l["message"] == "upstream request failed")
        .expect("the failure is logged");
    assert_eq!(warning["request_id"], "log-test-2", "{warning}");
}
