//! Alert rules evaluated inside rampart, so that alerting works without Prometheus: every second
//! each `[[alert]]` condition is measured (request window, dependency health, breakers, stores,
//! process memory), stepped through its [`state::RuleState`], and firing, repeated and resolved
//! notices go to the rule's notifiers ([`notify`]) and to the log (`rampart::alert`). State is kept
//! by rule name across reloads. With no rules the task only checks for rules once a second.

pub mod config;
pub mod notify;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use config::{AlertRule, Condition, Quantile};
use notify::Notice;
use state::{Event, RuleState};

use crate::admin::health::{Report, Status};
use crate::resilience::breaker::State as Circuit;
use crate::server::Shared;

pub const ALERTS_FIRING: &str = "rampart_alerts_firing";

/// Every name this module exports.
pub const NAMES: &[&str] = &[ALERTS_FIRING, notify::ALERT_NOTIFICATIONS_TOTAL];

const TICK: Duration = Duration::from_secs(1);

/// Starts the evaluator on the current runtime; it ends when the server is dropped.
pub fn spawn(shared: Weak<Shared>) {
    metrics::describe_gauge!(
        ALERTS_FIRING,
        "1 while an alert rule of rampart's own is firing, by alert."
    );
    metrics::describe_counter!(
        notify::ALERT_NOTIFICATIONS_TOTAL,
        "Alert notifications, by notifier and result (sent, failed, timeout)."
    );
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        let instance = instance_name();
        let mut states: HashMap<String, RuleState> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            evaluate(&shared, &mut states, &client, &instance).await;
        }
    });
}

async fn evaluate(
    shared: &Arc<Shared>,
    states: &mut HashMap<String, RuleState>,
    client: &reqwest::Client,
    instance: &str,
) {
    let pipeline = shared.pipeline.load_full();
    let alerts = &pipeline.config.alerts;
    states.retain(|name, state| {
        let kept = alerts.rules.iter().any(|r| &r.name == name);
        if !kept && state.is_firing() {
            metrics::gauge!(ALERTS_FIRING, "alert" => name.clone()).set(0.0);
        }
        kept
    });
    if alerts.rules.is_empty() {
        return;
    }
    let needs_health = alerts
        .rules
        .iter()
        .any(|r| matches!(r.condition, Condition::DependencyDown { .. }));
    let health = if needs_health {
        Some(shared.health.report(shared).await)
    } else {
        None
    };
    let now = Instant::now();
    for rule in &alerts.rules {
        let (holds, value) = measure(shared, &pipeline, rule, health.as_ref(), now);
        let state = states.entry(rule.name.clone()).or_default();
        let Some(event) = state.step(now, holds, rule.for_, rule.repeat_interval) else {
            continue;
        };
        let (status, repeat, firing_for) = match event {
            Event::Fired => ("firing", false, Duration::ZERO),
            Event::Repeated { firing_for } => ("firing", true, firing_for),
            Event::Resolved { firing_for } => ("resolved", false, firing_for),
        };
        metrics::gauge!(ALERTS_FIRING, "alert" => rule.name.clone()).set(if status == "firing" {
            1.0
        } else {
            0.0
        });
        let notice = Notice {
            alert: rule.name.clone(),
            status,
            repeat,
            severity: rule.severity.clone(),
            condition: condition_name(&rule.condition),
            value,
            threshold: threshold_text(&rule.condition),
            summary: rule.summary.clone(),
            firing_seconds: firing_for.as_secs(),
            at: Notice::now(),
            instance: instance.to_owned(),
        };
        if status == "firing" {
            tracing::warn!(target: "rampart::alert", alert = %notice.alert, status, repeat, severity = %notice.severity, value = %notice.value, threshold = %notice.threshold, "alert firing");
        } else {
            tracing::info!(target: "rampart::alert", alert = %notice.alert, status, firing_seconds = notice.firing_seconds, value = %notice.value, "alert resolved");
        }
        for &index in &rule.notify {
            let Some(notifier) = alerts.notifiers.get(index).cloned() else {
                continue;
            };
            let (client, notice) = (client.clone(), notice.clone());
            tokio::spawn(async move { notify::deliver(&client, &notifier, &notice).await });
        }
    }
}

