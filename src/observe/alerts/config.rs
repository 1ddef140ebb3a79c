//! Alert rules and notifiers: the TOML model (`[[alert]]`, `[[notifier]]`), its validation with
//! key paths, and the resolved [`AlertsConfig`]. Nothing here runs.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::locate::KeyPath;
use crate::config::units::{ByteSize, deserialize_opt_duration};
use crate::config::validate::Problems;

/// `[[alert]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSection {
    pub name: String,
    pub condition: ConditionKind,
    /// `error_rate`: `"5%"` or `0.05`; `latency_p95`/`latency_p99`: a duration (`"1s"`);
    /// `rss_above`: a size (`"512MiB"`).
    pub threshold: Option<Threshold>,
    /// The span measured by `error_rate` and latency conditions (default 1m, at most 15m).
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub window: Option<Duration>,
    /// Fewer requests than this in the window never fire a rate or latency condition.
    pub min_requests: Option<u64>,
    /// How long the condition must hold before the alert fires (default 0s).
    #[serde(default, rename = "for", deserialize_with = "deserialize_opt_duration")]
    pub for_: Option<Duration>,
    /// Shortest time between two notifications of one firing alert (default 1h).
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub repeat_interval: Option<Duration>,
    /// `dependency_down`: a dependency name as `/health` lists it; any when absent.
    pub dependency: Option<String>,
    /// `circuit_open`: an upstream; any when absent.
    pub upstream: Option<String>,
    /// `store_degraded`: `redis` or `postgres`; any when absent.
    pub store: Option<String>,
    /// A label for receivers (default `warning`).
    pub severity: Option<String>,
    /// A line for humans, sent with every notification.
    pub summary: Option<String>,
    /// Names of `[[notifier]]` sections; firing and resolution are logged in any case.
    #[serde(default)]
    pub notify: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    ErrorRate,
    LatencyP95,
    LatencyP99,
    DependencyDown,
    CircuitOpen,
    RssAbove,
    StoreDegraded,
}

impl ConditionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ErrorRate => "error_rate",
            Self::LatencyP95 => "latency_p95",
            Self::LatencyP99 => "latency_p99",
            Self::DependencyDown => "dependency_down",
            Self::CircuitOpen => "circuit_open",
            Self::RssAbove => "rss_above",
            Self::StoreDegraded => "store_degraded",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Threshold {
    Number(f64),
    Text(String),
}

/// `[[notifier]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierSection {
    pub name: String,
    pub kind: NotifierKind,
    /// `webhook`: where to POST.
    pub url: Option<String>,
    /// `webhook`: `slack` (`{"text": …}`, also Mattermost, Rocket.Chat…) or `json`.
    pub format: Option<WebhookFormat>,
    /// `email`: `smtp://host:port` (plain), `smtp://host:587?tls=required` (STARTTLS) or
    /// `smtps://user:pass@host:465`; empty writes the message to the log instead.
    pub smtp_url: Option<String>,
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    /// `command`: program and arguments; the alert comes as JSON on stdin and in
    /// `RAMPART_ALERT_*` variables.
    pub command: Option<Vec<String>>,
    /// Time allowed for one delivery (default 10s).
    #[serde(default, deserialize_with = "deserialize_opt_duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    Webhook,
    Email,
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    #[default]
    Slack,
    Json,
}

