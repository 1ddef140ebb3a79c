//! The request lifecycle, top to bottom, in one place.
//!
//! A [`Pipeline`] is built once from a validated config and then shared read-only by every request;
//! a reload builds a new one and swaps it in whole. Stages run in the order of DESIGN.md:
//!
//! 1. accept/TLS, parse — `server` (before this module); then the head limits hyper leaves to
//!    us (URI length → 414, header count and size → 431, answered here as JSON)
//! 2. request id
//! 3. route match (a CORS preflight matches as the method it announces)
//! 4. IP allow/deny lists and the progressive blocklist — [`crate::security::ip_rules`],
//!    [`crate::security::blocklist`]
//! 5. attack-pattern check (path, query, headers, cookies, body) — [`crate::security::attack_filter`]
//! 6. CORS preflight, and the CSRF origin check for cookie sessions — [`crate::security::cors`],
//!    [`crate::security::csrf`]
//! 7. authentication (JWT, API keys) and claim rules — [`crate::security::auth`]; identity
//!    headers are stripped from every request first, so a client can never spoof them
//! 8. rate limits and quotas — [`crate::ratelimit`]; a refusal counts towards progressive
//!    blocking, and every response of a limited route carries `RateLimit-Policy`/`RateLimit`
//! 9. request validation (JSON Schema for query and body) — [`crate::security::validation`]
//! 10. cache lookup (fresh hits, stale-while-revalidate, coalesced misses, the Redis tier) —
//!     [`crate::cache`], `pipeline/cache.rs`
//! 11. upstream call (balance, breaker, retry, timeout, fallback)
//! 12. response: the cache stores what it may while it streams (or serves stale within
//!     `stale-if-error`); security headers on every response (errors too), CORS headers,
//!     compression — [`crate::compression`]
//! 13. error reporting for 5xx (when on) — [`crate::observe::error_report`]; access log and
//!     metrics — when the response body ends ([`crate::observe::access`])
//!
//! The body streams unless a check must read it (validation, body inspection); then it is read
//! once, within the route's size limit and the minimum upload rate, and forwarded from memory.
//! The checks that need no pipeline state live in `proxy/checks.rs`.

mod cache;
mod call;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use ipnet::IpNet;

use super::body::{ObservedBody, ResponseBody, declared_length};
use super::checks::{
    Providers, check_head, check_origin, check_validation, preflight_method, read_body,
};
use super::context::{ConnInfo, InFlight};
use super::error::ProxyError;
use super::forwarded;
use super::headers::remove_hop_by_hop;
use super::request_body::{BodyFailure, BodyLimits, Lingering, RequestBody, body_failure};
use super::request_id::{self, X_REQUEST_ID};
use super::router::{Route, Router, request_host};
use super::upstream::{SendError, Upstream, UpstreamRegistry};
use crate::config::{Config, Rewrite};
use crate::observe::access::{AccessLog, Exchange, RequestBytes, RequestRecord};
use crate::observe::error_report::{ErrorReporter, ResponseReport, credential_headers};
use crate::observe::log_layer::RequestScope;
use crate::observe::metrics::{self as m, RouteMetrics};
use crate::observe::shard::Sharded;
use crate::ratelimit::headers::{RATELIMIT, RATELIMIT_POLICY};
use crate::ratelimit::policy::KeySource;
use crate::ratelimit::{LimitState, RateLimiter, Refusal};
use crate::security::attack_filter::FilterMode;
use crate::security::auth::{AuthBuildError, Authenticator, authenticate_any};
use crate::security::blocklist::Blocklist;
use crate::security::events::{self, SecurityEvent};
use crate::security::headers::HeaderSet;
use crate::security::ip_rules::IpVerdict;
use crate::store::Stores;

