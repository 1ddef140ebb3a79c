//! Observability: logging setup, the access log, metrics (Prometheus), and log redaction.
//! Health endpoints live in `admin`; this module owns what is recorded, not how it is served.

pub mod access;
pub mod log_layer;
pub mod log_writer;
pub mod logging;
pub mod metrics;
pub mod redact;
