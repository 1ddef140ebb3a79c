//! Security response headers (helmet's production set by default) and the upstream headers that
//! must not leak (`Server`, `X-Powered-By`).
//!
//! Settings merge in three layers: helmet's defaults ← the top-level `[security_headers]` ← a
//! route's `[route.security_headers]`, field by field; the CSP merges directive by directive. An
//! empty string turns one header off; `enabled = false` turns the whole set off. The result is
//! built once per config into a [`HeaderSet`], and applying it costs a few header inserts.

use std::collections::BTreeMap;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

/// `[security_headers]` and `[route.security_headers]`: every field optional so that a route can
/// override one header and inherit the rest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersSettings {
    pub enabled: Option<bool>,
    /// Content-Security-Policy by directive: `default-src = ["'self'"]`; an empty list writes the
    /// directive bare (`upgrade-insecure-requests`); setting a directive replaces the inherited one.
    pub content_security_policy: Option<BTreeMap<String, Vec<String>>>,
    /// Send the CSP as `Content-Security-Policy-Report-Only` instead.
    pub csp_report_only: Option<bool>,
    pub strict_transport_security: Option<String>,
    pub x_frame_options: Option<String>,
    pub x_content_type_options: Option<String>,
    pub referrer_policy: Option<String>,
    pub permissions_policy: Option<String>,
    pub cross_origin_opener_policy: Option<String>,
    pub cross_origin_resource_policy: Option<String>,
    pub origin_agent_cluster: Option<String>,
    pub x_dns_prefetch_control: Option<String>,
    pub x_download_options: Option<String>,
    pub x_permitted_cross_domain_policies: Option<String>,
    pub x_xss_protection: Option<String>,
    /// Response headers removed from upstream responses (default `server`, `x-powered-by`).
    pub remove: Option<Vec<String>>,
    /// Extra headers set on every response.
    pub custom: Option<BTreeMap<String, String>>,
}

