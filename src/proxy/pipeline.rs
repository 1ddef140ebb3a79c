//! The request lifecycle, top to bottom, in one place.
//!
//! A [`Pipeline`] is built once from a validated config and then shared read-only by every request;
//! a reload builds a new one and swaps it in whole. Stages run in the order of DESIGN.md:
//!
//! 1. accept/TLS, parse with header and body limits — `server` (before this module)
//! 2. request id
//! 3. route match
//! 4. IP allow/deny and blocklist — *security issue*
//! 5. attack-pattern check — *security issue*
//! 6. CORS preflight — *security issue*
//! 7. authentication — *security issue*
//! 8. rate limits and quotas — *rate-limit issue*
//! 9. request validation — *security issue*
//! 10. cache lookup — *cache issue*
//! 11. upstream call (balance, breaker, retry, timeout, fallback)
//! 12. response headers, CORS, compression, cache store
//! 13. access log and metrics — when the response body ends ([`crate::observe::access`])

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, Uri, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use ipnet::IpNet;

use super::body::{BoxError, ObservedBody, ResponseBody, declared_length};
use super::context::{ConnInfo, InFlight};
use super::error::ProxyError;
use super::forwarded;
use super::headers::remove_hop_by_hop;
use super::request_id::{self, X_REQUEST_ID};
use super::router::{Route, Router, request_host};
use super::upstream::{SendError, Upstream};
use crate::config::Config;
use crate::observe::access::{AccessLog, Exchange, RequestRecord};
use crate::observe::log_layer::RequestScope;
use crate::observe::metrics::{self as m, RouteMetrics};

/// Everything the data path needs, built from one config.
pub struct Pipeline {
    pub config: Arc<Config>,
    router: Router,
    upstreams: Vec<Arc<Upstream>>,
    access_log: Arc<AccessLog>,
    trusted_proxies: Vec<IpNet>,
    max_body_bytes: u64,
    no_route_metrics: Arc<RouteMetrics>,
}

impl Pipeline {
    pub fn new(config: Config) -> Self {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| Arc::new(Upstream::new(u, config.server.workers)))
            .collect();
        Self {
            router: Router::new(&config.routes),
            upstreams,
            access_log: Arc::new(AccessLog {
                enabled: config.log.access_log,
                redact_query_keys: config.log.redact_query_keys.clone(),
            }),
            trusted_proxies: config.server.trusted_proxies.clone(),
            max_body_bytes: config.server.max_body_bytes,
            no_route_metrics: Arc::new(RouteMetrics::new(Arc::from("none"))),
            config: Arc::new(config),
        }
    }

    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// Handles one request to its response head; the body streams afterwards.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Response<ObservedBody> {
        let in_flight = InFlight::start(conn.activity.clone());

        // 2. Request id: kept when well-formed, generated otherwise.
        let request_id = request_id::resolve(request.headers());
        let mut record = RequestRecord {
            request_id: request_id.clone(),
            started: Instant::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            client_ip: forwarded::client_ip(
                conn.peer.ip(),
                request.headers(),
                &self.trusted_proxies,
            ),
            route: None,
            route_metrics: None,
            upstream: None,
            user: None,
            cache: None,
            limit: None,
            error: None,
        };
        let outcome =
            RequestScope::new(request_id.clone(), self.stages(&mut record, request, conn)).await;

        let mut response = outcome.unwrap_or_else(|error| {
            record.error = Some(error.kind());
            error.into_response(request_id.to_str().unwrap_or_default())
        });
        response.headers_mut().insert(&X_REQUEST_ID, request_id);
        let exchange = Exchange {
            status: response.status(),
            record,
            access_log: self.access_log.clone(),
            in_flight,
            no_route_metrics: self.no_route_metrics.clone(),
        };
        response.map(|body| ObservedBody::new(body, Box::new(exchange)))
    }

    /// Stages 3–12; any stage may answer early with an error.
    async fn stages(
        &self,
        record: &mut RequestRecord,
        request: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        // 3. Route match.
        let host = request_host(request.uri(), request.headers());
        let route = self
            .router
            .find(host.as_deref(), request.uri().path(), request.method())
            .ok_or(ProxyError::NoRoute)?;
        record.route = Some(route.name.clone());
        record.route_metrics = Some(route.metrics.clone());

        // 4–10 plug in here, in order, as their issues land.

        // 11. Upstream call.
        let upstream = &self.upstreams[route.config.upstream];
        record.upstream = Some(upstream.name.clone());
        let response = self
            .forward(route, upstream, request, conn, &record.request_id)
            .await?;

        // 12. Response headers.
        Ok(response)
    }

    /// Sends the request to one of `upstream`'s targets and returns its response. Bodies stream
    /// both ways, frame by frame; the route's timeout bounds the wait for the response head.
    async fn forward(
        &self,
        route: &Route,
        upstream: &Arc<Upstream>,
        request: Request<Incoming>,
        conn: &ConnInfo,
        request_id: &HeaderValue,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let (mut parts, body) = request.into_parts();
        if declared_length(&parts.headers).is_some_and(|length| length > self.max_body_bytes) {
            return Err(ProxyError::BodyTooLarge {
                limit: self.max_body_bytes,
            });
        }
        let target = upstream.pick();
        self.prepare_upstream_head(
            &mut parts,
            route,
            &upstream.targets[target],
            conn,
            request_id,
        )?;
        // A streamed body that outgrows the limit fails the exchange; `classify` makes it a 413.
        let body = Limited::new(body, self.max_body_bytes as usize)
            .map_err(BoxError::from)
            .boxed_unsync();

        let started = Instant::now();
        let sent = tokio::time::timeout(
            route.config.timeout,
            upstream.send(target, Request::from_parts(parts, body)),
        )
        .await;
        upstream.duration.record(started.elapsed().as_secs_f64());
        let response = match sent {
            Err(_) => {
                return Err(upstream_failure(
                    upstream,
                    "timeout",
                    ProxyError::UpstreamTimeout {
                        upstream: upstream.name.to_string(),
                        timeout_ms: route.config.timeout.as_millis(),
                    },
                ));
            }
            Ok(Err(error)) => return Err(classify(upstream, error, self.max_body_bytes)),
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(
            parts,
            body.map_err(BoxError::from).boxed_unsync(),
        ))
    }

    /// Turns the client's request head into the upstream's: origin-form URI with the rewritten
    /// path, hop-by-hop headers out, `X-Forwarded-*` and the request id in, and `Host` the
    /// target's authority (or the client's, when the route preserves it).
    fn prepare_upstream_head(
        &self,
        parts: &mut http::request::Parts,
        route: &Route,
        target: &Authority,
        conn: &ConnInfo,
        request_id: &HeaderValue,
    ) -> Result<(), ProxyError> {
        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
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
        parts.version = Version::HTTP_11;

        remove_hop_by_hop(&mut parts.headers);
        let peer_trusted = forwarded::is_trusted(conn.peer.ip(), &self.trusted_proxies);
        let forwarded_host = original_host.as_ref().and_then(|h| h.to_str().ok());
        forwarded::set_forwarded_headers(
            &mut parts.headers,
            conn.peer.ip(),
            peer_trusted,
            conn.tls,
            forwarded_host,
        );
        parts.headers.insert(&X_REQUEST_ID, request_id.clone());
        let host = match (route.config.preserve_host, original_host) {
            (true, Some(original)) => original,
            _ => HeaderValue::from_str(target.as_str())
                .expect("an authority is a valid header value"),
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
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return ProxyError::BodyTooLarge { limit };
        }
        source = cause.source();
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
