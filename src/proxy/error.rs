//! The proxy's errors and the one function that turns any of them into a client response:
//! `{"error":{"code","type","message","request_id"}}`, never with internal detail.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::{ResponseBody, full};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches the request")]
    NoRoute,
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("request is malformed: {0}")]
    BadRequest(&'static str),
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
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UpstreamUnreachable { .. } | Self::UpstreamProtocol { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The stable machine-readable `type` in the body.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoRoute => "not_found",
            Self::BodyTooLarge { .. } => "payload_too_large",
            Self::BadRequest(_) => "bad_request",
            Self::UpstreamUnreachable { .. } => "upstream_unavailable",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamProtocol { .. } => "bad_gateway",
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
            Self::UpstreamUnreachable { .. } => "the upstream service is unavailable".into(),
            Self::UpstreamTimeout { .. } => "the upstream service did not respond in time".into(),
            Self::UpstreamProtocol { .. } => "the upstream service sent an invalid response".into(),
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<ResponseBody> {
        error_response(
            self.status(),
            self.kind(),
            &self.public_message(),
            request_id,
        )
    }
}

/// A JSON error response in rampart's one error shape.
pub fn error_response(
    status: StatusCode,
    kind: &str,
    message: &str,
    request_id: &str,
) -> Response<ResponseBody> {
    let body = serde_json::json!({
        "error": {
            "code": status.as_u16(),
            "type": kind,
            "message": message,
            "request_id": request_id,
        }
    });
    let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
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
