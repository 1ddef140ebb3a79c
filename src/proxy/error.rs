//! The proxy's errors and the one function that turns any of them into a client response:
//! `{"error":{"code","type","message","request_id"}}`, never with internal detail.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::{ResponseBody, full};
use crate::security::validation::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches the request")]
    NoRoute,
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("request is malformed: {0}")]
    BadRequest(&'static str),
    #[error("request target longer than {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("request headers too large: {0}")]
    HeadersTooLarge(&'static str),
    #[error("request body arrived too slowly")]
    BodyTooSlow,
    #[error("authentication failed: {kind}")]
    Unauthorized {
        kind: &'static str,
        message: &'static str,
        challenge: HeaderValue,
    },
    #[error("forbidden: {kind}")]
    Forbidden {
        kind: &'static str,
        message: &'static str,
    },
    #[error("client address blocked for {retry_after_secs} s")]
    Blocked { retry_after_secs: u64 },
    #[error("rate limit reached; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the rate-limit store is unavailable and the policy fails closed")]
    RateLimitUnavailable { retry_after_secs: u64 },
    #[error("request body must be JSON")]
    UnsupportedMediaType,
    #[error("request body is not valid JSON: {0}")]
    MalformedBody(String),
    #[error("request failed validation")]
    Invalid(Vec<FieldError>),
    #[error("upstream {upstream} unreachable: {source}")]
    UpstreamUnreachable {
        upstream: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("upstream {upstream} did not answer within {timeout_ms} ms")]
    UpstreamTimeout { upstream: String, timeout_ms: u128 },
    #[error("upstream {upstream} failed: {source}")]
    UpstreamProtocol {
        upstream: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("circuit breaker of {upstream} is open")]
    CircuitOpen {
        upstream: String,
        retry_after_secs: u64,
    },
    #[error("no healthy target in upstream {upstream}")]
    NoHealthyTarget { upstream: String },
    #[error("route at capacity: {reason}")]
    Overloaded { reason: &'static str },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest(_) | Self::MalformedBody(_) | Self::Invalid(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } | Self::Blocked { .. } => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RateLimitUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::UpstreamUnreachable { .. } | Self::UpstreamProtocol { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::CircuitOpen { .. } | Self::NoHealthyTarget { .. } | Self::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The stable machine-readable `type` in the body.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoRoute => "not_found",
            Self::BodyTooLarge { .. } => "payload_too_large",
            Self::BadRequest(_) => "bad_request",
            Self::UriTooLong { .. } => "uri_too_long",
            Self::HeadersTooLarge(_) => "headers_too_large",
            Self::BodyTooSlow => "request_timeout",
            Self::Unauthorized { kind, .. } | Self::Forbidden { kind, .. } => kind,
            Self::Blocked { .. } => "ip_blocked",
            Self::RateLimited { .. } => "rate_limited",
            Self::RateLimitUnavailable { .. } => "rate_limit_unavailable",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MalformedBody(_) => "malformed_body",
            Self::Invalid(_) => "validation_failed",
            Self::UpstreamUnreachable { .. } => "upstream_unavailable",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamProtocol { .. } => "bad_gateway",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::NoHealthyTarget { .. } => "no_healthy_upstream",
            Self::Overloaded { .. } => "overloaded",
        }
    }

    /// What the client is told: no addresses, no upstream messages.
    fn public_message(&self) -> String {
        match self {
            Self::NoRoute => "no route matches this request".into(),
            Self::BodyTooLarge { limit } => {
                format!("request body exceeds the limit of {limit} bytes")
            }
            Self::BadRequest(why) => (*why).into(),
            Self::UriTooLong { limit } => {
                format!("request target exceeds the limit of {limit} bytes")
            }
            Self::HeadersTooLarge(why) => (*why).into(),
            Self::BodyTooSlow => "request body was sent too slowly".into(),
            Self::Unauthorized { message, .. } | Self::Forbidden { message, .. } => {
                (*message).into()
            }
            Self::Blocked { .. } => {
                "too many suspicious requests from this address; try again later".into()
            }
            Self::RateLimited { retry_after_secs } => {
                format!("rate limit reached; retry after {retry_after_secs} seconds")
            }
            Self::RateLimitUnavailable { .. } => {
                "rate limiting is temporarily unavailable; try again shortly".into()
            }
            Self::UnsupportedMediaType => "request body must be application/json".into(),
            Self::MalformedBody(why) => format!("request body is not valid JSON: {why}"),
            Self::Invalid(_) => "request failed validation".into(),
            Self::UpstreamUnreachable { .. } => "the upstream service is unavailable".into(),
            Self::UpstreamTimeout { .. } => "the upstream service did not respond in time".into(),
            Self::UpstreamProtocol { .. } => "the upstream service sent an invalid response".into(),
            Self::CircuitOpen { .. } => {
                "the upstream service is temporarily unavailable; try again later".into()
            }
            Self::NoHealthyTarget { .. } => "the upstream service has no healthy instance".into(),
            Self::Overloaded { .. } => "the service is at capacity; try again shortly".into(),
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<ResponseBody> {
        let details = match &self {
            Self::Invalid(fields) => serde_json::to_value(fields).ok(),
            _ => None,
        };
        let mut body = error_body(
            self.status(),
            self.kind(),
            &self.public_message(),
            request_id,
        );
        if let Some(details) = details {
            body["error"]["details"] = details;
        }
        if let Self::RateLimited { retry_after_secs } = &self {
            body["error"]["retry_after"] = (*retry_after_secs).into();
        }
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized { challenge, .. } => {
                headers.insert(header::WWW_AUTHENTICATE, challenge);
            }
            Self::Blocked { retry_after_secs }
            | Self::RateLimited { retry_after_secs }
            | Self::RateLimitUnavailable { retry_after_secs }
            | Self::CircuitOpen {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Self::NoHealthyTarget { .. } | Self::Overloaded { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::UriTooLong { .. } | Self::HeadersTooLarge(_) | Self::BodyTooSlow => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// A JSON error response in rampart's one error shape.
pub fn error_response(
    status: StatusCode,
    kind: &str,
    message: &str,
    request_id: &str,
) -> Response<ResponseBody> {
    error_response_with(status, kind, message, request_id, None)
}

/// [`error_response`] with an optional `details` member (validation failures).
pub fn error_response_with(
    status: StatusCode,
    kind: &str,
    message: &str,
    request_id: &str,
    details: Option<serde_json::Value>,
) -> Response<ResponseBody> {
    let mut body = error_body(status, kind, message, request_id);
    if let Some(details) = details {
        body["error"]["details"] = details;
    }
    json_response(status, &body)
}

fn error_body(
    status: StatusCode,
    kind: &str,
    message: &str,
    request_id: &str,
) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "code": status.as_u16(),
            "type": kind,
            "message": message,
            "request_id": request_id,
        }
    })
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ResponseBody> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
