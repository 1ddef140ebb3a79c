//! Export of finished spans: a bounded queue filled from the request path with `try_send`
//! (never waiting), and one background task that batches spans and POSTs them as OTLP/HTTP
//! JSON to the collector. A slow, hanging or failing collector only fills the queue; spans
//! beyond it, and spans of a failed export, are dropped and counted. Nothing here may block
//! or fail a request, and nothing is retried.

use std::borrow::Cow;
use std::time::Duration;

use metrics::Counter;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::config::TracingConfig;
use super::context::{span_id_hex, trace_id_hex};

pub const SPANS_EXPORTED_TOTAL: &str = "rampart_trace_spans_exported_total";
pub const SPANS_DROPPED_TOTAL: &str = "rampart_trace_spans_dropped_total";

/// OTLP span kinds rampart emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Server = 2,
    Client = 3,
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum AttrValue {
    Str(Cow<'static, str>),
    Int(i64),
}

impl From<&'static str> for AttrValue {
    fn from(value: &'static str) -> Self {
        Self::Str(Cow::Borrowed(value))
    }
}

impl From<String> for AttrValue {
    fn from(value: String) -> Self {
        Self::Str(Cow::Owned(value))
    }
}

impl From<i64> for AttrValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

/// One finished span, as it waits in the queue.
#[derive(Debug, Clone)]
pub struct SpanData {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
    pub name: Cow<'static, str>,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// `Some(message)` marks the span as an error.
    pub error: Option<Cow<'static, str>>,
}

/// The request path's end of the queue.
#[derive(Debug)]
pub struct Exporter {
    queue: mpsc::Sender<SpanData>,
    dropped_full: Counter,
}

impl Exporter {
    /// Starts the export task on the current runtime; it flushes what is queued and ends when
    /// the exporter (and every request holding it) is gone.
    pub fn spawn(config: &TracingConfig) -> Self {
        metrics::describe_counter!(SPANS_EXPORTED_TOTAL, "Spans the trace collector accepted.");
        metrics::describe_counter!(
            SPANS_DROPPED_TOTAL,
            "Spans dropped, by reason (queue_full: the export queue was full; export_failed: the collector refused or did not answer)."
        );
        let (queue, receiver) = mpsc::channel(config.max_queue);
        let mut headers = http::HeaderMap::new();
        for (name, value) in &config.headers {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .default_headers(headers)
            .build()
            .unwrap_or_default();
        let task = Task {
            receiver,
            client,
            endpoint: config.endpoint.clone(),
            resource: json!({
                "attributes": [
                    attribute("service.name", &AttrValue::from(config.service_name.clone())),
                    attribute("service.version", &AttrValue::from(env!("CARGO_PKG_VERSION"))),
                ]
            }),
            batch_size: config.batch_size,
            batch_interval: config.batch_interval,
            exported: metrics::counter!(SPANS_EXPORTED_TOTAL),
            dropped_failed: metrics::counter!(SPANS_DROPPED_TOTAL, "reason" => "export_failed"),
            failing: false,
        };
        tokio::spawn(task.run());
        Self {
            queue,
            dropped_full: metrics::counter!(SPANS_DROPPED_TOTAL, "reason" => "queue_full"),
        }
    }

    /// Queues `span`, or drops and counts it when the queue is full.
    pub fn submit(&self, span: SpanData) {
        if self.queue.try_send(span).is_err() {
            self.dropped_full.increment(1);
        }
    }
}

struct Task {
    receiver: mpsc::Receiver<SpanData>,
    client: reqwest::Client,
    endpoint: reqwest::Url,
    resource: Value,
    batch_size: usize,
    batch_interval: Duration,
    exported: Counter,
    dropped_failed: Counter,
    /// Whether the last export failed (failures are logged once per transition).
    failing: bool,
}

impl Task {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            // Wait for a first span, then fill the batch until it is full or the interval ends.
            if self.receiver.recv_many(&mut batch, self.batch_size).await == 0 {
                return;
            }
            let deadline = tokio::time::Instant::now() + self.batch_interval;
            let mut closed = false;
            while batch.len() < self.batch_size {
                let room = self.batch_size - batch.len();
                match tokio::time::timeout_at(deadline, self.receiver.recv_many(&mut batch, room))
                    .await
                {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            self.export(&batch).await;
            batch.clear();
            if closed {
                return;
            }
        }
    }

