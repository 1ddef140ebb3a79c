//! `[error_reporting]`: the TOML model, its validation with key paths, and the resolved
//! [`ErrorReportingConfig`]. Nothing here runs or sends anything.

use std::str::FromStr;
use std::time::Duration;

use http::header::HeaderName;
use serde::Deserialize;

use crate::config::locate::KeyPath;
use crate::config::units::deserialize_opt_duration;
use crate::config::validate::Problems;

/// Header values never sent, whatever the config says.
pub const ALWAYS_REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "stripe-signature",
    "x-api-key",
];

/// JSON body fields redacted unless the config lists others (it adds to these).
pub const DEFAULT_BODY_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "token",
    "access_token",
    "refresh_token",
    "secret",
    "client_secret",
    "api_key",
    "apikey",
    "card_number",
    "cvv",
    "cvc",
    "ssn",
];

/// `[error_reporting]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReportingSection {
    /// The Sentry DSN; empty (e.g. `"${SENTRY_DSN:-}"` unset) turns reporting off.
    #[serde(default)]
    pub dsn: String,
    /// Default `production`.
    pub environment: Option<String>,
    /// Default `rampart@<version>`.
    pub release: Option<String>,
    /// Default: the host name.
    pub server_name: Option<String>,
    /// Fraction of events sent (default 1).
    pub sample_rate: Option<f64>,
    /// Request headers whose values are replaced, besides [`ALWAYS_REDACTED_HEADERS`].
    #[serde(default)]
    pub redact_headers: Vec<String>,
    /// JSON body fields whose values are replaced, besides [`DEFAULT_BODY_FIELDS`].
    #[serde(default)]
    pub redact_body_fields: Vec<String>,
    /// Which response statuses become events: `"5xx"`, `"4xx"` or single codes (default
    /// `["5xx"]`).
    pub statuses: Option<Vec<StatusEntry>>,
    /// Per delivery (default 5s).
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub timeout: Option<Duration>,
    /// Events waiting to be sent; more are dropped (default 100).
    pub queue_size: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StatusEntry {
    Code(i64),
    Class(String),
}

/// Statuses 400–599 as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusSet([u128; 2]);

impl StatusSet {
    pub fn server_errors() -> Self {
        let mut set = Self::default();
        set.insert_range(500, 599);
        set
    }

    fn insert_range(&mut self, from: u16, to: u16) {
        for code in from..=to {
            self.insert(code);
        }
    }

    fn insert(&mut self, code: u16) {
        if (400..600).contains(&code) {
            let bit = usize::from(code - 400);
            self.0[bit / 128] |= 1u128 << (bit % 128);
        }
    }

    pub fn contains(&self, code: u16) -> bool {
        if !(400..600).contains(&code) {
            return false;
        }
        let bit = usize::from(code - 400);
        self.0[bit / 128] & (1u128 << (bit % 128)) != 0
    }
}

/// The resolved section; `None` in [`crate::config::Config`] when reporting is off.
#[derive(Debug, Clone)]
pub struct ErrorReportingConfig {
    pub dsn: sentry::types::Dsn,
    pub environment: String,
    pub release: String,
    pub server_name: Option<String>,
    pub sample_rate: f64,
    /// Lower-case names: the always-redacted ones and the configured ones.
    pub redact_headers: Vec<HeaderName>,
    /// Lower-case field names.
    pub redact_body_fields: Vec<String>,
    pub statuses: StatusSet,
    pub timeout: Duration,
    pub queue_size: usize,
}

