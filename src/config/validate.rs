//! Checks the relations the serde model cannot: addresses, names that must exist or be unique,
//! routes that can never match, TLS files that must load. Collects every problem (with its key
//! path) instead of stopping at the first, and builds the resolved [`Config`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use http::Method;

use super::file::{FileConfig, RouteSection, UpstreamSection};
use super::locate::KeyPath;
use super::model::*;
use crate::security::ip_rules::parse_net;

pub type Problems = Vec<(KeyPath, String)>;

pub fn validate(file: &FileConfig, base_dir: &Path) -> Result<Config, Problems> {
    let mut problems = Problems::new();
    let root = KeyPath::root();
    let server_path = root.key("server");
    let server = &file.server;

    let listen = addresses(&server.listen, &server_path.key("listen"), &mut problems);
    let tls = server.tls.as_ref().and_then(|tls| {
        let path = server_path.key("tls");
        let listen = addresses(&tls.listen, &path.key("listen"), &mut problems);
        if tls.listen.is_empty() {
            problems.push((
                path.key("listen"),
                "expected at least one address for TLS".into(),
            ));
        }
        let cert = base_dir.join(&tls.cert);
        let key = base_dir.join(&tls.key);
        match crate::server::tls::load_server_config(&cert, &key) {
            Ok(server_config) => Some(TlsConfig {
                listen,
                cert,
                key,
                server_config,
            }),
            Err(error) => {
                problems.push((path.key(error.key), error.message));
                None
            }
        }
    });
    if server.listen.is_empty() && server.tls.is_none() {
        problems.push((
            server_path.key("listen"),
            "expected at least one listen address (or a [server.tls] listener)".into(),
        ));
    }
    let max_header_bytes = server.max_header_bytes.0;
    if !(8192..=1 << 20).contains(&max_header_bytes) {
        problems.push((
            server_path.key("max_header_bytes"),
            format!("expected between 8KiB and 1MiB, got {max_header_bytes}"),
        ));
    }
    let trusted_proxies = server
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, text)| match parse_net(text) {
            Some(net) => Some(net),
            None => {
                problems.push((
                    server_path.key("trusted_proxies").index(i),
                    format!("expected an IP address or CIDR such as \"10.0.0.0/8\", got {text:?}"),
                ));
                None
            }
        })
        .collect();

    let workers = match server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n if n > 256 => {
            problems.push((
                server_path.key("workers"),
                format!("expected 0 (one per CPU) to 256, got {n}"),
            ));
            1
        }
        n => n,
    };

    let admin_path = root.key("admin").key("listen");
    let admin_listen = address(&file.admin.listen, &admin_path, &mut problems);

    // Every listener on a distinct address (port 0 asks the system for a free one).
    let mut listeners: Vec<(KeyPath, &String)> = Vec::new();
    listeners.extend(
        server
            .listen
            .iter()
            .enumerate()
            .map(|(i, a)| (server_path.key("listen").index(i), a)),
    );
    if let Some(tls) = &server.tls {
        listeners.extend(
            tls.listen
                .iter()
                .enumerate()
                .map(|(i, a)| (server_path.key("tls").key("listen").index(i), a)),
        );
    }
    if let Some(redirect) = &server.https_redirect {
        listeners.extend(
            redirect
                .listen
                .iter()
                .enumerate()
                .map(|(i, a)| (server_path.key("https_redirect").key("listen").index(i), a)),
        );
    }
    listeners.push((admin_path.clone(), &file.admin.listen));
    let mut seen: HashMap<SocketAddr, KeyPath> = HashMap::new();
    for (path, text) in listeners {
        let Ok(addr) = SocketAddr::from_str(text.trim()) else {
            continue;
        };
        if addr.port() == 0 {
            continue;
        }
        if let Some(first) = seen.get(&addr) {
            problems.push((path, format!("address {addr} is already used by `{first}`")));
        } else {
            seen.insert(addr, path);
        }
    }

    let log_path = root.key("log");
    if let Err(error) = tracing_subscriber::EnvFilter::builder().parse(&file.log.level) {
        problems.push((
            log_path.key("level"),
            format!("expected a level such as \"info\" or \"rampart=debug,info\": {error}"),
        ));
    }
    let log_filter = super::observe::log_filter(&file.log, &log_path, &mut problems);
    let log_file = super::observe::log_file(&file.log, &log_path, base_dir, &mut problems);

    if !(0.0..=1.0).contains(&file.log.access_log_sample) {
        problems.push((
            log_path.key("access_log_sample"),
            format!(
                "expected a fraction from 0 to 1 (0.1 logs one successful request in ten), got {}",
                file.log.access_log_sample
            ),
        ));
    }

    let https_redirect = server.https_redirect.as_ref().map(|redirect| {
        let path = server_path.key("https_redirect");
        if redirect.listen.is_empty() {
            problems.push((path.key("listen"), "expected at least one address".into()));
        }
        HttpsRedirectConfig {
            listen: addresses(&redirect.listen, &path.key("listen"), &mut problems),
            https_port: redirect.https_port,
        }
    });
    if server.max_headers == 0 || server.max_headers > 1000 {
        problems.push((
            server_path.key("max_headers"),
            format!("expected 1 to 1000, got {}", server.max_headers),
        ));
    }
    let max_uri_bytes = server.max_uri_bytes.0;
    if !(256..=max_header_bytes).contains(&max_uri_bytes) {
        problems.push((
            server_path.key("max_uri_bytes"),
            format!("expected between 256 bytes and max_header_bytes ({max_header_bytes}), got {max_uri_bytes}"),
        ));
    }

    super::security::check_top_level(file, base_dir, &mut problems);
    let default_headers = super::security::default_headers(file, &mut problems);
    super::ratelimit::check_stores(file, &mut problems);
    let rate_limit = super::ratelimit::resolve(file, &mut problems);
    let cache = super::cache::resolve(file, &mut problems);
    let compression = super::cache::resolve_compression(file, &mut problems);
    let upstreams = validate_upstreams(&file.upstreams, &root, &mut problems);
    let shared = Shared {
        rate_limit: rate_limit.as_ref(),
        cache: cache.as_ref(),
        compression: compression.as_ref(),
    };
    let routes = validate_routes(file, &root, base_dir, &shared, &mut problems);
    let upstream_names: Vec<&str> = file.upstreams.iter().map(|u| u.name.as_str()).collect();
    let alerts = crate::observe::alerts::config::resolve(
        &file.alerts,
        &file.notifiers,
        &upstream_names,
        &root,
        &mut problems,
    );
    let tracing =
        crate::observe::trace::config::resolve(file.tracing.as_ref(), &root, &mut problems);
    let error_reporting = crate::observe::error_report::config::resolve(
        file.error_reporting.as_ref(),
        &root,
        &mut problems,
    );

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Config {
        server: ServerConfig {
            listen,
            workers,
            tls,
            header_read_timeout: server.header_read_timeout,
            request_timeout: server.request_timeout,
            idle_timeout: server.idle_timeout,
            max_header_bytes: max_header_bytes as usize,
            max_body_bytes: server.max_body_bytes.0,
            trusted_proxies,
            drain_timeout: server.drain_timeout,
            max_headers: server.max_headers,
            max_uri_bytes: max_uri_bytes as usize,
            min_body_rate: server.min_body_rate.0,
            body_rate_grace: server.body_rate_grace,
            https_redirect,
        },
        admin: AdminConfig {
            listen: admin_listen.expect("checked above"),
        },
        log: LogConfig {
            format: file.log.format,
            level: log_filter,
            file: log_file,
            access_log: file.log.access_log,
            access_log_sample: file.log.access_log_sample,
            redact_query_keys: file
                .log
                .redact_query_keys
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect(),
        },
        upstreams,
        routes,
        default_headers,
        blocking: file.blocking.clone().filter(|b| b.enabled),
        auth: file.auth.clone(),
        base_dir: base_dir.to_path_buf(),
        stores: {
            // An empty url turns [store.redis] off (`url = "${REDIS_URL:-}"`).
            let mut stores = file.store.clone();
            if stores
                .redis
                .as_ref()
                .is_some_and(|r| r.url.trim().is_empty())
            {
                stores.redis = None;
            }
            stores
        },
        rate_limit,
        alerts,
        cache,
        tracing,
        error_reporting,
    })
}

