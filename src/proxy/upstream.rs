//! Upstreams: a named set of targets behind one pooled keep-alive HTTP/1.1 client. Targets are used
//! in turn (round robin); richer balancing, health and breakers plug in here later.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::Authority;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::ResponseBody;
use crate::config::UpstreamConfig;

pub type UpstreamClient = Client<HttpConnector, ResponseBody>;

pub struct Upstream {
    pub name: Arc<str>,
    pub targets: Vec<Authority>,
    next: AtomicUsize,
    pub client: UpstreamClient,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let targets = config
            .targets
            .iter()
            .map(|target| target.parse().expect("targets are validated as host:port"))
            .collect();
        Self {
            name: Arc::from(config.name.as_str()),
            targets,
            next: AtomicUsize::new(0),
            client,
        }
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
