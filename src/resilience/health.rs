//! Whether a target may get traffic: active health checks (a background task probing an HTTP
//! path) and passive ejection (consecutive connect failures or 5xx eject a target for a backoff
//! that grows with each ejection).
//!
//! [`TargetHealth`] is the shared state, read with two atomic loads per pick; it outlives
//! reloads, so a target keeps its state when the config changes around it. The checker task
//! lives in [`checker`](super::checker).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::units::deserialize_duration;
use crate::observe::metrics as m;

/// `[upstream.health_check]`: active checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveSettings {
    /// Path requested with GET.
    pub path: String,
    /// Statuses that mean healthy; any 2xx or 3xx when empty.
    #[serde(default)]
    pub expected_status: Vec<u16>,
    #[serde(
        default = "default_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub interval: Duration,
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// Consecutive passing checks that make an unhealthy target healthy.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failing checks that make a healthy target unhealthy.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// `Host` header of the check; the target's `host:port` when absent.
    pub host: Option<String>,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

impl ActiveSettings {
    pub fn is_expected(&self, status: u16) -> bool {
        if self.expected_status.is_empty() {
            (200..400).contains(&status)
        } else {
            self.expected_status.contains(&status)
        }
    }
}

/// `[upstream.passive_health]`: ejection on consecutive failures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveSettings {
    /// Consecutive connect failures or 5xx responses that eject a target; 0 turns it off.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    /// The first ejection; each next one doubles, up to `max_ejection`.
    #[serde(
        default = "default_base_ejection",
        deserialize_with = "deserialize_duration"
    )]
    pub base_ejection: Duration,
    #[serde(
        default = "default_max_ejection",
        deserialize_with = "deserialize_duration"
    )]
    pub max_ejection: Duration,
}

impl Default for PassiveSettings {
    fn default() -> Self {
        Self {
            consecutive_failures: default_consecutive_failures(),
            base_ejection: default_base_ejection(),
            max_ejection: default_max_ejection(),
        }
    }
}

fn default_consecutive_failures() -> u32 {
    5
}
fn default_base_ejection() -> Duration {
    Duration::from_secs(10)
}
fn default_max_ejection() -> Duration {
    Duration::from_secs(300)
}

/// One target's health, shared by every pipeline that has the target.
pub struct TargetHealth {
    upstream: String,
    target: String,
    origin: Instant,
    /// Set by the active checker (true while no checks are configured).
    active_healthy: AtomicBool,
    /// Passive: consecutive failures so far, ejections in a row, and until when (ms since
    /// `origin`) the current ejection lasts.
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
}