fn address(text: &str, path: &KeyPath, problems: &mut Problems) -> Option<SocketAddr> {
    match SocketAddr::from_str(text.trim()) {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push((
                path.clone(),
                format!("expected an IP address with a port such as \"127.0.0.1:8080\" or \"[::]:8080\", got {text:?}"),
            ));
            None
        }
    }
}

fn addresses(texts: &[String], path: &KeyPath, problems: &mut Problems) -> Vec<SocketAddr> {
    texts
        .iter()
        .enumerate()
        .filter_map(|(i, text)| address(text, &path.index(i), problems))
        .collect()
}

fn validate_upstreams(
    sections: &[UpstreamSection],
    root: &KeyPath,
    problems: &mut Problems,
) -> Vec<UpstreamConfig> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut upstreams = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        let path = root.key("upstream").index(i);
        check_name(&section.name, &path.key("name"), problems);
        check_unique(&mut names, &section.name, i, "upstream", &path, problems);
        let targets = super::resilience::targets(section, &path, problems);
        super::resilience::check_upstream(section, &path, problems);
        if section.pool_max_idle == 0 {
            problems.push((path.key("pool_max_idle"), "expected at least 1".into()));
        }
        upstreams.push(UpstreamConfig {
            name: section.name.clone(),
            targets,
            connect_timeout: section.connect_timeout,
            pool_max_idle: section.pool_max_idle,
            pool_idle_timeout: section.pool_idle_timeout,
            balance: section.balance,
            resolve_interval: section.resolve_interval,
            when_none_healthy: section.when_none_healthy,
            health_check: section.health_check.clone(),
            passive_health: section.passive_health.clone().unwrap_or_default(),
            circuit_breaker: section.circuit_breaker.clone(),
        });
    }
    upstreams
}

