//! Validation of the edge-security sections (`[security_headers]`, `[cors]`, `[ip_rules]`,
//! `[blocking]` and their per-route overrides, `[[route.validate]]`): merges route settings over
//! the top-level ones and builds each policy once, reporting problems with their key paths.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use http::Method;

use super::file::{FileConfig, RouteSection, ValidateSection};
use super::locate::KeyPath;
use super::model::{RouteSecurity, Validation};
use super::validate::Problems;
use crate::security::attack_filter::{AttackFilterSettings, DetectorCache};
use crate::security::headers::{HeaderSet, HeadersSettings};
use crate::security::ip_rules::IpRules;
use crate::security::validation::RequestValidator;

/// helmet's defaults merged with the top-level `[security_headers]`.
pub fn base_headers(file: &FileConfig) -> HeadersSettings {
    match &file.security_headers {
        Some(over) => HeadersSettings::helmet().merged(over),
        None => HeadersSettings::helmet(),
    }
}

/// The header set for responses that match no route.
pub fn default_headers(file: &FileConfig, problems: &mut Problems) -> Arc<HeaderSet> {
    match base_headers(file).build() {
        Ok(set) => Arc::new(set),
        Err((key, message)) => {
            problems.push((KeyPath::root().key("security_headers").join(&key), message));
            Arc::new(HeaderSet::default())
        }
    }
}

/// Top-level checks that do not depend on a route.
pub fn check_top_level(file: &FileConfig, base_dir: &Path, problems: &mut Problems) {
    let root = KeyPath::root();
    check_auth(file, base_dir, problems);
    if let Some(cors) = &file.cors
        && let Err((key, message)) = cors.build()
    {
        problems.push((root.key("cors").join(&key), message));
    }
    if let Some(rules) = &file.ip_rules
        && let Err((key, message)) = rules.build()
    {
        problems.push((root.key("ip_rules").join(&key), message));
    }
    if let Some(blocking) = &file.blocking
        && let Err((key, message)) = blocking.check()
    {
        problems.push((root.key("blocking").join(&key), message));
    }
}

/// `[[auth]]`: names unique, each provider's own checks, and no provider forwarding an identity
/// into a header another provider reads credentials from.
fn check_auth(file: &FileConfig, base_dir: &Path, problems: &mut Problems) {
    let mut names = std::collections::HashMap::new();
    let credential_headers: Vec<(usize, String)> = file
        .auth
        .iter()
        .enumerate()
        .filter_map(|(i, settings)| {
            let header = match settings {
                crate::security::auth::AuthSettings::Jwt(jwt) => Some(jwt.token_header.clone()),
                crate::security::auth::AuthSettings::ApiKey(key) => key.header.clone(),
            };
            header.map(|h| (i, h.to_ascii_lowercase()))
        })
        .collect();
    for (i, settings) in file.auth.iter().enumerate() {
        let path = KeyPath::root().key("auth").index(i);
        let name = settings.name();
        if let Some(first) = names.insert(name, i) {
            problems.push((
                path.key("name"),
                format!("duplicate auth name `{name}` (first defined at auth[{first}])"),
            ));
        }
        if name == "none" {
            problems.push((
                path.key("name"),
                "`none` is reserved (routes write auth = \"none\" for no authentication)".into(),
            ));
        }
        for (key, message) in settings.validate(base_dir) {
            problems.push((path.join(&key), message));
        }
        for header in settings.forward().keys() {
            let lower = header.to_ascii_lowercase();
            if let Some((j, _)) = credential_headers
                .iter()
                .find(|(j, h)| *j != i && *h == lower)
            {
                problems.push((
                    path.key("forward").key(header),
                    format!("`{header}` is where auth[{j}] reads credentials; identity headers are removed from every request, so pick another name"),
                ));
            }
        }
    }
}

