//! Validation of `[cache]`, `[compression]` and each route's `[route.cache]` and `compress`:
//! sizes, durations, methods, statuses and header names, resolved into the cache's and the
//! compression's runtime policies.

use std::sync::Arc;

use http::header::HeaderName;
use http::{Method, StatusCode};

use super::file::{FileConfig, RouteSection};
use super::locate::KeyPath;
use super::validate::Problems;
use crate::cache::settings::{CacheConfig, RouteCacheSection, RoutePolicy};
use crate::compression::Compression;
use crate::store::StoreKind;

/// Resolves `[cache]`: present when the section is, or when any route caches (with defaults).
pub fn resolve(file: &FileConfig, problems: &mut Problems) -> Option<CacheConfig> {
    let any_route = file
        .routes
        .iter()
        .any(|r| r.cache.as_ref().is_some_and(|c| c.enabled));
    if file.cache.is_none() && !any_route {
        return None;
    }
    let section = file.cache.clone().unwrap_or_default();
    let path = KeyPath::root().key("cache");
    if section.max_memory.0 < 1024 * 1024 {
        problems.push((
            path.key("max_memory"),
            format!(
                "expected at least 1MiB (such as \"50MB\"), got {} bytes",
                section.max_memory.0
            ),
        ));
    }
    if section.max_memory.0 > u64::from(u32::MAX) * 16 {
        problems.push((path.key("max_memory"), "expected at most 64GiB".into()));
    }
    let max_entry_bytes = match section.max_entry_bytes {
        Some(set) => {
            let quarter = section.max_memory.0 / 4;
            if set.0 == 0 || set.0 > quarter || set.0 > u64::from(u32::MAX / 2) {
                problems.push((
                    path.key("max_entry_bytes"),
                    format!(
                        "expected 1 byte to a quarter of max_memory ({quarter} bytes, and at most 2GiB), got {}",
                        set.0
                    ),
                ));
            }
            set.0
        }
        None => (1024 * 1024).min(section.max_memory.0 / 4),
    };
    if section.default_ttl.is_zero() {
        problems.push((
            path.key("default_ttl"),
            "expected a duration above zero".into(),
        ));
    }
    let mut store = section.store;
    match section.store {
        StoreKind::Memory => {}
        StoreKind::Redis if file.store.redis.is_none() => problems.push((
            path.key("store"),
            "store = \"redis\" needs a [store.redis] section with its url".into(),
        )),
        // `[store.redis] url = "${REDIS_URL:-}"` left empty: the cache runs on memory alone.
        StoreKind::Redis
            if file
                .store
                .redis
                .as_ref()
                .is_some_and(|r| r.url.trim().is_empty()) =>
        {
            store = StoreKind::Memory;
        }
        StoreKind::Redis => {}
        StoreKind::Postgres => problems.push((
            path.key("store"),
            "expected \"memory\" or \"redis\" (PostgreSQL is not a cache tier)".into(),
        )),
    }
    if section.redis_timeout.is_zero() {
        problems.push((
            path.key("redis_timeout"),
            "expected a duration above zero".into(),
        ));
    }
    if section.redis_max_entry_bytes.0 == 0 {
        problems.push((
            path.key("redis_max_entry_bytes"),
            "expected at least 1 byte".into(),
        ));
    }
    if section.lock_timeout.is_zero() {
        problems.push((
            path.key("lock_timeout"),
            "expected a duration above zero".into(),
        ));
    }
    Some(CacheConfig {
        max_memory: section.max_memory.0,
        max_entry_bytes,
        default_ttl: section.default_ttl,
        store,
        redis_timeout: section.redis_timeout,
        redis_max_entry_bytes: section.redis_max_entry_bytes.0,
        lock_timeout: section.lock_timeout,
    })
}

