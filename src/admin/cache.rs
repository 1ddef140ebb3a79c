//! `/cache`: the cache's state and purges.
//!
//! - `GET /cache` — entries, bytes, hit rate and the Redis tier's state.
//! - `DELETE /cache?key=<x-cache-key>` — one entry and its variants;
//!   `?route=<name>` — everything a route stored; `?prefix=/api/` — every entry whose path
//!   starts so; `?path=/api/items` — every entry of that exact path; `?all=true` — everything.
//!   Purges clear this instance's memory, the Redis tier, and (through Redis) the other
//!   instances' memory; the answer says how many values went from each.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::cache::Purge;
use crate::cache::key::Key;
use crate::server::Shared;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeQuery {
    key: Option<String>,
    route: Option<String>,
    prefix: Option<String>,
    path: Option<String>,
    all: Option<bool>,
}

fn problem(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": status.as_u16(), "type": kind, "message": message } });
    (status, Json(body)).into_response()
}

fn no_cache() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "no route caches: the cache is off",
    )
}

pub async fn read(State(shared): State<Arc<Shared>>) -> Response {
    let pipeline = shared.pipeline.load_full();
    match pipeline.cache() {
        Some(cache) => Json(cache.health()).into_response(),
        None => no_cache(),
    }
}

pub async fn purge(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<PurgeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected one of key, route, prefix, path or all=true",
        );
    };
    let pipeline = shared.pipeline.load_full();
    let Some(cache) = pipeline.cache().cloned() else {
        return no_cache();
    };
    let selectors = [
        query.key.is_some(),
        query.route.is_some(),
        query.prefix.is_some(),
        query.path.is_some(),
        query.all.is_some(),
    ];
    if selectors.iter().filter(|s| **s).count() != 1 {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected exactly one of key, route, prefix, path or all=true",
        );
    }
    let purge = if let Some(key) = query.key {
        match Key::from_hex(key.trim()) {
            Some(key) => Purge::Key(key),
            None => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "key: expected the 64 hex digits of an x-cache-key header",
                );
            }
        }
    } else if let Some(route) = query.route {
        if !pipeline.config.routes.iter().any(|r| r.name == route) {
            return problem(StatusCode::NOT_FOUND, "not_found", "no route has this name");
        }
        Purge::Route(route)
    } else if let Some(prefix) = query.prefix {
        if !prefix.starts_with('/') {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "prefix: expected a path starting with /",
            );
        }
        Purge::Prefix(prefix)
    } else if let Some(path) = query.path {
        if !path.starts_with('/') {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "path: expected a path starting with /",
            );
        }
        Purge::Path(path)
    } else if query.all == Some(true) {
        Purge::All
    } else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "all: expected all=true",
        );
    };
    let report = cache.purge(purge).await;
    Json(json!({ "purged": report })).into_response()
}
