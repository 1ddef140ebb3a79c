//! Stages 10 and 12 for the routes that cache: the lookup (fresh hit, stale-while-revalidate,
//! coalescing of concurrent misses, the Redis tier), and what happens to the upstream's answer
//! (storing it while it streams, refreshing a stale entry on `304`, serving stale when the
//! upstream fails within `stale-if-error`, purging on writes).
//!
//! A route without `[route.cache]` costs one `Option` check here. Only the bodies of responses
//! that may be stored are copied, and only up to `max_entry_bytes`.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;

use super::{Outgoing, Pipeline};
use crate::cache::body::{CachingBody, PendingStore};
use crate::cache::control::{self, Verdict};
use crate::cache::entry::{Entry, Origin, Times, now_ms};
use crate::cache::flight::{self, FlightGuard, Join};
use crate::cache::key::{self, Identity, KeyInput};
use crate::cache::settings::RoutePolicy;
use crate::cache::{CacheStore, Outcome, RouteCache};
use crate::compression::{self, Negotiated};
use crate::observe::access::RequestRecord;
use crate::proxy::body::{ResponseBody, full};
use crate::proxy::checks::read_body;
use crate::proxy::context::ConnInfo;
use crate::proxy::error::ProxyError;
use crate::proxy::headers::remove_hop_by_hop;
use crate::proxy::request_body::{BodyLimits, RequestBody};
use crate::proxy::router::Route;

pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub const X_CACHE_KEY: HeaderName = HeaderName::from_static("x-cache-key");

/// What stage 10 leaves for stage 12.
pub(in crate::proxy) enum CacheStep {
    /// The route does not cache.
    Off,
    /// A method the route does not cache: answered `x-cache: BYPASS`.
    Bypass,
    /// A write on a route that purges its path when the write succeeds.
    PurgeAfterWrite,
    /// A miss going upstream.
    Forward(Box<Ticket>),
}

/// A miss on its way upstream.
pub(in crate::proxy) struct Ticket {
    cache: Arc<CacheStore>,
    origin: Origin,
    request_headers: HeaderMap,
    /// A shared route and an `Authorization` header (RFC 9111 §3.5).
    authorized: bool,
    /// The entry found, no longer fresh: revalidated, or served if the upstream fails.
    stale: Option<Arc<Entry>>,
    /// Held by the request that fetches for everyone (it stores the response).
    guard: Option<FlightGuard>,
    /// `If-None-Match`/`If-Modified-Since` from `stale` were sent upstream.
    validators: bool,
    /// `Accept-Encoding` was taken off the upstream request (the route compresses itself).
    identity_upstream: bool,
}

/// What stage 10 decided.
pub(in crate::proxy) enum Lookup {
    Answer(Response<ResponseBody>),
    Continue(CacheStep, RequestBody),
}

