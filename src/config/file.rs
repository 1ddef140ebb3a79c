//! The configuration file's model, exactly as a user writes it.
//!
//! Owns the serde shape of the TOML file (unknown keys rejected, defaults applied). It must not
//! check relations between sections (that is `validate`) nor hold runtime state.

use std::time::Duration;

use serde::Deserialize;

use super::units::{ByteSize, deserialize_duration, deserialize_opt_duration};
use crate::ratelimit::policy::RateLimitSection;
use crate::security::attack_filter::AttackFilterSettings;
use crate::security::auth::{AuthSettings, ClaimRules};
use crate::security::blocklist::BlockingSettings;
use crate::security::cors::CorsSettings;
use crate::security::headers::HeadersSettings;
use crate::security::ip_rules::IpRulesSettings;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamSection>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSection>,
    /// Security headers for every response; routes override field by field.
    pub security_headers: Option<HeadersSettings>,
    /// CORS for every route that does not set its own.
    pub cors: Option<CorsSettings>,
    /// IP allow and deny lists for every route that does not set its own.
    pub ip_rules: Option<IpRulesSettings>,
    /// Progressive blocking of addresses that keep violating.
    pub blocking: Option<BlockingSettings>,
    /// Attack filtering for every route; routes override field by field.
    pub attack_filter: Option<AttackFilterSettings>,
    /// Authentication providers, referenced by name from routes.
    #[serde(default, rename = "auth")]
    pub auth: Vec<AuthSettings>,
    /// Shared stores (Redis, PostgreSQL) and how to reach them.
    #[serde(default)]
    pub store: crate::store::StoresSection,
    /// Rate-limit store, fallback and policies.
    pub rate_limit: Option<RateLimitSection>,
    /// Alert rules evaluated by rampart itself.
    #[serde(default, rename = "alert")]
    pub alerts: Vec<crate::observe::alerts::config::AlertSection>,
    /// Where alerts are sent, referenced by name from `[[alert]] notify`.
    #[serde(default, rename = "notifier")]
    pub notifiers: Vec<crate::observe::alerts::config::NotifierSection>,
    /// The response cache's stores (routes opt in with `[route.cache]`).
    pub cache: Option<crate::cache::settings::CacheSection>,
    /// Response compression for every route (routes opt out with `compress = false`).
    pub compression: Option<crate::compression::CompressionSettings>,
    /// Distributed tracing (W3C trace context, OTLP/HTTP export); off when absent.
    pub tracing: Option<crate::observe::trace::config::TracingSection>,
    /// Error reporting to Sentry; off without a DSN.
    pub error_reporting: Option<crate::observe::error_report::config::ErrorReportingSection>,
}

/// `[server]`: the public listeners and the limits applied to every connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Plain-text listen addresses (HTTP/1.1 and h2c).
    pub listen: Vec<String>,
    /// Worker threads serving requests, each with its own event loop; 0 means one per CPU.
    pub workers: usize,
    /// Optional TLS listeners (HTTP/1.1 and HTTP/2 by ALPN).
    pub tls: Option<TlsSection>,
    /// Time a client has to send a complete request head.
    #[serde(deserialize_with = "deserialize_duration")]
    pub header_read_timeout: Duration,
    /// Default time allowed for the upstream's response head (routes may override).
    #[serde(deserialize_with = "deserialize_duration")]
    pub request_timeout: Duration,
    /// A keep-alive connection with no request in flight for this long is closed.
    #[serde(deserialize_with = "deserialize_duration")]
    pub idle_timeout: Duration,
    /// Maximum size of a request head (request line and headers).
    pub max_header_bytes: ByteSize,
    /// Maximum size of a request body; larger bodies get 413.
    pub max_body_bytes: ByteSize,
    /// Peers (IPs or CIDRs) whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<String>,
    /// On SIGTERM/SIGINT, how long in-flight requests get to finish.
    #[serde(deserialize_with = "deserialize_duration")]
    pub drain_timeout: Duration,
    /// Most header fields in a request; more get 431.
    pub max_headers: usize,
    /// Longest request target (path and query); longer gets 414.
    pub max_uri_bytes: ByteSize,
    /// Slowest acceptable request-body upload, in bytes per second after `body_rate_grace`;
    /// slower clients get 408 and are disconnected. 0 turns the check off.
    pub min_body_rate: ByteSize,
    #[serde(deserialize_with = "deserialize_duration")]
    pub body_rate_grace: Duration,
    /// A plain-HTTP listener that redirects every request to HTTPS.
    pub https_redirect: Option<HttpsRedirectSection>,
}

