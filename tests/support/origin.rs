//! A test origin whose answers the request's query chooses, counting the requests it gets per
//! path and query. Used by the cache and compression tests.
//!
//! Query parameters: `cc` (Cache-Control), `vary`, `cookie=1` (Set-Cookie), `status`, `delay`
//! (ms before the head), `size` (body padded to at least this many bytes), `etag` (answers 304
//! to a matching If-None-Match), `ctype` (Content-Type, default application/json), `encoded=1`
//! (Content-Encoding: gzip, body unchanged), `sse=N` (N events 300 ms apart), `fail=1` (503
//! while [`Origin::set_failing`] is on). The JSON body says which request it answered: `n` (this
//! URI's request count), `auth`, `lang`, `ae` (Accept-Encoding seen), `method`, `body`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

#[derive(Default)]
pub struct Origin {
    hits: Mutex<HashMap<String, usize>>,
    failing: AtomicBool,
    pub addr: Mutex<Option<SocketAddr>>,
}

impl Origin {
    /// Requests seen for `path_and_query` (as the origin received it).
    pub fn hits(&self, path_and_query: &str) -> usize {
        *self.hits.lock().unwrap().get(path_and_query).unwrap_or(&0)
    }

    pub fn total(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

/// Starts an origin on a free port.
pub async fn origin() -> (SocketAddr, Arc<Origin>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Origin::default());
    *state.addr.lock().unwrap() = Some(addr);
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(&state, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, state)
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            (
                k.to_owned(),
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect()
}

async fn answer(state: &Origin, req: Request<Incoming>) -> Response<Body> {
    let uri = req.uri().clone();
    let key = uri.path_and_query().map_or("/".into(), |p| p.to_string());
    let n = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.entry(key).or_insert(0);
        *n += 1;
        *n
    };
    let q = query_map(uri.query());
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (auth, lang, ae, inm) = (
        header("authorization"),
        header("accept-language"),
        header("accept-encoding"),
        header("if-none-match"),
    );
    let method = req.method().to_string();
    let body_in = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(ms) = q.get("delay").and_then(|d| d.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut builder = Response::builder();
    if let Some(cc) = q.get("cc") {
        builder = builder.header("cache-control", cc);
    }
    if let Some(vary) = q.get("vary") {
        builder = builder.header("vary", vary);
    }
    if q.contains_key("cookie") {
        builder = builder.header("set-cookie", format!("session=s{n}; HttpOnly"));
    }
    if let Some(etag) = q.get("etag") {
        let tag = format!("\"{etag}\"");
        builder = builder.header("etag", &tag);
        if inm == tag {
            return builder
                .status(304)
                .body(Full::new(Bytes::new()).boxed())
                .unwrap();
        }
    }
    if q.contains_key("encoded") {
        builder = builder.header("content-encoding", "gzip");
    }
    let status: u16 = if q.contains_key("fail") && state.failing.load(Ordering::SeqCst) {
        503
    } else {
        q.get("status").and_then(|s| s.parse().ok()).unwrap_or(200)
    };
    if let Some(count) = q.get("sse").and_then(|c| c.parse::<usize>().ok()) {
        let stream = futures_util::stream::unfold(0, move |i| async move {
            if i == count {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let event = format!("data: event {i} {}\n\n", "x".repeat(2000));
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), i + 1))
        });
        return builder
            .status(status)
            .header("content-type", "text/event-stream")
            .body(StreamBody::new(stream).boxed())
            .unwrap();
    }
    let mut body = serde_json::json!({
        "n": n,
        "auth": auth,
        "lang": lang,
        "ae": ae,
        "method": method,
        "body": String::from_utf8_lossy(&body_in),
    })
    .to_string();
    if let Some(size) = q.get("size").and_then(|s| s.parse::<usize>().ok()) {
        let mut padded = body.trim_end_matches('}').to_owned();
        padded.push_str(",\"pad\":\"");
        let mut i = 0;
        while padded.len() + 2 < size {
            padded.push_str(&format!("item {i} "));
            i += 1;
        }
        padded.push_str("\"}");
        body = padded;
    }
    let ctype = q
        .get("ctype")
        .cloned()
        .unwrap_or_else(|| "application/json".into());
    builder
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap()
}