/// Everything the data path needs, built from one config.
pub struct Pipeline {
    pub config: Arc<Config>,
    router: Router,
    upstreams: Vec<Arc<Upstream>>,
    /// One `Arc` per thread shard: each request holds its thread's until its body ends.
    access_log: Sharded<Arc<AccessLog>>,
    trusted_proxies: Vec<IpNet>,
    default_headers: Arc<HeaderSet>,
    /// Block state; outlives reloads (the server hands the same one to every pipeline).
    blocklist: Arc<Blocklist>,
    /// Built providers, in the order of `config.auth`.
    authenticators: Vec<Arc<Authenticator>>,
    /// Every provider's identity headers: removed from every incoming request.
    identity_headers: Vec<header::HeaderName>,
    /// `None` without a `[rate_limit]` section.
    limiter: Option<RateLimiter>,
    /// `None` when no route caches.
    cache: Option<Arc<crate::cache::CacheStore>>,
    /// `None` without `[tracing]`: then no trace work happens per request.
    tracer: Option<Arc<crate::observe::trace::Tracer>>,
    /// `None` when error reporting is off.
    errors: Option<Arc<ErrorReporter>>,
    /// Whether any route uses the request's host: a host pattern, the CSRF check or a cache
    /// key. Without one, the host is not worked out.
    needs_host: bool,
}

/// State that outlives a reload: the pipeline is rebuilt around it.
#[derive(Clone)]
pub struct Retained {
    pub blocklist: Arc<Blocklist>,
    pub stores: Arc<Stores>,
    pub limits: Arc<LimitState>,
    /// The response cache's stores; `None` when no route caches.
    pub cache: Option<Arc<crate::cache::CacheStore>>,
    /// Upstream endpoints (pools, health) and circuit breakers.
    pub upstreams: Arc<UpstreamRegistry>,
    /// Rolling request statistics (`/health/metrics`, alert rules).
    pub window: Arc<crate::observe::window::Window>,
}

/// What stage 12 needs to finish any response, the pipeline's own errors included.
#[derive(Default)]
pub(super) struct Outgoing<'p> {
    /// The matched route, borrowed from the pipeline the request holds.
    pub(super) route: Option<&'p Route>,
    pub(super) cors: Option<HeaderMap>,
    /// `RateLimit-Policy` and `RateLimit`, once stage 8 ran.
    pub(super) rate_limit: Option<(HeaderValue, HeaderValue)>,
    /// What the client accepts, for routes that compress.
    pub(super) compression: Option<crate::compression::Negotiated>,
    /// The route's concurrency place, held until the response body ends.
    pub(super) place: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The buffered request body, kept for error reporting (only when it is on).
    pub(super) error_body: Option<bytes::Bytes>,
}

impl Pipeline {
    /// Builds the pipeline, including the authentication providers (JWKS fetched here).
    pub async fn build(config: Config, retained: &Retained) -> Result<Self, AuthBuildError> {
        let mut authenticators = Vec::new();
        for settings in &config.auth {
            authenticators.push(Arc::new(
                Authenticator::build(settings, &config.base_dir).await?,
            ));
        }
        let mut identity_headers: Vec<header::HeaderName> = authenticators
            .iter()
            .flat_map(|a| a.identity_headers().cloned())
            .collect();
        identity_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        identity_headers.dedup();
        let mut upstreams = Vec::new();
        for settings in &config.upstreams {
            upstreams.push(Upstream::build(settings, &retained.upstreams).await);
        }
        retained.upstreams.mark_started();
        let upstream_names: Vec<Arc<str>> = upstreams.iter().map(|u| u.name.clone()).collect();
        // API keys sent as a query parameter are secrets whatever the parameter's name.
        let redact_query_keys: Vec<String> = config
            .log
            .redact_query_keys
            .iter()
            .cloned()
            .chain(
                authenticators
                    .iter()
                    .filter_map(|a| a.query_param().map(str::to_ascii_lowercase)),
            )
            .collect();
        let errors = config.error_reporting.as_ref().map(|settings| {
            ErrorReporter::new(
                settings,
                redact_query_keys.clone(),
                credential_headers(&config.auth),
            )
        });
        Ok(Self {
            router: Router::new(&config.routes, &upstream_names, &retained.upstreams),
            upstreams,
            access_log: Sharded::from_fn(|| {
                Arc::new(AccessLog {
                    enabled: config.log.access_log,
                    sample: config.log.access_log_sample,
                    window: retained.window.clone(),
                    redact_query_keys: redact_query_keys.clone(),
                    no_route_metrics: RouteMetrics::new(Arc::from("none")),
                })
            }),
            trusted_proxies: config.server.trusted_proxies.clone(),
            default_headers: config.default_headers.clone(),
            blocklist: retained.blocklist.clone(),
            authenticators,
            identity_headers,
            limiter: config.rate_limit.clone().map(|settings| {
                RateLimiter::new(settings, &retained.stores, retained.limits.clone())
            }),
            cache: retained.cache.clone(),
            tracer: config
                .tracing
                .as_ref()
                .map(crate::observe::trace::Tracer::new),
            errors,
            needs_host: config
                .routes
                .iter()
                .any(|r| r.host.is_some() || r.security.csrf || r.cache.is_some()),
            config: Arc::new(config),
        })
    }