/// Unsafe methods (RFC 9110 §9.2.1): everything but GET, HEAD, OPTIONS and TRACE.
fn is_write(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl Pipeline {
    /// Stage 10.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn cache_lookup(
        &self,
        route: &Route,
        parts: &mut http::request::Parts,
        body: RequestBody,
        limits: BodyLimits,
        host: Option<&str>,
        record: &mut RequestRecord,
        outgoing: &Outgoing<'_>,
        conn: &ConnInfo,
    ) -> Result<Lookup, ProxyError> {
        let (Some(rc), Some(cache)) = (&route.cache, &self.cache) else {
            return Ok(Lookup::Continue(CacheStep::Off, body));
        };
        // Boxed: only routes that use this stage pay for its state in the request's future.
        Box::pin(async move {
            let policy = &rc.policy;
            if !policy.caches(&parts.method) {
                if policy.purge_on_write && is_write(&parts.method) {
                    return Ok(Lookup::Continue(CacheStep::PurgeAfterWrite, body));
                }
                rc.count(Outcome::Bypass, &cache.stats);
                record.cache = Some(Outcome::Bypass.header());
                return Ok(Lookup::Continue(CacheStep::Bypass, body));
            }
            // POST keys on its body: read it now (within the route's limit) and forward it from memory.
            let body = match (parts.method == Method::POST, body) {
                (true, RequestBody::Streaming(stream)) => {
                    RequestBody::Buffered(read_body(RequestBody::Streaming(stream), limits).await?)
                }
                (_, body) => body,
            };
            let identity = if policy.shared {
                Identity::Shared
            } else if let Some(user) = &record.user {
                Identity::User(user)
            } else if let Some(api_key) = &record.api_key {
                Identity::ApiKey(api_key)
            } else if parts.headers.contains_key(header::AUTHORIZATION)
                || parts.headers.contains_key(header::COOKIE)
            {
                Identity::Credentials
            } else {
                Identity::Anonymous
            };
            let base = key::base_key(
                policy,
                &KeyInput {
                    method: &parts.method,
                    host,
                    path: parts.uri.path(),
                    query: parts.uri.query(),
                    headers: &parts.headers,
                    identity,
                    body: body.bytes().map(|b| b.as_ref()),
                },
            );
            let origin = Origin {
                route: route.name.clone(),
                path: Arc::from(parts.uri.path()),
                base,
            };
            let head = parts.method == Method::HEAD;
            let now = now_ms();
            let mut found = cache.lookup_memory(&base, &parts.headers);
            if let Some(entry) = &found
                && servable(entry, now)
            {
                return Ok(Lookup::Answer(self.serve_stored(
                    route, rc, cache, entry, now, parts, &body, &origin, conn, outgoing, record,
                )));
            }
            let mut guard = None;
            // HEAD never leads: its upstream answer has no body to store.
            if !head {
                match cache.flights.join(base) {
                    Join::Leader(leader) => {
                        // The previous leader may have stored it just now.
                        if let Some(entry) = cache.lookup_memory(&base, &parts.headers)
                            && entry.times.is_fresh(now)
                        {
                            drop(leader);
                            return Ok(Lookup::Answer(self.answer(
                                rc,
                                cache,
                                &entry,
                                Outcome::Hit,
                                parts,
                                outgoing,
                                record,
                            )));
                        }
                        if found.is_none() {
                            let timer = match &record.trace {
                                Some(trace) if cache.redis.is_some() => trace.timer(),
                                _ => None,
                            };
                            found = cache.lookup_redis(&origin, &parts.headers).await;
                            if let (Some(trace), Some(started)) = (&record.trace, timer) {
                                let outcome = if found.is_some() { "hit" } else { "miss" };
                                trace.store_span("cache lookup", "redis", started, outcome);
                            }
                            if let Some(entry) = &found
                                && servable(entry, now)
                            {
                                drop(leader);
                                return Ok(Lookup::Answer(self.serve_stored(
                                    route, rc, cache, entry, now, parts, &body, &origin, conn,
                                    outgoing, record,
                                )));
                            }
                        }
                        guard = Some(leader);
                    }
                    Join::Follower(wait) => {
                        rc.coalesced.increment(1);
                        if flight::wait(wait, cache.config.lock_timeout).await
                            && let Some(entry) = cache.lookup_memory(&base, &parts.headers)
                            && entry.times.is_fresh(now_ms())
                        {
                            return Ok(Lookup::Answer(self.answer(
                                rc,
                                cache,
                                &entry,
                                Outcome::Hit,
                                parts,
                                outgoing,
                                record,
                            )));
                        }
                        // The leader stored nothing usable, or is too slow: go upstream alone.
                    }
                }
            }
            // The client's headers, before rampart adds its own validators.
            let request_headers = parts.headers.clone();
            let mut validators = false;
            if guard.is_some()
                && let Some(entry) = &found
                && !has_conditionals(&parts.headers)
            {
                validators = add_validators(&mut parts.headers, entry);
            }
            let identity_upstream = guard.is_some() && route.config.compression.is_some();
            if identity_upstream {
                parts.headers.remove(header::ACCEPT_ENCODING);
            }
            Ok(Lookup::Continue(
                CacheStep::Forward(Box::new(Ticket {
                    cache: cache.clone(),
                    origin,
                    request_headers,
                    authorized: policy.shared && parts.headers.contains_key(header::AUTHORIZATION),
                    stale: found,
                    guard,
                    validators,
                    identity_upstream,
                })),
                body,
            ))
        })
        .await
    }

    /// Stage 12 for caching routes: the upstream's answer (or failure) meets the cache.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn cache_finish(
        &self,
        route: &Route,
        step: CacheStep,
        method: &Method,
        host: Option<&str>,
        result: Result<Response<ResponseBody>, ProxyError>,
        record: &mut RequestRecord,
        outgoing: &Outgoing<'_>,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        match step {
            CacheStep::Off => result,
            // Boxed: only caching routes pay for this stage's state in the request's future.
            step => {
                Box::pin(self.finish_caching(route, step, method, host, result, record, outgoing))
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_caching(
        &self,
        route: &Route,
        step: CacheStep,
        method: &Method,
        host: Option<&str>,
        result: Result<Response<ResponseBody>, ProxyError>,
        record: &mut RequestRecord,
        outgoing: &Outgoing<'_>,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let ticket = match step {
            CacheStep::Off => return result,
            CacheStep::Bypass => {
                return result.map(|mut response| {
                    response
                        .headers_mut()
                        .insert(X_CACHE, HeaderValue::from_static("BYPASS"));
                    response
                });
            }
            CacheStep::PurgeAfterWrite => {
                // A body is not Sync: nothing borrowed from the response lives across an await.
                let written = match (&result, &self.cache) {
                    (Ok(response), Some(cache)) if response.status().is_success() => {
                        let mut paths = vec![record.uri.path().to_owned()];
                        // RFC 9111 §4.4: the URIs in Location and Content-Location too, when
                        // they are on the same host.
                        for name in [header::LOCATION, header::CONTENT_LOCATION] {
                            if let Some(path) = response
                                .headers()
                                .get(&name)
                                .and_then(|v| same_host_path(v, record.uri.host(), host))
                                && !paths.contains(&path)
                            {
                                paths.push(path);
                            }
                        }
                        Some((cache.clone(), paths))
                    }
                    _ => None,
                };
                if let Some((cache, paths)) = written {
                    for path in paths {
                        cache.purge_path_after_write(&path).await;
                    }
                }
                return result;
            }
            CacheStep::Forward(ticket) => ticket,
        };
        let rc = route
            .cache
            .as_ref()
            .expect("a ticket is issued for caching routes");
        let cache = ticket.cache.clone();
        let now = now_ms();
        let upstream_failed = match &result {
            Err(_) => true,
            Ok(response) => matches!(response.status().as_u16(), 500 | 502 | 503 | 504),
        };
        // The resilience link: while the upstream cannot be tried at all (its breaker is open,
        // or no target is healthy) or the route fell back to its static answer, any stored
        // answer is better, however stale.
        let trigger = match &result {
            Err(ProxyError::CircuitOpen { .. }) => Some("circuit_open"),
            Err(ProxyError::NoHealthyTarget { .. }) => Some("no_healthy_target"),
            Ok(response)
                if response
                    .extensions()
                    .get::<super::call::StaticFallback>()
                    .is_some() =>
            {
                Some("static_fallback")
            }
            _ => None,
        };
        if let Some(trigger) = trigger
            && let Some(stale) = &ticket.stale
        {
            metrics::counter!(crate::observe::metrics::FALLBACKS_TOTAL, "route" => route.name.clone(), "fallback" => "stale_cache", "trigger" => trigger).increment(1);
            return Ok(self.answer_parts(
                rc,
                &cache,
                stale,
                Outcome::Stale,
                method,
                &ticket.request_headers,
                outgoing,
                record,
            ));
        }
        if upstream_failed
            && let Some(stale) = &ticket.stale
            && stale.times.within_sie(now)
        {
            return Ok(self.answer_parts(
                rc,
                &cache,
                stale,
                Outcome::Stale,
                method,
                &ticket.request_headers,
                outgoing,
                record,
            ));
        }
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                rc.count(Outcome::Miss, &cache.stats);
                record.cache = Some(Outcome::Miss.header());
                return Err(error);
            }
        };
        if response.status() == StatusCode::NOT_MODIFIED
            && ticket.validators
            && let Some(stale) = &ticket.stale
        {
            let refreshed = refresh(
                &rc.policy,
                stale,
                response.headers(),
                ticket.authorized,
                ticket.identity_upstream,
            );
            if let Some((entry, vary)) = &refreshed {
                cache.store(entry.clone(), vary, &ticket.request_headers);
            }
            let entry = refreshed.map_or_else(|| stale.clone(), |(e, _)| e);
            return Ok(self.answer_parts(
                rc,
                &cache,
                &entry,
                Outcome::Revalidated,
                method,
                &ticket.request_headers,
                outgoing,
                record,
            ));
        }
        rc.count(Outcome::Miss, &cache.stats);
        record.cache = Some(Outcome::Miss.header());
        let (mut parts, body) = response.into_parts();
        parts
            .headers
            .insert(X_CACHE, HeaderValue::from_static("MISS"));
        parts
            .headers
            .insert(X_CACHE_KEY, key_header(&ticket.origin));
        let Ticket {
            origin,
            request_headers,
            authorized,
            guard,
            identity_upstream,
            ..
        } = *ticket;
        let Some(guard) = guard else {
            return Ok(Response::from_parts(parts, body));
        };
        let too_large = crate::proxy::body::declared_length(&parts.headers)
            .is_some_and(|n| n > cache.config.max_entry_bytes);
        let admitted = admit(
            &rc.policy,
            parts.status,
            &parts.headers,
            authorized,
            identity_upstream,
            now,
        );
        let Some((times, stored_headers, vary)) = admitted.filter(|_| !too_large) else {
            drop(guard);
            return Ok(Response::from_parts(parts, body));
        };
        let pending = PendingStore {
            cache: cache.clone(),
            status: parts.status,
            headers: stored_headers,
            times,
            origin,
            vary,
            request_headers,
            guard: Some(guard),
        };
        let limit = cache.config.max_entry_bytes as usize;
        Ok(Response::from_parts(
            parts,
            CachingBody::new(body, limit, pending).boxed_unsync(),
        ))
    }

    /// A response from a stored entry, for a request still in its parts.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        rc: &RouteCache,
        cache: &Arc<CacheStore>,
        entry: &Arc<Entry>,
        outcome: Outcome,
        parts: &http::request::Parts,
        outgoing: &Outgoing<'_>,
        record: &mut RequestRecord,
    ) -> Response<ResponseBody> {
        self.answer_parts(
            rc,
            cache,
            entry,
            outcome,
            &parts.method,
            &parts.headers,
            outgoing,
            record,
        )
    }

    /// A response from a stored entry: its status and headers, `Age`, `x-cache`, `x-cache-key`,
    /// the body encoded as the client accepts (each encoding made once per entry), or `304` when
    /// the client's validators match.
    #[allow(clippy::too_many_arguments)]
    fn answer_parts(
        &self,
        rc: &RouteCache,
        cache: &Arc<CacheStore>,
        entry: &Arc<Entry>,
        outcome: Outcome,
        method: &Method,
        request_headers: &HeaderMap,
        outgoing: &Outgoing<'_>,
        record: &mut RequestRecord,
    ) -> Response<ResponseBody> {
        rc.count(outcome, &cache.stats);
        record.cache = Some(outcome.header());
        let now = now_ms();
        let mut headers = entry.headers.clone();
        headers.insert(
            header::AGE,
            HeaderValue::from(entry.times.age_ms(now) / 1000),
        );
        headers.insert(X_CACHE, HeaderValue::from_static(outcome.header()));
        headers.insert(X_CACHE_KEY, key_header(&entry.origin));
        if not_modified(request_headers, &entry.headers) {
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            for name in [
                header::CACHE_CONTROL,
                header::CONTENT_LOCATION,
                header::DATE,
                header::ETAG,
                header::EXPIRES,
                header::VARY,
                header::AGE,
                header::LAST_MODIFIED,
                X_CACHE,
                X_CACHE_KEY,
            ] {
                for value in headers.get_all(&name) {
                    response.headers_mut().append(name.clone(), value.clone());
                }
            }
            return response;
        }
        let mut body = entry.body.clone();
        let encoding = outgoing
            .compression
            .as_ref()
            .and_then(|negotiated| encodable(negotiated, entry, &headers).map(|e| (e, negotiated)));
        match encoding {
            Some((encoding, negotiated)) if *method != Method::HEAD => {
                let levels = negotiated.policy.levels;
                if let Some((encoded, made)) = entry.encoded(encoding, |raw| {
                    compression::encoder::compress(encoding, &levels, raw).ok()
                }) {
                    if made {
                        cache.reweigh(entry.clone(), request_headers);
                    }
                    compression::mark_encoded(&mut headers, encoding, Some(encoded.len()));
                    body = encoded;
                }
            }
            _ => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            }
        }
        let body = if *method == Method::HEAD {
            Bytes::new()
        } else {
            body
        };
        let mut response = Response::new(full(body));
        *response.status_mut() = entry.status;
        *response.headers_mut() = headers;
        response
    }

    /// Answers from a [`servable`] entry: a hit while it is fresh, otherwise a stale answer with
    /// a revalidation started in the background (stale-while-revalidate).
    #[allow(clippy::too_many_arguments)]
    fn serve_stored(
        &self,
        route: &Route,
        rc: &RouteCache,
        cache: &Arc<CacheStore>,
        entry: &Arc<Entry>,
        now: u64,
        parts: &http::request::Parts,
        body: &RequestBody,
        origin: &Origin,
        conn: &ConnInfo,
        outgoing: &Outgoing<'_>,
        record: &mut RequestRecord,
    ) -> Response<ResponseBody> {
        let outcome = if entry.times.is_fresh(now) {
            Outcome::Hit
        } else {
            self.revalidate_later(route, parts, body, entry, origin, conn, &record.request_id);
            Outcome::Stale
        };
        self.answer(rc, cache, entry, outcome, parts, outgoing, record)
    }

    /// Stale-while-revalidate: refreshes the entry in the background, once per key at a time,
    /// while this request is answered from the stale entry.
    #[allow(clippy::too_many_arguments)]
    fn revalidate_later(
        &self,
        route: &Route,
        parts: &http::request::Parts,
        body: &RequestBody,
        entry: &Arc<Entry>,
        origin: &Origin,
        conn: &ConnInfo,
        request_id: &HeaderValue,
    ) {
        let (Some(rc), Some(cache)) = (&route.cache, &self.cache) else {
            return;
        };
        let Join::Leader(guard) = cache.flights.join(origin.base) else {
            return; // someone is already fetching it
        };
        let (mut head, ()) = Request::new(()).into_parts();
        head.method = parts.method.clone();
        head.uri = parts.uri.clone();
        head.version = parts.version;
        head.headers = parts.headers.clone();
        for name in [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
            header::IF_RANGE,
            header::RANGE,
        ] {
            head.headers.remove(name);
        }
        let request_headers = head.headers.clone();
        let identity_upstream = route.config.compression.is_some();
        if identity_upstream {
            head.headers.remove(header::ACCEPT_ENCODING);
        }
        let validators = add_validators(&mut head.headers, entry);
        let upstream = self.upstreams[route.config.upstream].clone();
        // Through the breakers like any request: none while they are open.
        let mut permits = Vec::new();
        for breaker in [&route.breaker, &upstream.breaker].into_iter().flatten() {
            match breaker.admit() {
                Ok(permit) => permits.push(permit),
                Err(_) => return,
            }
        }
        let Some(endpoint) = upstream.pick(None) else {
            return;
        };
        if self
            .prepare_upstream_head(&mut head, route, &endpoint.host, conn, request_id)
            .is_err()
        {
            return;
        }
        let body = body.bytes().cloned().unwrap_or_default();
        let policy = rc.policy.clone();
        let cache = cache.clone();
        let entry = entry.clone();
        let origin = origin.clone();
        let timeout = route.config.timeout;
        let authorized = policy.shared && request_headers.contains_key(header::AUTHORIZATION);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let sent = tokio::time::timeout(
                timeout,
                crate::proxy::upstream::Endpoint::send(
                    &endpoint,
                    Request::from_parts(head, full(body)),
                    upstream.pool,
                    started,
                ),
            )
            .await;
            let success = matches!(&sent, Ok(Ok(r)) if r.status().as_u16() < 500);
            let outcome = if success {
                crate::resilience::breaker::Outcome::Success
            } else {
                crate::resilience::breaker::Outcome::Failure
            };
            for permit in permits {
                permit.record(outcome, started.elapsed());
            }
            upstream.record(&endpoint, success);
            let Ok(Ok(response)) = sent else {
                tracing::debug!(
                    upstream = &*upstream.name,
                    "cache: background revalidation failed"
                );
                return;
            };
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            let now = now_ms();
            if parts.status == StatusCode::NOT_MODIFIED && validators {
                if let Some((entry, vary)) = refresh(
                    &policy,
                    &entry,
                    &parts.headers,
                    authorized,
                    identity_upstream,
                ) {
                    cache.store(entry, &vary, &request_headers);
                }
                return;
            }
            let Some((times, headers, vary)) = admit(
                &policy,
                parts.status,
                &parts.headers,
                authorized,
                identity_upstream,
                now,
            ) else {
                return;
            };
            let limited = http_body_util::Limited::new(body, cache.config.max_entry_bytes as usize);
            let Ok(collected) = limited.collect().await else {
                return;
            };
            let entry = Arc::new(Entry::new(
                parts.status,
                headers,
                collected.to_bytes(),
                times,
                origin,
            ));
            cache.store(entry, &vary, &request_headers);
            drop(guard);
        });
    }
}

