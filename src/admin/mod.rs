//! The admin listener (axum), separate from the public one. Endpoints:
//!
//! - `GET /health/live` — 200 while the process runs.
//! - `GET /health/ready` — 200 when serving; 503 with the reasons while draining.
//! - `GET /health` — every dependency (each upstream's targets) with status and latency;
//!   200 when healthy, 503 when degraded or unhealthy. Results are cached for a second.
//! - `GET /health/{name}` — one dependency of that report ([`observe`]); 404 for an unknown name.
//! - `GET /health/metrics` — uptime, RSS, requests/s, error rate and p95/p99 latency over the
//!   last 1, 5 and 15 minutes ([`observe`]).
//! - `GET /metrics` — Prometheus text format, with the process figures (CPU, RSS, open files).
//! - `GET /security/blocks` — addresses blocked by progressive blocking, with seconds left.
//! - `DELETE /security/blocks/{ip}` — lifts a block (204), or 404 when the address is not blocked.
//! - `GET /ratelimit/{policy}?ip=…&user=…` — the state of one rate-limit key (remaining, reset).
//! - `DELETE /ratelimit/{policy}?ip=…` — resets that key (204), or 404 when nothing is kept.
//! - `GET /cache` — the response cache's entries, bytes and hit rate.
//! - `DELETE /cache?key=…|route=…|prefix=…|path=…|all=true` — purges the cache (see `cache`).

pub mod cache;
pub mod health;
pub mod observe;
pub mod ratelimit;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::server::Shared;

pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health", get(health))
        .route("/health/metrics", get(observe::metrics_summary))
        .route("/health/{name}", get(observe::dependency))
        .route("/metrics", get(metrics))
        .route("/security/blocks", get(list_blocks))
        .route("/security/blocks/{ip}", axum::routing::delete(unblock))
        .route(
            "/ratelimit/{policy}",
            get(ratelimit::read).delete(ratelimit::reset),
        )
        .route("/cache", get(cache::read).delete(cache::purge))
        .fallback(not_found)
        .with_state(shared)
}

async fn live() -> Response {
    Json(json!({ "status": "alive" })).into_response()
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if shared.draining.load(Ordering::SeqCst) {
        let body = json!({ "status": "not_ready", "reasons": ["draining: shutdown in progress"] });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(json!({ "status": "ready" })).into_response()
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let report = shared.health.report(&shared).await;
    let status = if report.status == health::Status::Healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(cache) = shared.pipeline.load().cache() {
        cache.refresh_gauges();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let mut text = shared.metrics.render();
            text.push_str(&crate::observe::request_counts::render());
            text.push_str(&crate::observe::histogram::render(
                crate::observe::metrics::HISTOGRAMS,
            ));
            text.push_str(&crate::observe::process::render(
                &crate::observe::process::sample(),
            ));
            text
        },
    )
        .into_response()
}

async fn list_blocks(State(shared): State<Arc<Shared>>) -> Response {
    let blocks: Vec<_> = shared
        .blocklist
        .list()
        .await
        .into_iter()
        .map(|(ip, left)| json!({ "ip": ip.to_string(), "seconds_left": left.as_secs() }))
        .collect();
    Json(json!({ "blocks": blocks })).into_response()
}

async fn unblock(State(shared): State<Arc<Shared>>, Path(ip): Path<String>) -> Response {
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        let body = json!({ "error": { "code": 400, "type": "bad_request", "message": "expected an IP address" } });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    if shared.blocklist.unblock(ip.to_canonical()).await {
        tracing::info!(target: "rampart::security", event = "ip_unblocked", client_ip = %ip, "block lifted by an operator");
        StatusCode::NO_CONTENT.into_response()
    } else {
        let body = json!({ "error": { "code": 404, "type": "not_found", "message": "this address is not blocked" } });
        (StatusCode::NOT_FOUND, Json(body)).into_response()
    }
}

async fn not_found() -> Response {
    let body = json!({ "error": { "code": 404, "type": "not_found", "message": "no such admin endpoint" } });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
