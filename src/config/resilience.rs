//! Validation of the resilience settings: upstream targets (addresses, DNS names, weights),
//! health checks, breakers, and each route's retries, deadline, load shedding and fallbacks.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::file::{FileConfig, RouteSection, UpstreamSection};
use super::locate::KeyPath;
use super::model::{RouteResilience, StaticResponse, TargetConfig};
use super::validate::Problems;
use crate::resilience::breaker::BreakerSettings;

/// Largest target weight (the balancing schedule holds one entry per unit).
const MAX_WEIGHT: u32 = 100;

/// An upstream's targets: `host:port` (host an IP address, a bracketed IPv6 address or a DNS
/// name) and a weight of 1 to 100.
pub fn targets(
    section: &UpstreamSection,
    path: &KeyPath,
    problems: &mut Problems,
) -> Vec<TargetConfig> {
    if section.targets.is_empty() {
        problems.push((
            path.key("targets"),
            "expected at least one target such as \"127.0.0.1:3000\"".into(),
        ));
    }
    let mut targets = Vec::new();
    for (t, spec) in section.targets.iter().enumerate() {
        let key = path.key("targets").index(t);
        let address = spec.address();
        match parse_authority(address) {
            Some((host, port, ip)) => targets.push(TargetConfig {
                authority: address.to_owned(),
                host,
                port,
                ip,
                weight: spec.weight(),
            }),
            None => problems.push((
                if matches!(spec, super::file::TargetSpec::Weighted(_)) {
                    key.key("address")
                } else {
                    key.clone()
                },
                format!("expected host:port such as \"127.0.0.1:3000\" or \"app.internal:8080\", got {address:?}"),
            )),
        }
        if !(1..=MAX_WEIGHT).contains(&spec.weight()) {
            problems.push((
                key.key("weight"),
                format!("expected a weight from 1 to {MAX_WEIGHT}"),
            ));
        }
    }
    targets
}

/// `host:port` → (host, port, the host as an IP address when it is one).
fn parse_authority(text: &str) -> Option<(String, u16, Option<IpAddr>)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|&p| p != 0)?;
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip = std::net::Ipv6Addr::from_str(v6).ok()?;
        return Some((host.to_owned(), port, Some(IpAddr::V6(ip))));
    }
    if let Ok(ip) = std::net::Ipv4Addr::from_str(host) {
        return Some((host.to_owned(), port, Some(IpAddr::V4(ip))));
    }
    let name_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    name_ok.then(|| (host.to_owned(), port, None))
}

/// An upstream's health checks and breaker.
pub fn check_upstream(section: &UpstreamSection, path: &KeyPath, problems: &mut Problems) {
    if section.resolve_interval.is_zero() {
        problems.push((
            path.key("resolve_interval"),
            "expected a duration above zero".into(),
        ));
    }
    if let Some(check) = &section.health_check {
        let path = path.key("health_check");
        if !check.path.starts_with('/') {
            problems.push((
                path.key("path"),
                format!("expected a path starting with '/', got {:?}", check.path),
            ));
        }
        for (i, status) in check.expected_status.iter().enumerate() {
            if !(100..=599).contains(status) {
                problems.push((
                    path.key("expected_status").index(i),
                    "expected an HTTP status from 100 to 599".into(),
                ));
            }
        }
        if check.interval.is_zero() {
            problems.push((
                path.key("interval"),
                "expected a duration above zero".into(),
            ));
        }
        if check.timeout.is_zero() || check.timeout > check.interval {
            problems.push((
                path.key("timeout"),
                "expected a duration above zero and at most `interval`".into(),
            ));
        }
        for (key, value) in [
            ("healthy_threshold", check.healthy_threshold),
            ("unhealthy_threshold", check.unhealthy_threshold),
        ] {
            if value == 0 {
                problems.push((path.key(key), "expected at least 1".into()));
            }
        }
        if let Some(host) = &check.host
            && HeaderValue::from_str(host).is_err()
        {
            problems.push((
                path.key("host"),
                "expected a valid Host header value".into(),
            ));
        }
    }
    if let Some(passive) = &section.passive_health {
        let path = path.key("passive_health");
        if passive.base_ejection.is_zero() {
            problems.push((
                path.key("base_ejection"),
                "expected a duration above zero".into(),
            ));
        }
        if passive.max_ejection < passive.base_ejection {
            problems.push((
                path.key("max_ejection"),
                "expected at least `base_ejection`".into(),
            ));
        }
    }
    if let Some(breaker) = &section.circuit_breaker {
        check_breaker(breaker, &path.key("circuit_breaker"), problems);
    }
}

fn check_breaker(breaker: &BreakerSettings, path: &KeyPath, problems: &mut Problems) {
    if breaker.window.as_millis() < 10 {
        problems.push((path.key("window"), "expected at least 10ms".into()));
    }
    for (key, rate) in [
        ("error_rate", breaker.error_rate),
        ("slow_call_rate", breaker.slow_call_rate),
    ] {
        if !(rate > 0.0 && rate <= 100.0) {
            problems.push((
                path.key(key),
                format!("expected a percentage above 0 and at most 100, got {rate}"),
            ));
        }
    }
    if breaker.open_duration.is_zero() {
        problems.push((
            path.key("open_duration"),
            "expected a duration above zero".into(),
        ));
    }
    if breaker.half_open_probes == 0 {
        problems.push((path.key("half_open_probes"), "expected at least 1".into()));
    }
    if breaker.slow_call_duration.is_some_and(|d| d.is_zero()) {
        problems.push((
            path.key("slow_call_duration"),
            "expected a duration above zero".into(),
        ));
    }
}