    pub fn cache(&self) -> Option<&Arc<crate::cache::CacheStore>> {
        self.cache.as_ref()
    }

    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    pub fn limiter(&self) -> Option<&RateLimiter> {
        self.limiter.as_ref()
    }

    /// The error reporter; `None` when error reporting is off.
    pub fn error_reporter(&self) -> Option<&Arc<ErrorReporter>> {
        self.errors.as_ref()
    }

    /// Handles one request to its response head; the body streams afterwards. Never fails:
    /// errors are answered as responses. The `Result` and the owned arguments make this future
    /// the connection's service future itself, with no wrapper to construct and copy around it.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Result<Response<ObservedBody>, Infallible> {
        let conn = &*conn;
        let in_flight = InFlight::start(conn.activity.clone(), request.version());

        // 2. Request id: kept when well-formed, generated otherwise.
        let request_id = request_id::resolve(request.headers());
        let client_ip =
            forwarded::client_ip(conn.peer.ip(), request.headers(), &self.trusted_proxies);
        let mut record = RequestRecord {
            request_id: request_id.clone(),
            started: Instant::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            client_ip,
            client_ip_text: (client_ip == conn.peer.ip().to_canonical())
                .then(|| conn.peer_text.clone()),
            route_metrics: None,
            upstream: None,
            user: None,
            api_key: None,
            cache: None,
            limit: None,
            error: None,
            attempts: 0,
            request_bytes: RequestBytes::None,
            // A trace context (continued or new) when tracing is on.
            trace: self.tracer.as_ref().map(|t| t.start(request.headers())),
        };
        let mut outgoing = Outgoing::default();
        // Error reporting shows the client's headers; copied only when it is on.
        let error_headers = self.errors.as_ref().map(|_| request.headers().clone());
        let outcome = RequestScope::new(
            request_id.clone(),
            self.stages(&mut record, &mut outgoing, request, conn),
        )
        .await;

