//! Reloading: from SIGHUP or a change of the config file (`--watch`). A valid file replaces the
//! whole pipeline; an invalid one is refused, its errors logged, and the old pipeline keeps serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Running;
use crate::observe::logging::LogHandle;
use crate::observe::metrics as m;

/// Loads `path` and, if valid, swaps it in. Returns whether the new config is now serving.
pub async fn reload_from_file(running: &Running, path: &Path, log: Option<&LogHandle>) -> bool {
    match crate::config::load(path) {
        Ok(config) => {
            let level = config.log.level.clone();
            if let Err(error) = running.reload(config).await {
                metrics::counter!(m::CONFIG_RELOADS_TOTAL, "result" => "failure").increment(1);
                tracing::error!(%error, "config reload refused; the previous configuration keeps serving");
                return false;
            }
            if let Some(log) = log {
                log.set_level(&level);
            }
            true
        }
        Err(errors) => {
            metrics::counter!(m::CONFIG_RELOADS_TOTAL, "result" => "failure").increment(1);
            for error in &errors.0 {
                tracing::error!(
                    file = %error.file,
                    line = error.line,
                    column = error.column,
                    key = %error.key,
                    "config reload refused: {}",
                    error.message
                );
            }
            tracing::error!(
                count = errors.0.len(),
                "config reload refused; the previous configuration keeps serving"
            );
            false
        }
    }
}

/// Watches `path` (through its directory, so editors that replace the file are seen) and sends
/// one message per burst of changes (debounced by 200 ms).
pub fn watch_file(
    path: &Path,
) -> notify::Result<(RecommendedWatcher, mpsc::UnboundedReceiver<()>)> {
    let target: PathBuf = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let directory = target
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let file_name = target.file_name().map(|n| n.to_owned());
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let ours = event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_owned()) == file_name);
            if ours && (event.kind.is_modify() || event.kind.is_create()) {
                let _ = raw_tx.send(());
            }
        }
    })?;
    watcher.watch(&directory, RecursiveMode::NonRecursive)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Let the writer finish, then swallow the rest of the burst.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while raw_rx.try_recv().is_ok() {}
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    Ok((watcher, rx))
}
