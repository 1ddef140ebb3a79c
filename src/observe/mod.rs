//! Observability: logging setup and log files, the access log, metrics (Prometheus) and process
//! figures, the rolling request window, alert rules and their notifiers, error reporting to
//! Sentry, log redaction, and distributed tracing (W3C trace context, OTLP span export).
//! Health endpoints live in `admin`; this module owns what is recorded, not how it is served.

pub mod access;
pub mod alerts;
pub mod error_report;
pub mod histogram;
pub mod log_layer;
pub mod log_writer;
pub mod logfiles;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod redact;
pub mod registry;
pub mod request_counts;
pub mod shard;
pub mod trace;
pub mod window;