/// Resolved rules and notifiers.
#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    pub rules: Vec<AlertRule>,
    pub notifiers: Vec<Notifier>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub condition: Condition,
    pub for_: Duration,
    pub repeat_interval: Duration,
    pub severity: String,
    pub summary: Option<String>,
    /// Indices into [`AlertsConfig::notifiers`].
    pub notify: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// 5xx share of responses above `above` (0..1).
    ErrorRate {
        above: f64,
        window: Duration,
        min_requests: u64,
    },
    /// The quantile (0.95 or 0.99) of request durations above `above`.
    Latency {
        quantile: Quantile,
        above: Duration,
        window: Duration,
        min_requests: u64,
    },
    DependencyDown {
        dependency: Option<String>,
    },
    CircuitOpen {
        upstream: Option<String>,
    },
    RssAbove {
        bytes: u64,
    },
    StoreDegraded {
        store: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantile {
    P95,
    P99,
}

#[derive(Debug, Clone)]
pub struct Notifier {
    pub name: String,
    pub timeout: Duration,
    pub target: NotifierTarget,
}

#[derive(Debug, Clone)]
pub enum NotifierTarget {
    Webhook {
        url: reqwest::Url,
        format: WebhookFormat,
    },
    Email {
        /// `None`: SMTP not configured; the message is logged.
        smtp_url: Option<String>,
        from: lettre::message::Mailbox,
        to: Vec<lettre::message::Mailbox>,
    },
    Command {
        program: String,
        args: Vec<String>,
    },
}

const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
const DEFAULT_REPEAT: Duration = Duration::from_secs(3600);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Validates `[[notifier]]` then `[[alert]]`; `upstreams` are the configured upstream names.
pub fn resolve(
    alerts: &[AlertSection],
    notifiers: &[NotifierSection],
    upstreams: &[&str],
    root: &KeyPath,
    problems: &mut Problems,
) -> AlertsConfig {
    let mut resolved = AlertsConfig::default();
    let mut notifier_index: HashMap<&str, usize> = HashMap::new();
    for (i, section) in notifiers.iter().enumerate() {
        let path = root.key("notifier").index(i);
        if notifier_index.insert(section.name.as_str(), i).is_some() {
            problems.push((
                path.key("name"),
                format!("notifier {:?} is defined twice", section.name),
            ));
        }
        if let Some(target) = notifier_target(section, &path, problems) {
            resolved.notifiers.push(Notifier {
                name: section.name.clone(),
                timeout: section.timeout.unwrap_or(DEFAULT_TIMEOUT),
                target,
            });
        }
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, section) in alerts.iter().enumerate() {
        let path = root.key("alert").index(i);
        if section.name.trim().is_empty() {
            problems.push((path.key("name"), "expected a name".into()));
        }
        if names.insert(section.name.as_str(), i).is_some() {
            problems.push((
                path.key("name"),
                format!("alert {:?} is defined twice", section.name),
            ));
        }
        let notify: Vec<usize> = section
            .notify
            .iter()
            .enumerate()
            .filter_map(|(j, name)| match notifier_index.get(name.as_str()) {
                Some(&index) => Some(index),
                None => {
                    problems.push((
                        path.key("notify").index(j),
                        format!("expected the name of a [[notifier]], got {name:?}"),
                    ));
                    None
                }
            })
            .collect();
        let Some(condition) = condition(section, upstreams, &path, problems) else {
            continue;
        };
        let repeat_interval = section.repeat_interval.unwrap_or(DEFAULT_REPEAT);
        if repeat_interval < Duration::from_secs(1) {
            problems.push((path.key("repeat_interval"), "expected at least 1s".into()));
        }
        resolved.rules.push(AlertRule {
            name: section.name.clone(),
            condition,
            for_: section.for_.unwrap_or(Duration::ZERO),
            repeat_interval,
            severity: section
                .severity
                .clone()
                .unwrap_or_else(|| "warning".to_owned()),
            summary: section.summary.clone(),
            notify,
        });
    }
    // Indices were taken before invalid notifiers were dropped; only a valid set is used.
    if resolved.notifiers.len() != notifiers.len() {
        resolved.rules.clear();
    }
    resolved
}

fn condition(
    section: &AlertSection,
    upstreams: &[&str],
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<Condition> {
    let kind = section.condition;
    let unused = |key: &str, present: bool, problems: &mut Problems| {
        if present {
            problems.push((
                path.key(key),
                format!("`{key}` does not apply to condition {:?}", kind.as_str()),
            ));
        }
    };
    let windowed = matches!(
        kind,
        ConditionKind::ErrorRate | ConditionKind::LatencyP95 | ConditionKind::LatencyP99
    );
    if !windowed {
        unused("window", section.window.is_some(), problems);
        unused("min_requests", section.min_requests.is_some(), problems);
    }
    if kind != ConditionKind::DependencyDown {
        unused("dependency", section.dependency.is_some(), problems);
    }
    if kind != ConditionKind::CircuitOpen {
        unused("upstream", section.upstream.is_some(), problems);
    }
    if kind != ConditionKind::StoreDegraded {
        unused("store", section.store.is_some(), problems);
    }
    let needs_threshold = windowed || kind == ConditionKind::RssAbove;
    if !needs_threshold {
        unused("threshold", section.threshold.is_some(), problems);
    }
    let threshold = if needs_threshold {
        match &section.threshold {
            Some(threshold) => Some(threshold),
            None => {
                problems.push((
                    path.key("threshold"),
                    format!("condition {:?} needs a threshold", kind.as_str()),
                ));
                return None;
            }
        }
    } else {
        None
    };
    let window = section.window.unwrap_or(DEFAULT_WINDOW);
    if windowed && !(Duration::from_secs(1)..=crate::observe::window::MAX_SPAN).contains(&window) {
        problems.push((
            path.key("window"),
            format!(
                "expected 1s to 15m, got {}",
                humantime::format_duration(window)
            ),
        ));
    }
    let min_requests = section.min_requests.unwrap_or(1).max(1);
    let threshold_path = path.key("threshold");
    Some(match kind {
        ConditionKind::ErrorRate => Condition::ErrorRate {
            above: fraction(threshold?, &threshold_path, problems)?,
            window,
            min_requests,
        },
        ConditionKind::LatencyP95 | ConditionKind::LatencyP99 => Condition::Latency {
            quantile: if kind == ConditionKind::LatencyP95 {
                Quantile::P95
            } else {
                Quantile::P99
            },
            above: duration(threshold?, &threshold_path, problems)?,
            window,
            min_requests,
        },
        ConditionKind::RssAbove => Condition::RssAbove {
            bytes: size(threshold?, &threshold_path, problems)?,
        },
        ConditionKind::DependencyDown => {
            if let Some(name) = &section.dependency
                && !upstreams.contains(&name.as_str())
                && !["redis", "postgres"].contains(&name.as_str())
            {
                problems.push((
                    path.key("dependency"),
                    format!("expected an upstream name, \"redis\" or \"postgres\", got {name:?}"),
                ));
            }
            Condition::DependencyDown {
                dependency: section.dependency.clone(),
            }
        }
        ConditionKind::CircuitOpen => {
            if let Some(name) = &section.upstream
                && !upstreams.contains(&name.as_str())
            {
                problems.push((
                    path.key("upstream"),
                    format!("expected the name of an [[upstream]], got {name:?}"),
                ));
            }
            Condition::CircuitOpen {
                upstream: section.upstream.clone(),
            }
        }
        ConditionKind::StoreDegraded => {
            if let Some(name) = &section.store
                && !["redis", "postgres"].contains(&name.as_str())
            {
                problems.push((
                    path.key("store"),
                    format!("expected \"redis\" or \"postgres\", got {name:?}"),
                ));
            }
            Condition::StoreDegraded {
                store: section.store.clone(),
            }
        }
    })
}

fn fraction(threshold: &Threshold, path: &KeyPath, problems: &mut Problems) -> Option<f64> {
    let value = match threshold {
        Threshold::Number(n) => Some(*n),
        Threshold::Text(text) => text
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map(|n| n / 100.0),
    };
    match value {
        Some(v) if (0.0..1.0).contains(&v) => Some(v),
        _ => {
            problems.push((
                path.clone(),
                "expected an error rate such as \"5%\" or 0.05 (below 100%)".into(),
            ));
            None
        }
    }
}

fn duration(threshold: &Threshold, path: &KeyPath, problems: &mut Problems) -> Option<Duration> {
    match threshold {
        Threshold::Text(text) => match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => Some(d),
            _ => {
                problems.push((
                    path.clone(),
                    format!("expected a latency such as \"1s\" or \"500ms\", got {text:?}"),
                ));
                None
            }
        },
        Threshold::Number(n) => {
            problems.push((
                path.clone(),
                format!("expected a latency with its unit such as \"1s\" or \"500ms\", got {n}"),
            ));
            None
        }
    }
}

fn size(threshold: &Threshold, path: &KeyPath, problems: &mut Problems) -> Option<u64> {
    let value = match threshold {
        Threshold::Text(text) => ByteSize::parse(text),
        Threshold::Number(n) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as u64),
        Threshold::Number(_) => None,
    };
    match value {
        Some(bytes) if bytes > 0 => Some(bytes),
        _ => {
            problems.push((
                path.clone(),
                "expected a memory size such as \"512MiB\"".into(),
            ));
            None
        }
    }
}

