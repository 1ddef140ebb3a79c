//! A cache of tokens whose signature has already been verified, for public-key providers (an
//! ES256 or RS256 verification costs tens of microseconds; a client sends the same token on
//! every request). Like Envoy's `jwt_cache_config`.
//!
//! Only the signature check is skipped on a hit: the claims (expiry, not-before, maximum age,
//! issuer, audience, required claims) are checked again on every request, so a cached token
//! expires exactly when it would without the cache. Entries are tied to the key-set generation:
//! a JWKS refresh empties the cache, so a key removed from the JWKS stops verifying at once.
//! Bounded by entry count and by total token bytes; when either is reached the cache starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Most bytes of token text kept at once.
const MAX_TOTAL_BYTES: usize = 4 << 20;

pub(crate) struct VerifiedTokens {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    generation: u64,
    bytes: usize,
    entries: HashMap<Box<str>, Arc<Value>>,
}

impl VerifiedTokens {
    /// `None` when `capacity` is 0 (the cache is off).
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| Self {
            capacity,
            state: Mutex::new(State::default()),
        })
    }

    /// The claims of `token` if it was verified under key-set `generation`.
    pub(crate) fn get(&self, token: &str, generation: u64) -> Option<Arc<Value>> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.generation != generation {
            return None;
        }
        state.entries.get(token).cloned()
    }

    /// Remembers a token whose signature verified under key-set `generation`.
    pub(crate) fn insert(&self, token: &str, generation: u64, claims: Arc<Value>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.generation != generation
            || state.entries.len() >= self.capacity
            || state.bytes + token.len() > MAX_TOTAL_BYTES
        {
            state.entries.clear();
            state.bytes = 0;
            state.generation = generation;
        }
        if state.entries.insert(token.into(), claims).is_none() {
            state.bytes += token.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_misses_generations_and_bounds() {
        let cache = VerifiedTokens::new(2).unwrap();
        let claims = Arc::new(serde_json::json!({"sub": "a"}));
        assert!(cache.get("t1", 0).is_none());
        cache.insert("t1", 0, claims.clone());
        assert_eq!(cache.get("t1", 0).unwrap()["sub"], "a");
        assert!(cache.get("t1", 1).is_none(), "a new key set invalidates");
        cache.insert("t2", 0, claims.clone());
        cache.insert("t3", 0, claims.clone());
        assert!(cache.get("t1", 0).is_none(), "full: started over");
        assert!(cache.get("t3", 0).is_some());
        assert!(VerifiedTokens::new(0).is_none());
    }
}
