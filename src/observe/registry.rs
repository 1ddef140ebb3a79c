//! A process-wide registry of series, for the figures rampart renders itself (the per-request
//! histograms, the request counters): a series is found by its key, or made and kept on first
//! use, so a reload that builds its routes again keeps counting into the same ones, as
//! Prometheus expects of a counter.

use std::sync::{Arc, Mutex, MutexGuard};

/// Series by key, in registration order.
pub struct Registry<K, V>(Mutex<Vec<(K, Arc<V>)>>);

impl<K: PartialEq, V> Default for Registry<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: PartialEq, V> Registry<K, V> {
    pub const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    /// The series of `key`, made by `make` when there is none yet.
    pub fn get_or_insert(&self, key: K, make: impl FnOnce() -> V) -> Arc<V> {
        let mut series = self.lock();
        if let Some((_, value)) = series.iter().find(|(seen, _)| *seen == key) {
            return value.clone();
        }
        let value = Arc::new(make());
        series.push((key, value.clone()));
        value
    }

    /// Every series, in registration order, while the registry is held.
    pub fn lock(&self) -> MutexGuard<'_, Vec<(K, Arc<V>)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
