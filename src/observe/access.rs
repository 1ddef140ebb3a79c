//! The end of every request: one access-log line and the request metrics, written when the
//! response body has been sent (or the client went away), so duration and bytes are true.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode, Uri};

use super::metrics::RouteMetrics;
use super::redact::redact_path_and_query;
use crate::proxy::body::Completion;
use crate::proxy::context::InFlight;

/// Access-log settings shared by every request of one pipeline.
#[derive(Debug)]
pub struct AccessLog {
    pub enabled: bool,
    /// Fraction of requests below 400 that get a line (errors always do); 1 logs every one.
    pub sample: f64,
    pub redact_query_keys: Vec<String>,
    /// Rolling statistics fed by every finished request (outlives reloads).
    pub window: Arc<super::window::Window>,
}

impl AccessLog {
    /// Whether a request answered with `status` gets a line.
    fn wants(&self, status: StatusCode) -> bool {
        self.enabled
            && (self.sample >= 1.0 || status.as_u16() >= 400 || fastrand::f64() < self.sample)
    }
}

/// What is known about a request by the time its response head is ready.
#[derive(Debug)]
pub struct RequestRecord {
    pub request_id: http::HeaderValue,
    pub started: Instant,
    pub method: Method,
    pub uri: Uri,
    pub client_ip: IpAddr,
    pub route: Option<Arc<str>>,
    /// The matched route's metrics.
    pub route_metrics: Option<Arc<RouteMetrics>>,
    pub upstream: Option<Arc<str>>,
    /// Authenticated user, once authentication exists.
    pub user: Option<String>,
    /// Cache result (`HIT`, `MISS`, …), once caching exists.
    pub cache: Option<&'static str>,
    /// The name of the API key that authenticated the request.
    pub api_key: Option<String>,
    /// The rate-limit policy that refused the request.
    pub limit: Option<Arc<str>>,
    /// The error `type` when rampart answered with an error.
    pub error: Option<&'static str>,
    /// Upstream attempts made (retries and fallbacks included).
    pub attempts: u32,
    /// The request body's size.
    pub request_bytes: RequestBytes,
    /// The request's trace; `None` when tracing is off.
    pub trace: Option<super::trace::RequestTrace>,
}

/// A request body's size: known from its head, or counted as a chunked body streams through.
#[derive(Debug, Default)]
pub enum RequestBytes {
    #[default]
    None,
    Declared(u64),
    /// Shared with the streaming body, which adds every frame it reads.
    Counted(Arc<std::sync::atomic::AtomicU64>),
}

impl RequestBytes {
    pub fn get(&self) -> u64 {
        match self {
            Self::None => 0,
            Self::Declared(bytes) => *bytes,
            Self::Counted(counter) => counter.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// Runs when the response body is done: access log, metrics, connection bookkeeping.
pub struct Exchange {
    pub record: RequestRecord,
    pub status: StatusCode,
    pub access_log: Arc<AccessLog>,
    /// Released when the exchange completes.
    pub in_flight: InFlight,
    /// Where requests that matched no route are counted.
    pub no_route_metrics: Arc<RouteMetrics>,
    /// The route's concurrency place (load shedding), freed when the exchange completes.
    pub place: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Completion for Exchange {
    fn complete(self: Box<Self>, bytes_sent: u64, finished: bool) {
        let Exchange {
            record,
            status,
            access_log,
            in_flight,
            no_route_metrics,
            place,
        } = *self;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(record.started);
        access_log
            .window
            .record(now, elapsed, status.is_server_error());
        drop(in_flight);
        drop(place);
        let route_metrics = record.route_metrics.as_ref().unwrap_or(&no_route_metrics);
        route_metrics.finished(
            &record.method,
            status,
            elapsed,
            record.request_bytes.get(),
            bytes_sent,
        );
        if let Some(trace) = &record.trace {
            trace.finish(&record, status, elapsed, &access_log.redact_query_keys);
        }

        if !access_log.wants(status) {
            return;
        }
        let path = redact_path_and_query(
            record.uri.path(),
            record.uri.query(),
            &access_log.redact_query_keys,
        );
        let mut ip_buffer = [0u8; 48];
        let client_ip = format_ip(record.client_ip, &mut ip_buffer);
        let trace_id = record.trace.as_ref().map(|t| t.trace_id_hex());
        tracing::info!(
            target: "rampart::access",
            request_id = record.request_id.to_str().unwrap_or_default(),
            route = record.route.as_deref(),
            method = record.method.as_str(),
            path = &*path,
            status = status.as_u16(),
            duration_ms = (elapsed.as_micros() as f64) / 1000.0,
            upstream = record.upstream.as_deref(),
            client_ip,
            user = record.user.as_deref(),
            bytes = bytes_sent,
            cache = record.cache,
            limit = record.limit.as_deref(),
            error = record.error,
            attempts = record.attempts,
            completed = finished,
            trace_id = trace_id.as_ref().and_then(|t| std::str::from_utf8(t).ok()),
            "request"
        );
    }
}

/// Writes `ip` into `buffer` without allocating.
fn format_ip(ip: IpAddr, buffer: &mut [u8; 48]) -> &str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    let _ = write!(cursor, "{ip}");
    let written = cursor.position() as usize;
    std::str::from_utf8(&buffer[..written]).unwrap_or_default()
}