/// Whether (and how) to store a response: its times, the headers to keep, the `Vary` names.
fn admit(
    policy: &RoutePolicy,
    status: StatusCode,
    headers: &HeaderMap,
    authorized: bool,
    identity_upstream: bool,
    now: u64,
) -> Option<(Times, HeaderMap, Vec<HeaderName>)> {
    let Verdict::Store(lifetime) =
        control::evaluate(policy, status, headers, authorized, SystemTime::now())
    else {
        return None;
    };
    let mut vary = if policy.honor_vary {
        control::vary_names(headers)?
    } else {
        Vec::new()
    };
    if identity_upstream {
        // The upstream never saw the client's Accept-Encoding: its answer does not depend on it.
        vary.retain(|n| n != header::ACCEPT_ENCODING);
    }
    let mut stored = headers.clone();
    stored.remove(header::SET_COOKIE);
    stored.remove(header::AGE);
    stored.remove(X_CACHE);
    stored.remove(X_CACHE_KEY);
    // An entry with a validator stays past its freshness (the route's ttl, at least ten minutes
    // as nginx's `inactive`), so that it can be revalidated with a conditional request instead
    // of fetched again; the memory bound still evicts the least used first.
    let keep = if headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED)
    {
        policy
            .keep_stale
            .max(policy.ttl)
            .max(std::time::Duration::from_secs(600))
    } else {
        policy.keep_stale
    };
    Some((Times::new(&lifetime, keep, now), stored, vary))
}

