//! Log setup: `tracing` to stdout through the batching [`BatchWriter`], as JSON (one object per
//! line) or human-readable, and, with `[log.file]`, to `combined.log` (every line) and
//! `error.log` (errors only) as JSON, rotated by size ([`super::logfiles`]). The filter comes from
//! `RAMPART_LOG` when set, else from `[log] level` and `[log] levels`. Lines written while a
//! request is handled carry its request id ([`super::log_layer::RequestScope`]). ERROR events also
//! go to error reporting when it is on ([`super::error_report::LogEvents`]).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use super::log_layer::{LogLayer, Style};
use super::log_writer::BatchWriter;
use super::logfiles::RotatingFile;
use crate::config::{LogConfig, LogFormat};

/// Keeps the log writers alive and allows the level to change on reload.
pub struct LogHandle {
    writers: Vec<BatchWriter>,
    filter: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    from_env: bool,
}

impl LogHandle {
    /// Applies a reloaded config's filter (unless `RAMPART_LOG` pins it).
    pub fn set_level(&self, level: &str) {
        if self.from_env {
            return;
        }
        if let Ok(filter) = EnvFilter::builder().parse(level) {
            let _ = self.filter.reload(filter);
        }
    }
}

/// Installs the global subscriber. Call once, early in `main`. Fails when the log files cannot
/// be opened.
pub fn init(config: &LogConfig) -> std::io::Result<LogHandle> {
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
    let mut writers = vec![writer.clone()];
    let files = match &config.file {
        Some(file) => {
            std::fs::create_dir_all(&file.directory)?;
            let open = |name: &str| {
                RotatingFile::open(file.directory.join(name), file.max_size, file.max_files)
                    .map(|f| BatchWriter::new(Box::new(f)))
            };
            let combined = open("combined.log")?;
            let errors = open("error.log")?;
            writers.push(combined.clone());
            writers.push(errors.clone());
            Some(
                LogLayer::new(combined, Style::Json)
                    .and_then(LogLayer::new(errors, Style::Json).with_filter(LevelFilter::ERROR)),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(LogLayer::new(writer, style))
        .with(files)
        .with(super::error_report::LogEvents.with_filter(LevelFilter::ERROR))
        .init();
    Ok(LogHandle {
        writers,
        filter: handle,
        from_env,
    })
}

impl Drop for LogHandle {
    fn drop(&mut self) {
        for writer in &self.writers {
            writer.flush();
        }
    }
}
