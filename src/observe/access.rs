//! The end of every request: one access-log line and the request metrics, written when the
//! response body has been sent (or the client went away), so duration and bytes are true.
//!
//! The line is formatted straight into the log writers ([`DirectSinks`]) rather than sent as a
//! tracing event, which would cost about as much again in dispatch and field visiting; it is the
//! same line, byte for byte, and the log filter still decides whether it is written.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::{Method, StatusCode, Uri};
use tracing::Level;

use super::log_layer::{DirectSinks, Line};
use super::metrics::RouteMetrics;
use super::redact::redact_path_and_query;
use crate::proxy::body::Completion;
use crate::proxy::context::InFlight;
use crate::proxy::forwarded::{IP_TEXT_MAX, format_ip};

/// Access-log settings shared by every request of one pipeline.
#[derive(Debug)]
pub struct AccessLog {
    pub enabled: bool,
    /// Fraction of requests below 400 that get a line (errors always do); 1 logs every one.
    pub sample: f64,
    pub redact_query_keys: Vec<String>,
    /// Rolling statistics fed by every finished request (outlives reloads).
    pub window: Arc<super::window::Window>,
    /// Where requests that matched no route are counted.
    pub no_route_metrics: RouteMetrics,
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
    /// `client_ip` as text when it is the connection's peer (the text is made once per
    /// connection); `None` when it came from `X-Forwarded-For`.
    pub client_ip_text: Option<http::HeaderValue>,
    /// The matched route's metrics, which also name it ([`Self::route`]).
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

impl RequestRecord {
    /// The matched route's name.
    pub fn route(&self) -> Option<&str> {
        self.route_metrics.as_deref().map(RouteMetrics::route)
    }
}

/// Runs when the response body is done: access log, metrics, connection bookkeeping.
pub struct Exchange {
    pub record: RequestRecord,
    pub status: StatusCode,
    pub access_log: Arc<AccessLog>,
    /// Released when the exchange completes.
    pub in_flight: InFlight,
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
            place,
        } = *self;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(record.started);
        access_log
            .window
            .record(now, elapsed, status.is_server_error());
        in_flight.end(now);
        drop(place);
        let route_metrics = record
            .route_metrics
            .as_deref()
            .unwrap_or(&access_log.no_route_metrics);
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
        let mut ip_buffer = [0u8; IP_TEXT_MAX];
        let client_ip = match record.client_ip_text.as_ref().map(|t| t.to_str()) {
            Some(Ok(text)) => text,
            _ => format_ip(record.client_ip, &mut ip_buffer),
        };
        let trace_id = record.trace.as_ref().map(|t| t.trace_id_hex());
        AccessLine {
            request_id: record.request_id.to_str().unwrap_or_default(),
            route: record.route(),
            method: record.method.as_str(),
            path: &path,
            status: status.as_u16(),
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            upstream: record.upstream.as_deref(),
            client_ip,
            user: record.user.as_deref(),
            bytes: bytes_sent,
            cache: record.cache,
            limit: record.limit.as_deref(),
            error: record.error,
            attempts: record.attempts,
            completed: finished,
            trace_id: trace_id.as_ref().and_then(|t| std::str::from_utf8(t).ok()),
        }
        .write();
    }
}

const TARGET: &str = "rampart::access";

/// Whether the log filter enables the access line, asked once per filter instead of once per
/// request: the filter sits behind the lock that lets a reload replace it, and asking takes that
/// lock, which every worker would then take (and pass between cores) on every request.
static ACCESS_ENABLED: FilterAnswer = FilterAnswer::new();

/// To be called when the log filter has been replaced: the access line asks it again.
pub fn filter_changed() {
    ACCESS_ENABLED.forget();
}

/// A yes/no answer of the log filter, kept until [`Self::forget`]. The answer is stored with
/// the generation it was asked in, so an answer of the old filter that races a change is not
/// kept.
struct FilterAnswer(AtomicU64);

const UNKNOWN: u64 = 0;
const YES: u64 = 1;
const NO: u64 = 2;

impl FilterAnswer {
    const fn new() -> Self {
        Self(AtomicU64::new(UNKNOWN))
    }

    fn get(&self, ask: impl FnOnce() -> bool) -> bool {
        let seen = self.0.load(Ordering::Acquire);
        match seen & 3 {
            YES => true,
            NO => false,
            _ => {
                let answer = ask();
                let known = (seen & !3) | if answer { YES } else { NO };
                let _ = self
                    .0
                    .compare_exchange(seen, known, Ordering::AcqRel, Ordering::Relaxed);
                answer
            }
        }
    }

    /// The next [`Self::get`] asks again (a new generation).
    fn forget(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                Some((state & !3).wrapping_add(4) | UNKNOWN)
            });
    }
}

/// One access-log line's fields, in the order they are written; `None` ones are left out.
#[derive(Debug)]
struct AccessLine<'a> {
    request_id: &'a str,
    route: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    status: u16,
    /// Written as `duration_ms`, in milliseconds with three decimals at most.
    duration_us: u64,
    upstream: Option<&'a str>,
    client_ip: &'a str,
    user: Option<&'a str>,
    bytes: u64,
    cache: Option<&'a str>,
    limit: Option<&'a str>,
    error: Option<&'a str>,
    attempts: u32,
    completed: bool,
    trace_id: Option<&'a str>,
}

