//! The cache's configuration as written (`[cache]`, `[route.cache]`) and as resolved
//! ([`CacheConfig`], [`RoutePolicy`]). Validation lives in `config::cache`.

use std::time::Duration;

use http::header::HeaderName;
use http::{Method, StatusCode};
use serde::Deserialize;

use crate::config::units::{ByteSize, deserialize_duration, deserialize_opt_duration};
use crate::store::StoreKind;

/// `[cache]`: the stores every cached route shares.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    /// Memory for cached responses (bodies and headers), in bytes; least recently used first out.
    pub max_memory: ByteSize,
    /// Largest response body stored; larger ones stream through uncached. Default: 1 MiB, or a
    /// quarter of `max_memory` when that is smaller.
    pub max_entry_bytes: Option<ByteSize>,
    /// Freshness when neither the route nor the upstream says.
    #[serde(deserialize_with = "deserialize_duration")]
    pub default_ttl: Duration,
    /// `memory`, or `redis` for a second tier shared by every instance (`[store.redis]`).
    pub store: StoreKind,
    /// Redis calls slower than this count as a miss (and a failure).
    #[serde(deserialize_with = "deserialize_duration")]
    pub redis_timeout: Duration,
    /// Largest entry written to Redis, after compression.
    pub redis_max_entry_bytes: ByteSize,
    /// How long concurrent misses wait for the request already fetching the same key.
    #[serde(deserialize_with = "deserialize_duration")]
    pub lock_timeout: Duration,
}

impl Default for CacheSection {
    fn default() -> Self {
        Self {
            max_memory: ByteSize(50 * 1024 * 1024),
            max_entry_bytes: None,
            default_ttl: Duration::from_secs(300),
            store: StoreKind::Memory,
            redis_timeout: Duration::from_millis(100),
            redis_max_entry_bytes: ByteSize(512 * 1024),
            lock_timeout: Duration::from_secs(5),
        }
    }
}

/// `[route.cache]`: the route's responses are cached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteCacheSection {
    pub enabled: bool,
    /// Freshness when the upstream says nothing (or always, with `honor_cache_control = false`);
    /// `"0s"`: only responses with explicit freshness (or a validator) are stored.
    #[serde(deserialize_with = "deserialize_opt_duration")]
    pub ttl: Option<Duration>,
    /// `GET` and `HEAD` by default; `POST` keys on a hash of the body.
    pub methods: Vec<String>,
    /// Request headers whose values are part of the key.
    pub key_headers: Vec<String>,
    /// Query parameters left out of the key (tracking parameters, say).
    pub ignore_query_params: Vec<String>,
    /// One entry for every client: the authenticated identity is not in the key.
    pub shared: bool,
    /// Obey the upstream's `Cache-Control` and `Expires` (`false`: the route's ttl always).
    pub honor_cache_control: bool,
    /// Keep one entry per value of the headers the upstream's `Vary` names.
    pub honor_vary: bool,
    /// Statuses stored (errors only when listed).
    pub statuses: Vec<u16>,
    /// Store responses with `Set-Cookie`, without that header (never stored otherwise).
    pub strip_set_cookie: bool,
    /// Serve a stale entry while it is refreshed in the background, this long after it expires
    /// (the upstream's `stale-while-revalidate` wins when it sends one).
    #[serde(deserialize_with = "deserialize_duration")]
    pub stale_while_revalidate: Duration,
    /// Serve a stale entry when the upstream fails, this long after it expires.
    #[serde(deserialize_with = "deserialize_duration")]
    pub stale_if_error: Duration,
    /// Keep entries this long after they expire, for the route's fallback while its upstream's
    /// breaker is open.
    #[serde(deserialize_with = "deserialize_duration")]
    pub keep_stale: Duration,
    /// A successful POST, PUT, PATCH or DELETE purges the cached entries of its path.
    pub purge_on_write: bool,
}

impl Default for RouteCacheSection {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: None,
            methods: vec!["GET".into(), "HEAD".into()],
            key_headers: Vec::new(),
            ignore_query_params: Vec::new(),
            shared: false,
            honor_cache_control: true,
            honor_vary: true,
            statuses: vec![200, 203, 204, 300, 301, 308],
            strip_set_cookie: false,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            keep_stale: Duration::ZERO,
            purge_on_write: false,
        }
    }
}

/// The resolved `[cache]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub max_memory: u64,
    pub max_entry_bytes: u64,
    pub default_ttl: Duration,
    pub store: StoreKind,
    pub redis_timeout: Duration,
    pub redis_max_entry_bytes: u64,
    pub lock_timeout: Duration,
}

/// A route's resolved cache policy.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    pub ttl: Duration,
    pub get: bool,
    pub head: bool,
    pub post: bool,
    pub key_headers: Vec<HeaderName>,
    pub ignore_query_params: Vec<String>,
    pub shared: bool,
    pub honor_cache_control: bool,
    pub honor_vary: bool,
    pub statuses: Vec<StatusCode>,
    pub strip_set_cookie: bool,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub keep_stale: Duration,
    pub purge_on_write: bool,
}

impl RoutePolicy {
    /// Whether requests of `method` are looked up (HEAD is answered from GET's entries).
    pub fn caches(&self, method: &Method) -> bool {
        match *method {
            Method::GET => self.get,
            Method::HEAD => self.head,
            Method::POST => self.post,
            _ => false,
        }
    }
}
