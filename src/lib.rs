//! rampart: the production layer in front of an AI-backed web service — a reverse proxy for the
//! app's API with its operations around it. See `DESIGN.md` in the shared folder and `docs/`.
//!
//! Modules: [`config`] (file → validated model), [`server`] (listeners, connections, reload,
//! drain), [`proxy`] (the request lifecycle), [`observe`] (logs, access log, metrics), [`admin`]
//! (health and metrics endpoints), [`demo`] (the built-in demo app), [`cli`] (subcommands).

#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod cli;
pub mod compression;
pub mod config;
pub mod demo;
pub mod observe;
pub mod proxy;
pub mod ratelimit;
pub mod resilience;
pub mod security;
pub mod server;
pub mod store;

/// The example config `rampart demo` runs when no `--config` is given.
pub const DEMO_CONFIG: &str = include_str!("../examples/demo.toml");

/// Installs the process-wide TLS crypto provider; call once before any TLS is set up.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
