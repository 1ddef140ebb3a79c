//! The log line formatter: a tracing layer that writes every event, as one JSON object or one
//! human-readable line, straight into the batching log buffer. Lines written while a request is
//! being handled carry its `request_id` (set by [`RequestScope`]); the access line names it itself.
//!
//! JSON shape: `{"timestamp","level","message",<fields>,"request_id","target"}`.
//!
//! [`Line`] writes a line's parts in either style; the layer fills it from an event's fields, and
//! [`DirectSinks`] from a caller's (the access line, which so skips tracing's dispatch and field
//! visiting but comes out the same).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context as TaskContext, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::log_writer::BatchWriter;

/// How lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Json,
    Pretty,
}

pub struct LogLayer {
    writer: BatchWriter,
    style: Style,
    /// The most verbose level written (`TRACE`: every event the global filter lets through).
    most_verbose: Level,
}

impl LogLayer {
    pub fn new(writer: BatchWriter, style: Style) -> Self {
        Self {
            writer,
            style,
            most_verbose: Level::TRACE,
        }
    }

    /// Writes errors only. A check in the layer rather than a per-layer filter: per-layer
    /// filters make every event pay for their bookkeeping, and `tracing::enabled!` (which the
    /// access line asks) would leave their state behind for the next event.
    pub fn errors_only(self) -> Self {
        Self {
            most_verbose: Level::ERROR,
            ..self
        }
    }
}

thread_local! {
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
    static REQUEST_ID: RefCell<Option<HeaderValue>> = const { RefCell::new(None) };
}

/// The id of the request being handled on this thread, if any.
pub fn current_request_id() -> Option<HeaderValue> {
    REQUEST_ID.with(|id| id.borrow().clone())
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > self.most_verbose {
            return;
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            format_event(&mut line, self.style, event);
            self.writer.write_line(line.as_bytes(), *meta.level());
        });
    }
}

fn format_event(out: &mut String, style: Style, event: &Event<'_>) {
    let meta = event.metadata();
    let mut fields = FieldWriter {
        line: Line::start(out, style, *meta.level(), meta.target()),
        has_request_id: false,
    };
    event.record(&mut fields);
    let mut line = fields.line;
    // The scoped request's id, unless the event named one itself.
    if !fields.has_request_id {
        REQUEST_ID.with(|id| {
            if let Some(id) = &*id.borrow() {
                line.plain_str("request_id", &String::from_utf8_lossy(id.as_bytes()));
            }
        });
    }
    line.end(meta.target());
}

/// Lines written straight to the log writers, without a tracing event: set by
/// [`super::logging::init`] with the writers (and styles) its layers write INFO lines to.
static DIRECT: OnceLock<DirectSinks> = OnceLock::new();

/// The writers a line goes to, each with its style.
pub struct DirectSinks(Vec<(BatchWriter, Style)>);

impl DirectSinks {
    pub fn new(sinks: Vec<(BatchWriter, Style)>) -> Self {
        Self(sinks)
    }

    /// Makes these the process's sinks; the first registration stays.
    pub fn register(self) {
        let _ = DIRECT.set(self);
    }

    /// The sinks, when rampart's own subscriber is installed (as the global one: a subscriber
    /// set for a scope with `tracing::subscriber::with_default` is not told of direct lines).
    pub fn get() -> Option<&'static Self> {
        DIRECT.get()
    }

    /// Writes one line to every sink, formatted once per style as [`LogLayer`] would write an
    /// event of `level` and `target` with the fields `fields` writes (and no scoped request id).
    /// The caller checks that such an event is enabled.
    pub fn write(&self, level: Level, target: &str, fields: impl Fn(&mut Line<'_>)) {
        for style in [Style::Json, Style::Pretty] {
            if !self.0.iter().any(|(_, s)| *s == style) {
                continue;
            }
            LINE.with(|out| {
                let mut out = out.borrow_mut();
                out.clear();
                let mut line = Line::start(&mut out, style, level, target);
                fields(&mut line);
                line.end(target);
                for (writer, _) in self.0.iter().filter(|(_, s)| *s == style) {
                    writer.write_line(out.as_bytes(), level);
                }
            });
        }
    }
}

pin_project_lite::pin_project! {
    /// Runs a request's future with its id set for the log lines it writes. Each poll sets and
    /// restores a thread-local, which is exact because a future is polled on one thread at a time.
    pub struct RequestScope<F> {
        // `Some` between polls; lent to the thread-local during one.
        id: Option<HeaderValue>,
        #[pin]
        inner: F,
    }
}

impl<F> RequestScope<F> {
    pub fn new(id: HeaderValue, inner: F) -> Self {
        Self {
            id: Some(id),
            inner,
        }
    }
}

