//! Progressive blocking: a client address that commits `threshold` violations (attack patterns in
//! block mode, rate-limit denials) within `window` is refused for `duration` with 403 and
//! `Retry-After`. Blocks expire by themselves; allowlisted addresses never reach this module.
//!
//! The state sits behind [`Blocklist`], whose store is `memory` (bounded, expired entries swept)
//! or the rate-limit store (`redis` or `postgres`, see [`redis`] and [`postgres`]), so that a
//! block holds on every instance. With a shared store each instance checks a local mirror of the
//! live blocks (refreshed every second, and at once for its own blocks), so the check costs no
//! round trip; while the store fails, violations are counted locally. The blocklist outlives
//! config reloads; the settings come with each call.

pub mod postgres;
pub mod redis;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::units::deserialize_duration;
use crate::observe::metrics as m;
use crate::store::{StoreHealth, StoreKind, Stores};

/// `[blocking]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockingSettings {
    pub enabled: bool,
    /// Violations within `window` that trigger a block.
    pub threshold: u32,
    #[serde(deserialize_with = "deserialize_duration")]
    pub window: Duration,
    /// How long a block lasts (seed 004: 15 minutes).
    #[serde(deserialize_with = "deserialize_duration")]
    pub duration: Duration,
    /// Most addresses tracked at once (memory store); the oldest unblocked ones go first.
    pub max_tracked: usize,
}

impl Default for BlockingSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 10,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(15 * 60),
            max_tracked: 100_000,
        }
    }
}

impl BlockingSettings {
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.threshold == 0 {
            return Err(("threshold".into(), "expected at least 1".into()));
        }
        if self.window.is_zero() || self.duration.is_zero() {
            return Err((
                if self.window.is_zero() {
                    "window"
                } else {
                    "duration"
                }
                .into(),
                "expected a duration above zero".into(),
            ));
        }
        if self.max_tracked < 16 {
            return Err(("max_tracked".into(), "expected at least 16".into()));
        }
        Ok(())
    }
}

/// The block state, shared by every worker and kept across reloads.
pub struct Blocklist {
    store: BlockStore,
}

enum BlockStore {
    Memory(MemoryBlocks),
    Shared(SharedBlocks),
}

/// A shared store with a local mirror of its live blocks, so that the check on every request
/// costs no round trip. The mirror is refreshed every `sync_interval` and updated at once by
/// this instance's own blocks; while the store fails, violations are counted locally.
struct SharedBlocks {
    backend: SharedBackend,
    health: Arc<StoreHealth>,
    mirror: Mutex<HashMap<IpAddr, Instant>>,
    local: MemoryBlocks,
}

enum SharedBackend {
    Redis(redis::RedisBlocks),
    Postgres(postgres::PostgresBlocks),
}

impl SharedBackend {
    async fn record_violation(
        &self,
        ip: IpAddr,
        settings: &BlockingSettings,
    ) -> Result<Option<Duration>, String> {
        match self {
            Self::Redis(redis) => redis.record_violation(ip, settings).await,
            Self::Postgres(pg) => pg.record_violation(ip, settings).await,
        }
    }

    async fn list(&self) -> Result<Vec<(IpAddr, Duration)>, String> {
        match self {
            Self::Redis(redis) => redis.list().await,
            Self::Postgres(pg) => pg.list().await,
        }
    }

    async fn unblock(&self, ip: IpAddr) -> Result<bool, String> {
        match self {
            Self::Redis(redis) => redis.unblock(ip).await,
            Self::Postgres(pg) => pg.unblock(ip).await,
        }
    }
}

/// The longest a shared-store call of the blocklist may take.
const STORE_TIMEOUT: Duration = Duration::from_millis(500);

impl Default for Blocklist {
    fn default() -> Self {
        Self::memory()
    }
}

impl Blocklist {
    pub fn memory() -> Self {
        Self {
            store: BlockStore::Memory(MemoryBlocks::default()),
        }
    }