/// Whether the rule's condition holds now, and the measured value in words.
fn measure(
    shared: &Shared,
    pipeline: &crate::proxy::Pipeline,
    rule: &AlertRule,
    health: Option<&Report>,
    now: Instant,
) -> (bool, String) {
    match &rule.condition {
        Condition::ErrorRate {
            above,
            window,
            min_requests,
        } => {
            let s = shared.retained.load().window.summary(now, *window);
            let holds = s.requests >= *min_requests && s.error_rate > *above;
            (
                holds,
                format!(
                    "error rate {:.1}% over {} ({} of {} requests)",
                    s.error_rate * 100.0,
                    humantime::format_duration(*window),
                    s.errors,
                    s.requests
                ),
            )
        }
        Condition::Latency {
            quantile,
            above,
            window,
            min_requests,
        } => {
            let s = shared.retained.load().window.summary(now, *window);
            let (name, value) = match quantile {
                Quantile::P95 => ("p95", s.p95_ms),
                Quantile::P99 => ("p99", s.p99_ms),
            };
            let ms = value.unwrap_or(0.0);
            let holds = s.requests >= *min_requests && ms > above.as_secs_f64() * 1000.0;
            (
                holds,
                format!(
                    "{name} latency {ms:.0}ms over {} ({} requests)",
                    humantime::format_duration(*window),
                    s.requests
                ),
            )
        }
        Condition::DependencyDown { dependency } => {
            let down: Vec<&str> = health
                .map(|report| {
                    report
                        .dependencies
                        .iter()
                        .filter(|d| dependency.as_ref().is_none_or(|n| *n == d.name))
                        .filter(|d| d.status == Status::Unhealthy)
                        .map(|d| d.name.as_str())
                        .collect()
                })
                .unwrap_or_default();
            let value = if down.is_empty() {
                "every dependency is up".to_owned()
            } else {
                format!("down: {}", down.join(", "))
            };
            (!down.is_empty(), value)
        }
        Condition::CircuitOpen { upstream } => {
            let open: Vec<&str> = pipeline
                .upstreams()
                .iter()
                .filter(|u| upstream.as_ref().is_none_or(|n| **n == *u.name))
                .filter(|u| {
                    u.breaker
                        .as_ref()
                        .is_some_and(|b| b.state() == Circuit::Open)
                })
                .map(|u| &*u.name)
                .collect();
            let value = if open.is_empty() {
                "every circuit is closed".to_owned()
            } else {
                format!("circuit open: {}", open.join(", "))
            };
            (!open.is_empty(), value)
        }
        Condition::RssAbove { bytes } => {
            let rss = crate::observe::process::sample()
                .resident_memory_bytes
                .unwrap_or(0);
            (
                rss > *bytes,
                format!("resident memory {} MiB", rss / (1024 * 1024)),
            )
        }
        Condition::StoreDegraded { store } => {
            let stores = shared.retained.load().stores.clone();
            let mut degraded = Vec::new();
            let healths = [
                stores.redis.as_ref().map(|s| &s.health),
                stores.postgres.as_ref().map(|s| &s.health),
            ];
            for health in healths.into_iter().flatten() {
                if store.as_ref().is_none_or(|n| n == health.store) && health.is_degraded() {
                    degraded.push(health.store);
                }
            }
            let value = if degraded.is_empty() {
                "every store is healthy".to_owned()
            } else {
                format!("degraded: {}", degraded.join(", "))
            };
            (!degraded.is_empty(), value)
        }
    }
}

fn condition_name(condition: &Condition) -> &'static str {
    match condition {
        Condition::ErrorRate { .. } => "error_rate",
        Condition::Latency {
            quantile: Quantile::P95,
            ..
        } => "latency_p95",
        Condition::Latency { .. } => "latency_p99",
        Condition::DependencyDown { .. } => "dependency_down",
        Condition::CircuitOpen { .. } => "circuit_open",
        Condition::RssAbove { .. } => "rss_above",
        Condition::StoreDegraded { .. } => "store_degraded",
    }
}

fn threshold_text(condition: &Condition) -> String {
    match condition {
        Condition::ErrorRate { above, .. } => format!("{}%", above * 100.0),
        Condition::Latency { above, .. } => humantime::format_duration(*above).to_string(),
        Condition::RssAbove { bytes } => format!("{} MiB", bytes / (1024 * 1024)),
        Condition::DependencyDown { .. } => "down".to_owned(),
        Condition::CircuitOpen { .. } => "open".to_owned(),
        Condition::StoreDegraded { .. } => "degraded".to_owned(),
    }
}

fn instance_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rampart".to_owned())
}