/// `[server.https_redirect]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsRedirectSection {
    pub listen: Vec<String>,
    /// The HTTPS port to send clients to; 443 is left out of the URL.
    #[serde(default = "default_https_port")]
    pub https_port: u16,
}

fn default_https_port() -> u16 {
    443
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:8080".to_owned()],
            workers: 0,
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: ByteSize(16 * 1024),
            max_body_bytes: ByteSize(10 * 1024 * 1024),
            trusted_proxies: Vec::new(),
            drain_timeout: Duration::from_secs(30),
            max_headers: 100,
            max_uri_bytes: ByteSize(8 * 1024),
            min_body_rate: ByteSize(1024),
            body_rate_grace: Duration::from_secs(10),
            https_redirect: None,
        }
    }
}

/// `[server.tls]`: listeners that speak TLS with one certificate chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub listen: Vec<String>,
    /// PEM file with the certificate chain, leaf first.
    pub cert: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

/// `[admin]`: the operator's listener (health, metrics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    pub listen: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9901".to_owned(),
        }
    }
}

/// `[log]`: console log format, level and redaction.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
    /// Default filter (tracing `EnvFilter` syntax); `RAMPART_LOG` overrides it.
    pub level: String,
    /// Level per module, added to `level`: `{ "rampart::access" = "warn" }`.
    pub levels: std::collections::BTreeMap<String, String>,
    /// Log files with size-based rotation, besides the console.
    pub file: Option<LogFileSection>,
    /// Emit one access-log line per request.
    pub access_log: bool,
    /// Fraction of successful requests (status below 400) given an access-log line; errors
    /// are always logged. 1 logs every request.
    pub access_log_sample: f64,
    /// Query parameters whose values are replaced by `[REDACTED]` in logs.
    pub redact_query_keys: Vec<String>,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".to_owned(),
            levels: Default::default(),
            file: None,
            access_log: true,
            access_log_sample: 1.0,
            redact_query_keys: ["api_key", "token", "key", "password", "secret"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

/// `[log.file]`: `combined.log` (every line) and `error.log` (errors) in `directory`, as JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFileSection {
    /// Relative to the config file's folder.
    pub directory: String,
    /// A file is rotated before it would pass this size.
    #[serde(default = "default_log_max_size")]
    pub max_size: ByteSize,
    /// Files kept per log, the current one included.
    #[serde(default = "default_log_max_files")]
    pub max_files: usize,
}

fn default_log_max_size() -> ByteSize {
    ByteSize(5 * 1024 * 1024)
}
fn default_log_max_files() -> usize {
    5
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// `[[upstream]]`: a named group of targets with one connection pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub name: String,
    /// `"host:port"` targets, or `{ address = "host:port", weight = 2 }`. Names are resolved by
    /// DNS every `resolve_interval`; each address becomes a target.
    pub targets: Vec<TargetSpec>,
    /// How a target is chosen: `round_robin`, `least_requests` or `peak_ewma`.
    #[serde(default)]
    pub balance: crate::resilience::balance::Balance,
    #[serde(
        default = "default_resolve_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub resolve_interval: Duration,
    /// When no target is healthy: `fail` (503 at once, or the route's fallback) or
    /// `try_anyway` (use them all as if healthy).
    #[serde(default)]
    pub when_none_healthy: crate::proxy::upstream::NoneHealthy,
    /// Active HTTP health checks.
    pub health_check: Option<crate::resilience::health::ActiveSettings>,
    /// Ejection after consecutive failures (on by default for upstreams of several targets).
    pub passive_health: Option<crate::resilience::health::PassiveSettings>,
    /// The upstream's circuit breaker.
    pub circuit_breaker: Option<crate::resilience::breaker::BreakerSettings>,
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per target.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    #[serde(
        default = "default_pool_idle_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub pool_idle_timeout: Duration,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_resolve_interval() -> Duration {
    Duration::from_secs(30)
}

/// One entry of an upstream's `targets`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TargetSpec {
    Address(String),
    Weighted(WeightedTarget),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedTarget {
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl TargetSpec {
    pub fn address(&self) -> &str {
        match self {
            Self::Address(address) => address,
            Self::Weighted(target) => &target.address,
        }
    }

    pub fn weight(&self) -> u32 {
        match self {
            Self::Address(_) => 1,
            Self::Weighted(target) => target.weight,
        }
    }
}
fn default_pool_max_idle() -> usize {
    64
}
fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(90)
}

