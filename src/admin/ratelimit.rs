//! `GET` and `DELETE /ratelimit/{policy}?<part>=<value>…`: read the state of one rate-limit key,
//! or reset it. The query names the policy's key parts (`ip`, `user`, `api_key`, `route`,
//! `method`, `header:<name>`); `user`, `api_key` and headers fall back to `ip` when absent, as
//! they do for requests.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::json;

use crate::ratelimit::RateLimiter;
use crate::ratelimit::policy::{KeyPart, KeySource, Policy};
use crate::server::Shared;

/// An admin answer in rampart's error shape.
struct AdminError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.status.as_u16(), "type": self.kind, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

fn error(status: StatusCode, kind: &'static str, message: String) -> AdminError {
    AdminError {
        status,
        kind,
        message,
    }
}

/// The policy's key for the query, or the response explaining what is missing.
fn key_for(policy: &Policy, query: &HashMap<String, String>) -> Result<String, AdminError> {
    let bad = |message: String| error(StatusCode::BAD_REQUEST, "bad_request", message);
    let needs_ip = policy.key.iter().any(|part| match part {
        KeyPart::Ip => true,
        KeyPart::User => !query.contains_key("user"),
        KeyPart::ApiKey => !query.contains_key("api_key"),
        KeyPart::Header(name) => !query.contains_key(&format!("header:{name}")),
        KeyPart::Route | KeyPart::Method => false,
    });
    let client_ip = match query.get("ip") {
        Some(ip) => ip
            .parse::<std::net::IpAddr>()
            .map_err(|_| bad(format!("ip: expected an IP address, got {ip:?}")))?
            .to_canonical(),
        None if needs_ip => {
            return Err(bad(
                "this policy's key needs `ip` (or the part it stands in for)".into(),
            ));
        }
        None => std::net::Ipv4Addr::UNSPECIFIED.into(),
    };
    let mut headers = HeaderMap::new();
    for part in &policy.key {
        if let KeyPart::Header(name) = part
            && let Some(value) = query.get(&format!("header:{name}"))
        {
            let value = HeaderValue::from_str(value)
                .map_err(|_| bad(format!("header:{name}: not a valid header value")))?;
            headers.insert(HeaderName::from(name), value);
        }
    }
    let needs = |part: KeyPart, name: &str| -> Result<(), AdminError> {
        if policy.key.contains(&part) && !query.contains_key(name) {
            return Err(bad(format!("this policy's key needs `{name}`")));
        }
        Ok(())
    };
    needs(KeyPart::Route, "route")?;
    needs(KeyPart::Method, "method")?;
    let method = match query.get("method") {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| bad(format!("method: expected an HTTP method, got {m:?}")))?,
        None => Method::GET,
    };
    let source = KeySource {
        client_ip,
        user: query.get("user").map(String::as_str),
        api_key: query.get("api_key").map(String::as_str),
        route: query.get("route").map_or("", String::as_str),
        method: &method,
        headers: &headers,
    };
    Ok(policy.key(&source))
}

fn lookup<'a>(
    limiter: Option<&'a RateLimiter>,
    name: &str,
) -> Result<(&'a RateLimiter, Arc<Policy>), AdminError> {
    let Some(limiter) = limiter else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "rate limiting is not configured".into(),
        ));
    };
    match limiter.policy(name) {
        Some(policy) => Ok((limiter, policy.clone())),
        None => Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no policy is named `{name}`"),
        )),
    }
}

pub async fn read(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let pipeline = shared.pipeline.load_full();
    let (limiter, policy) = match lookup(pipeline.limiter(), &name) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    let key = match key_for(&policy, &query) {
        Ok(key) => key,
        Err(refused) => return refused.into_response(),
    };
    match limiter.peek(&policy, &key).await {
        Ok(decision) => Json(json!({
            "policy": &*policy.name,
            "key": key,
            "store": limiter.store().as_str(),
            "algorithm": policy.limit.algorithm.as_str(),
            "limit": policy.limit.limit,
            "window_seconds": policy.limit.window_ms as f64 / 1000.0,
            "remaining": decision.remaining,
            "reset_seconds": decision.reset_ms.div_ceil(1000),
            "limited": decision.remaining < policy.limit.cost,
        }))
        .into_response(),
        Err(message) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the rate-limit store did not answer: {message}"),
        )
        .into_response(),
    }
}

pub async fn reset(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let pipeline = shared.pipeline.load_full();
    let (limiter, policy) = match lookup(pipeline.limiter(), &name) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    let key = match key_for(&policy, &query) {
        Ok(key) => key,
        Err(refused) => return refused.into_response(),
    };
    match limiter.reset(&key).await {
        Ok(true) => {
            tracing::info!(target: "rampart::security", event = "ratelimit_reset", policy = &*policy.name, key, "rate-limit key reset by an operator");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no state is kept for key `{key}`"),
        )
        .into_response(),
        Err(message) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the rate-limit store did not answer: {message}"),
        )
        .into_response(),
    }
}
