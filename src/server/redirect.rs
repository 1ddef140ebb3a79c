//! The optional plain-HTTP listener that sends every request to HTTPS with `308 Permanent
//! Redirect` (method and body preserved). It runs on the control runtime: it carries no
//! application traffic, only the redirects.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::body::{ResponseBody, full};
use crate::proxy::error::error_response;
use crate::proxy::request_id;

/// Binds `addr` and serves redirects until `stop` turns true. Returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    https_port: u16,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = super::stopped(&mut stop) => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            tokio::spawn(async move {
                let service = service_fn(move |request| async move {
                    Ok::<_, Infallible>(redirect(&request, https_port))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

/// `http://host[:port]/path?q` → `https://host[:https_port]/path?q`.
fn redirect(request: &Request<Incoming>, https_port: u16) -> Response<ResponseBody> {
    let request_id = request_id::resolve(request.headers());
    let host = crate::proxy::router::request_host(request.uri(), request.headers());
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a Host header is required",
            request_id.to_str().unwrap_or_default(),
        );
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{host}{port}{target}");
    let mut response = Response::new(full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(&request_id::X_REQUEST_ID, request_id);
    response
}
