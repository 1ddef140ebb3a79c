//! IP allow and deny lists (CIDR, IPv4 and IPv6), checked on the client address after trusted
//! proxies. `allow` is the allowlist: those addresses pass `deny` and are never blocked; with
//! `allow_only = true` every other address is refused (Kong's allow mode).

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;

/// `[ip_rules]` (every route) or `[route.ip_rules]` (replaces it for that route).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRulesSettings {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub allow_only: bool,
}

/// The built lists.
#[derive(Debug, Clone, Default)]
pub struct IpRules {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    allow_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVerdict {
    /// On the allowlist: let through, never block.
    Allowlisted,
    /// On no list.
    Neutral,
    /// Refused by `deny` or by `allow_only`.
    Denied,
}

/// An address or CIDR (`10.0.0.0/8`, `::1`, `2001:db8::/32`).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    IpNet::from_str(text)
        .ok()
        .or_else(|| IpAddr::from_str(text).ok().map(IpNet::from))
}

impl IpRulesSettings {
    pub fn build(&self) -> Result<IpRules, (String, String)> {
        let list = |key: &str, texts: &[String]| {
            texts
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    parse_net(text).ok_or_else(|| {
                        (
                            format!("{key}[{i}]"),
                            format!("expected an IP address or CIDR such as \"203.0.113.0/24\", got {text:?}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let rules = IpRules {
            allow: list("allow", &self.allow)?,
            deny: list("deny", &self.deny)?,
            allow_only: self.allow_only,
        };
        if rules.allow_only && rules.allow.is_empty() {
            return Err((
                "allow_only".into(),
                "allow_only = true with an empty `allow` list would refuse everyone".into(),
            ));
        }
        Ok(rules)
    }
}

impl IpRules {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn check(&self, ip: IpAddr) -> IpVerdict {
        let ip = ip.to_canonical();
        if self.allow.iter().any(|net| net.contains(&ip)) {
            IpVerdict::Allowlisted
        } else if self.allow_only || self.deny.iter().any(|net| net.contains(&ip)) {
            IpVerdict::Denied
        } else {
            IpVerdict::Neutral
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str], allow_only: bool) -> IpRules {
        IpRulesSettings {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
            allow_only,
        }
        .build()
        .unwrap()
    }

    #[test]
    fn lists() {
        let r = rules(
            &["10.1.0.0/16", "::1"],
            &["10.0.0.0/8", "2001:db8::/32"],
            false,
        );
        let ip = |s: &str| IpAddr::from_str(s).unwrap();
        assert_eq!(r.check(ip("10.1.2.3")), IpVerdict::Allowlisted);
        assert_eq!(r.check(ip("10.2.2.3")), IpVerdict::Denied);
        assert_eq!(r.check(ip("2001:db8::7")), IpVerdict::Denied);
        assert_eq!(r.check(ip("::1")), IpVerdict::Allowlisted);
        assert_eq!(r.check(ip("192.0.2.1")), IpVerdict::Neutral);
        // IPv4-mapped IPv6 counts as IPv4.
        assert_eq!(r.check(ip("::ffff:10.2.2.3")), IpVerdict::Denied);
        let only = rules(&["192.0.2.0/24"], &[], true);
        assert_eq!(only.check(ip("192.0.2.9")), IpVerdict::Allowlisted);
        assert_eq!(only.check(ip("198.51.100.1")), IpVerdict::Denied);
    }

    #[test]
    fn bad_entries_name_their_index() {
        let error = IpRulesSettings {
            deny: vec!["10.0.0.0/8".into(), "nope".into()],
            ..Default::default()
        }
        .build()
        .unwrap_err();
        assert_eq!(error.0, "deny[1]");
    }
}
