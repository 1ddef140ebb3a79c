//! What outlives a reload on the upstream side: endpoints (their pools, health and load) and
//! circuit breakers, looked up by name so that the new pipeline continues where the old one
//! was. A target removed from the config is forgotten once its last request ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use http::uri::Authority;

use super::endpoint::Endpoint;
use super::{Member, Members};
use crate::config::UpstreamConfig;
use crate::resilience::breaker::{Breaker, BreakerSettings};
use crate::resilience::health::TargetHealth;

/// (upstream, configured `host:port`, address).
type EndpointKey = (String, String, SocketAddr);

pub struct UpstreamRegistry {
    workers: usize,
    endpoints: Mutex<HashMap<EndpointKey, Weak<Endpoint>>>,
    breakers: Mutex<HashMap<(String, String), Arc<Breaker>>>,
    /// Set after the first pipeline is built: endpoints that appear later are new targets.
    started: AtomicBool,
}

impl UpstreamRegistry {
    pub fn new(workers: usize) -> Self {
        Self {
            workers,
            endpoints: Mutex::new(HashMap::new()),
            breakers: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
        }
    }

    /// Marks the first build done.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// The members for an upstream whose targets resolved to `resolved` (per target, its
    /// addresses), reusing known endpoints.
    pub fn members(&self, config: &UpstreamConfig, resolved: &[Vec<SocketAddr>]) -> Members {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        endpoints.retain(|_, endpoint| endpoint.strong_count() > 0);
        let started = self.started.load(Ordering::Acquire);
        let mut list = Vec::new();
        for (target, addrs) in config.targets.iter().zip(resolved) {
            for addr in addrs {
                let key = (config.name.clone(), target.authority.clone(), *addr);
                let endpoint = match endpoints.get(&key).and_then(Weak::upgrade) {
                    Some(endpoint) => endpoint,
                    None => {
                        // A target added while running waits for its first passing check.
                        let healthy = !(started && config.health_check.is_some());
                        let authority: Authority = target
                            .authority
                            .parse()
                            .expect("targets are validated as host:port");
                        let label = super::endpoint::label(&target.authority, *addr);
                        let endpoint = Arc::new(Endpoint::new(
                            authority,
                            *addr,
                            TargetHealth::new(&config.name, &label, healthy),
                            self.workers,
                        ));
                        endpoints.insert(key, Arc::downgrade(&endpoint));
                        endpoint
                    }
                };
                if !list
                    .iter()
                    .any(|m: &Member| Arc::ptr_eq(&m.endpoint, &endpoint))
                {
                    list.push(Member::new(endpoint, target.weight));
                }
            }
        }
        Members::new(list)
    }

    /// The breaker of an upstream (`route` empty) or of a route: the same one as before the
    /// reload when its settings did not change.
    pub fn breaker(
        &self,
        settings: &BreakerSettings,
        upstream: &Arc<str>,
        route: &str,
    ) -> Arc<Breaker> {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let key = (upstream.to_string(), route.to_owned());
        if let Some(existing) = breakers.get(&key)
            && existing.settings == *settings
        {
            return existing.clone();
        }
        let breaker = Arc::new(Breaker::new(
            settings.clone(),
            upstream.clone(),
            Arc::from(route),
        ));
        breakers.insert(key, breaker.clone());
        breaker
    }
}
