//! Rate limits in Redis: one Lua script checks and counts every policy of a request atomically,
//! in one round trip. The script is a translation of [`super::algorithm`] and uses the Redis
//! server's clock (`TIME`), so instances with skewed clocks still agree.
//!
//! Keys are `{prefix}rl:{<policy key>}`: the braces are a Redis Cluster hash tag. Each holds one
//! string with a TTL: `start:prev:cur` (sliding window, ms) or the theoretical arrival time
//! (token bucket, µs), so a check is `TIME`, `GET` and at most one `SET … PX` inside the script. On a single
//! server (or when every key of the request lands in one slot) it is one `EVALSHA`; on a cluster
//! the checks are grouped by slot and the calls are sent together.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use futures_util::future::try_join_all;
use redis::Script;
use redis::cluster_routing::Slot;

use super::Check;
use super::algorithm::{Algorithm, Decision};
use crate::store::redis::RedisStore;

/// The check-and-count script. KEYS: one per check. ARGV[1]: the clock in µs, or "" for the
/// server's `TIME`; then five per check: algorithm (`s` sliding window, `t` token bucket),
/// limit, window in ms, burst, cost. Returns four integers per check: allowed (0/1), remaining,
/// reset_ms, retry_after_ms.
///
/// Lua numbers are doubles. Every product below stays under 2^53 because the config caps
/// `limit × window_ms`; sums that could pass it are rearranged into comparisons of two such
/// products, and integer division is corrected after `math.floor` (`idiv`), so the results are
/// the exact integers [`super::algorithm`] computes. Numbers are written with `%d` (Redis's Lua
/// 5.1 formats it as a 64-bit `long`, exact for every integer below 2^53; `tostring` would use
/// `%.14g` and lose digits), in one `string.format` per value written. Nothing is written for a
/// refusal or a cost of 0.
const SCRIPT: &str = r#"
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local now_us
if ARGV[1] ~= '' then
  now_us = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local out = {}
for i, key in ipairs(KEYS) do
  local base = 1 + (i - 1) * 5
  local alg = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local window = tonumber(ARGV[base + 3])
  local burst = tonumber(ARGV[base + 4])
  local cost = tonumber(ARGV[base + 5])
  -- One string per key: 'start:prev:cur' (sliding window) or the TAT (token bucket). State of
  -- the other algorithm (the policy changed) reads as none and is overwritten.
  local stored = redis.pcall('GET', key)
  if type(stored) == 'table' then
    -- A value of another type (an older format): overwritten like the other algorithm's.
    stored = false
  end
  local allowed, remaining, reset, retry
  if alg == 's' then
    local now_ms = idiv(now_us, 1000)
    local start = now_ms - (now_ms - idiv(now_ms, window) * window)
    local prev, cur = 0, 0
    if stored then
      local a, b, c = string.match(stored, '^(%d+):(%d+):(%d+)$')
      local s_start = a and tonumber(a)
      if s_start == start then
        prev = tonumber(b)
        cur = tonumber(c)
      elseif s_start ~= nil and s_start + window == start then
        prev = tonumber(c)
      end
    end
    local elapsed = now_ms - start
    -- prev × (window − elapsed) + (cur + cost) × window ≤ limit × window, without the sum.
    local weighted = prev * (window - elapsed)
    allowed = cur + cost <= limit and weighted <= (limit - cur - cost) * window
    remaining = 0
    retry = 0
    if allowed then
      remaining = idiv((limit - cur - cost) * window - weighted, window)
      if cost > 0 then
        redis.call('SET', key, string.format('%d:%d:%d', start, prev, cur + cost),
          'PX', string.format('%d', math.max(start + 2 * window - now_ms, 1)))
      end
    elseif cur + cost <= limit then
      local room = (limit - cur - cost) * window
      local until_ms = window - math.min(idiv(room, prev), window)
      retry = math.max(until_ms - elapsed, 1)
    else
      local room = math.max(limit - cost, 0) * window
      local into_next = 0
      if cur > 0 then
        into_next = window - math.min(idiv(room, cur), window)
      end
      retry = window - elapsed + into_next
    end
    reset = window - elapsed
  else
    local interval = math.max(idiv(window * 1000, math.max(limit, 1)), 1)
    local tolerance = burst * interval
    local tat = now_us
    local stored_tat = stored and string.match(stored, '^(%d+)$')
    if stored_tat then
      stored_tat = tonumber(stored_tat)
      if stored_tat > now_us then
        tat = stored_tat
      end
    end
    local new_tat = tat + cost * interval
    allowed = new_tat - now_us <= tolerance
    local kept = tat
    remaining = 0
    retry = 0
    if allowed then
      kept = new_tat
      remaining = idiv(now_us + tolerance - new_tat, interval)
      if cost > 0 then
        local ttl = math.max(idiv(new_tat - now_us + 999, 1000), 1)
        redis.call('SET', key, string.format('%d', new_tat), 'PX', string.format('%d', ttl))
      end
    else
      retry = math.max(idiv(new_tat - tolerance - now_us + 999, 1000), 1)
    end
    reset = idiv(kept - now_us + 999, 1000)
  end
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end
return out
"#;

