//! The Redis connection: a single server (`url`) or a Redis Cluster (`cluster = true`, seeds
//! `url` and `cluster_urls`), multiplexed, and reconnecting by itself after a failure. Opening
//! only validates the URLs: the connection is made on first use, so rampart starts while Redis is
//! down, calls fail within `connect_timeout` meanwhile, and work again once it is back.
//!
//! On a single server each worker thread gets its own multiplexed connection, created on that
//! worker's event loop the first time it calls, so a call and its answer never cross threads;
//! other threads (health probes, the admin API, background jobs) share one more. A cluster
//! connection is shared by all.
//!
//! Capabilities run their own Lua scripts through [`RedisStore::invoke`] (`EVALSHA`, loading the
//! script on `NOSCRIPT`); keys must carry a `{hash tag}` so that every key of one script call
//! lives in one cluster slot. Errors come back as short strings without URLs or credentials.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, IntoConnectionInfo, RedisFuture, ScriptInvocation, Value};
use serde::Deserialize;

use super::{StoreError, StoreHealth};
use crate::config::units::deserialize_duration;

/// `[store.redis]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` (`rediss://`, TLS, is not built in yet).
    pub url: String,
    /// Treat `url` (and `cluster_urls`) as seeds of a Redis Cluster.
    #[serde(default)]
    pub cluster: bool,
    /// More cluster seed nodes.
    #[serde(default)]
    pub cluster_urls: Vec<String>,
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub connect_timeout: Duration,
    /// Prefix of every key rampart writes, so that several deployments can share a server.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_prefix() -> String {
    "rampart:".into()
}

/// An open (or reconnecting) Redis.
pub struct RedisStore {
    pub settings: RedisSettings,
    pub health: Arc<StoreHealth>,
    connection: RedisConnection,
    /// Single server only: one lazily created connection per worker thread.
    per_worker: Option<PerWorker>,
}

/// What a worker needs to open its own connection, and the connections opened so far.
struct PerWorker {
    client: redis::Client,
    config: ConnectionManagerConfig,
    connections: Vec<OnceLock<ConnectionManager>>,
}

impl RedisStore {
    /// Validates the URL(s) and starts connecting; never waits for the server to answer. A
    /// server that is down is reported through `health` and connected to when it comes back.
    pub async fn open(settings: &RedisSettings) -> Result<Self, StoreError> {
        let connection = if settings.cluster {
            open_cluster(settings)?
        } else {
            if !settings.cluster_urls.is_empty() {
                return Err(error(
                    "cluster_urls is set but cluster is false: expected `cluster = true` with \
                     cluster seed nodes, or a single `url`",
                ));
            }
            open_single(settings)?
        };
        Ok(Self {
            settings: settings.clone(),
            health: Arc::new(StoreHealth::new("redis")),
            connection,
            per_worker: None,
        })
    }

    /// Gives each of `workers` worker threads its own connection (single server; a cluster
    /// keeps its one shared connection).
    pub fn with_worker_connections(mut self, workers: usize) -> Self {
        if let RedisConnection::Single(_) = self.connection {
            let (client, config) = single_client(&self.settings).expect("validated by open");
            self.per_worker = Some(PerWorker {
                client,
                config,
                connections: (0..workers).map(|_| OnceLock::new()).collect(),
            });
        }
        self
    }

    /// `PING`, for health checks and recovery probes.
    pub async fn ping(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let mut connection = self.connection();
        let pong: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|e| describe(&e))?;
        if pong != "PONG" {
            return Err(format!("unexpected PING answer {pong:?}"));
        }
        Ok(started.elapsed())
    }

    /// Runs a script (`EVALSHA`, then `SCRIPT LOAD` and again if the server does not know it).
    /// On a cluster the call goes to the node of its keys' slot.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, String> {
        let mut connection = self.connection();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| describe(&e))
    }

    /// A handle on the connection for one call (cheap: both kinds are multiplexed handles): the
    /// calling worker's own connection when there is one, the shared one otherwise.
    pub(crate) fn connection(&self) -> RedisConnection {
        match self.worker_connection() {
            Some(own) => RedisConnection::Single(own),
            None => self.connection.clone(),
        }
    }

    /// The calling worker's connection, created on first use. It must be created on the
    /// worker's own event loop: the connection's tasks run on the runtime that creates it.
    fn worker_connection(&self) -> Option<ConnectionManager> {
        let per_worker = self.per_worker.as_ref()?;
        let slot = per_worker
            .connections
            .get(crate::server::worker::current()?)?;
        if let Some(own) = slot.get() {
            return Some(own.clone());
        }
        let own = ConnectionManager::new_lazy_with_config(
            per_worker.client.clone(),
            per_worker.config.clone(),
        )
        .ok()?;
        Some(slot.get_or_init(|| own).clone())
    }

    /// Whether this is a Redis Cluster (callers group keys by slot then).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.connection, RedisConnection::Cluster(_))
    }
}

fn error(message: impl Into<String>) -> StoreError {
    StoreError {
        store: "redis",
        message: message.into(),
    }
}

