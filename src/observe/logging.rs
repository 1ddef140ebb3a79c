//! Log setup: `tracing` to stdout through the batching [`BatchWriter`], as JSON (one object per
//! line) or human-readable, and, with `[log.file]`, to `combined.log` (every line) and
//! `error.log` (errors only) as JSON, rotated by size ([`super::logfiles`]). The filter comes from
//! `RAMPART_LOG` when set, else from `[log] level` and `[log] levels`. Lines written while a
//! request is handled carry its request id ([`super::log_layer::RequestScope`]). ERROR events also
//! go to error reporting when it is on ([`super::error_report::LogEvents`]).
//!
//! The access line skips the tracing event: once the subscriber is installed, the writers it
//! writes INFO lines to are registered as [`DirectSinks`], and the access line, when the filter
//! enables it, is formatted once per style and appended to them directly.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use super::log_layer::{DirectSinks, LogLayer, Style};
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
            super::access::filter_changed();
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
    let stdout = BatchWriter::stdout();
    let style = match config.format {
        LogFormat::Json => Style::Json,
        LogFormat::Pretty => Style::Pretty,
    };
    let files = match &config.file {
        Some(file) => {
            std::fs::create_dir_all(&file.directory)?;
            let open = |name: &str| {
                RotatingFile::open(file.directory.join(name), file.max_size, file.max_files)
                    .map(|f| BatchWriter::new(Box::new(f)))
            };
            Some(Files {
                combined: open("combined.log")?,
                errors: open("error.log")?,
            })
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(layers(&stdout, style, files.as_ref()))
        .init();
    // The access line's sinks: wherever the layers write INFO lines.
    let mut info_sinks = vec![(stdout.clone(), style)];
    let mut writers = vec![stdout];
    if let Some(files) = files {
        info_sinks.push((files.combined.clone(), Style::Json));
        writers.extend([files.combined, files.errors]);
    }
    DirectSinks::new(info_sinks).register();
    Ok(LogHandle {
        writers,
        filter: handle,
        from_env,
    })
}

/// The log files' writers, both JSON.
struct Files {
    /// Every line.
    combined: BatchWriter,
    /// ERROR lines only.
    errors: BatchWriter,
}

/// The layers under the filter: stdout, the log files when on, and error reporting. None has a
/// per-layer filter ([`LogLayer::errors_only`] and `LogEvents` check the level themselves):
/// `tracing::enabled!`, which the access line asks, leaves per-layer filter state behind, and
/// the next event from a callsite that is always enabled (an ERROR) would then skip those layers.
fn layers<S: Subscriber>(
    stdout: &BatchWriter,
    style: Style,
    files: Option<&Files>,
) -> impl Layer<S> {
    let files = files.map(|files| {
        LogLayer::new(files.combined.clone(), Style::Json)
            .and_then(LogLayer::new(files.errors.clone(), Style::Json).errors_only())
    });
    LogLayer::new(stdout.clone(), style)
        .and_then(files)
        .and_then(super::error_report::LogEvents)
}

impl Drop for LogHandle {
    fn drop(&mut self) {
        for writer in &self.writers {
            writer.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::log_writer::capture;

    #[test]
    fn errors_reach_every_layer_after_an_enabled_check() {
        let (stdout, stdout_text) = capture();
        let (combined, combined_text) = capture();
        let (errors, errors_text) = capture();
        let files = Files {
            combined: combined.clone(),
            errors: errors.clone(),
        };
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(layers(&stdout, Style::Json, Some(&files)));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("first");
            assert!(tracing::enabled!(target: "rampart::access", tracing::Level::INFO));
            tracing::error!("second");
            assert!(!tracing::enabled!(target: "rampart::access", tracing::Level::DEBUG));
            tracing::error!("third");
        });
        for writer in [&stdout, &combined, &errors] {
            writer.flush();
        }
        for text in [stdout_text.text(), combined_text.text()] {
            assert_eq!(text.lines().count(), 3, "{text}");
        }
        let errors = errors_text.text();
        assert_eq!(errors.lines().count(), 2, "errors only: {errors}");
        assert!(
            errors.contains("second") && errors.contains("third"),
            "{errors}"
        );
    }
}
