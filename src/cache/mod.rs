//! Response caching (pipeline stages 10 and 12): routes opt in with `[route.cache]`; the stores
//! are set up once by `[cache]` and outlive reloads.
//!
//! Parts: [`settings`] (config), [`key`] (what a key is made of), [`control`] (RFC 9111: what
//! may be stored and for how long), [`entry`] (what is stored), [`memory`] (the moka tier,
//! bounded in bytes), [`redis`] (the shared tier), [`flight`] (request coalescing), [`body`]
//! (storing a response while it streams to the client). The pipeline's side — lookup, hits,
//! misses, revalidation, stale answers — is `proxy::pipeline::cache`.
//!
//! [`CacheStore`] is the facade: lookups try memory, then Redis (promoting what Redis had);
//! stores write both; purges clear both and tell the other instances. A failing Redis only
//! degrades the cache to memory, visible in `/health` and the metrics. This module never
//! decides how a response is answered.

pub mod body;
pub mod control;
pub mod entry;
pub mod flight;
pub mod key;
pub mod memory;
pub mod redis;
pub mod settings;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use serde::Serialize;

use crate::observe::metrics as m;
use crate::store::{StoreKind, Stores};
use entry::{Cached, Entry, Origin, VaryMarker, now_ms};
use flight::Flights;
use key::Key;
use memory::MemoryTier;
use settings::CacheConfig;

/// How a lookup ended, for `rampart_cache_requests_total` and `x-cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Stale,
    Miss,
    /// A stale entry confirmed by the upstream (`304`): served from the cache.
    Revalidated,
    /// Not looked up (a method the route does not cache).
    Bypass,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Hit,
        Outcome::Stale,
        Outcome::Miss,
        Outcome::Revalidated,
        Outcome::Bypass,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Stale => "stale",
            Self::Miss => "miss",
            Self::Revalidated => "revalidated",
            Self::Bypass => "bypass",
        }
    }

    /// The `x-cache` value.
    pub fn header(self) -> &'static str {
        match self {
            Self::Hit | Self::Revalidated => "HIT",
            Self::Stale => "STALE",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
        }
    }
}

/// A route's cache policy with its counters, built with the router.
pub struct RouteCache {
    pub policy: Arc<settings::RoutePolicy>,
    results: [metrics::Counter; 5],
    pub coalesced: metrics::Counter,
}

impl RouteCache {
    pub fn new(route: &Arc<str>, policy: Arc<settings::RoutePolicy>) -> Self {
        Self {
            policy,
            results: Outcome::ALL.map(|o| {
                metrics::counter!(m::CACHE_REQUESTS_TOTAL, "route" => route.clone(), "result" => o.label())
            }),
            coalesced: metrics::counter!(m::CACHE_COALESCED_TOTAL, "route" => route.clone()),
        }
    }

    /// Counts one request's outcome (and the store-wide hit-rate figures).
    pub fn count(&self, outcome: Outcome, stats: &Stats) {
        let index = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.results[index].increment(1);
        let counter = match outcome {
            Outcome::Hit | Outcome::Revalidated => &stats.hits,
            Outcome::Stale => &stats.stale,
            Outcome::Miss => &stats.misses,
            Outcome::Bypass => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// One base key and its variants (the `x-cache-key` of a response).
    Key(Key),
    /// Everything a route stored.
    Route(String),
    /// Every entry whose path starts with this.
    Prefix(String),
    /// Every entry of exactly this path (any host, query or identity).
    Path(String),
    All,
}

impl Purge {
    fn matches(&self, origin: &Origin) -> bool {
        match self {
            Self::Key(key) => origin.base == *key,
            Self::Route(route) => &*origin.route == route,
            Self::Prefix(prefix) => origin.path.starts_with(prefix.as_str()),
            Self::Path(path) => &*origin.path == path,
            Self::All => true,
        }
    }

    fn encode(&self) -> String {
        match self {
            Self::Key(key) => format!("k:{}", key.hex()),
            Self::Route(route) => format!("r:{route}"),
            Self::Prefix(prefix) => format!("p:{prefix}"),
            Self::Path(path) => format!("e:{path}"),
            Self::All => "a:".into(),
        }
    }

    fn decode(text: &str) -> Option<Self> {
        let (kind, value) = text.split_once(':')?;
        Some(match kind {
            "k" => Self::Key(Key::from_hex(value)?),
            "r" => Self::Route(value.to_owned()),
            "p" => Self::Prefix(value.to_owned()),
            "e" => Self::Path(value.to_owned()),
            "a" => Self::All,
            _ => return None,
        })
    }
}

/// What a purge did.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    /// Values removed from this instance's memory.
    pub memory: u64,
    /// Keys deleted from Redis (`None` without a Redis tier).
    pub redis: Option<u64>,
    /// Why the Redis part failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_error: Option<String>,
}

/// Lookups since start, for the hit rate.
#[derive(Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub stale: AtomicU64,
    pub misses: AtomicU64,
}