impl HeadersSettings {
    /// helmet's production defaults, with the stricter choices the seeds ask for (`DENY`,
    /// `strict-origin-when-cross-origin`, HSTS preload, a restrictive Permissions-Policy).
    pub fn helmet() -> Self {
        let csp = [
            ("default-src", vec!["'self'"]),
            ("base-uri", vec!["'self'"]),
            ("font-src", vec!["'self'", "https:", "data:"]),
            ("form-action", vec!["'self'"]),
            ("frame-ancestors", vec!["'self'"]),
            ("img-src", vec!["'self'", "data:"]),
            ("object-src", vec!["'none'"]),
            ("script-src", vec!["'self'"]),
            ("script-src-attr", vec!["'none'"]),
            ("style-src", vec!["'self'", "https:", "'unsafe-inline'"]),
            ("upgrade-insecure-requests", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
        let s = |text: &str| Some(text.to_owned());
        Self {
            enabled: Some(true),
            content_security_policy: Some(csp),
            csp_report_only: Some(false),
            strict_transport_security: s("max-age=31536000; includeSubDomains; preload"),
            x_frame_options: s("DENY"),
            x_content_type_options: s("nosniff"),
            referrer_policy: s("strict-origin-when-cross-origin"),
            permissions_policy: s(
                "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=(), interest-cohort=()",
            ),
            cross_origin_opener_policy: s("same-origin"),
            cross_origin_resource_policy: s("same-origin"),
            origin_agent_cluster: s("?1"),
            x_dns_prefetch_control: s("off"),
            x_download_options: s("noopen"),
            x_permitted_cross_domain_policies: s("none"),
            x_xss_protection: s("0"),
            remove: Some(vec!["server".into(), "x-powered-by".into()]),
            custom: Some(BTreeMap::new()),
        }
    }

    /// `self` with every field `over` sets replaced; CSP directives merge one by one.
    pub fn merged(&self, over: &HeadersSettings) -> HeadersSettings {
        fn pick<T: Clone>(base: &Option<T>, over: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        let csp = match (&self.content_security_policy, &over.content_security_policy) {
            (Some(base), Some(over)) => {
                let mut merged = base.clone();
                merged.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
                Some(merged)
            }
            (base, over) => pick(base, over),
        };
        let custom = match (&self.custom, &over.custom) {
            (Some(base), Some(over)) => {
                let mut merged = base.clone();
                merged.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
                Some(merged)
            }
            (base, over) => pick(base, over),
        };
        HeadersSettings {
            enabled: pick(&self.enabled, &over.enabled),
            content_security_policy: csp,
            csp_report_only: pick(&self.csp_report_only, &over.csp_report_only),
            strict_transport_security: pick(
                &self.strict_transport_security,
                &over.strict_transport_security,
            ),
            x_frame_options: pick(&self.x_frame_options, &over.x_frame_options),
            x_content_type_options: pick(
                &self.x_content_type_options,
                &over.x_content_type_options,
            ),
            referrer_policy: pick(&self.referrer_policy, &over.referrer_policy),
            permissions_policy: pick(&self.permissions_policy, &over.permissions_policy),
            cross_origin_opener_policy: pick(
                &self.cross_origin_opener_policy,
                &over.cross_origin_opener_policy,
            ),
            cross_origin_resource_policy: pick(
                &self.cross_origin_resource_policy,
                &over.cross_origin_resource_policy,
            ),
            origin_agent_cluster: pick(&self.origin_agent_cluster, &over.origin_agent_cluster),
            x_dns_prefetch_control: pick(
                &self.x_dns_prefetch_control,
                &over.x_dns_prefetch_control,
            ),
            x_download_options: pick(&self.x_download_options, &over.x_download_options),
            x_permitted_cross_domain_policies: pick(
                &self.x_permitted_cross_domain_policies,
                &over.x_permitted_cross_domain_policies,
            ),
            x_xss_protection: pick(&self.x_xss_protection, &over.x_xss_protection),
            remove: pick(&self.remove, &over.remove),
            custom,
        }
    }

    /// Builds the header set; `Err((key, message))` names the offending setting.
    pub fn build(&self) -> Result<HeaderSet, (String, String)> {
        let mut set = HeaderSet::default();
        for name in self.remove.iter().flatten() {
            let header = HeaderName::try_from(name.as_str()).map_err(|_| {
                (
                    "remove".to_owned(),
                    format!("expected a header name, got {name:?}"),
                )
            })?;
            set.remove.push(header);
        }
        if self.enabled == Some(false) {
            return Ok(set);
        }
        if let Some(directives) = &self.content_security_policy {
            let policy = directives
                .iter()
                .filter(|(_, sources)| !sources.iter().any(|s| s == "off"))
                .map(|(name, sources)| {
                    if sources.is_empty() {
                        name.clone()
                    } else {
                        format!("{name} {}", sources.join(" "))
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            for (name, sources) in directives {
                let bad = |s: &str| s.is_empty() || s.contains([';', ',', '\n', '\r']);
                if name.is_empty()
                    || !name.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                    || sources.iter().any(|s| bad(s))
                {
                    return Err((
                        format!("content_security_policy.{name}"),
                        "expected a directive name like \"script-src\" with a list of sources without `;` or `,`".into(),
                    ));
                }
            }
            let name = if self.csp_report_only == Some(true) {
                "content-security-policy-report-only"
            } else {
                "content-security-policy"
            };
            set.push(name, "content_security_policy", &policy)?;
        }
        let singles: [(&str, &str, &Option<String>); 12] = [
            (
                "strict-transport-security",
                "strict_transport_security",
                &self.strict_transport_security,
            ),
            ("x-frame-options", "x_frame_options", &self.x_frame_options),
            (
                "x-content-type-options",
                "x_content_type_options",
                &self.x_content_type_options,
            ),
            ("referrer-policy", "referrer_policy", &self.referrer_policy),
            (
                "permissions-policy",
                "permissions_policy",
                &self.permissions_policy,
            ),
            (
                "cross-origin-opener-policy",
                "cross_origin_opener_policy",
                &self.cross_origin_opener_policy,
            ),
            (
                "cross-origin-resource-policy",
                "cross_origin_resource_policy",
                &self.cross_origin_resource_policy,
            ),
            (
                "origin-agent-cluster",
                "origin_agent_cluster",
                &self.origin_agent_cluster,
            ),
            (
                "x-dns-prefetch-control",
                "x_dns_prefetch_control",
                &self.x_dns_prefetch_control,
            ),
            (
                "x-download-options",
                "x_download_options",
                &self.x_download_options,
            ),
            (
                "x-permitted-cross-domain-policies",
                "x_permitted_cross_domain_policies",
                &self.x_permitted_cross_domain_policies,
            ),
            (
                "x-xss-protection",
                "x_xss_protection",
                &self.x_xss_protection,
            ),
        ];
        for (header, key, value) in singles {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                set.push(header, key, value)?;
            }
        }
        for (name, value) in self.custom.iter().flatten() {
            HeaderName::try_from(name.as_str()).map_err(|_| {
                (
                    format!("custom.{name}"),
                    format!("expected a header name, got {name:?}"),
                )
            })?;
            set.push(name, &format!("custom.{name}"), value)?;
        }
        Ok(set)
    }
}

/// Headers to set on, and remove from, every response of a route.
#[derive(Debug, Clone, Default)]
pub struct HeaderSet {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderSet {
    fn push(&mut self, name: &str, key: &str, value: &str) -> Result<(), (String, String)> {
        let name = HeaderName::try_from(name).map_err(|_| {
            (
                key.to_owned(),
                format!("expected a header name, got {name:?}"),
            )
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            (
                key.to_owned(),
                "expected a header value of visible ASCII characters".to_owned(),
            )
        })?;
        self.set.push((name, value));
        Ok(())
    }

    /// Removes the leaking headers and sets the security headers, replacing upstream values.
    pub fn apply(&self, headers: &mut HeaderMap) {
        // Most responses carry none of them: one pass over the names answers that, where a
        // removal per name would hash each one.
        if headers.keys().any(|name| self.remove.contains(name)) {
            for name in &self.remove {
                headers.remove(name);
            }
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// How many headers [`Self::apply`] sets.
    pub fn added(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(over: &str) -> HeaderMap {
        let over: HeadersSettings = toml::from_str(over).unwrap();
        let set = HeadersSettings::helmet().merged(&over).build().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("server", "nginx/1.0".parse().unwrap());
        headers.insert("x-powered-by", "Express".parse().unwrap());
        set.apply(&mut headers);
        headers
    }

    #[test]
    fn helmet_defaults() {
        let headers = built("");
        assert!(headers.get("server").is_none());
        assert!(headers.get("x-powered-by").is_none());
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(
            headers["strict-transport-security"],
            "max-age=31536000; includeSubDomains; preload"
        );
        assert_eq!(
            headers["referrer-policy"],
            "strict-origin-when-cross-origin"
        );
        assert_eq!(headers["cross-origin-opener-policy"], "same-origin");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(csp.contains("upgrade-insecure-requests"), "{csp}");
        assert!(
            headers["permissions-policy"]
                .to_str()
                .unwrap()
                .contains("camera=()")
        );
    }

    #[test]
    fn overrides_merge_by_field_and_directive() {
        let headers = built(
            r#"
            x_frame_options = "SAMEORIGIN"
            strict_transport_security = ""
            [content_security_policy]
            connect-src = ["'self'", "https://api.openai.com"]
            upgrade-insecure-requests = ["off"]
            "#,
        );
        assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
        assert!(headers.get("strict-transport-security").is_none());
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("connect-src 'self' https://api.openai.com"),
            "{csp}"
        );
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(!csp.contains("upgrade-insecure-requests"), "{csp}");
    }

    #[test]
    fn csp_can_be_report_only() {
        let headers = built("csp_report_only = true");
        assert!(headers.get("content-security-policy").is_none());
        let csp = headers["content-security-policy-report-only"]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
    }

    #[test]
    fn disabled_still_removes_leaks() {
        let headers = built("enabled = false");
        assert!(headers.get("server").is_none());
        assert!(headers.get("x-frame-options").is_none());
    }

    #[test]
    fn removes_each_leak_alone_and_every_value_of_it() {
        let over: HeadersSettings = toml::from_str("enabled = false").unwrap();
        let set = HeadersSettings::helmet().merged(&over).build().unwrap();
        let mut only_powered_by = HeaderMap::new();
        only_powered_by.insert("content-type", "text/plain".parse().unwrap());
        only_powered_by.append("x-powered-by", "Express".parse().unwrap());
        only_powered_by.append("x-powered-by", "PHP".parse().unwrap());
        set.apply(&mut only_powered_by);
        assert!(only_powered_by.get("x-powered-by").is_none());
        assert_eq!(only_powered_by.len(), 1);

        let mut clean = HeaderMap::new();
        clean.insert("content-type", "text/plain".parse().unwrap());
        clean.insert("content-length", "2".parse().unwrap());
        set.apply(&mut clean);
        assert_eq!(clean.len(), 2);
    }

    #[test]
    fn bad_values_name_their_key() {
        let over: HeadersSettings = toml::from_str("x_frame_options = \"a\\nb\"").unwrap();
        let error = HeadersSettings::helmet().merged(&over).build().unwrap_err();
        assert_eq!(error.0, "x_frame_options");
        let over: HeadersSettings =
            toml::from_str("[content_security_policy]\n\"script-src\" = [\"a;b\"]").unwrap();
        let error = HeadersSettings::helmet().merged(&over).build().unwrap_err();
        assert_eq!(error.0, "content_security_policy.script-src");
    }
}
