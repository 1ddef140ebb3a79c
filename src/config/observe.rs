//! Validation of the observability sections: per-module log levels, log files and (in
//! [`crate::observe::alerts::config`]) alert rules and notifiers.

use std::path::Path;

use super::file::LogSection;
use super::locate::KeyPath;
use super::model::LogFileConfig;
use super::validate::Problems;

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// `level` with each `levels` entry appended as `module=level`.
pub fn log_filter(log: &LogSection, path: &KeyPath, problems: &mut Problems) -> String {
    let mut filter = log.level.trim().to_owned();
    for (module, level) in &log.levels {
        let at = path.key("levels").key(module);
        let module_ok = !module.is_empty()
            && module
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-');
        if !module_ok {
            problems.push((
                at.clone(),
                format!("expected a module path such as \"rampart::access\", got {module:?}"),
            ));
            continue;
        }
        let level = level.trim().to_ascii_lowercase();
        if !LEVELS.contains(&level.as_str()) {
            problems.push((
                at,
                format!("expected one of {}, got {level:?}", LEVELS.join(", ")),
            ));
            continue;
        }
        if !filter.is_empty() {
            filter.push(',');
        }
        filter.push_str(&format!("{module}={level}"));
    }
    filter
}

/// The `[log.file]` section resolved (directory from the config file's folder).
pub fn log_file(
    log: &LogSection,
    path: &KeyPath,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<LogFileConfig> {
    let section = log.file.as_ref()?;
    let path = path.key("file");
    if section.directory.trim().is_empty() {
        problems.push((
            path.key("directory"),
            "expected a directory for combined.log and error.log".into(),
        ));
    }
    if section.max_size.0 < 1024 {
        problems.push((
            path.key("max_size"),
            format!("expected at least 1KiB, got {}", section.max_size.0),
        ));
    }
    if !(1..=1000).contains(&section.max_files) {
        problems.push((
            path.key("max_files"),
            format!("expected 1 to 1000 files, got {}", section.max_files),
        ));
    }
    Some(LogFileConfig {
        directory: base_dir.join(section.directory.trim()),
        max_size: section.max_size.0,
        max_files: section.max_files,
    })
}
