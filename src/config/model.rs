//! The resolved configuration: addresses parsed, names resolved to indices, defaults applied.
//! This is what the rest of rampart reads; it is built only by `validate` and never changed after.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use ipnet::IpNet;

pub use super::file::LogFormat;
use crate::security::attack_filter::AttackFilter;
use crate::security::auth::{AuthSettings, ClaimRules};
use crate::security::blocklist::BlockingSettings;
use crate::security::cors::CorsPolicy;
use crate::security::headers::HeaderSet;
use crate::security::ip_rules::IpRules;
use crate::security::validation::RequestValidator;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    /// Security headers for responses that match no route.
    pub default_headers: Arc<HeaderSet>,
    /// Progressive blocking; `None` when off.
    pub blocking: Option<BlockingSettings>,
    /// Authentication providers (built, with their JWKS fetched, when the pipeline is built).
    pub auth: Vec<AuthSettings>,
    /// The config file's folder: relative paths in settings resolve from here.
    pub base_dir: PathBuf,
    /// Shared stores, as written (opened when the server starts).
    pub stores: crate::store::StoresSection,
    /// Rate limiting; `None` without a `[rate_limit]` section.
    pub rate_limit: Option<crate::ratelimit::policy::RateLimitConfig>,
    /// Alert rules and notifiers (empty: the evaluator does nothing).
    pub alerts: crate::observe::alerts::config::AlertsConfig,
    /// The response cache's stores; `None` when no route caches.
    pub cache: Option<crate::cache::settings::CacheConfig>,
    /// Distributed tracing; `None` when off.
    pub tracing: Option<crate::observe::trace::config::TracingConfig>,
    /// Error reporting; `None` when off (no section or an empty DSN).
    pub error_reporting: Option<crate::observe::error_report::config::ErrorReportingConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// Worker threads (at least 1).
    pub workers: usize,
    pub tls: Option<TlsConfig>,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub trusted_proxies: Vec<IpNet>,
    pub drain_timeout: Duration,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    /// Bytes per second; 0 when the check is off.
    pub min_body_rate: u64,
    pub body_rate_grace: Duration,
    pub https_redirect: Option<HttpsRedirectConfig>,
}

#[derive(Debug, Clone)]
pub struct HttpsRedirectConfig {
    pub listen: Vec<SocketAddr>,
    pub https_port: u16,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificates and key already loaded, ALPN `h2` and `http/1.1`.
    pub server_config: Arc<rustls::ServerConfig>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// The whole filter: `level` and the per-module `levels` (tracing `EnvFilter` syntax).
    pub level: String,
    pub file: Option<LogFileConfig>,
    pub access_log: bool,
    /// Fraction of requests below 400 logged (errors always are).
    pub access_log_sample: f64,
    pub redact_query_keys: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct LogFileConfig {
    pub directory: PathBuf,
    pub max_size: u64,
    pub max_files: usize,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub targets: Vec<TargetConfig>,
    pub connect_timeout: Duration,
    pub pool_max_idle: usize,
    pub pool_idle_timeout: Duration,
    pub balance: crate::resilience::balance::Balance,
    pub resolve_interval: Duration,
    pub when_none_healthy: crate::proxy::upstream::NoneHealthy,
    pub health_check: Option<crate::resilience::health::ActiveSettings>,
    pub passive_health: crate::resilience::health::PassiveSettings,
    pub circuit_breaker: Option<crate::resilience::breaker::BreakerSettings>,
}

/// One configured target: an address, or a DNS name resolved to addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetConfig {
    /// `host:port` as written: the `Host` sent upstream.
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// Set when `host` is an IP address (no resolving).
    pub ip: Option<std::net::IpAddr>,
    pub weight: u32,
}

/// A route's resilience settings.
#[derive(Debug, Clone, Default)]
pub struct RouteResilience {
    /// Across all attempts and fallbacks.
    pub deadline: Option<Duration>,
    pub retry: Option<crate::resilience::retry::RetrySettings>,
    pub circuit_breaker: Option<crate::resilience::breaker::BreakerSettings>,
    pub concurrency: Option<crate::resilience::shed::ShedSettings>,
    /// Indices into [`Config::upstreams`], tried in order after the route's own.
    pub fallback: Vec<usize>,
    pub fallback_response: Option<Arc<StaticResponse>>,
}

/// A configured static answer.
#[derive(Debug, Clone)]
pub struct StaticResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub host: Option<HostMatch>,
    pub path: PathMatch,
    /// `None` matches every method.
    pub methods: Option<Vec<Method>>,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub rewrite: Rewrite,
    pub preserve_host: bool,
    pub timeout: Duration,
    pub max_body_bytes: u64,
    pub security: RouteSecurity,
    /// Rate-limit policies; all must admit a request.
    pub limits: Vec<Arc<crate::ratelimit::policy::Policy>>,
    /// `None` when the route does not cache.
    pub cache: Option<Arc<crate::cache::settings::RoutePolicy>>,
    /// `None` when the route does not compress.
    pub compression: Option<Arc<crate::compression::Compression>>,
    pub resilience: RouteResilience,
}

/// A route's edge-security policies, built once per config.
#[derive(Debug, Clone, Default)]
pub struct RouteSecurity {
    pub headers: Arc<HeaderSet>,
    pub cors: Option<Arc<CorsPolicy>>,
    pub ip_rules: Arc<IpRules>,
    pub csrf: bool,
    pub validations: Vec<Validation>,
    /// `None` when the route does not filter.
    pub attack_filter: Option<Arc<AttackFilter>>,
    /// Indices into [`Config::auth`]; empty when the route needs no authentication.
    pub auth: Vec<usize>,
    /// Requests without credentials pass anonymously.
    pub auth_optional: bool,
    pub require: Option<ClaimRules>,
}