/// A stale entry refreshed by a `304`, with its new times; `None` when the merged headers no
/// longer allow storing it.
fn refresh(
    policy: &RoutePolicy,
    stale: &Entry,
    update: &HeaderMap,
    authorized: bool,
    identity_upstream: bool,
) -> Option<(Arc<Entry>, Vec<HeaderName>)> {
    let merged = stale.refreshed(update, stale.times);
    let (times, headers, vary) = admit(
        policy,
        stale.status,
        &merged.headers,
        authorized,
        identity_upstream,
        now_ms(),
    )?;
    let entry = Entry::new(
        stale.status,
        headers,
        stale.body.clone(),
        times,
        stale.origin.clone(),
    );
    Some((Arc::new(entry), vary))
}

/// Whether a stored entry may answer now: fresh, or stale within stale-while-revalidate.
fn servable(entry: &Entry, now: u64) -> bool {
    entry.times.is_fresh(now) || entry.times.within_swr(now)
}

/// The path of a `Location`-like header value, when it is relative or names the request's host.
fn same_host_path(
    value: &HeaderValue,
    uri_host: Option<&str>,
    host: Option<&str>,
) -> Option<String> {
    let uri: http::Uri = value.to_str().ok()?.parse().ok()?;
    if let Some(target) = uri.host() {
        let target = target.to_ascii_lowercase();
        if Some(target.as_str()) != host && Some(target.as_str()) != uri_host {
            return None;
        }
    }
    let path = uri.path();
    path.starts_with('/').then(|| path.to_owned())
}