    /// A blocklist kept in `kind` (one of `stores`), mirrored locally every `sync_interval` by a
    /// task that ends when the blocklist is dropped.
    pub fn shared(kind: StoreKind, stores: &Stores, sync_interval: Duration) -> Arc<Self> {
        let (backend, health) = match (kind, &stores.redis, &stores.postgres) {
            (StoreKind::Redis, Some(store), _) => (
                SharedBackend::Redis(redis::RedisBlocks::new(store.clone())),
                store.health.clone(),
            ),
            (StoreKind::Postgres, _, Some(store)) => (
                SharedBackend::Postgres(postgres::PostgresBlocks::new(store.clone())),
                store.health.clone(),
            ),
            _ => return Arc::new(Self::memory()),
        };
        let blocklist = Arc::new(Self {
            store: BlockStore::Shared(SharedBlocks {
                backend,
                health,
                mirror: Mutex::new(HashMap::new()),
                local: MemoryBlocks::default(),
            }),
        });
        let weak = Arc::downgrade(&blocklist);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sync_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(blocklist) = weak.upgrade() else {
                    break;
                };
                blocklist.sync().await;
            }
        });
        blocklist
    }

    /// Refreshes the mirror of a shared store (nothing to do for memory).
    pub async fn sync(&self) {
        let BlockStore::Shared(shared) = &self.store else {
            return;
        };
        if shared.health.is_degraded() {
            return;
        }
        if let Ok(Ok(blocks)) = tokio::time::timeout(STORE_TIMEOUT, shared.backend.list()).await {
            let now = Instant::now();
            let mirror: HashMap<IpAddr, Instant> = blocks
                .into_iter()
                .map(|(ip, left)| (ip, now + left))
                .collect();
            metrics::gauge!(m::BLOCKED_ADDRESSES).set(mirror.len() as f64);
            *shared.mirror.lock().unwrap_or_else(|e| e.into_inner()) = mirror;
        }
    }

    /// How much longer `ip` stays blocked, if it is.
    pub async fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        match &self.store {
            BlockStore::Memory(memory) => memory.blocked_for(ip, now),
            BlockStore::Shared(shared) => {
                let mirrored = shared
                    .mirror
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&ip)
                    .and_then(|until| until.checked_duration_since(now))
                    .filter(|left| !left.is_zero());
                mirrored.max(shared.local.blocked_for(ip, now))
            }
        }
    }

    /// Counts one violation; returns the block duration when this one triggered a block.
    pub async fn record_violation(
        &self,
        ip: IpAddr,
        settings: &BlockingSettings,
    ) -> Option<Duration> {
        let shared = match &self.store {
            BlockStore::Memory(memory) => return memory.record(ip, settings, Instant::now()),
            BlockStore::Shared(shared) => shared,
        };
        if !shared.health.is_degraded() {
            let call = shared.backend.record_violation(ip, settings);
            match tokio::time::timeout(STORE_TIMEOUT, call).await {
                Ok(Ok(blocked)) => {
                    if let Some(duration) = blocked {
                        shared
                            .mirror
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(ip, Instant::now() + duration);
                    }
                    return blocked;
                }
                Ok(Err(error)) => {
                    shared.health.mark_failed(&error);
                }
                Err(_) => {
                    shared
                        .health
                        .mark_failed("the blocklist store did not answer in time");
                }
            }
        }
        shared.local.record(ip, settings, Instant::now())
    }

    /// Every address blocked now, with the time left.
    pub async fn list(&self) -> Vec<(IpAddr, Duration)> {
        match &self.store {
            BlockStore::Memory(memory) => memory.list(Instant::now()),
            BlockStore::Shared(shared) => {
                self.sync().await;
                let now = Instant::now();
                let mut all: HashMap<IpAddr, Duration> = shared
                    .mirror
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .filter_map(|(ip, until)| {
                        let left = until.checked_duration_since(now)?;
                        (!left.is_zero()).then_some((*ip, left))
                    })
                    .collect();
                for (ip, left) in shared.local.list(now) {
                    let entry = all.entry(ip).or_default();
                    *entry = (*entry).max(left);
                }
                let mut list: Vec<_> = all.into_iter().collect();
                list.sort();
                list
            }
        }
    }

    /// Lifts a block (and forgets the violations); whether there was anything to lift.
    pub async fn unblock(&self, ip: IpAddr) -> bool {
        match &self.store {
            BlockStore::Memory(memory) => memory.unblock(ip),
            BlockStore::Shared(shared) => {
                let local = shared.local.unblock(ip);
                let mirrored = shared
                    .mirror
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&ip)
                    .is_some();
                let stored = tokio::time::timeout(STORE_TIMEOUT, shared.backend.unblock(ip))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(false);
                local || mirrored || stored
            }
        }
    }
}

#[derive(Default)]
struct MemoryBlocks {
    entries: Mutex<HashMap<IpAddr, Entry>>,
    /// Entries in the map; lets the common case (nobody tracked) skip the lock.
    tracked: AtomicUsize,
}

