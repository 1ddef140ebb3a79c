//! The Redis tier: entries shared by every instance, on the connection of `[store.redis]`.
//!
//! Values are [`Cached::to_bytes`] compressed with zstd, written with `SET … PX` (the entry's
//! remaining life) in the background, and skipped above `redis_max_entry_bytes`. Keys are
//! `{prefix}cache:{route}:{path}#{base key}` (and `.{variant key}` for a variant); the path is
//! percent-encoded so that purges by route, path or path prefix are `SCAN MATCH` patterns.
//!
//! A failing or slow Redis marks the store degraded ([`crate::store::StoreHealth`]): lookups then
//! use memory only until the store's probe sees it answer again. Purges are announced on the
//! channel `{prefix}cache:purge`, so every instance drops the same entries from its memory.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::Purge;
use super::entry::{Cached, Origin};
use super::key::Key;
use crate::observe::metrics as m;
use crate::store::redis::{RedisStore, describe};

/// How long a write's purge mark is kept: entries stored before it and still alive after it would
/// be served again (a week is longer than any sensible TTL).
const PURGE_MARK_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

pub struct RedisTier {
    pub store: Arc<RedisStore>,
    timeout: Duration,
    max_entry_bytes: u64,
}

/// Bytes of a path that stay as they are in a key; everything else is `%XX`, so `:`, `#` and
/// glob characters never appear.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~!$&'()+,;=@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl RedisTier {
    pub fn new(store: Arc<RedisStore>, timeout: Duration, max_entry_bytes: u64) -> Self {
        Self {
            store,
            timeout,
            max_entry_bytes,
        }
    }

    fn prefix(&self) -> &str {
        &self.store.settings.key_prefix
    }

    /// The Redis key of the value at `key` (`key` is the base key, or a variant of it).
    pub fn redis_key(&self, origin: &Origin, key: &Key) -> String {
        let mut text = format!(
            "{}cache:{}:{}#{}",
            self.prefix(),
            origin.route,
            encode_path(&origin.path),
            origin.base.hex()
        );
        if *key != origin.base {
            text.push('.');
            text.push_str(&key.hex());
        }
        text
    }

    /// The key holding when `path` was last purged by a write (ms since the epoch).
    fn purged_key(&self, path: &str) -> String {
        format!("{}cache-purged:{}", self.prefix(), encode_path(path))
    }

    pub fn channel(&self) -> String {
        format!("{}cache:purge", self.prefix())
    }

    /// Whether lookups should try Redis now.
    pub fn usable(&self) -> bool {
        !self.store.health.is_degraded()
    }

    fn failed(&self, kind: &'static str, error: &str) {
        metrics::counter!(m::CACHE_STORE_ERRORS_TOTAL, "store" => "redis", "kind" => kind)
            .increment(1);
        self.store.health.mark_failed(error);
    }

    /// Looks `key` up; a failure counts as a miss and degrades the tier.
    pub async fn get(&self, origin: &Origin, key: &Key) -> Option<Cached> {
        let redis_key = self.redis_key(origin, key);
        let mut connection = self.store.connection();
        // The entry and when its path was last purged by a write, in one round trip.
        let mut command = redis::cmd("MGET");
        command.arg(&redis_key).arg(self.purged_key(&origin.path));
        let call = command.query_async::<(Option<Vec<u8>>, Option<u64>)>(&mut connection);
        let (packed, purged_at) = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((packed, purged_at))) => (packed?, purged_at),
            Ok(Err(error)) => {
                self.failed("error", &describe(&error));
                return None;
            }
            Err(_) => {
                self.failed(
                    "timeout",
                    &format!("no answer within {} ms", self.timeout.as_millis()),
                );
                return None;
            }
        };
        let bytes = zstd::stream::decode_all(packed.as_slice()).ok()?;
        // The base key covers host, path, query and identity: a value of another base is never used.
        let cached = Cached::from_bytes(&bytes).filter(|c| c.origin().base == origin.base)?;
        if let (Cached::Entry(entry), Some(purged_at)) = (&cached, purged_at)
            && entry.times.stored_at_ms <= purged_at
        {
            return None;
        }
        Some(cached)
    }

    /// Marks every entry of `path` stored until now as purged (a write succeeded): lookups skip
    /// them from now on, on every instance, without scanning the keyspace.
    pub async fn mark_path_purged(&self, path: &str, now_ms: u64) -> Result<(), String> {
        let mut connection = self.store.connection();
        let mut command = redis::cmd("SET");
        command
            .arg(self.purged_key(path))
            .arg(now_ms)
            .arg("PX")
            .arg(PURGE_MARK_TTL_MS);
        match tokio::time::timeout(self.timeout, command.query_async::<()>(&mut connection)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                let error = describe(&error);
                self.failed("error", &error);
                Err(error)
            }
            Err(_) => {
                self.failed("timeout", "SET took too long");
                Err("timeout".into())
            }
        }
    }

    /// Writes `value` at `key` in the background.
    pub fn put(self: &Arc<Self>, key: &Key, value: &Cached, ttl: Duration) {
        if !self.usable() {
            return;
        }
        let Ok(packed) = zstd::stream::encode_all(value.to_bytes().as_slice(), 1) else {
            return;
        };
        if packed.len() as u64 > self.max_entry_bytes {
            metrics::counter!(m::CACHE_STORE_ERRORS_TOTAL, "store" => "redis", "kind" => "too_large").increment(1);
            return;
        }
        let redis_key = self.redis_key(value.origin(), key);
        let tier = self.clone();
        let ttl_ms = ttl.as_millis().max(1) as u64;
        tokio::spawn(async move {
            let mut connection = tier.store.connection();
            let mut command = redis::cmd("SET");
            command.arg(&redis_key).arg(packed).arg("PX").arg(ttl_ms);
            let call = command.query_async::<()>(&mut connection);
            match tokio::time::timeout(tier.timeout * 4, call).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tier.failed("error", &describe(&error)),
                Err(_) => tier.failed("timeout", "SET took too long"),
            }
        });
    }

    /// The `SCAN MATCH` pattern of a purge.
    fn pattern(&self, purge: &Purge) -> String {
        let prefix = self.prefix();
        match purge {
            Purge::All => format!("{prefix}cache:*"),
            Purge::Route(route) => format!("{prefix}cache:{route}:*"),
            Purge::Prefix(path) => format!("{prefix}cache:*:{}*", encode_path(path)),
            Purge::Path(path) => format!("{prefix}cache:*:{}#*", encode_path(path)),
            Purge::Key(key) => format!("{prefix}cache:*#{}*", key.hex()),
        }
    }

    /// Deletes the keys a purge selects; returns how many.
    pub async fn purge(&self, purge: &Purge) -> Result<u64, String> {
        if self.store.is_cluster() {
            return Err("purging the Redis tier is not supported on a Redis Cluster; entries expire with their TTL".into());
        }
        let pattern = self.pattern(purge);
        let mut connection = self.store.connection();
        let mut cursor: u64 = 0;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(|e| describe(&e))?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| describe(&e))?;
                deleted += n;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(deleted)
    }

    /// Tells the other instances to drop the same entries from memory.
    pub async fn publish(&self, instance: &str, purge: &Purge) -> Result<(), String> {
        let mut connection = self.store.connection();
        redis::cmd("PUBLISH")
            .arg(self.channel())
            .arg(format!("{instance} {}", purge.encode()))
            .query_async::<i64>(&mut connection)
            .await
            .map(|_| ())
            .map_err(|e| describe(&e))
    }
}

