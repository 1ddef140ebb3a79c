//! One client connection: optional TLS handshake, HTTP/1.1 or HTTP/2 (by ALPN or preface), the
//! protocol limits from config, the header-read and idle timeouts (one lazy timer per connection),
//! and graceful close on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Shared;
use crate::config::ServerConfig;
use crate::observe::metrics as m;
use crate::proxy::context::{ConnActivity, ConnInfo, IdleLimit};

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
        peer_text: crate::proxy::forwarded::ip_header_value(peer.ip()),
        tls: tls.is_some(),
        activity: activity.clone(),
        attempt_timer: Default::default(),
    });
    let service = {
        let shared = shared.clone();
        service_fn(move |request| shared.pipeline.load_full().handle(request, info.clone()))
    };

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The header-read timeout is rampart's (`close_signal`): hyper's own makes, arms and
        // drops a timer for every request head (measured: 3.5% of a request's instructions,
        // 11% of its user CPU time).
        .header_read_timeout(None)
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
                &settings,
                &mut shutdown,
            )
            .await
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(settings.header_read_timeout, acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls_stream)) => {
                    if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        activity.set_http2();
                    }
                    drive(
                        builder,
                        TokioIo::new(tls_stream),
                        service,
                        &activity,
                        &settings,
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
    settings: &ServerConfig,
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
    let close = close_signal(
        activity,
        settings.idle_timeout,
        settings.header_read_timeout,
        shutdown,
    );
    tokio::pin!(close);
    // The close signal is polled only when its own waker fired, not on every wake-up of the
    // connection (one per read and write): that is what a `select!` would cost per request.
    let close_woken = Arc::new(BranchWaker::default());
    let close_waker = Waker::from(close_woken.clone());
    let mut task: Option<Waker> = None;
    let mut closing = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
            return Poll::Ready(());
        }
        let moved = !task
            .as_ref()
            .is_some_and(|known| known.will_wake(cx.waker()));
        if moved {
            task = Some(cx.waker().clone());
            close_woken.wake_task(cx.waker().clone());
        }
        if !closing
            && (close_woken.take() || moved)
            && let Poll::Ready(close) = close.as_mut().poll(&mut Context::from_waker(&close_waker))
        {
            if close == Close::Cut {
                tracing::debug!("no complete request head within the header-read or idle timeout");
                return Poll::Ready(());
            }
            closing = true;
            connection.as_mut().graceful_shutdown();
            // The connection acts on it when next polled.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await
}

/// How a connection ends early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// When its requests are done: rampart is shutting down, or an HTTP/2 connection idled out.
    Graceful,
    /// At once: an HTTP/1 connection has waited too long for a request head (nothing is in
    /// flight), as hyper's own header-read timeout would.
    Cut,
}

/// Resolves when the connection should close: rampart is shutting down, or the connection has
/// waited too long for a request ([`ConnActivity::idle_limit`]).
///
/// One timer per connection, re-armed only when it fires: requests in between move the
/// deadline without touching it.
async fn close_signal(
    activity: &ConnActivity,
    idle_timeout: Duration,
    header_read_timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Close {
    if *shutdown.borrow() {
        return Close::Graceful;
    }
    let check_every = idle_timeout.min(header_read_timeout);
    loop {
        let next = activity
            .idle_limit(idle_timeout, header_read_timeout)
            .map_or_else(|| std::time::Instant::now() + check_every, |(at, _)| at);
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return Close::Graceful;
                }
            }
            _ = tokio::time::sleep_until(next.into()) => {
                match activity.idle_limit(idle_timeout, header_read_timeout) {
                    Some((at, limit)) if at <= std::time::Instant::now() => {
                        return match limit {
                            IdleLimit::Head => Close::Cut,
                            IdleLimit::Idle => Close::Graceful,
                        };
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A waker for one branch of a task's future: it notes that the branch was woken, then wakes
/// the task. The task polls the branch only when it was.
#[derive(Default)]
struct BranchWaker {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl BranchWaker {
    /// Whether the branch was woken since the last call.
    fn take(&self) -> bool {
        self.woken.load(Ordering::Relaxed) && self.woken.swap(false, Ordering::AcqRel)
    }

    /// The task to wake from now on.
    fn wake_task(&self, task: Waker) {
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }
}

impl Wake for BranchWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(task) = &*self.task.lock().unwrap_or_else(|e| e.into_inner()) {
            task.wake_by_ref();
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