impl AccessLine<'_> {
    /// Writes the line straight to the log writers when rampart's subscriber is installed (and
    /// its filter enables `rampart::access` at INFO); otherwise emits it as a tracing event.
    fn write(&self) {
        match DirectSinks::get() {
            Some(sinks) => {
                if ACCESS_ENABLED.get(|| tracing::enabled!(target: TARGET, Level::INFO)) {
                    sinks.write(Level::INFO, TARGET, |line| self.fields(line));
                }
            }
            None => self.event(),
        }
    }

    /// The fields as [`super::log_layer::LogLayer`] writes those of [`Self::event`]: the message
    /// first, then the others in the order the event names them.
    fn fields(&self, line: &mut Line<'_>) {
        line.str("message", "request");
        line.str("request_id", self.request_id);
        line.opt_str("route", self.route);
        line.str("method", self.method);
        line.str("path", self.path);
        line.integer("status", self.status);
        line.millis("duration_ms", self.duration_us);
        line.opt_str("upstream", self.upstream);
        line.str("client_ip", self.client_ip);
        line.opt_str("user", self.user);
        line.integer("bytes", self.bytes);
        line.opt_str("cache", self.cache);
        line.opt_str("limit", self.limit);
        line.opt_str("error", self.error);
        line.integer("attempts", self.attempts);
        line.bool("completed", self.completed);
        line.opt_str("trace_id", self.trace_id);
    }

    /// The line as a tracing event, for subscribers other than rampart's own.
    fn event(&self) {
        tracing::info!(
            target: TARGET,
            request_id = self.request_id,
            route = self.route,
            method = self.method,
            path = self.path,
            status = self.status,
            duration_ms = self.duration_us as f64 / 1000.0,
            upstream = self.upstream,
            client_ip = self.client_ip,
            user = self.user,
            bytes = self.bytes,
            cache = self.cache,
            limit = self.limit,
            error = self.error,
            attempts = self.attempts,
            completed = self.completed,
            trace_id = self.trace_id,
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::log_layer::{LogLayer, Style};
    use crate::observe::log_writer::capture;
    use tracing_subscriber::layer::SubscriberExt;

    fn direct(style: Style, access: &AccessLine<'_>) -> String {
        let (writer, capture) = capture();
        DirectSinks::new(vec![(writer.clone(), style)])
            .write(Level::INFO, TARGET, |line| access.fields(line));
        writer.flush();
        capture.text()
    }

    fn traced(style: Style, access: &AccessLine<'_>) -> String {
        let (writer, capture) = capture();
        let subscriber = tracing_subscriber::registry().with(LogLayer::new(writer.clone(), style));
        tracing::subscriber::with_default(subscriber, || access.event());
        writer.flush();
        capture.text()
    }

    /// The line with its timestamp (`2026-11-22T01:50:10.690452Z`, 27 bytes) blanked out.
    fn without_timestamp(style: Style, line: &str) -> String {
        let at = match style {
            Style::Json => r#"{"timestamp":""#.len(),
            Style::Pretty => 0,
        };
        let mut line = line.to_owned();
        line.replace_range(at..at + 27, "<timestamp>");
        line
    }

    fn assert_same_line(access: &AccessLine<'_>) {
        for style in [Style::Json, Style::Pretty] {
            let (direct, traced) = (direct(style, access), traced(style, access));
            assert_eq!(direct.lines().count(), 1, "{direct}");
            assert_eq!(
                without_timestamp(style, &direct),
                without_timestamp(style, &traced),
                "{style:?}"
            );
        }
    }

    #[test]
    fn the_filter_is_asked_once_until_it_changes_and_a_racing_old_answer_is_dropped() {
        let answer = FilterAnswer::new();
        let asked = std::cell::Cell::new(0);
        let ask = |value: bool| {
            asked.set(asked.get() + 1);
            value
        };
        assert!(answer.get(|| ask(true)));
        assert!(answer.get(|| ask(false)));
        assert_eq!(asked.get(), 1);
        answer.forget();
        assert!(!answer.get(|| ask(false)));
        assert!(!answer.get(|| ask(true)));
        assert_eq!(asked.get(), 2);
        // The filter changes while a request is asking the old one: its answer is used for
        // that request only, and the next one asks again.
        answer.forget();
        assert!(answer.get(|| {
            answer.forget();
            ask(true)
        }));
        assert!(!answer.get(|| ask(false)));
        assert_eq!(asked.get(), 4);
    }

    #[test]
    fn the_direct_line_is_the_traced_line() {
        let full = AccessLine {
            request_id: "req \"1\"",
            route: Some("api=v1"),
            method: "GET",
            path: "/a b?q=\"x\\y\"\n\t\u{1}é",
            status: 503,
            duration_us: 12_345,
            upstream: Some(""),
            client_ip: "2001:db8::1",
            user: Some("bob"),
            bytes: 1_234_567,
            cache: Some("HIT"),
            limit: Some("per ip"),
            error: Some("upstream_timeout"),
            attempts: 3,
            completed: false,
            trace_id: Some("0af7651916cd43dd8448eb211c80319c"),
        };
        assert_same_line(&full);
        let json: serde_json::Value = serde_json::from_str(&direct(Style::Json, &full)).unwrap();
        assert_eq!(json["path"], full.path);
        assert_eq!(json["duration_ms"], 12.345);

        let bare = AccessLine {
            request_id: "",
            route: None,
            method: "POST",
            path: "/",
            status: 200,
            duration_us: 1_000,
            upstream: None,
            client_ip: "127.0.0.1",
            user: None,
            bytes: 0,
            cache: None,
            limit: None,
            error: None,
            attempts: 0,
            completed: true,
            trace_id: None,
        };
        assert_same_line(&bare);
        let json = direct(Style::Json, &bare);
        assert!(json.contains(r#""duration_ms":1,"#), "{json}");
        assert!(!json.contains("route"), "{json}");
    }
}
