//! Metrics: every name rampart exports, its help text, and the Prometheus recorder.
//!
//! Names follow Prometheus conventions (prefix `rampart_`, base units, counters end in `_total`);
//! labels are bounded (route and upstream names from config, never raw paths or user ids).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::histogram::{Family, Histogram, histogram};
use super::request_counts::{RouteCounts, route_counts};

pub const HTTP_REQUESTS_TOTAL: &str = "rampart_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "rampart_http_request_duration_seconds";
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "rampart_http_requests_in_flight";
pub const HTTP_RESPONSE_BYTES_TOTAL: &str = "rampart_http_response_body_bytes_total";
pub const HTTP_REQUEST_BODY_SIZE: &str = "rampart_http_request_body_bytes";
pub const HTTP_RESPONSE_BODY_SIZE: &str = "rampart_http_response_body_bytes";
pub const UPSTREAM_REQUEST_DURATION: &str = "rampart_upstream_request_duration_seconds";
pub const UPSTREAM_ERRORS_TOTAL: &str = "rampart_upstream_errors_total";
pub const CONFIG_RELOADS_TOTAL: &str = "rampart_config_reloads_total";
pub const CONNECTIONS_OPEN: &str = "rampart_connections_open";
pub const BUILD_INFO: &str = "rampart_build_info";
pub const SECURITY_EVENTS_TOTAL: &str = "rampart_security_events_total";
pub const BLOCKED_ADDRESSES: &str = "rampart_blocked_addresses";
pub const RATELIMIT_DECISIONS_TOTAL: &str = "rampart_ratelimit_decisions_total";
pub const RATELIMIT_STORE_DEGRADED: &str = "rampart_ratelimit_store_degraded";
pub const RATELIMIT_STORE_DURATION: &str = "rampart_ratelimit_store_duration_seconds";
pub const RATELIMIT_STORE_ERRORS_TOTAL: &str = "rampart_ratelimit_store_errors_total";
pub const CACHE_REQUESTS_TOTAL: &str = "rampart_cache_requests_total";
pub const CACHE_COALESCED_TOTAL: &str = "rampart_cache_coalesced_total";
pub const CACHE_MEMORY_BYTES: &str = "rampart_cache_memory_bytes";
pub const CACHE_ENTRIES: &str = "rampart_cache_entries";
pub const CACHE_HIT_RATIO: &str = "rampart_cache_hit_ratio";
pub const CACHE_EVICTIONS_TOTAL: &str = "rampart_cache_evictions_total";
pub const CACHE_STORE_ERRORS_TOTAL: &str = "rampart_cache_store_errors_total";
pub const CACHE_PURGED_TOTAL: &str = "rampart_cache_purged_total";
pub const COMPRESSION_RESPONSES_TOTAL: &str = "rampart_compression_responses_total";
pub const CIRCUIT_STATE: &str = "rampart_circuit_state";
pub const CIRCUIT_TRANSITIONS_TOTAL: &str = "rampart_circuit_transitions_total";
pub const UPSTREAM_TARGET_HEALTHY: &str = "rampart_upstream_target_healthy";
pub const UPSTREAM_EJECTIONS_TOTAL: &str = "rampart_upstream_ejections_total";
pub const UPSTREAM_RETRIES_TOTAL: &str = "rampart_upstream_retries_total";
pub const RETRY_BUDGET_EXHAUSTED_TOTAL: &str = "rampart_retry_budget_exhausted_total";
pub const LOAD_SHED_TOTAL: &str = "rampart_load_shed_total";
pub const FALLBACKS_TOTAL: &str = "rampart_fallbacks_total";
pub const ERROR_REPORTS_TOTAL: &str = "rampart_error_reports_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Body sizes: 64 B to 64 MiB, four times apart.
const BODY_SIZE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];
/// Store calls take well under a millisecond on a local network.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The per-request histograms, kept apart from the recorder ([`super::histogram`]).
pub static REQUEST_DURATION: Family = Family {
    name: HTTP_REQUEST_DURATION,
    help: "Time from request head to the end of the response body, by route.",
    bounds: LATENCY_BUCKETS,
    label: "route",
};
pub static REQUEST_BODY_SIZE: Family = Family {
    name: HTTP_REQUEST_BODY_SIZE,
    help: "Request body sizes, by route: the declared length, or the bytes read from a chunked body.",
    bounds: BODY_SIZE_BUCKETS,
    label: "route",
};
pub static RESPONSE_BODY_SIZE: Family = Family {
    name: HTTP_RESPONSE_BODY_SIZE,
    help: "Response body sizes sent to clients, by route.",
    bounds: BODY_SIZE_BUCKETS,
    label: "route",
};
pub static UPSTREAM_DURATION: Family = Family {
    name: UPSTREAM_REQUEST_DURATION,
    help: "Time until the upstream's response head, by upstream.",
    bounds: LATENCY_BUCKETS,
    label: "upstream",
};

/// Every family of [`super::histogram`], in the order `/metrics` shows them.
pub const HISTOGRAMS: &[&Family] = &[
    &REQUEST_DURATION,
    &REQUEST_BODY_SIZE,
    &RESPONSE_BODY_SIZE,
    &UPSTREAM_DURATION,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(RATELIMIT_STORE_DURATION.into()),
                    STORE_BUCKETS,
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embedding rampart); keep ours usable.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

fn spawn_upkeep(handle: PrometheusHandle) {
    // The recorder's histograms (the rate-limit store's call time, one sample per request of a
    // limited route) buffer every sample until drained, about 10 bytes each: drain every second
    // rather than every five.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }
}

