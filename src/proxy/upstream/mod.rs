//! Upstreams: a named set of targets, how one is chosen for an attempt, and the state that
//! outlives reloads.
//!
//! - [`endpoint`]: one target address, its connection pools, health and load
//! - [`registry`]: endpoints and breakers kept across reloads
//! - [`checker`]: active health checks, a background task per upstream
//! - [`dns`]: targets named by DNS, re-resolved every `resolve_interval`
//!
//! An upstream's endpoint list is swapped whole when DNS answers change; picking reads it with
//! one atomic load and chooses with the configured balancer among available endpoints.

pub mod checker;
pub mod dns;
pub mod endpoint;
pub mod registry;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use serde::Deserialize;

pub use endpoint::{Endpoint, Held, PoolSettings, PooledBody};
pub use registry::UpstreamRegistry;

use crate::config::UpstreamConfig;
use crate::observe::metrics::UPSTREAM_DURATION;
use crate::observe::shard::Sharded;
use crate::proxy::body::BoxError;
use crate::resilience::balance::{self, Candidate, Load};
use crate::resilience::breaker::Breaker;

/// Why a request could not be exchanged with the upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made: refused, unreachable, or the connect timeout.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: http::uri::Authority,
        #[source]
        source: BoxError,
    },
    /// The connection failed during the exchange.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// `when_none_healthy`: what an upstream does when no target is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoneHealthy {
    /// Answer 503 at once (or go to the route's fallback).
    #[default]
    Fail,
    /// Use every target as if healthy.
    TryAnyway,
}

/// An endpoint and its configured weight.
pub struct Member {
    pub endpoint: Arc<Endpoint>,
    pub weight: u32,
    /// What requests hold the endpoint by: one handle per thread shard ([`endpoint::Held`]).
    held: Sharded<Held>,
}

impl Member {
    pub fn new(endpoint: Arc<Endpoint>, weight: u32) -> Self {
        Self {
            held: Sharded::from_fn(|| Arc::new(endpoint.clone())),
            endpoint,
            weight,
        }
    }
}

impl Candidate for Member {
    fn load(&self) -> &Load {
        &self.endpoint.load
    }
    fn weight(&self) -> u32 {
        self.weight
    }
    fn is_available(&self) -> bool {
        self.endpoint.health.is_available()
    }
}

/// The endpoints in use and the weighted order they are taken in.
pub struct Members {
    pub list: Vec<Member>,
    schedule: Vec<usize>,
}

impl Members {
    pub fn new(list: Vec<Member>) -> Self {
        let weights: Vec<u32> = list.iter().map(|m| m.weight).collect();
        Self {
            schedule: balance::schedule(&weights),
            list,
        }
    }
}

pub struct Upstream {
    pub name: Arc<str>,
    /// The name again, one `Arc` per thread shard, for a request's record to hold.
    pub record_name: Sharded<Arc<str>>,
    pub config: UpstreamConfig,
    members: ArcSwap<Members>,
    next: AtomicUsize,
    /// The upstream's own breaker, when configured.
    pub breaker: Option<Arc<Breaker>>,
    pub pool: PoolSettings,
    /// Whether passive ejection applies: several targets, or a name that may resolve to
    /// several (a single target is never ejected, as in nginx).
    passive: bool,
    /// Time until the response head.
    pub duration: Arc<crate::observe::histogram::Histogram>,
    registry: Arc<UpstreamRegistry>,
}

impl Upstream {
    /// Builds the upstream from its config: resolves DNS names once (briefly), takes endpoints
    /// and the breaker from the registry, and starts its health checks and re-resolution.
    pub async fn build(config: &UpstreamConfig, registry: &Arc<UpstreamRegistry>) -> Arc<Self> {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let resolved = dns::resolve_all(config).await;
        let members = registry.members(config, &resolved);
        let upstream = Arc::new(Self {
            duration: crate::observe::histogram::histogram(&UPSTREAM_DURATION, &name),
            breaker: config
                .circuit_breaker
                .as_ref()
                .map(|settings| registry.breaker(settings, &name, "")),
            record_name: Sharded::from_fn(|| Arc::from(&*name)),
            name,
            members: ArcSwap::from_pointee(members),
            next: AtomicUsize::new(0),
            pool: PoolSettings {
                connect_timeout: config.connect_timeout,
                max_idle: config.pool_max_idle,
                idle_timeout: config.pool_idle_timeout,
                track_latency: config.balance == balance::Balance::PeakEwma,
                track_load: config.balance != balance::Balance::RoundRobin,
            },
            passive: config.targets.len() > 1 || config.targets.iter().any(|t| t.ip.is_none()),
            registry: registry.clone(),
            config: config.clone(),
        });
        if config.health_check.is_some() {
            checker::spawn(&upstream);
        }
        if config.targets.iter().any(|t| t.ip.is_none()) {
            dns::spawn(&upstream);
        }
        upstream
    }

    /// The endpoints in use now.
    pub fn members(&self) -> arc_swap::Guard<Arc<Members>> {
        self.members.load()
    }

    /// An endpoint for the next attempt, avoiding `avoid` (the last one that failed) when
    /// another is available; `None` when none is (and `when_none_healthy = "fail"`).
    pub fn pick(&self, avoid: Option<&Held>) -> Option<Held> {
        let members = self.members.load();
        let avoid = avoid.and_then(|a| {
            members
                .list
                .iter()
                .position(|m| Arc::ptr_eq(&m.endpoint, a))
        });
        let picked = self
            .config
            .balance
            .pick(&members.list, &members.schedule, &self.next, avoid);
        match picked {
            Some(i) => Some(members.list[i].held.local().clone()),
            None if self.config.when_none_healthy == NoneHealthy::TryAnyway
                && !members.list.is_empty() =>
            {
                let i = members.schedule
                    [self.next.fetch_add(1, Ordering::Relaxed) % members.schedule.len()];
                Some(members.list[i].held.local().clone())
            }
            None => None,
        }
    }

    /// Counts an attempt's result for passive ejection.
    pub fn record(&self, endpoint: &Endpoint, success: bool) {
        if self.passive {
            endpoint.health.record(success, &self.config.passive_health);
        }
    }

    /// Replaces the endpoints after a DNS change.
    fn set_members(&self, members: Members) {
        self.members.store(Arc::new(members));
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish()
    }
}
