//! Fixed, fast upstream for the benchmark harness (`bash bench/run.sh`).
//!
//! Answers every request with `200 OK`, `content-type: application/json` and a
//! small constant body, over HTTP/1.1 keep-alive (or h2c if the client asks);
//! `/json10k` answers a 10 KB JSON document instead (the compression scenario).
//!
//! Usage: `bench-upstream [ADDR]` (default `127.0.0.1:18080`).
//!
//! Runtime: multi-thread with exactly ONE worker thread. The benchmark machine
//! has 2 cores shared by wrk, the proxy under test and this upstream; one
//! worker keeps the upstream's CPU footprint bounded and identical for every
//! proxy, so differences in the results come from the proxies.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const BODY: &[u8] = br#"{"ok":true,"source":"upstream"}"#;

/// A 10 KB JSON list of items, made once.
fn json10k() -> Bytes {
    static DOC: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = String::from("[");
        let mut i = 0;
        while doc.len() < 10_200 {
            if i > 0 {
                doc.push(',');
            }
            doc.push_str(&format!(
                r#"{{"id":{i},"name":"item {i}","price":{}.{:02},"in_stock":{},"tags":["demo","bench"]}}"#,
                i * 7 % 100,
                i * 13 % 100,
                i % 3 != 0
            ));
            i += 1;
        }
        doc.push(']');
        Bytes::from(doc)
    })
    .clone()
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = if req.uri().path() == "/json10k" {
        json10k()
    } else {
        Bytes::from_static(BODY)
    };
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_string())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;

    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(serve(addr))
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!("bench-upstream listening on {addr}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // e.g. EMFILE under heavy load: back off briefly, keep serving.
                eprintln!("accept error: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            // Connection errors (client reset etc.) are expected at the end of
            // a wrk run; ignore them.
            let _ = builder
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle))
                .await;
        });
    }
}
