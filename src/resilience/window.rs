//! A lock-free rolling window of counters: `BUCKETS` buckets of `width` each, rotated by time.
//! The breaker counts outcomes in one, the retry budget requests and retries in another.
//!
//! Buckets are reset lazily by whoever first writes to them in a new period; a write racing a
//! reset may be lost, which a rolling statistic tolerates. Times are milliseconds on the
//! caller's clock (tests pass their own).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per window: a tenth of the window is the resolution.
pub const BUCKETS: usize = 10;

/// `N` counters per bucket.
pub struct RollingWindow<const N: usize> {
    width_ms: u64,
    buckets: [Bucket<N>; BUCKETS],
}

struct Bucket<const N: usize> {
    /// Which period (`now / width`) the counts belong to.
    period: AtomicU64,
    counts: [AtomicU32; N],
}

impl<const N: usize> RollingWindow<N> {
    pub fn new(window: Duration) -> Self {
        let width_ms = (window.as_millis() as u64 / BUCKETS as u64).max(1);
        Self {
            width_ms,
            buckets: std::array::from_fn(|_| Bucket {
                period: AtomicU64::new(u64::MAX),
                counts: std::array::from_fn(|_| AtomicU32::new(0)),
            }),
        }
    }

    /// Adds `amounts[i]` to counter `i` at `now_ms`.
    pub fn add(&self, now_ms: u64, amounts: [u32; N]) {
        let period = now_ms / self.width_ms;
        let bucket = &self.buckets[(period % BUCKETS as u64) as usize];
        let seen = bucket.period.load(Ordering::Acquire);
        if seen != period
            && bucket
                .period
                .compare_exchange(seen, period, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            for count in &bucket.counts {
                count.store(0, Ordering::Release);
            }
        }
        for (count, amount) in bucket.counts.iter().zip(amounts) {
            if amount > 0 {
                count.fetch_add(amount, Ordering::AcqRel);
            }
        }
    }

    /// The sums over the window ending at `now_ms`.
    pub fn totals(&self, now_ms: u64) -> [u64; N] {
        let period = now_ms / self.width_ms;
        let oldest = period.saturating_sub(BUCKETS as u64 - 1);
        let mut totals = [0u64; N];
        for bucket in &self.buckets {
            let p = bucket.period.load(Ordering::Acquire);
            if p != u64::MAX && p >= oldest && p <= period {
                for (total, count) in totals.iter_mut().zip(&bucket.counts) {
                    *total += u64::from(count.load(Ordering::Acquire));
                }
            }
        }
        totals
    }

    /// Forgets everything.
    pub fn clear(&self) {
        for bucket in &self.buckets {
            bucket.period.store(u64::MAX, Ordering::Release);
            for count in &bucket.counts {
                count.store(0, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_the_window_and_forgets_older_buckets() {
        let window = RollingWindow::<2>::new(Duration::from_secs(10));
        window.add(0, [1, 0]);
        window.add(500, [1, 1]);
        window.add(9_999, [1, 0]);
        assert_eq!(window.totals(9_999), [3, 1]);
        // At 10.0 s the bucket of [0, 1 s) has left the window.
        assert_eq!(window.totals(10_000), [1, 0]);
        // A write into a reused slot resets the old period's counts first.
        window.add(10_500, [5, 5]);
        assert_eq!(window.totals(10_500), [6, 5]);
        assert_eq!(window.totals(30_000), [0, 0]);
        window.clear();
        assert_eq!(window.totals(10_500), [0, 0]);
    }
}
