//! Validation of `[store]`, `[rate_limit]` and each route's `limits`: store URLs, policy names,
//! key parts, limits and windows that the stores can compute exactly.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use http::Method;

use super::file::{FileConfig, RouteSection};
use super::locate::KeyPath;
use super::validate::Problems;
use crate::ratelimit::algorithm::{Algorithm, Limit};
use crate::ratelimit::headers::policy_item;
use crate::ratelimit::policy::{KeyPart, Policy, RateLimitConfig};
use crate::store::StoreKind;

/// Largest `limit × window` in milliseconds: Redis scripts compute in doubles.
const MAX_LIMIT_WINDOW_PRODUCT: u128 = 1 << 53;

/// Checks `[store]`: URL schemes the clients understand.
pub fn check_stores(file: &FileConfig, problems: &mut Problems) {
    let path = KeyPath::root().key("store");
    // An empty url (`url = "${REDIS_URL:-}"`) turns [store.redis] off.
    if let Some(redis) = file
        .store
        .redis
        .as_ref()
        .filter(|r| !r.url.trim().is_empty())
    {
        let path = path.key("redis");
        let mut urls = vec![(path.key("url"), &redis.url)];
        urls.extend(
            redis
                .cluster_urls
                .iter()
                .enumerate()
                .map(|(i, u)| (path.key("cluster_urls").index(i), u)),
        );
        for (key, url) in urls {
            if !url.starts_with("redis://") || url.len() <= "redis://".len() {
                problems.push((
                    key,
                    "expected a URL such as \"redis://127.0.0.1:6379\" (rediss:// with TLS is not supported yet)"
                        .into(),
                ));
            }
        }
        if !redis.cluster && !redis.cluster_urls.is_empty() {
            problems.push((
                path.key("cluster_urls"),
                "cluster_urls needs `cluster = true`".into(),
            ));
        }
    }
    if let Some(postgres) = &file.store.postgres {
        let path = path.key("postgres");
        let url = &postgres.url;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            problems.push((
                path.key("url"),
                "expected a URL such as \"postgres://user@127.0.0.1:5432/rampart\"".into(),
            ));
        }
        if postgres.max_connections == 0 {
            problems.push((path.key("max_connections"), "expected at least 1".into()));
        }
        if postgres.cleanup_interval.is_zero() {
            problems.push((
                path.key("cleanup_interval"),
                "expected a duration above zero".into(),
            ));
        }
    }
}

