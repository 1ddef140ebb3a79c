//! The memory store: rate-limit state in this process, for `store = "memory"` and as the local
//! fallback of a shared store. Keys are spread over shards, each behind its own mutex, and the
//! arithmetic is [`super::algorithm`]'s. Memory is bounded: each shard holds at most its share of
//! `max_keys`; a full shard first drops expired keys, then the key closest to expiry.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Check;
use super::algorithm::{self, Algorithm, Decision, Sliding};

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
enum State {
    Sliding(Sliding),
    Bucket(u64),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    /// When the state no longer matters, in µs since the epoch.
    expires_us: u64,
}

pub struct MemoryLimits {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    per_shard: usize,
}

impl MemoryLimits {
    pub fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    /// Checks and counts every check at `now_us` (decisions in order).
    pub fn check(&self, checks: &[Check<'_>], now_us: u64) -> Vec<Decision> {
        checks.iter().map(|c| self.check_one(c, now_us)).collect()
    }

    pub fn check_one(&self, check: &Check<'_>, now_us: u64) -> Decision {
        let mut shard = self.shard(check.key);
        let previous = shard
            .get(check.key)
            .filter(|e| e.expires_us > now_us)
            .map(|e| e.state);
        let limit = &check.limit;
        let (state, decision) = match limit.algorithm {
            Algorithm::SlidingWindow => {
                let old = match previous {
                    Some(State::Sliding(s)) => Some(s),
                    _ => None,
                };
                let (new, decision) = algorithm::sliding_window(old, limit, now_us / 1000);
                (State::Sliding(new), decision)
            }
            Algorithm::TokenBucket => {
                let old = match previous {
                    Some(State::Bucket(tat)) => Some(tat),
                    _ => None,
                };
                let (tat, decision) = algorithm::token_bucket(old, limit, now_us);
                (State::Bucket(tat), decision)
            }
        };
        if limit.cost == 0 || !decision.allowed {
            return decision;
        }
        let ttl_ms = match state {
            State::Sliding(s) => algorithm::ttl_ms(limit, Some(&s), None, now_us),
            State::Bucket(tat) => algorithm::ttl_ms(limit, None, Some(tat), now_us),
        };
        let entry = Entry {
            state,
            expires_us: now_us + ttl_ms * 1000,
        };
        if let Some(existing) = shard.get_mut(check.key) {
            *existing = entry;
        } else {
            if shard.len() >= self.per_shard {
                make_room(&mut shard, now_us);
            }
            shard.insert(check.key.to_owned(), entry);
        }
        decision
    }

    /// Forgets `key`; true when it held live state.
    pub fn reset(&self, key: &str, now_us: u64) -> bool {
        self.shard(key)
            .remove(key)
            .is_some_and(|e| e.expires_us > now_us)
    }

    /// Keys held now (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        let index = fnv(key.as_bytes()) as usize % SHARDS;
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Drops expired keys; when none expired, the one closest to expiry.
fn make_room(shard: &mut HashMap<String, Entry>, now_us: u64) {
    let before = shard.len();
    shard.retain(|_, e| e.expires_us > now_us);
    if shard.len() < before {
        return;
    }
    if let Some(key) = shard
        .iter()
        .min_by_key(|(_, e)| e.expires_us)
        .map(|(k, _)| k.clone())
    {
        shard.remove(&key);
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::algorithm::Limit;
    use proptest::prelude::*;

    fn limit(algorithm: Algorithm, limit: u64, window_ms: u64, burst: u64, cost: u64) -> Limit {
        Limit {
            algorithm,
            limit,
            window_ms,
            burst,
            cost,
        }
    }

    #[test]
    fn memory_stays_bounded_and_keeps_live_keys_first() {
        let store = MemoryLimits::new(32);
        let l = limit(Algorithm::SlidingWindow, 5, 1000, 5, 1);
        for i in 0..1000 {
            let key = format!("k{i}");
            store.check_one(
                &Check {
                    key: &key,
                    limit: l,
                },
                1_000_000 + i,
            );
        }
        assert!(store.len() <= 32, "{} keys", store.len());
    }

    #[test]
    fn refusals_and_peeks_store_nothing() {
        let store = MemoryLimits::new(100);
        let l = limit(Algorithm::TokenBucket, 1, 1000, 1, 1);
        let check = Check { key: "a", limit: l };
        assert!(store.check_one(&check, 0).allowed);
        assert!(!store.check_one(&check, 1).allowed);
        let peek = Check {
            key: "b",
            limit: l.with_cost(0),
        };
        assert!(store.check_one(&peek, 1).allowed);
        assert_eq!(store.len(), 1);
        assert!(store.reset("a", 2));
        assert!(store.check_one(&check, 3).allowed);
    }

    /// A request sequence: (µs since the previous request, cost, key index).
    fn steps() -> impl Strategy<Value = Vec<(u64, u64, usize)>> {
        prop::collection::vec((0u64..400_000, 0u64..4, 0usize..3), 1..80)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The store follows the reference functions step by step, per key.
        #[test]
        fn follows_the_reference(
            steps in steps(),
            bucket in any::<bool>(),
            max in 1u64..8,
            window_ms in 1u64..2000,
            burst in 1u64..8,
        ) {
            let algorithm = if bucket { Algorithm::TokenBucket } else { Algorithm::SlidingWindow };
            let store = MemoryLimits::new(100);
            let mut model: HashMap<usize, State> = HashMap::new();
            let mut now = 1_700_000_000_000_000u64;
            for (step, cost, key) in steps {
                now += step;
                let l = limit(algorithm, max, window_ms, burst, cost.min(max).min(burst));
                let name = format!("key{key}");
                let got = store.check_one(&Check { key: &name, limit: l }, now);
                let (state, want) = match (algorithm, model.get(&key)) {
                    (Algorithm::SlidingWindow, s) => {
                        let old = match s { Some(State::Sliding(s)) => Some(*s), _ => None };
                        let (new, d) = algorithm::sliding_window(old, &l, now / 1000);
                        (State::Sliding(new), d)
                    }
                    (Algorithm::TokenBucket, s) => {
                        let old = match s { Some(State::Bucket(t)) => Some(*t), _ => None };
                        let (new, d) = algorithm::token_bucket(old, &l, now);
                        (State::Bucket(new), d)
                    }
                };
                prop_assert_eq!(got, want);
                if want.allowed && l.cost > 0 {
                    model.insert(key, state);
                }
            }
        }

        /// Over any run, a sliding window never admits more than `limit` inside one aligned
        /// window, and a bucket never more than `burst` plus what the rate has refilled.
        #[test]
        fn never_admits_more_than_the_limit(
            steps in steps(),
            max in 1u64..8,
            window_ms in 100u64..2000,
        ) {
            let store = MemoryLimits::new(100);
            let l = limit(Algorithm::SlidingWindow, max, window_ms, max, 1);
            let mut now = 1_700_000_000_000_000u64;
            let mut per_window: HashMap<u64, u64> = HashMap::new();
            for &(step, _, _) in &steps {
                now += step;
                if store.check_one(&Check { key: "k", limit: l }, now).allowed {
                    *per_window.entry(now / 1000 / window_ms).or_default() += 1;
                }
            }
            prop_assert!(per_window.values().all(|&n| n <= max));

            let store = MemoryLimits::new(100);
            let b = limit(Algorithm::TokenBucket, max, window_ms, max, 1);
            let start = 1_700_000_000_000_000u64;
            let mut now = start;
            let mut admitted = 0u64;
            for (step, _, _) in steps {
                now += step;
                if store.check_one(&Check { key: "k", limit: b }, now).allowed {
                    admitted += 1;
                }
            }
            let refilled = (now - start) / b.interval_us();
            prop_assert!(admitted <= max + refilled);
        }
    }
}
