//! Edge security: the request checks that run before a request reaches its upstream (IP rules,
//! attack filtering, CORS, authentication, validation) and the security headers on the way back.
//! Each concern is its own module; `proxy::pipeline` calls them in the order of DESIGN.md.

pub mod attack;
pub mod auth;
pub mod validation;
