//! The demo app itself: its routes, handlers and per-app in-memory state.
//!
//! [`router`] builds the whole app with fresh state (items, request
//! statistics, failure counters); [`serve`] runs it on a listener. All
//! responses are JSON unless stated otherwise, and every error body has an
//! `"error"` key.
//!
//! | Method | Path | What it does |
//! | --- | --- | --- |
//! | GET | `/health` | `{"status":"ok"}` |
//! | GET | `/api/items` | JSON array of the items (20 seeded, well over 1 KB) |
//! | GET | `/api/items/{id}` | one item, or 404 `{"error":"not found"}` |
//! | POST | `/api/items` | create an item from `{"name", "description"?, "price"?, "tags"?}`; 201 with the item (and a `Location` header), 400 on invalid JSON or a missing/empty `name` |
//! | POST | `/auth/login` | `{"email","password"}` (or `{"username","password"}`); see below |
//! | GET | `/slow?ms=N` | sleeps `N` ms (default 1000, capped at 60000), then `{"slept_ms":N}` |
//! | GET | `/fail?status=N&rate=P` | fails with status `N` (default 500, 200–599) with probability `P` (default 1.0); see below |
//! | GET | `/events?count=N&interval_ms=M` | Server-Sent Events, `N` events (default 5, max 10000) `M` ms apart (default 200, max 60000) |
//! | POST | `/v1/chat/completions?delay_ms=D` | fake OpenAI-compatible chat completion; see below |
//! | GET | `/stats` | `{"total":N,"paths":{"/path":n,...}}` |
//! | DELETE | `/stats` | resets the request counters (and the `/fail` counters) |
//! | any | `/echo`, `/echo/{*rest}` | describes the request as received (method, path, query, headers, body) |
//! | any | anything else | 404 `{"error":"not found","path":...}` (405 JSON for a known path with a wrong method) |
//!
//! **Login.** Three accounts: `demo@example.com` / `Demo-Password-1!` (role
//! `user`), `admin@example.com` / `Admin-Password-1!` (role `admin`), and the
//! short `demo` / `demo` (role `user`). Success is 200
//! `{"token","token_type","expires_in","user"}` where `token` is a real JWT
//! (HS256, signed with `RAMPART_JWT_SECRET` or, unset, [`DEMO_JWT_SECRET`];
//! claims `sub`, `email`, `role`, `iss` = `rampart-demo`, `iat`, `exp` one
//! hour later), so rampart's JWT check can be tried on the demo; any other
//! pair gets 401 `{"error":"invalid credentials"}`, and a body that is not
//! JSON or lacks the strings gets 400.
//!
//! **`/fail` is deterministic.** Each distinct rate has its own call counter
//! `n` (1-based, per app). Call `n` fails exactly when `floor(n * P)` is
//! greater than `floor((n - 1) * P)` (computed in integer parts per million),
//! so rate 1.0 always fails, 0.0 never does, 0.5 fails calls 2, 4, 6, …
//! and 0.25 fails calls 4, 8, …: over any `k` consecutive calls the number of
//! failures is `k * P` rounded down or up. `DELETE /stats` resets these
//! counters too.
//!
//! **Chat completions.** The request needs `model` (string) and a non-empty
//! `messages` array of `{role, content}` (content a string, an array of
//! `{"type":"text","text":...}` parts, or null); `stream` is optional. The
//! reply is `"You said: <last user message>"` (or a fixed greeting when there
//! is no non-blank user message), with whitespace collapsed. Token counts are
//! whitespace-separated word counts: `prompt_tokens` over all message
//! contents, `completion_tokens` over the reply. With `"stream": true` the
//! answer is SSE: one `chat.completion.chunk` per word (the first also carries
//! `role`), then a chunk with an empty delta, `finish_reason: "stop"` and
//! `usage`, then `data: [DONE]`; chunks are `delay_ms` apart (default 20, max
//! 10000). Errors are 400 `{"error":{"message","type":"invalid_request_error"}}`.
//!
//! **Stats.** A middleware over every route (404s included) counts each
//! request by its raw URI path as received (no query), except requests to
//! `/stats` itself, so a test can see which path reached the app after a
//! proxy rewrote it.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Longest sleep `/slow` accepts, in milliseconds.
const MAX_SLOW_MS: u64 = 60_000;
/// Default sleep of `/slow`, in milliseconds.
const DEFAULT_SLOW_MS: u64 = 1_000;
/// Most events one `/events` request may ask for.
const MAX_EVENTS: u64 = 10_000;
/// Longest interval between `/events` events, in milliseconds.
const MAX_EVENT_INTERVAL_MS: u64 = 60_000;
/// Longest delay between streamed chat chunks, in milliseconds.
const MAX_CHAT_DELAY_MS: u64 = 10_000;
/// How much of a request body `/echo` returns as text (the length is always exact).
const ECHO_BODY_PREVIEW: usize = 64 * 1024;
/// Probabilities are handled in parts per million so `/fail` is exact.
const PPM: u64 = 1_000_000;