/// Parses one URL; the message names the setting and what was expected, never the URL itself
/// (it may hold a password).
fn parse_url(name: &str, url: &str) -> Result<redis::ConnectionInfo, StoreError> {
    let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|s| url.starts_with(s));
    if !scheme_ok {
        return Err(error(format!(
            "{name}: expected redis://[user:password@]host:port[/db] or rediss://…"
        )));
    }
    url.into_connection_info().map_err(|e| {
        if url.starts_with("rediss://") && describe(&e).contains("TLS") {
            // The redis crate is built without TLS: say so rather than blame the URL.
            return error(format!(
                "{name}: rediss:// (TLS) is not supported by this build; expected redis://… ({})",
                describe(&e)
            ));
        }
        error(format!(
            "{name}: expected redis://[user:password@]host:port[/db] or rediss://… ({})",
            describe(&e)
        ))
    })
}

/// A single server behind a [`ConnectionManager`] created lazily: nothing is sent until the first
/// call, a call while the server is down fails after at most one connection attempt (bounded by
/// `connect_timeout`), and the manager reconnects by itself after an I/O error.
fn open_single(settings: &RedisSettings) -> Result<RedisConnection, StoreError> {
    let (client, config) = single_client(settings)?;
    let manager = ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| error(format!("url: {}", describe(&e))))?;
    Ok(RedisConnection::Single(manager))
}

/// The client and connection settings of a single server.
fn single_client(
    settings: &RedisSettings,
) -> Result<(redis::Client, ConnectionManagerConfig), StoreError> {
    let info = parse_url("url", &settings.url)?;
    let client = redis::Client::open(info).map_err(|e| error(format!("url: {}", describe(&e))))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.connect_timeout))
        // No retry loop inside a call: a caller waiting on a dead server falls back sooner.
        .set_number_of_retries(0)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(settings.connect_timeout);
    Ok((client, config))
}

/// A Redis Cluster from its seed nodes, connected in the background.
fn open_cluster(settings: &RedisSettings) -> Result<RedisConnection, StoreError> {
    let mut seeds = vec![parse_url("url", &settings.url)?];
    for (i, url) in settings.cluster_urls.iter().enumerate() {
        seeds.push(parse_url(&format!("cluster_urls[{i}]"), url)?);
    }
    let client = ClusterClientBuilder::new(seeds)
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.connect_timeout)
        .retries(3)
        .build()
        .map_err(|e| error(format!("cluster: {}", describe(&e))))?;
    let config = ClusterConfig::new()
        .set_connection_timeout(settings.connect_timeout)
        .set_response_timeout(settings.connect_timeout);
    Ok(RedisConnection::Cluster(
        client.get_pending_async_connection_with_config(config),
    ))
}

/// A short description of a Redis error for logs and `/health`: its kind and detail, no URL.
pub(crate) fn describe(e: &redis::RedisError) -> String {
    let text = e.to_string();
    // Connection errors may quote the address; that is fine, but never credentials (a URL with
    // a user part). Script errors name `@user_script`, which is no URL.
    if text.contains("://") && text.contains('@') {
        format!("{:?}", e.kind())
    } else {
        text
    }
}

/// The connection a call runs on: one server or a cluster. Both are cheap handles on a
/// multiplexed connection, cloned per call.
#[derive(Clone)]
pub(crate) enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> RedisSettings {
        RedisSettings {
            url: url.into(),
            cluster: false,
            cluster_urls: Vec::new(),
            connect_timeout: Duration::from_millis(200),
            key_prefix: "t:".into(),
        }
    }

    #[tokio::test]
    async fn malformed_urls_are_refused_without_echoing_them() {
        for url in ["localhost:6379", "http://x", "redis://:secret@[::1"] {
            let err = RedisStore::open(&settings(url)).await.err().expect(url);
            let text = err.to_string();
            assert!(
                text.starts_with("[store.redis]: url: expected redis://"),
                "{text}"
            );
            assert!(!text.contains("secret"), "{text}");
        }
        let mut cluster = settings("redis://127.0.0.1:1");
        cluster.cluster = true;
        cluster.cluster_urls = vec!["nope".into()];
        let text = RedisStore::open(&settings("rediss://127.0.0.1:6380"))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(text.contains("rediss:// (TLS) is not supported"), "{text}");
        let text = RedisStore::open(&cluster).await.err().unwrap().to_string();
        assert!(text.contains("cluster_urls[0]: expected"), "{text}");
        let mut single = settings("redis://127.0.0.1:1");
        single.cluster_urls = vec!["redis://127.0.0.1:2".into()];
        assert!(RedisStore::open(&single).await.is_err());
    }

    #[tokio::test]
    async fn opening_does_not_wait_for_the_server_and_calls_fail_fast() {
        // Port 1 on localhost: nothing listens, connections are refused at once.
        let store = RedisStore::open(&settings("redis://127.0.0.1:1"))
            .await
            .unwrap();
        assert!(!store.is_cluster());
        let started = Instant::now();
        assert!(store.ping().await.is_err());
        assert!(store.ping().await.is_err());
        assert!(started.elapsed() < Duration::from_secs(1));
        let mut cluster = settings("redis://127.0.0.1:1");
        cluster.cluster = true;
        let store = RedisStore::open(&cluster).await.unwrap();
        assert!(store.is_cluster());
    }
}
