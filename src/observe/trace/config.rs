//! `[tracing]`: the TOML model, its validation with key paths, and the resolved
//! [`TracingConfig`]. Nothing here runs; an absent section or an empty `endpoint` means
//! tracing is off.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::locate::KeyPath;
use crate::config::units::deserialize_opt_duration;
use crate::config::validate::Problems;

/// `[tracing]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    /// OTLP/HTTP traces URL (`http://collector:4318/v1/traces`); empty turns tracing off.
    pub endpoint: String,
    /// Fraction of new traces recorded, 0 to 1 (default 1).
    pub sample_ratio: Option<f64>,
    /// Honour an incoming `traceparent`'s sampled flag (default true).
    pub respect_parent: Option<bool>,
    /// `service.name` of the exported spans (default `rampart`).
    pub service_name: Option<String>,
    /// Extra headers on every export, e.g. `{ authorization = "Bearer ${OTLP_TOKEN}" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Time one export may take before it is abandoned (default 10s).
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub timeout: Option<Duration>,
    /// Finished spans waiting for export; more are dropped and counted (default 2048).
    pub max_queue: Option<usize>,
    /// Spans per export request (default 512).
    pub batch_size: Option<usize>,
    /// Longest wait before a partial batch is sent (default 5s).
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub batch_interval: Option<Duration>,
}

/// Tracing as the pipeline uses it.
#[derive(Debug, Clone)]
pub struct TracingConfig {
    pub endpoint: reqwest::Url,
    pub sample_ratio: f64,
    pub respect_parent: bool,
    pub service_name: String,
    /// Values are marked sensitive (hidden from `Debug`).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub timeout: Duration,
    pub max_queue: usize,
    pub batch_size: usize,
    pub batch_interval: Duration,
}

pub const DEFAULT_SAMPLE_RATIO: f64 = 1.0;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_QUEUE: usize = 2048;
const DEFAULT_BATCH_SIZE: usize = 512;
const DEFAULT_BATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Validates `[tracing]`; `None` when it is absent or its endpoint is empty (off).
pub fn resolve(
    section: Option<&TracingSection>,
    root: &KeyPath,
    problems: &mut Problems,
) -> Option<TracingConfig> {
    let section = section?;
    let path = root.key("tracing");
    let endpoint = section.endpoint.trim();
    if endpoint.is_empty() {
        return None;
    }
    let endpoint = match reqwest::Url::parse(endpoint) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        _ => {
            problems.push((
                path.key("endpoint"),
                format!(
                    "expected an http:// or https:// OTLP traces URL such as \"http://127.0.0.1:4318/v1/traces\", got {endpoint:?}"
                ),
            ));
            None
        }
    };
    let sample_ratio = section.sample_ratio.unwrap_or(DEFAULT_SAMPLE_RATIO);
    if !(0.0..=1.0).contains(&sample_ratio) {
        problems.push((
            path.key("sample_ratio"),
            format!(
                "expected a fraction from 0 to 1 (0.1 records one new trace in ten), got {sample_ratio}"
            ),
        ));
    }
    let service_name = section
        .service_name
        .as_deref()
        .map_or("rampart", str::trim)
        .to_owned();
    if service_name.is_empty() {
        problems.push((
            path.key("service_name"),
            "expected a non-empty service name".into(),
        ));
    }
    let mut headers = Vec::new();
    for (name, value) in &section.headers {
        let at = path.key("headers").key(name);
        let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
            problems.push((at, format!("expected an HTTP header name, got {name:?}")));
            continue;
        };
        match http::HeaderValue::from_str(value) {
            Ok(mut value) => {
                value.set_sensitive(true);
                headers.push((header, value));
            }
            Err(_) => problems.push((
                at,
                "expected a header value of visible ASCII characters".into(),
            )),
        }
    }
    let timeout = section.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() {
        problems.push((
            path.key("timeout"),
            "expected a duration above zero such as \"10s\"".into(),
        ));
    }
    let max_queue = section.max_queue.unwrap_or(DEFAULT_MAX_QUEUE);
    if !(1..=1_000_000).contains(&max_queue) {
        problems.push((
            path.key("max_queue"),
            format!("expected 1 to 1000000 spans, got {max_queue}"),
        ));
    }
    let batch_size = section
        .batch_size
        .unwrap_or(DEFAULT_BATCH_SIZE.min(max_queue.max(1)));
    if batch_size == 0 || batch_size > max_queue {
        problems.push((
            path.key("batch_size"),
            format!("expected 1 to max_queue ({max_queue}) spans, got {batch_size}"),
        ));
    }
    let batch_interval = section.batch_interval.unwrap_or(DEFAULT_BATCH_INTERVAL);
    if batch_interval < Duration::from_millis(10) {
        problems.push((
            path.key("batch_interval"),
            format!("expected at least 10ms, got {batch_interval:?}"),
        ));
    }
    Some(TracingConfig {
        endpoint: endpoint?,
        sample_ratio,
        respect_parent: section.respect_parent.unwrap_or(true),
        service_name,
        headers,
        timeout,
        max_queue,
        batch_size,
        batch_interval,
    })
}