impl TargetHealth {
    /// A target that starts healthy, or (added by a reload to an actively checked upstream)
    /// waits for its first passing check.
    pub fn new(upstream: &str, target: &str, healthy: bool) -> Self {
        let health = Self {
            upstream: upstream.to_owned(),
            target: target.to_owned(),
            origin: Instant::now(),
            active_healthy: AtomicBool::new(healthy),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
        };
        health.export();
        health
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the target may get traffic now.
    pub fn is_available(&self) -> bool {
        if !self.active_healthy.load(Ordering::Relaxed) {
            return false;
        }
        // Never ejected (the usual case): no clock read.
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until == 0 || self.now_ms() >= until
    }

    pub fn is_active_healthy(&self) -> bool {
        self.active_healthy.load(Ordering::Relaxed)
    }

    /// How long the current ejection still lasts, if any.
    pub fn ejected_for(&self) -> Option<Duration> {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        let now = self.now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// The active checker's verdict; logs and exports changes.
    pub fn set_active(&self, healthy: bool) {
        if self.active_healthy.swap(healthy, Ordering::AcqRel) != healthy {
            if healthy {
                tracing::info!(
                    upstream = self.upstream,
                    target = self.target,
                    "upstream target healthy"
                );
            } else {
                tracing::warn!(
                    upstream = self.upstream,
                    target = self.target,
                    "upstream target unhealthy: no traffic until its checks pass"
                );
            }
            self.export();
        }
    }

    /// Counts a request's result for passive ejection. Only failures write (beyond resetting a
    /// non-zero count), so the healthy path stays a load.
    pub fn record(&self, success: bool, settings: &PassiveSettings) {
        if success {
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        if settings.consecutive_failures == 0 {
            return;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < settings.consecutive_failures {
            return;
        }
        self.consecutive_failures.store(0, Ordering::Release);
        let now = self.now_ms();
        let until = self.ejected_until_ms.load(Ordering::Acquire);
        if until > now {
            return;
        }
        // The backoff grows with each ejection, and starts over once the target has stayed in
        // for `max_ejection`.
        let mut ejections = self.ejections.load(Ordering::Acquire);
        if until != 0 && now - until > settings.max_ejection.as_millis() as u64 {
            ejections = 0;
        }
        let duration = settings
            .base_ejection
            .saturating_mul(1u32 << ejections.min(20))
            .min(settings.max_ejection);
        // Workers may reach the threshold together: one of them ejects.
        if self
            .ejected_until_ms
            .compare_exchange(
                until,
                now + duration.as_millis() as u64,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return;
        }
        self.ejections.store(ejections + 1, Ordering::Release);
        metrics::counter!(m::UPSTREAM_EJECTIONS_TOTAL, "upstream" => self.upstream.clone(), "target" => self.target.clone()).increment(1);
        tracing::warn!(
            upstream = self.upstream,
            target = self.target,
            failures,
            ejected_ms = duration.as_millis() as u64,
            "upstream target ejected after consecutive failures"
        );
    }

    fn export(&self) {
        metrics::gauge!(m::UPSTREAM_TARGET_HEALTHY, "upstream" => self.upstream.clone(), "target" => self.target.clone())
            .set(if self.is_active_healthy() { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passive(failures: u32) -> PassiveSettings {
        PassiveSettings {
            consecutive_failures: failures,
            base_ejection: Duration::from_millis(200),
            max_ejection: Duration::from_secs(10),
        }
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_resets_the_count() {
        let health = TargetHealth::new("app", "127.0.0.1:1", true);
        let settings = passive(3);
        health.record(false, &settings);
        health.record(false, &settings);
        health.record(true, &settings);
        health.record(false, &settings);
        health.record(false, &settings);
        assert!(health.is_available());
        health.record(false, &settings);
        assert!(!health.is_available());
        let ejected = health.ejected_for().unwrap();
        assert!(ejected <= Duration::from_millis(200), "{ejected:?}");
    }

    #[test]
    fn each_ejection_lasts_longer() {
        let health = TargetHealth::new("app", "127.0.0.1:1", true);
        let settings = passive(1);
        health.record(false, &settings);
        let first = health.ejected_for().unwrap();
        std::thread::sleep(first + Duration::from_millis(5));
        assert!(health.is_available());
        health.record(false, &settings);
        let second = health.ejected_for().unwrap();
        assert!(second > Duration::from_millis(300), "{second:?}");
    }

    #[test]
    fn workers_reaching_the_threshold_together_eject_once() {
        for _ in 0..50 {
            let health = std::sync::Arc::new(TargetHealth::new("app", "127.0.0.1:1", true));
            let settings = passive(1);
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let health = health.clone();
                    let settings = settings.clone();
                    std::thread::spawn(move || health.record(false, &settings))
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            let ejected = health.ejected_for().unwrap();
            assert!(ejected <= Duration::from_millis(200), "{ejected:?}");
        }
    }

    #[test]
    fn active_checks_gate_traffic_and_zero_failures_turns_passive_off() {
        let health = TargetHealth::new("app", "127.0.0.1:1", false);
        assert!(!health.is_available());
        health.set_active(true);
        assert!(health.is_available());
        for _ in 0..100 {
            health.record(false, &passive(0));
        }
        assert!(health.is_available());
    }
}