/// Builds one route's policies; `path` is `route[i]`.
pub fn route_security(
    file: &FileConfig,
    section: &RouteSection,
    path: &KeyPath,
    base_dir: &Path,
    detectors: &mut DetectorCache,
    problems: &mut Problems,
) -> RouteSecurity {
    let headers = {
        let base = base_headers(file);
        let (merged, at) = match &section.security_headers {
            Some(over) => (base.merged(over), path.key("security_headers")),
            None => (base, KeyPath::root().key("security_headers")),
        };
        merged.build().unwrap_or_else(|(key, message)| {
            problems.push((at.join(&key), message));
            HeaderSet::default()
        })
    };
    let (cors, cors_path) = match &section.cors {
        Some(cors) => (Some(cors), path.key("cors")),
        None => (file.cors.as_ref(), KeyPath::root().key("cors")),
    };
    let cors = cors.and_then(|settings| match settings.build() {
        Ok(policy) => policy.map(Arc::new),
        Err((key, message)) => {
            // The top-level section is reported once by `check_top_level`.
            if section.cors.is_some() {
                problems.push((cors_path.join(&key), message));
            }
            None
        }
    });
    let ip_rules = match &section.ip_rules {
        Some(rules) => rules.build().unwrap_or_else(|(key, message)| {
            problems.push((path.key("ip_rules").join(&key), message));
            IpRules::default()
        }),
        None => file
            .ip_rules
            .as_ref()
            .and_then(|rules| rules.build().ok())
            .unwrap_or_default(),
    };
    let validations = section
        .validations
        .iter()
        .enumerate()
        .filter_map(|(i, v)| validation(v, &path.key("validate").index(i), base_dir, problems))
        .collect();
    let attack_filter = {
        let base = file.attack_filter.clone().unwrap_or(AttackFilterSettings {
            mode: Some(crate::security::attack_filter::FilterMode::Off),
            ..Default::default()
        });
        let (merged, at) = match &section.attack_filter {
            Some(over) => {
                // A route section turns the filter on even without a top-level one.
                let base = match &file.attack_filter {
                    Some(_) => base,
                    None => AttackFilterSettings::default(),
                };
                (base.merged(over), path.key("attack_filter"))
            }
            None => (base, KeyPath::root().key("attack_filter")),
        };
        merged.build(detectors).unwrap_or_else(|(key, message)| {
            problems.push((at.join(&key), message));
            None
        })
    };
    let auth_names = section.auth.as_ref().map(|a| a.names()).unwrap_or_default();
    let auth = auth_names
        .iter()
        .enumerate()
        .filter_map(|(n, name)| {
            let found = file.auth.iter().position(|a| a.name() == *name);
            if found.is_none() {
                let known: Vec<String> = file
                    .auth
                    .iter()
                    .map(|a| format!("`{}`", a.name()))
                    .collect();
                let key = match section.auth {
                    Some(super::file::AuthRef::Many(_)) => path.key("auth").index(n),
                    _ => path.key("auth"),
                };
                problems.push((
                    key,
                    if known.is_empty() {
                        format!("unknown auth provider `{name}`: no [[auth]] is defined")
                    } else {
                        format!(
                            "unknown auth provider `{name}`: expected \"none\" or one of {}",
                            known.join(", ")
                        )
                    },
                ));
            }
            found
        })
        .collect::<Vec<_>>();
    if section.auth_optional && auth_names.is_empty() {
        problems.push((
            path.key("auth_optional"),
            "auth_optional needs `auth` on this route".into(),
        ));
    }
    if let Some(rules) = &section.require {
        if auth_names.is_empty() {
            problems.push((
                path.key("require"),
                "claim rules need an authenticated identity: set `auth` on this route".into(),
            ));
        }
        if section.auth_optional {
            problems.push((
                path.key("auth_optional"),
                "claim rules need an identity; they cannot be combined with auth_optional".into(),
            ));
        }
        for (key, message) in rules.validate() {
            problems.push((path.key("require").join(&key), message));
        }
    }
    RouteSecurity {
        headers: Arc::new(headers),
        cors,
        ip_rules: Arc::new(ip_rules),
        csrf: section.csrf.unwrap_or_else(|| {
            auth.iter().any(|&i| {
                matches!(&file.auth[i], crate::security::auth::AuthSettings::Jwt(jwt) if jwt.cookie.is_some())
            })
        }),
        validations,
        attack_filter,
        auth,
        auth_optional: section.auth_optional,
        require: section.require.clone(),
    }
}

fn validation(
    section: &ValidateSection,
    path: &KeyPath,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<Validation> {
    let before = problems.len();
    let methods = section.methods.as_ref().map(|methods| {
        methods
            .iter()
            .enumerate()
            .filter_map(
                |(i, text)| match Method::from_str(&text.to_ascii_uppercase()) {
                    Ok(method) => Some(method),
                    Err(_) => {
                        problems.push((
                            path.key("methods").index(i),
                            format!("expected an HTTP method such as \"POST\", got {text:?}"),
                        ));
                        None
                    }
                },
            )
            .collect::<Vec<_>>()
    });
    let body = schema(
        &section.body_schema,
        &section.body_schema_file,
        path,
        "body_schema",
        base_dir,
        problems,
    );
    let query = schema(
        &section.query_schema,
        &section.query_schema_file,
        path,
        "query_schema",
        base_dir,
        problems,
    );
    if body.is_none() && query.is_none() && problems.len() == before {
        problems.push((
            path.clone(),
            "expected `body_schema`, `body_schema_file`, `query_schema` or `query_schema_file`"
                .into(),
        ));
    }
    if problems.len() > before {
        return None;
    }
    match RequestValidator::new(body.as_ref(), query.as_ref()) {
        Ok(validator) => Some(Validation {
            methods,
            validator: Arc::new(validator),
        }),
        Err(message) => {
            let key = if message.starts_with("query") {
                "query_schema"
            } else {
                "body_schema"
            };
            problems.push((path.key(key), message));
            None
        }
    }
}

/// An inline schema or one read from a JSON file.
fn schema(
    inline: &Option<serde_json::Value>,
    file: &Option<String>,
    path: &KeyPath,
    key: &str,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<serde_json::Value> {
    let file_key = format!("{key}_file");
    match (inline, file) {
        (Some(_), Some(_)) => {
            problems.push((
                path.key(&file_key),
                format!("set either `{key}` or `{file_key}`, not both"),
            ));
            None
        }
        (Some(inline), None) => Some(inline.clone()),
        (None, Some(name)) => {
            let full = base_dir.join(name);
            let text = match std::fs::read_to_string(&full) {
                Ok(text) => text,
                Err(error) => {
                    problems.push((
                        path.key(&file_key),
                        format!("cannot read {}: {error}", full.display()),
                    ));
                    return None;
                }
            };
            match serde_json::from_str(&text) {
                Ok(value) => Some(value),
                Err(error) => {
                    problems.push((
                        path.key(&file_key),
                        format!("{} is not valid JSON: {error}", full.display()),
                    ));
                    None
                }
            }
        }
        (None, None) => None,
    }
}
