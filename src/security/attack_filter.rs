//! The attack filter as configured per route: mode (`block`, `detect`, `off`), score threshold,
//! exclusions, and how much of a body is read for inspection. Wraps the detection engine in
//! [`super::attack`], which knows nothing about config or responses.
//!
//! Settings merge like the security headers: the top-level `[attack_filter]` ← a route's
//! `[route.attack_filter]`, field by field. Without a top-level section the filter is off unless a
//! route turns it on.

use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;

use super::attack::{DEFAULT_THRESHOLD, Detector, DetectorSettings, Inspection, Verdict};
use crate::config::units::ByteSize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterMode {
    /// Refuse with 403 and count a violation towards progressive blocking.
    Block,
    /// Log and count only.
    Detect,
    Off,
}

/// `[attack_filter]` and `[route.attack_filter]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackFilterSettings {
    /// Default `block` once the section exists.
    pub mode: Option<FilterMode>,
    /// Score at which a request counts as an attack (one clear signature reaches the default).
    pub threshold: Option<u32>,
    /// Path prefixes never inspected.
    pub exclude_paths: Option<Vec<String>>,
    /// Parameter, field, cookie or header names whose values are not inspected.
    pub exclude_params: Option<Vec<String>>,
    /// Rule ids or whole categories (`sqli`, `xss`, `traversal`, `cmdi`, `scanner`) to skip.
    pub disabled_rules: Option<Vec<String>>,
    /// Bodies up to this size (JSON, form, multipart, text) are read and inspected; larger
    /// declared bodies stream through with only the head inspected. Default 1 MiB.
    pub inspect_body_bytes: Option<ByteSize>,
}

impl AttackFilterSettings {
    pub fn merged(&self, over: &AttackFilterSettings) -> AttackFilterSettings {
        AttackFilterSettings {
            mode: over.mode.or(self.mode),
            threshold: over.threshold.or(self.threshold),
            exclude_paths: over
                .exclude_paths
                .clone()
                .or_else(|| self.exclude_paths.clone()),
            exclude_params: over
                .exclude_params
                .clone()
                .or_else(|| self.exclude_params.clone()),
            disabled_rules: over
                .disabled_rules
                .clone()
                .or_else(|| self.disabled_rules.clone()),
            inspect_body_bytes: over.inspect_body_bytes.or(self.inspect_body_bytes),
        }
    }

    fn detector_settings(&self) -> DetectorSettings {
        DetectorSettings {
            exclude_paths: self.exclude_paths.clone().unwrap_or_default(),
            exclude_params: self.exclude_params.clone().unwrap_or_default(),
            disabled_rules: self.disabled_rules.clone().unwrap_or_default(),
        }
    }

    /// Builds the filter (`None` when off), reusing a detector from `cache` when another route
    /// has the same exclusions. `Err((key, message))` names the bad setting.
    pub fn build(
        &self,
        cache: &mut DetectorCache,
    ) -> Result<Option<Arc<AttackFilter>>, (String, String)> {
        let mode = self.mode.unwrap_or(FilterMode::Block);
        if mode == FilterMode::Off {
            return Ok(None);
        }
        let threshold = self.threshold.unwrap_or(DEFAULT_THRESHOLD);
        if threshold == 0 {
            return Err(("threshold".into(), "expected at least 1".into()));
        }
        for (i, prefix) in self.exclude_paths.iter().flatten().enumerate() {
            if !prefix.starts_with('/') {
                return Err((
                    format!("exclude_paths[{i}]"),
                    format!("expected a path starting with `/`, got {prefix:?}"),
                ));
            }
        }
        let settings = self.detector_settings();
        let detector = cache.get(&settings)?;
        Ok(Some(Arc::new(AttackFilter {
            mode,
            threshold,
            detector,
            inspect_body_bytes: self.inspect_body_bytes.map_or(1 << 20, |b| b.0),
        })))
    }
}

/// Detectors already built during one config load, keyed by their settings.
#[derive(Default)]
pub struct DetectorCache {
    built: Vec<(DetectorSettings, Arc<Detector>)>,
}

impl DetectorCache {
    fn get(&mut self, settings: &DetectorSettings) -> Result<Arc<Detector>, (String, String)> {
        let same = |a: &DetectorSettings| {
            a.exclude_paths == settings.exclude_paths
                && a.exclude_params == settings.exclude_params
                && a.disabled_rules == settings.disabled_rules
        };
        if let Some((_, detector)) = self.built.iter().find(|(s, _)| same(s)) {
            return Ok(detector.clone());
        }
        let detector = Arc::new(
            Detector::new(settings).map_err(|message| ("disabled_rules".to_owned(), message))?,
        );
        self.built.push((settings.clone(), detector.clone()));
        Ok(detector)
    }
}

/// A route's built filter.
pub struct AttackFilter {
    pub mode: FilterMode,
    pub threshold: u32,
    detector: Arc<Detector>,
    inspect_body_bytes: u64,
}

impl std::fmt::Debug for AttackFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttackFilter")
            .field("mode", &self.mode)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl AttackFilter {
    /// Whether the body should be read for inspection: a kind of body that can carry payloads,
    /// not declared larger than `inspect_body_bytes`.
    pub fn wants_body(&self, headers: &HeaderMap, declared_length: Option<u64>) -> bool {
        if declared_length.is_some_and(|length| length == 0 || length > self.inspect_body_bytes) {
            return false;
        }
        let Some(content_type) = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        // The media type, compared without allocating: `application/json`, `…+json`, form,
        // multipart, `text/*`, XML.
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .as_bytes();
        let has = |needle: &[u8]| {
            media
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle))
        };
        let starts = |prefix: &[u8]| {
            media.len() >= prefix.len() && media[..prefix.len()].eq_ignore_ascii_case(prefix)
        };
        has(b"json")
            || has(b"xml")
            || starts(b"application/x-www-form-urlencoded")
            || starts(b"multipart/form-data")
            || starts(b"text/")
    }

    pub fn inspect(&self, parts: &http::request::Parts, body: Option<&[u8]>) -> Verdict {
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        self.detector.inspect(&Inspection {
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            body,
            content_type,
        })
    }

    /// Whether `verdict` reaches this route's threshold.
    pub fn is_attack(&self, verdict: &Verdict) -> bool {
        verdict.is_attack(self.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_worth_reading() {
        let filter = AttackFilterSettings::default()
            .build(&mut DetectorCache::default())
            .unwrap()
            .expect("block mode by default");
        let with = |content_type: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
            headers
        };
        for inspected in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/xml",
        ] {
            assert!(filter.wants_body(&with(inspected), Some(10)), "{inspected}");
            assert!(
                filter.wants_body(&with(inspected), None),
                "{inspected} chunked"
            );
        }
        for skipped in ["image/png", "application/octet-stream"] {
            assert!(!filter.wants_body(&with(skipped), Some(10)), "{skipped}");
        }
        assert!(
            !filter.wants_body(&HeaderMap::new(), Some(10)),
            "no content type"
        );
        assert!(
            !filter.wants_body(&with("application/json"), Some(0)),
            "empty"
        );
        assert!(
            !filter.wants_body(&with("application/json"), Some((1 << 20) + 1)),
            "over inspect_body_bytes: streamed, head inspected only"
        );
    }
}