/// Builds the whole demo app with its own fresh state.
pub fn router() -> Router {
    let state = Arc::new(AppState::new());
    Router::new()
        .route("/health", get(health))
        .route("/api/items", get(list_items).post(create_item))
        .route("/api/items/{id}", get(get_item))
        .route("/auth/login", post(login))
        .route("/slow", get(slow))
        .route("/fail", get(fail))
        .route("/events", get(events))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/stats", get(get_stats).delete(reset_stats))
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            count_requests,
        ))
        .with_state(state)
}

/// Serves the demo app (a fresh [`router`]) on `listener` until an I/O error.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

type SharedState = Arc<AppState>;

/// Everything one app instance remembers. Locks are never held across `.await`.
struct AppState {
    items: Mutex<ItemStore>,
    stats: Mutex<Stats>,
    /// `/fail` call counters, keyed by the rate in parts per million.
    fail_counters: Mutex<HashMap<u64, u64>>,
    /// Sequence for chat completion ids.
    chat_seq: AtomicU64,
}

impl AppState {
    fn new() -> Self {
        Self {
            items: Mutex::new(ItemStore::seeded()),
            stats: Mutex::new(Stats::default()),
            fail_counters: Mutex::new(HashMap::new()),
            chat_seq: AtomicU64::new(0),
        }
    }
}

/// Locks a mutex, carrying on with the data if a previous holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Stats {
    total: u64,
    paths: BTreeMap<String, u64>,
}

#[derive(Clone, Serialize)]
struct Item {
    id: u64,
    name: String,
    description: String,
    price: f64,
    tags: Vec<String>,
    in_stock: bool,
}

struct ItemStore {
    items: Vec<Item>,
    next_id: u64,
}