#[derive(Default)]
struct Entry {
    violations: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl MemoryBlocks {
    fn blocked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&ip)
            .and_then(|e| e.blocked_until)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    fn record(&self, ip: IpAddr, settings: &BlockingSettings, now: Instant) -> Option<Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= settings.max_tracked && !entries.contains_key(&ip) {
            sweep(&mut entries, settings, now);
            if entries.len() >= settings.max_tracked {
                // Still full of live entries: forget unblocked ones rather than grow.
                entries.retain(|_, e| e.blocked_until.is_some_and(|u| u > now));
            }
        }
        let entry = entries.entry(ip).or_default();
        if entry.blocked_until.is_some_and(|until| until > now) {
            self.tracked.store(entries.len(), Ordering::Relaxed);
            return None;
        }
        entry.blocked_until = None;
        while entry
            .violations
            .front()
            .is_some_and(|t| now.duration_since(*t) >= settings.window)
        {
            entry.violations.pop_front();
        }
        entry.violations.push_back(now);
        let triggered = entry.violations.len() >= settings.threshold as usize;
        if triggered {
            entry.violations.clear();
            entry.blocked_until = Some(now + settings.duration);
        }
        let blocked = entries
            .values()
            .filter(|e| e.blocked_until.is_some_and(|u| u > now))
            .count();
        self.tracked.store(entries.len(), Ordering::Relaxed);
        if triggered {
            metrics::gauge!(m::BLOCKED_ADDRESSES).set(blocked as f64);
            Some(settings.duration)
        } else {
            None
        }
    }

    fn list(&self, now: Instant) -> Vec<(IpAddr, Duration)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<_> = entries
            .iter()
            .filter_map(|(ip, e)| {
                let left = e.blocked_until?.checked_duration_since(now)?;
                (!left.is_zero()).then_some((*ip, left))
            })
            .collect();
        list.sort();
        metrics::gauge!(m::BLOCKED_ADDRESSES).set(list.len() as f64);
        list
    }

    fn unblock(&self, ip: IpAddr) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let removed = entries
            .remove(&ip)
            .is_some_and(|e| e.blocked_until.is_some());
        self.tracked.store(entries.len(), Ordering::Relaxed);
        removed
    }
}

/// Drops entries with no live block and no violation inside the window.
fn sweep(entries: &mut HashMap<IpAddr, Entry>, settings: &BlockingSettings, now: Instant) {
    entries.retain(|_, e| {
        e.blocked_until.is_some_and(|u| u > now)
            || e.violations
                .back()
                .is_some_and(|t| now.duration_since(*t) < settings.window)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(threshold: u32) -> BlockingSettings {
        BlockingSettings {
            threshold,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(900),
            max_tracked: 16,
            enabled: true,
        }
    }

    #[test]
    fn blocks_after_threshold_within_window_and_expires() {
        let blocks = MemoryBlocks::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let s = settings(3);
        let t0 = Instant::now();
        assert_eq!(blocks.record(ip, &s, t0), None);
        assert_eq!(blocks.record(ip, &s, t0 + Duration::from_secs(1)), None);
        assert_eq!(blocks.blocked_for(ip, t0), None);
        assert_eq!(
            blocks.record(ip, &s, t0 + Duration::from_secs(2)),
            Some(Duration::from_secs(900))
        );
        let left = blocks.blocked_for(ip, t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(left, Duration::from_secs(900));
        assert!(
            blocks
                .blocked_for(ip, t0 + Duration::from_secs(903))
                .is_none()
        );
        // After expiry violations count from zero again.
        assert_eq!(blocks.record(ip, &s, t0 + Duration::from_secs(904)), None);
    }

    #[test]
    fn violations_outside_the_window_do_not_count() {
        let blocks = MemoryBlocks::default();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let s = settings(2);
        let t0 = Instant::now();
        assert_eq!(blocks.record(ip, &s, t0), None);
        assert_eq!(blocks.record(ip, &s, t0 + Duration::from_secs(61)), None);
        assert!(
            blocks
                .record(ip, &s, t0 + Duration::from_secs(62))
                .is_some()
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let blocks = MemoryBlocks::default();
        let s = settings(5);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            blocks.record(ip, &s, t0 + Duration::from_secs(u64::from(i)));
        }
        assert!(blocks.entries.lock().unwrap().len() <= s.max_tracked);
    }

    #[test]
    fn unblock_lifts_a_block() {
        let blocks = MemoryBlocks::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        blocks.record(ip, &settings(1), t0);
        assert!(blocks.blocked_for(ip, t0).is_some());
        assert_eq!(blocks.list(t0).len(), 1);
        assert!(blocks.unblock(ip));
        assert!(blocks.blocked_for(ip, t0).is_none());
    }
}
