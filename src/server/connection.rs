//! One client connection: optional TLS handshake, HTTP/1.1 or HTTP/2 (by ALPN or preface), the
//! protocol limits from config, the idle timeout, and graceful close on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Shared;
use crate::observe::metrics as m;
use crate::proxy::context::{ConnActivity, ConnInfo};

/// Serves `stream` until the client closes it, it idles out, or shutdown drains it.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let settings = shared.pipeline.load().config.server.clone();
    metrics::gauge!(m::CONNECTIONS_OPEN).increment(1.0);
    let _open = scopeguard(|| metrics::gauge!(m::CONNECTIONS_OPEN).decrement(1.0));

    let activity = Arc::new(ConnActivity::default());
    let info = Arc::new(ConnInfo {
        peer,
        tls: tls.is_some(),
        activity: activity.clone(),
    });
    let service = {
        let shared = shared.clone();
        service_fn(move |request| {
            let shared = shared.clone();
            let info = info.clone();
            async move {
                let pipeline = shared.pipeline.load_full();
                Ok::<_, Infallible>(pipeline.handle(request, &info).await)
            }
        })
    };

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        // hyper's own limits sit above rampart's, so that the pipeline answers 431 with JSON
        // for anything between the two; beyond them hyper answers a bare 431.
        .max_buf_size((settings.max_header_bytes * 2).max(16384))
        .max_headers(settings.max_headers * 2)
        .keep_alive(true)
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size((settings.max_header_bytes * 2) as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));

    match tls {
        None => {
            drive(
                builder,
                TokioIo::new(stream),
                service,
                &activity,
                settings.idle_timeout,
                &mut shutdown,
            )
            .await
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(settings.header_read_timeout, acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls_stream)) => {
                    drive(
                        builder,
                        TokioIo::new(tls_stream),
                        service,
                        &activity,
                        settings.idle_timeout,
                        &mut shutdown,
                    )
                    .await
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn drive<I, S>(
    builder: auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    activity: &ConnActivity,
    idle_timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<crate::proxy::body::ObservedBody>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing = *shutdown.borrow();
    if closing {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        let idle_at = activity
            .idle_deadline(idle_timeout)
            .unwrap_or_else(|| std::time::Instant::now() + idle_timeout);
        tokio::select! {
            // The connection first: it is what wakes this task nearly every time.
            biased;
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            changed = shutdown.changed(), if !closing => {
                if changed.is_err() || *shutdown.borrow() {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            _ = tokio::time::sleep_until(idle_at.into()), if !closing => {
                if activity.idle_deadline(idle_timeout).is_some_and(|at| at <= std::time::Instant::now()) {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
