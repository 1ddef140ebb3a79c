//! Configuration: one TOML file in, one validated [`Config`] out, or every problem found with its
//! file, line, column, key path and what was expected.
//!
//! The steps, in order: TOML syntax (`toml_edit`, which keeps spans) → `${VAR}` interpolation of
//! string values → the serde model in [`file`] (unknown keys and wrong types refused) → relations
//! and addresses in [`validate`], which yields the resolved model in [`model`]. Nothing here starts
//! a socket or a task.

pub mod cache;
pub mod file;
pub mod interpolate;
pub mod locate;
pub mod model;
pub mod observe;
pub mod ratelimit;
pub mod resilience;
pub mod security;
pub mod units;
pub mod validate;

use std::fmt;
use std::path::Path;

pub use locate::KeyPath;
pub use model::*;

use interpolate::{InterpolateError, interpolate};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Where in the document: `route[1].upstream`.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.key, self.message
        )
    }
}

/// Every problem found in one file; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, interpolates from the process environment, and validates `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            line: 0,
            column: 0,
            key: "(file)".into(),
            message: format!("cannot read the config file: {error}"),
        }])
    })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, &name, base_dir, &|var| std::env::var(var).ok())
}

/// Parses config `text` named `file` (for messages); relative file paths inside resolve from
/// `base_dir`; `env` looks up `${VAR}` references.
pub fn parse(
    text: &str,
    file: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let source = Source { text, file };
    let doc = toml_edit::Document::parse(text.to_owned()).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        let message = error.message().trim().replace('\n', " ");
        ConfigErrors(vec![source.error_at(offset, "(syntax)", message)])
    })?;
    let mut value: toml::Table = toml::from_str(text).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        ConfigErrors(vec![source.error_at(
            offset,
            "(syntax)",
            error.message().to_owned(),
        )])
    })?;

    let mut errors = Vec::new();
    interpolate_table(&mut value, &KeyPath::root(), env, &mut |path, message| {
        errors.push(source.error(&doc, &path, message));
    });
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }

    let file_config: file::FileConfig = serde_path_to_error::deserialize(toml::Value::Table(value))
        .map_err(|error| {
            let path = serde_path(error.path());
            // The toml deserializer appends "in `key`"; the key path already says where.
            let full = error.inner().to_string();
            let message = full.lines().next().unwrap_or_default().trim().to_owned();
            ConfigErrors(vec![source.error(&doc, &path, message)])
        })?;

    validate::validate(&file_config, base_dir).map_err(|problems| {
        ConfigErrors(
            problems
                .into_iter()
                .map(|(path, message)| source.error(&doc, &path, message))
                .collect(),
        )
    })
}

struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    fn error_at(&self, offset: usize, key: &str, message: String) -> ConfigError {
        let (line, column) = locate::line_column(self.text, offset);
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            key: key.to_owned(),
            message,
        }
    }

    fn error(
        &self,
        doc: &toml_edit::Document<String>,
        path: &KeyPath,
        message: String,
    ) -> ConfigError {
        let offset = locate::offset_of(doc, path).unwrap_or(0);
        self.error_at(offset, &path.to_string(), message)
    }
}

fn serde_path(path: &serde_path_to_error::Path) -> KeyPath {
    use serde_path_to_error::Segment as S;
    let mut key_path = KeyPath::root();
    for segment in path.iter() {
        key_path = match segment {
            S::Seq { index } => key_path.index(*index),
            S::Map { key } => key_path.key(key),
            S::Enum { variant } => key_path.key(variant),
            S::Unknown => key_path,
        };
    }
    key_path
}

fn interpolate_table(
    table: &mut toml::Table,
    path: &KeyPath,
    env: &dyn Fn(&str) -> Option<String>,
    report: &mut dyn FnMut(KeyPath, String),
) {
    for (key, value) in table.iter_mut() {
        interpolate_value(value, &path.key(key), env, report);
    }
}

fn interpolate_value(
    value: &mut toml::Value,
    path: &KeyPath,
    env: &dyn Fn(&str) -> Option<String>,
    report: &mut dyn FnMut(KeyPath, String),
) {
    match value {
        toml::Value::String(text) => match interpolate(text, env) {
            Ok(done) => *text = done,
            Err(InterpolateError::Unset(name)) => report(
                path.clone(),
                format!(
                    "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
                ),
            ),
            Err(InterpolateError::Malformed(why)) => report(path.clone(), why),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &path.index(i), env, report);
            }
        }
        toml::Value::Table(table) => interpolate_table(table, path, env, report),
        _ => {}
    }
}
