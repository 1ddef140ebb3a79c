//! The built-in demo upstream started by `rampart demo`.
//!
//! This module owns a small, self-contained fake "AI web app" (an items API,
//! a login endpoint, slow/failing/streaming endpoints, a fake
//! OpenAI-compatible chat completion endpoint, an echo endpoint and request
//! statistics). It is used as the upstream in the examples and in the
//! end-to-end tests of the proxy; see [`app`] for the list of endpoints.

pub mod app;

pub use app::{router, serve};
