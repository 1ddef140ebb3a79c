//! Rate-limit settings as the user writes them (`[rate_limit]`, `[[rate_limit.policy]]`), the
//! resolved [`Policy`], and how a request's key is built from its parts.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;

use super::algorithm::{Algorithm, Limit};
use crate::config::units::deserialize_duration;
use crate::store::StoreKind;

/// `[rate_limit]`: where limits are kept, what happens when that store fails, and the policies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// `memory` (this process), `redis` or `postgres` (shared by every instance).
    #[serde(default)]
    pub store: StoreKind,
    /// The most a shared-store call may take before the fallback answers instead.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// What policies do while the shared store is down; a policy may override it.
    #[serde(default)]
    pub on_store_failure: FailureMode,
    /// Instances sharing the store: the local fallback divides each limit by this.
    #[serde(default = "default_instances")]
    pub instances: u64,
    /// Most keys kept in memory (the memory store, and the fallback); idle keys go first.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// How often a degraded store is tried again.
    #[serde(
        default = "default_probe_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub probe_interval: Duration,
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicySettings>,
}

fn default_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_instances() -> u64 {
    1
}
fn default_max_keys() -> usize {
    100_000
}
fn default_probe_interval() -> Duration {
    Duration::from_secs(1)
}

/// What a policy does while its shared store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Limit in this process, with the limit divided by `instances`.
    #[default]
    Local,
    /// Let every request through.
    Open,
    /// Refuse every request (503 with `Retry-After`).
    Closed,
}

/// `[[rate_limit.policy]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    pub name: String,
    /// Parts of the key: `ip`, `user`, `api_key`, `route`, `method`, `header:<name>`.
    /// `user`, `api_key` and a header fall back to the client IP when the request has none.
    #[serde(default = "default_key")]
    pub key: Vec<String>,
    pub limit: u64,
    #[serde(deserialize_with = "deserialize_duration")]
    pub window: Duration,
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Token bucket only: the most requests let through at once (default: `limit`).
    pub burst: Option<u64>,
    /// Units one request takes.
    #[serde(default = "default_cost")]
    pub cost: u64,
    /// Methods the policy counts; every method when absent.
    pub methods: Option<Vec<String>>,
    pub on_store_failure: Option<FailureMode>,
    /// Whether refusals count as violations towards progressive blocking (`[blocking]`).
    #[serde(default = "default_true")]
    pub block_on_violation: bool,
}

fn default_key() -> Vec<String> {
    vec!["ip".into()]
}
fn default_cost() -> u64 {
    1
}
fn default_true() -> bool {
    true
}

/// One part of a rate-limit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Ip,
    /// The authenticated subject (JWT `sub`, or an API key's name).
    User,
    /// The name of the API key that authenticated the request.
    ApiKey,
    Route,
    Method,
    Header(HeaderName),
}

impl KeyPart {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ip" => Self::Ip,
            "user" => Self::User,
            "api_key" => Self::ApiKey,
            "route" => Self::Route,
            "method" => Self::Method,
            other => {
                let name = other.strip_prefix("header:")?;
                Self::Header(HeaderName::from_bytes(name.trim().as_bytes()).ok()?)
            }
        })
    }
}

/// A resolved policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: Arc<str>,
    pub key: Vec<KeyPart>,
    pub limit: Limit,
    /// `None` counts every method.
    pub methods: Option<Vec<Method>>,
    pub on_store_failure: FailureMode,
    pub block_on_violation: bool,
    /// This policy's item of `RateLimit-Policy`: `"name";q=100;w=60`.
    pub header_item: String,
}

/// The resolved `[rate_limit]`.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub store: StoreKind,
    pub timeout: Duration,
    pub instances: u64,
    pub max_keys: usize,
    pub probe_interval: Duration,
    pub policies: Vec<Arc<Policy>>,
}

/// What a request offers for its key.
pub struct KeySource<'a> {
    pub client_ip: std::net::IpAddr,
    pub user: Option<&'a str>,
    pub api_key: Option<&'a str>,
    pub route: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// Longest key-part value kept as is; longer ones (headers) are replaced by their SHA-256.
const MAX_PART_BYTES: usize = 128;

impl Policy {
    /// Whether this policy counts requests of `method`.
    pub fn applies_to(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }

    /// The store key: `policy|part=value|…`. Values are escaped so that no request can forge
    /// another's key.
    pub fn key(&self, source: &KeySource<'_>) -> String {
        let mut key = String::with_capacity(64);
        key.push_str(&self.name);
        for part in &self.key {
            key.push('|');
            let ip = |key: &mut String| {
                key.push_str("ip=");
                key.push_str(&source.client_ip.to_string());
            };
            match part {
                KeyPart::Ip => ip(&mut key),
                KeyPart::User => match source.user {
                    Some(user) => push_value(&mut key, "user=", user.as_bytes()),
                    None => ip(&mut key),
                },
                KeyPart::ApiKey => match source.api_key {
                    Some(name) => push_value(&mut key, "api_key=", name.as_bytes()),
                    None => ip(&mut key),
                },
                KeyPart::Route => push_value(&mut key, "route=", source.route.as_bytes()),
                KeyPart::Method => {
                    push_value(&mut key, "method=", source.method.as_str().as_bytes())
                }
                KeyPart::Header(name) => {
                    match source.headers.get(name).map(HeaderValue::as_bytes) {
                        Some(value) => {
                            key.push_str(name.as_str());
                            push_value(&mut key, "=", value);
                        }
                        None => ip(&mut key),
                    }
                }
            }
        }
        key
    }
}

fn push_value(key: &mut String, label: &str, value: &[u8]) {
    key.push_str(label);
    if value.len() > MAX_PART_BYTES {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value);
        key.push_str("sha256:");
        for byte in digest.as_ref() {
            key.push_str(&format!("{byte:02x}"));
        }
        return;
    }
    for &byte in value {
        if byte.is_ascii_graphic() && !matches!(byte, b'|' | b'=' | b'%' | b'{' | b'}') {
            key.push(byte as char);
        } else {
            key.push_str(&format!("%{byte:02X}"));
        }
    }
}
