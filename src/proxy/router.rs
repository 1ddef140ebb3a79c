//! Route matching: the first route, in config order, whose host, path and method all match.
//! Validation guarantees that no route is hidden behind an earlier one.

use std::sync::Arc;

use http::Method;

use crate::config::RouteConfig;
use crate::observe::metrics::RouteMetrics;
use crate::observe::shard::Sharded;

/// A route ready for the data path.
pub struct Route {
    pub name: Arc<str>,
    pub config: RouteConfig,
    /// One `Arc` per thread shard (the same counts behind each): a request's record holds
    /// its thread's.
    pub metrics: Sharded<Arc<RouteMetrics>>,
    /// The route's rate-limit policies and their decision counters.
    pub limits: crate::ratelimit::RouteLimits,
    /// `None` when the route does not cache.
    pub cache: Option<crate::cache::RouteCache>,
    /// `[route.retry]`, with its budget.
    pub retry: Option<crate::resilience::retry::RetryPolicy>,
    /// `[route.circuit_breaker]`.
    pub breaker: Option<Arc<crate::resilience::breaker::Breaker>>,
    /// `[route.concurrency]`.
    pub shed: Option<crate::resilience::shed::Shedder>,
}

#[derive(Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl Router {
    /// Builds the routes; a route's breaker comes from `registry` (kept across reloads) and is
    /// labelled with its upstream's name.
    pub fn new(
        configs: &[RouteConfig],
        upstream_names: &[Arc<str>],
        registry: &crate::proxy::upstream::UpstreamRegistry,
    ) -> Self {
        let routes = configs
            .iter()
            .map(|config| {
                let name: Arc<str> = Arc::from(config.name.as_str());
                let resilience = &config.resilience;
                Arc::new(Route {
                    metrics: Sharded::from_fn(|| Arc::new(RouteMetrics::new(name.clone()))),
                    limits: crate::ratelimit::RouteLimits::new(&name, &config.limits),
                    cache: config
                        .cache
                        .clone()
                        .map(|policy| crate::cache::RouteCache::new(&name, policy)),
                    retry: resilience
                        .retry
                        .clone()
                        .map(crate::resilience::retry::RetryPolicy::new),
                    breaker: resilience.circuit_breaker.as_ref().map(|settings| {
                        registry.breaker(settings, &upstream_names[config.upstream], &name)
                    }),
                    shed: resilience
                        .concurrency
                        .clone()
                        .map(crate::resilience::shed::Shedder::new),
                    name,
                    config: config.clone(),
                })
            })
            .collect();
        Self { routes }
    }

    /// `host` is the request's host, lower-case, without port.
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> Option<&Arc<Route>> {
        self.routes.iter().find(|route| {
            let config = &route.config;
            config
                .host
                .as_ref()
                .is_none_or(|pattern| host.is_some_and(|h| pattern.matches(h)))
                && config.path.matches(path)
                && config
                    .methods
                    .as_ref()
                    .is_none_or(|methods| methods.contains(method))
        })
    }
}

/// The request's host from `Host` or the URI authority: lower-case, port removed.
pub fn request_host<'a>(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> Option<String> {
    let raw = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    let without_port = if raw.starts_with('[') {
        raw.split_once(']')
            .map_or(raw, |(v6, _)| &raw[..v6.len() + 1])
    } else {
        raw.rsplit_once(':').map_or(raw, |(host, _)| host)
    };
    Some(without_port.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_port() {
        let uri: http::Uri = "/x".parse().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, "API.Example.com:8080".parse().unwrap());
        assert_eq!(
            request_host(&uri, &headers).as_deref(),
            Some("api.example.com")
        );
        headers.insert(http::header::HOST, "[::1]:8080".parse().unwrap());
        assert_eq!(request_host(&uri, &headers).as_deref(), Some("[::1]"));
        let uri: http::Uri = "https://h2.example/x".parse().unwrap();
        assert_eq!(
            request_host(&uri, &http::HeaderMap::new()).as_deref(),
            Some("h2.example")
        );
    }
}
