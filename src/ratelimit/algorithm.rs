//! The two limiting algorithms as pure functions of (state, settings, now): the reference every
//! store follows. The memory store calls these directly; the Redis script and the PostgreSQL
//! statement are line-for-line translations, and tests check them against these functions.
//!
//! - **Sliding window** (default) is a *weighted two-window counter* (the approach Cloudflare
//!   and nginx-plus use), not a log. Time is cut into fixed windows aligned to the Unix epoch;
//!   a key keeps the count of the current window and of the one before it. A request of cost
//!   `c` at `e` ms into the current window is admitted when
//!   `prev × (window − e) / window + cur + c ≤ limit`, computed in integers (no rounding).
//!   *Worst-case error*: the previous window's requests are assumed evenly spread. Inside one
//!   window the count is exact. Across the boundary, if all of `prev` came at the very end of
//!   the previous window, the estimate undercounts them and up to `limit` more requests can be
//!   admitted over any sliding `window` span in the extreme case; when they all came early, it
//!   overcounts and admits fewer. The state is three integers per key whatever the limit.
//! - **Token bucket** is GCRA (the generic cell rate algorithm): one timestamp per key, the
//!   theoretical arrival time (TAT). The emission interval is `T = window / limit`, and a
//!   request of cost `c` is admitted when `max(TAT, now) + c·T − now ≤ burst·T`. A full bucket
//!   holds `burst` requests; capacity returns at `limit` per `window`. It is exact.
//!
//! Times: the sliding window works in milliseconds, GCRA in microseconds. Both stay well
//! inside 2^53 (a Lua number in Redis) because the config caps `limit × window`.

/// Which algorithm a policy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    SlidingWindow,
    TokenBucket,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SlidingWindow => "sliding_window",
            Self::TokenBucket => "token_bucket",
        }
    }
}

/// One policy's numbers, as a store needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub algorithm: Algorithm,
    /// Requests (cost units) per window.
    pub limit: u64,
    pub window_ms: u64,
    /// Token bucket only: the most a full bucket holds (defaults to `limit`).
    pub burst: u64,
    /// Units one request takes; 0 reads the state without changing it.
    pub cost: u64,
}

impl Limit {
    /// GCRA emission interval in microseconds (at least 1).
    pub fn interval_us(&self) -> u64 {
        (self.window_ms * 1000 / self.limit.max(1)).max(1)
    }

    /// The same limit with another cost (0 for a read-only peek).
    pub fn with_cost(self, cost: u64) -> Self {
        Self { cost, ..self }
    }
}

/// The outcome of one policy's check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Units left after this request (0 when refused).
    pub remaining: u64,
    /// Milliseconds until the quota is restored: the current window's end (sliding window) or
    /// a full bucket (token bucket).
    pub reset_ms: u64,
    /// Milliseconds until a request of the same cost would be admitted; 0 when admitted.
    pub retry_after_ms: u64,
}

/// Sliding-window state of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sliding {
    /// Start of the current window, ms since the epoch (a multiple of the window).
    pub start_ms: u64,
    pub prev: u64,
    pub cur: u64,
}

/// Checks (and, when admitted, counts) a request against a sliding window.
pub fn sliding_window(state: Option<Sliding>, limit: &Limit, now_ms: u64) -> (Sliding, Decision) {
    let window = limit.window_ms;
    let start = now_ms - now_ms % window;
    let (prev, cur) = match state {
        Some(s) if s.start_ms == start => (s.prev, s.cur),
        Some(s) if s.start_ms + window == start => (s.cur, 0),
        _ => (0, 0),
    };
    let elapsed = now_ms - start;
    let w = u128::from(window);
    let capacity = u128::from(limit.limit) * w;
    let mut used = u128::from(prev) * u128::from(window - elapsed) + u128::from(cur) * w;
    let cost = u128::from(limit.cost) * w;
    let allowed = used + cost <= capacity;
    let mut new_cur = cur;
    if allowed {
        new_cur += limit.cost;
        used += cost;
    }
    let remaining = (capacity.saturating_sub(used) / w) as u64;
    let retry_after_ms = if allowed {
        0
    } else if cur + limit.cost <= limit.limit {
        // Wait until the previous window's weight has fallen enough (prev > 0 here).
        let room = u128::from(limit.limit - cur - limit.cost) * w;
        let until = window - (room / u128::from(prev)).min(w) as u64;
        until.saturating_sub(elapsed).max(1)
    } else {
        // Only the next window helps: then `cur` becomes the previous count.
        let room = u128::from(limit.limit.saturating_sub(limit.cost)) * w;
        let into_next = match cur {
            0 => 0,
            cur => window - (room / u128::from(cur)).min(w) as u64,
        };
        window - elapsed + into_next
    };
    let decision = Decision {
        allowed,
        remaining: if allowed { remaining } else { 0 },
        reset_ms: window - elapsed,
        retry_after_ms,
    };
    (
        Sliding {
            start_ms: start,
            prev,
            cur: new_cur,
        },
        decision,
    )
}