    async fn export(&mut self, batch: &[SpanData]) {
        let body = encode(&self.resource, batch);
        let count = batch.len() as u64;
        let failure = match self
            .client
            .post(self.endpoint.clone())
            .body(body)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("the collector answered {}", response.status())),
            Err(error) if error.is_timeout() => Some("the collector did not answer in time".into()),
            Err(error) => Some(format!("the collector cannot be reached: {error}")),
        };
        match failure {
            None => {
                self.exported.increment(count);
                if self.failing {
                    self.failing = false;
                    tracing::info!(endpoint = %self.endpoint, "trace export works again");
                }
            }
            Some(reason) => {
                self.dropped_failed.increment(count);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(endpoint = %self.endpoint, reason, "trace export failed; spans are dropped until the collector answers");
                }
            }
        }
    }
}

/// An OTLP/HTTP JSON `ExportTraceServiceRequest`: ids in hex, 64-bit integers as strings.
/// Serialized straight from the spans (no intermediate JSON tree).
pub fn encode(resource: &Value, spans: &[SpanData]) -> Vec<u8> {
    let request = ExportRequest {
        resource_spans: [ResourceSpans {
            resource,
            scope_spans: [ScopeSpans {
                scope: Scope {
                    name: "rampart",
                    version: env!("CARGO_PKG_VERSION"),
                },
                spans: Spans(spans),
            }],
        }],
    };
    serde_json::to_vec(&request).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: &'a Value,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct ScopeSpans<'a> {
    scope: Scope,
    spans: Spans<'a>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
    version: &'static str,
}

struct Spans<'a>(&'a [SpanData]);

impl Serialize for Spans<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(SpanJson))
    }
}

struct SpanJson<'a>(&'a SpanData);

impl Serialize for SpanJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let span = self.0;
        let trace_id = trace_id_hex(span.trace_id);
        let span_id = span_id_hex(span.span_id);
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("traceId", ascii(&trace_id))?;
        map.serialize_entry("spanId", ascii(&span_id))?;
        if let Some(parent) = span.parent_span_id {
            map.serialize_entry("parentSpanId", ascii(&span_id_hex(parent)))?;
        }
        map.serialize_entry("name", &span.name)?;
        map.serialize_entry("kind", &(span.kind as u8))?;
        map.serialize_entry(
            "startTimeUnixNano",
            itoa::Buffer::new().format(span.start_unix_nanos),
        )?;
        map.serialize_entry(
            "endTimeUnixNano",
            itoa::Buffer::new().format(span.end_unix_nanos),
        )?;
        map.serialize_entry("attributes", &Attributes(&span.attributes))?;
        if let Some(message) = &span.error {
            map.serialize_entry(
                "status",
                &Status {
                    code: 2,
                    message: message.as_ref(),
                },
            )?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Status<'a> {
    code: u8,
    message: &'a str,
}

struct Attributes<'a>(&'a [(&'static str, AttrValue)]);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(key, value)| Attribute { key, value }))
    }
}

/// `{"key": …, "value": {"stringValue": …}}` or `{"intValue": "…"}`.
struct Attribute<'a> {
    key: &'a str,
    value: &'a AttrValue,
}

impl Serialize for Attribute<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Typed<'a>(&'a AttrValue);
        impl Serialize for Typed<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(1))?;
                match self.0 {
                    AttrValue::Str(text) => map.serialize_entry("stringValue", text)?,
                    AttrValue::Int(number) => {
                        map.serialize_entry("intValue", itoa::Buffer::new().format(*number))?
                    }
                }
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("key", self.key)?;
        map.serialize_entry("value", &Typed(self.value))?;
        map.end()
    }
}

/// Hex digits as a string (they are ASCII).
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

fn attribute(key: &str, value: &AttrValue) -> Value {
    serde_json::to_value(Attribute { key, value }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_otlp_json() {
        let span = SpanData {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0xab,
            parent_span_id: Some(0x00f067aa0ba902b7),
            name: "GET api".into(),
            kind: SpanKind::Server,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            attributes: vec![
                ("http.route", "api".into()),
                ("http.response.status_code", 502.into()),
            ],
            error: Some("bad_gateway".into()),
        };
        let body = encode(&json!({"attributes": []}), &[span]);
        let value: Value = serde_json::from_slice(&body).unwrap();
        let span = &value["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], "00000000000000ab");
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["endTimeUnixNano"], "2");
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["attributes"][1]["value"]["intValue"], "502");
    }
}