/// Validates `[error_reporting]`; `None` when absent or when `dsn` is empty.
pub fn resolve(
    section: Option<&ErrorReportingSection>,
    root: &KeyPath,
    problems: &mut Problems,
) -> Option<ErrorReportingConfig> {
    let section = section?;
    let path = root.key("error_reporting");
    let before = problems.len();

    let sample_rate = section.sample_rate.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_rate) {
        problems.push((
            path.key("sample_rate"),
            format!(
                "expected a fraction from 0 to 1 (0.25 sends one event in four), got {sample_rate}"
            ),
        ));
    }
    let mut redact_headers: Vec<HeaderName> = ALWAYS_REDACTED_HEADERS
        .iter()
        .map(|h| HeaderName::from_static(h))
        .collect();
    for (i, name) in section.redact_headers.iter().enumerate() {
        match HeaderName::from_str(name.trim()) {
            Ok(name) => redact_headers.push(name),
            Err(_) => problems.push((
                path.key("redact_headers").index(i),
                format!("expected a header name such as \"x-session-token\", got {name:?}"),
            )),
        }
    }
    redact_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    redact_headers.dedup();
    let mut redact_body_fields: Vec<String> = DEFAULT_BODY_FIELDS
        .iter()
        .map(|f| (*f).to_owned())
        .collect();
    for (i, field) in section.redact_body_fields.iter().enumerate() {
        if field.trim().is_empty() {
            problems.push((
                path.key("redact_body_fields").index(i),
                "expected a JSON field name such as \"password\"".into(),
            ));
        } else {
            redact_body_fields.push(field.trim().to_ascii_lowercase());
        }
    }
    redact_body_fields.sort();
    redact_body_fields.dedup();

    let statuses = match &section.statuses {
        None => StatusSet::server_errors(),
        Some(entries) => {
            let mut set = StatusSet::default();
            for (i, entry) in entries.iter().enumerate() {
                match entry {
                    StatusEntry::Code(code @ 400..=599) => set.insert(*code as u16),
                    StatusEntry::Class(class) if class.eq_ignore_ascii_case("5xx") => {
                        set.insert_range(500, 599)
                    }
                    StatusEntry::Class(class) if class.eq_ignore_ascii_case("4xx") => {
                        set.insert_range(400, 499)
                    }
                    other => problems.push((
                        path.key("statuses").index(i),
                        format!(
                            "expected \"5xx\", \"4xx\" or a status from 400 to 599, got {}",
                            match other {
                                StatusEntry::Code(code) => code.to_string(),
                                StatusEntry::Class(class) => format!("{class:?}"),
                            }
                        ),
                    )),
                }
            }
            set
        }
    };
    let timeout = section.timeout.unwrap_or(Duration::from_secs(5));
    if timeout.is_zero() {
        problems.push((path.key("timeout"), "expected a duration above 0".into()));
    }
    let queue_size = section.queue_size.unwrap_or(100);
    if !(1..=10_000).contains(&queue_size) {
        problems.push((
            path.key("queue_size"),
            format!("expected 1 to 10000 events, got {queue_size}"),
        ));
    }
    let environment = section
        .environment
        .clone()
        .unwrap_or_else(|| "production".into());
    if environment.trim().is_empty() {
        problems.push((
            path.key("environment"),
            "expected a name such as \"production\"".into(),
        ));
    }

    let dsn_text = section.dsn.trim();
    if dsn_text.is_empty() {
        return None;
    }
    // The DSN's key is a secret: the message names the problem, never the value.
    let dsn = match sentry::types::Dsn::from_str(dsn_text) {
        Ok(dsn) => Some(dsn),
        Err(error) => {
            problems.push((
                path.key("dsn"),
                format!(
                    "expected a Sentry DSN such as \"https://PUBLIC_KEY@o0.ingest.sentry.io/0\" ({error})"
                ),
            ));
            None
        }
    };
    if problems.len() > before {
        return None;
    }
    Some(ErrorReportingConfig {
        dsn: dsn?,
        environment,
        release: section
            .release
            .clone()
            .unwrap_or_else(|| format!("rampart@{}", env!("CARGO_PKG_VERSION"))),
        server_name: section.server_name.clone().or_else(host_name),
        sample_rate,
        redact_headers,
        redact_body_fields,
        statuses,
        timeout,
        queue_size,
    })
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_set() {
        let set = StatusSet::server_errors();
        assert!(set.contains(500) && set.contains(599) && set.contains(502));
        assert!(!set.contains(404) && !set.contains(200) && !set.contains(600));
    }
}
