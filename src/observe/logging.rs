//! Log setup: `tracing` to stdout through a non-blocking writer, as JSON (one object per line) or
//! human-readable. The level comes from `RAMPART_LOG` when set, else from `[log] level`.
//! Request-scoped lines carry the request id through the `request` span.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// Keeps the log writer alive and allows the level to change on reload.
pub struct LogHandle {
    _guard: WorkerGuard,
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
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(256 * 1024)
        .finish(std::io::stdout());
    let registry = tracing_subscriber::registry().with(filter);
    match config.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(writer),
            )
            .init(),
    }
    LogHandle {
        _guard: guard,
        filter: handle,
        from_env,
    }
}