/// Records `name` as defined at `kind[index]`, reporting it if an earlier entry took it.
fn check_unique<'a>(
    names: &mut HashMap<&'a str, usize>,
    name: &'a str,
    index: usize,
    kind: &str,
    path: &KeyPath,
    problems: &mut Problems,
) {
    if let Some(first) = names.insert(name, index) {
        problems.push((
            path.key("name"),
            format!("duplicate {kind} name `{name}` (first defined at {kind}[{first}])"),
        ));
    }
}

fn check_name(name: &str, path: &KeyPath, problems: &mut Problems) {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        problems.push((
            path.clone(),
            format!("expected a name of 1-64 letters, digits, `-`, `_` or `.`, got {name:?}"),
        ));
    }
}

/// Top-level settings the routes refer to.
struct Shared<'a> {
    rate_limit: Option<&'a crate::ratelimit::policy::RateLimitConfig>,
    cache: Option<&'a crate::cache::settings::CacheConfig>,
    compression: Option<&'a Arc<crate::compression::Compression>>,
}

fn validate_routes(
    file: &FileConfig,
    root: &KeyPath,
    base_dir: &Path,
    shared: &Shared<'_>,
    problems: &mut Problems,
) -> Vec<RouteConfig> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut routes: Vec<RouteConfig> = Vec::new();
    let mut detectors = crate::security::attack_filter::DetectorCache::default();
    for (i, section) in file.routes.iter().enumerate() {
        let path = root.key("route").index(i);
        check_name(&section.name, &path.key("name"), problems);
        check_unique(&mut names, &section.name, i, "route", &path, problems);
        let limits =
            super::ratelimit::route_limits(section, &path, shared.rate_limit, file, problems);
        let cache = super::cache::route_policy(section, &path, shared.cache, problems);
        let Some(mut route) =
            resolve_route(file, section, &path, base_dir, &mut detectors, problems)
        else {
            continue;
        };
        route.limits = limits;
        route.cache = cache;
        route.compression = super::cache::route_compression(file, section, shared.compression);
        if let Some((j, earlier)) = routes
            .iter()
            .enumerate()
            .find(|(_, earlier)| route_covers(earlier, &route))
        {
            problems.push((
                path.clone(),
                format!(
                    "route `{}` can never match: route `{}` (route[{j}]) comes first and matches every request it would",
                    route.name, earlier.name
                ),
            ));
        }
        routes.push(route);
    }
    routes
}