/// Checks (and, when admitted, counts) a request against a GCRA token bucket. `tat_us` is the
/// stored theoretical arrival time; the returned one is what to store.
pub fn token_bucket(tat_us: Option<u64>, limit: &Limit, now_us: u64) -> (u64, Decision) {
    let interval = limit.interval_us();
    let tolerance = limit.burst * interval;
    let tat = tat_us.unwrap_or(now_us).max(now_us);
    let new_tat = tat + limit.cost * interval;
    let allowed = new_tat - now_us <= tolerance;
    let stored = if allowed { new_tat } else { tat };
    let remaining = if allowed {
        (now_us + tolerance - new_tat) / interval
    } else {
        0
    };
    let decision = Decision {
        allowed,
        remaining,
        reset_ms: (stored - now_us).div_ceil(1000),
        retry_after_ms: if allowed {
            0
        } else {
            (new_tat - tolerance - now_us).div_ceil(1000).max(1)
        },
    };
    (stored, decision)
}

/// How long a key's state matters after `now`, in milliseconds: stores expire it then.
pub fn ttl_ms(limit: &Limit, sliding: Option<&Sliding>, tat_us: Option<u64>, now_us: u64) -> u64 {
    match limit.algorithm {
        Algorithm::SlidingWindow => {
            let now_ms = now_us / 1000;
            let start = sliding.map_or(now_ms, |s| s.start_ms);
            (start + 2 * limit.window_ms).saturating_sub(now_ms).max(1)
        }
        Algorithm::TokenBucket => tat_us
            .unwrap_or(now_us)
            .saturating_sub(now_us)
            .div_ceil(1000)
            .max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sliding(limit: u64, window_ms: u64) -> Limit {
        Limit {
            algorithm: Algorithm::SlidingWindow,
            limit,
            window_ms,
            burst: limit,
            cost: 1,
        }
    }

    fn bucket(limit: u64, window_ms: u64, burst: u64) -> Limit {
        Limit {
            algorithm: Algorithm::TokenBucket,
            limit,
            window_ms,
            burst,
            cost: 1,
        }
    }

    #[test]
    fn sliding_window_is_exact_inside_a_window() {
        let limit = sliding(5, 900_000);
        let mut state = None;
        let t0 = 1_800_000_200_000 / 900_000 * 900_000;
        for i in 0..5 {
            let (s, d) = sliding_window(state, &limit, t0 + i);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
            state = Some(s);
        }
        let (s, d) = sliding_window(state, &limit, t0 + 10);
        assert!(!d.allowed);
        assert_eq!(s.cur, 5, "a refusal does not count");
        // Nothing helps within this window; in the next one the old five weigh in.
        assert_eq!(d.retry_after_ms, 900_000 - 10 + (900_000 - 900_000 * 4 / 5));
        let (_, d) = sliding_window(Some(s), &limit, t0 + 10 + d.retry_after_ms);
        assert!(d.allowed);
    }

    #[test]
    fn sliding_window_weights_the_previous_window() {
        let limit = sliding(10, 1000);
        let state = Some(Sliding {
            start_ms: 0,
            prev: 0,
            cur: 10,
        });
        // Half-way into the next window the previous ten count as five.
        let (s, d) = sliding_window(state, &limit, 1500);
        assert!(d.allowed);
        assert_eq!(d.remaining, 4);
        assert_eq!((s.prev, s.cur), (10, 1));
        // Two windows later nothing counts.
        let (_, d) = sliding_window(state, &limit, 2000);
        assert_eq!(d.remaining, 9);
    }

    #[test]
    fn sliding_retry_after_is_the_first_admitting_moment() {
        let limit = sliding(10, 1000);
        let state = Some(Sliding {
            start_ms: 1000,
            prev: 10,
            cur: 2,
        });
        let (_, d) = sliding_window(state, &limit, 1100);
        assert!(!d.allowed);
        let later = 1100 + d.retry_after_ms;
        assert!(sliding_window(state, &limit, later).1.allowed);
        assert!(!sliding_window(state, &limit, later - 1).1.allowed);
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let limit = bucket(5, 900_000, 5);
        let now = 1_000_000_000;
        let mut tat = None;
        for i in 0..5 {
            let (t, d) = token_bucket(tat, &limit, now);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
            tat = Some(t);
        }
        let (t, d) = token_bucket(tat, &limit, now);
        assert!(!d.allowed);
        assert_eq!(Some(t), tat);
        assert_eq!(d.retry_after_ms, 180_000);
        assert!(!token_bucket(tat, &limit, now + 179_999_000).1.allowed);
        assert!(token_bucket(tat, &limit, now + 180_000_000).1.allowed);
    }

    #[test]
    fn cost_zero_reads_without_counting() {
        let limit = sliding(3, 1000).with_cost(0);
        let state = Some(Sliding {
            start_ms: 0,
            prev: 0,
            cur: 2,
        });
        let (s, d) = sliding_window(state, &limit, 10);
        assert_eq!((s.cur, d.remaining, d.allowed), (2, 1, true));
        let limit = bucket(3, 3000, 3).with_cost(0);
        let (t, d) = token_bucket(Some(5_000_000), &limit, 4_000_000);
        assert_eq!((t, d.remaining), (5_000_000, 2));
    }
}