/// A route's cache policy, `None` when it does not cache.
pub fn route_policy(
    section: &RouteSection,
    path: &KeyPath,
    cache: Option<&CacheConfig>,
    problems: &mut Problems,
) -> Option<Arc<RoutePolicy>> {
    let settings: &RouteCacheSection = section.cache.as_ref().filter(|c| c.enabled)?;
    let cache = cache?;
    let path = path.key("cache");
    let (mut get, mut head, mut post) = (false, false, false);
    if settings.methods.is_empty() {
        problems.push((
            path.key("methods"),
            "expected at least one of \"GET\", \"HEAD\", \"POST\"".into(),
        ));
    }
    for (i, text) in settings.methods.iter().enumerate() {
        match text.to_ascii_uppercase().parse::<Method>() {
            Ok(Method::GET) => get = true,
            Ok(Method::HEAD) => head = true,
            Ok(Method::POST) => post = true,
            _ => problems.push((
                path.key("methods").index(i),
                format!(
                    "expected \"GET\", \"HEAD\" or \"POST\" (other methods are never cached), got {text:?}"
                ),
            )),
        }
    }
    if let Some(route_methods) = &section.methods {
        let upper: Vec<String> = route_methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        for (i, text) in settings.methods.iter().enumerate() {
            if !upper.contains(&text.to_ascii_uppercase()) {
                problems.push((
                    path.key("methods").index(i),
                    format!(
                        "the route does not match {text} requests (its `methods` are {})",
                        route_methods.join(", ")
                    ),
                ));
            }
        }
    }
    let key_headers = header_names(&settings.key_headers, &path.key("key_headers"), problems);
    if settings.ttl.is_some_and(|t| t.is_zero()) && !settings.honor_cache_control {
        problems.push((
            path.key("ttl"),
            "expected a duration above zero (with honor_cache_control = false, ttl is all there is)"
                .into(),
        ));
    }
    let mut statuses = Vec::new();
    for (i, &code) in settings.statuses.iter().enumerate() {
        match StatusCode::from_u16(code) {
            Ok(status) if (200..600).contains(&code) && code != 206 && code != 304 => {
                statuses.push(status)
            }
            _ => problems.push((
                path.key("statuses").index(i),
                format!(
                    "expected a final status from 200 to 599 other than 206 and 304, got {code}"
                ),
            )),
        }
    }
    if settings.statuses.is_empty() {
        problems.push((
            path.key("statuses"),
            "expected at least one status such as 200".into(),
        ));
    }
    for (i, name) in settings.ignore_query_params.iter().enumerate() {
        if name.is_empty() || name.contains(['&', '=']) {
            problems.push((
                path.key("ignore_query_params").index(i),
                format!("expected a query parameter name, got {name:?}"),
            ));
        }
    }
    Some(Arc::new(RoutePolicy {
        ttl: settings.ttl.unwrap_or(cache.default_ttl),
        get,
        head,
        post,
        key_headers,
        ignore_query_params: settings.ignore_query_params.clone(),
        shared: settings.shared,
        honor_cache_control: settings.honor_cache_control,
        honor_vary: settings.honor_vary,
        statuses,
        strip_set_cookie: settings.strip_set_cookie,
        stale_while_revalidate: settings.stale_while_revalidate,
        stale_if_error: settings.stale_if_error,
        keep_stale: settings.keep_stale,
        purge_on_write: settings.purge_on_write,
    }))
}

fn header_names(names: &[String], path: &KeyPath, problems: &mut Problems) -> Vec<HeaderName> {
    names
        .iter()
        .enumerate()
        .filter_map(
            |(i, text)| match HeaderName::from_bytes(text.trim().as_bytes()) {
                Ok(name) => Some(name),
                Err(_) => {
                    problems.push((
                        path.index(i),
                        format!("expected a header name such as \"accept-language\", got {text:?}"),
                    ));
                    None
                }
            },
        )
        .collect()
}

/// Resolves `[compression]` once; routes share it.
pub fn resolve_compression(file: &FileConfig, problems: &mut Problems) -> Option<Arc<Compression>> {
    let any_route = file.routes.iter().any(|r| r.compress == Some(true));
    let settings = match &file.compression {
        Some(settings) => settings.clone(),
        None if any_route => Default::default(),
        None => return None,
    };
    match settings.build() {
        Ok(compression) => Some(Arc::new(compression)),
        Err((key, message)) => {
            problems.push((KeyPath::root().key("compression").join(&key), message));
            None
        }
    }
}

/// A route's compression: the shared policy unless the route says `compress = false`, or when
/// `[compression] enabled = false` and the route does not say `compress = true`.
pub fn route_compression(
    file: &FileConfig,
    section: &RouteSection,
    shared: Option<&Arc<Compression>>,
) -> Option<Arc<Compression>> {
    let enabled_everywhere = file.compression.as_ref().is_some_and(|c| c.enabled);
    match section.compress {
        Some(false) => None,
        Some(true) => shared.cloned(),
        None if enabled_everywhere => shared.cloned(),
        None => None,
    }
}