/// A route's retries, deadline, breaker, concurrency limit and fallbacks.
pub fn route(
    file: &FileConfig,
    section: &RouteSection,
    path: &KeyPath,
    problems: &mut Problems,
) -> RouteResilience {
    if section.deadline.is_some_and(|d| d.is_zero()) {
        problems.push((
            path.key("deadline"),
            "expected a duration above zero".into(),
        ));
    }
    if let Some(retry) = &section.retry {
        let path = path.key("retry");
        if retry.attempts == 0 || retry.attempts > 10 {
            problems.push((
                path.key("attempts"),
                "expected 1 to 10 attempts (the first included)".into(),
            ));
        }
        for (i, status) in retry.statuses.iter().enumerate() {
            if !(500..=599).contains(status) && *status != 429 && *status != 408 {
                problems.push((path.key("statuses").index(i), format!("expected a 5xx status (or 408, 429): other 4xx are never retried, got {status}")));
            }
        }
        if retry.backoff_max < retry.backoff_base {
            problems.push((
                path.key("backoff_max"),
                "expected at least `backoff_base`".into(),
            ));
        }
        if !(retry.budget_percent >= 0.0 && retry.budget_percent <= 100.0) {
            problems.push((
                path.key("budget_percent"),
                "expected a percentage from 0 to 100".into(),
            ));
        }
        if retry.budget_window.as_millis() < 10 {
            problems.push((path.key("budget_window"), "expected at least 10ms".into()));
        }
    }
    if let Some(breaker) = &section.circuit_breaker {
        check_breaker(breaker, &path.key("circuit_breaker"), problems);
    }
    if let Some(shed) = &section.concurrency {
        let path = path.key("concurrency");
        if shed.max_concurrent == 0 {
            problems.push((path.key("max_concurrent"), "expected at least 1".into()));
        }
        if shed.queue > 0 && shed.queue_timeout.is_zero() {
            problems.push((
                path.key("queue_timeout"),
                "expected a duration above zero".into(),
            ));
        }
    }
    let mut fallback = Vec::new();
    for (i, name) in section.fallback.iter().enumerate() {
        match file.upstreams.iter().position(|u| &u.name == name) {
            Some(_) if *name == section.upstream => problems.push((
                path.key("fallback").index(i),
                format!("`{name}` is the route's own upstream; expected another upstream"),
            )),
            Some(index) if fallback.contains(&index) => problems.push((
                path.key("fallback").index(i),
                format!("`{name}` is listed twice"),
            )),
            Some(index) => fallback.push(index),
            None => problems.push((
                path.key("fallback").index(i),
                format!("unknown upstream `{name}`: expected the name of an [[upstream]]"),
            )),
        }
    }
    let fallback_response = section.fallback_response.as_ref().and_then(|response| {
        let path = path.key("fallback_response");
        let before = problems.len();
        let status = StatusCode::from_u16(response.status)
            .ok()
            .filter(|s| s.as_u16() >= 200);
        if status.is_none() {
            problems.push((
                path.key("status"),
                "expected an HTTP status from 200 to 599".into(),
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &response.headers {
            match (HeaderName::from_str(name), HeaderValue::from_str(value)) {
                (Ok(name), Ok(value)) => {
                    headers.insert(name, value);
                }
                _ => problems.push((
                    path.key("headers").key(name),
                    "expected a valid header name and value".into(),
                )),
            }
        }
        let body = match (&response.json, &response.body) {
            (Some(_), Some(_)) => {
                problems.push((
                    path.key("body"),
                    "set either `json` or `body`, not both".into(),
                ));
                bytes::Bytes::new()
            }
            (Some(json), None) => {
                headers
                    .entry(http::header::CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("application/json"));
                bytes::Bytes::from(serde_json::to_vec(json).unwrap_or_default())
            }
            (None, Some(text)) => {
                headers
                    .entry(http::header::CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("text/plain; charset=utf-8"));
                bytes::Bytes::from(text.clone())
            }
            (None, None) => bytes::Bytes::new(),
        };
        (problems.len() == before).then(|| {
            Arc::new(StaticResponse {
                status: status.expect("checked"),
                headers,
                body,
            })
        })
    });
    RouteResilience {
        deadline: section.deadline,
        retry: section.retry.clone(),
        circuit_breaker: section.circuit_breaker.clone(),
        concurrency: section.concurrency.clone(),
        fallback,
        fallback_response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(
            parse_authority("127.0.0.1:80").unwrap().2,
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_authority("[::1]:80").unwrap().2,
            Some("::1".parse().unwrap())
        );
        let (host, port, ip) = parse_authority("app.internal:8080").unwrap();
        assert_eq!((host.as_str(), port, ip), ("app.internal", 8080, None));
        for bad in ["app", "app:0", "app:http", ":80", "a..b:80", "[::1:80"] {
            assert!(parse_authority(bad).is_none(), "{bad}");
        }
    }
}
