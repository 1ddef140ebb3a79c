//! Distributed tracing: W3C `traceparent` continued or started per request and sent upstream
//! with each attempt, and (for sampled requests only) OpenTelemetry spans for the request, each
//! upstream attempt and the shared-store calls, exported over OTLP/HTTP ([`export`]).
//!
//! Owns the per-request trace state ([`RequestTrace`]) and the span shapes (names, attributes,
//! status). It must not run anything on the request path beyond id generation, one header
//! write per attempt and, when sampled, a clock read and a non-blocking queue push per span;
//! with `[tracing]` absent the pipeline holds no [`Tracer`] and none of this runs. No `tracing`
//! spans are created here.

pub mod config;
pub mod context;
pub mod export;
pub mod sample;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, StatusCode};

use self::config::TracingConfig;
use self::context::{Parent, TRACEPARENT, TRACESTATE};
use self::export::{AttrValue, Exporter, SpanData, SpanKind};
use self::sample::Sampler;
use crate::observe::access::RequestRecord;

/// Tracing for one pipeline (a reload builds a new one).
#[derive(Debug)]
pub struct Tracer {
    sampler: Sampler,
    exporter: Exporter,
}

impl Tracer {
    /// Starts the export task on the current runtime.
    pub fn new(config: &TracingConfig) -> Arc<Self> {
        Arc::new(Self {
            sampler: Sampler::new(config.sample_ratio, config.respect_parent),
            exporter: Exporter::spawn(config),
        })
    }

    /// The request's trace: continued from a valid `traceparent`, or new.
    pub fn start(self: &Arc<Self>, headers: &HeaderMap) -> RequestTrace {
        let parent = context::incoming(headers);
        let trace_id = match &parent {
            Some(parent) => parent.trace_id,
            None => fastrand::u128(1..),
        };
        RequestTrace {
            sampled: self.sampler.sampled(trace_id, parent.as_ref()),
            tracer: self.clone(),
            trace_id,
            parent: parent.map(|p: Parent| p.span_id),
            span_id: new_span_id(),
        }
    }
}

fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

/// One request's place in its trace.
#[derive(Debug)]
pub struct RequestTrace {
    tracer: Arc<Tracer>,
    pub trace_id: u128,
    /// The incoming `traceparent`'s span, the server span's parent.
    parent: Option<u64>,
    /// The server span.
    span_id: u64,
    pub sampled: bool,
}

/// How an upstream attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum AttemptEnd {
    Status(StatusCode),
    /// rampart's error type (`upstream_timeout`, `bad_gateway`, …).
    Error(&'static str),
}

impl RequestTrace {
    /// Writes the `traceparent` of one upstream attempt (whose span id it returns): this
    /// trace, that span as parent, the sampling decision. A `tracestate` without a valid
    /// incoming parent is dropped; with one it passes unchanged.
    pub fn propagate(&self, headers: &mut HeaderMap) -> u64 {
        let span_id = new_span_id();
        let value = context::format(self.trace_id, span_id, self.sampled);
        headers.insert(
            TRACEPARENT,
            HeaderValue::from_bytes(&value).expect("hex digits are a valid header value"),
        );
        if self.parent.is_none() {
            headers.remove(TRACESTATE);
        }
        span_id
    }

    /// When a child span starts; `None` (no clock read) unless sampled.
    pub fn timer(&self) -> Option<Instant> {
        self.sampled.then(Instant::now)
    }

    /// The trace id as 32 hex digits.
    pub fn trace_id_hex(&self) -> [u8; 32] {
        context::trace_id_hex(self.trace_id)
    }

    /// Records one upstream attempt's CLIENT span (sampled requests only).
    #[allow(clippy::too_many_arguments)]
    pub fn attempt_span(
        &self,
        span_id: u64,
        method: &http::Method,
        upstream: &str,
        authority: &http::uri::Authority,
        attempt: u32,
        elapsed: Duration,
        end: AttemptEnd,
    ) {
        if !self.sampled {
            return;
        }
        let (start, finish) = wall_clock(elapsed);
        let mut attributes: Vec<(&'static str, AttrValue)> = vec![
            ("http.request.method", method_value(method)),
            ("server.address", authority.host().to_owned().into()),
            ("rampart.upstream", upstream.to_owned().into()),
            ("rampart.attempt", i64::from(attempt).into()),
        ];
        if let Some(port) = authority.port_u16() {
            attributes.push(("server.port", i64::from(port).into()));
        }
        if attempt > 1 {
            attributes.push(("http.request.resend_count", i64::from(attempt - 1).into()));
        }
        let error = match end {
            AttemptEnd::Status(status) => {
                attributes.push((
                    "http.response.status_code",
                    i64::from(status.as_u16()).into(),
                ));
                (status.as_u16() >= 400).then(|| {
                    let text = status_text(status);
                    attributes.push(("error.type", text.clone().into()));
                    Cow::Owned(text)
                })
            }
            AttemptEnd::Error(kind) => {
                attributes.push(("error.type", kind.into()));
                Some(Cow::Borrowed(kind))
            }
        };
        self.tracer.exporter.submit(SpanData {
            trace_id: self.trace_id,
            span_id,
            parent_span_id: Some(self.span_id),
            name: format!("{} {upstream}", method.as_str()).into(),
            kind: SpanKind::Client,
            start_unix_nanos: start,
            end_unix_nanos: finish,
            attributes,
            error,
        });
    }

