//! The blocklist in Redis, shared by every instance: violations counted per address in a key
//! that expires with the window (`{prefix}{bl}:v:<ip>`), live blocks in one sorted set
//! (`{prefix}{bl}:blocks`, member = the address, score = the block's end in ms) that each instance
//! mirrors locally (see the parent module). Both scripts use the server's clock (`TIME`).
//!
//! Every key carries the hash tag `{bl}`: a violation's script reads the blocks and writes the
//! counter in one call, which a Redis Cluster only allows within one slot. The blocklist is small
//! and rarely written, so one slot for all of it is no hot spot.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::BlockingSettings;
use crate::store::redis::RedisStore;

/// KEYS: the counter, the blocks. ARGV: address, threshold, window ms, duration ms. Returns the
/// block's duration in ms when this violation triggered it, nil otherwise (also when the address
/// is blocked already: it is not counted then).
const RECORD: &str = r#"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = redis.call('ZSCORE', KEYS[2], ARGV[1])
if blocked and tonumber(blocked) > now_ms then
  return false
end
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if count >= tonumber(ARGV[2]) then
  local duration = tonumber(ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now_ms))
  redis.call('ZADD', KEYS[2], string.format('%.0f', now_ms + duration), ARGV[1])
  redis.call('DEL', KEYS[1])
  return duration
end
return false
"#;

/// KEYS: the blocks. Removes expired blocks; returns address, ms left, address, ms left, …
const LIST: &str = r#"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now_ms))
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = string.format('%.0f', tonumber(live[i + 1]) - now_ms)
end
return out
"#;

/// KEYS: the counter, the blocks. ARGV: address. Returns 1 when a live block was lifted.
const UNBLOCK: &str = r#"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = redis.call('ZSCORE', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
if blocked and tonumber(blocked) > now_ms then
  return 1
end
return 0
"#;

static RECORD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RECORD));
static LIST_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LIST));
static UNBLOCK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(UNBLOCK));

pub struct RedisBlocks {
    store: Arc<RedisStore>,
}

impl RedisBlocks {
    pub fn new(store: Arc<RedisStore>) -> Self {
        Self { store }
    }

    /// Counts a violation by `ip`, atomically; when it reaches `settings.threshold` within
    /// `settings.window`, blocks `ip` for `settings.duration` (its count starts again) and
    /// returns that duration. An address already blocked is not counted (returns `None`).
    pub async fn record_violation(
        &self,
        ip: IpAddr,
        settings: &BlockingSettings,
    ) -> Result<Option<Duration>, String> {
        let mut invocation = RECORD_SCRIPT.prepare_invoke();
        invocation
            .key(self.counter_key(ip))
            .key(self.blocks_key())
            .arg(ip.to_string())
            .arg(settings.threshold.max(1))
            .arg(millis(settings.window))
            .arg(millis(settings.duration));
        let blocked: Option<u64> = self.store.invoke(&invocation).await?;
        Ok(blocked.map(Duration::from_millis))
    }

    /// Every live block with the time it has left (expired ones are removed on the way).
    pub async fn list(&self) -> Result<Vec<(IpAddr, Duration)>, String> {
        let mut invocation = LIST_SCRIPT.prepare_invoke();
        invocation.key(self.blocks_key());
        let flat: Vec<String> = self.store.invoke(&invocation).await?;
        if !flat.len().is_multiple_of(2) {
            return Err("blocklist script answered an odd list".into());
        }
        let mut blocks = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            // A member that is not an address was not written by rampart: skip it.
            let (Ok(ip), Ok(left)) = (pair[0].parse::<IpAddr>(), pair[1].parse::<u64>()) else {
                continue;
            };
            blocks.push((ip, Duration::from_millis(left)));
        }
        Ok(blocks)
    }

    /// Lifts a block; false when `ip` was not blocked.
    pub async fn unblock(&self, ip: IpAddr) -> Result<bool, String> {
        let mut invocation = UNBLOCK_SCRIPT.prepare_invoke();
        invocation
            .key(self.counter_key(ip))
            .key(self.blocks_key())
            .arg(ip.to_string());
        let lifted: u64 = self.store.invoke(&invocation).await?;
        Ok(lifted == 1)
    }

    fn counter_key(&self, ip: IpAddr) -> String {
        format!("{}{{bl}}:v:{ip}", self.store.settings.key_prefix)
    }

    fn blocks_key(&self) -> String {
        format!("{}{{bl}}:blocks", self.store.settings.key_prefix)
    }
}

/// Milliseconds, at least 1 (`PEXPIRE 0` would delete the key).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