        let mut response = outcome.unwrap_or_else(|error| {
            record.error = Some(error.kind());
            error.into_response(request_id.to_str().unwrap_or_default())
        });
        // 12. Response headers: security headers and CORS on every response, errors included;
        // compression as the client accepts.
        if let Some(negotiated) = &outgoing.compression {
            response = crate::compression::apply(response, negotiated);
        }
        let headers = response.headers_mut();
        let security = match outgoing.route {
            Some(route) => &route.config.security.headers,
            None => &self.default_headers,
        };
        // Room for every header added below, made at once (the request id, the rate-limit pair).
        headers.reserve(security.added() + 3 + outgoing.cors.as_ref().map_or(0, HeaderMap::len));
        security.apply(headers);
        if let Some(cors) = outgoing.cors {
            for (name, value) in cors {
                match name {
                    Some(header::VARY) => {
                        headers.append(header::VARY, value);
                    }
                    Some(name) => {
                        headers.insert(name, value);
                    }
                    None => {}
                }
            }
        }
        if let Some((policy, state)) = outgoing.rate_limit {
            headers.insert(RATELIMIT_POLICY, policy);
            if !state.is_empty() {
                headers.insert(RATELIMIT, state);
            }
        }
        headers.insert(&X_REQUEST_ID, request_id);
        // 13a. Error reporting (off: one `None` check).
        if let Some(errors) = &self.errors
            && errors.wants(response.status())
        {
            errors.report_response(ResponseReport {
                status: response.status(),
                record: &record,
                headers: error_headers.as_ref(),
                body: outgoing.error_body.as_ref(),
            });
        }
        let exchange = Exchange {
            status: response.status(),
            record,
            access_log: self.access_log.local().clone(),
            in_flight,
            place: outgoing.place,
        };
        Ok(response.map(|body| ObservedBody::new(body, Box::new(exchange))))
    }

    /// Stages 1 (head limits) and 3–11; any stage may answer early with an error.
    async fn stages<'p>(
        &'p self,
        record: &mut RequestRecord,
        outgoing: &mut Outgoing<'p>,
        request: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        // 1. Head limits that hyper leaves to us.
        check_head(&request, &self.config.server)?;

        // 3. Route match; a preflight matches as the method it announces.
        let host = if self.needs_host {
            request_host(request.uri(), request.headers())
        } else {
            None
        };
        let method = preflight_method(&request).unwrap_or_else(|| request.method().clone());
        let route: &Route = self
            .router
            .find(host.as_deref(), request.uri().path(), &method)
            .ok_or(ProxyError::NoRoute)?;
        record.route_metrics = Some(route.metrics.local().clone());
        outgoing.route = Some(route);
        let security = &route.config.security;

        // 4. IP allow/deny lists and the blocklist.
        self.check_address(route, record.client_ip).await?;

        let (mut parts, body) = request.into_parts();
        for name in &self.identity_headers {
            parts.headers.remove(name);
        }
        outgoing.compression = route
            .config
            .compression
            .as_ref()
            .map(|c| c.negotiate(&parts.method, &parts.headers));
        let limits = self.body_limits(route);
        let mut body = Lingering::new(body);
        let declared = declared_length(&parts.headers);
        record.request_bytes = match declared {
            Some(length) => RequestBytes::Declared(length),
            None if http_body::Body::is_end_stream(&body) => RequestBytes::None,
            None => RequestBytes::Counted(body.count()),
        };
        if declared.is_some_and(|length| length > limits.max_bytes) {
            return Err(ProxyError::BodyTooLarge {
                limit: limits.max_bytes,
            });
        }
        let validations: Vec<_> = security
            .validations
            .iter()
            .filter(|v| v.methods.as_ref().is_none_or(|m| m.contains(&parts.method)))
            .collect();
        // The body is read once, here, when a check needs it; otherwise it streams.
        let wants_body = validations.iter().any(|v| v.validator.needs_body())
            || security
                .attack_filter
                .as_ref()
                .is_some_and(|f| f.wants_body(&parts.headers, declared));
        let body = if wants_body {
            // Boxed: only requests whose body is read pay for the reader's state.
            let bytes = Box::pin(read_body(RequestBody::Streaming(body), limits)).await?;
            if self.errors.is_some() {
                outgoing.error_body = Some(bytes.clone());
            }
            RequestBody::Buffered(bytes)
        } else {
            RequestBody::Streaming(body)
        };

        // 5. Attack-pattern check.
        self.check_attacks(route, &parts, &body, record.client_ip)
            .await?;

        // 6. CORS (preflights are answered here) and the CSRF origin check.
        if let Some(preflight) =
            check_origin(route, &parts, host.as_deref(), record.client_ip, outgoing)?
        {
            return Ok(preflight);
        }

        // 7. Authentication and claim rules; the identity goes upstream in its headers.
        self.authenticate(route, &mut parts, record).await?;

        // 8. Rate limits and quotas.
        self.check_limits(route, &parts, record, outgoing).await?;

        // 9. Request validation.
        for validation in &validations {
            check_validation(&validation.validator, &parts, &body)?;
        }

        // 10. Cache lookup.
        let method = parts.method.clone();
        let (step, body) = match self
            .cache_lookup(
                route,
                &mut parts,
                body,
                limits,
                host.as_deref(),
                record,
                outgoing,
                conn,
            )
            .await?
        {
            cache::Lookup::Answer(response) => return Ok(response),
            cache::Lookup::Continue(step, body) => (step, body),
        };

        // 11. Upstream call: load shedding, then balance, breaker, retry, timeout, fallback.
        if let Some(shed) = &route.shed {
            outgoing.place = Some(Box::pin(shed.enter()).await.map_err(|reason| {
                metrics::counter!(m::LOAD_SHED_TOTAL, "route" => route.name.clone(), "reason" => reason.as_str()).increment(1);
                ProxyError::Overloaded {
                    reason: reason.as_str(),
                }
            })?);
        }
        // Boxed: the upstream call is the largest state of the request's future, which would
        // otherwise be copied whole each time the future moves (into the connection's slot, into
        // its request scope).
        let response = Box::pin(self.call_upstream(route, parts, body, limits, conn, record)).await;

        // 12. Cache store, or a stale answer when the upstream failed (stale-if-error) or could
        // not be tried (its breaker open: the cache is the route's fallback).
        self.cache_finish(
            route,
            step,
            &method,
            host.as_deref(),
            response,
            record,
            outgoing,
        )
        .await
    }

    /// Stage 4: deny lists (403) and blocks (403 with `Retry-After`); allowlisted addresses pass.
    async fn check_address(&self, route: &Route, client_ip: IpAddr) -> Result<(), ProxyError> {
        match route.config.security.ip_rules.check(client_ip) {
            IpVerdict::Allowlisted => return Ok(()),
            IpVerdict::Denied => {
                events::emit(SecurityEvent::IpDenied, &route.name, client_ip);
                return Err(ProxyError::Forbidden {
                    kind: "ip_denied",
                    message: "requests from this address are not allowed",
                });
            }
            IpVerdict::Neutral => {}
        }
        if self.config.blocking.is_some()
            && let Some(left) = self.blocklist.blocked_for(client_ip).await
        {
            events::emit(SecurityEvent::IpBlockedRequest, &route.name, client_ip);
            return Err(ProxyError::Blocked {
                retry_after_secs: left.as_secs().max(1),
            });
        }
        Ok(())
    }

    /// Counts a violation against `client_ip` (never an allowlisted one) and blocks it when it
    /// crosses the threshold.
    pub async fn record_violation(&self, route: &Route, client_ip: IpAddr, reason: &str) {
        let Some(settings) = &self.config.blocking else {
            return;
        };
        if route.config.security.ip_rules.check(client_ip) == IpVerdict::Allowlisted {
            return;
        }
        if let Some(duration) = self.blocklist.record_violation(client_ip, settings).await {
            events::emit(
                SecurityEvent::IpBlocked {
                    seconds: duration.as_secs(),
                    reason,
                },
                &route.name,
                client_ip,
            );
        }
    }

    /// Stage 5: attack patterns in the head and the (buffered) body. In block mode a detection
    /// is refused and counts towards progressive blocking.
    async fn check_attacks(
        &self,
        route: &Route,
        parts: &http::request::Parts,
        body: &RequestBody,
        client_ip: IpAddr,
    ) -> Result<(), ProxyError> {
        let Some(filter) = &route.config.security.attack_filter else {
            return Ok(());
        };
        // Boxed: only routes that use this stage pay for its state in the request's future.
        Box::pin(async move {
            let verdict = filter.inspect(parts, body.bytes().map(|b| b.as_ref()));
            if !filter.is_attack(&verdict) {
                return Ok(());
            }
            let blocked = filter.mode == FilterMode::Block;
            if let Some(top) = verdict.top() {
                events::emit(
                    SecurityEvent::AttackDetected {
                        category: top.category.as_str(),
                        rule: top.rule,
                        location: &top.location,
                        score: verdict.score,
                        blocked,
                    },
                    &route.name,
                    client_ip,
                );
            }
            if !blocked {
                return Ok(());
            }
            self.record_violation(route, client_ip, "attack").await;
            Err(ProxyError::Forbidden {
                kind: "attack_detected",
                message: "the request was blocked by the attack filter",
            })
        })
        .await
    }

    /// Stage 7: any of the route's providers must accept the credentials, and the identity must
    /// satisfy the route's claim rules; its identity headers are added to the request.
    async fn authenticate(
        &self,
        route: &Route,
        parts: &mut http::request::Parts,
        record: &mut RequestRecord,
    ) -> Result<(), ProxyError> {
        let security = &route.config.security;
        if security.auth.is_empty() {
            return Ok(());
        }
        // Boxed: only routes that use this stage pay for its state in the request's future.
        Box::pin(async move {
            let providers = Providers {
                all: &self.authenticators,
                ids: security.auth.iter(),
            };
            let identity =
                match authenticate_any(providers, &parts.headers, parts.uri.query()).await {
                    Ok(identity) => identity,
                    Err(failure) if failure.is_missing() && security.auth_optional => return Ok(()),
                    Err(failure) => {
                        events::emit(
                            SecurityEvent::AuthFailed {
                                rule: failure.kind(),
                            },
                            &route.name,
                            record.client_ip,
                        );
                        return Err(ProxyError::Unauthorized {
                            kind: failure.kind(),
                            message: failure.message(),
                            challenge: failure.www_authenticate(),
                        });
                    }
                };
            if let Some(rules) = &security.require
                && !identity.satisfies(rules)
            {
                events::emit(
                    SecurityEvent::Forbidden {
                        rule: "claim_rules",
                    },
                    &route.name,
                    record.client_ip,
                );
                return Err(ProxyError::Forbidden {
                    kind: "forbidden",
                    message: "the authenticated identity is not allowed to do this",
                });
            }
            record.user = identity.subject.clone().or_else(|| {
                identity
                    .claim("name")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            });
            record.api_key = identity.api_key;
            for (name, value) in identity.forward {
                parts.headers.insert(name, value);
            }
            Ok(())
        })
        .await
    }

    /// Stage 8: every policy of the route must admit the request. A refusal is 429 (or 503 when
    /// the store is down and the policy fails closed) and counts towards progressive blocking.
    async fn check_limits(
        &self,
        route: &Route,
        parts: &http::request::Parts,
        record: &mut RequestRecord,
        outgoing: &mut Outgoing<'_>,
    ) -> Result<(), ProxyError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if route.limits.is_empty() {
            return Ok(());
        }
        // Boxed: only routes that use this stage pay for its state in the request's future.
        Box::pin(async move {
            let source = KeySource {
                client_ip: record.client_ip,
                user: record.user.as_deref(),
                api_key: record.api_key.as_deref(),
                route: &route.name,
                method: &parts.method,
                headers: &parts.headers,
            };
            let store = limiter.store();
            let timer = match &record.trace {
                Some(trace) if store != crate::store::StoreKind::Memory => trace.timer(),
                _ => None,
            };
            let verdict = limiter.check(&route.limits, &source).await;
            if let (Some(trace), Some(started)) = (&record.trace, timer) {
                let outcome = match &verdict.refusal {
                    None => "allowed",
                    Some(Refusal::Limited { .. }) => "limited",
                    Some(Refusal::Unavailable { .. }) => "unavailable",
                };
                trace.store_span("ratelimit check", store.as_str(), started, outcome);
            }
            outgoing.rate_limit = verdict.headers;
            match verdict.refusal {
                None => Ok(()),
                Some(Refusal::Limited {
                    policy,
                    retry_after_secs,
                    block_on_violation,
                }) => {
                    events::emit(
                        SecurityEvent::RateLimited { policy: &policy },
                        &route.name,
                        record.client_ip,
                    );
                    record.limit = Some(policy.clone());
                    if block_on_violation {
                        self.record_violation(route, record.client_ip, "rate_limit")
                            .await;
                    }
                    Err(ProxyError::RateLimited { retry_after_secs })
                }
                Some(Refusal::Unavailable { retry_after_secs }) => {
                    Err(ProxyError::RateLimitUnavailable { retry_after_secs })
                }
            }
        })
        .await
    }

    fn body_limits(&self, route: &Route) -> BodyLimits {
        let server = &self.config.server;
        BodyLimits {
            max_bytes: route.config.max_body_bytes,
            min_rate: server.min_body_rate,
            grace: server.body_rate_grace,
        }
    }

    /// Turns the client's request head into the upstream's: origin-form URI with the rewritten
    /// path, hop-by-hop headers out, `X-Forwarded-*` and the request id in, and `Host` the
    /// target's authority (or the client's, when the route preserves it).
    fn prepare_upstream_head(
        &self,
        parts: &mut http::request::Parts,
        route: &Route,
        target_host: &HeaderValue,
        conn: &ConnInfo,
        request_id: &HeaderValue,
    ) -> Result<(), ProxyError> {
        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        // An origin-form URI the route does not rewrite goes upstream as it came.
        let origin_form = parts.uri.scheme().is_none() && parts.uri.authority().is_none();
        if !(origin_form && matches!(route.config.rewrite, Rewrite::None)) {
            let path = route
                .config
                .rewrite
                .apply(&route.config.path, parts.uri.path());
            let path_and_query = match parts.uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            parts.uri = Uri::try_from(path_and_query)
                .map_err(|_| ProxyError::BadRequest("the request path cannot be forwarded"))?;
        }
        parts.version = Version::HTTP_11;

        remove_hop_by_hop(&mut parts.headers);
        // Room for the headers set below, made at once rather than as each one is inserted.
        parts.headers.reserve(4);
        let peer_trusted = forwarded::is_trusted(conn.peer.ip(), &self.trusted_proxies);
        forwarded::set_forwarded_headers(
            &mut parts.headers,
            &conn.peer_text,
            peer_trusted,
            conn.tls,
            original_host.as_ref(),
        );
        parts.headers.insert(&X_REQUEST_ID, request_id.clone());
        let host = match (route.config.preserve_host, original_host) {
            (true, Some(original)) => original,
            _ => target_host.clone(),
        };
        parts.headers.insert(header::HOST, host);
        Ok(())
    }
}

