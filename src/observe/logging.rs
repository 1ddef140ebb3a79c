//! Log setup: `tracing` to stdout through the batching [`BatchWriter`], as JSON (one object per
//! line) or human-readable. The level comes from `RAMPART_LOG` when set, else from `[log] level`.
//! Lines written while a request is handled carry its request id ([`super::log_layer::RequestScope`]).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use super::log_layer::{LogLayer, Style};
use super::log_writer::BatchWriter;
use crate::config::{LogConfig, LogFormat};

/// Keeps the log writer alive and allows the level to change on reload.
pub struct LogHandle {
    writer: BatchWriter,
    filter: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    from_env: bool,
}

impl LogHandle {
    /// Applies a reloaded config's level (unless `RAMPART_LOG` pins it).
    pub fn set_level(&self, level: &str) {
        if self.from_env {
            return;
        }
        if let Ok(filter) = EnvFilter::builder().parse(level) {
            let _ = self.filter.reload(filter);
        }
    }
}

/// Installs the global subscriber. Call once, early in `main`.
pub fn init(config: &LogConfig) -> LogHandle {
    let env_level = std::env::var("RAMPART_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let from_env = env_level.is_some();
    let level = env_level.unwrap_or_else(|| config.level.clone());
    let filter = EnvFilter::builder()
        .parse(&level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let writer = BatchWriter::stdout();
    let style = match config.format {
        LogFormat::Json => Style::Json,
        LogFormat::Pretty => Style::Pretty,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(LogLayer::new(writer.clone(), style))
        .init();
    LogHandle {
        writer,
        filter: handle,
        from_env,
    }
}

impl Drop for LogHandle {
    fn drop(&mut self) {
        self.writer.flush();
    }
}
