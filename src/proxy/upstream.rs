//! Upstreams: a named set of targets and their keep-alive HTTP/1.1 connections.
//!
//! Each worker thread has its own pool per target (a request and its upstream connection stay on
//! the thread that accepted the request; the lock is never contended). Targets are used in turn
//! (round robin); balancing, health and breakers plug in here later. A pooled connection that
//! turns out to be closed before the request was written is replaced by a fresh one once, which
//! is safe for any method because nothing reached the upstream.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use tokio::net::TcpStream;

use super::body::{BoxError, ResponseBody};
use crate::config::UpstreamConfig;
use crate::observe::metrics::UPSTREAM_REQUEST_DURATION;

/// Why a request could not be exchanged with the upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made: refused, unreachable, DNS, or the connect timeout.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: Authority,
        #[source]
        source: BoxError,
    },
    /// The connection failed during the exchange.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

struct IdleConnection {
    sender: SendRequest<ResponseBody>,
    since: Instant,
}

/// One worker's idle connections, per target index.
type WorkerPool = Vec<Vec<IdleConnection>>;

pub struct Upstream {
    pub name: Arc<str>,
    pub targets: Vec<Authority>,
    next: AtomicUsize,
    pools: Vec<Mutex<WorkerPool>>,
    connect_timeout: Duration,
    max_idle: usize,
    idle_timeout: Duration,
    /// Time until the response head.
    pub duration: metrics::Histogram,
}

impl Upstream {
    /// One pool per worker thread.
    pub fn new(config: &UpstreamConfig, workers: usize) -> Self {
        let targets: Vec<Authority> = config
            .targets
            .iter()
            .map(|target| target.parse().expect("targets are validated as host:port"))
            .collect();
        let pools = (0..workers.max(1))
            .map(|_| Mutex::new(targets.iter().map(|_| Vec::new()).collect()))
            .collect();
        let name: Arc<str> = Arc::from(config.name.as_str());
        Self {
            duration: metrics::histogram!(UPSTREAM_REQUEST_DURATION, "upstream" => name.clone()),
            name,
            targets,
            next: AtomicUsize::new(0),
            pools,
            connect_timeout: config.connect_timeout,
            max_idle: config.pool_max_idle,
            idle_timeout: config.pool_idle_timeout,
        }
    }

    /// The index of the next target in turn.
    pub fn pick(&self) -> usize {
        match self.targets.len() {
            1 => 0,
            n => self.next.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    /// Sends `request` (origin-form URI, `Host` already set) to target `target`.
    pub async fn send(
        self: &Arc<Self>,
        target: usize,
        request: Request<ResponseBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        // Threads that are not workers use pool 0.
        let worker = crate::server::worker::current().unwrap_or(0) % self.pools.len();
        let mut request = request;
        if let Some(mut sender) = self.checkout(worker, target) {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.wrap(response, worker, target, sender)),
                Err(mut failed) => match failed.take_message() {
                    // Never written: the pooled connection was already closing. Use a new one.
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Http(failed.into_error())),
                },
            }
        }
        let mut sender = self.connect(target).await?;
        let response = sender.send_request(request).await?;
        Ok(self.wrap(response, worker, target, sender))
    }

    fn wrap(
        self: &Arc<Self>,
        response: Response<Incoming>,
        worker: usize,
        target: usize,
        sender: SendRequest<ResponseBody>,
    ) -> Response<PooledBody> {
        response.map(|inner| {
            let mut body = PooledBody {
                inner,
                give_back: Some(GiveBack {
                    upstream: self.clone(),
                    worker,
                    target,
                    sender,
                }),
            };
            if body.inner.is_end_stream() {
                body.release();
            }
            body
        })
    }

    /// A ready idle connection, newest first; closed and expired ones are dropped on the way.
    fn checkout(&self, worker: usize, target: usize) -> Option<SendRequest<ResponseBody>> {
        let mut pool = self.pools[worker].lock().unwrap_or_else(|e| e.into_inner());
        let idle = &mut pool[target];
        while let Some(connection) = idle.pop() {
            if connection.since.elapsed() < self.idle_timeout && connection.sender.is_ready() {
                return Some(connection.sender);
            }
        }
        None
    }

    fn give_back(&self, worker: usize, target: usize, sender: SendRequest<ResponseBody>) {
        if sender.is_closed() {
            return;
        }
        let mut pool = self.pools[worker].lock().unwrap_or_else(|e| e.into_inner());
        let idle = &mut pool[target];
        // The oldest sits at the front: drop it once expired, and keep the pool bounded.
        if idle
            .first()
            .is_some_and(|oldest| oldest.since.elapsed() >= self.idle_timeout)
            || idle.len() >= self.max_idle
        {
            idle.remove(0);
        }
        idle.push(IdleConnection {
            sender,
            since: Instant::now(),
        });
    }

    async fn connect(&self, target: usize) -> Result<SendRequest<ResponseBody>, SendError> {
        let authority = &self.targets[target];
        let failed = |source: BoxError| SendError::Connect {
            target: authority.clone(),
            source,
        };
        let stream =
            tokio::time::timeout(self.connect_timeout, TcpStream::connect(authority.as_str()))
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

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("targets", &self.targets)
            .finish()
    }
}

struct GiveBack {
    upstream: Arc<Upstream>,
    worker: usize,
    target: usize,
    sender: SendRequest<ResponseBody>,
}

pin_project_lite::pin_project! {
    /// An upstream response body; when it has been read to its end, its connection goes back
    /// to the pool. A body dropped early takes its connection with it (it cannot be reused).
    pub struct PooledBody {
        #[pin]
        inner: Incoming,
        give_back: Option<GiveBack>,
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(back) = self.give_back.take() {
            back.upstream
                .give_back(back.worker, back.target, back.sender);
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
            back.upstream
                .give_back(back.worker, back.target, back.sender);
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