fn describe() {
    describe_counter!(
        UPSTREAM_ERRORS_TOTAL,
        "Upstream calls that failed, by upstream and kind (connect, timeout, protocol)."
    );
    describe_counter!(
        ERROR_REPORTS_TOTAL,
        "Error events for Sentry, by result (sent, failed, dropped, rate_limited, sampled_out)."
    );
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        "Configuration reloads, by result (success, failure)."
    );
    describe_gauge!(CONNECTIONS_OPEN, "Client connections open now.");
    describe_gauge!(BUILD_INFO, "Always 1; the version label tells the build.");
    describe_counter!(
        SECURITY_EVENTS_TOTAL,
        "Security events (auth_failed, forbidden, ip_denied, ip_blocked, ip_block_refused, attack_detected, origin_refused), by route and rule."
    );
    describe_counter!(
        RATELIMIT_DECISIONS_TOTAL,
        "Rate-limit decisions, by route, policy and decision (allowed, denied, fail_open, fail_closed)."
    );
    describe_gauge!(
        CIRCUIT_STATE,
        "Circuit breaker state by upstream and route (route empty for the upstream's own): 0 closed, 1 open, 2 half-open."
    );
    describe_counter!(
        CIRCUIT_TRANSITIONS_TOTAL,
        "Circuit breaker transitions, by upstream, route and the state entered (open, half_open, closed)."
    );
    describe_gauge!(
        UPSTREAM_TARGET_HEALTHY,
        "1 while an upstream target passes its active health checks (always 1 without checks)."
    );
    describe_counter!(
        UPSTREAM_EJECTIONS_TOTAL,
        "Targets ejected after consecutive failures, by upstream and target."
    );
    describe_counter!(
        UPSTREAM_RETRIES_TOTAL,
        "Retried upstream attempts, by route and the failure retried (connect, timeout, status, protocol)."
    );
    describe_counter!(
        RETRY_BUDGET_EXHAUSTED_TOTAL,
        "Retries not made because the route's retry budget was spent, by route."
    );
    describe_counter!(
        LOAD_SHED_TOTAL,
        "Requests refused by a route's concurrency limit, by route and reason (queue_full, queue_timeout)."
    );
    describe_counter!(
        FALLBACKS_TOTAL,
        "Requests served by a route's fallback, by route, the fallback (an upstream name or static) and the trigger (circuit_open, no_healthy_target, attempts_exhausted)."
    );
    describe_gauge!(
        RATELIMIT_STORE_DEGRADED,
        "1 while a shared store (redis, postgres) is failing or too slow and limits use their fallback."
    );
    describe_histogram!(
        RATELIMIT_STORE_DURATION,
        Unit::Seconds,
        "Time of one rate-limit store call (all of a request's policies), by store."
    );
    describe_counter!(
        RATELIMIT_STORE_ERRORS_TOTAL,
        "Rate-limit store calls that failed or exceeded the time budget, by store and kind (error, timeout)."
    );
    describe_counter!(
        CACHE_REQUESTS_TOTAL,
        "Requests of caching routes, by route and result (hit, stale, miss, revalidated, bypass)."
    );
    describe_counter!(
        CACHE_COALESCED_TOTAL,
        "Misses that waited for a request already fetching the same key, by route."
    );
    describe_gauge!(
        CACHE_MEMORY_BYTES,
        Unit::Bytes,
        "Bytes held by the memory cache (bodies, encoded forms and headers)."
    );
    describe_gauge!(CACHE_ENTRIES, "Values held by the memory cache.");
    describe_gauge!(
        CACHE_HIT_RATIO,
        "Lookups answered from the cache (fresh or stale) over all lookups, since start."
    );
    describe_counter!(
        CACHE_EVICTIONS_TOTAL,
        "Values dropped from the memory cache, by reason (size: the memory bound; expired)."
    );
    describe_counter!(
        CACHE_STORE_ERRORS_TOTAL,
        "Redis cache-tier calls that failed, timed out, or entries too large for it, by store and kind."
    );
    describe_counter!(
        CACHE_PURGED_TOTAL,
        "Cache values purged (admin API, writes), by tier (memory, redis)."
    );
    describe_counter!(
        COMPRESSION_RESPONSES_TOTAL,
        "Responses compressed, by encoding (gzip, br, zstd)."
    );
    describe_gauge!(
        BLOCKED_ADDRESSES,
        "Client addresses currently blocked by progressive blocking."
    );
}

/// A route's request metrics, resolved once when the pipeline is built.
pub struct RouteMetrics {
    route: Arc<str>,
    duration: Arc<Histogram>,
    request_body_size: Arc<Histogram>,
    response_body_size: Arc<Histogram>,
    counts: Arc<RouteCounts>,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.route)
            .finish()
    }
}

impl RouteMetrics {
    /// The route's name, as its metrics are labelled.
    pub fn route(&self) -> &str {
        &self.route
    }

    pub fn new(route: Arc<str>) -> Self {
        Self {
            duration: histogram(&REQUEST_DURATION, &route),
            request_body_size: histogram(&REQUEST_BODY_SIZE, &route),
            response_body_size: histogram(&RESPONSE_BODY_SIZE, &route),
            counts: route_counts(&route),
            route,
        }
    }

    /// Records one finished request.
    pub fn finished(
        &self,
        method: &http::Method,
        status: http::StatusCode,
        elapsed: Duration,
        request_bytes: u64,
        bytes: u64,
    ) {
        self.duration.record(elapsed.as_secs_f64());
        self.request_body_size.record(request_bytes as f64);
        self.response_body_size.record(bytes as f64);
        self.counts
            .finished(method_label(method), status.as_u16(), bytes);
    }
}

/// Standard methods as static labels; anything else is `OTHER` (a bounded label set).
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// A label value as the text format quotes it: backslash, double quote and newline escaped.
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