    /// Records a CLIENT span for one call to a shared store (`redis`, `postgres`) started at
    /// `started` (from [`Self::timer`]); `outcome` says what it decided.
    pub fn store_span(
        &self,
        name: &'static str,
        store: &'static str,
        started: Instant,
        outcome: &'static str,
    ) {
        if !self.sampled {
            return;
        }
        let (start, finish) = wall_clock(started.elapsed());
        let system = if store == "postgres" {
            "postgresql"
        } else {
            store
        };
        self.tracer.exporter.submit(SpanData {
            trace_id: self.trace_id,
            span_id: new_span_id(),
            parent_span_id: Some(self.span_id),
            name: name.into(),
            kind: SpanKind::Client,
            start_unix_nanos: start,
            end_unix_nanos: finish,
            attributes: vec![
                ("db.system.name", system.into()),
                ("rampart.outcome", outcome.into()),
            ],
            error: (outcome == "error").then_some(Cow::Borrowed("store_error")),
        });
    }

    /// Records the request's SERVER span when its response has ended (sampled requests only).
    pub fn finish(
        &self,
        record: &RequestRecord,
        status: StatusCode,
        elapsed: Duration,
        redact_query_keys: &[String],
    ) {
        if !self.sampled {
            return;
        }
        let (start, finish) = wall_clock(elapsed);
        let method = &record.method;
        let mut attributes: Vec<(&'static str, AttrValue)> = vec![
            ("http.request.method", method_value(method)),
            ("url.path", record.uri.path().to_owned().into()),
            (
                "http.response.status_code",
                i64::from(status.as_u16()).into(),
            ),
            ("client.address", record.client_ip.to_string().into()),
            (
                "rampart.request_id",
                record
                    .request_id
                    .to_str()
                    .unwrap_or_default()
                    .to_owned()
                    .into(),
            ),
        ];
        if let Some(query) = record.uri.query() {
            let redacted = super::redact::redact_path_and_query("", Some(query), redact_query_keys);
            let query = redacted.strip_prefix('?').unwrap_or(&redacted).to_owned();
            attributes.push(("url.query", query.into()));
        }
        if let Some(route) = record.route() {
            attributes.push(("http.route", route.to_string().into()));
        }
        if let Some(upstream) = &record.upstream {
            attributes.push(("rampart.upstream", upstream.to_string().into()));
            attributes.push(("rampart.attempts", i64::from(record.attempts).into()));
        }
        if let Some(cache) = record.cache {
            attributes.push(("rampart.cache", cache.into()));
        }
        if let Some(error) = record.error {
            attributes.push(("error.type", error.into()));
        } else if status.is_server_error() {
            attributes.push(("error.type", status_text(status).into()));
        }
        // A server span is an error for 5xx only (OpenTelemetry's HTTP conventions).
        let error = status.is_server_error().then(|| {
            record
                .error
                .map_or_else(|| status_text(status).into(), Cow::Borrowed)
        });
        let name = match record.route() {
            Some(route) => format!("{} {route}", method.as_str()).into(),
            None => method_name(method),
        };
        self.tracer.exporter.submit(SpanData {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent,
            name,
            kind: SpanKind::Server,
            start_unix_nanos: start,
            end_unix_nanos: finish,
            attributes,
            error,
        });
    }
}

/// Start and end in Unix nanoseconds of something that lasted `elapsed` and ends now.
fn wall_clock(elapsed: Duration) -> (u64, u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    (now.saturating_sub(elapsed.as_nanos() as u64), now)
}

/// The method's name, static for the standard ones (the metrics' labels); an extension method
/// keeps its own name here, where metrics say `OTHER`.
fn method_name(method: &http::Method) -> Cow<'static, str> {
    match crate::observe::metrics::method_label(method) {
        "OTHER" => method.as_str().to_owned().into(),
        label => label.into(),
    }
}

fn method_value(method: &http::Method) -> AttrValue {
    AttrValue::Str(method_name(method))
}

fn status_text(status: StatusCode) -> String {
    status.as_u16().to_string()
}
