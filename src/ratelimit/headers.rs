//! The IETF rate-limit header fields (draft-ietf-httpapi-ratelimit-headers), in structured-field
//! syntax: `RateLimit-Policy: "api";q=100;w=60` lists the policies, and
//! `RateLimit: "api";r=99;t=42` says what is left (`r`) and in how many seconds it resets (`t`).
//! A policy that failed open or closed is left out of `RateLimit`.

use http::HeaderValue;

use super::algorithm::Decision;
use super::policy::Policy;

pub const RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

/// `(RateLimit-Policy, RateLimit)` for the policies a request was checked against.
pub fn render(decided: &[(&Policy, Option<Decision>)]) -> (HeaderValue, HeaderValue) {
    let mut policy = String::new();
    let mut state = String::new();
    for (p, decision) in decided {
        if !policy.is_empty() {
            policy.push_str(", ");
        }
        policy.push_str(&p.header_item);
        if let Some(d) = decision {
            if !state.is_empty() {
                state.push_str(", ");
            }
            state.push_str(&format!(
                "\"{}\";r={};t={}",
                p.name,
                d.remaining,
                d.reset_ms.div_ceil(1000)
            ));
        }
    }
    let value = |s: String| HeaderValue::try_from(s).unwrap_or(HeaderValue::from_static(""));
    (value(policy), value(state))
}

/// A policy's `RateLimit-Policy` item (policy names are checked to be plain tokens).
pub fn policy_item(name: &str, quota: u64, window_secs: u64) -> String {
    format!("\"{name}\";q={quota};w={window_secs}")
}
