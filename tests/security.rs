//! End to end: security headers, CORS, CSRF, IP rules, request limits and the HTTPS redirect,
//! over real sockets with the demo app behind rampart.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HELMET: &[(&str, &str)] = &[
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains; preload",
    ),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("cross-origin-opener-policy", "same-origin"),
];

fn assert_security_headers(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    for (name, value) in HELMET {
        assert_eq!(
            headers.get(*name).map(|v| v.to_str().unwrap()),
            Some(*value),
            "{name} on {what}"
        );
    }
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(
        headers["permissions-policy"]
            .to_str()
            .unwrap()
            .contains("camera=()")
    );
    assert!(headers.get("server").is_none(), "server header on {what}");
    assert!(
        headers.get("x-powered-by").is_none(),
        "x-powered-by on {what}"
    );
    assert!(
        headers.get("x-request-id").is_some(),
        "request id on {what}"
    );
}

#[tokio::test]
async fn security_headers_on_success_client_errors_and_upstream_failures() {
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
name = "dead"
path_prefix = "/dead"
upstream = "dead"

[[route]]
name = "framed"
path_prefix = "/embed"
rewrite = "/echo"
upstream = "app"
[route.security_headers]
x_frame_options = "SAMEORIGIN"
[route.security_headers.content_security_policy]
frame-ancestors = ["https://partner.example.com"]

[[route]]
name = "api"
path_prefix = "/api"
upstream = "app"
"#
        ),
        app,
    )
    .await;
    let client = client();

    let ok = client
        .get(url(&running, "/api/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_security_headers(&ok, "200 from upstream");

    let upstream_404 = client.get(url(&running, "/api/nope")).send().await.unwrap();
    assert_eq!(upstream_404.status(), 404);
    assert_security_headers(&upstream_404, "404 from upstream");

    let no_route = client
        .get(url(&running, "/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_route.status(), 404);
    assert_security_headers(&no_route, "rampart's own 404");

    let bad_gateway = client.get(url(&running, "/dead/x")).send().await.unwrap();
    assert_eq!(bad_gateway.status(), 502);
    assert_security_headers(&bad_gateway, "rampart's own 502");

    let framed = client.get(url(&running, "/embed")).send().await.unwrap();
    assert_eq!(framed.headers()["x-frame-options"], "SAMEORIGIN");
    let csp = framed.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("frame-ancestors https://partner.example.com"),
        "{csp}"
    );
    assert!(
        csp.contains("default-src 'self'"),
        "inherited directives stay: {csp}"
    );
}

#[tokio::test]
async fn security_headers_can_be_turned_off() {
    let app = demo_app().await;
    let running = start(
        &format!("[security_headers]\nenabled = false\n{SIMPLE}"),
        app,
    )
    .await;
    let response = client()
        .get(url(&running, "/api/items"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("x-frame-options").is_none());
    assert!(
        response.headers().get("x-powered-by").is_none(),
        "leaks are still removed"
    );
}

const CORS: &str = r#"
[cors]
allow_origins = ["https://app.example.com", "https://*.preview.example.com"]
allow_credentials = true
allow_methods = ["GET", "POST", "PUT", "DELETE", "OPTIONS"]
allow_headers = ["Content-Type", "Authorization"]
expose_headers = ["x-request-id"]
max_age = "10m"

[[upstream]]
name = "app"
targets = ["{app}"]

[[route]]
name = "public"
path_prefix = "/public"
rewrite = "/echo"
upstream = "app"
[route.cors]
allow_origins = ["*"]

[[route]]
name = "session"
path_prefix = "/session"
rewrite = "/echo"
csrf = true
upstream = "app"

[[route]]
name = "api"
path_prefix = "/api"
methods = ["GET", "POST", "PATCH"]
upstream = "app"
"#;

#[tokio::test]
async fn cors_preflight_matrix() {
    let app = demo_app().await;
    let running = start(CORS, app).await;
    let client = client();
    let preflight = |origin: &'static str, method: &'static str, headers: &'static str| {
        let mut request = client
            .request(reqwest::Method::OPTIONS, url(&running, "/api/items"))
            .header("origin", origin)
            .header("access-control-request-method", method);
        if !headers.is_empty() {
            request = request.header("access-control-request-headers", headers);
        }
        request.send()
    };

    // Allowed origin, method and headers: rampart answers 204 itself.
    let ok = preflight(
        "https://app.example.com",
        "POST",
        "content-type, authorization",
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 204);
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(h["vary"].to_str().unwrap().contains("Origin"));
    assert_eq!(
        h["x-frame-options"], "DENY",
        "security headers on preflights too"
    );

    // Wildcard subdomain pattern.
    let sub = preflight("https://pr-7.preview.example.com", "GET", "")
        .await
        .unwrap();
    assert_eq!(sub.status(), 204);

    // Refusals: origin, method, header. 403 JSON, and no CORS headers.
    for (origin, method, headers) in [
        ("https://evil.example.net", "GET", ""),
        ("https://preview.example.com", "GET", ""),
        ("https://app.example.com", "PATCH", ""),
        ("https://app.example.com", "POST", "x-admin-override"),
    ] {
        let refused = preflight(origin, method, headers).await.unwrap();
        assert_eq!(refused.status(), 403, "{origin} {method} {headers}");
        assert!(
            refused
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["type"], "cors_rejected");
        assert!(body["error"]["request_id"].is_string());
    }

    // Actual requests: the allowed origin gets headers, another origin none, no origin none.
    let allowed = client
        .get(url(&running, "/api/items"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(
        allowed.headers()["access-control-expose-headers"],
        "x-request-id"
    );
    let other = client
        .get(url(&running, "/api/items"))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        200,
        "the browser, not rampart, blocks the read"
    );
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let same_origin = client
        .get(url(&running, "/api/items"))
        .send()
        .await
        .unwrap();
    assert!(
        same_origin
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // A route with its own policy: any origin, no credentials.
    let public = client
        .get(url(&running, "/public"))
        .header("origin", "https://anyone.org")
        .send()
        .await
        .unwrap();
    assert_eq!(public.headers()["access-control-allow-origin"], "*");
    assert!(
        public
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
}

#[tokio::test]
async fn csrf_needs_an_allowed_origin_on_state_changing_requests() {
    let app = demo_app().await;
    let running = start(CORS, app).await;
    let client = client();
    let post = |headers: &[(&'static str, &'static str)]| {
        let mut request = client
            .post(url(&running, "/session/change-email"))
            .header("cookie", "session=abc")
            .body("{}");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send()
    };
    let cross_site = post(&[("origin", "https://evil.example.net")])
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    let body: Value = cross_site.json().await.unwrap();
    assert_eq!(body["error"]["type"], "csrf_rejected");
    assert_eq!(
        post(&[]).await.unwrap().status(),
        403,
        "no Origin nor Referer"
    );
    assert_eq!(
        post(&[("origin", "https://app.example.com")])
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(&[("referer", "https://app.example.com/settings")])
            .await
            .unwrap()
            .status(),
        200
    );
    let same_host = format!("http://{}", running.http_addrs[0]);
    let same = client
        .post(url(&running, "/session/x"))
        .header("origin", same_host)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200, "same-origin requests pass");
    let read = client
        .get(url(&running, "/session/profile"))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "GET does not change state");
}

#[tokio::test]
async fn ip_allow_and_deny_lists() {
    let app = demo_app().await;
    let running = start(
        r#"
[server]
listen = ["127.0.0.1:0"]
trusted_proxies = ["127.0.0.1"]

[ip_rules]
deny = ["203.0.113.0/24", "2001:db8:bad::/48"]
allow = ["203.0.113.7"]

[[upstream]]
name = "app"
targets = ["{app}"]

[[route]]
name = "admin"
path_prefix = "/admin"
rewrite = "/echo"
upstream = "app"
[route.ip_rules]
allow = ["10.0.0.0/8"]
allow_only = true

[[route]]
name = "api"
path_prefix = "/"
upstream = "app"
"#,
        app,
    )
    .await;
    let client = client();
    let status_from = |ip: &'static str, path: &'static str| {
        let request = client
            .get(url(&running, path))
            .header("x-forwarded-for", ip)
            .send();
        async move { request.await.unwrap().status().as_u16() }
    };
    assert_eq!(status_from("198.51.100.1", "/api/items").await, 200);
    assert_eq!(status_from("203.0.113.9", "/api/items").await, 403);
    assert_eq!(status_from("2001:db8:bad::1", "/api/items").await, 403);
    assert_eq!(
        status_from("203.0.113.7", "/api/items").await,
        200,
        "allowlisted inside a denied range"
    );
    assert_eq!(status_from("10.1.2.3", "/admin").await, 200);
    assert_eq!(
        status_from("198.51.100.1", "/admin").await,
        403,
        "allow_only"
    );
    let denied = client
        .get(url(&running, "/api/items"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["type"], "ip_denied");
}

#[tokio::test]
async fn body_limit_per_route_at_exactly_the_limit_and_one_byte_over() {
    let app = demo_app().await;
    let running = start(
        r#"
[[upstream]]
name = "app"
targets = ["{app}"]

[[route]]
name = "upload"
path_prefix = "/"
rewrite = "/echo"
max_body_bytes = "2MiB"
upstream = "app"
"#,
        app,
    )
    .await;
    let client = client();
    let limit = 2 * 1024 * 1024;
    let exact = client
        .post(url(&running, "/up"))
        .body(vec![b'a'; limit])
        .send()
        .await
        .unwrap();
    assert_eq!(exact.status(), 200);
    let echoed: Value = exact.json().await.unwrap();
    assert_eq!(echoed["body_len"], limit);

    let over = client
        .post(url(&running, "/up"))
        .body(vec![b'a'; limit + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 413);
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["error"]["type"], "payload_too_large");

    // Chunked (no Content-Length): the limit holds while streaming.
    let chunks = futures_util::stream::iter(
        (0..3).map(|_| Ok::<_, std::io::Error>(vec![b'b'; 1024 * 1024])),
    );
    let streamed = client
        .post(url(&running, "/up"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
}

async fn raw_request(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn long_uris_and_large_or_many_headers_get_json_errors() {
    let app = demo_app().await;
    let running = start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nmax_uri_bytes = 1024\nmax_headers = 20\nmax_header_bytes = \"8KiB\"\n{SIMPLE}"
        ),
        app,
    )
    .await;
    let addr = running.http_addrs[0];
    let client = client();

    let long = format!("/echo?q={}", "a".repeat(1100));
    let response = client.get(url(&running, &long)).send().await.unwrap();
    assert_eq!(response.status(), 414);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "uri_too_long");

    let mut many = String::from("GET /echo HTTP/1.1\r\nhost: x\r\n");
    for i in 0..25 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let response = raw_request(addr, many.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    assert!(response.contains("\"headers_too_large\""), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("x-request-id"),
        "{response}"
    );

    let big = format!(
        "GET /echo HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "v".repeat(9000)
    );
    let response = raw_request(addr, big.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    assert!(response.contains("\"headers_too_large\""), "{response}");
}

#[tokio::test]
async fn slow_body_uploads_are_cut_with_408() {
    let app = demo_app().await;
    let running = start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nmin_body_rate = \"1KiB\"\nbody_rate_grace = \"1s\"\n{SIMPLE}"
        ),
        app,
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(running.http_addrs[0])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\nabc")
        .await
        .unwrap();
    // Then nothing: a slowloris body.
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"request_timeout\""), "{response}");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "cut after the grace period, took {elapsed:?}"
    );
}

#[tokio::test]
async fn plain_http_listener_redirects_to_https() {
    let app = demo_app().await;
    let running = start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[server.https_redirect]\nlisten = [\"127.0.0.1:0\"]\nhttps_port = 8443\n{SIMPLE}"
        ),
        app,
    )
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(format!(
            "http://{}/api/items?x=1",
            running.redirect_addrs[0]
        ))
        .header("host", "shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        "https://shop.example.com:8443/api/items?x=1"
    );
}