/// Schemas for the requests of some methods of a route.
#[derive(Clone)]
pub struct Validation {
    /// `None` applies to every method.
    pub methods: Option<Vec<Method>>,
    pub validator: Arc<RequestValidator>,
}

impl std::fmt::Debug for Validation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validation")
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

/// How a route matches the request's host (port and case ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: one or more labels before it.
    Suffix(String),
}

impl HostMatch {
    pub fn parse(pattern: &str) -> Option<Self> {
        let pattern = pattern.to_ascii_lowercase();
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        };
        match pattern.strip_prefix("*.") {
            Some(rest) if valid_name(rest) => Some(Self::Suffix(format!(".{rest}"))),
            Some(_) => None,
            None if valid_name(&pattern) => Some(Self::Exact(pattern)),
            None => None,
        }
    }

    /// `host` must already be lower-case without a port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }

    /// Whether every host `other` matches is also matched by `self`.
    pub fn covers(&self, other: &HostMatch) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Suffix(_), Self::Exact(b)) => self.matches(b),
            (Self::Suffix(a), Self::Suffix(b)) => b.ends_with(a.as_str()),
            (Self::Exact(_), Self::Suffix(_)) => false,
        }
    }
}

impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path itself or anything below it: `/api` matches `/api`, `/api/x`, not `/apix`.
    Prefix(String),
    Exact(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(exact) => path == exact,
            Self::Prefix(prefix) => prefix_matches(prefix, path),
        }
    }

    /// Whether every path `other` matches is also matched by `self`.
    pub fn covers(&self, other: &PathMatch) -> bool {
        match (self, other) {
            (Self::Prefix(a), Self::Prefix(b)) => prefix_matches(a, b),
            (Self::Prefix(a), Self::Exact(b)) => prefix_matches(a, b),
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(_), Self::Prefix(_)) => false,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Prefix(p) | Self::Exact(p) => p,
        }
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len()
            || prefix.ends_with('/')
            || path.as_bytes()[prefix.len()] == b'/')
}

impl std::fmt::Display for PathMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
            Self::Exact(exact) => write!(f, "= {exact}"),
        }
    }
}

/// What happens to the matched part of the path before it goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    None,
    /// Remove the matched prefix.
    StripPrefix,
    /// Replace the matched prefix (or exact path) with this.
    Replace(String),
}

impl Rewrite {
    /// The upstream path for `path`, which `matched` has matched.
    pub fn apply(&self, matched: &PathMatch, path: &str) -> String {
        let with = match self {
            Self::None => return path.to_owned(),
            Self::StripPrefix => "/",
            Self::Replace(with) => with.as_str(),
        };
        let rest = path.get(matched.as_str().len()..).unwrap_or("");
        let base = with.trim_end_matches('/');
        if rest.is_empty() {
            return with.to_owned();
        }
        // A prefix ending in `/` consumed the separator; put it back.
        let separator = if rest.starts_with('/') { "" } else { "/" };
        format!("{base}{separator}{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_respect_segments() {
        let api = PathMatch::Prefix("/api".into());
        assert!(api.matches("/api"));
        assert!(api.matches("/api/items"));
        assert!(!api.matches("/apiary"));
        let slash = PathMatch::Prefix("/api/".into());
        assert!(slash.matches("/api/items"));
        assert!(!slash.matches("/api"));
        assert!(PathMatch::Prefix("/".into()).matches("/anything"));
    }

    #[test]
    fn coverage() {
        let all = PathMatch::Prefix("/".into());
        let api = PathMatch::Prefix("/api".into());
        assert!(all.covers(&api));
        assert!(!api.covers(&all));
        assert!(api.covers(&PathMatch::Exact("/api/x".into())));
        assert!(!api.covers(&PathMatch::Prefix("/apix".into())));
        let wild = HostMatch::parse("*.example.com").unwrap();
        assert!(wild.covers(&HostMatch::parse("a.example.com").unwrap()));
        assert!(wild.covers(&HostMatch::parse("*.a.example.com").unwrap()));
        assert!(!wild.matches("example.com"));
        assert!(HostMatch::parse("bad host").is_none());
    }

    #[test]
    fn rewrites() {
        let prefix = PathMatch::Prefix("/api".into());
        assert_eq!(Rewrite::StripPrefix.apply(&prefix, "/api/items"), "/items");
        assert_eq!(Rewrite::StripPrefix.apply(&prefix, "/api"), "/");
        let slash = PathMatch::Prefix("/api/".into());
        assert_eq!(Rewrite::StripPrefix.apply(&slash, "/api/items"), "/items");
        let replace = Rewrite::Replace("/v2".into());
        assert_eq!(replace.apply(&prefix, "/api/items"), "/v2/items");
        let replace_slash = Rewrite::Replace("/v2/".into());
        assert_eq!(replace_slash.apply(&prefix, "/api/items"), "/v2/items");
        let root = PathMatch::Prefix("/".into());
        assert_eq!(
            Rewrite::Replace("/echo/host".into()).apply(&root, "/x"),
            "/echo/host/x"
        );
        assert_eq!(
            Rewrite::Replace("/echo/host".into()).apply(&root, "/"),
            "/echo/host"
        );
        assert_eq!(Rewrite::StripPrefix.apply(&slash, "/api/"), "/");
        let exact = PathMatch::Exact("/old".into());
        assert_eq!(
            Rewrite::Replace("/new".into()).apply(&exact, "/old"),
            "/new"
        );
    }
}
