//! One target address and its keep-alive HTTP/1.1 connections, one idle pool per worker thread
//! (a request and its upstream connection stay on the thread that accepted the request; the
//! pool's lock is never contended). It also carries the target's health and load, which the
//! balancer reads.
//!
//! A connection has no task of its own: the request that uses it drives it, first while waiting
//! for the response head ([`Endpoint::send`]) and then while its body is read ([`PooledBody`]).
//! The whole exchange runs in the downstream connection's task, with no wake-up of another task
//! per request. An idle connection is not polled; checking it out polls it once, which notices
//! an upstream that closed it meanwhile.
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
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::future::Future;
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

/// Pool limits, from the upstream's config (the latest pipeline's).
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub max_idle: usize,
    pub idle_timeout: Duration,
    /// Fold each response time into the endpoint's moving average (`peak_ewma` only).
    pub track_latency: bool,
}

/// The connection's I/O state machine, polled by whichever request holds it.
type Driver = http1::Connection<TokioIo<TcpStream>, ResponseBody>;

/// A keep-alive connection: where requests are handed in, and what writes and reads them.
struct Connection {
    sender: SendRequest<ResponseBody>,
    driver: Driver,
}

impl Connection {
    /// Whether it can take a request now. Polls the driver once, without waiting: that reads
    /// an upstream's close and lets a finished exchange settle. A connection still busy (its
    /// last request body not all written) is not waited for.
    async fn is_ready(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            let ended = Pin::new(&mut self.driver).poll(cx).is_ready();
            Poll::Ready(!ended && self.sender.is_ready())
        })
        .await
    }

    /// Sends `request` and drives the connection until the response head is in. `Err` carries
    /// the request back when it was never written (the connection was already closing).
    async fn exchange(
        &mut self,
        request: Request<ResponseBody>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<ResponseBody>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(request));
        let mut driver = Some(&mut self.driver);
        std::future::poll_fn(|cx| {
            // Once the driver has ended, the response future resolves with its error.
            if let Some(running) = driver.as_mut()
                && Pin::new(&mut **running).poll(cx).is_ready()
            {
                driver = None;
            }
            response.as_mut().poll(cx)
        })
        .await
    }
}

struct IdleConnection {
    connection: Connection,
    since: Instant,
}

pub struct Endpoint {
    /// `host:port` as configured: the `Host` sent upstream and the name in logs.
    pub authority: Authority,
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

    /// Sends `request` (origin-form URI, `Host` already set). Counts the request in the
    /// endpoint's load until its response body ends.
    pub async fn send(
        self: &Arc<Self>,
        request: Request<ResponseBody>,
        pool: PoolSettings,
    ) -> Result<Response<PooledBody>, SendError> {
        // Threads that are not workers use pool 0.
        let worker = crate::server::worker::current().unwrap_or(0) % self.pools.len();
        let guard = LoadGuard::new(self.clone());
        let started = pool.track_latency.then(Instant::now);
        let mut request = request;
        while let Some(mut connection) = self.checkout(worker, pool) {
            if !connection.is_ready().await {
                continue;
            }
            match connection.exchange(request).await {
                Ok(response) => {
                    self.observe(started);
                    return Ok(self.wrap(response, worker, connection, pool, guard));
                }
                Err(mut failed) => match failed.take_message() {
                    // Never written: the pooled connection was already closing. Try another.
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Http(failed.into_error())),
                },
            }
        }
        let mut connection = self.connect(pool.connect_timeout).await?;
        let response = connection
            .exchange(request)
            .await
            .map_err(|failed| SendError::Http(failed.into_error()))?;
        self.observe(started);
        Ok(self.wrap(response, worker, connection, pool, guard))
    }

    fn observe(&self, started: Option<Instant>) {
        if let Some(started) = started {
            self.load.observe(started.elapsed());
        }
    }

    fn wrap(
        self: &Arc<Self>,
        response: Response<Incoming>,
        worker: usize,
        connection: Connection,
        pool: PoolSettings,
        guard: LoadGuard,
    ) -> Response<PooledBody> {
        response.map(|inner| {
            let mut body = PooledBody {
                inner,
                give_back: Some(GiveBack {
                    endpoint: self.clone(),
                    worker,
                    connection,
                    pool,
                }),
                _load: guard,
            };
            if body.inner.is_end_stream() {
                body.release();
            }
            body
        })
    }

    /// An idle connection that has not expired, newest first; expired ones are dropped.
    fn checkout(&self, worker: usize, pool: PoolSettings) -> Option<Connection> {
        let mut idle = self.pools[worker].lock().unwrap_or_else(|e| e.into_inner());
        while let Some(connection) = idle.pop() {
            if connection.since.elapsed() < pool.idle_timeout {
                return Some(connection.connection);
            }
        }
        None
    }

    fn give_back(&self, worker: usize, connection: Connection, pool: PoolSettings) {
        if connection.sender.is_closed() {
            return;
        }
        let mut idle = self.pools[worker].lock().unwrap_or_else(|e| e.into_inner());
        // The oldest sits at the front: drop it once expired, and keep the pool bounded.
        if idle
            .first()
            .is_some_and(|oldest| oldest.since.elapsed() >= pool.idle_timeout)
            || idle.len() >= pool.max_idle
        {
            idle.remove(0);
        }
        idle.push(IdleConnection {
            connection,
            since: Instant::now(),
        });
    }

    async fn connect(&self, timeout: Duration) -> Result<Connection, SendError> {
        let failed = |source: BoxError| SendError::Connect {
            target: self.authority.clone(),
            source,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| failed("connect timed out".into()))?
            .map_err(|error| failed(error.into()))?;
        let _ = stream.set_nodelay(true);
        let (sender, driver) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| failed(error.into()))?;
        Ok(Connection { sender, driver })
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

/// Counts one request in the endpoint's load while it lives.
struct LoadGuard(Arc<Endpoint>);

impl LoadGuard {
    fn new(endpoint: Arc<Endpoint>) -> Self {
        endpoint.load.started();
        Self(endpoint)
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.load.finished();
    }
}

struct GiveBack {
    endpoint: Arc<Endpoint>,
    worker: usize,
    connection: Connection,
    pool: PoolSettings,
}

pin_project_lite::pin_project! {
    /// An upstream response body. Reading it drives its connection; when it has been read to
    /// its end, the connection goes back to the pool. A body dropped early takes its connection
    /// with it (it cannot be reused).
    pub struct PooledBody {
        #[pin]
        inner: Incoming,
        give_back: Option<GiveBack>,
        _load: LoadGuard,
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(back) = self.give_back.take() {
            back.endpoint
                .give_back(back.worker, back.connection, back.pool);
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
        // The driver reads the body off the socket into `inner`. When it has ended, what it
        // read is still in `inner`; the connection itself cannot be reused.
        if let Some(back) = this.give_back.as_mut()
            && Pin::new(&mut back.connection.driver).poll(cx).is_ready()
        {
            *this.give_back = None;
        }
        let polled = this.inner.as_mut().poll_frame(cx);
        let finished = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if finished && let Some(back) = this.give_back.take() {
            back.endpoint
                .give_back(back.worker, back.connection, back.pool);
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
