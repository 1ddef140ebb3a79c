//! Error reporting to Sentry (or anything that speaks its envelope protocol).
//!
//! Owns: turning 5xx responses (the statuses `[error_reporting] statuses` names), ERROR-level
//! log events and panics into Sentry events with route, request id, status, error type,
//! upstream, release, environment and server name; sampling; redaction ([`scrub`]) when an event
//! is built and again in the client's `before_send`; and delivery off the request path
//! ([`transport`]), counted in `rampart_error_reports_total{result}`.
//!
//! Must not: read a streaming request body (only a body rampart buffered anyway is attached),
//! block or fail a request (an event is handed over with one `try_send`), send a credential
//! (Authorization, cookies, `stripe-signature`, API keys in headers or query, configured body
//! fields), or cost anything per request when off (the pipeline holds `None` then).
//!
//! The per-request reporter lives in the pipeline, so a reload applies a new `[error_reporting]`
//! at once. Panics and log events have no pipeline at hand: they go to the reporter of the
//! pipeline installed last ([`install`]).

pub mod config;
pub mod scrub;
pub mod transport;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Once};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use sentry::protocol::{Event, Level, Request};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

use self::config::{ErrorReportingConfig, StatusSet};
use self::scrub::Scrubber;
use self::transport::{QueueTransport, count};
use crate::observe::access::RequestRecord;
use crate::security::auth::AuthSettings;

/// JSON bodies larger than this are not attached.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// One pipeline's error reporting: the Sentry client, which statuses report, the sample rate
/// and the redaction rules.
pub struct ErrorReporter {
    client: Arc<sentry::Client>,
    statuses: StatusSet,
    sample_rate: f64,
    scrubber: Arc<Scrubber>,
}

impl std::fmt::Debug for ErrorReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorReporter")
            .field("sample_rate", &self.sample_rate)
            .finish_non_exhaustive()
    }
}

/// What a response event is built from.
pub struct ResponseReport<'a> {
    pub status: StatusCode,
    pub record: &'a RequestRecord,
    /// The client's request headers, captured at the start (only when reporting is on).
    pub headers: Option<&'a HeaderMap>,
    /// The request body, when rampart buffered it for a check.
    pub body: Option<&'a Bytes>,
}

