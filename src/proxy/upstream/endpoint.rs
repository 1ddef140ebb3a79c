//! One target address and its keep-alive HTTP/1.1 connections, one idle pool per worker thread
//! (a request and its upstream connection stay on the thread that accepted the request; the
//! pool's lock is never contended). It also carries the target's health and load, which the
//! balancer reads.
//!
//! An endpoint outlives reloads (the registry hands the same one to every pipeline that has
//! its address), so its pooled connections and health survive a config change; a removed
//! target's endpoint lives until its last in-flight request ends.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::SendError;
use crate::proxy::body::{BoxError, ResponseBody};
use crate::resilience::balance::Load;
use crate::resilience::health::TargetHealth;

/// An endpoint's name in `/health`, logs and metrics: its address, and the configured name when
/// that differs.
pub fn label(authority: &str, addr: std::net::SocketAddr) -> String {
    let address = addr.to_string();
    if address == authority {
        address
    } else {
        format!("{authority} ({address})")
    }
}

/// A request's hold on an endpoint: a clone of its thread's handle ([`super::Member`]), whose
/// reference count only that thread touches, where a clone of the endpoint's own `Arc` would
/// pass that count's cache line between the workers on every request.
pub type Held = Arc<Arc<Endpoint>>;

/// Pool limits, from the upstream's config (the latest pipeline's).
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub max_idle: usize,
    pub idle_timeout: Duration,
    /// Fold each response time into the endpoint's moving average (`peak_ewma` only).
    pub track_latency: bool,
    /// Count requests in flight in the endpoint's load (`least_requests` and `peak_ewma`,
    /// the balancers that read it).
    pub track_load: bool,
}

struct IdleConnection {
    sender: SendRequest<ResponseBody>,
    since: Instant,
}

pub struct Endpoint {
    /// `host:port` as configured: the `Host` sent upstream and the name in logs.
    pub authority: Authority,
    /// The authority as a `Host` header value, made once.
    pub host: HeaderValue,
    /// Where connections go.
    pub addr: std::net::SocketAddr,
    pub health: TargetHealth,
    pub load: Load,
    pools: Vec<Mutex<Vec<IdleConnection>>>,
}

impl Endpoint {
    pub fn new(
        authority: Authority,
        addr: std::net::SocketAddr,
        health: TargetHealth,
        workers: usize,
    ) -> Self {
        Self {
            host: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            authority,
            addr,
            health,
            load: Load::default(),
            pools: (0..workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        }
    }

    /// How the endpoint is named in `/health`, logs and metrics.
    pub fn label(&self) -> &str {
        self.health.target()
    }

    /// Sends `request` (origin-form URI, `Host` already set) to the endpoint `held`. Counts the
    /// request in the endpoint's load until its response body ends, when `pool` says the
    /// balancer reads it. `now` is the caller's reading of the clock, to judge pooled
    /// connections' age and start the latency measure by.
    pub async fn send(
        held: &Held,
        mut request: Request<ResponseBody>,
        pool: PoolSettings,
        now: Instant,
    ) -> Result<Response<PooledBody>, SendError> {
        let this: &Endpoint = held;
        // Threads that are not workers use pool 0.
        let worker = crate::server::worker::current().unwrap_or(0) % this.pools.len();
        let guard = LoadGuard::new(held.clone(), pool.track_load);
        let started = pool.track_latency.then_some(now);
        if let Some(mut sender) = this.checkout(worker, pool, now) {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    this.observe(started);
                    return Ok(this.wrap(response, worker, sender, pool, guard));
                }
                Err(mut failed) => match failed.take_message() {
                    // Never written: the pooled connection was already closing. Use a new one.
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Http(failed.into_error())),
                },
            }
        }
        // Boxed: a new connection's state (connect, handshake) is most of this future's size,
        // which every request would otherwise carry and copy.
        Box::pin(async move {
            let mut sender = this.connect(pool.connect_timeout).await?;
            let response = sender.send_request(request).await?;
            this.observe(started);
            Ok(this.wrap(response, worker, sender, pool, guard))
        })
        .await
    }

    fn observe(&self, started: Option<Instant>) {
        if let Some(started) = started {
            self.load.observe(started.elapsed());
        }
    }

    fn wrap(
        &self,
        response: Response<Incoming>,
        worker: usize,
        sender: SendRequest<ResponseBody>,
        pool: PoolSettings,
        guard: LoadGuard,
    ) -> Response<PooledBody> {
        response.map(|inner| {
            let mut body = PooledBody {
                inner,
                give_back: Some(GiveBack {
                    worker,
                    sender,
                    pool,
                }),
                load: guard,
            };
            if body.inner.is_end_stream() {
                body.release();
            }
            body
        })
    }

    /// A ready idle connection, newest first; closed and expired ones are dropped on the way.
    fn checkout(
        &self,
        worker: usize,
        pool: PoolSettings,
        now: Instant,
    ) -> Option<SendRequest<ResponseBody>> {
        let mut idle = self.pools[worker].lock().unwrap_or_else(|e| e.into_inner());
        while let Some(connection) = idle.pop() {
            if now.saturating_duration_since(connection.since) < pool.idle_timeout
                && connection.sender.is_ready()
            {
                return Some(connection.sender);
            }
        }
        None
    }

    fn give_back(&self, worker: usize, sender: SendRequest<ResponseBody>, pool: PoolSettings) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.pools[worker].lock().unwrap_or_else(|e| e.into_inner());
        // The oldest sits at the front: drop it once expired, and keep the pool bounded.
        if idle
            .first()
            .is_some_and(|oldest| now.saturating_duration_since(oldest.since) >= pool.idle_timeout)
            || idle.len() >= pool.max_idle
        {
            idle.remove(0);
        }
        idle.push(IdleConnection { sender, since: now });
    }

    async fn connect(&self, timeout: Duration) -> Result<SendRequest<ResponseBody>, SendError> {
        let failed = |source: BoxError| SendError::Connect {
            target: self.authority.clone(),
            source,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| failed("connect timed out".into()))?
            .map_err(|error| failed(error.into()))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| failed(error.into()))?;
        // The connection is driven on this worker's runtime, next to the requests that use it.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("authority", &self.authority)
            .field("addr", &self.addr)
            .finish()
    }
}

/// The response body's hold on the endpoint, to give its connection back to; counts the
/// request in the endpoint's load while it lives, when the balancer reads that.
struct LoadGuard {
    endpoint: Held,
    counted: bool,
}

impl LoadGuard {
    fn new(endpoint: Held, counted: bool) -> Self {
        if counted {
            endpoint.load.started();
        }
        Self { endpoint, counted }
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        if self.counted {
            self.endpoint.load.finished();
        }
    }
}

/// A connection to give back to the endpoint's pool of `worker`.
struct GiveBack {
    worker: usize,
    sender: SendRequest<ResponseBody>,
    pool: PoolSettings,
}

pin_project_lite::pin_project! {
    /// An upstream response body; when it has been read to its end, its connection goes back
    /// to the pool. A body dropped early takes its connection with it (it cannot be reused).
    pub struct PooledBody {
        #[pin]
        inner: Incoming,
        give_back: Option<GiveBack>,
        load: LoadGuard,
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(back) = self.give_back.take() {
            self.load
                .endpoint
                .give_back(back.worker, back.sender, back.pool);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let finished = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if finished && let Some(back) = this.give_back.take() {
            this.load
                .endpoint
                .give_back(back.worker, back.sender, back.pool);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