static CHECK: LazyLock<Script> = LazyLock::new(|| Script::new(SCRIPT));

pub struct RedisLimits {
    store: Arc<RedisStore>,
}

impl RedisLimits {
    pub fn new(store: Arc<RedisStore>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<RedisStore> {
        &self.store
    }

    /// Checks and counts `checks` (decisions in the same order). `now_us` replaces the server
    /// clock in tests only.
    pub async fn check(
        &self,
        checks: &[Check<'_>],
        now_us: Option<u64>,
    ) -> Result<Vec<Decision>, String> {
        if checks.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = checks.iter().map(|c| self.key(c.key)).collect();
        if !self.store.is_cluster() {
            let all: Vec<usize> = (0..checks.len()).collect();
            return self.run(checks, &keys, &all, now_us).await;
        }
        // One call per slot, sent together.
        let mut groups: Vec<(Slot, Vec<usize>)> = Vec::new();
        let mut by_slot: HashMap<Slot, usize> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            let slot = Slot::for_key(key);
            let group = *by_slot.entry(slot).or_insert_with(|| {
                groups.push((slot, Vec::new()));
                groups.len() - 1
            });
            groups[group].1.push(i);
        }
        let answers = try_join_all(
            groups
                .iter()
                .map(|(_, members)| self.run(checks, &keys, members, now_us)),
        )
        .await?;
        let mut decisions = vec![None; checks.len()];
        for ((_, members), answer) in groups.iter().zip(answers) {
            for (&i, decision) in members.iter().zip(answer) {
                decisions[i] = Some(decision);
            }
        }
        decisions
            .into_iter()
            .map(|d| d.ok_or_else(|| "a check got no decision".to_owned()))
            .collect()
    }

    /// Forgets the state of `key` (a policy key as [`super::policy::Policy::key`] builds it).
    pub async fn reset(&self, key: &str) -> Result<bool, String> {
        let mut connection = self.store.connection();
        let deleted: u64 = redis::cmd("DEL")
            .arg(self.key(key))
            .query_async(&mut connection)
            .await
            .map_err(|e| crate::store::redis::describe(&e))?;
        Ok(deleted > 0)
    }

    /// `{prefix}rl:{<policy key>}`: the braces are the cluster hash tag (policy keys escape
    /// `{` and `}`), so each policy key has a slot of its own.
    fn key(&self, key: &str) -> String {
        format!("{}rl:{{{key}}}", self.store.settings.key_prefix)
    }

    /// Runs the script for the checks at `members` (all in one slot on a cluster).
    async fn run(
        &self,
        checks: &[Check<'_>],
        keys: &[String],
        members: &[usize],
        now_us: Option<u64>,
    ) -> Result<Vec<Decision>, String> {
        let mut invocation = CHECK.prepare_invoke();
        invocation.arg(now_us.map_or(String::new(), |n| n.to_string()));
        for &i in members {
            let limit = &checks[i].limit;
            invocation.key(&keys[i]);
            invocation
                .arg(match limit.algorithm {
                    Algorithm::SlidingWindow => "s",
                    Algorithm::TokenBucket => "t",
                })
                .arg(limit.limit)
                .arg(limit.window_ms.max(1))
                .arg(limit.burst)
                .arg(limit.cost);
        }
        let answer: Vec<i64> = self.store.invoke(&invocation).await?;
        if answer.len() != members.len() * 4 {
            return Err(format!(
                "rate-limit script answered {} numbers for {} checks",
                answer.len(),
                members.len()
            ));
        }
        let number =
            |n: i64| u64::try_from(n).map_err(|_| format!("rate-limit script answered {n}"));
        answer
            .chunks_exact(4)
            .map(|d| {
                Ok(Decision {
                    allowed: d[0] == 1,
                    remaining: number(d[1])?,
                    reset_ms: number(d[2])?,
                    retry_after_ms: number(d[3])?,
                })
            })
            .collect()
    }
}