impl ErrorReporter {
    /// Builds the client and starts its sending thread. `query_keys` are the access log's
    /// redacted query keys (API-key parameters included); `extra_headers` are credential headers
    /// the auth providers read.
    pub fn new(
        config: &ErrorReportingConfig,
        query_keys: Vec<String>,
        extra_headers: impl IntoIterator<Item = String>,
    ) -> Arc<Self> {
        let mut headers: Vec<String> = config
            .redact_headers
            .iter()
            .map(|h| h.as_str().to_owned())
            .chain(extra_headers.into_iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        headers.sort();
        headers.dedup();
        let scrubber = Arc::new(Scrubber {
            headers,
            body_fields: config.redact_body_fields.clone(),
            query_keys,
        });
        let transport = Arc::new(QueueTransport::start(
            &config.dsn,
            config.timeout,
            config.queue_size,
        ));
        let before_send = scrubber.clone();
        let mut options = sentry::ClientOptions::new()
            .release(config.release.clone())
            .environment(config.environment.clone())
            // Sampling happens before an event is built (and counted); see `sampled`.
            .sample_rate(1.0)
            .send_default_pii(false)
            .default_integrations(false)
            .max_breadcrumbs(0)
            .transport(
                move |_: &sentry::ClientOptions| -> Arc<dyn sentry::Transport> {
                    transport.clone()
                },
            )
            .before_send(move |event| Some(before_send.event(event)));
        options.dsn = Some(config.dsn.clone());
        options.server_name = config.server_name.clone().map(Cow::Owned);
        Arc::new(Self {
            client: Arc::new(sentry::Client::from(options)),
            statuses: config.statuses,
            sample_rate: config.sample_rate,
            scrubber,
        })
    }

    /// Whether a response with `status` becomes an event (before sampling).
    #[inline]
    pub fn wants(&self, status: StatusCode) -> bool {
        self.statuses.contains(status.as_u16())
    }

    /// Whether this event is kept by the sample rate (counts the ones that are not).
    fn sampled(&self) -> bool {
        if self.sample_rate >= 1.0 || fastrand::f64() < self.sample_rate {
            true
        } else {
            count("sampled_out");
            false
        }
    }

    /// Reports a response whose status [`Self::wants`]; returns at once.
    pub fn report_response(&self, report: ResponseReport<'_>) {
        if !self.sampled() {
            return;
        }
        let event = self.response_event(&report);
        self.client.capture_event(event, None);
    }

    fn response_event(&self, report: &ResponseReport<'_>) -> Event<'static> {
        let record = report.record;
        let status = report.status.as_u16();
        let route = record.route().unwrap_or("none");
        let error_type = record.error.unwrap_or(if status >= 500 {
            "upstream_error"
        } else {
            "upstream_client_error"
        });
        let request_id = String::from_utf8_lossy(record.request_id.as_bytes()).into_owned();
        let mut tags = BTreeMap::new();
        tags.insert("route".to_owned(), route.to_owned());
        tags.insert("request_id".to_owned(), request_id);
        tags.insert("status".to_owned(), status.to_string());
        tags.insert("error_type".to_owned(), error_type.to_owned());
        tags.insert("method".to_owned(), record.method.as_str().to_owned());
        if let Some(upstream) = record.upstream.as_deref() {
            tags.insert("upstream".to_owned(), upstream.to_owned());
        }
        let mut extra = BTreeMap::new();
        extra.insert("attempts".to_owned(), record.attempts.into());
        extra.insert(
            "duration_ms".to_owned(),
            serde_json::Value::from(record.started.elapsed().as_secs_f64() * 1000.0),
        );
        Event {
            level: Level::Error,
            message: Some(format!("{status} {error_type} on route {route}")),
            logger: Some("rampart".into()),
            // One issue per route, status and error type, whatever the path.
            fingerprint: Cow::Owned(vec![
                Cow::Owned(route.to_owned()),
                Cow::Owned(status.to_string()),
                Cow::Owned(error_type.to_owned()),
            ]),
            tags,
            extra,
            request: Some(self.request(report)),
            ..Default::default()
        }
    }

    fn request(&self, report: &ResponseReport<'_>) -> Request {
        let record = report.record;
        let uri = &record.uri;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                report
                    .headers
                    .and_then(|h| h.get(header::HOST))
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "localhost".into());
        let scheme = uri.scheme_str().unwrap_or("http");
        let url = format!("{scheme}://{host}{}", uri.path()).parse().ok();
        let body = report
            .body
            .filter(|b| b.len() <= MAX_BODY_BYTES)
            .and_then(|b| {
                let json = report
                    .headers
                    .and_then(|h| h.get(header::CONTENT_TYPE))
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
                json.then(|| self.scrubber.json_body(b)).flatten()
            });
        Request {
            url,
            method: Some(record.method.as_str().to_owned()),
            query_string: uri.query().map(|q| self.scrubber.query(q)),
            headers: report
                .headers
                .map(|h| self.scrubber.headers(h))
                .unwrap_or_default(),
            data: body,
            ..Default::default()
        }
    }

    /// Reports an internal error (an ERROR log event or a panic).
    fn report_internal(&self, mut event: Event<'static>) {
        if !self.sampled() {
            return;
        }
        if let Some(id) = crate::observe::log_layer::current_request_id() {
            event.tags.insert(
                "request_id".into(),
                String::from_utf8_lossy(id.as_bytes()).into_owned(),
            );
        }
        self.client.capture_event(event, None);
    }

    /// Waits up to `timeout` for queued events to be sent.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        self.client.flush(Some(timeout))
    }
}

/// The headers the auth providers read credentials from (API-key headers, JWT token headers):
/// redacted in events whatever their name.
pub fn credential_headers(auth: &[AuthSettings]) -> Vec<String> {
    auth.iter()
        .filter_map(|settings| match settings {
            AuthSettings::ApiKey(api_key) => api_key.header.clone(),
            AuthSettings::Jwt(jwt) => Some(jwt.token_header.clone()),
        })
        .map(|h| h.trim().to_ascii_lowercase())
        .collect()
}

/// The reporter of the pipeline installed last, for panics and log events.
static CURRENT: ArcSwapOption<ErrorReporter> = ArcSwapOption::const_empty();

/// Makes `reporter` the one panics and ERROR log events go to (`None`: off); called when a
/// pipeline is installed (start and reload). Installs the panic hook the first time.
pub fn install(reporter: Option<Arc<ErrorReporter>>) {
    if reporter.is_some() {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if let Some(reporter) = CURRENT.load_full() {
                    let mut event = sentry::integrations::panic::PanicIntegration::new()
                        .event_from_panic_info(info);
                    event.logger = Some("rampart::panic".into());
                    reporter.report_internal(event);
                }
                previous(info);
            }));
        });
    }
    CURRENT.store(reporter);
}

/// A tracing layer that turns ERROR log events into error events, while a reporter is
/// installed; other levels are skipped at once (it needs no level filter). Its own target is
/// skipped, so a failing Sentry cannot report about itself.
pub struct LogEvents;

impl<S: tracing::Subscriber> Layer<S> for LogEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() != tracing::Level::ERROR
            || meta.target().starts_with("rampart::error_report")
        {
            return;
        }
        let guard = CURRENT.load();
        let Some(reporter) = guard.as_ref() else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut sentry_event = Event {
            level: Level::Error,
            message: fields.message.take(),
            logger: Some(meta.target().to_owned()),
            extra: fields.extra,
            ..Default::default()
        };
        sentry_event
            .tags
            .insert("target".into(), meta.target().to_owned());
        reporter.report_internal(sentry_event);
    }
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    extra: BTreeMap<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.record(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}").into());
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.extra.insert(field.name().to_owned(), value);
        }
    }
}