/// Resolves `[rate_limit]`, reporting every problem.
pub fn resolve(file: &FileConfig, problems: &mut Problems) -> Option<RateLimitConfig> {
    let section = file.rate_limit.as_ref()?;
    let path = KeyPath::root().key("rate_limit");
    match section.store {
        StoreKind::Redis
            if file
                .store
                .redis
                .as_ref()
                .is_none_or(|r| r.url.trim().is_empty()) =>
        {
            problems.push((
                path.key("store"),
                "store = \"redis\" needs a [store.redis] section with its url".into(),
            ))
        }
        StoreKind::Postgres if file.store.postgres.is_none() => problems.push((
            path.key("store"),
            "store = \"postgres\" needs a [store.postgres] section with its url".into(),
        )),
        _ => {}
    }
    if section.timeout.is_zero() {
        problems.push((path.key("timeout"), "expected a duration above zero".into()));
    }
    if section.instances == 0 {
        problems.push((path.key("instances"), "expected at least 1".into()));
    }
    if section.max_keys < 16 {
        problems.push((path.key("max_keys"), "expected at least 16".into()));
    }
    if section.probe_interval.is_zero() {
        problems.push((
            path.key("probe_interval"),
            "expected a duration above zero".into(),
        ));
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut policies = Vec::new();
    for (i, settings) in section.policies.iter().enumerate() {
        let path = path.key("policy").index(i);
        let before = problems.len();
        let name_ok = !settings.name.is_empty()
            && settings
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            problems.push((
                path.key("name"),
                format!(
                    "expected a name of letters, digits, `_`, `-` or `.`, got {:?}",
                    settings.name
                ),
            ));
        }
        if let Some(first) = names.insert(&settings.name, i) {
            problems.push((
                path.key("name"),
                format!(
                    "policy `{}` is already defined by policy[{first}]",
                    settings.name
                ),
            ));
        }
        let mut key = Vec::new();
        if settings.key.is_empty() {
            problems.push((path.key("key"), "expected at least one key part".into()));
        }
        for (k, part) in settings.key.iter().enumerate() {
            match KeyPart::parse(part) {
                Some(part) => key.push(part),
                None => problems.push((
                    path.key("key").index(k),
                    format!(
                        "expected ip, user, api_key, route, method or header:<name>, got {part:?}"
                    ),
                )),
            }
        }
        let window_ms = settings.window.as_millis();
        if window_ms == 0 {
            problems.push((path.key("window"), "expected at least 1ms".into()));
        }
        if settings.limit == 0 {
            problems.push((path.key("limit"), "expected at least 1".into()));
        }
        if u128::from(settings.limit) * window_ms >= MAX_LIMIT_WINDOW_PRODUCT {
            problems.push((
                path.key("limit"),
                "limit × window (in ms) must stay below 2^53; use a shorter window or a lower limit".into(),
            ));
        }
        if settings.algorithm == Algorithm::TokenBucket
            && window_ms * 1000 < u128::from(settings.limit)
        {
            problems.push((
                path.key("limit"),
                "a token bucket refills at most one request per microsecond".into(),
            ));
        }
        let burst = match (settings.algorithm, settings.burst) {
            (Algorithm::SlidingWindow, Some(_)) => {
                problems.push((
                    path.key("burst"),
                    "burst applies to algorithm = \"token_bucket\" only".into(),
                ));
                settings.limit
            }
            (_, Some(0)) => {
                problems.push((path.key("burst"), "expected at least 1".into()));
                1
            }
            (_, burst) => burst.unwrap_or(settings.limit),
        };
        if settings.cost == 0 || settings.cost > settings.limit.min(burst) {
            problems.push((
                path.key("cost"),
                format!(
                    "expected 1 to {} (a request must fit in the limit)",
                    settings.limit.min(burst).max(1)
                ),
            ));
        }
        let methods = settings.methods.as_ref().map(|methods| {
            methods
                .iter()
                .enumerate()
                .filter_map(
                    |(m, text)| match Method::from_str(&text.to_ascii_uppercase()) {
                        Ok(method) if text.chars().all(|c| c.is_ascii_alphabetic()) => Some(method),
                        _ => {
                            problems.push((
                                path.key("methods").index(m),
                                format!("expected an HTTP method such as \"POST\", got {text:?}"),
                            ));
                            None
                        }
                    },
                )
                .collect::<Vec<_>>()
        });
        if problems.len() > before {
            continue;
        }
        let window_ms = window_ms as u64;
        policies.push(Arc::new(Policy {
            name: Arc::from(settings.name.as_str()),
            key,
            limit: Limit {
                algorithm: settings.algorithm,
                limit: settings.limit,
                window_ms,
                burst,
                cost: settings.cost,
            },
            methods,
            on_store_failure: settings
                .on_store_failure
                .unwrap_or(section.on_store_failure),
            block_on_violation: settings.block_on_violation,
            header_item: policy_item(&settings.name, settings.limit, window_ms.div_ceil(1000)),
        }));
    }
    Some(RateLimitConfig {
        store: section.store,
        timeout: section.timeout,
        instances: section.instances.max(1),
        max_keys: section.max_keys,
        probe_interval: section.probe_interval,
        policies,
    })
}

/// A route's `limits`, resolved to policies.
pub fn route_limits(
    section: &RouteSection,
    path: &KeyPath,
    config: Option<&RateLimitConfig>,
    defined: &FileConfig,
    problems: &mut Problems,
) -> Vec<Arc<Policy>> {
    let mut limits: Vec<Arc<Policy>> = Vec::new();
    for (i, name) in section.limits.iter().enumerate() {
        let found = config.and_then(|c| c.policies.iter().find(|p| &*p.name == name));
        match found {
            Some(policy) if limits.iter().any(|p| p.name == policy.name) => problems.push((
                path.key("limits").index(i),
                format!("policy `{name}` is listed twice"),
            )),
            Some(policy) => limits.push(policy.clone()),
            None => {
                // A policy with problems of its own is already reported.
                let declared = defined
                    .rate_limit
                    .as_ref()
                    .is_some_and(|r| r.policies.iter().any(|p| &p.name == name));
                if !declared {
                    problems.push((
                        path.key("limits").index(i),
                        format!("no [[rate_limit.policy]] is named `{name}`"),
                    ));
                }
            }
        }
    }
    limits
}
