//! API keys: the presented key's SHA-256 is compared in constant time with every configured
//! digest (no early exit). Keys come from the settings' `keys` and an optional `keys_file`:
//!
//! ```toml
//! # keys.toml — the same entries as the inline `keys`
//! [[keys]]
//! name = "ci"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # any case
//! scopes = ["read"]
//! ```
//!
//! A digest is made with `printf %s "$KEY" | sha256sum`.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::failure::AuthFailure;
use super::identity::{ForwardRule, Identity, forward_headers, parse_forward};
use super::settings::{ApiKeyEntry, ApiKeySettings, ApiKeysFile, Problems, check_name};
use super::token;

/// Presented keys longer than this are refused without hashing.
const MAX_KEY_BYTES: usize = 4096;

pub(crate) struct PreparedApiKeys {
    header: Option<HeaderName>,
    query: Option<String>,
    keys: Vec<([u8; 32], ApiKeyEntry)>,
    pub(crate) forward: Vec<ForwardRule>,
}

/// Checks `settings` and reads `keys_file`; every problem at once.
pub(crate) fn prepare(s: &ApiKeySettings, base_dir: &Path) -> Result<PreparedApiKeys, Problems> {
    let mut problems = Problems::new();
    check_name(&s.name, &mut problems);
    let header = s
        .header
        .as_ref()
        .and_then(|h| match HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                problems.push(("header".into(), format!("`{h}` is not a valid header name")));
                None
            }
        });
    if s.query.as_ref().is_some_and(|q| q.is_empty()) {
        problems.push(("query".into(), "expected a query parameter name".into()));
    }
    if s.header.is_none() && s.query.is_none() {
        problems.push((
            "header".into(),
            "expected `header` (such as \"x-api-key\") or `query` (such as \"api_key\"), or both"
                .into(),
        ));
    }

    let mut keys: Vec<([u8; 32], ApiKeyEntry)> = Vec::new();
    let mut add = |key: String, entry: &ApiKeyEntry, problems: &mut Problems| {
        if entry.name.trim().is_empty() {
            problems.push((
                format!("{key}.name"),
                "expected a non-empty key name".into(),
            ));
        } else if keys.iter().any(|(_, e)| e.name == entry.name) {
            problems.push((
                format!("{key}.name"),
                format!("duplicate key name `{}`", entry.name),
            ));
        }
        if entry.scopes.iter().any(|s| s.is_empty()) {
            problems.push((format!("{key}.scopes"), "expected non-empty scopes".into()));
        }
        match parse_hex_digest(&entry.sha256) {
            None => problems.push((
                format!("{key}.sha256"),
                "expected the key's SHA-256 as 64 hex digits".into(),
            )),
            Some(digest) if keys.iter().any(|(d, _)| *d == digest) => problems.push((
                format!("{key}.sha256"),
                "the same key is listed twice".into(),
            )),
            Some(digest) => keys.push((digest, entry.clone())),
        }
    };
    for (i, entry) in s.keys.iter().enumerate() {
        add(format!("keys[{i}]"), entry, &mut problems);
    }
    if let Some(file) = &s.keys_file {
        let path = base_dir.join(file);
        match std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| {
                toml::from_str::<ApiKeysFile>(&text).map_err(|e| {
                    format!(
                        "{}: expected [[keys]] tables with name, sha256 and scopes: {e}",
                        path.display()
                    )
                })
            }) {
            Ok(parsed) => {
                let mut file_problems = Problems::new();
                for (i, entry) in parsed.keys.iter().enumerate() {
                    add(format!("keys[{i}]"), entry, &mut file_problems);
                }
                problems.extend(file_problems.into_iter().map(|(key, message)| {
                    (
                        "keys_file".to_owned(),
                        format!("{}: {key}: {message}", path.display()),
                    )
                }));
            }
            Err(message) => problems.push(("keys_file".into(), message)),
        }
    }
    if keys.is_empty() && !problems.iter().any(|(k, _)| k.starts_with("keys")) {
        problems.push((
            "keys".into(),
            "expected at least one key in `keys` or `keys_file`".into(),
        ));
    }

    let mut denied = Vec::new();
    if let Some(header) = &header {
        denied.push(header.as_str());
    }
    let forward = parse_forward(&s.forward, &denied, &mut problems);
    if problems.is_empty() {
        Ok(PreparedApiKeys {
            header,
            query: s.query.clone(),
            keys,
            forward,
        })
    } else {
        Err(problems)
    }
}

fn parse_hex_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *byte = (hi * 16 + lo) as u8;
    }
    Some(out)
}

struct StoredKey {
    digest: [u8; 32],
    subject: String,
    claims: Value,
    forward: Vec<(HeaderName, HeaderValue)>,
}

pub(crate) struct ApiKeyVerifier {
    pub(crate) forward_names: Vec<HeaderName>,
    header: Option<HeaderName>,
    query: Option<String>,
    keys: Vec<StoredKey>,
}

impl ApiKeyVerifier {
    pub(crate) fn new(prepared: PreparedApiKeys) -> Self {
        let keys = prepared
            .keys
            .into_iter()
            .map(|(digest, entry)| {
                let claims = json!({ "name": entry.name, "scopes": entry.scopes });
                let forward = forward_headers(&prepared.forward, &claims);
                StoredKey {
                    digest,
                    subject: entry.name,
                    claims,
                    forward,
                }
            })
            .collect();
        ApiKeyVerifier {
            forward_names: prepared.forward.iter().map(|r| r.header.clone()).collect(),
            header: prepared.header,
            query: prepared.query,
            keys,
        }
    }

    pub(crate) fn query_param(&self) -> Option<&str> {
        self.query.as_deref()
    }

    pub(crate) fn authenticate(
        &self,
        provider: &Arc<str>,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Identity, AuthFailure> {
        let presented =
            token::api_key(self.header.as_ref(), self.query.as_deref(), headers, query)?;
        if presented.len() > MAX_KEY_BYTES {
            return Err(AuthFailure::InvalidApiKey);
        }
        let presented = digest(&SHA256, &presented);
        let mut found = None;
        for key in &self.keys {
            let equal = verify_slices_are_equal(presented.as_ref(), &key.digest).is_ok();
            if equal && found.is_none() {
                found = Some(key);
            }
        }
        let key = found.ok_or(AuthFailure::InvalidApiKey)?;
        Ok(Identity {
            provider: provider.clone(),
            subject: Some(key.subject.clone()),
            api_key: Some(key.subject.clone()),
            claims: key.claims.clone(),
            forward: key.forward.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digests() {
        let lower = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let digest = parse_hex_digest(lower).unwrap();
        assert_eq!(digest[0], 0x9f);
        assert_eq!(parse_hex_digest(&lower.to_uppercase()), Some(digest));
        assert_eq!(parse_hex_digest(&lower[1..]), None);
        assert_eq!(parse_hex_digest(&format!("{}zz", &lower[2..])), None);
        assert_eq!(parse_hex_digest(&format!("é{}", &lower[2..])), None);
    }
}
