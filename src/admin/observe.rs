//! Observability endpoints besides `/health` and `/metrics`:
//!
//! - `GET /health/{name}` — one dependency of the `/health` report (same JSON as one entry of
//!   its `dependencies`); 200 when healthy, 503 when degraded or
//!   unhealthy, 404 when no dependency has that name.
//! - `GET /health/metrics` — uptime, process figures and request figures (requests/s, error
//!   rate, p50/p95/p99 latency) over the last 1, 5 and 15 minutes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::health::Status;
use crate::observe::process;
use crate::server::Shared;

pub async fn dependency(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let report = shared.health.report(&shared).await;
    let Some(dependency) = report.dependencies.into_iter().find(|d| d.name == name) else {
        let body = json!({ "error": { "code": 404, "type": "not_found", "message": "no dependency has this name" } });
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    let status = if dependency.status == Status::Healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(dependency)).into_response()
}

pub async fn metrics_summary(State(shared): State<Arc<Shared>>) -> Response {
    let window = shared.retained.load().window.clone();
    let now = Instant::now();
    let span = |minutes: u64| window.summary(now, Duration::from_secs(minutes * 60));
    let process = process::sample();
    let mut summary = json!({
        "uptime_seconds": shared.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        "process": process,
        "requests": {
            "1m": span(1),
            "5m": span(5),
            "15m": span(15),
        },
    });
    // The response cache's hit rate (since start) and size, when a route caches.
    if let Some(cache) = shared.pipeline.load().cache() {
        summary["cache"] = json!(cache.health());
    }
    Json(summary).into_response()
}