/// Listens for purges announced by other instances and applies them to `memory` through
/// `apply`. On every reconnection after a failure, `on_gap` runs (purges may have been missed).
/// Ends when `alive` says the cache is gone.
pub fn spawn_listener(
    url: String,
    channel: String,
    instance: String,
    apply: impl Fn(Purge) -> bool + Send + 'static,
    on_gap: impl Fn() + Send + 'static,
) {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let subscribed = async {
                let client = redis::Client::open(url.as_str()).map_err(|e| describe(&e))?;
                let mut pubsub = client.get_async_pubsub().await.map_err(|e| describe(&e))?;
                pubsub.subscribe(&channel).await.map_err(|e| describe(&e))?;
                Ok::<_, String>(pubsub)
            };
            match tokio::time::timeout(Duration::from_secs(5), subscribed).await {
                Ok(Ok(pubsub)) => {
                    if !first {
                        on_gap();
                    }
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(text) = message.get_payload::<String>() else {
                            continue;
                        };
                        let Some((from, spec)) = text.split_once(' ') else {
                            continue;
                        };
                        if from == instance {
                            continue;
                        }
                        if let Some(purge) = Purge::decode(spec)
                            && !apply(purge)
                        {
                            return;
                        }
                    }
                    tracing::warn!("cache: purge channel closed; reconnecting");
                }
                Ok(Err(error)) => {
                    tracing::debug!(error, "cache: purge channel unavailable");
                }
                Err(_) => tracing::debug!("cache: purge channel connect timed out"),
            }
            first = false;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_carry_separators_or_globs() {
        assert_eq!(encode_path("/api/items"), "/api/items");
        assert_eq!(encode_path("/a:b#c*d?[e]%"), "/a%3Ab%23c%2Ad%3F%5Be%5D%25");
    }
}
