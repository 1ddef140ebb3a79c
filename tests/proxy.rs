//! End to end: routing and rewrites, error bodies, request ids, forwarded headers, hop-by-hop
//! headers, body limits, HTTP/2 (h2c and TLS by ALPN) and streaming, over real sockets.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn echo(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn routes_match_in_order_and_rewrite_paths() {
    let app = demo_app().await;
    let running = start(
        r#"
[[upstream]]
name = "app"
targets = ["{app}"]

[[route]]
name = "by-host"
host = "*.example.com"
path_prefix = "/"
rewrite = "/echo/host"
upstream = "app"

[[route]]
name = "strip"
path_prefix = "/svc"
strip_prefix = true
upstream = "app"

[[route]]
name = "legacy"
path = "/legacy"
rewrite = "/api/items/2"
upstream = "app"

[[route]]
name = "post-only"
path_prefix = "/writes"
methods = ["POST"]
rewrite = "/echo/writes"
upstream = "app"

[[route]]
name = "api"
path_prefix = "/api/"
upstream = "app"
"#,
        app,
    )
    .await;
    let client = client();

    let stripped = echo(&client, &url(&running, "/svc/echo/x?q=1")).await;
    assert_eq!(stripped["path"], "/echo/x");
    assert_eq!(stripped["query"], "q=1");

    let legacy: Value = get_json(&client, &url(&running, "/legacy")).await;
    assert_eq!(legacy["id"], 2);

    let by_host: Value = client
        .get(url(&running, "/some/where"))
        .header("host", "tenant.example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_host["path"], "/echo/host/some/where");
    // The target's authority is sent as Host unless the route preserves it.
    assert_eq!(by_host["headers"]["host"], app.to_string());
    assert_eq!(by_host["headers"]["x-forwarded-host"], "tenant.example.com");

    let post: Value = client
        .post(url(&running, "/writes"))
        .body("abc")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(post["path"], "/echo/writes");
    assert_eq!(post["body_len"], 3);

    // GET /writes matches no route: methods are part of the match.
    let get = client.get(url(&running, "/writes")).send().await.unwrap();
    assert_eq!(get.status(), 404);
    // `/svcx` is not under the `/svc` prefix.
    assert_eq!(
        client
            .get(url(&running, "/svcx"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let items = client
        .get(url(&running, "/api/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(items.status(), 200);
    assert!(items.bytes().await.unwrap().len() > 1024);
}

#[tokio::test]
async fn preserve_host_sends_the_client_host() {
    let app = demo_app().await;
    let running = start(
        r#"
[[upstream]]
name = "app"
targets = ["{app}"]
[[route]]
name = "all"
preserve_host = true
upstream = "app"
"#,
        app,
    )
    .await;
    let seen: Value = client()
        .get(url(&running, "/echo"))
        .header("host", "api.example.org")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["host"], "api.example.org");
}

fn assert_error_body(body: &Value, code: u16, kind: &str, request_id: &str) {
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert_eq!(error["type"], kind, "{body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(error["request_id"], request_id);
    let text = body.to_string();
    assert!(!text.contains("127.0.0.1"), "no internal detail in {text}");
    assert!(
        !text.to_lowercase().contains("connection refused"),
        "no internal detail in {text}"
    );
}

#[tokio::test]
async fn no_route_is_404_json_with_request_id() {
    let app = demo_app().await;
    let running = start(
        r#"
[[upstream]]
name = "app"
targets = ["{app}"]
[[route]]
name = "api"
path_prefix = "/api"
upstream = "app"
"#,
        app,
    )
    .await;
    let response = client()
        .get(url(&running, "/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/json");
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_error_body(&body, 404, "not_found", &id);
}

#[tokio::test]
async fn unreachable_upstream_is_502_json() {
    let running = start(SIMPLE, closed_port()).await;
    let response = client()
        .get(url(&running, "/api/items"))
        .header("x-request-id", "req-502")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-request-id"], "req-502");
    let body: Value = response.json().await.unwrap();
    assert_error_body(&body, 502, "upstream_unavailable", "req-502");
}

#[tokio::test]
async fn slow_upstream_is_504_json_at_the_route_timeout() {
    let app = demo_app().await;
    let running = start(
        r#"
[[upstream]]
name = "app"
targets = ["{app}"]
[[route]]
name = "slow"
path = "/slow"
timeout = "300ms"
upstream = "app"
"#,
        app,
    )
    .await;
    let started = Instant::now();
    let response = client()
        .get(url(&running, "/slow?ms=3000"))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 504);
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(2000),
        "{elapsed:?}"
    );
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_error_body(&body, 504, "upstream_timeout", &id);
}

#[tokio::test]
async fn request_ids_are_kept_when_well_formed_and_generated_otherwise() {
    let app = demo_app().await;
    let running = start(SIMPLE, app).await;
    let client = client();

    let response = client
        .get(url(&running, "/echo"))
        .header("x-request-id", "client-id_1.2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-id_1.2");
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["headers"]["x-request-id"], "client-id_1.2");

    for bad in ["has spaces", "<script>", &"x".repeat(200)] {
        let response = client
            .get(url(&running, "/echo"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let returned = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(returned, bad);
        assert_eq!(returned.len(), 36, "a UUID replaces {bad:?}");
        let seen: Value = response.json().await.unwrap();
        assert_eq!(
            seen["headers"]["x-request-id"],
            returned.as_str(),
            "the same id goes upstream"
        );
    }

    let first = client.get(url(&running, "/echo")).send().await.unwrap();
    let second = client.get(url(&running, "/echo")).send().await.unwrap();
    assert_ne!(
        first.headers()["x-request-id"],
        second.headers()["x-request-id"]
    );
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_peers_are_replaced() {
    let app = demo_app().await;
    let running = start(SIMPLE, app).await;
    let seen: Value = client()
        .get(url(&running, "/echo"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("host", "shop.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headers = &seen["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "shop.example");
}

#[tokio::test]
async fn forwarded_headers_from_trusted_proxies_are_extended() {
    let app = demo_app().await;
    let running = start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ntrusted_proxies = [\"127.0.0.0/8\"]\n{SIMPLE}"
        ),
        app,
    )
    .await;
    let seen: Value = client()
        .get(url(&running, "/echo"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "public.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headers = &seen["headers"];
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "public.example");
}

/// Sends raw HTTP/1.1 so the test controls every header byte.
async fn raw_request(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response within 10 s")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let app = demo_app().await;
    let running = start(SIMPLE, app).await;
    let response = raw_request(
        running.http_addrs[0],
        "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close, x-hop\r\nx-hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\nx-end-to-end: kept\r\n\r\n",
    )
    .await;
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let seen: Value = serde_json::from_str(body).unwrap();
    let headers = seen["headers"].as_object().unwrap();
    for hop in ["x-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(
            !headers.contains_key(hop),
            "{hop} was forwarded: {headers:?}"
        );
    }
    assert_eq!(headers["x-end-to-end"], "kept");
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_streamed() {
    let app = demo_app().await;
    let running = start(
        &format!("[server]\nlisten = [\"127.0.0.1:0\"]\nmax_body_bytes = \"1KiB\"\n{SIMPLE}"),
        app,
    )
    .await;
    let client = client();
    let small = client
        .post(url(&running, "/echo"))
        .body(vec![b'a'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);

    let declared = client
        .post(url(&running, "/echo"))
        .body(vec![b'a'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    let body: Value = declared.json().await.unwrap();
    assert_eq!(body["error"]["type"], "payload_too_large");

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![b'b'; 512])).collect();
    let streamed = client
        .post(url(&running, "/echo"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let app = demo_app().await;
    let running = start(SIMPLE, app).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .get(url(&running, "/api/items/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let item: Value = response.json().await.unwrap();
    assert_eq!(item["id"], 1);
    // Host comes from :authority on HTTP/2.
    let seen: Value = get_json(&client, &url(&running, "/echo")).await;
    assert_eq!(
        seen["headers"]["x-forwarded-host"],
        running.http_addrs[0].to_string()
    );
}

#[tokio::test]
async fn tls_negotiates_http2_and_http1_by_alpn() {
    let app = demo_app().await;
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let text = format!(
        "[server]\nlisten = []\n[server.tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n{SIMPLE}",
        cert_path.display(),
        key_path.display()
    );
    let running = start(&text, app).await;
    let addr = running.tls_addrs[0];
    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let build = |h1_only: bool| {
        let builder = reqwest::Client::builder()
            .tls_certs_only([root.clone()])
            .resolve("localhost", addr);
        let builder = if h1_only {
            builder.http1_only()
        } else {
            builder
        };
        builder.build().unwrap()
    };
    let https = format!("https://localhost:{}/echo", addr.port());

    let response = build(false).get(&https).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");

    let response = build(true).get(&https).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

/// Reads a streaming body and returns when each chunk arrived, relative to the response head.
async fn chunk_arrivals(mut response: reqwest::Response) -> Vec<(Duration, String)> {
    let head = Instant::now();
    let mut arrivals = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        arrivals.push((head.elapsed(), String::from_utf8_lossy(&chunk).into_owned()));
    }
    arrivals
}

#[tokio::test]
async fn sse_events_arrive_one_by_one() {
    let app = demo_app().await;
    let running = start(SIMPLE, app).await;
    for client in [
        client(),
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap(),
    ] {
        let response = client
            .get(url(&running, "/events?count=4&interval_ms=300"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let arrivals = chunk_arrivals(response).await;
        let events: Vec<&(Duration, String)> = arrivals
            .iter()
            .filter(|(_, text)| text.contains("data:"))
            .collect();
        assert_eq!(events.len(), 4, "each event is its own chunk: {arrivals:?}");
        assert!(
            events[0].0 < Duration::from_millis(200),
            "first event not delayed: {arrivals:?}"
        );
        for pair in events.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(
                gap >= Duration::from_millis(200),
                "events spaced as sent: {arrivals:?}"
            );
        }
    }
}

#[tokio::test]
async fn streamed_chat_completion_passes_through_chunk_by_chunk() {
    let app = demo_app().await;
    let running = start(SIMPLE, app).await;
    let response = client()
        .post(url(&running, "/v1/chat/completions?delay_ms=100"))
        .json(&serde_json::json!({
            "model": "demo", "stream": true,
            "messages": [{"role": "user", "content": "one two three four"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let arrivals = chunk_arrivals(response).await;
    assert!(arrivals.len() >= 5, "{arrivals:?}");
    let total = arrivals.last().unwrap().0;
    assert!(
        arrivals[0].0 + Duration::from_millis(300) <= total,
        "streamed, not buffered: {arrivals:?}"
    );
    let text: String = arrivals.iter().map(|(_, t)| t.as_str()).collect();
    assert!(text.trim_end().ends_with("data: [DONE]"));
    assert!(text.contains("\"usage\""));
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream() {
    let app = demo_app().await;
    let running = start(SIMPLE, app).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..64).map(|_| Ok(vec![b'z'; 4096])).collect();
    let seen: Value = client()
        .post(url(&running, "/echo"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["body_len"], 64 * 4096);
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let app = demo_app().await;
    let running = start(
        &format!("[server]\nlisten = [\"127.0.0.1:0\"]\nmax_header_bytes = \"8KiB\"\n{SIMPLE}"),
        app,
    )
    .await;
    let big = format!(
        "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    let response = raw_request(running.http_addrs[0], &big).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    let fits = "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Small: a\r\n\r\n";
    assert!(
        raw_request(running.http_addrs[0], fits)
            .await
            .starts_with("HTTP/1.1 200")
    );
}

/// Connects to `addr`, sends `sent`, and asserts that the server closes the connection within
/// `within` of that.
async fn assert_closed_within(
    addr: std::net::SocketAddr,
    sent: &[u8],
    within: std::ops::Range<Duration>,
) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(sent).await.unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 65536];
    let waited = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after 10 s"),
        }
    };
    assert!(
        within.contains(&waited),
        "closed after {waited:?}, expected {within:?}"
    );
}

/// rampart in front of the demo app with these `[server]` timeouts (as config text).
async fn start_with_timeouts(
    idle_timeout: &str,
    header_read_timeout: &str,
) -> rampart::server::Running {
    let app = demo_app().await;
    start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nidle_timeout = \"{idle_timeout}\"\nheader_read_timeout = \"{header_read_timeout}\"\n{SIMPLE}"
        ),
        app,
    )
    .await
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed() {
    let running = start_with_timeouts("600ms", "1500ms").await;
    let addr = running.http_addrs[0];

    // A keep-alive connection is closed after the idle timeout once its request is done.
    assert_closed_within(
        addr,
        b"GET /api/items/1 HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(500)..Duration::from_millis(1400),
    )
    .await;

    // A client that never finishes its head is cut off at the shorter of the header-read and
    // idle timeouts (here the idle one).
    assert_closed_within(
        addr,
        b"GET /api/items/1 HTTP/1.1\r\nHost: x\r\n",
        Duration::from_millis(500)..Duration::from_millis(1400),
    )
    .await;
}

#[tokio::test]
async fn the_header_read_timeout_bounds_the_wait_for_each_http1_head_but_not_http2() {
    let running = start_with_timeouts("10s", "800ms").await;
    let addr = running.http_addrs[0];

    // HTTP/1.1: a new connection whose head never completes is cut at the header-read timeout.
    assert_closed_within(
        addr,
        b"GET /api/items/1 HTTP/1.1\r\nHost: x\r\n",
        Duration::from_millis(700)..Duration::from_secs(3),
    )
    .await;

    // So is one whose next head never completes after a full exchange, long before the idle
    // timeout.
    assert_closed_within(
        addr,
        b"GET /api/items/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /api/items/2 HTTP/1.1\r\nHost: x\r\n",
        Duration::from_millis(700)..Duration::from_secs(3),
    )
    .await;

    // HTTP/2 (h2c): a connection idle between requests is held for the idle timeout. One
    // connection, driven by hand: a cut would fail the second request.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    for path in ["/api/items/1", "/api/items/2"] {
        let request = hyper::Request::get(format!("http://{addr}{path}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

/// An upstream that counts the connections it accepts and closes idle keep-alive connections
/// after `idle_close`.
async fn counting_upstream(
    idle_close: Duration,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(idle_close)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = connection.await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_stale_ones_replaced() {
    use std::sync::atomic::Ordering;
    let (upstream, accepted) = counting_upstream(Duration::from_millis(150)).await;
    let running = start(
        &format!("[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n{SIMPLE}"),
        upstream,
    )
    .await;
    let client = client();
    for _ in 0..50 {
        let response = client.get(url(&running, "/x")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "50 sequential requests share one upstream connection"
    );

    // The upstream closes idle connections after 150 ms; requests after longer pauses still
    // succeed on a fresh connection.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let response = client.get(url(&running, "/x")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}