fn key_header(origin: &Origin) -> HeaderValue {
    HeaderValue::from_str(&origin.base.hex()).expect("hex is a valid header value")
}

fn has_conditionals(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_NONE_MATCH)
        || headers.contains_key(header::IF_MODIFIED_SINCE)
        || headers.contains_key(header::IF_MATCH)
        || headers.contains_key(header::IF_UNMODIFIED_SINCE)
        || headers.contains_key(header::RANGE)
}

/// Adds the entry's validators to a request; false when it has none.
fn add_validators(headers: &mut HeaderMap, entry: &Entry) -> bool {
    let mut added = false;
    if let Some(etag) = entry.headers.get(header::ETAG) {
        headers.insert(header::IF_NONE_MATCH, etag.clone());
        added = true;
    }
    if let Some(modified) = entry.headers.get(header::LAST_MODIFIED) {
        headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
        added = true;
    }
    added
}

/// Whether the client's `If-None-Match` (or, without it, `If-Modified-Since`) matches the entry.
fn not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let weak = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    if let Some(inm) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let etag = weak(etag);
        return inm
            .split(',')
            .any(|tag| tag.trim() == "*" || weak(tag) == etag);
    }
    let since = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let modified = stored
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    matches!((since, modified), (Some(since), Some(modified)) if modified <= since)
}