impl Stats {
    /// Hits (fresh or stale) over lookups; `None` before the first lookup.
    pub fn hit_rate(&self) -> Option<f64> {
        let hits = self.hits.load(Ordering::Relaxed) + self.stale.load(Ordering::Relaxed);
        let total = hits + self.misses.load(Ordering::Relaxed);
        (total > 0).then(|| hits as f64 / total as f64)
    }
}

/// The cache's state, shared by every route and kept across reloads.
pub struct CacheStore {
    pub config: CacheConfig,
    pub memory: MemoryTier,
    pub redis: Option<Arc<redis::RedisTier>>,
    pub flights: Arc<Flights>,
    pub stats: Stats,
    /// This instance, in purge announcements.
    instance: String,
}

/// `/health`'s view of the cache.
#[derive(Debug, Clone, Serialize)]
pub struct CacheHealth {
    pub store: &'static str,
    pub entries: u64,
    pub memory_bytes: u64,
    pub max_memory_bytes: u64,
    pub hit_rate: Option<f64>,
    pub hits: u64,
    pub stale: u64,
    pub misses: u64,
    /// With a Redis tier: whether it is in use (false while Redis fails: memory only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_in_use: Option<bool>,
}

impl CacheStore {
    /// The stores for `config`; the Redis tier uses the opened `[store.redis]` connection.
    pub fn new(config: &CacheConfig, stores: &Stores) -> Arc<Self> {
        let redis = match config.store {
            StoreKind::Redis => stores.redis.clone().map(|store| {
                Arc::new(redis::RedisTier::new(
                    store,
                    config.redis_timeout,
                    config.redis_max_entry_bytes,
                ))
            }),
            _ => None,
        };
        let cache = Arc::new(Self {
            config: config.clone(),
            memory: MemoryTier::new(config.max_memory),
            redis,
            flights: Arc::new(Flights::default()),
            stats: Stats::default(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
        });
        if let Some(tier) = &cache.redis {
            let weak = Arc::downgrade(&cache);
            let gap = Arc::downgrade(&cache);
            redis::spawn_listener(
                tier.store.settings.url.clone(),
                tier.channel(),
                cache.instance.clone(),
                move |purge| match weak.upgrade() {
                    Some(cache) => {
                        cache.memory.purge(|_, v| purge.matches(v.origin()));
                        true
                    }
                    None => false,
                },
                move || {
                    if let Some(cache) = gap.upgrade() {
                        tracing::info!(
                            "cache: purge channel back; memory tier cleared (purges may have been missed)"
                        );
                        cache.memory.clear();
                    }
                },
            );
        }
        cache
    }

    /// The entry a request selects in memory, following a Vary marker. `None` when absent.
    pub fn lookup_memory(&self, base: &Key, headers: &HeaderMap) -> Option<Arc<Entry>> {
        match self.memory.get(base)? {
            Cached::Entry(entry) => Some(entry),
            Cached::Vary(marker) => {
                let variant = key::variant_key(base, &marker.names, headers);
                match self.memory.get(&variant)? {
                    Cached::Entry(entry) => Some(entry),
                    Cached::Vary(_) => None,
                }
            }
        }
    }

    /// The same in Redis (when the tier is in use), promoted to memory when found.
    pub async fn lookup_redis(&self, origin: &Origin, headers: &HeaderMap) -> Option<Arc<Entry>> {
        let tier = self.redis.as_ref().filter(|t| t.usable())?;
        let now = now_ms();
        match tier.get(origin, &origin.base).await? {
            Cached::Entry(entry) => {
                self.memory
                    .insert(origin.base, Cached::Entry(entry.clone()));
                Some(entry)
            }
            Cached::Vary(marker) => {
                let variant = key::variant_key(&origin.base, &marker.names, headers);
                let Cached::Entry(entry) = tier.get(origin, &variant).await? else {
                    return None;
                };
                if marker.until_ms > now {
                    self.memory.insert(origin.base, Cached::Vary(marker));
                }
                self.memory.insert(variant, Cached::Entry(entry.clone()));
                Some(entry)
            }
        }
    }

    /// Stores `entry` at its base key, or — when it varies on `vary` — at the variant key the
    /// request's `headers` select, with a marker at the base key.
    pub fn store(&self, entry: Arc<Entry>, vary: &[http::HeaderName], headers: &HeaderMap) {
        let now = now_ms();
        let base = entry.origin.base;
        let ttl = entry.times.remaining(now);
        if vary.is_empty() {
            let value = Cached::Entry(entry);
            if let Some(tier) = &self.redis {
                tier.put(&base, &value, ttl);
            }
            self.memory.insert(base, value);
            return;
        }
        let variant = key::variant_key(&base, vary, headers);
        // The marker lives as long as the longest-lived variant stored so far.
        let until_ms = match self.memory.get(&base) {
            Some(Cached::Vary(old)) if old.names == vary => {
                old.until_ms.max(now + ttl.as_millis() as u64)
            }
            _ => now + ttl.as_millis() as u64,
        };
        let marker = Cached::Vary(Arc::new(VaryMarker {
            names: vary.to_vec(),
            origin: entry.origin.clone(),
            until_ms,
        }));
        let value = Cached::Entry(entry);
        if let Some(tier) = &self.redis {
            tier.put(&base, &marker, marker.remaining(now));
            tier.put(&variant, &value, ttl);
        }
        self.memory.insert(variant, value);
        self.memory.insert(base, marker);
    }

    /// Re-inserts an entry whose encoded forms grew, so that the memory bound counts them
    /// (`headers`: the request's, to find a variant).
    pub fn reweigh(&self, entry: Arc<Entry>, headers: &HeaderMap) {
        let base = entry.origin.base;
        let key = match self.memory.get(&base) {
            Some(Cached::Vary(marker)) => key::variant_key(&base, &marker.names, headers),
            _ => base,
        };
        if let Some(Cached::Entry(current)) = self.memory.get(&key)
            && Arc::ptr_eq(&current, &entry)
        {
            self.memory.insert(key, Cached::Entry(entry));
        }
    }

    /// A stale (or fresh) entry for the request, however long ago it expired, as long as a store
    /// still holds it (`keep_stale` keeps entries past their stale windows): the answer of a
    /// route's fallback while its upstream's breaker is open. Memory first, then Redis.
    pub async fn stale_for_fallback(
        &self,
        origin: &Origin,
        headers: &HeaderMap,
    ) -> Option<Arc<Entry>> {
        if let Some(entry) = self.lookup_memory(&origin.base, headers) {
            return Some(entry);
        }
        self.lookup_redis(origin, headers).await
    }

    /// After a successful write on `path`: its entries leave this instance's memory and are
    /// marked purged in Redis (one `SET`, waited for, so the writer's next read misses), and the
    /// other instances are told to drop them from memory.
    pub async fn purge_path_after_write(self: &Arc<Self>, path: &str) {
        let purge = Purge::Path(path.to_owned());
        let memory = self.memory.purge(|_, v| purge.matches(v.origin()));
        metrics::counter!(m::CACHE_PURGED_TOTAL, "tier" => "memory").increment(memory);
        let Some(tier) = self.redis.as_ref().filter(|t| t.usable()) else {
            return;
        };
        if tier.mark_path_purged(path, now_ms()).await.is_err() {
            return;
        }
        let tier = tier.clone();
        let instance = self.instance.clone();
        tokio::spawn(async move {
            if let Err(error) = tier.publish(&instance, &purge).await {
                tracing::warn!(error, "cache: purge not announced to the other instances");
            }
        });
    }

    /// Removes what `purge` selects here and in Redis, and tells the other instances.
    pub async fn purge(&self, purge: Purge) -> PurgeReport {
        let memory = self.memory.purge(|_, v| purge.matches(v.origin()));
        metrics::counter!(m::CACHE_PURGED_TOTAL, "tier" => "memory").increment(memory);
        let mut report = PurgeReport {
            memory,
            redis: None,
            redis_error: None,
        };
        if let Some(tier) = &self.redis {
            if let Purge::Path(path) = &purge {
                let _ = tier.mark_path_purged(path, now_ms()).await;
            }
            match tier.purge(&purge).await {
                Ok(n) => {
                    metrics::counter!(m::CACHE_PURGED_TOTAL, "tier" => "redis").increment(n);
                    report.redis = Some(n);
                }
                Err(error) => report.redis_error = Some(error),
            }
            if let Err(error) = tier.publish(&self.instance, &purge).await {
                tracing::warn!(error, "cache: purge not announced to the other instances");
                report.redis_error.get_or_insert(error);
            }
        }
        tracing::info!(
            purge = purge.encode(),
            memory = report.memory,
            redis = report.redis,
            "cache purged"
        );
        report
    }

    pub fn health(&self) -> CacheHealth {
        let stats = &self.stats;
        CacheHealth {
            store: self.config.store.as_str(),
            entries: self.memory.entries(),
            memory_bytes: self.memory.bytes(),
            max_memory_bytes: self.memory.max_bytes,
            hit_rate: stats.hit_rate(),
            hits: stats.hits.load(Ordering::Relaxed),
            stale: stats.stale.load(Ordering::Relaxed),
            misses: stats.misses.load(Ordering::Relaxed),
            redis_in_use: self.redis.as_ref().map(|t| t.usable()),
        }
    }

    /// Sets the gauges (bytes, entries, hit ratio); called when `/metrics` is rendered.
    pub fn refresh_gauges(&self) {
        metrics::gauge!(m::CACHE_MEMORY_BYTES).set(self.memory.bytes() as f64);
        metrics::gauge!(m::CACHE_ENTRIES).set(self.memory.entries() as f64);
        if let Some(rate) = self.stats.hit_rate() {
            metrics::gauge!(m::CACHE_HIT_RATIO).set(rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_specs_round_trip() {
        for purge in [
            Purge::Key(Key([3; 32])),
            Purge::Route("api".into()),
            Purge::Prefix("/api/".into()),
            Purge::Path("/api/x:y".into()),
            Purge::All,
        ] {
            assert_eq!(Purge::decode(&purge.encode()), Some(purge));
        }
        assert_eq!(Purge::decode("z:1"), None);
    }

    fn cache() -> Arc<CacheStore> {
        let config = CacheConfig {
            max_memory: 1 << 20,
            max_entry_bytes: 1 << 18,
            default_ttl: std::time::Duration::from_secs(60),
            store: StoreKind::Memory,
            redis_timeout: std::time::Duration::from_millis(50),
            redis_max_entry_bytes: 1 << 18,
            lock_timeout: std::time::Duration::from_secs(1),
        };
        CacheStore::new(&config, &Stores::default())
    }

    fn entry(fresh_ms: u64, keep_ms: u64) -> Arc<Entry> {
        Arc::new(Entry::new(
            http::StatusCode::OK,
            HeaderMap::new(),
            bytes::Bytes::from_static(b"kept"),
            entry::Times {
                stored_at_ms: now_ms(),
                initial_age_ms: 0,
                fresh_ms,
                swr_ms: 0,
                sie_ms: 10,
                keep_ms,
            },
            Origin {
                route: Arc::from("r"),
                path: Arc::from("/x"),
                base: Key([9; 32]),
            },
        ))
    }

    #[tokio::test]
    async fn stale_for_fallback_ignores_the_stale_windows() {
        let cache = cache();
        let kept = entry(20, 60_000);
        cache.store(kept.clone(), &[], &HeaderMap::new());
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        let now = now_ms();
        assert!(
            !kept.times.is_fresh(now) && !kept.times.within_swr(now) && !kept.times.within_sie(now)
        );
        let found = cache
            .stale_for_fallback(&kept.origin, &HeaderMap::new())
            .await
            .expect("kept for the fallback");
        assert_eq!(found.body, kept.body);
        // Without keep_stale the entry is gone once its windows close.
        let cache = self::tests::cache();
        let gone = entry(20, 0);
        cache.store(gone.clone(), &[], &HeaderMap::new());
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        assert!(
            cache
                .stale_for_fallback(&gone.origin, &HeaderMap::new())
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn variants_are_found_through_their_marker() {
        let cache = cache();
        let e = entry(60_000, 0);
        let names = [http::HeaderName::from_static("accept-language")];
        let mut en = HeaderMap::new();
        en.insert("accept-language", "en".parse().unwrap());
        let mut fr = HeaderMap::new();
        fr.insert("accept-language", "fr".parse().unwrap());
        cache.store(e.clone(), &names, &en);
        assert!(cache.lookup_memory(&e.origin.base, &en).is_some());
        assert!(cache.lookup_memory(&e.origin.base, &fr).is_none());
        let report = cache.purge(Purge::Key(e.origin.base)).await;
        assert_eq!(report.memory, 2, "the marker and its variant");
        assert!(cache.lookup_memory(&e.origin.base, &en).is_none());
    }

    #[test]
    fn hit_rate() {
        let stats = Stats::default();
        assert_eq!(stats.hit_rate(), None);
        stats.hits.store(8, Ordering::Relaxed);
        stats.misses.store(2, Ordering::Relaxed);
        assert_eq!(stats.hit_rate(), Some(0.8));
    }
}
