//! Response compression end to end: gzip, br and zstd by the client's `Accept-Encoding`, the size
//! threshold, the content-type allowlist, the `x-no-compression` opt-out, the per-route switch,
//! bodies already encoded and server-sent events left alone, and cached entries encoded for each
//! client from one stored copy.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::origin::origin;
use support::*;

const CONFIG: &str = r#"
[compression]
min_bytes = "1KB"

[[upstream]]
name = "origin"
targets = ["{app}"]

[[route]]
name = "cached"
path_prefix = "/cached"
upstream = "origin"
[route.cache]
ttl = "60s"

[[route]]
name = "raw"
path_prefix = "/raw"
upstream = "origin"
compress = false

[[route]]
name = "all"
upstream = "origin"
"#;

/// The decoded body; `None` when it does not decode.
fn decode(encoding: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .ok()?;
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .ok()?;
        }
        "zstd" => out = zstd::stream::decode_all(data).ok()?,
        "" => out = data.to_vec(),
        other => panic!("unexpected encoding {other}"),
    }
    Some(out)
}

struct Reply {
    encoding: String,
    headers: reqwest::header::HeaderMap,
    raw: Vec<u8>,
    body: Value,
}

async fn fetch(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = client.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let encoding = headers
        .get("content-encoding")
        .map_or("", |v| v.to_str().unwrap())
        .to_owned();
    let raw = response.bytes().await.unwrap().to_vec();
    let body = decode(&encoding, &raw)
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or(Value::Null);
    Reply {
        encoding,
        headers,
        raw,
        body,
    }
}

#[tokio::test]
async fn encodings_follow_accept_encoding_q_values() {
    let (addr, _origin) = origin().await;
    let running = start(CONFIG, addr).await;
    let client = client();
    let path = url(&running, "/api/report?size=10000");
    let identity = fetch(&client, &path, &[]).await;
    assert_eq!(identity.encoding, "");
    assert_eq!(identity.headers["vary"], "accept-encoding");
    let size = identity.raw.len();
    for (accept, expected) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip;q=0.5, br;q=0.9", "br"),
        ("br;q=0, gzip", "gzip"),
        ("deflate", ""),
        ("*", "zstd"),
    ] {
        let reply = fetch(&client, &path, &[("accept-encoding", accept)]).await;
        assert_eq!(reply.encoding, expected, "{accept}");
        assert!(reply.body["pad"].as_str().unwrap().len() > 9000, "{accept}");
        if !expected.is_empty() {
            assert!(
                reply.raw.len() < size / 3,
                "{accept}: {} of {size}",
                reply.raw.len()
            );
            assert!(reply.headers.get("content-length").is_none());
        }
    }
    let metrics = metrics_text(&client, &running).await;
    assert!(
        metrics.contains(r#"rampart_compression_responses_total{encoding="zstd"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn threshold_types_opt_out_and_route_switch() {
    let (addr, _origin) = origin().await;
    let running = start(CONFIG, addr).await;
    let client = client();
    let gzip = [("accept-encoding", "gzip")];
    // Below the threshold (by Content-Length): as is.
    assert_eq!(
        fetch(&client, &url(&running, "/api/small"), &gzip)
            .await
            .encoding,
        ""
    );
    assert_eq!(
        fetch(&client, &url(&running, "/api/big?size=1100"), &gzip)
            .await
            .encoding,
        "gzip"
    );
    // Not an allowed type.
    let png = fetch(
        &client,
        &url(&running, "/api/img?size=5000&ctype=image/png"),
        &gzip,
    )
    .await;
    assert_eq!(png.encoding, "");
    assert!(png.headers.get("vary").is_none());
    // The opt-out header.
    let opted = fetch(
        &client,
        &url(&running, "/api/big?size=5000"),
        &[("accept-encoding", "gzip"), ("x-no-compression", "1")],
    )
    .await;
    assert_eq!(opted.encoding, "");
    // A route that does not compress.
    assert_eq!(
        fetch(&client, &url(&running, "/raw/big?size=5000"), &gzip)
            .await
            .encoding,
        ""
    );
    // Already encoded by the upstream: left as it is.
    let encoded = fetch(
        &client,
        &url(&running, "/api/enc?size=5000&encoded=1"),
        &[("accept-encoding", "br")],
    )
    .await;
    assert_eq!(encoded.encoding, "gzip");
    assert!(
        serde_json::from_slice::<Value>(&encoded.raw).is_ok(),
        "not encoded twice"
    );
    // no-transform is respected.
    let nt = fetch(
        &client,
        &url(&running, "/api/nt?size=5000&cc=no-transform"),
        &gzip,
    )
    .await;
    assert_eq!(nt.encoding, "");
}

#[tokio::test]
async fn server_sent_events_pass_event_by_event_uncompressed() {
    let (addr, _origin) = origin().await;
    let running = start(CONFIG, addr).await;
    let client = client();
    let started = Instant::now();
    let mut response = client
        .get(url(&running, "/events?sse=4"))
        .header("accept-encoding", "gzip, br, zstd")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("content-encoding").is_none());
    let first = response.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: event 0"));
    while response.chunk().await.unwrap().is_some() {}
    let total = started.elapsed();
    assert!(total >= Duration::from_millis(850), "{total:?}");
    assert!(
        first_at < Duration::from_millis(400),
        "first event after {first_at:?}"
    );
}

#[tokio::test]
async fn a_cached_entry_is_stored_once_and_encoded_for_each_client() {
    let (addr, origin) = origin().await;
    let running = start(CONFIG, addr).await;
    let client = client();
    let path = url(&running, "/cached/data?size=10000");
    let gzip = fetch(&client, &path, &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        (
            gzip.encoding.as_str(),
            gzip.headers["x-cache"].to_str().unwrap()
        ),
        ("gzip", "MISS")
    );
    // The upstream was asked for the identity form: rampart encodes.
    assert_eq!(gzip.body["ae"], "");
    let br = fetch(&client, &path, &[("accept-encoding", "br")]).await;
    let zstd = fetch(&client, &path, &[("accept-encoding", "zstd")]).await;
    let plain = fetch(&client, &path, &[]).await;
    let gzip2 = fetch(&client, &path, &[("accept-encoding", "gzip")]).await;
    for (reply, encoding) in [(&br, "br"), (&zstd, "zstd"), (&plain, ""), (&gzip2, "gzip")] {
        assert_eq!(reply.headers["x-cache"], "HIT");
        assert_eq!(reply.encoding, encoding);
        assert_eq!(reply.body, gzip.body, "{encoding}");
        assert_eq!(
            reply.headers["content-length"].to_str().unwrap(),
            reply.raw.len().to_string()
        );
        assert!(
            reply.headers["vary"]
                .to_str()
                .unwrap()
                .contains("accept-encoding")
        );
    }
    assert_eq!(origin.hits("/cached/data?size=10000"), 1);
    // The encoded forms count against the memory bound.
    let state = get_json(&client, &admin_url(&running, "/cache")).await;
    let bytes = state["memory_bytes"].as_u64().unwrap();
    assert!(
        bytes > (plain.raw.len() + br.raw.len() + zstd.raw.len()) as u64,
        "{state}"
    );
}