/// `[[route]]`: which requests go to which upstream, first match wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub name: String,
    /// Exact host (`api.example.com`) or wildcard (`*.example.com`); any host when absent.
    pub host: Option<String>,
    /// Matches this path and everything below it.
    pub path_prefix: Option<String>,
    /// Matches this path only.
    pub path: Option<String>,
    /// Allowed methods; any method when absent.
    pub methods: Option<Vec<String>>,
    pub upstream: String,
    /// Remove the matched `path_prefix` before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replace the matched prefix (or exact path) with this path before forwarding.
    pub rewrite: Option<String>,
    /// Send the client's `Host` upstream instead of the target's `host:port`.
    #[serde(default)]
    pub preserve_host: bool,
    /// Time allowed for the upstream's response head, per attempt; `server.request_timeout`
    /// when absent.
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub timeout: Option<Duration>,
    /// Time allowed for all attempts together (backoffs and fallbacks included).
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub deadline: Option<Duration>,
    /// Retries of failed attempts.
    pub retry: Option<crate::resilience::retry::RetrySettings>,
    /// A breaker for this route's calls, besides its upstream's.
    pub circuit_breaker: Option<crate::resilience::breaker::BreakerSettings>,
    /// Load shedding: requests in flight and waiting.
    pub concurrency: Option<crate::resilience::shed::ShedSettings>,
    /// Upstreams tried in order when the route's upstream cannot answer.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// The answer when every upstream of the chain failed.
    pub fallback_response: Option<FallbackResponseSection>,
    /// Largest request body for this route; `server.max_body_bytes` when absent.
    pub max_body_bytes: Option<ByteSize>,
    /// Overrides of the top-level `[security_headers]`, field by field.
    pub security_headers: Option<HeadersSettings>,
    /// This route's CORS policy instead of the top-level `[cors]`.
    pub cors: Option<CorsSettings>,
    /// This route's IP lists instead of the top-level `[ip_rules]`.
    pub ip_rules: Option<IpRulesSettings>,
    /// Overrides of the top-level `[attack_filter]`, field by field.
    pub attack_filter: Option<AttackFilterSettings>,
    /// Authentication: a provider name, a list where any may succeed, or `"none"`.
    pub auth: Option<AuthRef>,
    /// Let requests without credentials through anonymously (bad credentials still get 401).
    #[serde(default)]
    pub auth_optional: bool,
    /// Claim rules the authenticated identity must satisfy (403 otherwise).
    pub require: Option<ClaimRules>,
    /// Require a same-site `Origin`/`Referer` on state-changing requests (cookie sessions).
    /// Default: on when one of the route's auth providers reads its token from a cookie.
    pub csrf: Option<bool>,
    /// Rate-limit policies (names from `[[rate_limit.policy]]`); every one must admit.
    #[serde(default)]
    pub limits: Vec<String>,
    /// JSON Schemas for the body and query, per method.
    #[serde(default, rename = "validate")]
    pub validations: Vec<ValidateSection>,
    /// Cache this route's responses.
    pub cache: Option<crate::cache::settings::RouteCacheSection>,
    /// Compress this route's responses (default: as `[compression]` says).
    pub compress: Option<bool>,
}

/// A route's `auth`: one provider name or several (any may succeed).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AuthRef {
    One(String),
    Many(Vec<String>),
}

impl AuthRef {
    /// The provider names, `"none"` removed.
    pub fn names(&self) -> Vec<&str> {
        let names: Vec<&str> = match self {
            Self::One(name) => vec![name.as_str()],
            Self::Many(names) => names.iter().map(String::as_str).collect(),
        };
        names.into_iter().filter(|n| *n != "none").collect()
    }
}

/// `[[route.validate]]`: schemas checked before the request goes upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateSection {
    /// Methods this applies to; every method when absent.
    pub methods: Option<Vec<String>>,
    /// Inline JSON Schema (written as a TOML table) or `body_schema_file` (JSON, relative to
    /// the config file).
    pub body_schema: Option<serde_json::Value>,
    pub body_schema_file: Option<String>,
    pub query_schema: Option<serde_json::Value>,
    pub query_schema_file: Option<String>,
}

/// `[route.fallback_response]`: a static answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackResponseSection {
    #[serde(default = "default_fallback_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// A JSON body, written as a TOML table or value.
    pub json: Option<serde_json::Value>,
    /// A plain-text body (instead of `json`).
    pub body: Option<String>,
}

fn default_fallback_status() -> u16 {
    503
}