impl<F: Future> Future for RequestScope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        // The id moves into the thread-local for the poll and back out after it: no clone,
        // and a scope polled inside another restores the outer one.
        REQUEST_ID.with(|slot| std::mem::swap(&mut *slot.borrow_mut(), this.id));
        let polled = this.inner.poll(cx);
        REQUEST_ID.with(|slot| std::mem::swap(&mut *slot.borrow_mut(), this.id));
        polled
    }
}

/// One line being written: the timestamp and level, then fields, then the end. Both tracing
/// events and direct lines ([`DirectSinks`]) are written through it, so they look alike.
pub struct Line<'a> {
    out: &'a mut String,
    style: Style,
}

impl<'a> Line<'a> {
    /// Starts a line: JSON `{"timestamp":…,"level":…`, or pretty `<timestamp> <level> <target>:`.
    fn start(out: &'a mut String, style: Style, level: Level, target: &str) -> Self {
        match style {
            Style::Json => {
                out.push_str("{\"timestamp\":\"");
                write_timestamp(out, SystemTime::now());
                out.push_str("\",\"level\":\"");
                out.push_str(level.as_str());
                out.push('"');
            }
            Style::Pretty => {
                write_timestamp(out, SystemTime::now());
                let _ = write!(out, " {:>5} {}:", level.as_str(), target);
            }
        }
        Self { out, style }
    }

    /// Ends a line: JSON `,"target":…}`, and the newline.
    fn end(self, target: &str) {
        match self.style {
            Style::Json => {
                self.out.push_str(",\"target\":");
                push_json_string(self.out, target);
                self.out.push_str("}\n");
            }
            Style::Pretty => self.out.push('\n'),
        }
    }

    fn key(&mut self, name: &str) {
        match self.style {
            Style::Json => {
                self.out.push_str(",\"");
                self.out.push_str(name);
                self.out.push_str("\":");
            }
            Style::Pretty if name == "message" => self.out.push(' '),
            Style::Pretty => {
                self.out.push(' ');
                self.out.push_str(name);
                self.out.push('=');
            }
        }
    }

    /// A text field; pretty lines quote values that are empty or hold a space, `"` or `=`.
    pub fn str(&mut self, name: &str, value: &str) {
        self.key(name);
        match self.style {
            Style::Json => push_json_string(self.out, value),
            Style::Pretty if name == "message" => self.out.push_str(value),
            Style::Pretty if value.is_empty() || value.contains([' ', '"', '=']) => {
                let _ = write!(self.out, "{value:?}");
            }
            Style::Pretty => self.out.push_str(value),
        }
    }

    /// A text field that pretty lines write unquoted whatever it holds.
    fn plain_str(&mut self, name: &str, value: &str) {
        self.key(name);
        match self.style {
            Style::Json => push_json_string(self.out, value),
            Style::Pretty => self.out.push_str(value),
        }
    }

    /// A text field written only when present, as tracing records an `Option`.
    pub fn opt_str(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(name, value);
        }
    }

    pub fn integer(&mut self, name: &str, value: impl itoa::Integer) {
        self.key(name);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    /// A number: finite ones as JSON numbers, others (`NaN`, `inf`) as text.
    pub fn f64(&mut self, name: &str, value: f64) {
        if value.is_finite() {
            self.key(name);
            push_f64(self.out, value);
        } else {
            self.str(name, &value.to_string());
        }
    }

    /// A duration in milliseconds from whole microseconds: `12.345`, `1.5`, `2`. The text is
    /// what [`Self::f64`] writes for `micros as f64 / 1000.0` (for anything under a hundred days;
    /// beyond that the float loses the last digit, this does not), without the float formatting.
    pub fn millis(&mut self, name: &str, micros: u64) {
        self.key(name);
        push_millis(self.out, micros);
    }

    pub fn bool(&mut self, name: &str, value: bool) {
        self.key(name);
        self.out.push_str(if value { "true" } else { "false" });
    }
}

/// An event's fields, in the order the event names them, into its line.
struct FieldWriter<'a> {
    line: Line<'a>,
    has_request_id: bool,
}

