//! Security events: the one place that reports auth failures, refusals, blocks and attack
//! detections — as a structured log line (`event=...`, with the request id from the request's log
//! scope, client IP, route and rule) and as `rampart_security_events_total{event,route,rule}`.
//! A later issue persists these to the audit store from here.

use std::net::IpAddr;

use crate::observe::metrics as m;

/// What happened. `rule` values are bounded (a category, reason or list name), never user input.
#[derive(Debug, Clone, Copy)]
pub enum SecurityEvent<'a> {
    /// Authentication failed (`rule` = failure kind such as `token_expired`).
    AuthFailed { rule: &'a str },
    /// Authenticated but a claim rule is unmet.
    Forbidden { rule: &'a str },
    /// The client address is on a deny list (or not on an allow-only list).
    IpDenied,
    /// A request from a currently blocked address was refused.
    IpBlockedRequest,
    /// The address was just blocked for `seconds` after repeated violations.
    IpBlocked { seconds: u64, reason: &'a str },
    /// Attack patterns found; `blocked` says whether the request was refused.
    AttackDetected {
        category: &'a str,
        rule: &'a str,
        location: &'a str,
        score: u32,
        blocked: bool,
    },
    /// A CORS preflight or a CSRF check refused the request.
    OriginRefused { rule: &'a str },
    /// A rate-limit policy refused the request.
    RateLimited { policy: &'a str },
}

impl SecurityEvent<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Self::AuthFailed { .. } => "auth_failed",
            Self::Forbidden { .. } => "forbidden",
            Self::IpDenied => "ip_denied",
            Self::IpBlockedRequest => "ip_block_refused",
            Self::IpBlocked { .. } => "ip_blocked",
            Self::AttackDetected { .. } => "attack_detected",
            Self::OriginRefused { .. } => "origin_refused",
            Self::RateLimited { .. } => "rate_limited",
        }
    }

    fn rule(&self) -> &str {
        match self {
            Self::AuthFailed { rule } | Self::Forbidden { rule } | Self::OriginRefused { rule } => {
                rule
            }
            Self::IpDenied => "ip_rules",
            Self::IpBlockedRequest => "blocklist",
            Self::IpBlocked { reason, .. } => reason,
            Self::AttackDetected { category, .. } => category,
            Self::RateLimited { policy } => policy,
        }
    }
}

/// Logs and counts one event.
pub fn emit(event: SecurityEvent<'_>, route: &str, client_ip: IpAddr) {
    let name = event.name();
    let rule = event.rule();
    metrics::counter!(
        m::SECURITY_EVENTS_TOTAL,
        "event" => name,
        "route" => route.to_owned(),
        "rule" => rule.to_owned()
    )
    .increment(1);
    let client_ip = client_ip.to_string();
    match event {
        SecurityEvent::AttackDetected {
            category,
            rule,
            location,
            score,
            blocked,
        } => tracing::warn!(
            target: "rampart::security",
            event = name,
            client_ip,
            route,
            category,
            rule,
            location,
            score,
            blocked,
            "attack patterns detected"
        ),
        SecurityEvent::IpBlocked { seconds, reason } => tracing::warn!(
            target: "rampart::security",
            event = name,
            client_ip,
            route,
            rule = reason,
            block_seconds = seconds,
            "client address blocked after repeated violations"
        ),
        _ => tracing::info!(
            target: "rampart::security",
            event = name,
            client_ip,
            route,
            rule,
            "request refused"
        ),
    }
}