impl ItemStore {
    fn seeded() -> Self {
        const SEED: [(&str, &str, f64, &[&str]); 20] = [
            (
                "Prompt Notebook",
                "A dotted notebook for sketching prompt ideas by hand.",
                12.5,
                &["stationery", "prompts"],
            ),
            (
                "GPU Sticker Pack",
                "Ten vinyl stickers of famous accelerator cards.",
                4.99,
                &["stickers", "hardware"],
            ),
            (
                "Token Counter",
                "A mechanical tally counter for counting tokens the old way.",
                8.0,
                &["tools", "tokens"],
            ),
            (
                "Embedding Mug",
                "A ceramic mug printed with a 768-dimensional vector.",
                14.0,
                &["kitchen", "embeddings"],
            ),
            (
                "Attention Poster",
                "A poster explaining scaled dot-product attention.",
                19.99,
                &["poster", "transformers"],
            ),
            (
                "Latent Space Map",
                "A fold-out map of an imaginary latent space.",
                9.5,
                &["maps", "embeddings"],
            ),
            (
                "Gradient Socks",
                "Warm socks in a smooth colour gradient that never vanishes.",
                11.0,
                &["clothing", "training"],
            ),
            (
                "Overfit T-Shirt",
                "A t-shirt that fits one person perfectly and nobody else.",
                22.0,
                &["clothing", "training"],
            ),
            (
                "Hallucination Dice",
                "Twenty-sided dice for generating confident answers.",
                6.75,
                &["games", "llm"],
            ),
            (
                "Context Window Blinds",
                "Window blinds sized for exactly 128k tokens.",
                49.0,
                &["home", "llm"],
            ),
            (
                "Beam Search Torch",
                "A flashlight with a configurable beam width.",
                17.25,
                &["tools", "decoding"],
            ),
            (
                "Softmax Pillow",
                "A pillow that normalises your dreams to sum to one.",
                24.5,
                &["home", "math"],
            ),
            (
                "Dropout Keychain",
                "A keychain that randomly forgets half of your keys.",
                3.5,
                &["accessories", "training"],
            ),
            (
                "Tokenizer Cookie Cutter",
                "Cuts cookie dough into byte-pair encoded pieces.",
                7.25,
                &["kitchen", "tokens"],
            ),
            (
                "RLHF Feedback Buttons",
                "A thumbs-up and thumbs-down button set for your desk.",
                15.0,
                &["desk", "alignment"],
            ),
            (
                "Quantized Scale",
                "A kitchen scale with 4-bit precision.",
                29.99,
                &["kitchen", "inference"],
            ),
            (
                "Temperature Dial",
                "A decorative dial from 0.0 (boring) to 2.0 (chaotic).",
                13.0,
                &["desk", "decoding"],
            ),
            (
                "Vector Database Shelf",
                "A shelf that stores books by their nearest neighbours.",
                89.0,
                &["furniture", "embeddings"],
            ),
            (
                "Fine-Tune Guitar Pick",
                "A guitar pick for small adjustments to a pre-trained riff.",
                2.25,
                &["music", "training"],
            ),
            (
                "Agent Action Figure",
                "A poseable figure that calls tools on your behalf.",
                34.5,
                &["toys", "agents"],
            ),
        ];
        let items: Vec<Item> = SEED
            .iter()
            .zip(1u64..)
            .map(|(&(name, description, price, tags), id)| Item {
                id,
                name: name.to_owned(),
                description: description.to_owned(),
                price,
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                in_stock: id % 4 != 0,
            })
            .collect();
        let next_id = items.len() as u64 + 1;
        Self { items, next_id }
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A JSON error response `{"error": message}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The query string as a map, or the message for a 400 error.
fn query_map(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, String> {
    query
        .map(|Query(map)| map)
        .map_err(|e| format!("invalid query: {e}"))
}

/// Parses query parameter `name`, or returns `default` when it is absent;
/// the error is the message for a 400 error.
fn param<T: FromStr>(query: &HashMap<String, String>, name: &str, default: T) -> Result<T, String> {
    match query.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| format!("invalid query parameter {name}: {raw:?}")),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------
// Middleware and fallbacks
// ---------------------------------------------------------------------------

/// Counts every request except those to `/stats`, by raw URI path.
async fn count_requests(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path != "/stats" {
        let mut stats = lock(&state.stats);
        stats.total += 1;
        *stats.paths.entry(path.to_owned()).or_insert(0) += 1;
    }
    let mut response = next.run(req).await;
    // Like an Express app: it announces itself, and a proxy in front should hide that.
    let headers = response.headers_mut();
    headers.insert("x-powered-by", http::HeaderValue::from_static("Express"));
    headers.insert(
        http::header::SERVER,
        http::HeaderValue::from_static("rampart-demo"),
    );
    response
}

async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": "not found", "path": uri.path() })),
    )
        .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({
            "error": "method not allowed",
            "method": method.as_str(),
            "path": uri.path(),
        })),
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// Simple endpoints
// ---------------------------------------------------------------------------

async fn health() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn list_items(State(state): State<SharedState>) -> Response {
    let items = lock(&state.items).items.clone();
    axum::Json(items).into_response()
}

async fn get_item(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let found = lock(&state.items)
        .items
        .iter()
        .find(|item| item.id == id)
        .cloned();
    match found {
        Some(item) => axum::Json(item).into_response(),
        None => error(StatusCode::NOT_FOUND, "not found"),
    }
}

#[derive(Deserialize)]
struct NewItem {
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    price: Option<f64>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    in_stock: Option<bool>,
}

async fn create_item(
    State(state): State<SharedState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let new: NewItem = match serde_json::from_slice(&body) {
        Ok(new) => new,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let name = match new.name.map(|n| n.trim().to_owned()) {
        Some(name) if !name.is_empty() => name,
        _ => return error(StatusCode::BAD_REQUEST, "missing field: name"),
    };
    let price = new.price.unwrap_or(0.0);
    if !price.is_finite() || price < 0.0 {
        return error(
            StatusCode::BAD_REQUEST,
            "price must be a non-negative number",
        );
    }
    let item = {
        let mut store = lock(&state.items);
        let item = Item {
            id: store.next_id,
            name,
            description: new.description.unwrap_or_default(),
            price,
            tags: new.tags.unwrap_or_default(),
            in_stock: new.in_stock.unwrap_or(true),
        };
        store.next_id += 1;
        store.items.push(item.clone());
        item
    };
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/items/{}", item.id))],
        axum::Json(item),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Login {
    #[serde(alias = "email")]
    username: String,
    password: String,
}

/// The secret the demo signs its tokens with when `RAMPART_JWT_SECRET` is unset. Only for
/// trying rampart out: anyone can read it here.
pub const DEMO_JWT_SECRET: &str = "rampart-demo-secret-change-me-in-production";

/// The demo accounts: (login, password, user id, role).
const ACCOUNTS: &[(&str, &str, u32, &str)] = &[
    ("demo@example.com", "Demo-Password-1!", 1, "user"),
    ("admin@example.com", "Admin-Password-1!", 2, "admin"),
    ("demo", "demo", 1, "user"),
];

/// A JWT for `account`, signed with `RAMPART_JWT_SECRET` (HS256).
fn demo_token(login: &str, id: u32, role: &str) -> String {
    let secret = std::env::var("RAMPART_JWT_SECRET").unwrap_or_else(|_| DEMO_JWT_SECRET.to_owned());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let email = if login.contains('@') {
        login.to_owned()
    } else {
        format!("{login}@example.com")
    };
    let claims = json!({
        "sub": id.to_string(), "email": email, "role": role,
        "iss": "rampart-demo", "iat": now, "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

/// Logs in one of the [`ACCOUNTS`].
async fn login(body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let creds: Login = match serde_json::from_slice(&body) {
        Ok(creds) => creds,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid login request: {e}"),
            );
        }
    };
    let Some(&(login, _, id, role)) = ACCOUNTS
        .iter()
        .find(|(login, password, _, _)| creds.username == *login && creds.password == *password)
    else {
        return error(StatusCode::UNAUTHORIZED, "invalid credentials");
    };
    axum::Json(json!({
        "token": demo_token(login, id, role),
        "token_type": "Bearer",
        "expires_in": 3600,
        "user": { "id": id, "username": login, "name": "Demo User", "role": role },
    }))
    .into_response()
}

async fn slow(query: Result<Query<HashMap<String, String>>, QueryRejection>) -> Response {
    let ms = match query_map(query).and_then(|q| param(&q, "ms", DEFAULT_SLOW_MS)) {
        Ok(ms) => ms.min(MAX_SLOW_MS),
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    axum::Json(json!({ "slept_ms": ms })).into_response()
}

async fn fail(
    State(state): State<SharedState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let (status, rate) = match query_map(query).and_then(|q| {
        Ok((
            param::<u16>(&q, "status", 500)?,
            param::<f64>(&q, "rate", 1.0)?,
        ))
    }) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let status = match StatusCode::from_u16(status) {
        Ok(status) if (200..=599).contains(&status.as_u16()) => status,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "status must be between 200 and 599",
            );
        }
    };
    if !(0.0..=1.0).contains(&rate) {
        return error(StatusCode::BAD_REQUEST, "rate must be between 0.0 and 1.0");
    }
    // `rate` is within [0, 1], so this is within [0, PPM].
    let ppm = (rate * PPM as f64).round() as u64;
    let call = {
        let mut counters = lock(&state.fail_counters);
        let counter = counters.entry(ppm).or_insert(0);
        *counter += 1;
        *counter
    };
    let fails = u128::from(call) * u128::from(ppm) / u128::from(PPM)
        > u128::from(call - 1) * u128::from(ppm) / u128::from(PPM);
    if fails {
        (
            status,
            axum::Json(json!({
                "error": "injected failure",
                "status": status.as_u16(),
                "call": call,
            })),
        )
            .into_response()
    } else {
        axum::Json(json!({ "ok": true })).into_response()
    }
}

/// Yields `items` one by one, waiting `delay` before each one but the first.
fn paced<T: Send + 'static>(
    items: Vec<T>,
    delay: Duration,
) -> impl Stream<Item = Result<T, Infallible>> + Send + 'static {
    stream::iter(items.into_iter().enumerate()).then(move |(i, item)| async move {
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(item)
    })
}

async fn events(query: Result<Query<HashMap<String, String>>, QueryRejection>) -> Response {
    let (count, interval_ms) = match query_map(query).and_then(|q| {
        Ok((
            param::<u64>(&q, "count", 5)?,
            param::<u64>(&q, "interval_ms", 200)?,
        ))
    }) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let count = count.min(MAX_EVENTS);
    let interval = Duration::from_millis(interval_ms.min(MAX_EVENT_INTERVAL_MS));
    // Events are built up front (cheap), but written one at a time, each as
    // soon as its delay has passed.
    let events: Vec<Event> = (1..=count)
        .map(|seq| {
            Event::default().id(seq.to_string()).data(
                json!({ "seq": seq, "count": count, "message": format!("event {seq} of {count}") })
                    .to_string(),
            )
        })
        .collect();
    Sse::new(paced(events, interval)).into_response()
}

async fn get_stats(State(state): State<SharedState>) -> Response {
    let stats = lock(&state.stats);
    let body = json!({ "total": stats.total, "paths": stats.paths });
    drop(stats);
    axum::Json(body).into_response()
}

async fn reset_stats(State(state): State<SharedState>) -> Response {
    *lock(&state.stats) = Stats::default();
    lock(&state.fail_counters).clear();
    axum::Json(json!({ "reset": true })).into_response()
}

async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let mut header_map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        header_map
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    // Count the body as it streams in; keep only a bounded preview.
    let mut body_len: u64 = 0;
    let mut preview: Vec<u8> = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("error reading body: {e}")),
        };
        body_len += chunk.len() as u64;
        let room = ECHO_BODY_PREVIEW.saturating_sub(preview.len());
        preview.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    axum::Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": header_map,
        "body_len": body_len,
        "body": String::from_utf8_lossy(&preview),
        "body_truncated": body_len > preview.len() as u64,
    }))
    .into_response()
}

// ---------------------------------------------------------------------------
// Fake OpenAI-compatible chat completions
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// OpenAI-style error body for the chat endpoint.
fn chat_error(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "error": {
                "message": message.into(),
                "type": "invalid_request_error",
                "param": null,
                "code": null,
            }
        })),
    )
        .into_response()
}

/// The text of a message's content: a string, text parts, or null.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::Null => Some(String::new()),
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for part in parts {
                match part {
                    Value::String(text) => texts.push(text.as_str()),
                    Value::Object(obj) => {
                        if let Some(Value::String(text)) = obj.get("text") {
                            texts.push(text.as_str());
                        }
                    }
                    _ => return None,
                }
            }
            Some(texts.join(" "))
        }
        _ => None,
    }
}

async fn chat_completions(
    State(state): State<SharedState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let delay_ms = match query_map(query).and_then(|q| param::<u64>(&q, "delay_ms", 20)) {
        Ok(ms) => ms.min(MAX_CHAT_DELAY_MS),
        Err(message) => return chat_error(message),
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => return chat_error(e.body_text()),
    };
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return chat_error(format!("invalid request body: {e}")),
    };
    if request.model.trim().is_empty() {
        return chat_error("model must not be empty");
    }
    if request.messages.is_empty() {
        return chat_error("messages must not be empty");
    }
    let mut prompt_tokens = 0usize;
    let mut last_user = String::new();
    for (i, message) in request.messages.iter().enumerate() {
        let Some(text) = content_text(&message.content) else {
            return chat_error(format!(
                "messages[{i}].content must be a string or text parts"
            ));
        };
        prompt_tokens += text.split_whitespace().count();
        if message.role == "user" {
            last_user = text;
        }
    }
    let reply = if last_user.trim().is_empty() {
        "Hello from the rampart demo model.".to_owned()
    } else {
        format!("You said: {last_user}")
    };
    let words: Vec<&str> = reply.split_whitespace().collect();
    let content = words.join(" ");
    let completion_tokens = words.len();
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let seq = state.chat_seq.fetch_add(1, Ordering::Relaxed) + 1;
    let id = format!("chatcmpl-demo{seq:08}");
    let created = unix_now();
    let model = request.model;

    if !request.stream.unwrap_or(false) {
        return axum::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": content },
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": usage,
        }))
        .into_response();
    }

    let chunk = |delta: Value, finish_reason: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        })
    };
    let mut events: Vec<Event> = words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let delta = if i == 0 {
                json!({ "role": "assistant", "content": word })
            } else {
                json!({ "content": format!(" {word}") })
            };
            Event::default().data(chunk(delta, Value::Null).to_string())
        })
        .collect();
    let mut last = chunk(json!({}), json!("stop"));
    last["usage"] = usage;
    events.push(Event::default().data(last.to_string()));
    events.push(Event::default().data("[DONE]"));
    Sse::new(paced(events, Duration::from_millis(delay_ms))).into_response()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Instant;

    /// Starts a fresh demo app on an ephemeral loopback port.
    async fn start() -> (SocketAddr, reqwest::Client) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            serve(listener).await.unwrap();
        });
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        (addr, client)
    }

    fn url(addr: SocketAddr, path: &str) -> String {
        format!("http://{addr}{path}")
    }

    /// Splits a complete SSE body into its events' `data` payloads.
    fn sse_data(text: &str) -> Vec<String> {
        text.split("\n\n")
            .filter_map(|block| {
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                (!data.is_empty()).then(|| data.join("\n"))
            })
            .collect()
    }

    #[tokio::test]
    async fn health_and_not_found() {
        let (addr, client) = start().await;
        let resp = client.get(url(addr, "/health")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body, json!({ "status": "ok" }));

        let resp = client.get(url(addr, "/nope")).send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "not found");

        let resp = client.put(url(addr, "/health")).send().await.unwrap();
        assert_eq!(resp.status(), 405);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "method not allowed");
    }

    #[tokio::test]
    async fn items_list_is_large() {
        let (addr, client) = start().await;
        let resp = client.get(url(addr, "/api/items")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let bytes = resp.bytes().await.unwrap();
        assert!(bytes.len() > 1024, "only {} bytes", bytes.len());
        let items: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(items.len(), 20);
        assert_eq!(items[0]["id"], 1);
        assert!(items[0]["name"].is_string());
        assert!(items[0]["tags"].is_array());
    }

    #[tokio::test]
    async fn create_then_get_item() {
        let (addr, client) = start().await;
        let resp = client
            .post(url(addr, "/api/items"))
            .json(&json!({ "name": "Widget", "price": 3.5, "tags": ["new"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()[header::LOCATION], "/api/items/21");
        let created: Value = resp.json().await.unwrap();
        assert_eq!(created["id"], 21);
        assert_eq!(created["name"], "Widget");

        let got: Value = client
            .get(url(addr, "/api/items/21"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got, created);

        let all: Vec<Value> = client
            .get(url(addr, "/api/items"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(all.len(), 21);

        for missing in ["/api/items/999", "/api/items/abc"] {
            let resp = client.get(url(addr, missing)).send().await.unwrap();
            assert_eq!(resp.status(), 404);
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body, json!({ "error": "not found" }));
        }

        for bad in ["{not json", r#"{"price": 1}"#, r#"{"name": ""}"#] {
            let resp = client
                .post(url(addr, "/api/items"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(bad)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 400, "body {bad}");
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"].is_string());
        }
    }

    #[tokio::test]
    async fn login_accepts_only_demo() {
        let (addr, client) = start().await;
        let resp = client
            .post(url(addr, "/auth/login"))
            .json(&json!({ "username": "demo", "password": "demo" }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["token"].as_str().unwrap().split('.').count(),
            3,
            "a JWT"
        );
        assert_eq!(body["user"]["username"], "demo");

        let resp = client
            .post(url(addr, "/auth/login"))
            .json(&json!({ "username": "demo", "password": "wrong" }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid credentials");

        let resp = client
            .post(url(addr, "/auth/login"))
            .body("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
    }

    #[tokio::test]
    async fn slow_sleeps() {
        let (addr, client) = start().await;
        let started = Instant::now();
        let resp = client.get(url(addr, "/slow?ms=150")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body, json!({ "slept_ms": 150 }));
        assert!(started.elapsed() >= Duration::from_millis(150));

        let resp = client.get(url(addr, "/slow?ms=abc")).send().await.unwrap();
        assert_eq!(resp.status(), 400);
    }

    #[tokio::test]
    async fn fail_rate_half_fails_exactly_half() {
        let (addr, client) = start().await;
        let mut failures = 0;
        for _ in 0..10 {
            let resp = client
                .get(url(addr, "/fail?status=503&rate=0.5"))
                .send()
                .await
                .unwrap();
            match resp.status().as_u16() {
                503 => {
                    failures += 1;
                    let body: Value = resp.json().await.unwrap();
                    assert_eq!(body["error"], "injected failure");
                }
                200 => {
                    let body: Value = resp.json().await.unwrap();
                    assert_eq!(body, json!({ "ok": true }));
                }
                other => panic!("unexpected status {other}"),
            }
        }
        assert_eq!(failures, 5);

        // Defaults: always 500.
        let resp = client.get(url(addr, "/fail")).send().await.unwrap();
        assert_eq!(resp.status(), 500);
        // Rate 0 never fails.
        let resp = client.get(url(addr, "/fail?rate=0")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        // Bad input.
        let resp = client.get(url(addr, "/fail?rate=2")).send().await.unwrap();
        assert_eq!(resp.status(), 400);
        let resp = client
            .get(url(addr, "/fail?status=42"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
    }

    #[tokio::test]
    async fn events_are_streamed() {
        let (addr, client) = start().await;
        let started = Instant::now();
        let resp = client
            .get(url(addr, "/events?count=3&interval_ms=400"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");

        let mut stream = resp.bytes_stream();
        let mut buffer = String::new();
        // (arrival time, event text) of each complete event.
        let mut arrivals: Vec<(Duration, String)> = Vec::new();
        while let Some(chunk) = stream.next().await {
            buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                arrivals.push((started.elapsed(), event));
            }
        }
        assert_eq!(arrivals.len(), 3, "{arrivals:?}");
        for (i, (_, event)) in arrivals.iter().enumerate() {
            let seq = i + 1;
            assert!(event.contains(&format!("id: {seq}\n")), "{event:?}");
            let data = &sse_data(event)[0];
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["seq"], seq);
        }
        let first = arrivals[0].0;
        let last = arrivals[2].0;
        assert!(
            last - first >= Duration::from_millis(400),
            "events were not streamed: first at {first:?}, last at {last:?}"
        );
    }

    #[tokio::test]
    async fn chat_completion_non_stream() {
        let (addr, client) = start().await;
        let resp = client
            .post(url(addr, "/v1/chat/completions"))
            .json(&json!({
                "model": "demo-1",
                "messages": [
                    { "role": "system", "content": "You are helpful." },
                    { "role": "user", "content": "hello there   friend" },
                ],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "demo-1");
        assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert!(body["created"].as_u64().unwrap() > 0);
        let choice = &body["choices"][0];
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["message"]["content"], "You said: hello there friend");
        assert_eq!(choice["finish_reason"], "stop");
        // Prompt: 3 + 3 words; completion: 5 words.
        assert_eq!(body["usage"]["prompt_tokens"], 6);
        assert_eq!(body["usage"]["completion_tokens"], 5);
        assert_eq!(body["usage"]["total_tokens"], 11);

        for bad in [
            json!({ "model": "demo-1", "messages": [] }),
            json!({ "messages": [{ "role": "user", "content": "hi" }] }),
            json!({ "model": "demo-1", "messages": [{ "role": "user", "content": 5 }] }),
        ] {
            let resp = client
                .post(url(addr, "/v1/chat/completions"))
                .json(&bad)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 400, "{bad}");
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"]["message"].is_string());
        }
    }

    #[tokio::test]
    async fn chat_completion_stream_ends_with_done() {
        let (addr, client) = start().await;
        let resp = client
            .post(url(addr, "/v1/chat/completions?delay_ms=5"))
            .json(&json!({
                "model": "demo-1",
                "stream": true,
                "messages": [{ "role": "user", "content": "stream me please" }],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        let text = resp.text().await.unwrap();
        let data = sse_data(&text);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");

        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        // "You said: stream me please" is 5 words, plus the final chunk.
        assert_eq!(chunks.len(), 6);
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk")
        );
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "You said: stream me please");
        let last = &chunks[5];
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(last["usage"]["prompt_tokens"], 3);
        assert_eq!(last["usage"]["completion_tokens"], 5);
        assert_eq!(last["usage"]["total_tokens"], 8);
    }

    #[tokio::test]
    async fn stats_count_per_path() {
        let (addr, client) = start().await;
        for path in [
            "/api/items",
            "/api/items",
            "/health",
            "/nope?x=1",
            "/api/items/3",
        ] {
            client.get(url(addr, path)).send().await.unwrap();
        }
        let stats: Value = client
            .get(url(addr, "/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            stats,
            json!({
                "total": 5,
                "paths": { "/api/items": 2, "/health": 1, "/nope": 1, "/api/items/3": 1 },
            })
        );

        let resp = client.delete(url(addr, "/stats")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let stats: Value = client
            .get(url(addr, "/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats, json!({ "total": 0, "paths": {} }));
    }

    #[tokio::test]
    async fn echo_reports_request() {
        let (addr, client) = start().await;
        let resp = client
            .post(url(addr, "/echo/some/path?a=1&b=2"))
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["method"], "POST");
        assert_eq!(body["path"], "/echo/some/path");
        assert_eq!(body["query"], "a=1&b=2");
        assert_eq!(body["headers"]["x-forwarded-for"], "10.0.0.1");
        assert_eq!(body["headers"]["x-multi"], "one, two");
        assert_eq!(body["body_len"], 5);
        assert_eq!(body["body"], "hello");

        let body: Value = client
            .get(url(addr, "/echo"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["method"], "GET");
        assert_eq!(body["path"], "/echo");
        assert_eq!(body["query"], Value::Null);
        assert_eq!(body["body_len"], 0);
    }
}