/// Counts the failure and logs it (with internal detail, which the client never sees).
fn upstream_failure(upstream: &Upstream, kind: &'static str, error: ProxyError) -> ProxyError {
    metrics::counter!(m::UPSTREAM_ERRORS_TOTAL, "upstream" => upstream.name.clone(), "kind" => kind).increment(1);
    tracing::warn!(upstream = &*upstream.name, kind, error = %error, "upstream request failed");
    error
}

/// Sorts a send error into unreachable (nothing sent), body too large, or a protocol failure.
fn classify(upstream: &Upstream, error: SendError, limit: u64) -> ProxyError {
    let name = upstream.name.to_string();
    let error = match error {
        SendError::Connect { .. } => {
            return upstream_failure(
                upstream,
                "connect",
                ProxyError::UpstreamUnreachable {
                    upstream: name,
                    source: Box::new(error),
                },
            );
        }
        SendError::Http(error) => error,
    };
    match body_failure(&error) {
        Some(BodyFailure::TooLarge) => return ProxyError::BodyTooLarge { limit },
        Some(BodyFailure::TooSlow) => return ProxyError::BodyTooSlow,
        None => {}
    }
    upstream_failure(
        upstream,
        "protocol",
        ProxyError::UpstreamProtocol {
            upstream: name,
            source: Box::new(error),
        },
    )
}
