//! Resilience policies around upstream calls and their state: target balancing ([`balance`]),
//! target health from active checks and passive ejection ([`health`]), circuit breakers
//! ([`breaker`]), retries with backoff and a budget ([`retry`]), load shedding ([`shed`]), and
//! the rolling window they count in ([`window`]).
//!
//! These decide; they send nothing. The attempt loop that applies them to a request is
//! `proxy::call`; targets, their connections, health checks and DNS discovery are
//! `proxy::upstream`.

pub mod balance;
pub mod breaker;
pub mod health;
pub mod retry;
pub mod shed;
pub mod window;