fn resolve_route(
    file: &FileConfig,
    section: &RouteSection,
    path: &KeyPath,
    base_dir: &Path,
    detectors: &mut crate::security::attack_filter::DetectorCache,
    problems: &mut Problems,
) -> Option<RouteConfig> {
    let before = problems.len();
    let security =
        super::security::route_security(file, section, path, base_dir, detectors, problems);
    let host = section.host.as_ref().and_then(|pattern| {
        let parsed = HostMatch::parse(pattern);
        if parsed.is_none() {
            problems.push((
                path.key("host"),
                format!("expected a host name such as \"api.example.com\" or \"*.example.com\", got {pattern:?}"),
            ));
        }
        parsed
    });
    let path_match = match (&section.path_prefix, &section.path) {
        (Some(_), Some(_)) => {
            problems.push((
                path.key("path"),
                "set either `path_prefix` or `path`, not both".into(),
            ));
            None
        }
        (Some(prefix), None) => {
            check_path(prefix, &path.key("path_prefix"), problems).map(PathMatch::Prefix)
        }
        (None, Some(exact)) => check_path(exact, &path.key("path"), problems).map(PathMatch::Exact),
        (None, None) => Some(PathMatch::Prefix("/".into())),
    };
    let methods = section.methods.as_ref().map(|methods| {
        methods
            .iter()
            .enumerate()
            .filter_map(|(m, text)| {
                let upper = text.to_ascii_uppercase();
                let known = [
                    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
                ];
                if known.contains(&upper.as_str()) {
                    Method::from_str(&upper).ok()
                } else {
                    problems.push((
                        path.key("methods").index(m),
                        format!(
                            "expected an HTTP method such as \"GET\" or \"POST\", got {text:?}"
                        ),
                    ));
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    if section.methods.as_ref().is_some_and(Vec::is_empty) {
        problems.push((
            path.key("methods"),
            "expected at least one method (omit the key to allow all)".into(),
        ));
    }
    let upstream = file
        .upstreams
        .iter()
        .position(|u| u.name == section.upstream);
    if upstream.is_none() {
        let mut known: Vec<String> = file
            .upstreams
            .iter()
            .map(|u| format!("`{}`", u.name))
            .collect();
        known.dedup();
        let known = if known.is_empty() {
            "no [[upstream]] is defined".to_owned()
        } else {
            format!("expected one of {}", known.join(", "))
        };
        problems.push((
            path.key("upstream"),
            format!("unknown upstream `{}`: {known}", section.upstream),
        ));
    }
    let resilience = super::resilience::route(file, section, path, problems);
    let rewrite = match (section.strip_prefix, &section.rewrite) {
        (true, Some(_)) => {
            problems.push((
                path.key("rewrite"),
                "set either `strip_prefix` or `rewrite`, not both".into(),
            ));
            Rewrite::None
        }
        (true, None) => {
            if section.path.is_some() {
                problems.push((
                    path.key("strip_prefix"),
                    "`strip_prefix` needs `path_prefix` (use `rewrite` with an exact `path`)"
                        .into(),
                ));
            }
            Rewrite::StripPrefix
        }
        (false, Some(with)) => check_path(with, &path.key("rewrite"), problems)
            .map(Rewrite::Replace)
            .unwrap_or(Rewrite::None),
        (false, None) => Rewrite::None,
    };
    if problems.len() > before {
        return None;
    }
    Some(RouteConfig {
        name: section.name.clone(),
        host,
        path: path_match?,
        methods: methods.filter(|m| !m.is_empty()),
        upstream: upstream?,
        rewrite,
        preserve_host: section.preserve_host,
        timeout: section.timeout.unwrap_or(file.server.request_timeout),
        max_body_bytes: section
            .max_body_bytes
            .map_or(file.server.max_body_bytes.0, |b| b.0),
        security,
        limits: Vec::new(),
        cache: None,
        compression: None,
        resilience,
    })
}

fn check_path(text: &str, path: &KeyPath, problems: &mut Problems) -> Option<String> {
    let valid = text.starts_with('/')
        && !text.contains(['?', '#', ' '])
        && text.chars().all(|c| c.is_ascii_graphic());
    if valid {
        Some(text.to_owned())
    } else {
        problems.push((
            path.clone(),
            format!("expected a path starting with `/` without query or spaces, got {text:?}"),
        ));
        None
    }
}

/// Whether `earlier` matches every request `later` would (so `later` is dead).
fn route_covers(earlier: &RouteConfig, later: &RouteConfig) -> bool {
    let host = match (&earlier.host, &later.host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a.covers(b),
    };
    let methods = match (&earlier.methods, &later.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
    };
    host && methods && earlier.path.covers(&later.path)
}
