//! [`Detector`]: settings validation, exclusions, and the collector that turns rule hits on each
//! inspected value into [`Match`]es and the request's score.

use super::engine::Engine;
use super::rules::{RULES, Rule};
use super::{Category, DetectorSettings, Inspection, Match, Verdict, body, decode, request};

/// The compiled detector: built once from settings, shared read-only (`Send + Sync`).
pub struct Detector {
    engine: Engine,
    /// Path prefixes without a trailing `/` (`/` itself is kept as `/`).
    exclude_paths: Vec<String>,
    exclude_params: Vec<String>,
}

impl Detector {
    /// Compiles the rules minus the disabled ones. `Err` names the bad setting and value.
    pub fn new(settings: &DetectorSettings) -> Result<Detector, String> {
        for name in &settings.disabled_rules {
            let known = Category::ALL.iter().any(|c| c.as_str() == name)
                || RULES.iter().any(|r| r.id == name);
            if !known {
                return Err(format!(
                    "disabled_rules: unknown rule or category {name:?} (categories: sqli, xss, traversal, cmdi, scanner)"
                ));
            }
        }
        let mut exclude_paths = Vec::new();
        for path in &settings.exclude_paths {
            if !path.starts_with('/') {
                return Err(format!(
                    "exclude_paths: {path:?} must be a path prefix starting with '/'"
                ));
            }
            let trimmed = path.trim_end_matches('/');
            exclude_paths.push(if trimmed.is_empty() { "/" } else { trimmed }.to_string());
        }
        let mut exclude_params = Vec::new();
        for name in &settings.exclude_params {
            if name.trim().is_empty() {
                return Err("exclude_params: names must not be empty".to_string());
            }
            exclude_params.push(name.to_ascii_lowercase());
        }
        let disabled = |r: &Rule| {
            settings
                .disabled_rules
                .iter()
                .any(|d| d == r.id || d == r.category.as_str())
        };
        let engine = Engine::new(RULES.iter().filter(|r| !disabled(r)))?;
        Ok(Detector {
            engine,
            exclude_paths,
            exclude_params,
        })
    }

    /// Inspects one request. Never panics; a request with nothing suspicious costs no
    /// allocation beyond what its encodings need.
    pub fn inspect(&self, request: &Inspection<'_>) -> Verdict {
        if self.path_excluded(request.path) {
            return Verdict::default();
        }
        let mut c = Collector::new(self);
        request::inspect_path(request.path, &mut c);
        if let Some(query) = request.query {
            request::inspect_query(query, &mut c);
        }
        request::inspect_headers(request.headers, &mut c);
        if let Some(b) = request.body {
            body::inspect(b, request.content_type, &mut c);
        }
        Verdict {
            score: c.score,
            matches: c.matches,
        }
    }

    /// Whether `name` (a parameter, field, cookie or header name) is excluded.
    pub(crate) fn param_excluded(&self, name: &str) -> bool {
        self.exclude_params
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name))
    }

    fn path_excluded(&self, raw: &str) -> bool {
        if self.exclude_paths.is_empty() {
            return false;
        }
        let mut path = decode::percent_decode(raw, false);
        for _ in 0..2 {
            match decode::percent_decode(&path, false) {
                std::borrow::Cow::Owned(p) => path = std::borrow::Cow::Owned(p),
                std::borrow::Cow::Borrowed(_) => break,
            }
        }
        let tricky = path.contains("//")
            || path.contains('\\')
            || path.contains('\0')
            || path
                .split('/')
                .any(|seg| seg == "." || seg == ".." || seg.starts_with("..;"));
        if tricky {
            return false;
        }
        self.exclude_paths.iter().any(|prefix| {
            prefix == "/"
                || path
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// Gathers the hits of one request.
pub(crate) struct Collector<'d> {
    pub detector: &'d Detector,
    pub matches: Vec<Match>,
    pub score: u32,
    /// Reused for each value's lowercased text.
    scratch: String,
}

impl<'d> Collector<'d> {
    fn new(detector: &'d Detector) -> Collector<'d> {
        Collector {
            detector,
            matches: Vec::new(),
            score: 0,
            scratch: String::new(),
        }
    }

    /// Decodes (`rounds` URL-decoding rounds) and scans one value; `location` is only built
    /// when a rule fires.
    pub(crate) fn value(
        &mut self,
        raw: &str,
        rounds: u8,
        scope: u8,
        location: impl FnOnce() -> String,
    ) {
        let normalized = decode::normalize(raw, rounds);
        let mut hits: Vec<(&'static Rule, u32)> = Vec::new();
        self.detector
            .engine
            .scan(&normalized, scope, &mut self.scratch, |rule, score| {
                hits.push((rule, score))
            });
        if hits.is_empty() {
            return;
        }
        let location = location();
        let mut sum = 0u32;
        for (rule, score) in hits {
            sum = sum.saturating_add(score);
            self.matches.push(Match {
                rule: rule.id,
                category: rule.category,
                location: location.clone(),
                score,
            });
        }
        self.score = self.score.max(sum);
    }

    pub(crate) fn excluded(&self, name: &str) -> bool {
        self.detector.param_excluded(name)
    }
}

/// A name made safe for a location: at most 64 characters, control characters and quotes
/// escaped.
pub(crate) fn label(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(64));
    for c in name.chars().take(64) {
        if c.is_control() || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
