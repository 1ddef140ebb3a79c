//! Edge security: the request checks that run before a request reaches its upstream (IP rules and
//! blocks, attack filtering, CORS, authentication, validation, CSRF) and the security headers on
//! the way back. Each concern is its own module; `proxy::pipeline` calls them in the order of
//! DESIGN.md, and [`events`] is the one place that reports what they refused.

pub mod attack;
pub mod attack_filter;
pub mod auth;
pub mod blocklist;
pub mod cors;
pub mod csrf;
pub mod events;
pub mod headers;
pub mod ip_rules;
pub mod validation;
