//! The request checks of the pipeline's stages that need no pipeline state: head limits (stage
//! 1), the preflight's method for route matching (3), reading the body once for the checks that
//! need it, CORS and CSRF (6), schema validation (9). `pipeline` calls them in order; each
//! answers with a [`ProxyError`] (or, for a preflight, a response) and reports refusals through
//! [`crate::security::events`].

use std::net::IpAddr;
use std::sync::Arc;

use http::header;
use http::{Method, Request, Response};

use super::body::{BoxError, ResponseBody, full};
use super::error::ProxyError;
use super::pipeline::Outgoing;
use super::request_body::{BodyFailure, BodyLimits, RequestBody, body_failure};
use super::router::Route;
use crate::config::ServerConfig;
use crate::security::auth::Authenticator;
use crate::security::cors::{CorsDecision, PREFLIGHT_STATUS};
use crate::security::csrf;
use crate::security::events::{self, SecurityEvent};
use crate::security::validation::{RequestValidator, ValidationFailure};

/// Stage 6: CORS decides (a preflight is answered here: `Ok(Some(response))`; an actual
/// request's CORS headers are kept for stage 12), then the CSRF check for cookie sessions.
pub(super) fn check_origin(
    route: &Route,
    parts: &http::request::Parts,
    host: Option<&str>,
    client_ip: IpAddr,
    outgoing: &mut Outgoing<'_>,
) -> Result<Option<Response<ResponseBody>>, ProxyError> {
    let security = &route.config.security;
    if let Some(cors) = &security.cors {
        match cors.decide(&parts.method, &parts.headers) {
            CorsDecision::NotCors | CorsDecision::Disallowed => {}
            CorsDecision::Allowed(headers) => outgoing.cors = Some(headers),
            CorsDecision::Preflight(headers) => {
                let mut response = Response::new(full(bytes::Bytes::new()));
                *response.status_mut() = PREFLIGHT_STATUS;
                outgoing.cors = Some(headers);
                return Ok(Some(response));
            }
            CorsDecision::PreflightRefused(rule) => {
                events::emit(
                    SecurityEvent::OriginRefused { rule },
                    &route.name,
                    client_ip,
                );
                return Err(ProxyError::Forbidden {
                    kind: "cors_rejected",
                    message: "CORS preflight refused for this origin, method or header",
                });
            }
        }
    }
    if security.csrf && csrf::is_state_changing(&parts.method) {
        let allowed = |origin: &str| {
            security
                .cors
                .as_ref()
                .is_some_and(|c| c.allows_origin(origin))
        };
        if let Err(reason) = csrf::check(&parts.headers, host, allowed) {
            events::emit(
                SecurityEvent::OriginRefused { rule: "csrf" },
                &route.name,
                client_ip,
            );
            tracing::debug!(reason, "csrf check failed");
            return Err(ProxyError::Forbidden {
                kind: "csrf_rejected",
                message: "cross-site request refused: Origin or Referer is missing or not allowed",
            });
        }
    }
    Ok(None)
}

/// A route's authentication providers, picked out of the pipeline's without allocating (a named
/// iterator rather than a closure, which an `async` body cannot hold across an await here).
pub(super) struct Providers<'a> {
    pub(super) all: &'a [Arc<Authenticator>],
    pub(super) ids: std::slice::Iter<'a, usize>,
}

impl<'a> Iterator for Providers<'a> {
    type Item = &'a Arc<Authenticator>;

    fn next(&mut self) -> Option<Self::Item> {
        self.ids.next().map(|&i| &self.all[i])
    }
}

/// Stage 1: the request-target length (414) and header count and size (431).
pub(super) fn check_head<B>(request: &Request<B>, server: &ServerConfig) -> Result<(), ProxyError> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > server.max_uri_bytes {
        return Err(ProxyError::UriTooLong {
            limit: server.max_uri_bytes,
        });
    }
    let headers = request.headers();
    if headers.len() > server.max_headers {
        return Err(ProxyError::HeadersTooLarge(
            "too many request header fields",
        ));
    }
    let size: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + target;
    if size > server.max_header_bytes {
        return Err(ProxyError::HeadersTooLarge("request headers are too large"));
    }
    Ok(())
}

/// For a CORS preflight, the method it asks about.
pub(super) fn preflight_method<B>(request: &Request<B>) -> Option<Method> {
    if request.method() != Method::OPTIONS || !request.headers().contains_key(header::ORIGIN) {
        return None;
    }
    let announced = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(announced.as_bytes()).ok()
}

/// Reads the whole body for the checks that need it; size and rate failures become 413 and 408.
pub(super) async fn read_body(
    body: RequestBody,
    limits: BodyLimits,
) -> Result<bytes::Bytes, ProxyError> {
    body.buffer(limits)
        .await
        .map_err(|error: BoxError| match body_failure(error.as_ref()) {
            Some(BodyFailure::TooLarge) => ProxyError::BodyTooLarge {
                limit: limits.max_bytes,
            },
            Some(BodyFailure::TooSlow) => ProxyError::BodyTooSlow,
            None => ProxyError::BadRequest("the request body could not be read"),
        })
}

/// Stage 9 for one schema set: query first, then the (buffered) body.
pub(super) fn check_validation(
    validator: &RequestValidator,
    parts: &http::request::Parts,
    body: &RequestBody,
) -> Result<(), ProxyError> {
    let failure = |failure| match failure {
        ValidationFailure::UnsupportedMediaType => ProxyError::UnsupportedMediaType,
        ValidationFailure::MalformedJson(why) => ProxyError::MalformedBody(why),
        ValidationFailure::Invalid(fields) => ProxyError::Invalid(fields),
    };
    validator
        .validate_query(parts.uri.query())
        .map_err(failure)?;
    if validator.needs_body() {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let bytes = body.bytes().map(|b| b.as_ref()).unwrap_or_default();
        validator
            .validate_body(content_type, bytes)
            .map_err(failure)?;
    }
    Ok(())
}
