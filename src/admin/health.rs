//! `/health`: probes every dependency concurrently with a timeout and caches the report briefly,
//! so that frequent probes do not load the dependencies. Today the dependencies are the upstream
//! targets (a TCP connect each) and the shared stores in use (a ping each, plus whether their
//! users run on the fallback); AI providers join as their issue lands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Mutex;

use crate::server::Shared;

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const CACHE_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Status,
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dependency {
    pub name: String,
    pub kind: &'static str,
    pub status: Status,
    pub targets: Vec<TargetHealth>,
    /// Stores only: whether the capabilities using it run on their fallback now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_active: Option<bool>,
    /// The response cache only: its entries, bytes and hit rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::cache::CacheHealth>,
    /// Upstreams with a breaker: `closed`, `open` or `half_open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetHealth {
    pub target: String,
    pub status: &'static str,
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Upstream targets only: whether requests go to it (it passes its checks and is not
    /// ejected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routable: Option<bool>,
    /// Upstream targets only: the rest of its ejection after consecutive failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_ms: Option<u64>,
}

#[derive(Default)]
pub struct HealthCache {
    last: Mutex<Option<(Instant, Report)>>,
}

impl HealthCache {
    pub fn clear(&self) {
        if let Ok(mut last) = self.last.try_lock() {
            *last = None;
        }
    }

    pub async fn report(&self, shared: &Arc<Shared>) -> Report {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            let mut report = report.clone();
            report.uptime_seconds = shared.started.elapsed().as_secs();
            return report;
        }
        let report = probe_all(shared).await;
        *last = Some((Instant::now(), report.clone()));
        report
    }
}

async fn probe_all(shared: &Arc<Shared>) -> Report {
    let pipeline = shared.pipeline.load_full();
    let probes = pipeline.upstreams().iter().map(|upstream| async move {
        let endpoints: Vec<_> = upstream
            .members()
            .list
            .iter()
            .map(|m| m.endpoint.clone())
            .collect();
        let targets = futures_util::future::join_all(endpoints.iter().map(|endpoint| async {
            let mut target = probe_target(endpoint.label().to_owned(), endpoint.addr).await;
            target.routable = Some(endpoint.health.is_available());
            target.ejected_ms = endpoint.health.ejected_for().map(|d| d.as_millis() as u64);
            target
        }))
        .await;
        let usable = |t: &TargetHealth| t.status == "up" && t.routable == Some(true);
        let up = targets.iter().filter(|t| usable(t)).count();
        let circuit = upstream.breaker.as_ref().map(|b| b.state());
        let status = match up {
            0 => Status::Unhealthy,
            _ if circuit == Some(crate::resilience::breaker::State::Open) => Status::Unhealthy,
            n if n == targets.len()
                && circuit.is_none_or(|c| c == crate::resilience::breaker::State::Closed) =>
            {
                Status::Healthy
            }
            _ => Status::Degraded,
        };
        Dependency {
            name: upstream.name.to_string(),
            kind: "upstream",
            status,
            targets,
            fallback_active: None,
            cache: None,
            circuit: circuit.map(|c| c.as_str()),
        }
    });
    let mut dependencies = futures_util::future::join_all(probes).await;
    let stores = shared.retained.load_full().stores.clone();
    let mut store_probes: Vec<
        std::pin::Pin<Box<dyn std::future::Future<Output = Dependency> + Send>>,
    > = Vec::new();
    if let Some(redis) = stores.redis.clone() {
        store_probes.push(Box::pin(async move {
            let ping = tokio::time::timeout(PROBE_TIMEOUT, redis.ping()).await;
            store_dependency(&redis.health, redis_target(&redis.settings.url), ping)
        }));
    }
    if let Some(postgres) = stores.postgres.clone() {
        store_probes.push(Box::pin(async move {
            let ping = tokio::time::timeout(PROBE_TIMEOUT, postgres.ping()).await;
            store_dependency(&postgres.health, "postgres".to_owned(), ping)
        }));
    }
    dependencies.extend(futures_util::future::join_all(store_probes).await);
    if let Some(cache) = pipeline.cache() {
        let health = cache.health();
        // A cache without its Redis tier still answers, from memory: degraded, not down.
        let status = match health.redis_in_use {
            Some(false) => Status::Degraded,
            _ => Status::Healthy,
        };
        dependencies.push(Dependency {
            name: "cache".into(),
            kind: "cache",
            status,
            targets: Vec::new(),
            fallback_active: health.redis_in_use.map(|in_use| !in_use),
            cache: Some(health),
            circuit: None,
        });
    }
    let status = overall(&dependencies);
    Report {
        status,
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: shared.started.elapsed().as_secs(),
        dependencies,
    }
}

/// Healthy when every dependency is; unhealthy when none is usable; degraded in between.
fn overall(dependencies: &[Dependency]) -> Status {
    if dependencies.iter().all(|d| d.status == Status::Healthy) {
        Status::Healthy
    } else if !dependencies.is_empty() && dependencies.iter().all(|d| d.status == Status::Unhealthy)
    {
        Status::Unhealthy
    } else {
        Status::Degraded
    }
}

async fn probe_target(target: String, addr: std::net::SocketAddr) -> TargetHealth {
    let started = Instant::now();
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await;
    let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let (status, error) = match outcome {
        Ok(Ok(_)) => ("up", None),
        Ok(Err(error)) => ("down", Some(error.kind().to_string())),
        Err(_) => ("down", Some("timed out".to_owned())),
    };
    TargetHealth {
        target,
        status,
        latency_ms,
        error,
        routable: None,
        ejected_ms: None,
    }
}

/// A store's entry: its ping now, and whether its users are on their fallback.
fn store_dependency(
    health: &crate::store::StoreHealth,
    target: String,
    ping: Result<Result<Duration, String>, tokio::time::error::Elapsed>,
) -> Dependency {
    let (up, latency_ms, error) = match ping {
        Ok(Ok(latency)) => (true, Some(latency.as_secs_f64() * 1000.0), None),
        Ok(Err(error)) => (false, None, Some(error)),
        Err(_) => (false, None, Some("timed out".to_owned())),
    };
    let fallback_active = health.is_degraded();
    let status = match (up, fallback_active) {
        (true, false) => Status::Healthy,
        (true, true) => Status::Degraded,
        (false, _) => Status::Unhealthy,
    };
    Dependency {
        name: health.store.to_owned(),
        kind: "store",
        status,
        targets: vec![TargetHealth {
            target,
            status: if up { "up" } else { "down" },
            latency_ms,
            error: error.or_else(|| fallback_active.then(|| health.last_error()).flatten()),
            routable: None,
            ejected_ms: None,
        }],
        fallback_active: Some(fallback_active),
        cache: None,
        circuit: None,
    }
}

/// `host:port` of a Redis URL, without credentials.
fn redis_target(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    host.split('/').next().unwrap_or(host).to_owned()
}
