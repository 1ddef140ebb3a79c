//! Upstreams: a named set of targets behind pooled keep-alive HTTP/1.1 clients — one client (and
//! pool) per worker thread, so a request and its upstream connection stay on one thread. Targets
//! are used in turn (round robin); richer balancing, health and breakers plug in here later.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::Authority;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::ResponseBody;
use crate::config::UpstreamConfig;
use crate::observe::metrics::UPSTREAM_REQUEST_DURATION;

pub type UpstreamClient = Client<HttpConnector, ResponseBody>;

thread_local! {
    static WORKER_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `index` (threads that are not workers use pool 0).
pub fn set_worker_index(index: usize) {
    WORKER_INDEX.with(|cell| cell.set(index));
}

pub struct Upstream {
    pub name: Arc<str>,
    pub targets: Vec<Authority>,
    next: AtomicUsize,
    clients: Vec<UpstreamClient>,
    /// Time until the response head.
    pub duration: metrics::Histogram,
}

impl Upstream {
    /// One client per worker thread.
    pub fn new(config: &UpstreamConfig, workers: usize) -> Self {
        let clients = (0..workers.max(1)).map(|_| Self::client(config)).collect();
        let targets = config
            .targets
            .iter()
            .map(|target| target.parse().expect("targets are validated as host:port"))
            .collect();
        let name: Arc<str> = Arc::from(config.name.as_str());
        Self {
            duration: metrics::histogram!(UPSTREAM_REQUEST_DURATION, "upstream" => name.clone()),
            name,
            targets,
            next: AtomicUsize::new(0),
            clients,
        }
    }

    /// The calling worker's client.
    pub fn client_for_this_worker(&self) -> &UpstreamClient {
        let index = WORKER_INDEX.with(Cell::get);
        &self.clients[index % self.clients.len()]
    }

    fn client(config: &UpstreamConfig) -> UpstreamClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector)
    }

    /// The next target in turn.
    pub fn pick(&self) -> &Authority {
        let index = match self.targets.len() {
            1 => 0,
            n => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        &self.targets[index]
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