impl FieldWriter<'_> {
    /// The field's name, noting whether the event names its request id itself.
    fn name(&mut self, field: &Field) -> &'static str {
        if field.name() == "request_id" {
            self.has_request_id = true;
        }
        field.name()
    }

    fn text(&mut self, field: &Field, value: &str) {
        let name = self.name(field);
        self.line.str(name, value);
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        let name = self.name(field);
        self.line.integer(name, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        let name = self.name(field);
        self.line.integer(name, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        let name = self.name(field);
        self.line.f64(name, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        let name = self.name(field);
        self.line.bool(name, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, &value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text(field, &format!("{value:?}"));
    }
}

fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    // Most values need no escaping. This check has no early exit, so it compiles to vector
    // instructions: much cheaper per byte than the loop below.
    let needs_escaping = value.bytes().fold(false, |seen, b| {
        seen | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escaping {
        out.push_str(value);
        out.push('"');
        return;
    }
    // Runs that need no escaping are copied whole; only the bytes that must be escaped (all
    // ASCII, so every cut falls on a character boundary) are written one by one.
    let mut plain_from = 0;
    for (at, byte) in value.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[plain_from..at]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        plain_from = at + 1;
    }
    out.push_str(&value[plain_from..]);
    out.push('"');
}

/// A finite number as JSON: integers without a fraction, others in their shortest exact form.
fn push_f64(out: &mut String, value: f64) {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(value));
    }
}

/// `micros / 1000` in decimal, trailing zeros of the fraction (and a bare point) left out.
fn push_millis(out: &mut String, micros: u64) {
    out.push_str(itoa::Buffer::new().format(micros / 1000));
    let mut fraction = micros % 1000;
    if fraction == 0 {
        return;
    }
    let mut digits = [b'.', b'0' + (fraction / 100) as u8, 0, 0];
    fraction %= 100;
    digits[2] = b'0' + (fraction / 10) as u8;
    digits[3] = b'0' + (fraction % 10) as u8;
    let len = digits
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(0, |last| last + 1);
    // ASCII digits and a point.
    out.push_str(std::str::from_utf8(&digits[..len]).unwrap_or_default());
}

/// RFC 3339 in UTC with microseconds: `2026-11-22T01:50:10.690452Z`.
/// The date and time to the second are formatted once per second and thread.
fn write_timestamp(out: &mut String, now: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != seconds {
            let (days, in_day) = (seconds / 86_400, seconds % 86_400);
            let (year, month, day) = civil_from_days(days as i64);
            cached.1.clear();
            let _ = write!(
                cached.1,
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
                in_day / 3600,
                (in_day / 60) % 60,
                in_day % 60,
            );
            cached.0 = seconds;
        }
        out.push_str(&cached.1);
    });
    let micros = since.subsec_micros();
    let mut digits = [b'0'; 8];
    digits[0] = b'.';
    digits[7] = b'Z';
    let mut rest = micros;
    for slot in digits[1..7].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.push_str(std::str::from_utf8(&digits).unwrap_or(".000000Z"));
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;

    proptest::proptest! {
        /// Whole microseconds as milliseconds: the text the float formatting gives, up to 2^43
        /// µs (about 100 days; past 2^52 µs the float's last digit differs).
        #[test]
        fn millis_are_written_as_the_float_would_be(
            micros in proptest::prop_oneof![0..10_000u64, 0..100_000_000u64, 0..(1u64 << 43)],
        ) {
            let (mut fixed, mut float) = (String::new(), String::new());
            push_millis(&mut fixed, micros);
            push_f64(&mut float, micros as f64 / 1000.0);
            proptest::prop_assert_eq!(fixed, float);
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let mut out = String::new();
        write_timestamp(
            &mut out,
            UNIX_EPOCH + Duration::from_micros(1_795_312_210_690_452),
        );
        assert_eq!(out, "2026-11-22T01:50:10.690452Z");
        out.clear();
        write_timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400));
        assert_eq!(out, "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\nd\u{1}");
        let parsed: String = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}");
    }

    fn lines(style: Style, emit: impl FnOnce()) -> String {
        let (writer, capture) = crate::observe::log_writer::capture();
        let subscriber = tracing_subscriber::registry().with(LogLayer::new(writer.clone(), style));
        tracing::subscriber::with_default(subscriber, emit);
        writer.flush();
        capture.text()
    }

    #[test]
    fn json_lines_carry_fields_and_the_scoped_request_id() {
        let text = lines(Style::Json, || {
            let scoped = RequestScope::new(HeaderValue::from_static("req-7"), async {
                tracing::warn!(upstream = "app", attempts = 2u64, "upstream \"failed\"");
            });
            futures_util::FutureExt::now_or_never(scoped).unwrap();
            tracing::info!(target: "rampart::access", request_id = "req-8", status = 200u64, "request");
        });
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["message"], "upstream \"failed\"");
        assert_eq!(lines[0]["upstream"], "app");
        assert_eq!(lines[0]["attempts"], 2);
        assert_eq!(lines[0]["request_id"], "req-7");
        assert_eq!(lines[1]["request_id"], "req-8");
        assert_eq!(lines[1]["target"], "rampart::access");
        assert_eq!(
            text.matches("request_id").count(),
            2,
            "no duplicate ids: {text}"
        );
    }

    #[test]
    fn pretty_lines_are_readable() {
        let text = lines(Style::Pretty, || {
            tracing::info!(route = "api", path = "/a b", "request")
        });
        assert!(text.contains(" INFO "), "{text}");
        assert!(text.contains("request route=api path=\"/a b\""), "{text}");
    }
}