/// The encoding to answer a hit with, when the entry may be encoded for this client.
fn encodable(
    negotiated: &Negotiated,
    entry: &Entry,
    headers: &HeaderMap,
) -> Option<compression::Encoding> {
    let encoding = negotiated.encoding?;
    let policy = &negotiated.policy;
    (entry.body.len() as u64 >= policy.min_bytes && policy.eligible(entry.status, headers))
        .then_some(encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn conditional_requests() {
        let stored = map(&[
            ("etag", "\"v1\""),
            ("last-modified", "Sun, 22 Nov 2026 08:00:00 GMT"),
        ]);
        assert!(not_modified(&map(&[("if-none-match", "\"v1\"")]), &stored));
        assert!(not_modified(
            &map(&[("if-none-match", "W/\"v1\", \"v0\"")]),
            &stored
        ));
        assert!(not_modified(&map(&[("if-none-match", "*")]), &stored));
        assert!(!not_modified(&map(&[("if-none-match", "\"v2\"")]), &stored));
        // If-None-Match wins over If-Modified-Since.
        assert!(!not_modified(
            &map(&[
                ("if-none-match", "\"v2\""),
                ("if-modified-since", "Sun, 22 Nov 2026 09:00:00 GMT")
            ]),
            &stored
        ));
        assert!(not_modified(
            &map(&[("if-modified-since", "Sun, 22 Nov 2026 08:00:00 GMT")]),
            &stored
        ));
        assert!(!not_modified(
            &map(&[("if-modified-since", "Sun, 22 Nov 2026 07:59:59 GMT")]),
            &stored
        ));
        assert!(!not_modified(&HeaderMap::new(), &stored));
    }
}
