//! The memory tier: a moka cache bounded in bytes (each value weighed by [`Cached::weight`]),
//! every value expiring when its entry stops being usable (fresh, then its stale windows). The
//! least recently used values go first when the bound is reached; evictions are counted.

use std::time::{Duration, Instant};

use metrics::Counter;
use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::entry::{Cached, now_ms};
use super::key::Key;
use crate::observe::metrics as m;

pub struct MemoryTier {
    cache: Cache<Key, Cached>,
    pub max_bytes: u64,
}

struct Lifetime;

impl moka::Expiry<Key, Cached> for Lifetime {
    fn expire_after_create(&self, _key: &Key, value: &Cached, _at: Instant) -> Option<Duration> {
        Some(value.remaining(now_ms()))
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        value: &Cached,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.remaining(now_ms()))
    }
}

impl MemoryTier {
    pub fn new(max_bytes: u64) -> Self {
        let size: Counter = metrics::counter!(m::CACHE_EVICTIONS_TOTAL, "reason" => "size");
        let expired: Counter = metrics::counter!(m::CACHE_EVICTIONS_TOTAL, "reason" => "expired");
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &Key, value: &Cached| value.weight())
            .expire_after(Lifetime)
            .eviction_listener(move |_key, _value, cause| match cause {
                RemovalCause::Size => size.increment(1),
                RemovalCause::Expired => expired.increment(1),
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build();
        Self { cache, max_bytes }
    }

    pub fn get(&self, key: &Key) -> Option<Cached> {
        self.cache.get(key)
    }

    pub fn insert(&self, key: Key, value: Cached) {
        self.cache.insert(key, value);
    }

    /// Removes every value `matches` selects; returns how many.
    pub fn purge(&self, matches: impl Fn(&Key, &Cached) -> bool) -> u64 {
        let mut purged = 0;
        for (key, value) in self.cache.iter() {
            if matches(&key, &value) {
                self.cache.invalidate(&*key);
                purged += 1;
            }
        }
        purged
    }

    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Bytes in use (after pending evictions are applied).
    pub fn bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    pub fn entries(&self) -> u64 {
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::cache::entry::{Entry, Origin, Times};

    fn entry(i: u32, size: usize, fresh_ms: u64) -> (Key, Cached) {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_le_bytes());
        let key = Key(key);
        let entry = Entry::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(vec![b'x'; size]),
            Times {
                stored_at_ms: now_ms(),
                initial_age_ms: 0,
                fresh_ms,
                swr_ms: 0,
                sie_ms: 0,
                keep_ms: 0,
            },
            Origin {
                route: Arc::from("r"),
                path: Arc::from(format!("/p/{}", i % 10)),
                base: key,
            },
        );
        (key, Cached::Entry(Arc::new(entry)))
    }

    #[test]
    fn the_byte_bound_holds_under_a_flood() {
        let tier = MemoryTier::new(1 << 20);
        for i in 0..5000 {
            let (k, v) = entry(i, 2000, 60_000);
            tier.insert(k, v);
        }
        assert!(tier.bytes() <= 1 << 20, "{} bytes", tier.bytes());
        assert!(tier.entries() > 100);
    }

    #[test]
    fn values_expire_with_their_entry() {
        let tier = MemoryTier::new(1 << 20);
        let (k, v) = entry(1, 10, 50);
        tier.insert(k, v);
        assert!(tier.get(&k).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(tier.get(&k).is_none());
    }

    #[test]
    fn purge_by_predicate() {
        let tier = MemoryTier::new(1 << 20);
        for i in 0..30 {
            let (k, v) = entry(i, 10, 60_000);
            tier.insert(k, v);
        }
        let purged = tier.purge(|_, v| &*v.origin().path == "/p/3");
        assert_eq!(purged, 3);
        tier.bytes();
        assert_eq!(tier.entries(), 27);
    }
}