fn notifier_target(
    section: &NotifierSection,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<NotifierTarget> {
    let kind = section.kind;
    let mut unused = |key: &str, present: bool| {
        if present {
            problems.push((
                path.key(key),
                format!("`{key}` does not apply to a {kind:?} notifier").to_lowercase(),
            ));
        }
    };
    if kind != NotifierKind::Webhook {
        unused("url", section.url.is_some());
        unused("format", section.format.is_some());
    }
    if kind != NotifierKind::Email {
        unused("smtp_url", section.smtp_url.is_some());
        unused("from", section.from.is_some());
        unused("to", !section.to.is_empty());
    }
    if kind != NotifierKind::Command {
        unused("command", section.command.is_some());
    }
    match kind {
        NotifierKind::Webhook => {
            let url = section.url.as_deref().unwrap_or_default().trim();
            match reqwest::Url::parse(url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {
                    Some(NotifierTarget::Webhook {
                        url,
                        format: section.format.unwrap_or_default(),
                    })
                }
                _ => {
                    problems.push((
                        path.key("url"),
                        format!("expected an http:// or https:// URL, got {url:?}"),
                    ));
                    None
                }
            }
        }
        NotifierKind::Email => {
            let smtp_url = section
                .smtp_url
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty());
            if let Some(url) = smtp_url
                && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
            {
                problems.push((
                    path.key("smtp_url"),
                    "expected smtp://host:port, smtp://host:587?tls=required or smtps://host:465 (empty: log instead)".into(),
                ));
            }
            let mailbox = |text: &str, key: KeyPath, problems: &mut Problems| {
                match text.parse::<lettre::message::Mailbox>() {
                    Ok(mailbox) => Some(mailbox),
                    Err(_) => {
                        problems.push((
                        key,
                        format!("expected an address such as \"rampart <alerts@example.com>\", got {text:?}"),
                    ));
                        None
                    }
                }
            };
            let from = mailbox(
                section.from.as_deref().unwrap_or_default(),
                path.key("from"),
                problems,
            );
            if section.to.is_empty() {
                problems.push((path.key("to"), "expected at least one address".into()));
            }
            let to: Vec<_> = section
                .to
                .iter()
                .enumerate()
                .filter_map(|(i, t)| mailbox(t, path.key("to").index(i), problems))
                .collect();
            Some(NotifierTarget::Email {
                smtp_url: smtp_url.map(str::to_owned),
                from: from?,
                to,
            })
        }
        NotifierKind::Command => match section.command.as_deref() {
            Some([program, args @ ..]) if !program.trim().is_empty() => {
                Some(NotifierTarget::Command {
                    program: program.clone(),
                    args: args.to_vec(),
                })
            }
            _ => {
                problems.push((
                    path.key("command"),
                    "expected a program and its arguments, such as [\"/usr/local/bin/page\", \"--urgent\"]".into(),
                ));
                None
            }
        },
    }
}
