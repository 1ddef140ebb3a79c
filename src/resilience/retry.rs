//! Retries: which failures are retried, how long to wait between attempts (exponential backoff
//! with full jitter), and the budget that keeps retries from multiplying an outage.
//!
//! The budget admits a retry while the retries of the last `budget_window` stay within
//! `budget_percent` of the requests (plus `budget_min_retries`, so that a quiet route can still
//! retry). It must not send anything; the upstream call does.

use std::time::{Duration, Instant};

use http::Method;
use serde::Deserialize;

use super::window::RollingWindow;
use crate::config::units::{ByteSize, deserialize_duration};

/// `[route.retry]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts in all, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Response statuses that are retried.
    #[serde(default = "default_statuses")]
    pub statuses: Vec<u16>,
    /// Retry an attempt that timed out waiting for the response head.
    #[serde(default = "yes")]
    pub on_timeout: bool,
    /// Retry POST and PATCH too (only idempotent methods otherwise).
    #[serde(default)]
    pub non_idempotent: bool,
    /// The first backoff; each next one doubles, up to `backoff_max`; the wait is a random
    /// time up to it (full jitter).
    #[serde(
        default = "default_backoff_base",
        deserialize_with = "deserialize_duration"
    )]
    pub backoff_base: Duration,
    #[serde(
        default = "default_backoff_max",
        deserialize_with = "deserialize_duration"
    )]
    pub backoff_max: Duration,
    /// Request bodies up to this size are kept for replay; larger ones are not retried.
    #[serde(default = "default_buffer_body")]
    pub buffer_body: ByteSize,
    /// Retries allowed as a percentage of requests over `budget_window`.
    #[serde(default = "default_budget_percent")]
    pub budget_percent: f64,
    #[serde(
        default = "default_budget_window",
        deserialize_with = "deserialize_duration"
    )]
    pub budget_window: Duration,
    /// Retries always allowed per window, whatever the percentage.
    #[serde(default = "default_budget_min_retries")]
    pub budget_min_retries: u32,
}

fn default_attempts() -> u32 {
    3
}
fn default_statuses() -> Vec<u16> {
    vec![502, 503, 504]
}
fn yes() -> bool {
    true
}
fn default_backoff_base() -> Duration {
    Duration::from_millis(100)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(2)
}
fn default_buffer_body() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_budget_percent() -> f64 {
    20.0
}
fn default_budget_window() -> Duration {
    Duration::from_secs(10)
}
fn default_budget_min_retries() -> u32 {
    10
}

/// A route's retry policy and budget.
pub struct RetryPolicy {
    pub settings: RetrySettings,
    origin: Instant,
    /// Requests and retries over the budget window.
    budget: RollingWindow<2>,
}

const REQUESTS: usize = 0;
const RETRIES: usize = 1;

impl RetryPolicy {
    pub fn new(settings: RetrySettings) -> Self {
        Self {
            budget: RollingWindow::new(settings.budget_window),
            settings,
            origin: Instant::now(),
        }
    }

    /// Whether a request of this method may be retried at all.
    pub fn allows_method(&self, method: &Method) -> bool {
        self.settings.non_idempotent || is_idempotent(method)
    }

    /// Whether this response status is worth another attempt.
    pub fn retries_status(&self, status: u16) -> bool {
        self.settings.statuses.contains(&status)
    }

    /// Counts a request against the budget (once per request, not per attempt).
    pub fn count_request(&self) {
        self.budget
            .add(self.origin.elapsed().as_millis() as u64, [1, 0]);
    }

    /// Takes a retry from the budget; false when the budget is spent.
    pub fn take_retry(&self) -> bool {
        let now = self.origin.elapsed().as_millis() as u64;
        let totals = self.budget.totals(now);
        let allowed = (totals[REQUESTS] as f64 * self.settings.budget_percent / 100.0)
            .max(f64::from(self.settings.budget_min_retries));
        if totals[RETRIES] as f64 >= allowed {
            return false;
        }
        self.budget.add(now, [0, 1]);
        true
    }

    /// The wait before retry number `retry` (1 for the first retry): uniform in
    /// `[0, min(backoff_max, backoff_base × 2^(retry−1))]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .settings
            .backoff_base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.settings.backoff_max);
        let nanos = cap.as_nanos().min(u128::from(u64::MAX)) as u64;
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// GET, HEAD, OPTIONS, TRACE, PUT and DELETE (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RetrySettings {
        toml::from_str("").unwrap()
    }

    #[test]
    fn defaults() {
        let s = settings();
        assert_eq!(s.attempts, 3);
        assert_eq!(s.statuses, [502, 503, 504]);
        assert!(s.on_timeout && !s.non_idempotent);
    }

    #[test]
    fn only_idempotent_methods_unless_configured() {
        let policy = RetryPolicy::new(settings());
        assert!(policy.allows_method(&Method::GET));
        assert!(policy.allows_method(&Method::PUT));
        assert!(!policy.allows_method(&Method::POST));
        let mut s = settings();
        s.non_idempotent = true;
        assert!(RetryPolicy::new(s).allows_method(&Method::POST));
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_cap() {
        let policy = RetryPolicy::new(settings());
        for retry in 1..10 {
            let cap = Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_secs(2));
            for _ in 0..50 {
                assert!(policy.backoff(retry) <= cap);
            }
        }
        // Full jitter spreads: not every wait is the cap.
        let waits: std::collections::HashSet<_> = (0..20).map(|_| policy.backoff(3)).collect();
        assert!(waits.len() > 10);
    }

    #[test]
    fn the_budget_caps_retries_at_a_share_of_requests() {
        let mut s = settings();
        s.budget_min_retries = 2;
        let policy = RetryPolicy::new(s);
        for _ in 0..100 {
            policy.count_request();
        }
        let granted = (0..100).filter(|_| policy.take_retry()).count();
        assert_eq!(granted, 20);
        // A quiet route still gets its minimum.
        let mut s = settings();
        s.budget_min_retries = 2;
        let quiet = RetryPolicy::new(s);
        quiet.count_request();
        assert_eq!((0..10).filter(|_| quiet.take_retry()).count(), 2);
    }
}
