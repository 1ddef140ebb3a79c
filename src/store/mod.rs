//! Connections to the shared stores: Redis ([`redis`]) and PostgreSQL ([`postgres`]), opened once
//! from `[store.redis]` and `[store.postgres]` and reused by every capability that shares state
//! across instances (rate limits, the blocklist; later the cache tier, audit and usage).
//!
//! Owns connecting, reconnecting, migrations and the health of each store ([`StoreHealth`]):
//! whether it is degraded, logged once per transition and exported as
//! `rampart_ratelimit_store_degraded{store}`. It must not know what the stores hold; the
//! capabilities own their keys, tables and scripts.

pub mod postgres;
pub mod redis;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::observe::metrics as m;

/// `[store]`: the shared stores rampart may use.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoresSection {
    pub redis: Option<redis::RedisSettings>,
    pub postgres: Option<postgres::PostgresSettings>,
}

/// Which store a capability keeps its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In this process only (the embedded default).
    #[default]
    Memory,
    Redis,
    Postgres,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
            Self::Postgres => "postgres",
        }
    }
}

/// The opened stores. Opening never waits for a store to answer: a store that is down at start
/// is reported degraded and connected when it comes back.
#[derive(Default)]
pub struct Stores {
    pub redis: Option<Arc<redis::RedisStore>>,
    pub postgres: Option<Arc<postgres::PostgresStore>>,
    settings: StoresSection,
    /// Worker threads, each given its own Redis connection.
    workers: usize,
}

/// A store setting that cannot work (a malformed URL, say).
#[derive(Debug, thiserror::Error)]
#[error("[store.{store}]: {message}")]
pub struct StoreError {
    pub store: &'static str,
    pub message: String,
}

impl Stores {
    /// Opens the stores `wanted` names for a server of `workers` worker threads; settings for
    /// others are kept but not connected.
    pub async fn open(
        settings: &StoresSection,
        wanted: &[StoreKind],
        workers: usize,
    ) -> Result<Self, StoreError> {
        let mut stores = Stores {
            settings: settings.clone(),
            workers,
            ..Default::default()
        };
        stores.ensure(settings, wanted).await?;
        Ok(stores)
    }

    /// After a reload: keeps connections whose settings did not change, opens the rest.
    pub async fn reopen(
        &self,
        settings: &StoresSection,
        wanted: &[StoreKind],
    ) -> Result<Self, StoreError> {
        let mut stores = Stores {
            settings: settings.clone(),
            workers: self.workers,
            ..Default::default()
        };
        if settings.redis == self.settings.redis {
            stores.redis = self.redis.clone();
        }
        if settings.postgres == self.settings.postgres {
            stores.postgres = self.postgres.clone();
        }
        stores.ensure(settings, wanted).await?;
        Ok(stores)
    }

    async fn ensure(
        &mut self,
        settings: &StoresSection,
        wanted: &[StoreKind],
    ) -> Result<(), StoreError> {
        if wanted.contains(&StoreKind::Redis) && self.redis.is_none() {
            let redis = settings.redis.as_ref().ok_or_else(|| StoreError {
                store: "redis",
                message: "a policy uses the redis store but [store.redis] is missing".into(),
            })?;
            let store = redis::RedisStore::open(redis).await?;
            self.redis = Some(Arc::new(store.with_worker_connections(self.workers)));
        }
        if wanted.contains(&StoreKind::Postgres) && self.postgres.is_none() {
            let postgres = settings.postgres.as_ref().ok_or_else(|| StoreError {
                store: "postgres",
                message: "a policy uses the postgres store but [store.postgres] is missing".into(),
            })?;
            self.postgres = Some(Arc::new(postgres::PostgresStore::open(postgres).await?));
        }
        Ok(())
    }

    /// Starts the probes that bring degraded stores back (one per store, every `interval`).
    pub fn spawn_recovery_probes(&self, interval: Duration) {
        let timeout = Duration::from_secs(1).min(interval);
        if let Some(redis) = &self.redis {
            spawn_recovery_probe(
                redis,
                redis.health.clone(),
                interval,
                move |store| async move {
                    matches!(tokio::time::timeout(timeout, store.ping()).await, Ok(Ok(_)))
                },
            );
        }
        if let Some(postgres) = &self.postgres {
            spawn_recovery_probe(
                postgres,
                postgres.health.clone(),
                interval,
                move |store| async move {
                    matches!(tokio::time::timeout(timeout, store.ping()).await, Ok(Ok(_)))
                },
            );
        }
    }

    /// Every opened store's health, for `/health`.
    pub fn health(&self) -> Vec<Arc<StoreHealth>> {
        let mut all = Vec::new();
        if let Some(redis) = &self.redis {
            all.push(redis.health.clone());
        }
        if let Some(postgres) = &self.postgres {
            all.push(postgres.health.clone());
        }
        all
    }
}

/// Whether a store answers: flipped by the callers that saw it fail (or recover), logged once per
/// transition, exported as a gauge, shown in `/health`.
pub struct StoreHealth {
    pub store: &'static str,
    degraded: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl StoreHealth {
    pub fn new(store: &'static str) -> Self {
        metrics::gauge!(m::RATELIMIT_STORE_DEGRADED, "store" => store).set(0.0);
        Self {
            store,
            degraded: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records a failure; returns true on the healthy → degraded transition (logged here).
    pub fn mark_failed(&self, error: &str) -> bool {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_owned());
        let changed = !self.degraded.swap(true, Ordering::AcqRel);
        if changed {
            metrics::gauge!(m::RATELIMIT_STORE_DEGRADED, "store" => self.store).set(1.0);
            tracing::warn!(
                store = self.store,
                error,
                "store degraded: falling back until it answers again"
            );
        }
        changed
    }

    /// Records an answer; logs the degraded → healthy transition.
    pub fn mark_ok(&self) {
        if self.degraded.swap(false, Ordering::AcqRel) {
            metrics::gauge!(m::RATELIMIT_STORE_DEGRADED, "store" => self.store).set(0.0);
            tracing::info!(
                store = self.store,
                "store recovered: shared state in use again"
            );
        }
    }
}

/// Tries a degraded store again every `interval` and marks it healthy when it answers; ends
/// when the store is dropped. Whoever sees a call fail marks the store degraded.
fn spawn_recovery_probe<S, F, Fut>(
    store: &Arc<S>,
    health: Arc<StoreHealth>,
    interval: Duration,
    ping: F,
) where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let weak = Arc::downgrade(store);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(store) = weak.upgrade() else {
                break;
            };
            if health.is_degraded() && ping(store).await {
                health.mark_ok();
            }
        }
    });
}

/// Wall-clock microseconds since the Unix epoch (the memory store's clock).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
